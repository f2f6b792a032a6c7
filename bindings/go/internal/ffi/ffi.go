// Package ffi is the only cgo code of the Go binding: thin calls into the C
// ABI of libcluster (include/cluster.h), with C memory owned here and copied
// into Go memory at once, so C never holds a Go pointer.
//
// Every call passes a cluster_error_t out-parameter and reads the message
// from it, never from cluster_last_error: a goroutine may change OS thread
// between two cgo calls.
package ffi

/*
#cgo pkg-config: cluster
#include <stdlib.h>
#include "cluster.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// errbuf is a cluster_error_t in C memory, reused by one goroutine for its
// calls so the hot paths allocate nothing.
type errbuf struct{ p *C.cluster_error_t }

func newErrbuf() errbuf {
	return errbuf{(*C.cluster_error_t)(C.calloc(1, C.sizeof_cluster_error_t))}
}

func (e errbuf) free() { C.free(unsafe.Pointer(e.p)) }

// check turns a status and the message written by the same call into an
// error. A timeout is ErrTimeout itself: a poll that finds nothing
// allocates nothing.
func (e errbuf) check(rc C.int) error {
	switch rc {
	case C.CLUSTER_OK:
		return nil
	case C.CLUSTER_E_TIMEOUT:
		return ErrTimeout
	}
	return &Error{
		Code:    int(rc),
		Name:    StatusName(int(rc)),
		Message: C.GoString(&e.p.message[0]),
	}
}

// LibraryVersion is the version of the libcluster loaded (cluster_version).
func LibraryVersion() string { return C.GoString(C.cluster_version()) }

// StatusName is the library's name of a status code (cluster_strerror),
// e.g. "CLUSTER_E_TIMEOUT", or "CLUSTER_E_UNKNOWN".
func StatusName(code int) string {
	return C.GoString(C.cluster_strerror(C.int(code)))
}

// oneCall runs f with a fresh error buffer, for calls off the hot paths.
func oneCall(f func(e *C.cluster_error_t) C.int) error {
	e := newErrbuf()
	defer e.free()
	return e.check(f(e.p))
}

// Node is a node handle (real TCP node or mock server). Close may be called
// from any goroutine while others are blocked in Send or Recv; Free must come
// after every other call has returned.
type Node struct {
	p *C.cluster_node_t
}

// NewNode starts a real TCP node; config is JSON text or a file path.
func NewNode(id int64, config string) (*Node, error) {
	cs := C.CString(config)
	defer C.free(unsafe.Pointer(cs))
	var out *C.cluster_node_t
	err := oneCall(func(e *C.cluster_error_t) C.int {
		return C.cluster_new(C.int64_t(id), cs, &out, e)
	})
	if err != nil {
		return nil, err
	}
	return &Node{out}, nil
}

// Pid is the node's own id.
func (n *Node) Pid() (int64, error) {
	var pid C.int64_t
	err := oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_pid(n.p, &pid, e) })
	runtime.KeepAlive(n)
	return int64(pid), err
}

// Peers is the ids of the other members.
func (n *Node) Peers() ([]int64, error) {
	defer runtime.KeepAlive(n)
	return idList(func(buf *C.int64_t, cap C.size_t, l *C.size_t, e *C.cluster_error_t) C.int {
		return C.cluster_peers(n.p, buf, cap, l, e)
	})
}

// idList calls a function of the cluster_peers buffer convention, growing a
// C buffer until the list fits.
func idList(f func(*C.int64_t, C.size_t, *C.size_t, *C.cluster_error_t) C.int) ([]int64, error) {
	e := newErrbuf()
	defer e.free()
	want := C.size_t(16)
	for {
		buf := (*C.int64_t)(C.calloc(want, C.sizeof_int64_t))
		var l C.size_t
		rc := f(buf, want, &l, e.p)
		if rc == C.CLUSTER_E_BUFFER_TOO_SMALL && l > want {
			C.free(unsafe.Pointer(buf))
			want = l
			continue
		}
		err := e.check(rc)
		ids := make([]int64, 0, int(l))
		if err == nil {
			for _, v := range unsafe.Slice(buf, int(l)) {
				ids = append(ids, int64(v))
			}
		}
		C.free(unsafe.Pointer(buf))
		return ids, err
	}
}

// Stats is the node's counters as JSON text.
func (n *Node) Stats() (string, error) {
	var s *C.char
	err := oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_stats(n.p, &s, e) })
	runtime.KeepAlive(n)
	if err != nil {
		return "", err
	}
	defer C.cluster_string_free(s)
	return C.GoString(s), nil
}

// RecvFD is the node's readiness descriptor (cluster_recv_fd): readable
// exactly while a receive would not block (a message waits, or the node is
// closed), level-triggered. It stays valid until Free; only poll it (or a
// dup of it), never read, write or close it.
func (n *Node) RecvFD() (int, error) {
	var fd C.int
	err := oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_recv_fd(n.p, &fd, e) })
	runtime.KeepAlive(n)
	return int(fd), err
}

// Close closes the node and wakes every blocked call. Idempotent.
func (n *Node) Close() error {
	err := oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_close(n.p, e) })
	runtime.KeepAlive(n)
	return err
}

// Free releases the handle; the Node must not be used afterwards.
func (n *Node) Free() {
	C.cluster_free(n.p)
	n.p = nil
}
