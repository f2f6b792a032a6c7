package mock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cluster "github.com/cluster-dev/cluster/bindings/go"
)

const NUMSERVERS = 5

const marker = "marker"

// mkCluster makes servers 1..NUMSERVERS, closed when the test ends, and
// checks that no goroutine is left behind afterwards.
func mkCluster(t *testing.T) *MockCluster {
	before := runtime.NumGoroutine()
	cl, err := NewCluster(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= NUMSERVERS; i++ {
		if _, err := cl.AddServer(i); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		cl.Close()
		waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	})
	return cl
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv takes one envelope from s's Inbox within a deadline.
func recv(t *testing.T, s cluster.Server) *cluster.Envelope {
	t.Helper()
	select {
	case e := <-s.Inbox():
		return e
	case <-time.After(30 * time.Second):
		t.Fatalf("server %d received nothing", s.Pid())
		return nil
	}
}

// tally collects what every server receives until the test ends.
type tally struct {
	mu      sync.Mutex
	got     map[int][]*cluster.Envelope // by receiver, markers left out
	markers map[int]map[int]bool        // receiver -> senders whose marker came
}

func collect(t *testing.T, cl *MockCluster) *tally {
	tl := &tally{got: map[int][]*cluster.Envelope{}, markers: map[int]map[int]bool{}}
	done := make(chan struct{})
	var wg sync.WaitGroup
	cl.ForAll(func(s *MockServer) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case e := <-s.Inbox():
					tl.add(s.Pid(), e)
				case <-done:
					return
				}
			}
		}()
	})
	t.Cleanup(func() { close(done); wg.Wait() })
	return tl
}

func (tl *tally) add(rcvr int, e *cluster.Envelope) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if e.Msg == marker {
		if tl.markers[rcvr] == nil {
			tl.markers[rcvr] = map[int]bool{}
		}
		tl.markers[rcvr][e.Pid] = true
		return
	}
	tl.got[rcvr] = append(tl.got[rcvr], e)
}

func (tl *tally) total() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	n := 0
	for _, es := range tl.got {
		n += len(es)
	}
	return n
}

// settle sends a marker from every sender to every peer it can reach and
// waits until they arrive: links are FIFO, so everything sent before has
// arrived (or was dropped) by then.
func (tl *tally) settle(t *testing.T, cl *MockCluster, groups ...[]int) {
	for _, g := range groups {
		for _, from := range g {
			for _, to := range g {
				if from != to {
					cl.Servers[from].Outbox() <- &cluster.Envelope{Pid: to, Msg: marker}
				}
			}
		}
	}
	waitFor(t, "markers", func() bool {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		for _, g := range groups {
			for _, to := range g {
				if len(tl.markers[to]) != len(g)-1 {
					return false
				}
			}
		}
		return true
	})
	tl.mu.Lock()
	tl.markers = map[int]map[int]bool{}
	tl.mu.Unlock()
}

// pump broadcasts numMsgs messages "hello" from each sender, all at once.
func pump(cl *MockCluster, senders []int, numMsgs int) {
	var wg sync.WaitGroup
	for _, pid := range senders {
		wg.Add(1)
		go func(pid int) {
			defer wg.Done()
			out := cl.Servers[pid].Outbox()
			for i := 0; i < numMsgs; i++ {
				out <- &cluster.Envelope{Pid: cluster.BROADCAST, MsgId: int64(i)<<NUMSERVERS | int64(pid), Msg: "hello"}
			}
		}(pid)
	}
	wg.Wait()
}

var all = []int{1, 2, 3, 4, 5}

// Each server knows every other, not itself.
func TestCreate(t *testing.T) {
	cl := mkCluster(t)
	for id, srv := range cl.Servers {
		peers := srv.Peers()
		sort.Ints(peers)
		var want []int
		for _, p := range all {
			if p != id {
				want = append(want, p)
			}
		}
		if len(peers) != len(want) || srv.Pid() != id {
			t.Errorf("server %d: peers %v, want %v", id, peers, want)
		}
		for i := range want {
			if peers[i] != want[i] {
				t.Errorf("server %d: peers %v, want %v", id, peers, want)
				break
			}
		}
	}
	if _, err := cl.AddServer(3); err == nil {
		t.Error("a duplicate pid was accepted")
	}
}

// A broadcast of 100 messages reaches each of the four peers, once each.
func TestNoloss(t *testing.T) {
	cl := mkCluster(t)
	tl := collect(t, cl)
	pump(cl, []int{1}, 100)
	tl.settle(t, cl, all)
	if n := tl.total(); n != 100*(NUMSERVERS-1) {
		t.Errorf("received %d, want %d", n, 100*(NUMSERVERS-1))
	}
	for rcvr, es := range tl.got {
		seen := map[int64]bool{}
		for _, e := range es {
			if seen[e.MsgId] || e.Pid != 1 || e.Msg != "hello" {
				t.Fatalf("server %d: duplicate or wrong %+v", rcvr, e)
			}
			seen[e.MsgId] = true
		}
	}
}

// With a drop probability of 30%, about 70% of 10,000 broadcasts arrive.
func TestSendOmission(t *testing.T) {
	cl := mkCluster(t)
	tl := collect(t, cl)
	cl.Servers[1].SetDropProbability(0.30)
	const numMsgs = 10000
	pump(cl, []int{1}, numMsgs)
	cl.Servers[1].SetDropProbability(0)
	tl.settle(t, cl, all)
	n, sent := tl.total(), numMsgs*(NUMSERVERS-1)
	if n < sent*60/100 || n > sent*80/100 {
		t.Errorf("received %d of %d (%.1f%%), want 60..80%%", n, sent, 100*float64(n)/float64(sent))
	}
}

// A random delay of up to 100 ms reorders messages but delivers them all.
func TestOutOfOrder(t *testing.T) {
	cl := mkCluster(t)
	tl := collect(t, cl)
	cl.Servers[1].SetMaxMessageDelay(100)
	pump(cl, []int{1}, 100)
	waitFor(t, "all 400 messages", func() bool { return tl.total() >= 100*(NUMSERVERS-1) })
	cl.Servers[1].SetMaxMessageDelay(0)
	tl.settle(t, cl, all)
	if n := tl.total(); n != 100*(NUMSERVERS-1) {
		t.Errorf("received %d, want %d", n, 100*(NUMSERVERS-1))
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	reordered := false
	for _, es := range tl.got {
		for i := 1; i < len(es); i++ {
			reordered = reordered || es[i].MsgId < es[i-1].MsgId
		}
	}
	if !reordered {
		t.Error("a 100 ms random delay reordered nothing")
	}
}

// Partitioned, broadcasts stay in their group; healed, they reach everyone.
func TestPartition(t *testing.T) {
	cl := mkCluster(t)
	tl := collect(t, cl)
	const nMsgs = 100
	if err := cl.Partition([]int{1, 2, 3}, []int{4, 5}); err != nil {
		t.Fatal(err)
	}
	pump(cl, all, nMsgs)
	tl.settle(t, cl, []int{1, 2, 3}, []int{4, 5})
	if n := tl.total(); n != nMsgs*(3*2+2*1) {
		t.Errorf("partitioned: received %d, want %d", n, nMsgs*(3*2+2*1))
	}
	tl.mu.Lock()
	for rcvr, es := range tl.got {
		for _, e := range es {
			if (rcvr <= 3) != (e.Pid <= 3) {
				t.Fatalf("server %d got a message from %d across the partition", rcvr, e.Pid)
			}
		}
	}
	tl.got = map[int][]*cluster.Envelope{}
	tl.mu.Unlock()

	cl.Heal()
	pump(cl, all, nMsgs)
	tl.settle(t, cl, all)
	if n := tl.total(); n != nMsgs*NUMSERVERS*(NUMSERVERS-1) {
		t.Errorf("healed: received %d, want %d", n, nMsgs*NUMSERVERS*(NUMSERVERS-1))
	}
	if err := cl.Partition([]int{1, 2}, []int{2, 3}); err == nil {
		t.Error("a server in two partitions was accepted")
	}
}

// Servers not named form one more group.
func TestPartitionDefaultGroup(t *testing.T) {
	cl := mkCluster(t)
	tl := collect(t, cl)
	if err := cl.Partition([]int{1}); err != nil {
		t.Fatal(err)
	}
	pump(cl, all, 10)
	tl.settle(t, cl, []int{2, 3, 4, 5})
	if n := tl.total(); n != 10*4*3 {
		t.Errorf("received %d, want %d", n, 10*4*3)
	}
}

// Partitioning and healing while every server sends is race-free.
func TestPartitionWhileSending(t *testing.T) {
	cl := mkCluster(t)
	collect(t, cl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pump(cl, all, 500)
	}()
	for i := 0; ; i++ {
		select {
		case <-done:
			return
		default:
		}
		if i%2 == 0 {
			if err := cl.Partition([]int{1, 2}, []int{3}); err != nil {
				t.Fatal(err)
			}
		} else {
			cl.Heal()
		}
	}
}

// A closed server leaves the cluster and its peers' lists; added again, it
// starts with an empty inbox and receives what is sent from then on.
func TestCloseAndReAdd(t *testing.T) {
	cl := mkCluster(t)
	cl.Servers[1].Outbox() <- &cluster.Envelope{Pid: 5, Msg: "before close"}
	waitFor(t, "a message in 5's inbox", func() bool { return len(cl.Servers[5].Inbox()) == 1 })
	old := cl.Servers[5]
	old.Close()
	old.Close()
	if !old.IsClosed() {
		t.Error("IsClosed is false after Close")
	}
	if _, ok := cl.Servers[5]; ok {
		t.Error("a closed server is still in Servers")
	}
	for _, id := range []int{1, 2, 3, 4} {
		for _, p := range cl.Servers[id].Peers() {
			if p == 5 {
				t.Errorf("server %d still lists closed server 5", id)
			}
		}
	}
	old.Outbox() <- &cluster.Envelope{Pid: 1, Msg: "after close"} // no panic

	srv, err := cl.AddServer(5)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "5 back in 1's peers", func() bool { return len(cl.Servers[1].Peers()) == 4 })
	cl.Servers[1].Outbox() <- &cluster.Envelope{Pid: 5, MsgId: 9, Msg: "after re-add"}
	select {
	case e := <-srv.Inbox():
		if e.Msg != "after re-add" || e.Pid != 1 {
			t.Errorf("re-added server got %+v", e)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("re-added server got nothing")
	}
}

// A closed cluster refuses new servers; closing it twice is harmless.
func TestClusterClose(t *testing.T) {
	cl := mkCluster(t)
	srv := cl.Servers[2]
	cl.Close()
	cl.Close()
	if !srv.IsClosed() || len(cl.Servers) != 0 {
		t.Error("Close left servers open")
	}
	if _, err := cl.AddServer(7); err == nil {
		t.Error("AddServer on a closed cluster succeeded")
	}
	cl.Heal()
	if err := cl.Partition([]int{1}); err == nil {
		t.Error("Partition on a closed cluster succeeded")
	}
}

// NewCluster takes the same configuration as cluster.New.
func TestNewClusterFromConfig(t *testing.T) {
	cl, err := NewCluster(cluster.Config{Peers: []cluster.PeerConfig{
		{Id: 100, Address: "localhost:7070"}, {Id: 200, Address: "localhost:8080"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if len(cl.Servers) != 2 || cl.Servers[100].Peers()[0] != 200 {
		t.Fatalf("servers %v", cl.Servers)
	}
	cl.Servers[100].Outbox() <- &cluster.Envelope{Pid: 200, Msg: []byte("hi")}
	if e := recv(t, cl.Servers[200]); string(e.Msg.([]byte)) != "hi" || e.Pid != 100 {
		t.Errorf("got %+v", e)
	}
	if _, err := NewCluster(42); err == nil {
		t.Error("NewCluster(42) succeeded")
	}
	if _, err := NewCluster(`{"Peers": [`); err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Errorf("bad config: %v", err)
	}
	if _, err := NewCluster(cluster.Config{InboxSize: -1}); err == nil {
		t.Error("a negative InboxSize was accepted")
	}
	// The original's form: ids only, no addresses.
	cl2, err := NewCluster(cluster.Config{Peers: []cluster.PeerConfig{{Id: 1}, {Id: 2}, {Id: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	if len(cl2.Servers) != 3 || len(cl2.Servers[3].Peers()) != 2 {
		t.Errorf("servers %v", cl2.Servers)
	}
}

// Hold keeps a link's messages; Release delivers them in order.
func TestHoldRelease(t *testing.T) {
	cl := mkCluster(t)
	if err := cl.Hold(1, 2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		cl.Servers[1].Outbox() <- &cluster.Envelope{Pid: 2, MsgId: int64(i), Msg: "held"}
	}
	cl.Servers[3].Outbox() <- &cluster.Envelope{Pid: 2, MsgId: 100, Msg: "free"}
	if e := recv(t, cl.Servers[2]); e.Pid != 3 {
		t.Fatalf("a held message passed: %+v", e)
	}
	if err := cl.Release(1, 2, false); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if e := recv(t, cl.Servers[2]); e.MsgId != int64(i) {
			t.Fatalf("released out of order: %+v at %d", e, i)
		}
	}
}

// A one-way cut loses one direction only.
func TestCutOneWay(t *testing.T) {
	cl := mkCluster(t)
	if err := cl.Servers[1].Cut(cluster.CutOut, 2); err != nil {
		t.Fatal(err)
	}
	cl.Servers[1].Outbox() <- &cluster.Envelope{Pid: 2, Msg: "lost"}
	cl.Servers[1].Outbox() <- &cluster.Envelope{Pid: 3, Msg: "sent after the lost one"}
	cl.Servers[2].Outbox() <- &cluster.Envelope{Pid: 1, Msg: "kept"}
	if e := recv(t, cl.Servers[1]); e.Msg != "kept" {
		t.Fatalf("got %+v", e)
	}
	recv(t, cl.Servers[3]) // so "lost" has met the cut before it heals
	if err := cl.Servers[1].Heal(); err != nil {
		t.Fatal(err)
	}
	cl.Servers[1].Outbox() <- &cluster.Envelope{Pid: 2, Msg: "after heal"}
	if e := recv(t, cl.Servers[2]); e.Msg != "after heal" {
		t.Fatalf("got %+v; the cut message arrived", e)
	}
}

// A mock server's Send and Recv go through the same faults as Outbox and
// Inbox: across a partition nothing arrives; healed, it does.
func TestSendRecvThroughFaults(t *testing.T) {
	cl := mkCluster(t)
	s1, s2 := cl.Servers[1], cl.Servers[2]
	if err := cl.Partition([]int{1}, []int{2}); err != nil {
		t.Fatal(err)
	}
	if err := s1.Send(&cluster.Envelope{Pid: 2, Msg: "lost"}); err != nil {
		t.Fatalf("a send into a partition is not the sender's error: %v", err)
	}
	if e, err := s2.Recv(50 * time.Millisecond); err != cluster.ErrTimeout {
		t.Fatalf("received across a partition: %+v, %v", e, err)
	}
	cl.Heal()
	if err := s1.Send(&cluster.Envelope{Pid: 2, Msg: "found"}); err != nil {
		t.Fatal(err)
	}
	e, err := s2.Recv(30 * time.Second)
	if err != nil || e.Msg != "found" || e.Pid != 1 {
		t.Fatalf("after Heal: %+v, %v", e, err)
	}
}

// SendMany on a mock server sends in order and stops at an unknown peer.
func TestMockSendMany(t *testing.T) {
	cl := mkCluster(t)
	envs := []*cluster.Envelope{{Pid: 2, MsgId: 1, Msg: "a"}, {Pid: 2, MsgId: 2, Msg: "b"}, {Pid: 99, MsgId: 3}}
	if n, err := cl.Servers[1].SendMany(envs); n != 2 || err == nil {
		t.Fatalf("SendMany: %d, %v; want 2 sent and an unknown-peer error", n, err)
	}
	for _, want := range []int64{1, 2} {
		e, err := cl.Servers[2].Recv(30 * time.Second)
		if err != nil || e.MsgId != want {
			t.Fatalf("got %+v, %v; want message %d", e, err, want)
		}
	}
}

// NewCluster from JSON text or a file: the library parses it and starts
// every configured server; Go serves them. Its refusals are the library's.
func TestNewClusterFromText(t *testing.T) {
	text := `{"Peers": [{"Id": 7, "Address": "localhost:7070"}, {"Id": 8, "Address": "localhost:8080"}], "InboxSize": 5}`
	file := filepath.Join(t.TempDir(), "mock.json")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, conf := range []string{text, file} {
		cl, err := NewCluster(conf)
		if err != nil {
			t.Fatal(err)
		}
		if len(cl.Servers) != 2 || cap(cl.Servers[7].Inbox()) != 5 || cl.Servers[8].Peers()[0] != 7 {
			t.Errorf("%s: servers %v", conf, cl.Servers)
		}
		cl.Servers[7].Outbox() <- &cluster.Envelope{Pid: 8, Msg: "hi"}
		if e := recv(t, cl.Servers[8]); e.Msg != "hi" || e.Pid != 7 {
			t.Errorf("got %+v", e)
		}
		cl.Close()
	}
	// The mock needs no addresses, as the README says; a config it refuses
	// names the problem.
	cl, err := NewCluster(`{"Peers": [{"Id": 1}, {"Id": 2}]}`)
	if err != nil || len(cl.Servers) != 2 {
		t.Fatalf("a mock config without addresses: %v", err)
	}
	cl.Close()
	for _, bad := range []string{`{"Peers": [{"Id": 1}, {"Id": 1}]}`, `{"Peers": [], "Servers": []}`, `{"InboxSise": 5}`, "/no/such/mock.json"} {
		if _, err := NewCluster(bad); !errors.Is(err, cluster.ErrConfig) {
			t.Errorf("NewCluster(%s): %v; want ErrConfig", bad, err)
		}
	}
}

// RecvContext and SendContext on mock servers: many receivers waiting at
// once hold no thread; each gets its message, a cancelled
// one takes nothing, and a SendContext to a full inbox is not dropped.
func TestMockContextCalls(t *testing.T) {
	const n = 30
	cl, err := NewCluster(&cluster.Config{InboxSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for id := 1; id <= n; id++ {
		if _, err := cl.AddServer(id); err != nil {
			t.Fatal(err)
		}
	}
	threads := func() int {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Skip("no /proc/self/task:", err)
		}
		return len(ents)
	}
	before := threads()
	ctx, cancel := context.WithCancel(context.Background())
	results := make(chan error, n)
	for id := 2; id <= n; id++ {
		go func(s *MockServer) {
			e, err := s.RecvContext(ctx)
			if err == nil && (e.Msg != "to you" || e.MsgId != int64(s.Pid())) {
				err = errors.New("wrong message")
			}
			results <- err
		}(cl.Servers[id])
	}
	time.Sleep(300 * time.Millisecond) // the receivers wait meanwhile
	if grew := threads() - before; grew > 5 {
		t.Errorf("%d receivers waiting took %d more threads", n-1, grew)
	}
	s1 := cl.Servers[1]
	for id := 2; id <= n/2; id++ {
		if err := s1.SendContext(ctx, &cluster.Envelope{Pid: id, MsgId: int64(id), Msg: "to you"}); err != nil {
			t.Fatal(err)
		}
	}
	for id := 2; id <= n/2; id++ {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	for id := n/2 + 1; id <= n; id++ {
		if err := <-results; err != context.Canceled {
			t.Fatalf("a cancelled RecvContext: %v", err)
		}
	}
	// Server 2's inbox holds 2: the third waits and, cancelled, is kept.
	bg := context.Background()
	for i := 0; i < 2; i++ {
		if err := s1.SendContext(bg, &cluster.Envelope{Pid: 2, MsgId: int64(i), Msg: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel2 := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel2()
	if err := s1.SendContext(short, &cluster.Envelope{Pid: 2, MsgId: 2, Msg: "x"}); err != context.DeadlineExceeded {
		t.Fatalf("SendContext to a full inbox: %v", err)
	}
	text, _ := s1.Stats()
	if !strings.Contains(text, `"queue_full":0`) {
		t.Fatalf("a cancelled SendContext was dropped: %s", text)
	}
	for i := int64(0); i < 2; i++ {
		if e, err := cl.Servers[2].RecvContext(bg); err != nil || e.MsgId != i {
			t.Fatalf("got %+v, %v; want message %d", e, err, i)
		}
	}
	if e, err := cl.Servers[2].Recv(50 * time.Millisecond); err != cluster.ErrTimeout {
		t.Fatalf("a message too many: %+v, %v", e, err)
	}
}
