package node

import "github.com/cluster-dev/cluster/bindings/go/internal/ffi"

// Fault injection on the node, real or mock: the same controls and
// semantics as cluster_fault_* in cluster.h. Each returns ErrClosed after
// Close, and the library's error for a bad argument.

// Cut directions.
const (
	CutOut  = ffi.CutOut
	CutIn   = ffi.CutIn
	CutBoth = ffi.CutBoth
)

// SetDropProbability sets the probability (0 to 1) that a message this
// server sends to a peer is lost.
func (s *Server) SetDropProbability(p float64) error {
	return s.With(func(h *ffi.Node) error { return h.FaultDrop(p) })
}

// SetMaxMessageDelay delays each message this server sends by a random
// time in [0, ms] milliseconds, which reorders them; 0 turns it off.
func (s *Server) SetMaxMessageDelay(ms int) error {
	return s.With(func(h *ffi.Node) error { return h.FaultDelay(int64(ms)) })
}

// SetDuplicateProbability sets the probability (0 to 1) that a message
// this server sends arrives twice.
func (s *Server) SetDuplicateProbability(p float64) error {
	return s.With(func(h *ffi.Node) error { return h.FaultDuplicate(p) })
}

// Cut loses the messages between this server and peers in one direction
// (CutOut, CutIn) or both, in addition to earlier cuts.
func (s *Server) Cut(direction int, peers ...int) error {
	ids := make([]int64, len(peers))
	for i, p := range peers {
		ids[i] = int64(p)
	}
	return s.With(func(h *ffi.Node) error { return h.FaultCut(ids, direction) })
}

// HealCuts removes every cut of this server.
func (s *Server) HealCuts() error {
	return s.With(func(h *ffi.Node) error { return h.FaultHeal() })
}

// SetSeed sets the seed of this server's fault decisions and restarts
// their sequence, so the same sends meet the same fates again.
func (s *Server) SetSeed(seed uint64) error {
	return s.With(func(h *ffi.Node) error { return h.FaultSeed(seed) })
}
