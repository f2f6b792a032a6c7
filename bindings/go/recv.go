package cluster

import (
	"sync"
	"unsafe"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// receiver is a node's side of receiving, shared by Recv and the Inbox
// goroutine: whoever holds turn calls into the node, and what one call
// brings beyond the envelope asked for waits in ready, in order.
//
// The envelopes of a batch are consecutive in their blocks, so ready
// holds runs of them, not a pointer each: while the garbage collector
// marks (often, at millions of small messages a second), every pointer
// written costs a write barrier.
type receiver struct {
	turn  chan struct{} // holds a token while someone receives
	batch *ffi.RecvBatch
	each  func(pid, msgID int64, kind uint32, data []byte)
	mem   recvMem

	mu    sync.Mutex
	ready [][]Envelope // runs received, not yet handed out
	run   int          // ready[run] is the run being handed out,
	at    int          // from ready[run][at]
}

// pop is the next envelope received ahead, or nil.
func (r *receiver) pop() *Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.run == len(r.ready) {
		return nil
	}
	e := &r.ready[r.run][r.at]
	if r.at++; r.at == len(r.ready[r.run]) {
		r.ready[r.run] = nil
		r.run, r.at = r.run+1, 0
		if r.run == len(r.ready) {
			r.ready, r.run = r.ready[:0], 0
		}
	}
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
				*r.mem.envelope() = Envelope{Pid: int(pid), MsgId: msgID, Msg: msg}
			}
		}
		err := r.batch.Recv(h, batchMax, timeoutMs, r.each)
		r.mu.Lock()
		r.ready = r.mem.runs(r.ready)
		r.mu.Unlock()
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
// message costs no allocation of its own instead of three. A block stays
// alive while anything carved from it does.
const (
	envBlock  = 64      // envelopes (and boxes) a block
	byteBlock = 4 << 10 // bytes a block of payloads
	smallMax  = 256     // larger payloads get their own allocation
)

// recvMem hands out received envelopes and payloads; one goroutine uses
// it. Blocks are used up by index, so handing out writes no pointer.
type recvMem struct {
	envs    block[Envelope]
	from    int // envs.items[from:envs.used] are handed out but not in a run yet
	full    [][]Envelope
	bytes   block[byte]
	slices  block[[]byte] // boxes of []byte messages
	strings block[string] // boxes of string messages
}

// block is a slice of Go memory handed out from the front.
type block[T any] struct {
	items []T
	used  int
}

// take hands out the next n items (n <= size), making a block of size
// first if fewer are left.
func (b *block[T]) take(n, size int) []T {
	if len(b.items)-b.used < n {
		b.items, b.used = make([]T, size), 0
	}
	out := b.items[b.used : b.used+n : b.used+n]
	b.used += n
	return out
}

func (b *block[T]) one() *T { return &b.take(1, envBlock)[0] }

// envelope hands out the next envelope.
func (m *recvMem) envelope() *Envelope {
	if m.envs.used == len(m.envs.items) && m.envs.used > m.from {
		m.full = append(m.full, m.envs.items[m.from:m.envs.used])
	}
	e := m.envs.one()
	if m.envs.used == 1 {
		m.from = 0
	}
	return e
}

// runs appends to ready the envelopes handed out since the last call, as
// runs of consecutive ones.
func (m *recvMem) runs(ready [][]Envelope) [][]Envelope {
	ready = append(ready, m.full...)
	clear(m.full)
	m.full = m.full[:0]
	if m.envs.used > m.from {
		ready = append(ready, m.envs.items[m.from:m.envs.used])
		m.from = m.envs.used
	}
	return ready
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

// copy copies view (C memory) into Go memory.
func (m *recvMem) copy(view []byte) []byte {
	if len(view) > smallMax {
		return append([]byte(nil), view...)
	}
	out := m.bytes.take(len(view), byteBlock)
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
		p := m.strings.one()
		*p = unsafe.String(unsafe.SliceData(b), len(b))
		return box(stringType, unsafe.Pointer(p)), nil
	case kindBytes:
		p := m.slices.one()
		*p = b
		return box(bytesType, unsafe.Pointer(p)), nil
	}
	return decode(kind, b)
}
