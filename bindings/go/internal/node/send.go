package node

import (
	"errors"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// The send path: the goroutine that serves Outbox (started by Start), and
// the synchronous Send and SendMany. Both encode envelopes into C memory
// and send them with one cluster_send_batch call per batch.

// sendLoop takes envelopes from Outbox, as many as are there up to
// batchMax, and sends them with one cgo call. After stop it sends what is
// left in Outbox and ends.
func (n *Node) sendLoop() {
	defer n.wg.Done()
	defer close(n.sent)
	b := ffi.NewSendBatch(batchMax)
	defer b.Free()
	for {
		select {
		case e := <-n.outbox:
			n.add(b, e)
		case <-n.stop:
			n.drain(b)
			return
		}
	fill:
		for !b.Full() {
			select {
			case e := <-n.outbox:
				n.add(b, e)
			default:
				break fill
			}
		}
		if !n.send(b) {
			return
		}
	}
}

// drain sends what Outbox holds when Close is called.
func (n *Node) drain(b *ffi.SendBatch) {
	for {
		select {
		case e := <-n.outbox:
			n.add(b, e)
			if b.Full() && !n.send(b) {
				return
			}
		default:
			n.send(b)
			return
		}
	}
}

func (n *Node) add(b *ffi.SendBatch, e *Envelope) {
	if e == nil {
		n.discarded.Add(1)
		n.log.printf("nil", "cluster: server %d: nil envelope on Outbox ignored", n.pid)
		return
	}
	kind, data, err := encode(e.Msg)
	if err != nil {
		n.encodeErrors.Add(1)
		n.log.printf("encode", "cluster: server %d: message %d to %d not sent: %v", n.pid, e.MsgId, e.Pid, err)
		return
	}
	b.Add(int64(e.Pid), e.MsgId, kind, data)
}

// send sends the batch, waiting for room in live peers' queues until the
// node closes; false once the node is closed.
func (n *Node) send(b *ffi.SendBatch) bool {
	if b.Len() == 0 {
		return true
	}
	unsent, err := b.Send(n.h, -1, func(_ int, err error) bool {
		n.sendErrors.Add(1)
		n.log.printf(errName(err), "cluster: server %d: %v", n.pid, err)
		return true
	})
	n.discarded.Add(uint64(unsent))
	return err == nil
}

// errName is the status name of err (e.g. "CLUSTER_E_FULL") if the library
// reported it, else "error": the key of its log line.
func errName(err error) string {
	var e *ffi.Error
	if errors.As(err, &e) {
		return e.Name
	}
	return "error"
}

// Send and Recv are the synchronous way in and out of a Node, beside
// Outbox and Inbox: the calling goroutine calls into the library itself,
// with no goroutine in between, so a send's error comes back to its caller
// and a request/reply round trip skips four goroutine hand-offs.

// Send sends e now, from the calling goroutine: it returns once the node
// has queued e (waiting, as Outbox does, while a live peer's queue is full)
// or with the reason it did not: an unknown peer or a payload too large
// (*ffi.Error), a Msg that cannot be encoded, ffi.ErrClosed after Close. The
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
	if errors.Is(err, ffi.ErrClosed) {
		err = ffi.ErrClosed
	}
	return sent, err
}
