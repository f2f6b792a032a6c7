package node

import "github.com/cluster-dev/cluster/bindings/go/internal/ffi"

// Fault injection on a node, real or mock: the semantics of
// cluster_fault_* in cluster.h. Each method returns ErrClosed after Close,
// and an ErrInvalidArg *Error for a bad argument.

// SetDropProbability makes each message this node sends to a peer lost
// with probability p (0 to 1), counted as a fault drop.
func (n *Node) SetDropProbability(p float64) error {
	return n.with(func(h *ffi.Node) error { return h.FaultDrop(p) })
}

// SetMaxMessageDelay delays each message this node sends by a random time
// in [0, ms] milliseconds, which reorders them; 0 turns it off.
func (n *Node) SetMaxMessageDelay(ms int) error {
	return n.with(func(h *ffi.Node) error { return h.FaultDelay(int64(ms)) })
}

// SetDuplicateProbability makes each message this node sends arrive twice
// with probability p (0 to 1).
func (n *Node) SetDuplicateProbability(p float64) error {
	return n.with(func(h *ffi.Node) error { return h.FaultDuplicate(p) })
}

// Cut loses the messages between this node and the given peers in one
// direction (cluster.CutOut, cluster.CutIn) or both (cluster.CutBoth), in
// addition to earlier cuts.
func (n *Node) Cut(direction int, peers ...int) error {
	ids := make([]int64, len(peers))
	for i, p := range peers {
		ids[i] = int64(p)
	}
	return n.with(func(h *ffi.Node) error { return h.FaultCut(ids, direction) })
}

// HealCuts removes every cut of this node.
func (n *Node) HealCuts() error {
	return n.with(func(h *ffi.Node) error { return h.FaultHeal() })
}

// SetSeed sets the seed of this node's fault decisions and restarts their
// sequence, so the same sends meet the same fates again.
func (n *Node) SetSeed(seed uint64) error {
	return n.with(func(h *ffi.Node) error { return h.FaultSeed(seed) })
}
