package ffi

/*
#include "cluster.h"
*/
import "C"

import "runtime"

// SetClock chooses the mock's clock: the virtual one (cluster_mock_clock
// with CLUSTER_CLOCK_VIRTUAL) or the real one.
func (m *Mock) SetClock(virtual bool) error {
	defer runtime.KeepAlive(m)
	clock := C.int(C.CLUSTER_CLOCK_REAL)
	if virtual {
		clock = C.CLUSTER_CLOCK_VIRTUAL
	}
	return oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_clock(m.p, clock, e) })
}

// Advance moves the virtual clock forward by ms milliseconds, delivering
// what is due; how many landed.
func (m *Mock) Advance(ms int64) (int, error) {
	defer runtime.KeepAlive(m)
	var n C.size_t
	err := oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_advance(m.p, C.int64_t(ms), &n, e) })
	return int(n), err
}

// RunUntilIdle delivers every delayed message of the virtual clock; how
// many landed.
func (m *Mock) RunUntilIdle() (int, error) {
	defer runtime.KeepAlive(m)
	var n C.size_t
	err := oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_run_until_idle(m.p, &n, e) })
	return int(n), err
}

// Now is the virtual time in milliseconds.
func (m *Mock) Now() (int64, error) {
	defer runtime.KeepAlive(m)
	var ms C.int64_t
	err := oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_mock_now(m.p, &ms, e) })
	return int64(ms), err
}
