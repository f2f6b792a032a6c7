package cluster

import (
	"errors"
	"runtime"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// A Node's goroutines: one serves Outbox (started by New), one feeds Inbox
// (started by the first Inbox call).

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

// recvLoop takes the right to receive from the node (waiting for a Recv
// in progress), then receives batches (blocking inside the library until
// a message comes or the node closes) and puts them on Inbox, starting
// with any a Recv received ahead.
func (n *Node) recvLoop() {
	defer n.wg.Done()
	r := &n.rx
	select {
	case r.turn <- struct{}{}: // kept: from now on only this loop receives
	case <-n.stop:
		return
	}
	for {
		for e := r.pop(); e != nil; e = r.pop() {
			select { // a plain channel send while Inbox has room
			case n.inbox <- e:
				continue
			default:
			}
			select {
			case n.inbox <- e:
			case <-n.stop:
				return
			}
		}
		// Let the reader just woken run on this P now: the next receive
		// may block in C, and a P held by a blocked cgo call is handed
		// on only when sysmon notices, which costs tens of µs a message.
		runtime.Gosched()
		if err := n.fill(-1); err != nil {
			if !errors.Is(err, ErrClosed) {
				n.log.printf("recv", "cluster: server %d: receive failed, inbox stops: %v", n.pid, err)
			}
			return
		}
	}
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
