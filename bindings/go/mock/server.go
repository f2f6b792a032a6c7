package mock

import (
	"context"
	"log"
	"time"

	cluster "github.com/cluster-dev/cluster/bindings/go"
	"github.com/cluster-dev/cluster/bindings/go/internal/node"
)

// MockServer is one server of a MockCluster; it satisfies cluster.Server.
type MockServer struct {
	n  *node.Node
	mc *MockCluster
}

var _ cluster.Server = (*MockServer)(nil)

// Pid is this server's id.
func (ms *MockServer) Pid() int { return ms.n.Pid() }

// Peers is the ids of the other open servers of the cluster.
func (ms *MockServer) Peers() []int { return ms.n.Peers() }

// Outbox is the channel to send envelopes on (never closed; see cluster.Node).
func (ms *MockServer) Outbox() chan *cluster.Envelope { return ms.n.Outbox() }

// Inbox is the channel received envelopes arrive on, Pid set to the sender.
func (ms *MockServer) Inbox() chan *cluster.Envelope { return ms.n.Inbox() }

// Send sends e now and says why if it could not (see cluster.Node.Send).
func (ms *MockServer) Send(e *cluster.Envelope) error { return ms.n.Send(e) }

// SendMany sends envs in order and says how many went out and why it
// stopped (see cluster.Node.SendMany).
func (ms *MockServer) SendMany(envs []*cluster.Envelope) (int, error) { return ms.n.SendMany(envs) }

// Recv returns the next envelope, waiting up to timeout (see
// cluster.Node.Recv).
func (ms *MockServer) Recv(timeout time.Duration) (*cluster.Envelope, error) {
	return ms.n.Recv(timeout)
}

// RecvContext returns the next envelope, or ctx.Err() having taken
// nothing once ctx is done (see cluster.Node.RecvContext).
func (ms *MockServer) RecvContext(ctx context.Context) (*cluster.Envelope, error) {
	return ms.n.RecvContext(ctx)
}

// SendContext sends e, or returns ctx.Err() having neither sent nor
// dropped it once ctx is done (see cluster.Node.SendContext).
func (ms *MockServer) SendContext(ctx context.Context, e *cluster.Envelope) error {
	return ms.n.SendContext(ctx, e)
}

// IsClosed reports whether Close has been called.
func (ms *MockServer) IsClosed() bool { return ms.n.IsClosed() }

// Close closes the server: it leaves MockCluster.Servers and its peers'
// Peers lists, and may be added again with AddServer. Idempotent.
func (ms *MockServer) Close() {
	ms.mc.remove(ms)
	ms.n.Close()
}

// Cluster is the cluster this server belongs to.
func (ms *MockServer) Cluster() *MockCluster { return ms.mc }

// SetDropProbability makes each message this server sends lost with
// probability prob (0 to 1). A value outside [0, 1] is logged and ignored.
func (ms *MockServer) SetDropProbability(prob float32) {
	ms.check("SetDropProbability", ms.n.SetDropProbability(float64(prob)))
}

// SetMaxMessageDelay delays each message this server sends by a random
// time in [0, delay] ms, which reorders them; 0 turns it off.
func (ms *MockServer) SetMaxMessageDelay(delay int) {
	ms.check("SetMaxMessageDelay", ms.n.SetMaxMessageDelay(delay))
}

// SetDuplicateProbability makes each message this server sends arrive
// twice with probability p (0 to 1).
func (ms *MockServer) SetDuplicateProbability(p float64) error {
	return ms.n.SetDuplicateProbability(p)
}

// Cut loses the messages between this server and peers in one direction
// (cluster.CutOut, cluster.CutIn) or both, in addition to earlier cuts.
func (ms *MockServer) Cut(direction int, peers ...int) error {
	return ms.n.Cut(direction, peers...)
}

// Heal removes every cut of this server.
func (ms *MockServer) Heal() error { return ms.n.HealCuts() }

// SetSeed sets the seed of this server's fault decisions.
func (ms *MockServer) SetSeed(seed uint64) error { return ms.n.SetSeed(seed) }

// Stats is the server's counters as JSON (sent, delivered, drops by cause).
func (ms *MockServer) Stats() (string, error) { return ms.n.Stats() }

// Counters is a snapshot of the Go-side failure counters.
func (ms *MockServer) Counters() cluster.Counters { return ms.n.Counters() }

func (ms *MockServer) check(what string, err error) {
	if err != nil {
		log.Printf("mock: server %d: %s: %v", ms.Pid(), what, err)
	}
}
