package cluster

import (
	"sync"
	"unsafe"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// receiver is a node's side of receiving, shared by Recv and the Inbox
// goroutine: whoever holds turn calls into the node, and what one call
// brings beyond the envelope asked for waits in ready, in order.
type receiver struct {
	turn  chan struct{} // holds a token while someone receives
	batch *ffi.RecvBatch
	each  func(pid, msgID int64, kind uint32, data []byte)
	mem   recvMem
	got   []*Envelope // the batch being received

	mu    sync.Mutex
	ready []*Envelope // received, not yet handed out
	next  int         // ready[next:] are still to hand out
}

// pop is the next envelope received ahead, or nil.
func (r *receiver) pop() *Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next == len(r.ready) {
		r.ready, r.next = r.ready[:0], 0
		return nil
	}
	e := r.ready[r.next]
	r.ready[r.next] = nil
	r.next++
	return e
}

// fill receives one batch into ready, waiting up to timeoutMs (negative:
// until a message or close) for its first envelope. Hold turn. A message
// that cannot be decoded is logged, counted and dropped.
func (n *Node) fill(timeoutMs int64) error {
	r := &n.rx
	return n.with(func(h *ffi.Node) error {
		if r.batch == nil { // made here: Close frees it under the same lock
			r.batch = ffi.NewRecvBatch(batchMax)
			r.each = func(pid, msgID int64, kind uint32, data []byte) {
				msg, err := r.mem.decode(kind, data)
				if err != nil {
					n.decodeErrors.Add(1)
					n.log.printf("decode", "cluster: server %d: message %d from %d dropped: %v", n.pid, msgID, pid, err)
					return
				}
				e := r.mem.envelope()
				*e = Envelope{Pid: int(pid), MsgId: msgID, Msg: msg}
				r.got = append(r.got, e)
			}
		}
		err := r.batch.Recv(h, batchMax, timeoutMs, r.each)
		r.mu.Lock()
		r.ready = append(r.ready, r.got...)
		r.mu.Unlock()
		clear(r.got)
		r.got = r.got[:0]
		return err
	})
}

// free releases the C memory; the node is closed and nobody receives.
func (r *receiver) free() {
	if r.batch != nil {
		r.batch.Free()
		r.batch = nil
	}
}

// Received envelopes, small payloads and the values their Msg interfaces
// point to are carved out of blocks of Go memory, so a []byte or string
// message costs no allocation of its own instead of four. A block stays
// alive while anything carved from it does.
const (
	envBlock  = 64      // envelopes (and boxes) a block
	byteBlock = 4 << 10 // bytes a block of payloads
	smallMax  = 256     // larger payloads get their own allocation
)

// recvMem hands out received envelopes and payloads; one goroutine uses it.
type recvMem struct {
	envs    []Envelope
	bytes   []byte
	slices  [][]byte // boxes of []byte messages
	strings []string // boxes of string messages
}

// eface is the layout of an interface{}: its dynamic type, and a pointer
// to its value (for a []byte or a string, a box the runtime allocates when
// converting). box builds such interfaces over boxes carved from a block;
// TestRecvMemBoxes checks that they behave as converted ones.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

func typeOf(v interface{}) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

var (
	bytesType  = typeOf([]byte(nil))
	stringType = typeOf("")
)

// box is the interface{} of type typ whose value is at p, which nothing
// writes again.
func box(typ, p unsafe.Pointer) (v interface{}) {
	e := (*eface)(unsafe.Pointer(&v))
	e.typ, e.data = typ, p
	return v
}

// carve takes the next element of a block, making a new block when empty.
func carve[T any](block *[]T) *T {
	if len(*block) == 0 {
		*block = make([]T, envBlock)
	}
	p := &(*block)[0]
	*block = (*block)[1:]
	return p
}

func (m *recvMem) envelope() *Envelope { return carve(&m.envs) }

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
	switch kind {
	case kindText:
		p := carve(&m.strings)
		*p = unsafe.String(unsafe.SliceData(b), len(b))
		return box(stringType, unsafe.Pointer(p)), nil
	case kindBytes:
		p := carve(&m.slices)
		*p = b
		return box(bytesType, unsafe.Pointer(p)), nil
	}
	return decode(kind, b)
}
