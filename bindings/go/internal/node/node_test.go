package node

import (
	"fmt"
	"github.com/cluster-dev/cluster/bindings/go/internal/testutil"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// White-box tests of the server that need its insides (the turn); the
// behaviour users see is tested through package cluster and package mock.

// pair starts servers 1 and 2 of a fresh cluster on free loopback ports,
// closed when the test ends.
func pair(t *testing.T) (*Node, *Node) {
	t.Helper()
	var ls []net.Listener
	var peers []string
	for id := 1; id <= 2; id++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		peers = append(peers, fmt.Sprintf(`{"Id": %d, "Address": %q}`, id, l.Addr().String()))
	}
	for _, l := range ls {
		l.Close()
	}
	text := `{"Peers": [` + strings.Join(peers, ", ") + `]}`
	var ns []*Node
	for id := int64(1); id <= 2; id++ {
		h, err := ffi.NewNode(id, text)
		if err != nil {
			t.Fatal(err)
		}
		n, err := Start(h, 0, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		ns = append(ns, n)
	}
	return ns[0], ns[1]
}

// waitFor and checkNoLeak: see package testutil.
var (
	waitFor     = testutil.WaitFor
	checkNoLeak = testutil.CheckNoLeak
)

// recvDirect receives with Recv or fails the test after 10 s.
func recvDirect(t *testing.T, n *Node) *Envelope {
	t.Helper()
	e, err := n.Recv(10 * time.Second)
	if err != nil {
		t.Fatalf("server %d: Recv: %v", n.Pid(), err)
	}
	return e
}

// sendSeq sends messages first..first+n-1 (MsgId = the number) from a to 2.
func sendSeq(t *testing.T, a *Node, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		if err := a.Send(&Envelope{Pid: 2, MsgId: int64(i), Msg: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
}

// Close releases a goroutine blocked in Recv, and every call after Close
// says ErrClosed.
func TestDirectAfterClose(t *testing.T) {
	checkNoLeak(t)
	a, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := a.Recv(-1)
		done <- err
	}()
	waitFor(t, 10*time.Second, "Recv to block", func() bool {
		return len(a.rx.turn) == 1
	})
	a.Close()
	select {
	case err := <-done:
		if err != ffi.ErrClosed {
			t.Fatalf("blocked Recv: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not release a blocked Recv")
	}
	if _, err := a.Recv(-1); err != ffi.ErrClosed {
		t.Fatalf("Recv after Close: %v", err)
	}
	if err := a.Send(&Envelope{Pid: 2, Msg: "x"}); err != ffi.ErrClosed {
		t.Fatalf("Send after Close: %v", err)
	}
	if n, err := a.SendMany([]*Envelope{{Pid: 2, Msg: "x"}}); n != 0 || err != ffi.ErrClosed {
		t.Fatalf("SendMany after Close: %d, %v", n, err)
	}
}

// A Recv blocked in the node while Inbox starts gets what arrives; the
// Inbox goroutine takes over after it, and Recv then takes from Inbox.
func TestRecvWhileInboxStarts(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	got := make(chan *Envelope, 1)
	go func() {
		e, err := b.Recv(10 * time.Second)
		if err != nil {
			t.Error(err)
		}
		got <- e
	}()
	waitFor(t, 10*time.Second, "Recv to receive from the node", func() bool {
		return len(b.rx.turn) == 1
	})
	in := b.Inbox() // its goroutine waits for the turn
	sendSeq(t, a, 0, 1)
	select {
	case e := <-got:
		if e == nil || e.MsgId != 0 {
			t.Fatalf("the blocked Recv got %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked Recv got nothing")
	}
	sendSeq(t, a, 1, 2)
	if e := recvDirect(t, b); e.MsgId != 1 {
		t.Fatalf("Recv after Inbox started: %+v", e)
	}
	select {
	case e := <-in:
		if e.MsgId != 2 {
			t.Fatalf("Inbox: %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Inbox got nothing")
	}
}
