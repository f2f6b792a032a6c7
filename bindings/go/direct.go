package cluster

import (
	"errors"

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
