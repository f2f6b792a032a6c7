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

// Directions of a cut (CLUSTER_CUT_*).
const (
	CutOut  = int(C.CLUSTER_CUT_OUT)  // this node's messages to the peers are lost
	CutIn   = int(C.CLUSTER_CUT_IN)   // the peers' messages to this node are lost
	CutBoth = int(C.CLUSTER_CUT_BOTH) // both
)

// FaultDrop sets the probability that a message this node sends is lost.
func (n *Node) FaultDrop(p float64) error {
	defer runtime.KeepAlive(n)
	return oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_fault_drop(n.p, C.double(p), e) })
}

// FaultDelay delays each message this node sends by up to maxMs ms.
func (n *Node) FaultDelay(maxMs int64) error {
	defer runtime.KeepAlive(n)
	return oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_fault_delay(n.p, C.int64_t(maxMs), e) })
}

// FaultDuplicate sets the probability that a message this node sends
// arrives twice.
func (n *Node) FaultDuplicate(p float64) error {
	defer runtime.KeepAlive(n)
	return oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_fault_duplicate(n.p, C.double(p), e) })
}

// FaultCut cuts this node off from peers in the given direction.
func (n *Node) FaultCut(peers []int64, direction int) error {
	defer runtime.KeepAlive(n)
	ids := cIDs(peers)
	defer C.free(unsafe.Pointer(ids))
	return oneCall(func(e *C.cluster_error_t) C.int {
		return C.cluster_fault_cut(n.p, ids, C.size_t(len(peers)), C.int(direction), e)
	})
}

// FaultHeal removes every cut of this node.
func (n *Node) FaultHeal() error {
	defer runtime.KeepAlive(n)
	return oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_fault_heal(n.p, e) })
}

// FaultSeed sets the seed of this node's fault decisions.
func (n *Node) FaultSeed(seed uint64) error {
	defer runtime.KeepAlive(n)
	return oneCall(func(e *C.cluster_error_t) C.int { return C.cluster_fault_seed(n.p, C.uint64_t(seed), e) })
}

// cIDs copies ids into a C array (at least one element, so never NULL);
// the caller frees it.
func cIDs(ids []int64) *C.int64_t {
	p := (*C.int64_t)(C.calloc(C.size_t(max(len(ids), 1)), C.sizeof_int64_t))
	out := unsafe.Slice(p, len(ids))
	for i, id := range ids {
		out[i] = C.int64_t(id)
	}
	return p
}
