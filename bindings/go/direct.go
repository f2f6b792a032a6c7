package cluster

import (
	"errors"
	"time"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// Send and Recv are the synchronous way in and out of a Node, beside
// Outbox and Inbox: the calling goroutine calls into the library itself,
// with no goroutine in between, so a send's error comes back to its caller
// and a request/reply round trip skips four goroutine hand-offs.

// Send sends e now, from the calling goroutine: it returns once the node
// has queued e (waiting, as Outbox does, while a live peer's queue is full)
// or with the reason it did not: an unknown peer or a payload too large
// (*Error), a Msg that cannot be encoded, ErrClosed after Close. The
// message is copied: e and its Msg may be reused once Send returns.
// Envelopes sent with Send and on Outbox keep no order between them.
// Concurrent calls of Send and SendMany take turns: one waiting for room in
// a full peer's queue holds up the others.
func (n *Node) Send(e *Envelope) error {
	_, err := n.SendMany([]*Envelope{e})
	return err
}

// errNil is the error of sending a nil envelope.
var errNil = errors.New("cluster: nil envelope")

// SendMany sends envs in order, as Send would one by one, with one call
// into the library per 1024: it stops at the first envelope that is nil,
// cannot be encoded or is refused, and returns how many were sent and why
// it stopped. Concurrent calls take turns, as Send's do.
func (n *Node) SendMany(envs []*Envelope) (int, error) {
	sent := 0
	err := n.with(func(h *ffi.Node) error {
		n.batchMu.Lock()
		defer n.batchMu.Unlock()
		if n.batch == nil { // made here: Close frees it under the same lock
			n.batch = ffi.NewSendBatch(batchMax)
		}
		b := n.batch
		var stop error
		for sent < len(envs) && stop == nil {
			added := 0
			for _, e := range envs[sent:] {
				if b.Full() {
					break
				}
				if e == nil {
					stop = errNil
					break
				}
				kind, data, err := encode(e.Msg)
				if err != nil {
					stop = err
					break
				}
				b.Add(int64(e.Pid), e.MsgId, kind, data)
				added++
			}
			refused := 0
			unsent, err := b.Send(h, -1, func(_ int, err error) bool {
				stop, refused = err, 1
				return false
			})
			sent += added - unsent - refused
			if err != nil {
				return err
			}
		}
		return stop
	})
	if errors.Is(err, ErrClosed) {
		err = ErrClosed
	}
	return sent, err
}

// Recv returns the next envelope received, Pid set to the sender, waiting
// up to timeout for it (0: not at all; negative: until one comes or
// Close). It fails with ErrTimeout, or ErrClosed after Close. Recv takes
// envelopes in batches and hands them out in order to its callers, with no
// goroutine in between. Use Recv or Inbox: once Inbox has been called, its
// goroutine receives and Recv takes from Inbox. Safe for concurrent use.
func (n *Node) Recv(timeout time.Duration) (*Envelope, error) {
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if !n.pumping() {
		if e := n.rx.pop(); e != nil { // received ahead
			return e, nil
		}
	}
	w := newWait(timeout)
	defer w.stop()
	if !n.pumping() {
		if e, err := n.recvDirect(&w); e != nil || err != errPumping {
			return e, err
		}
	}
	return n.recvInbox(&w)
}

// errPumping: the Inbox goroutine receives now.
var errPumping = errors.New("cluster: Inbox receives")

// recvDirect receives from the node unless the Inbox goroutine does (then
// errPumping).
func (n *Node) recvDirect(w *wait) (*Envelope, error) {
	if err := n.takeTurn(w); err != nil {
		return nil, err
	}
	defer func() { <-n.rx.turn }()
	if e := n.rx.pop(); e != nil {
		return e, nil
	}
	for !n.pumping() {
		err := n.fill(w.ms())
		if e := n.rx.pop(); e != nil {
			return e, nil
		}
		switch {
		case errors.Is(err, ErrTimeout):
			return nil, ErrTimeout
		case errors.Is(err, ErrClosed):
			return nil, ErrClosed
		case err != nil:
			return nil, err
		case w.ms() == 0:
			return nil, ErrTimeout
		}
		// Every envelope of the batch failed to decode: wait on.
	}
	return nil, errPumping
}

// takeTurn takes the right to receive from the node within the time
// left: errPumping once the Inbox goroutine has it for good, ErrClosed
// after Close.
func (n *Node) takeTurn(w *wait) error {
	select {
	case n.rx.turn <- struct{}{}:
		return nil
	default:
	}
	if n.pumping() {
		return errPumping
	}
	if w.timeout == 0 {
		return ErrTimeout
	}
	select {
	case n.rx.turn <- struct{}{}:
		return nil
	case <-n.pumped:
		return errPumping
	case <-n.stop:
		return ErrClosed
	case <-w.expired():
		return ErrTimeout
	}
}

// recvInbox is Recv once the Inbox goroutine receives.
func (n *Node) recvInbox(w *wait) (*Envelope, error) {
	select {
	case e := <-n.inbox:
		return e, nil
	default:
	}
	if w.timeout == 0 {
		return nil, ErrTimeout
	}
	select {
	case e := <-n.inbox:
		return e, nil
	case <-n.stop:
		return nil, ErrClosed
	case <-w.expired():
		return nil, ErrTimeout
	}
}

// wait is one call's timeout (0: do not wait; negative: no limit), its
// timer made only if the call has to wait.
type wait struct {
	timeout  time.Duration
	deadline time.Time
	timer    *time.Timer
}

func newWait(timeout time.Duration) wait {
	w := wait{timeout: timeout}
	if timeout > 0 {
		w.deadline = time.Now().Add(timeout)
	}
	return w
}

// expired is a channel that fires at the deadline (never without one).
func (w *wait) expired() <-chan time.Time {
	if w.timeout < 0 {
		return nil
	}
	if w.timer == nil {
		w.timer = time.NewTimer(time.Until(w.deadline))
	}
	return w.timer.C
}

// ms is the time left in whole milliseconds, rounded up, for the C ABI.
func (w *wait) ms() int64 {
	if w.timeout < 0 {
		return -1
	}
	left := time.Until(w.deadline)
	if w.timeout == 0 || left <= 0 {
		return 0
	}
	return int64((left + time.Millisecond - 1) / time.Millisecond)
}

func (w *wait) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
}
