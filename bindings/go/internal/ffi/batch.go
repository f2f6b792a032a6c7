package ffi

/*
#include <stdlib.h>
#include <string.h>
#include "cluster.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// arenaStart is the initial size of a send batch's payload arena; an arena
// grown past arenaKeep by a large message is given back after the send.
const (
	arenaStart = 64 << 10
	arenaKeep  = 4 << 20
)

// SendBatch collects envelopes in C memory (headers and a payload arena) and
// sends them with one cluster_send_batch call. One goroutine uses it at a time.
type SendBatch struct {
	envs  []C.cluster_envelope_t // view of C memory
	offs  []int                  // payload offset of each envelope in the arena
	n     int
	arena unsafe.Pointer
	size  int // arena capacity
	used  int
	sent  *C.size_t // C memory: a Go variable passed by address would escape
	e     errbuf
}

// NewSendBatch makes a batch of up to max envelopes. Release it with Free.
func NewSendBatch(max int) *SendBatch {
	p := (*C.cluster_envelope_t)(C.calloc(C.size_t(max), C.sizeof_cluster_envelope_t))
	return &SendBatch{
		envs:  unsafe.Slice(p, max),
		offs:  make([]int, max),
		arena: C.malloc(arenaStart),
		size:  arenaStart,
		sent:  (*C.size_t)(C.calloc(1, C.sizeof_size_t)),
		e:     newErrbuf(),
	}
}

// Len is the number of envelopes collected.
func (b *SendBatch) Len() int { return b.n }

// Full reports whether no more envelopes fit.
func (b *SendBatch) Full() bool { return b.n == len(b.envs) }

// Add copies an envelope into the batch; the caller checks Full first.
func (b *SendBatch) Add(pid, msgID int64, kind uint32, data []byte) {
	if b.used+len(data) > b.size {
		size := 2 * b.size
		for size < b.used+len(data) {
			size *= 2
		}
		b.arena = C.realloc(b.arena, C.size_t(size))
		b.size = size
	}
	// A Go copy, not C.memcpy: no cgo call (and no pointer check) per message.
	copy(unsafe.Slice((*byte)(unsafe.Add(b.arena, b.used)), len(data)), data)
	b.envs[b.n] = C.cluster_envelope_t{
		pid:    C.int64_t(pid),
		msg_id: C.int64_t(msgID),
		kind:   C.uint32_t(kind),
		len:    C.size_t(len(data)),
	}
	b.offs[b.n] = b.used
	b.used += len(data)
	b.n++
}

// Send sends the collected envelopes in order and empties the batch,
// waiting up to timeoutMs for room in a live peer's queue (negative: until
// room or close). An envelope the node refuses (unknown peer, too large,
// queue full) is passed to refused with its index, and the rest are still
// sent if it returns true; a closed node ends the send with its error.
// Send returns how many envelopes were neither sent nor refused.
func (b *SendBatch) Send(n *Node, timeoutMs int64, refused func(i int, err error) bool) (int, error) {
	defer b.reset()
	for i := 0; i < b.n; i++ {
		b.envs[i].data = (*C.uint8_t)(unsafe.Add(b.arena, b.offs[i]))
	}
	for start := 0; start < b.n; {
		*b.sent = 0
		rc := C.cluster_send_batch(n.p, &b.envs[start], C.size_t(b.n-start), C.int64_t(timeoutMs), b.sent, b.e.p)
		runtime.KeepAlive(n)
		if rc == C.CLUSTER_OK {
			return 0, nil
		}
		err := b.e.check(rc)
		at := start + int(*b.sent)
		if rc == C.CLUSTER_E_CLOSED {
			return b.n - at, err
		}
		if !refused(at, err) {
			return b.n - at - 1, nil
		}
		start = at + 1
	}
	return 0, nil
}

func (b *SendBatch) reset() {
	b.n, b.used = 0, 0
	if b.size > arenaKeep {
		C.free(b.arena)
		b.arena, b.size = C.malloc(arenaStart), arenaStart
	}
}

// Free releases the batch's C memory.
func (b *SendBatch) Free() {
	C.free(unsafe.Pointer(&b.envs[0]))
	C.free(b.arena)
	C.free(unsafe.Pointer(b.sent))
	b.e.free()
	b.envs, b.arena = nil, nil
}

// RecvBatch receives up to its capacity of envelopes per cluster_recv_batch
// call into C memory it owns. One goroutine uses it at a time.
type RecvBatch struct {
	envs []C.cluster_envelope_t // view of C memory
	got  *C.size_t              // C memory, as SendBatch.sent
	e    errbuf
}

// NewRecvBatch makes a receive buffer for up to max envelopes. Release it
// with Free.
func NewRecvBatch(max int) *RecvBatch {
	p := (*C.cluster_envelope_t)(C.calloc(C.size_t(max), C.sizeof_cluster_envelope_t))
	return &RecvBatch{
		envs: unsafe.Slice(p, max),
		got:  (*C.size_t)(C.calloc(1, C.sizeof_size_t)),
		e:    newErrbuf(),
	}
}

// Recv waits up to timeoutMs (negative: until a message or close) for the
// first envelope, takes what else is there (up to max, and no more than the
// buffer holds), and calls each with every envelope in order. data is a view of the C payload, valid only during the
// call: each copies what it keeps. The C payloads are released before Recv
// returns.
func (b *RecvBatch) Recv(n *Node, max int, timeoutMs int64, each func(pid, msgID int64, kind uint32, data []byte)) error {
	*b.got = 0
	rc := C.cluster_recv_batch(n.p, &b.envs[0], C.size_t(min(max, len(b.envs))), b.got, C.int64_t(timeoutMs), b.e.p)
	runtime.KeepAlive(n)
	if err := b.e.check(rc); err != nil {
		return err
	}
	got := *b.got
	defer C.cluster_envelopes_free(&b.envs[0], got)
	for i := range b.envs[:got] {
		env := &b.envs[i]
		each(int64(env.pid), int64(env.msg_id), uint32(env.kind), unsafe.Slice((*byte)(env.data), int(env.len)))
	}
	return nil
}

// Free releases the buffer's C memory.
func (b *RecvBatch) Free() {
	C.free(unsafe.Pointer(&b.envs[0]))
	C.free(unsafe.Pointer(b.got))
	b.e.free()
	b.envs = nil
}
