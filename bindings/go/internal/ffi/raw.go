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

// Raw sends and receives one message per cgo call (cluster_send and
// cluster_recv), with no Go-side codec or channels: the baseline the
// wrapper's benchmarks compare against. One goroutine uses it at a time.
type Raw struct {
	env   *C.cluster_envelope_t
	batch *RecvBatch
	buf   unsafe.Pointer
	size  int
	e     errbuf
}

// rawBatch is the most envelopes RecvBatch takes per call, as in the C bench.
const rawBatch = 256

// NewRaw makes a Raw able to send payloads up to size bytes. Release it
// with Free.
func NewRaw(size int) *Raw {
	return &Raw{
		env:   (*C.cluster_envelope_t)(C.calloc(1, C.sizeof_cluster_envelope_t)),
		batch: NewRecvBatch(rawBatch),
		buf:   C.malloc(C.size_t(size + 1)),
		size:  size,
		e:     newErrbuf(),
	}
}

// Send copies data (at most the size given to NewRaw) into C memory and
// sends it with cluster_send.
func (r *Raw) Send(n *Node, pid, msgID int64, kind uint32, data []byte, timeoutMs int64) error {
	// A Go copy, not C.memcpy: no second cgo call per message.
	size := copy(unsafe.Slice((*byte)(r.buf), r.size), data)
	*r.env = C.cluster_envelope_t{
		pid:    C.int64_t(pid),
		msg_id: C.int64_t(msgID),
		kind:   C.uint32_t(kind),
		data:   (*C.uint8_t)(r.buf),
		len:    C.size_t(size),
	}
	rc := C.cluster_send(n.p, r.env, C.int64_t(timeoutMs), r.e.p)
	runtime.KeepAlive(n)
	return r.e.check(rc)
}

// Recv receives one message with cluster_recv and returns the sender's id
// and the payload length; the payload is released at once.
func (r *Raw) Recv(n *Node, timeoutMs int64) (pid int64, size int, err error) {
	rc := C.cluster_recv(n.p, r.env, C.int64_t(timeoutMs), r.e.p)
	runtime.KeepAlive(n)
	if err := r.e.check(rc); err != nil {
		return 0, 0, err
	}
	pid, size = int64(r.env.pid), int(r.env.len)
	C.cluster_envelope_free(r.env)
	return pid, size, nil
}

// RecvBatch receives up to max (at most 256) envelopes with one
// cluster_recv_batch call, as the C bench does, and calls each with every
// sender, message id and payload in order. data is a view of C memory, valid only
// during the call (nothing is copied); the payloads are released before
// RecvBatch returns.
func (r *Raw) RecvBatch(n *Node, max int, timeoutMs int64, each func(pid, msgID int64, data []byte)) (int, error) {
	got := 0
	err := r.batch.Recv(n, max, timeoutMs, func(pid, msgID int64, _ uint32, data []byte) {
		got++
		each(pid, msgID, data)
	})
	return got, err
}

// Free releases the C memory.
func (r *Raw) Free() {
	C.free(unsafe.Pointer(r.env))
	r.batch.Free()
	C.free(r.buf)
	r.e.free()
}
