package cluster

import (
	"github.com/cluster-dev/cluster/bindings/go/internal/config"
	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
	"github.com/cluster-dev/cluster/bindings/go/internal/node"
)

// Error is a failure reported by the library: its status code (negative,
// as in cluster.h), the code's stable name such as "CLUSTER_E_CONFIG", and
// a message naming the problem.
type Error = ffi.Error

// ErrClosed is returned by calls on a server after Close.
var ErrClosed = node.ErrClosed

// Node is a real TCP member of a cluster, the Server that New returns. Its
// methods beyond Server are extras: counters and fault injection.
type Node struct {
	s *node.Server
}

// New starts server myid of a cluster and returns once it listens on its
// address. configuration is the name of a JSON file, JSON text, a Config or
// a *Config. Bad configuration (own id missing, duplicate ids or
// addresses, an address in use, unreadable file, bad JSON) is an *Error
// whose message names the problem; the process never exits.
func New(myid int, configuration interface{}) (Server, error) {
	text, err := config.Text(configuration)
	if err != nil {
		return nil, err
	}
	sizes := &Config{}
	if c, err := ToConfig(configuration); err == nil {
		sizes = c
	}
	h, err := ffi.NewNode(int64(myid), text)
	if err != nil {
		return nil, err
	}
	s, err := node.Start(h, sizes.InboxSize, sizes.OutboxSize, false)
	if err != nil {
		return nil, err
	}
	return &Node{s}, nil
}

// Pid is this server's id.
func (n *Node) Pid() int { return n.s.Pid() }

// Peers is the ids of the other members, in configuration order.
func (n *Node) Peers() []int { return n.s.Peers() }

// Outbox is the channel to send envelopes on. It is never closed: after
// Close, envelopes put on it are discarded until its buffer is full, and
// then a send blocks like a send on any channel nobody reads.
func (n *Node) Outbox() chan *Envelope { return n.s.Outbox() }

// Inbox is the channel received envelopes arrive on, Pid set to the sender.
func (n *Node) Inbox() chan *Envelope { return n.s.Inbox() }

// Close sends what Outbox holds (waiting at most a second for room), stops
// the node and its goroutines and releases its port, so a new server can
// start on the same address at once. Idempotent and safe from any goroutine.
func (n *Node) Close() { n.s.Close() }

// IsClosed reports whether Close has been called.
func (n *Node) IsClosed() bool { return n.s.IsClosed() }

// Counters is a snapshot of the Go-side failure counters.
func (n *Node) Counters() Counters { return n.s.Counters() }

// Stats is the library's counters as JSON: sent, received, delivered,
// bytes, drops by cause, reconnects, per-peer queue depth and connection
// state. ErrClosed after Close.
func (n *Node) Stats() (string, error) { return n.s.Stats() }

// Directions of Node.Cut.
const (
	CutOut  = node.CutOut  // this node's messages to the peers are lost
	CutIn   = node.CutIn   // the peers' messages to this node are lost
	CutBoth = node.CutBoth // both
)

// SetDropProbability makes each message this node sends to a peer lost
// with probability p (0 to 1), counted as a fault drop.
func (n *Node) SetDropProbability(p float64) error { return n.s.SetDropProbability(p) }

// SetMaxMessageDelay delays each message this node sends by a random time
// in [0, ms] milliseconds (reordering them); 0 turns it off.
func (n *Node) SetMaxMessageDelay(ms int) error { return n.s.SetMaxMessageDelay(ms) }

// SetDuplicateProbability makes each message this node sends arrive twice
// with probability p.
func (n *Node) SetDuplicateProbability(p float64) error { return n.s.SetDuplicateProbability(p) }

// Cut loses the messages between this node and the given peers in one
// direction (CutOut, CutIn) or both, in addition to earlier cuts.
func (n *Node) Cut(direction int, peers ...int) error { return n.s.Cut(direction, peers...) }

// HealCuts removes every cut of this node.
func (n *Node) HealCuts() error { return n.s.HealCuts() }

// SetSeed sets the seed of this node's fault decisions.
func (n *Node) SetSeed(seed uint64) error { return n.s.SetSeed(seed) }
