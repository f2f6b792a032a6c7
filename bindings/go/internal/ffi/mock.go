package ffi

/*
#include <stdlib.h>
#include "cluster.h"
*/
import "C"

import (
	"runtime"
	"unsafe"
)

// Mock is a mock cluster handle. Its methods are safe for concurrent use;
// Free must come after every other call has returned.
type Mock struct {
	p *C.cluster_mock_t
}

// NewMock creates a mock cluster from JSON text ("" for an empty one),
// every configured id started as a server; seed drives its fault decisions.
func NewMock(config string, seed uint64) (*Mock, error) {
	var cs *C.char
	if config != "" {
		cs = C.CString(config)
		defer C.free(unsafe.Pointer(cs))
	}
	var out *C.cluster_mock_t
	err := oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_new(cs, C.uint64_t(seed), &out, e) })
	if err != nil {
		return nil, err
	}
	return &Mock{out}, nil
}

// AddServer adds (or re-adds after close) server id and returns a new
// handle to it, owned by the caller.
func (m *Mock) AddServer(id int64) (*Node, error) {
	defer runtime.KeepAlive(m)
	var out *C.cluster_node_t
	err := oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_add_server(m.p, C.int64_t(id), &out, e) })
	if err != nil {
		return nil, err
	}
	return &Node{out}, nil
}

// Servers is the ids of the open servers, ascending.
func (m *Mock) Servers() ([]int64, error) {
	defer runtime.KeepAlive(m)
	return idList(func(buf *C.int64_t, cap C.size_t, l *C.size_t, e *C.cluster_error_t) C.int {
		return C.cluster_mock_servers(m.p, buf, cap, l, e)
	})
}

// Partition splits the servers into groups (plus one of those not named).
func (m *Mock) Partition(groups [][]int64) error {
	defer runtime.KeepAlive(m)
	var flat []int64
	for _, g := range groups {
		flat = append(flat, g...)
	}
	ids := cIDs(flat)
	defer C.free(unsafe.Pointer(ids))
	lens := (*C.size_t)(C.calloc(C.size_t(max(len(groups), 1)), C.sizeof_size_t))
	defer C.free(unsafe.Pointer(lens))
	cl := unsafe.Slice(lens, len(groups))
	for i, g := range groups {
		cl[i] = C.size_t(len(g))
	}
	return oneCall(func(e *C.cluster_error_t) C.int {
		return C.cluster_mock_partition(m.p, ids, lens, C.size_t(len(groups)), e)
	})
}

// Heal removes the partition.
func (m *Mock) Heal() error {
	defer runtime.KeepAlive(m)
	return oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_heal(m.p, e) })
}

// Hold keeps the messages on link from -> to until Release.
func (m *Mock) Hold(from, to int64) error {
	defer runtime.KeepAlive(m)
	return oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_hold(m.p, C.int64_t(from), C.int64_t(to), e) })
}

// Release delivers what a held link kept, in order or shuffled.
func (m *Mock) Release(from, to int64, shuffle bool) error {
	defer runtime.KeepAlive(m)
	sh := C.int(0)
	if shuffle {
		sh = 1
	}
	return oneCall(func(e *C.cluster_error_t) C.int {
		return C.cluster_mock_release(m.p, C.int64_t(from), C.int64_t(to), sh, e)
	})
}

// Trace switches the recording of every message's fate on or off.
func (m *Mock) Trace(enable bool) error {
	defer runtime.KeepAlive(m)
	on := C.int(0)
	if enable {
		on = 1
	}
	return oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_trace(m.p, on, e) })
}

// TakeTrace returns the JSON lines recorded so far and clears them.
func (m *Mock) TakeTrace() (string, error) {
	defer runtime.KeepAlive(m)
	var s *C.char
	if err := oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_trace_take(m.p, &s, e) }); err != nil {
		return "", err
	}
	defer C.cluster_string_free(s)
	return C.GoString(s), nil
}

// Close closes every server and the cluster. Idempotent.
func (m *Mock) Close() error {
	defer runtime.KeepAlive(m)
	return oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_close(m.p, e) })
}

// Free releases the handle; the Mock must not be used afterwards.
func (m *Mock) Free() {
	C.cluster_mock_free(m.p)
	m.p = nil
}
