package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// RecvContext returns a message sent while it waits.
func TestRecvContextLaterMessage(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan *Envelope, 1)
	go func() {
		e, err := b.RecvContext(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- e
	}()
	time.Sleep(20 * time.Millisecond) // most runs: sent while it waits
	if err := a.Send(&Envelope{Pid: 2, MsgId: 5, Msg: "later"}); err != nil {
		t.Fatal(err)
	}
	if e := <-got; e == nil || e.Msg != "later" || e.MsgId != 5 || e.Pid != 1 {
		t.Fatalf("got %+v", e)
	}
}

// Every message wakes a waiting RecvContext: sent one at a time, each at
// a random point of the receiver's take-then-wait, none is missed (a lost
// wake-up would leave the receive waiting for the next message, which
// never comes).
func TestRecvContextEveryWakeup(t *testing.T) {
	a, b := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 500; i++ {
		got := make(chan error, 1)
		go func() {
			e, err := b.RecvContext(ctx)
			if err == nil && e.MsgId != int64(i) {
				err = errors.New("wrong message")
			}
			got <- err
		}()
		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		if err := a.Send(&Envelope{Pid: 2, MsgId: int64(i), Msg: "x"}); err != nil {
			t.Fatal(err)
		}
		stuck := time.NewTimer(5 * time.Second)
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
		case <-stuck.C:
			t.Fatalf("message %d did not wake RecvContext", i)
		}
		stuck.Stop()
	}
}

// A context done while RecvContext waits ends it promptly with ctx.Err(),
// and it takes nothing: the next message goes to the next receive.
func TestRecvContextCancelTakesNothing(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.RecvContext(ctx)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // most runs: cancelled while it waits
	start := time.Now()
	cancel()
	endsWith(t, done, context.Canceled, "cancel")
	if d := time.Since(start); d > time.Second {
		t.Errorf("RecvContext took %v to notice the cancel", d)
	}

	short, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	if _, err := b.RecvContext(short); err != context.DeadlineExceeded {
		t.Fatalf("RecvContext past its deadline: %v", err)
	}
	if err := a.Send(&Envelope{Pid: 2, MsgId: 1, Msg: "after"}); err != nil {
		t.Fatal(err)
	}
	if e := recvDirect(t, b); e.Msg != "after" {
		t.Fatalf("got %+v", e)
	}
	// A context done before the call takes nothing either, even with a
	// message waiting.
	if err := a.Send(&Envelope{Pid: 2, MsgId: 2, Msg: "waiting"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the message to arrive", func() bool {
		var st struct{ Received int }
		text, _ := b.Stats()
		return json.Unmarshal([]byte(text), &st) == nil && st.Received == 2
	})
	if _, err := b.RecvContext(ctx); err != context.Canceled {
		t.Fatalf("RecvContext with a cancelled context: %v", err)
	}
	if e := recvDirect(t, b); e.Msg != "waiting" {
		t.Fatalf("got %+v", e)
	}
}

// Receivers whose contexts time out at random points while messages flow:
// every message is received exactly once, by one of them, and no
// descriptor is left open.
func TestRecvContextCancellationStorm(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	// Warm up: the readiness descriptor is made by the first wait.
	warm, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := b.RecvContext(warm); err != context.DeadlineExceeded {
		t.Fatal(err)
	}
	fds := eventFDs(t)
	const total, workers = 5000, 8
	var seen [total]atomic.Int32
	var got, cancelled atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for got.Load() < total && time.Now().Before(deadline) {
				var e *Envelope
				var err error
				if w == 0 { // one plain Recv among them
					e, err = b.Recv(time.Millisecond)
				} else {
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(2000))*time.Microsecond)
					e, err = b.RecvContext(ctx)
					cancel()
				}
				switch {
				case err == ErrTimeout || errors.Is(err, context.DeadlineExceeded):
					cancelled.Add(1)
					continue
				case err != nil:
					t.Error(err)
					return
				}
				seen[e.MsgId].Add(1)
				got.Add(1)
			}
		}(w)
	}
	for i := 0; i < total; i++ {
		if err := a.Send(&Envelope{Pid: 2, MsgId: int64(i), Msg: []byte("x")}); err != nil {
			t.Fatal(err)
		}
		if rand.IntN(20) == 0 { // a pause now and then, for receivers to wait
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		}
	}
	wg.Wait()
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("message %d received %d times (%d received in all)", i, c, got.Load())
		}
	}
	if e, err := b.Recv(50 * time.Millisecond); err != ErrTimeout {
		t.Fatalf("a message too many: %+v, %v", e, err)
	}
	if after := eventFDs(t); after != fds {
		t.Errorf("%d eventfds open after the storm, %d before", after, fds)
	}
	t.Logf("%d receives timed out or were cancelled", cancelled.Load())
}

// eventFDs is how many eventfds the process has open (the runtime's, the
// nodes' and their dups).
func eventFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == "anon_inode:[eventfd]" {
			n++
		}
	}
	return n
}

// SendContext to a peer that does not read waits for room until its
// context is done, then returns ctx.Err() with nothing dropped or counted,
// and sends once the peer reads again.
func TestSendContextFullQueue(t *testing.T) {
	checkNoLeak(t)
	cfg := freeConfig(t, 2)
	cfg.InboxSize, cfg.OutboxSize = 4, 4
	srvs := startAll(t, cfg, 1, 2)
	a, b := srvs[0].(*Node), srvs[1].(*Node)
	payload := make([]byte, 16<<10) // fills the socket buffers in between sooner
	sent := 0
	for ; ; sent++ {
		if sent == 100000 {
			t.Fatal("the peer's queue never filled")
		}
		const wait = 200 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		start := time.Now()
		err := a.SendContext(ctx, &Envelope{Pid: 2, MsgId: int64(sent), Msg: payload})
		cancel()
		if err == nil {
			continue
		}
		if err != context.DeadlineExceeded {
			t.Fatalf("SendContext %d: %v", sent, err)
		}
		if d := time.Since(start); d < wait || d > wait+time.Second {
			t.Errorf("SendContext gave up after %v, its deadline %v", d, wait)
		}
		break
	}
	var st struct {
		Dropped struct {
			QueueFull int64 `json:"queue_full"`
		}
	}
	text, err := a.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(text), &st); err != nil {
		t.Fatalf("%v in %s", err, text)
	}
	if st.Dropped.QueueFull != 0 {
		t.Fatalf("dropped.queue_full %d after a cancelled SendContext: %s", st.Dropped.QueueFull, text)
	}
	// Another, cancelled while it waits.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	if err := a.SendContext(ctx, &Envelope{Pid: 2, MsgId: -1, Msg: payload}); err != context.Canceled {
		t.Fatalf("cancelled SendContext: %v", err)
	}

	// Drain: every message sent arrives, in order, and none of those refused.
	done := make(chan error, 1)
	go func() {
		for i := 0; i <= sent; i++ {
			e, err := b.Recv(20 * time.Second)
			if err == nil && e.MsgId != int64(i) {
				err = errors.New("out of order or a refused message")
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	if err := a.SendContext(ctx2, &Envelope{Pid: 2, MsgId: int64(sent), Msg: payload}); err != nil {
		t.Fatalf("SendContext once the peer reads: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e, err := b.Recv(50 * time.Millisecond); err != ErrTimeout {
		t.Fatalf("a message too many: %+v, %v", e, err)
	}
	text, _ = a.Stats()
	if err := json.Unmarshal([]byte(text), &st); err != nil || st.Dropped.QueueFull != 0 {
		t.Fatalf("dropped.queue_full %d (%v): %s", st.Dropped.QueueFull, err, text)
	}
}

// SendContext's other outcomes: a done context sends nothing; errors are
// Send's; a broadcast reaches every peer.
func TestSendContextErrors(t *testing.T) {
	srvs := startFree(t, 3)
	a, b, c := srvs[0].(*Node), srvs[1].(*Node), srvs[2].(*Node)
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.SendContext(done, &Envelope{Pid: 2, Msg: "no"}); err != context.Canceled {
		t.Fatalf("SendContext with a done context: %v", err)
	}
	ctx := context.Background()
	if err := a.SendContext(ctx, &Envelope{Pid: 99, Msg: "x"}); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("unknown peer: %v", err)
	}
	if err := a.SendContext(ctx, &Envelope{Pid: 2, Msg: unregistered{1}}); err == nil {
		t.Fatal("an unencodable message was sent")
	}
	if err := a.SendContext(ctx, nil); err == nil {
		t.Fatal("a nil envelope was sent")
	}
	if err := a.SendContext(ctx, &Envelope{Pid: BROADCAST, MsgId: 7, Msg: "all"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{b, c} {
		if e := recvDirect(t, n); e.Msg != "all" || e.MsgId != 7 || e.Pid != 1 {
			t.Fatalf("server %d got %+v", n.Pid(), e)
		}
	}
	a.Close()
	if err := a.SendContext(ctx, &Envelope{Pid: 2, Msg: "x"}); err != ErrClosed {
		t.Fatalf("SendContext after Close: %v", err)
	}
}

// Close wakes a RecvContext waiting with the closed error.
func TestRecvContextClose(t *testing.T) {
	checkNoLeak(t)
	_, b := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := b.RecvContext(context.Background())
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // most runs: closed while it waits
	b.Close()
	endsWith(t, done, ErrClosed, "Close")
	if _, err := b.RecvContext(context.Background()); err != ErrClosed {
		t.Fatalf("RecvContext after Close: %v", err)
	}
}

// endsWith fails the test unless the waiting RecvContext reporting on done
// ends with want within 10 s of what.
func endsWith(t *testing.T, done <-chan error, want error, what string) {
	t.Helper()
	select {
	case err := <-done:
		if err != want {
			t.Fatalf("RecvContext at %s: %v, want %v", what, err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not end RecvContext", what)
	}
}
