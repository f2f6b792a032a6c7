// Package mock is an in-process simulated cluster with the API of the
// original library's mock package: servers that satisfy cluster.Server,
// partitions, per-server drop probability and message delay, and servers
// that close and come back. Messages never touch the network; drop and
// delay decisions come from a seeded generator (Seed, default 0), so a
// failing run replays.
//
//	cl, _ := mock.NewCluster(nil)
//	for id := 1; id <= 5; id++ { cl.AddServer(id) }
//	cl.Partition([]int{1, 2, 3}, []int{4, 5})
//	cl.Servers[1].SetDropProbability(0.3)
package mock

import (
	"encoding/json"
	"errors"
	"log"
	"sort"
	"sync"

	cluster "github.com/cluster-dev/cluster/bindings/go"
	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
	"github.com/cluster-dev/cluster/bindings/go/internal/node"
)

// Seed drives the fault decisions of clusters made by NewCluster after it
// is set: the n-th message from a to b meets the same fate for the same seed.
var Seed uint64

// MockCluster is a simulated cluster. Its methods are safe for concurrent
// use; Servers is the open servers by id, kept up to date by AddServer and
// Close (read it while no server is being added or closed).
type MockCluster struct {
	sync.Mutex
	Servers map[int]*MockServer // the open servers by id

	h             *ffi.Mock
	inbox, outbox int
	hmu           sync.RWMutex // write-held only to free h
	freed         bool
	closing       bool // set by Close under the Mutex: AddServer refuses
}

// NewCluster makes a cluster, or an empty one for nil. conf is the same
// configuration as cluster.New's: JSON text or the name of a JSON file,
// which the library parses (its checks and errors are cluster.New's: every
// peer needs an Address, though nothing touches the network), every
// configured id started as a server; or a Config or *Config, of which only
// the ids, InboxSize and OutboxSize count (addresses may be left out, as
// in the original), its ids added one by one. Options (VirtualClock) are
// optional; without any, the cluster runs in real time.
func NewCluster(conf interface{}, opts ...Option) (*MockCluster, error) {
	var text string // the library's configuration of the cluster
	var ids []int   // the servers of a Config, added here
	fromText := false
	switch c := conf.(type) {
	case nil:
	case string:
		var err error
		if text, err = node.ConfigText(c); err != nil {
			return nil, err
		}
		fromText = true
	case cluster.Config:
		text, ids = sizesJSON(&c), peerIDs(&c)
	case *cluster.Config:
		if c == nil {
			return nil, ffi.Errorf(cluster.ErrConfig, "configuration is a nil *Config")
		}
		text, ids = sizesJSON(c), peerIDs(c)
	default:
		return nil, ffi.Errorf(cluster.ErrConfig, "configuration must be a JSON file name, JSON text or a Config, not %T", conf)
	}
	h, err := ffi.NewMock(text, Seed)
	if err != nil {
		return nil, err
	}
	if err := applyOptions(h, opts); err != nil {
		h.Close()
		h.Free()
		return nil, err
	}
	mc := &MockCluster{Servers: map[int]*MockServer{}, h: h}
	mc.inbox, mc.outbox = node.QueueSizes(text)
	if fromText { // the library started the configured servers: serve them
		started, err := h.Servers()
		if err != nil {
			mc.Close()
			return nil, err
		}
		for _, id := range started {
			ids = append(ids, int(id))
		}
	}
	for _, id := range ids {
		if _, err := mc.AddServer(id); err != nil {
			mc.Close()
			return nil, err
		}
	}
	return mc, nil
}

// sizesJSON is the library's configuration of a mock cluster made from a
// Config: its queue sizes only (servers are added one by one, and need no
// address); a size of 0 is left out, for the library's default.
func sizesJSON(cfg *cluster.Config) string {
	text, _ := json.Marshal(struct {
		InboxSize  int `json:",omitempty"`
		OutboxSize int `json:",omitempty"`
	}{cfg.InboxSize, cfg.OutboxSize})
	return string(text)
}

func peerIDs(cfg *cluster.Config) []int {
	ids := make([]int, len(cfg.Peers))
	for i, p := range cfg.Peers {
		ids[i] = p.Id
	}
	return ids
}

// with runs f on the mock handle unless Close has released it.
func (mc *MockCluster) with(f func(*ffi.Mock) error) error {
	mc.hmu.RLock()
	defer mc.hmu.RUnlock()
	if mc.freed {
		return cluster.ErrClosed
	}
	return f(mc.h)
}

// AddServer starts server pid (again, after it was closed) with an empty
// inbox; the others see it among their peers. A pid already open is an error.
func (mc *MockCluster) AddServer(pid int) (cluster.Server, error) {
	mc.Lock()
	defer mc.Unlock()
	if mc.closing {
		return nil, cluster.ErrClosed
	}
	if _, ok := mc.Servers[pid]; ok {
		return nil, ffi.Errorf(cluster.ErrInvalidArg, "mock: server %d is open already", pid)
	}
	var h *ffi.Node
	if err := mc.with(func(m *ffi.Mock) (err error) { h, err = m.AddServer(int64(pid)); return }); err != nil {
		return nil, err
	}
	n, err := node.Start(h, mc.inbox, mc.outbox, true)
	if err != nil {
		return nil, err
	}
	ms := &MockServer{n: n, mc: mc}
	mc.Servers[pid] = ms
	return ms, nil
}

// Partition splits the servers into the given groups; servers not named
// (also those added later) form one more group. Messages do not cross
// groups. A server in two groups is an error. It replaces any earlier
// partition, atomically for every server.
func (mc *MockCluster) Partition(partitions ...[]int) error {
	index := map[int]int{}
	groups := make([][]int64, len(partitions))
	for i, part := range partitions {
		for _, pid := range part {
			if j, ok := index[pid]; ok && j != i {
				return ffi.Errorf(cluster.ErrInvalidArg, "mock: server %d in partitions %d and %d: %v", pid, j, i, partitions)
			}
			if _, ok := index[pid]; !ok {
				index[pid] = i
				groups[i] = append(groups[i], int64(pid))
			}
		}
	}
	return mc.with(func(m *ffi.Mock) error { return m.Partition(groups) })
}

// Heal removes the partition: every server reaches every other again.
func (mc *MockCluster) Heal() {
	if err := mc.with((*ffi.Mock).Heal); err != nil && !errors.Is(err, cluster.ErrClosed) {
		log.Printf("mock: heal: %v", err)
	}
}

// ForAll calls do on every open server, in ascending id order. do may
// close servers or add them.
func (mc *MockCluster) ForAll(do func(*MockServer)) {
	mc.Lock()
	ids := make([]int, 0, len(mc.Servers))
	for id := range mc.Servers {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	srvs := make([]*MockServer, len(ids))
	for i, id := range ids {
		srvs[i] = mc.Servers[id]
	}
	mc.Unlock()
	for _, s := range srvs {
		do(s)
	}
}

// Close closes every server and the cluster; later AddServer calls fail.
// Idempotent.
func (mc *MockCluster) Close() {
	mc.Lock()
	mc.closing = true
	mc.Unlock()
	mc.ForAll(func(s *MockServer) { s.Close() })
	mc.hmu.Lock()
	defer mc.hmu.Unlock()
	if !mc.freed {
		mc.freed = true
		mc.h.Close()
		mc.h.Free()
	}
}

func (mc *MockCluster) remove(s *MockServer) {
	mc.Lock()
	if mc.Servers[s.Pid()] == s {
		delete(mc.Servers, s.Pid())
	}
	mc.Unlock()
}

// Hold keeps the messages on the link from -> to (at most OutboxSize) until
// Release; ids need not be open.
func (mc *MockCluster) Hold(from, to int) error {
	return mc.with(func(m *ffi.Mock) error { return m.Hold(int64(from), int64(to)) })
}

// Release opens a held link and delivers what it kept, in order or in an
// order drawn from the seed (shuffle).
func (mc *MockCluster) Release(from, to int, shuffle bool) error {
	return mc.with(func(m *ffi.Mock) error { return m.Release(int64(from), int64(to), shuffle) })
}

// Trace switches on or off the recording of every message's fate.
func (mc *MockCluster) Trace(enable bool) error {
	return mc.with(func(m *ffi.Mock) error { return m.Trace(enable) })
}

// TakeTrace returns what was recorded since the last call, as JSON lines
// (event, from, to, seq, copy, msg_id, ...; see cluster.h), and clears it.
func (mc *MockCluster) TakeTrace() (string, error) {
	var out string
	err := mc.with(func(m *ffi.Mock) (err error) { out, err = m.TakeTrace(); return })
	return out, err
}
