package cluster

import (
	"runtime"
	"unsafe"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// The two goroutines of a Node: one serves Outbox, one feeds Inbox.

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
	unsent, err := b.Send(n.h, -1, func(_ int, err error) {
		n.sendErrors.Add(1)
		n.log.printf(ffi.Name(err), "cluster: server %d: %v", n.pid, err)
	})
	n.discarded.Add(uint64(unsent))
	return err == nil
}

// recvLoop receives batches from the node (blocking inside the library
// until a message comes or the node closes) and puts them on Inbox.
func (n *Node) recvLoop() {
	defer n.wg.Done()
	b := ffi.NewRecvBatch(batchMax)
	defer b.Free()
	got := make([]*Envelope, 0, batchMax)
	var mem recvMem
	for {
		got = got[:0]
		err := b.Recv(n.h, batchMax, -1, func(pid, msgID int64, kind uint32, data []byte) {
			msg, err := mem.decode(kind, data)
			if err != nil {
				n.decodeErrors.Add(1)
				n.log.printf("decode", "cluster: server %d: message %d from %d dropped: %v", n.pid, msgID, pid, err)
				return
			}
			e := mem.envelope()
			*e = Envelope{Pid: int(pid), MsgId: msgID, Msg: msg}
			got = append(got, e)
		})
		if err != nil {
			if ffi.Code(err) != ffi.ErrClosed {
				n.log.printf("recv", "cluster: server %d: receive failed, inbox stops: %v", n.pid, err)
			}
			return
		}
		for _, e := range got {
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
		// Let the reader just woken run on this P now: the next Recv
		// may block in C, and a P held by a blocked cgo call is handed
		// on only when sysmon notices, which costs tens of µs a message.
		runtime.Gosched()
	}
}

// Received envelopes and small payloads are carved out of blocks of Go
// memory, so a message costs one allocation (the interface that holds its
// []byte or string) instead of three.
// A block stays alive while any envelope or payload carved from it does.
const (
	envBlock  = 64      // envelopes a block
	byteBlock = 4 << 10 // bytes a block of payloads
	smallMax  = 256     // larger payloads get their own allocation
)

// recvMem hands out received envelopes and payloads; one goroutine uses it.
type recvMem struct {
	envs  []Envelope
	bytes []byte
}

func (m *recvMem) envelope() *Envelope {
	if len(m.envs) == 0 {
		m.envs = make([]Envelope, envBlock)
	}
	e := &m.envs[0]
	m.envs = m.envs[1:]
	return e
}

// copy copies view (C memory) into Go memory.
func (m *recvMem) copy(view []byte) []byte {
	if len(view) > smallMax {
		return append([]byte(nil), view...)
	}
	if len(m.bytes) < len(view) {
		m.bytes = make([]byte, byteBlock)
	}
	out := m.bytes[:len(view):len(view)]
	m.bytes = m.bytes[len(view):]
	copy(out, view)
	return out
}

// decode decodes a payload still in C memory from a Go copy. Text becomes
// a string over its copy: no region of a block is written twice, so the
// string stays immutable.
func (m *recvMem) decode(kind uint32, view []byte) (interface{}, error) {
	b := m.copy(view)
	if kind == kindText {
		return unsafe.String(unsafe.SliceData(b), len(b)), nil
	}
	return decode(kind, b)
}
