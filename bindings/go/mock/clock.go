package mock

import (
	"time"

	cluster "github.com/cluster-dev/cluster/bindings/go"
	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// Option configures a cluster made by NewCluster.
type Option func(*options)

type options struct {
	virtual bool
}

// VirtualClock runs the cluster on a virtual clock: time stands still
// until Advance or RunUntilIdle, delayed messages (SetMaxMessageDelay)
// then land in a deterministic order (due time, sender, destination,
// number on the link), and the same Seed and the same sends in the same
// order give the same trace, byte for byte; its events carry t_us, the
// virtual time in µs.
//
// For a deterministic run, send with MockServer.Send (synchronous) rather
// than the Outbox channel, whose goroutine sends when the scheduler lets
// it, and receive with Recv(0) after Advance. In the library a receive
// with a positive timeout waits in virtual time, but Go-side waits (Recv's
// timeout once the Inbox goroutine runs, time.After in a select) are Go
// timers in real time.
func VirtualClock() Option {
	return func(o *options) { o.virtual = true }
}

// applyOptions sets up a new cluster's handle as opts say.
func applyOptions(h *ffi.Mock, opts []Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.virtual {
		return h.SetClock(true)
	}
	return nil
}

// Advance moves the virtual clock forward by d (rounded up to whole
// milliseconds), delivering every delayed message due by then, in order,
// before it returns; it returns how many landed in an inbox. On a cluster
// without VirtualClock it fails with cluster.ErrInvalidArg.
func (mc *MockCluster) Advance(d time.Duration) (int, error) {
	if d < 0 {
		return 0, ffi.Errorf(cluster.ErrInvalidArg, "mock: cannot advance by %v: time only moves forward", d)
	}
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	var n int
	err := mc.with(func(m *ffi.Mock) (err error) { n, err = m.Advance(ms); return })
	return n, err
}

// RunUntilIdle delivers every delayed message, moving the virtual clock
// to each one's due time; it returns how many landed.
func (mc *MockCluster) RunUntilIdle() (int, error) {
	var n int
	err := mc.with(func(m *ffi.Mock) (err error) { n, err = m.RunUntilIdle(); return })
	return n, err
}

// Now is the virtual time since the cluster was made (whole
// milliseconds); cluster.ErrInvalidArg without VirtualClock.
func (mc *MockCluster) Now() (time.Duration, error) {
	var ms int64
	err := mc.with(func(m *ffi.Mock) (err error) { ms, err = m.Now(); return })
	return time.Duration(ms) * time.Millisecond, err
}
