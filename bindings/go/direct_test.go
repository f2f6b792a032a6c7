package cluster

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// pair starts servers 1 and 2 on free ports, closed when the test ends.
func pair(t *testing.T) (*Node, *Node) {
	t.Helper()
	srvs := startFree(t, 2)
	return srvs[0].(*Node), srvs[1].(*Node)
}

// recvDirect receives with Recv or fails the test after 10 s.
func recvDirect(t *testing.T, n *Node) *Envelope {
	t.Helper()
	e, err := n.Recv(10 * time.Second)
	if err != nil {
		t.Fatalf("server %d: Recv: %v", n.Pid(), err)
	}
	return e
}

func TestSendRecv(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	msgs := []interface{}{[]byte("raw"), "text", point{3, 4}}
	for i, m := range msgs {
		if err := a.Send(&Envelope{Pid: 2, MsgId: int64(i), Msg: m}); err != nil {
			t.Fatalf("Send %v: %v", m, err)
		}
	}
	for i, m := range msgs {
		e := recvDirect(t, b)
		if e.Pid != 1 || e.MsgId != int64(i) {
			t.Fatalf("got pid %d id %d, want 1 and %d", e.Pid, e.MsgId, i)
		}
		if got, want := e.Msg, m; !equalMsg(got, want) {
			t.Fatalf("message %d is %#v, want %#v", i, got, want)
		}
	}
	// The reply goes back on the envelope received.
	e := &Envelope{Pid: 1, MsgId: 9, Msg: "pong"}
	if err := b.Send(e); err != nil {
		t.Fatal(err)
	}
	if got := recvDirect(t, a); got.Msg != "pong" || got.Pid != 2 {
		t.Fatalf("reply %+v", got)
	}
}

func equalMsg(a, b interface{}) bool {
	if x, ok := a.([]byte); ok {
		y, ok := b.([]byte)
		return ok && string(x) == string(y)
	}
	return a == b
}

// A sender may change its envelope and payload once Send returns: the
// message sent is the one at the time of the call.
func TestSendCopies(t *testing.T) {
	a, b := pair(t)
	buf := []byte("first")
	e := &Envelope{Pid: 2, Msg: buf}
	if err := a.Send(e); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXX")
	e.MsgId = 7
	if err := a.Send(e); err != nil {
		t.Fatal(err)
	}
	if got := recvDirect(t, b); string(got.Msg.([]byte)) != "first" || got.MsgId != 0 {
		t.Fatalf("first message changed after Send: %+v", got)
	}
	if got := recvDirect(t, b); string(got.Msg.([]byte)) != "XXXXX" || got.MsgId != 7 {
		t.Fatalf("second message %+v", got)
	}
}

// Every refusal comes back to the caller, and the node goes on serving.
func TestSendErrors(t *testing.T) {
	a, b := pair(t)
	err := a.Send(&Envelope{Pid: 99, Msg: "x"})
	if !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("send to an unknown peer: %v, want CLUSTER_E_UNKNOWN_PEER", err)
	}
	err = a.Send(&Envelope{Pid: 2, Msg: make([]byte, 17<<20)})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("send of 17 MiB: %v, want CLUSTER_E_TOO_LARGE", err)
	}
	type unregistered struct{ A int }
	if err := a.Send(&Envelope{Pid: 2, Msg: unregistered{1}}); err == nil {
		t.Fatal("a value gob cannot encode was sent")
	}
	if err := a.Send(nil); err == nil {
		t.Fatal("a nil envelope was sent")
	}
	if err := a.Send(&Envelope{Pid: 2, Msg: "still here"}); err != nil {
		t.Fatal(err)
	}
	if got := recvDirect(t, b); got.Msg != "still here" {
		t.Fatalf("got %+v", got)
	}
	if c := a.Counters(); c != (Counters{}) {
		t.Fatalf("Send's errors are the caller's, not counted: %+v", c)
	}
}

func TestRecvTimeout(t *testing.T) {
	_, b := pair(t)
	if _, err := b.Recv(0); err != ErrTimeout {
		t.Fatalf("Recv(0) on an empty inbox: %v, want ErrTimeout", err)
	}
	t0 := time.Now()
	if _, err := b.Recv(30 * time.Millisecond); err != ErrTimeout {
		t.Fatalf("Recv(30ms): %v, want ErrTimeout", err)
	}
	if d := time.Since(t0); d < 30*time.Millisecond {
		t.Fatalf("Recv(30ms) gave up after %v", d)
	}
}

// SendMany sends in order and stops at the first envelope refused.
func TestSendMany(t *testing.T) {
	a, b := pair(t)
	var envs []*Envelope
	for i := 0; i < 3000; i++ { // more than one batch
		envs = append(envs, &Envelope{Pid: 2, MsgId: int64(i), Msg: []byte{byte(i)}})
	}
	if n, err := a.SendMany(envs); n != len(envs) || err != nil {
		t.Fatalf("SendMany: %d, %v", n, err)
	}
	for i := range envs {
		if e := recvDirect(t, b); e.MsgId != int64(i) {
			t.Fatalf("message %d came as %d", i, e.MsgId)
		}
	}
	bad := []*Envelope{{Pid: 2, MsgId: 1, Msg: "a"}, {Pid: 99, MsgId: 2}, {Pid: 2, MsgId: 3}}
	n, err := a.SendMany(bad)
	if n != 1 || !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("SendMany past an unknown peer: %d, %v; want 1 sent and CLUSTER_E_UNKNOWN_PEER", n, err)
	}
	n, err = a.SendMany([]*Envelope{{Pid: 2, MsgId: 4, Msg: "b"}, nil, {Pid: 2, MsgId: 5}})
	if n != 1 || err == nil {
		t.Fatalf("SendMany past a nil envelope: %d, %v", n, err)
	}
	for _, want := range []int64{1, 4} {
		if e := recvDirect(t, b); e.MsgId != want {
			t.Fatalf("got message %d, want %d (nothing after a refusal)", e.MsgId, want)
		}
	}
	if e, err := b.Recv(50 * time.Millisecond); err != ErrTimeout {
		t.Fatalf("a message after a refusal went out: %+v", e)
	}
}

// What Recv received ahead is not lost when the program turns to Inbox:
// Inbox starts with it, in order, and Recv then takes from Inbox.
func TestRecvThenInbox(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	const total = 500
	for i := 0; i < total; i++ {
		if err := a.Send(&Envelope{Pid: 2, MsgId: int64(i), Msg: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	next := int64(0)
	take := func(e *Envelope) {
		t.Helper()
		if e.MsgId != next {
			t.Fatalf("got message %d, want %d", e.MsgId, next)
		}
		next++
	}
	waitFor(t, 10*time.Second, "every message to arrive", func() bool {
		return stat(t, b).Received == total
	})
	take(recvDirect(t, b)) // and the other 499 with it, held ahead
	if d := stat(t, b).Delivered; d != total {
		t.Fatalf("one Recv took %d messages from the node, want all %d", d, total)
	}
	for next < total/2 {
		take(recvWithin(t, b, 10*time.Second))
	}
	for next < total {
		take(recvDirect(t, b))
	}
}

// stat is the node's counters that the tests read.
func stat(t *testing.T, n *Node) (st struct{ Received, Delivered int }) {
	t.Helper()
	text, err := n.Stats()
	if err == nil {
		err = json.Unmarshal([]byte(text), &st)
	}
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Concurrent receivers share the messages: each exactly once.
func TestConcurrentRecv(t *testing.T) {
	a, b := pair(t)
	const total, workers = 4000, 4
	seen := make([]int, total)
	var mu sync.Mutex
	var got atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(30 * time.Second)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for got.Load() < total && time.Now().Before(deadline) {
				e, err := b.Recv(50 * time.Millisecond)
				if err == ErrTimeout {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				got.Add(1)
				mu.Lock()
				seen[e.MsgId]++
				mu.Unlock()
			}
		}()
	}
	envs := make([]*Envelope, total)
	for i := range envs {
		envs[i] = &Envelope{Pid: 2, MsgId: int64(i), Msg: []byte("x")}
	}
	if _, err := a.SendMany(envs); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, c := range seen {
		if c != 1 {
			t.Fatalf("message %d received %d times", i, c)
		}
	}
	if e, err := b.Recv(50 * time.Millisecond); err != ErrTimeout {
		t.Fatalf("a message too many: %+v, %v", e, err)
	}
}

// A poll that finds nothing allocates nothing.
func TestEmptyRecvDoesNotAllocate(t *testing.T) {
	_, b := pair(t)
	if n := testing.AllocsPerRun(100, func() {
		if _, err := b.Recv(0); err != ErrTimeout {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per empty Recv(0)", n)
	}
}

// A stream of messages that cannot be decoded does not keep Recv past its
// timeout; they are counted.
func TestRecvTimeoutUnderUndecodableStream(t *testing.T) {
	cfg := freeConfig(t, 2)
	b := startAll(t, cfg, 2)[0].(*Node)
	text, err := configText(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, err := ffi.NewNode(1, text) // a raw member: it sends what Go would not
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := ffi.NewSender()
		defer s.Free()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// kind 2 is JSON, and "{" is not. A short timeout: once the
			// test stops reading, the queues fill and the send must see stop.
			err := s.Send(a, 2, 0, 2, []byte("{"), 10)
			if err != nil && !errors.Is(err, ErrFull) {
				return
			}
		}
	}()
	defer func() { close(stop); <-done; a.Close(); a.Free() }()
	waitFor(t, 10*time.Second, "bad messages to arrive", func() bool {
		return stat(t, b).Received > 0
	})
	t0 := time.Now()
	if _, err := b.Recv(100 * time.Millisecond); err != ErrTimeout {
		t.Fatalf("Recv: %v, want ErrTimeout", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Fatalf("Recv(100ms) returned after %v", d)
	}
	if b.Counters().DecodeErrors == 0 {
		t.Fatal("undecodable messages not counted")
	}
}

// Sending a []byte or a string with Send allocates nothing: the message is
// copied into C memory and the call's bookkeeping lives there too.
func TestSendDoesNotAllocate(t *testing.T) {
	a, b := pair(t)
	e := &Envelope{Pid: 2, Msg: []byte("sixteen bytes!!!")}
	text := &Envelope{Pid: 2, Msg: "some text"}
	const runs = 200 // twice per run, well within the peer's queue
	if n := testing.AllocsPerRun(runs, func() {
		if a.Send(e) != nil || a.Send(text) != nil {
			t.Fatal("send failed")
		}
	}); n != 0 {
		t.Errorf("%v allocations per Send", n)
	}
	waitFor(t, 10*time.Second, "every message to arrive", func() bool {
		return stat(t, b).Received == 2*(runs+1)
	})
}
