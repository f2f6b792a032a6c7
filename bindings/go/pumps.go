package cluster

import (
	"errors"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// The goroutine that serves Outbox (started by New); the one that feeds
// Inbox is in recv.go.

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
	var e *Error
	if errors.As(err, &e) {
		return e.Name
	}
	return "error"
}
