package cluster

import (
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"time"
)

// sendSeq sends messages first..first+n-1 (MsgId = the number) from a to
// 2; it reports a failure with t.Error, so it may run in a goroutine.
func sendSeq(t *testing.T, a *Node, first, n int) {
	envs := make([]*Envelope, n)
	for i := range envs {
		envs[i] = &Envelope{Pid: 2, MsgId: int64(first + i), Msg: []byte{byte(i)}}
	}
	if sent, err := a.SendMany(envs); sent != n || err != nil {
		t.Errorf("SendMany: %d, %v", sent, err)
	}
}

// One goroutine taking turns between Recv and <-Inbox gets every message
// once, in the order sent: both read the same path.
func TestRecvAndInboxInTurns(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	const total = 3000
	go sendSeq(t, a, 0, total)
	for i := 0; i < total; i++ {
		var e *Envelope
		switch {
		case i < total/3: // Recv alone: it fills Inbox itself
			e = recvDirect(t, b)
		case i%2 == 0:
			e = recvWithin(t, b, 10*time.Second) // starts the Inbox goroutine
		default:
			e = recvDirect(t, b)
		}
		if e.MsgId != int64(i) {
			t.Fatalf("message %d came as %d", i, e.MsgId)
		}
	}
	if e, err := b.Recv(50 * time.Millisecond); err != ErrTimeout {
		t.Fatalf("a message too many: %+v, %v", e, err)
	}
}

// takes records what one reader took, in its order.
type takes struct {
	mu  sync.Mutex
	ids [][]int64 // by reader
}

func (tk *takes) add(reader int, id int64) {
	tk.mu.Lock()
	tk.ids[reader] = append(tk.ids[reader], id)
	tk.mu.Unlock()
}

// check fails unless each reader saw its messages in increasing order and
// together they saw 0..n-1 once each, n >= min; it returns n.
func (tk *takes) check(t *testing.T, min int) int {
	t.Helper()
	var all []int64
	for r, ids := range tk.ids {
		for i := 1; i < len(ids); i++ {
			if ids[i] <= ids[i-1] {
				t.Fatalf("reader %d got %d after %d", r, ids[i], ids[i-1])
			}
		}
		all = append(all, ids...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	for i, id := range all {
		if id != int64(i) {
			t.Fatalf("the readers got %d where %d was due: a message lost or twice", id, i)
		}
	}
	if len(all) < min {
		t.Fatalf("%d messages, want at least %d", len(all), min)
	}
	return len(all)
}

// Readers with Recv and readers of Inbox at once share the messages: each
// once, and each reader's in the order sent.
func TestRecvAndInboxTogether(t *testing.T) { readTogether(t, 3, 2) }

// Readers that only call Recv share them too (what one Recv takes ahead,
// the next ones hand out), and so do readers of Inbox alone.
func TestRecvOnlyReaders(t *testing.T)  { readTogether(t, 3, 0) }
func TestInboxOnlyReaders(t *testing.T) { readTogether(t, 0, 2) }

// readTogether sends 20,000 messages to readers calling Recv and readers
// of Inbox, and checks that each came once, each reader's in order.
func readTogether(t *testing.T, recvs, inboxes int) {
	checkNoLeak(t)
	a, b := pair(t)
	const total = 20000
	tk := &takes{ids: make([][]int64, recvs+inboxes)}
	var wg sync.WaitGroup
	var left sync.WaitGroup // messages not taken yet
	left.Add(total)
	done := make(chan struct{})
	for r := 0; r < recvs; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				e, err := b.Recv(20 * time.Millisecond)
				select {
				case <-done:
					return
				default:
				}
				if err == ErrTimeout {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				tk.add(r, e.MsgId)
				left.Done()
			}
		}()
	}
	for r := recvs; r < recvs+inboxes; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case e := <-b.Inbox():
					tk.add(r, e.MsgId)
					left.Done()
				case <-done:
					return
				}
			}
		}()
	}
	sendSeq(t, a, 0, total)
	all := make(chan struct{})
	go func() { left.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatal("not every message arrived")
	}
	close(done)
	wg.Wait()
	tk.check(t, total)
}

// Close while readers of both kinds are busy loses nothing the node gave
// up: what the readers took, with what is left on Inbox after Close, is a
// gap-free prefix of what was sent (the node itself discards what it still
// held). A Recv blocked at Close returns ErrClosed.
func TestCloseWhileReceiving(t *testing.T) {
	checkNoLeak(t)
	cfg := freeConfig(t, 2)
	cfg.InboxSize = 64 // Inbox fills up: the Inbox goroutine waits for room
	srvs := startAll(t, cfg, 1, 2)
	a, b := srvs[0].(*Node), srvs[1].(*Node)
	const recvs, inboxes = 2, 1
	tk := &takes{ids: make([][]int64, recvs+inboxes+1)}
	stop := make(chan struct{})
	var senders, readers sync.WaitGroup
	senders.Add(1)
	go func() {
		defer senders.Done()
		e := &Envelope{Pid: 2, Msg: "x"}
		for i := int64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e.MsgId = i
			if a.Send(e) != nil {
				return
			}
		}
	}()
	for r := 0; r < recvs; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				e, err := b.Recv(-1)
				if err == ErrClosed {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				tk.add(r, e.MsgId)
			}
		}()
	}
	readers.Add(1)
	go func() {
		defer readers.Done()
		in := b.Inbox()
		for {
			select {
			case e := <-in:
				tk.add(recvs, e.MsgId)
				time.Sleep(time.Microsecond) // a slow reader: Inbox fills
			case <-stop:
				return
			}
		}
	}()
	waitFor(t, 10*time.Second, "messages to flow", func() bool {
		tk.mu.Lock()
		defer tk.mu.Unlock()
		n := 0
		for _, ids := range tk.ids {
			n += len(ids)
		}
		return n >= 1000
	})
	b.Close()
	close(stop)
	a.Close() // a Send waiting for room in the closed peer's queue returns
	readers.Wait()
	senders.Wait()
	for len(b.Inbox()) > 0 {
		tk.add(recvs+inboxes, (<-b.Inbox()).MsgId)
	}
	tk.check(t, 1000)
	if d := b.Counters().Discarded; d > 1 {
		t.Errorf("%d received envelopes discarded at Close; at most the one waiting for room on Inbox may be", d)
	}
}

// What a Recv took from the node beyond the envelope it returned is not
// lost at Close: it is on Inbox, in order, right after that envelope.
func TestCloseAfterRecvTookAhead(t *testing.T) {
	checkNoLeak(t)
	a, b := pair(t)
	const total = 200
	sendSeq(t, a, 0, total)
	waitFor(t, 10*time.Second, "every message in the node", func() bool {
		text, err := b.Stats()
		var st struct{ Received int }
		return err == nil && json.Unmarshal([]byte(text), &st) == nil && st.Received == total
	})
	if e := recvDirect(t, b); e.MsgId != 0 {
		t.Fatalf("first message %d", e.MsgId)
	}
	b.Close()
	if n := len(b.Inbox()); n != total-1 {
		t.Fatalf("%d messages on Inbox after Close, want the %d the Recv took ahead", n, total-1)
	}
	for i := 1; i < total; i++ {
		if e := <-b.Inbox(); e.MsgId != int64(i) {
			t.Fatalf("message %d came as %d", i, e.MsgId)
		}
	}
	if d := b.Counters().Discarded; d != 0 {
		t.Fatalf("%d discarded", d)
	}
}
