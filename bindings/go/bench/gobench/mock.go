package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cluster "github.com/cluster-dev/cluster/bindings/go"
	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
	"github.com/cluster-dev/cluster/bindings/go/mock"
)

// The mock workload: mockServers servers of one in-process mock cluster
// each broadcast mockCount string messages while a goroutine per server
// drains its inbox (plain receives: a run that loses a message stalls, and
// the driver ends a child silent for a minute); deliveries/s from the start
// of the sends to the last delivery. Each run is a fresh child process. Every receiver checks that
// it got every message of every sender once, in the order sent; the
// wrapper's runs also check the library's counters (sent, delivered, no
// drop) and the wrapper's own (no encode, decode or send error).
const (
	mockServers = 5
	mockCount   = 50000
	mockQueue   = 1000 // InboxSize and OutboxSize of the wrapper's mock
	baseChan    = 100  // the original mock's channel capacity
	mockMsg     = "a mock broadcast"
)

// mockImpls are the mock workload's transports: the pure-Go baseline and
// the wrapper's two ways in and out, the C ABI from Go (batches of 256 each
// way, or one cluster_send a broadcast: the ceiling of any Go API that
// makes a cgo call a message, as Send does), the core's mock
// without Go (the mock_broadcast bench: one send a message, as
// cluster_send, or batches of 256, as cluster_send_batch), and the Python
// wrapper's mock (bench.py --mock-once: send, or send_many of 256; threads
// under the GIL), each with its goal as a ratio to the baseline. The
// "faults" lines run with the fault model on (see faultDrop), as the
// baseline always does. "alt-go" and "alt-direct" run another build's
// (see -alt).
var mockImpls = []struct {
	name, title string
	goal        float64
}{
	{"base", "pure-Go baseline", 0},
	{"go", "Go mock Outbox/Inbox", 1},
	{"gofaults", "Go mock Outbox/Inbox, faults", 1},
	{"direct", "Go mock Send/Recv", 2},
	{"raw", "raw C ABI from Go", 0},
	{"rawcall", "raw C ABI from Go, per call", 0},
	{"c", "core mock, send (no Go)", 2},
	{"cbatch", "core mock, batch (no Go)", 2},
	{"cfaults", "core mock, send, faults", 0},
	{"cbatchfaults", "core mock, batch, faults", 0},
	{"py", "Python mock send", 0},
	{"pymany", "Python mock send_many", 0},
}

// The lines run by mock_broadcast --once MODE (cmockModes) and bench.py
// --mock-once MODE (pyModes), by transport.
var (
	cmockModes = map[string]string{"c": "send", "cbatch": "batch", "cfaults": "send-faults", "cbatchfaults": "batch-faults"}
	pyModes    = map[string]string{"py": "send", "pymany": "send_many"}
)

// faultDrop is every server's drop probability on the faults lines: the
// core's fault model then decides each copy's fate (the baseline draws a
// drop decision for each copy too), and loses none in practice, so every
// check of the run still holds.
const faultDrop = 1e-15

// pyMock is how the Python lines run: the interpreter (with the cluster
// package installed) and bindings/python/bench.py; both empty: no lines.
type pyMock struct{ python, bench string }

// runMock runs the mock workload: runs rounds of the transports in impls,
// interleaved, and prints each one's median deliveries/s and its ratio to
// the baseline's median of the same run.
func runMock(self, alt, cmock string, py pyMock, impls []string, runs, count int) {
	if cmock == "" {
		impls = slices.DeleteFunc(impls, func(s string) bool { return cmockModes[s] != "" })
	}
	if py.python == "" || py.bench == "" {
		impls = slices.DeleteFunc(impls, func(s string) bool { return pyModes[s] != "" })
	}
	deliveries := mockServers * (mockServers - 1) * count
	fmt.Printf("\nmock broadcast: %d servers each broadcasting %d string messages (%s deliveries), InboxSize/OutboxSize %d;\n"+
		"deliveries/s, median of %d runs ± half their range; pure-Go baseline: the original mock's goroutines and channels of %d\n",
		mockServers, count, fmtNum(float64(deliveries)), mockQueue, runs, baseChan)
	res := map[string][][]float64{}
	for r := 0; r < runs; r++ {
		for _, impl := range impls {
			exe, name := self, impl
			if rest, ok := strings.CutPrefix(impl, "alt-"); ok {
				exe, name = alt, rest
			}
			var v []float64
			var err error
			switch {
			case cmockModes[name] != "":
				v, err = resultOf(cmock, "--once", cmockModes[name], strconv.Itoa(mockServers), strconv.Itoa(count))
			case pyModes[name] != "":
				v, err = resultOf(py.python, py.bench, "--mock-once", pyModes[name], strconv.Itoa(count))
			default:
				v, err = mockOnce(exe, name, count)
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "gobench: mock, %s, run %d: %v\n", impl, r+1, err)
				v = nil
			}
			res[impl] = append(res[impl], v)
		}
	}
	base, baseCPU := summarize(res["base"], 0), summarize(res["base"], 1)
	fmt.Printf("  %-28s %-16s %-20s %-16s %s\n", "", "deliveries/s", "ratio to baseline", "CPU ns/delivery", "ratio")
	for _, impl := range impls {
		title, goal := impl, 0.0
		for _, m := range mockImpls {
			if m.name == strings.TrimPrefix(impl, "alt-") {
				title, goal = m.title, m.goal
			}
		}
		if strings.HasPrefix(impl, "alt-") {
			title = "alt " + title
		}
		s, cpu := summarize(res[impl], 0), summarize(res[impl], 1)
		ratio, cpuRatio, verdictText := "", "", ""
		if impl != "base" && s.n > 0 && base.n > 0 {
			q := s.med / base.med
			ratio = fmt.Sprintf("%.2fx", q)
			cpuRatio = fmt.Sprintf("%.2fx", cpu.med/baseCPU.med)
			if goal > 0 && !strings.HasPrefix(impl, "alt-") {
				verdictText = "goal " + verdict(q >= goal, fmt.Sprintf(">= %gx", goal))
			}
		}
		line := fmt.Sprintf("  %-28s %-16s %-20s %-16s %-8s %s", title, s, ratio, cpu, cpuRatio, verdictText)
		fmt.Println(strings.TrimRight(line, " "))
	}
}

// mockOnce runs one mock child and returns its deliveries/s and the CPU
// time it used per delivery, in ns.
func mockOnce(exe, impl string, count int) ([]float64, error) {
	c, err := spawn(exe, "mock", impl, strconv.Itoa(mockServers), strconv.Itoa(count))
	if err != nil {
		return nil, err
	}
	defer c.finish()
	if err := c.expect("ready"); err != nil {
		return nil, err
	}
	c.say("go")
	v, err := c.result()
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("%d numbers in the result, want 2", len(v))
	}
	return v, err
}

// outsideLimit is how long resultOf lets a run take before it kills it.
const outsideLimit = 2 * time.Minute

// resultOf runs one run of a mock bench outside this program (the core's
// mock_broadcast --once, bench.py --mock-once), which prints "result
// DELIVERIES/S CPU-NS/DELIVERY", and returns those two numbers; a run
// still going after outsideLimit is killed and fails.
func resultOf(exe string, args ...string) ([]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), outsideLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %v", cmd, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 3 || f[0] != "result" {
		return nil, fmt.Errorf("%s printed %q", cmd, out)
	}
	return parseNumbers(f[1:])
}

// cpuTime is the CPU time (user and system) this process has used: on a
// machine shared with other work, the cost of a delivery in CPU time
// varies less than the rate.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// mockChild runs one mock run: mock base|go|gofaults|direct|raw|rawcall SERVERS COUNT.
func mockChild(args []string) {
	if len(args) != 3 {
		fail("usage: gobench mock base|go|gofaults|direct|raw|rawcall SERVERS COUNT")
	}
	impl := args[0]
	servers, _ := strconv.Atoi(args[1])
	count, _ := strconv.Atoi(args[2])
	if servers < 2 || count < 1 {
		fail("bad arguments")
	}
	c := &ctx{in: bufio.NewScanner(os.Stdin)}
	var run func() (time.Duration, error)
	switch impl {
	case "base":
		run = baseRun(servers, count)
	case "go", "gofaults", "direct":
		cl, err := mockCluster(servers, impl == "gofaults")
		if err != nil {
			fail("%v", err)
		}
		defer cl.Close()
		run = wrapperRun(cl, impl == "direct", count)
	case "raw", "rawcall":
		run = rawRun(servers, count, impl == "rawcall")
	default:
		fail("unknown mock transport %s", impl)
	}
	c.ready()
	stop := profile(fmt.Sprintf("mock.%s", impl))
	cpu0 := cpuTime()
	d, err := run()
	cpu := cpuTime() - cpu0
	stop()
	deliveries := float64(servers * (servers - 1) * count)
	if err != nil {
		say("fail %v", err)
	} else {
		say("result %.1f %.1f", deliveries/d.Seconds(), float64(cpu.Nanoseconds())/deliveries)
	}
	c.expect("quit")
}

// receiver checks one server's deliveries: every sender's messages once,
// in order.
type receiver struct {
	pid  int
	next map[int]int64 // the message id expected next from each sender
	want int
}

func newReceiver(pid, servers, count int) *receiver {
	r := &receiver{pid: pid, next: map[int]int64{}, want: (servers - 1) * count}
	for p := 1; p <= servers; p++ {
		if p != pid {
			r.next[p] = 0
		}
	}
	return r
}

func (r *receiver) take(e *cluster.Envelope) error {
	next, ok := r.next[e.Pid]
	switch {
	case !ok:
		return fmt.Errorf("server %d: a message from %d", r.pid, e.Pid)
	case e.MsgId != next:
		return fmt.Errorf("server %d: message %d from %d, want %d", r.pid, e.MsgId, e.Pid, next)
	case e.Msg != mockMsg:
		return fmt.Errorf("server %d: message %d from %d is %#v", r.pid, e.MsgId, e.Pid, e.Msg)
	}
	r.next[e.Pid] = next + 1
	return nil
}

// race runs send and drain for every server at once and returns the time
// until every drain has ended, or the first error.
func race(servers int, send, drain func(pid int) error) (time.Duration, error) {
	errs := make(chan error, 2*servers)
	var drains, sends sync.WaitGroup
	t0 := time.Now()
	for pid := 1; pid <= servers; pid++ {
		drains.Add(1)
		go func() { defer drains.Done(); errs <- drain(pid) }()
	}
	for pid := 1; pid <= servers; pid++ {
		sends.Add(1)
		go func() { defer sends.Done(); errs <- send(pid) }()
	}
	drains.Wait()
	d := time.Since(t0)
	sends.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return d, nil
}

// ---------- the wrapper's mock ----------

// mockCluster is the wrapper's mock cluster of the workload, with the
// fault model on (faultDrop) or not.
func mockCluster(servers int, faults bool) (*mock.MockCluster, error) {
	cfg := cluster.Config{InboxSize: mockQueue, OutboxSize: mockQueue}
	for pid := 1; pid <= servers; pid++ {
		cfg.Peers = append(cfg.Peers, cluster.PeerConfig{Id: pid})
	}
	cl, err := mock.NewCluster(cfg)
	if err == nil && faults {
		cl.ForAll(func(s *mock.MockServer) { s.SetDropProbability(faultDrop) })
	}
	return cl, err
}

// wrapperRun broadcasts through Outbox and drains Inbox, or (direct) sends
// with Send (one envelope reused: Send copies) and receives with Recv.
func wrapperRun(cl *mock.MockCluster, direct bool, count int) func() (time.Duration, error) {
	servers := len(cl.Servers)
	send := func(pid int) error {
		s := cl.Servers[pid]
		if direct {
			e := &cluster.Envelope{Pid: cluster.BROADCAST, Msg: mockMsg}
			for i := 0; i < count; i++ {
				e.MsgId = int64(i)
				if err := s.Send(e); err != nil {
					return err
				}
			}
			return nil
		}
		out := s.Outbox()
		for i := 0; i < count; i++ {
			out <- &cluster.Envelope{Pid: cluster.BROADCAST, MsgId: int64(i), Msg: mockMsg}
		}
		return nil
	}
	drain := func(pid int) error {
		s := cl.Servers[pid]
		r := newReceiver(pid, servers, count)
		if direct { // Recv only: Inbox is never called
			for got := 0; got < r.want; got++ {
				e, err := s.Recv(-1)
				if err != nil {
					return fmt.Errorf("server %d after %d messages: %v", pid, got, err)
				}
				if err := r.take(e); err != nil {
					return err
				}
			}
			return nil
		}
		in := s.Inbox()
		for got := 0; got < r.want; got++ {
			if err := r.take(<-in); err != nil {
				return err
			}
		}
		return nil
	}
	return func() (time.Duration, error) {
		d, err := race(servers, send, drain)
		if err == nil {
			err = checkCounters(cl, count)
		}
		return d, err
	}
}

// checkCounters checks that the library counted every message sent and
// delivered and none dropped, and the wrapper no error. A sender counts
// what a send call delivered once the call has pushed it all, so the
// receivers may have taken the last messages of a batch before it counts
// them: sent is waited for, up to counterWait, as a user reading the
// stats right after the last receive would.
func checkCounters(cl *mock.MockCluster, count int) error {
	want := uint64((len(cl.Servers) - 1) * count)
	for pid, s := range cl.Servers {
		deadline := time.Now().Add(counterWait)
		for {
			text, err := s.Stats()
			if err != nil {
				return err
			}
			var st struct {
				Sent, Delivered uint64
				Dropped         map[string]uint64
			}
			if err := json.Unmarshal([]byte(text), &st); err != nil {
				return err
			}
			dropped := uint64(0)
			for _, n := range st.Dropped {
				dropped += n
			}
			if st.Sent == want && st.Delivered == want && dropped == 0 {
				break
			}
			if st.Sent > want || st.Delivered != want || dropped != 0 || time.Now().After(deadline) {
				return fmt.Errorf("server %d counted %d sent, %d delivered, %d dropped; want %d, %d, 0", pid, st.Sent, st.Delivered, dropped, want, want)
			}
			time.Sleep(time.Millisecond)
		}
		if c := s.Counters(); c != (cluster.Counters{}) {
			return fmt.Errorf("server %d: wrapper counters %+v", pid, c)
		}
	}
	return nil
}

// counterWait bounds checkCounters' wait for a sender's last count.
const counterWait = 10 * time.Second

// ---------- the core's mock through the C ABI, without the wrapper ----------

// rawRun is the ceiling of any Go wrapper over the core's mock: each
// server's messages sent through cluster_send_batch, rawBatch at a time
// (perCall: with one cluster_send each, the ceiling of a wrapper that
// makes a cgo call a message), and received with cluster_recv_batch,
// rawBatch at a time, payloads checked where they are (no copy, no
// decoding, no channels).
func rawRun(servers, count int, perCall bool) func() (time.Duration, error) {
	const rawBatch = 256
	m, err := ffi.NewMock(fmt.Sprintf(`{"InboxSize": %d, "OutboxSize": %d}`, mockQueue, mockQueue), 0)
	if err != nil {
		fail("%v", err)
	}
	hs := map[int]*ffi.Node{}
	for pid := 1; pid <= servers; pid++ {
		if hs[pid], err = m.AddServer(int64(pid)); err != nil {
			fail("%v", err)
		}
	}
	send := func(pid int) error {
		if perCall {
			s := ffi.NewSender()
			defer s.Free()
			for i := 0; i < count; i++ {
				if err := s.Send(hs[pid], cluster.BROADCAST, int64(i), 1, []byte(mockMsg), -1); err != nil {
					return err
				}
			}
			return nil
		}
		b := ffi.NewSendBatch(rawBatch)
		defer b.Free()
		for i := 0; i < count; {
			for ; i < count && !b.Full(); i++ {
				b.Add(cluster.BROADCAST, int64(i), 1, []byte(mockMsg))
			}
			if _, err := b.Send(hs[pid], -1, func(_ int, err error) bool { return false }); err != nil {
				return err
			}
		}
		return nil
	}
	drain := func(pid int) error {
		r := ffi.NewRaw()
		defer r.Free()
		rc := newReceiver(pid, servers, count)
		var bad error
		for got := 0; got < rc.want && bad == nil; {
			n, err := r.RecvBatch(hs[pid], rawBatch, -1, func(from, msgID int64, data []byte) {
				if bad == nil && string(data) != mockMsg {
					bad = fmt.Errorf("server %d: message %d from %d is %q", pid, msgID, from, data)
				} else if bad == nil {
					bad = rc.take(&cluster.Envelope{Pid: int(from), MsgId: msgID, Msg: mockMsg})
				}
			})
			if err != nil {
				return fmt.Errorf("server %d after %d messages: %v", pid, got, err)
			}
			got += n
		}
		return bad
	}
	return func() (time.Duration, error) { return race(servers, send, drain) }
}

// ---------- the pure-Go baseline ----------

// baseServer is a server of the original library's mock, with its cost
// model: a send goroutine takes an envelope from the outbox and, for each
// peer, under the server's lock looks the peer up and draws a drop
// decision, then hands the peer a copy of the envelope on its cluster
// channel; a receive goroutine moves envelopes from the cluster channel to
// the inbox. One pointer passes per delivery; channels hold 100.
type baseServer struct {
	sync.Mutex
	pid        int
	peers      map[int]*baseServer
	dropProb   float32
	outbox     chan *cluster.Envelope
	clusterbox chan *cluster.Envelope
	inbox      chan *cluster.Envelope
}

func (s *baseServer) sendForever() {
	for e := range s.outbox {
		s.Lock()
		peers := s.peers
		s.Unlock()
		for _, p := range peers {
			if e.Pid == cluster.BROADCAST {
				env := *e // a copy for each peer
				env.Pid = p.pid
				s.send(&env)
			} else if e.Pid == p.pid {
				s.send(e)
				break
			}
		}
	}
}

func (s *baseServer) send(env *cluster.Envelope) {
	s.Lock()
	peer, ok := s.peers[env.Pid]
	drop := rand.Float32() < s.dropProb
	s.Unlock()
	if ok && !drop {
		env.Pid = s.pid // the receiver sees the sender
		peer.clusterbox <- env
	}
}

func (s *baseServer) receiveForever() {
	for e := range s.clusterbox {
		s.inbox <- e
	}
}

// baseRun builds the baseline cluster and returns its run.
func baseRun(servers, count int) func() (time.Duration, error) {
	srvs := map[int]*baseServer{}
	for pid := 1; pid <= servers; pid++ {
		srvs[pid] = &baseServer{
			pid:        pid,
			peers:      map[int]*baseServer{},
			outbox:     make(chan *cluster.Envelope, baseChan),
			clusterbox: make(chan *cluster.Envelope, baseChan),
			inbox:      make(chan *cluster.Envelope, baseChan),
		}
	}
	for _, s := range srvs {
		for _, p := range srvs {
			if p != s {
				s.peers[p.pid] = p
			}
		}
	}
	// The goroutines end with the child process.
	for _, s := range srvs {
		go s.sendForever()
		go s.receiveForever()
	}
	send := func(pid int) error {
		out := srvs[pid].outbox
		for i := 0; i < count; i++ {
			out <- &cluster.Envelope{Pid: cluster.BROADCAST, MsgId: int64(i), Msg: mockMsg}
		}
		return nil
	}
	drain := func(pid int) error {
		r := newReceiver(pid, servers, count)
		in := srvs[pid].inbox
		for got := 0; got < r.want; got++ {
			if err := r.take(<-in); err != nil {
				return err
			}
		}
		return nil
	}
	return func() (time.Duration, error) { return race(servers, send, drain) }
}
