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

// Sender sends one message per cgo call (cluster_send or cluster_try_send),
// its payload copied into a C buffer it owns: no envelope is built and C
// keeps no Go pointer. One goroutine uses it at a time.
type Sender struct {
	env  *C.cluster_envelope_t
	buf  unsafe.Pointer
	size int
	e    errbuf
}

// senderStart is the initial capacity of a Sender's buffer; a buffer grown
// past senderKeep by a large payload is given back after the send.
const (
	senderStart = 256
	senderKeep  = 64 << 10
)

// NewSender makes a Sender. Release it with Free.
func NewSender() *Sender {
	return &Sender{
		env:  (*C.cluster_envelope_t)(C.calloc(1, C.sizeof_cluster_envelope_t)),
		buf:  C.malloc(senderStart),
		size: senderStart,
		e:    newErrbuf(),
	}
}

// Send copies data into C memory and sends it with cluster_send, waiting up
// to timeoutMs for room in the peer's queue (negative: until room or close).
func (s *Sender) Send(n *Node, pid, msgID int64, kind uint32, data []byte, timeoutMs int64) error {
	s.Load(pid, msgID, kind, data)
	rc := C.cluster_send(n.p, s.env, C.int64_t(timeoutMs), s.e.p)
	runtime.KeepAlive(n)
	s.Unload()
	return s.e.check(rc)
}

// Load copies a message into the Sender's C memory for TrySend.
func (s *Sender) Load(pid, msgID int64, kind uint32, data []byte) {
	if len(data) > s.size {
		C.free(s.buf)
		s.size = len(data)
		s.buf = C.malloc(C.size_t(s.size))
	}
	// A Go copy, not C.memcpy: no second cgo call per message.
	copy(unsafe.Slice((*byte)(s.buf), s.size), data)
	*s.env = C.cluster_envelope_t{
		pid:    C.int64_t(pid),
		msg_id: C.int64_t(msgID),
		kind:   C.uint32_t(kind),
		data:   (*C.uint8_t)(s.buf),
		len:    C.size_t(len(data)),
	}
}

// To readdresses the loaded message to pid.
func (s *Sender) To(pid int64) { s.env.pid = C.int64_t(pid) }

// TrySend sends the loaded message with cluster_try_send, waiting up to
// timeoutMs for room in a live peer's queue. ErrTimeout means there was
// none: the message was neither sent nor counted and stays loaded for
// another try.
func (s *Sender) TrySend(n *Node, timeoutMs int64) error {
	rc := C.cluster_try_send(n.p, s.env, C.int64_t(timeoutMs), s.e.p)
	runtime.KeepAlive(n)
	return s.e.check(rc)
}

// Unload gives back a buffer a large message grew past senderKeep; call it
// once done with the message loaded.
func (s *Sender) Unload() {
	if s.size > senderKeep {
		C.free(s.buf)
		s.buf, s.size = C.malloc(senderStart), senderStart
	}
}

// Free releases the C memory.
func (s *Sender) Free() {
	C.free(unsafe.Pointer(s.env))
	C.free(s.buf)
	s.e.free()
}

// Raw sends and receives with no Go-side codec or channels: one
// cluster_send per message and up to 256 per cluster_recv_batch, the
// baseline the wrapper's benchmarks compare against. One goroutine uses it
// at a time.
type Raw struct {
	*Sender
	batch *RecvBatch
}

// rawBatch is the most envelopes RecvBatch takes per call, as in the C bench.
const rawBatch = 256

// NewRaw makes a Raw. Release it with Free.
func NewRaw() *Raw {
	return &Raw{Sender: NewSender(), batch: NewRecvBatch(rawBatch)}
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
	r.Sender.Free()
	r.batch.Free()
}
