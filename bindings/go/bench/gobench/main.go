// Command gobench measures the Go binding the way the C bench (bench/ at
// the repository root) measures the C API: sender and receiver in separate
// processes over loopback, each a fresh child on fresh ports, talking to
// the driver in the C bench's line protocol (ready, go, result, quit), with
// the C bench's workloads (unicast 64 B: 2M messages, msgs/s counted at the
// receiver from its first message to its last; ping-pong 64 B: 5000 timed
// round trips after 300 warm-ups) and checks (every payload carries its
// sequence number; a lost, duplicated or reordered message fails the run).
//
// It runs these transports, interleaved run by run so that drift on the
// machine hits them alike:
//
//	go      the wrapper: Outbox and Inbox channels of package cluster
//	direct  the wrapper's synchronous Send and Recv
//	batch   SendMany of 256 envelopes, and Recv
//	raw     the C ABI called from Go: one cluster_send per message, up to
//	        256 per cluster_recv_batch, no channels, no codec (what the C
//	        bench does)
//	c       the C bench's own children (its binary, given with -cbench)
//	alt     the channel children of another build of gobench (-alt), for A/B
//	a+b     node 0 (sender, client) on a and node 1 (receiver, server) on
//	        b, e.g. go+c and c+go to see which side costs what
//
// and prints the median of the runs ± half their range (relative to the
// median), and the ratio of each wrapper path to the C bench with the goal
// (within 2x). bindings/go/bench.sh builds everything and runs it.
//
// Usage: gobench [-runs N] [-only unicast|ping-pong] [-impl go,direct,batch,raw,c]
// [-cbench PATH] [-alt PATH] [-scale F]. GOBENCH_CPUPROFILE=prefix and
// GOBENCH_TRACE=prefix make each Go child write a CPU profile or an
// execution trace.
//
// Run with a role (gobench thr|pp go|direct|batch|raw ME N PORTS SIZE
// COUNT) it is a child.
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"strconv"
	"strings"
	"time"

	cluster "github.com/cluster-dev/cluster/bindings/go"
	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// Workloads, as in the C bench's driver: size, count, and the metrics the
// measuring child reports.
type workload struct {
	name    string
	role    string // "thr" or "pp"
	size    int
	count   int
	metrics []string
	better  []int // per metric: +1 higher is better, -1 lower, 0 no goal
}

var workloads = []workload{
	{"unicast 64 B", "thr", 64, 2000000, []string{"msgs/s", "MB/s"}, []int{+1, 0}},
	{"ping-pong 64 B", "pp", 64, 5000, []string{"p50 us", "p99 us", "mean us"}, []int{-1, 0, 0}},
}

// The goal of the Go wrapper: within 2x of the C API.
const goalFactor = 2.0

var impls = []struct{ name, title string }{
	{"go", "Go wrapper"},
	{"direct", "Go Send/Recv"},
	{"batch", "Go SendMany/Recv"},
	{"raw", "raw C ABI from Go"},
	{"c", "C bench"},
	{"alt", "alt Go wrapper"},
}

func main() {
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		child(os.Args[1:])
		return
	}
	runs := flag.Int("runs", 5, "runs of each workload and transport")
	only := flag.String("only", "", "workloads whose name contains this")
	cbench := flag.String("cbench", "", "the C bench binary (bench/build/bench); without it the C column is skipped")
	alt := flag.String("alt", "", "another build of this program: transport \"alt\" runs its Go wrapper children (for before/after comparisons in one run)")
	implList := flag.String("impl", "go,direct,batch,raw,c", "the transports to run (go+raw: a Go sender or client, a raw receiver or server)")
	scale := flag.Float64("scale", 1, "multiply the message counts by this")
	flag.Parse()
	self, err := os.Executable()
	if err != nil {
		fail("%v", err)
	}
	fmt.Printf("machine: %d cores, %s; load %s\n", runtime.NumCPU(), cpuModel(), loadAvg())
	var cols []string // the transports run, in impls order, then any mixed ones
	for _, name := range strings.Split(*implList, ",") {
		if name == "c" && *cbench == "" {
			continue
		}
		cols = append(cols, name)
	}
	title := func(name string) string {
		for _, im := range impls {
			if im.name == name {
				return im.title
			}
		}
		return name
	}
	header := fmt.Sprintf("%-16s %-8s", "workload", "metric")
	for _, c := range cols {
		header += fmt.Sprintf(" %-18s", title(c))
	}
	var wrappers []string // the wrapper columns, each with its ratio to C
	for _, c := range cols {
		if c == "go" || c == "direct" || c == "batch" {
			wrappers = append(wrappers, c)
			header += fmt.Sprintf(" %-8s %-22s", c+" / C", "goal (within 2x of C)")
		}
	}
	fmt.Println(header)
	for _, w := range workloads {
		if !strings.Contains(w.name, *only) {
			continue
		}
		w.count = max(1, int(float64(w.count)**scale))
		res := map[string][][]float64{} // impl -> runs -> metrics
		for r := 0; r < *runs; r++ {
			for _, name := range cols {
				// a column "a+b" runs node 0 (sender, client) on a, node 1 on b
				a, b, mixed := strings.Cut(name, "+")
				if !mixed {
					b = a
				}
				var nodes [2]node
				for i, t := range []string{a, b} {
					switch t {
					case "c":
						nodes[i] = node{*cbench, "cluster"}
					case "alt":
						nodes[i] = node{*alt, "go"}
					default:
						nodes[i] = node{self, t}
					}
				}
				v, err := runOnce(nodes, w)
				if err != nil {
					fmt.Fprintf(os.Stderr, "gobench: %s, %s, run %d: %v\n", w.name, name, r+1, err)
					v = nil
				}
				res[name] = append(res[name], v)
			}
		}
		for m, metric := range w.metrics {
			name := w.name
			if m > 0 {
				name = ""
			}
			line := fmt.Sprintf("%-16s %-8s", name, metric)
			for _, c := range cols {
				line += fmt.Sprintf(" %-18s", summarize(res[c], m))
			}
			for _, wr := range wrappers {
				ratio, goal := "", ""
				goS, cS := summarize(res[wr], m), summarize(res["c"], m)
				if goS.n > 0 && cS.n > 0 {
					q := goS.med / cS.med
					ratio = fmt.Sprintf("%.2fx", q)
					switch w.better[m] {
					case +1:
						goal = verdict(q >= 1/goalFactor, fmt.Sprintf(">= %s", fmtNum(cS.med/goalFactor)))
					case -1:
						goal = verdict(q <= goalFactor, fmt.Sprintf("<= %s", fmtNum(cS.med*goalFactor)))
					}
				}
				line += fmt.Sprintf(" %-8s %-22s", ratio, goal)
			}
			fmt.Println(strings.TrimRight(line, " "))
		}
	}
}

func verdict(ok bool, what string) string {
	if ok {
		return what + " met"
	}
	return what + " MISSED"
}

// runOnce runs workload w once on fresh ports with two children of exe and
// returns the measuring child's numbers (the receiver's for unicast, the
// client's for ping-pong), as the C bench's driver does.
// node is how to run one child: a program and its transport argument.
type node struct{ exe, impl string }

func runOnce(nodes [2]node, w workload) ([]float64, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	var chs [2]*proc
	defer func() {
		for _, c := range chs {
			if c != nil {
				c.finish()
			}
		}
	}()
	for me := range chs {
		c, err := spawn(nodes[me].exe, w.role, nodes[me].impl, strconv.Itoa(me), "2", ports, strconv.Itoa(w.size), strconv.Itoa(w.count))
		if err != nil {
			return nil, err
		}
		chs[me] = c
	}
	for _, c := range chs {
		if err := c.expect("ready"); err != nil {
			return nil, err
		}
	}
	for _, c := range chs {
		c.say("go")
	}
	meter := 0
	if w.role == "thr" {
		meter = 1
	}
	if _, err := chs[1-meter].result(); err != nil {
		return nil, err
	}
	v, err := chs[meter].result()
	if err == nil && len(v) != len(w.metrics) {
		err = fmt.Errorf("%d numbers in the result, want %d", len(v), len(w.metrics))
	}
	return v, err
}

type proc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func spawn(exe string, args ...string) (*proc, error) {
	cmd := exec.Command(exe, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd: cmd, in: in, out: bufio.NewScanner(out)}, nil
}

// line is the child's next line; a child that ends or stalls for a minute
// is an error (the kill in finish ends it).
func (p *proc) line() (string, error) {
	got := make(chan bool, 1)
	go func() { got <- p.out.Scan() }()
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case ok := <-got:
		if !ok {
			return "", fmt.Errorf("child %d ended", p.cmd.Process.Pid)
		}
		return p.out.Text(), nil
	case <-t.C:
		p.cmd.Process.Kill()
		return "", fmt.Errorf("child %d silent for a minute", p.cmd.Process.Pid)
	}
}

func (p *proc) expect(word string) error {
	l, err := p.line()
	if err == nil && l != word {
		err = fmt.Errorf("child %d said %q, want %q", p.cmd.Process.Pid, l, word)
	}
	return err
}

func (p *proc) result() ([]float64, error) {
	l, err := p.line()
	if err != nil {
		return nil, err
	}
	f := strings.Fields(l)
	if len(f) == 0 || f[0] != "result" {
		return nil, fmt.Errorf("child %d: %s", p.cmd.Process.Pid, l)
	}
	var v []float64
	for _, s := range f[1:] {
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		v = append(v, x)
	}
	return v, nil
}

func (p *proc) say(s string) { fmt.Fprintln(p.in, s) }

// finish tells the child to quit and waits for it (killing it after 20 s).
func (p *proc) finish() {
	p.say("quit")
	p.in.Close()
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	t := time.NewTimer(20 * time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		fmt.Fprintf(os.Stderr, "gobench: killing stuck child %d\n", p.cmd.Process.Pid)
		p.cmd.Process.Kill()
		<-done
	}
}

// freePorts is n loopback ports free right now, as "p1,p2".
func freePorts(n int) (string, error) {
	var ls []net.Listener
	var ps []string
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		ls = append(ls, l)
		ps = append(ps, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return strings.Join(ps, ","), nil
}

type summary struct {
	med, spread float64
	n, failed   int
}

// summarize is the median of metric m over the runs that gave numbers and
// half their range relative to it.
func summarize(runs [][]float64, m int) summary {
	var x []float64
	s := summary{}
	for _, v := range runs {
		if v == nil {
			s.failed++
			continue
		}
		x = append(x, v[m])
	}
	s.n = len(x)
	if s.n == 0 {
		return s
	}
	sort.Float64s(x)
	s.med = x[s.n/2]
	if s.n%2 == 0 {
		s.med = (x[s.n/2-1] + x[s.n/2]) / 2
	}
	s.spread = (x[s.n-1] - x[0]) / 2 / math.Abs(s.med)
	return s
}

func (s summary) String() string {
	if s.n == 0 {
		if s.failed > 0 {
			return "FAIL"
		}
		return "-"
	}
	out := fmt.Sprintf("%s ±%.0f%%", fmtNum(s.med), s.spread*100)
	if s.failed > 0 {
		out += fmt.Sprintf(" (%d FAIL)", s.failed)
	}
	return out
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gobench: "+format+"\n", args...)
	os.Exit(1)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(l[strings.Index(l, ":")+1:])
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// ---------- the children ----------

// child runs one role: thr|pp go|direct|batch|raw ME N PORTS SIZE COUNT.
func child(args []string) {
	if len(args) != 7 {
		fail("usage: gobench thr|pp go|direct|batch|raw ME N PORTS SIZE COUNT")
	}
	role, impl := args[0], args[1]
	me, _ := strconv.Atoi(args[2])
	size, _ := strconv.Atoi(args[5])
	count, _ := strconv.Atoi(args[6])
	if size < 16 || count < 1 {
		fail("bad arguments")
	}
	var peers []string
	for i, p := range strings.Split(args[4], ",") {
		peers = append(peers, fmt.Sprintf(`{"Id":%d,"Address":"127.0.0.1:%s"}`, i+1, p))
	}
	config := `{"Peers":[` + strings.Join(peers, ",") +
		`],"InboxSize":1000,"OutboxSize":1000,"CloseLingerMs":10000}`
	// A CPU profile or an execution trace of each Go child, on request:
	// the file PREFIX.ROLE.IMPL.ME for PREFIX in the environment variable.
	output := func(env string) *os.File {
		prefix := os.Getenv(env)
		if prefix == "" {
			return nil
		}
		f, err := os.Create(fmt.Sprintf("%s.%s.%s.%d", prefix, role, impl, me))
		if err != nil {
			fail("%v", err)
		}
		return f
	}
	if f := output("GOBENCH_CPUPROFILE"); f != nil {
		if err := pprof.StartCPUProfile(f); err != nil {
			fail("%v", err)
		}
		defer pprof.StopCPUProfile()
	}
	if f := output("GOBENCH_TRACE"); f != nil {
		if err := trace.Start(f); err != nil {
			fail("%v", err)
		}
		defer trace.Stop()
	}
	in := bufio.NewScanner(os.Stdin)
	c := &ctx{me: me, size: size, count: count, in: in}
	switch impl {
	case "go", "direct", "batch":
		srv, err := cluster.New(me+1, config)
		if err != nil {
			fail("%v", err)
		}
		n := srv.(*cluster.Node)
		waitConnected(n.Stats)
		var p port
		switch impl {
		case "direct":
			p = direct(n) // Inbox is never called: Recv takes from the node
		case "batch":
			p = batched(n)
		default:
			p = channels(srv)
		}
		c.ready()
		if role == "thr" {
			c.goThr(p)
		} else {
			c.goPP(p)
		}
		c.expect("quit")
		srv.Close()
	case "raw":
		h, err := ffi.NewNode(int64(me+1), config)
		if err != nil {
			fail("%v", err)
		}
		waitConnected(h.Stats)
		c.ready()
		r := ffi.NewRaw()
		if role == "thr" {
			c.rawThr(h, r)
		} else {
			c.rawPP(h, r)
		}
		c.expect("quit")
		h.Close()
		r.Free()
		h.Free()
	default:
		fail("unknown transport %s", impl)
	}
}

type ctx struct {
	me, size, count int
	in              *bufio.Scanner
}

func (c *ctx) ready() {
	say("ready")
	c.expect("go")
}

func (c *ctx) expect(word string) {
	if !c.in.Scan() {
		os.Exit(1) // the driver is gone
	}
	if c.in.Text() != word {
		fail("expected %q, got %q", word, c.in.Text())
	}
}

func say(format string, args ...interface{}) {
	fmt.Printf(format+"\n", args...)
}

// waitConnected waits (20 s at most) until the stats say the peer is
// connected, as the C bench does before saying ready.
func waitConnected(stats func() (string, error)) {
	end := time.Now().Add(20 * time.Second)
	for {
		s, err := stats()
		if err != nil {
			fail("stats: %v", err)
		}
		if strings.Contains(s, `"connected":true`) {
			return
		}
		if time.Now().After(end) {
			fail("peer not connected after 20 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Payloads carry their sequence number in their first 8 bytes
// (little-endian), as in the C bench, so Go and C children can be paired.
func seq(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }

func numbered(size, i int) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint64(b, uint64(i))
	return b
}

// port is how a child sends and receives through the wrapper: send sends
// an envelope, seq sends message i (see numbered) to node 2, flush sends
// what seq has kept back, recv receives.
type port struct {
	send  func(*cluster.Envelope)
	seq   func(size, i int)
	flush func()
	recv  func() *cluster.Envelope
}

// channels is the original API: Outbox and Inbox. An envelope put on
// Outbox belongs to the library, so each message is a new one.
func channels(srv cluster.Server) port {
	out, in := srv.Outbox(), srv.Inbox()
	return port{
		send: func(e *cluster.Envelope) { out <- e },
		seq: func(size, i int) {
			out <- &cluster.Envelope{Pid: 2, MsgId: int64(i), Msg: numbered(size, i)}
		},
		flush: func() {},
		recv:  func() *cluster.Envelope { return <-in },
	}
}

// direct is the Node's synchronous Send and Recv. Send has copied the
// message when it returns, so the sender reuses one envelope and payload,
// as the C bench reuses its buffer.
func direct(n *cluster.Node) port {
	var buf []byte
	e := &cluster.Envelope{Pid: 2}
	p := port{
		send: func(e *cluster.Envelope) {
			if err := n.Send(e); err != nil {
				fail("send: %v", err)
			}
		},
		flush: func() {},
		recv: func() *cluster.Envelope {
			e, err := n.Recv(-1)
			if err != nil {
				fail("recv: %v", err)
			}
			return e
		},
	}
	p.seq = func(size, i int) {
		if len(buf) != size {
			buf = make([]byte, size)
			e.Msg = buf
		}
		binary.LittleEndian.PutUint64(buf, uint64(i))
		e.MsgId = int64(i)
		p.send(e)
	}
	return p
}

// batched sends with SendMany, 256 envelopes at a time (reused, as Send's
// are), and receives with Recv.
func batched(n *cluster.Node) port {
	p := direct(n)
	const batch = 256
	envs := make([]*cluster.Envelope, batch)
	bufs := make([][]byte, batch)
	for k := range envs {
		envs[k] = &cluster.Envelope{Pid: 2}
	}
	kept := 0
	p.flush = func() {
		if _, err := n.SendMany(envs[:kept]); err != nil {
			fail("send: %v", err)
		}
		kept = 0
	}
	p.seq = func(size, i int) {
		e := envs[kept]
		if len(bufs[kept]) != size {
			bufs[kept] = make([]byte, size)
			e.Msg = bufs[kept]
		}
		binary.LittleEndian.PutUint64(bufs[kept], uint64(i))
		e.MsgId = int64(i)
		if kept++; kept == batch {
			p.flush()
		}
	}
	return p
}

// Unicast through the wrapper: node 0 sends count envelopes, each payload
// carrying its sequence number (MsgId too; a fresh envelope and payload a
// message through the channels, reused ones through Send and SendMany);
// node 1 checks order and size and reports msgs/s from its first message
// to its last.
func (c *ctx) goThr(p port) {
	if c.me == 0 {
		for i := 0; i < c.count; i++ {
			p.seq(c.size, i)
		}
		p.flush()
		say("result 0")
		return
	}
	var t0 time.Time
	for got := 0; got < c.count; got++ {
		e := p.recv()
		if b, ok := e.Msg.([]byte); !ok || len(b) != c.size || seq(b) != uint64(got) {
			say("fail message %d: msg id %d", got, e.MsgId)
			return
		}
		if got == 0 {
			t0 = time.Now()
		}
	}
	c.reportRate(time.Since(t0))
}

func (c *ctx) reportRate(d time.Duration) {
	rate := float64(c.count-1) / d.Seconds()
	say("result %.1f %.3f", rate, rate*float64(c.size)/1e6)
}

// Ping-pong through the wrapper: node 0 times round trips after 300
// warm-ups, node 1 echoes the envelope back.
func (c *ctx) goPP(p port) {
	total := c.count + ppWarmup
	if c.me == 1 {
		for i := 0; i < total; i++ {
			e := p.recv()
			e.Pid = 1
			p.send(e)
			p.flush()
		}
		say("result 0")
		return
	}
	rtts := make([]float64, 0, c.count)
	for i := 0; i < total; i++ {
		t := time.Now()
		p.seq(c.size, i)
		p.flush()
		e := p.recv()
		us := float64(time.Since(t).Nanoseconds()) / 1e3
		if b, ok := e.Msg.([]byte); !ok || len(b) != c.size || seq(b) != uint64(i) {
			say("fail round trip %d came back wrong", i)
			return
		}
		if i >= ppWarmup {
			rtts = append(rtts, us)
		}
	}
	reportRTT(rtts)
}

const ppWarmup = 300

func reportRTT(rtts []float64) {
	sum := 0.0
	for _, v := range rtts {
		sum += v
	}
	sort.Float64s(rtts)
	n := len(rtts)
	say("result %.2f %.2f %.2f", rtts[n/2], rtts[n*99/100], sum/float64(n))
}

// Unicast through the C ABI from Go, as the C bench: cluster_send per
// message with the sequence number in the payload (and message id), cluster_recv_batch of
// up to 256 at the receiver.
func (c *ctx) rawThr(h *ffi.Node, r *ffi.Raw) {
	buf := make([]byte, c.size)
	if c.me == 0 {
		for i := 0; i < c.count; i++ {
			binary.LittleEndian.PutUint64(buf, uint64(i))
			if err := r.Send(h, 2, int64(i), 0, buf, -1); err != nil {
				fail("send: %v", err)
			}
		}
		say("result 0")
		return
	}
	got, first, bad := 0, 0, false
	var t0, t1 time.Time
	for got < c.count && !bad {
		_, err := r.RecvBatch(h, 256, -1, func(_, msgID int64, data []byte) {
			if len(data) != c.size || seq(data) != uint64(got) {
				bad = true
			}
			got++
		})
		if err != nil {
			fail("recv: %v", err)
		}
		t1 = time.Now()
		if t0.IsZero() {
			t0, first = t1, got
		}
	}
	if bad {
		say("fail a message came out of order or with the wrong size")
		return
	}
	rate := float64(got-first) / t1.Sub(t0).Seconds()
	say("result %.1f %.3f", rate, rate*float64(c.size)/1e6)
}

// Ping-pong through the C ABI from Go, as the C bench: cluster_send, then
// cluster_recv_batch of one.
func (c *ctx) rawPP(h *ffi.Node, r *ffi.Raw) {
	total := c.count + ppWarmup
	buf := make([]byte, c.size)
	var id int64
	n := 0
	recv1 := func() {
		if _, err := r.RecvBatch(h, 1, -1, func(_, msgID int64, data []byte) { id, n = msgID, copy(buf, data) }); err != nil {
			fail("recv: %v", err)
		}
	}
	if c.me == 1 {
		for i := 0; i < total; i++ {
			recv1()
			if err := r.Send(h, 1, id, 0, buf, -1); err != nil {
				fail("send: %v", err)
			}
		}
		say("result 0")
		return
	}
	rtts := make([]float64, 0, c.count)
	for i := 0; i < total; i++ {
		binary.LittleEndian.PutUint64(buf, uint64(i))
		t := time.Now()
		if err := r.Send(h, 2, int64(i), 0, buf, -1); err != nil {
			fail("send: %v", err)
		}
		recv1()
		us := float64(time.Since(t).Nanoseconds()) / 1e3
		if n != c.size || seq(buf) != uint64(i) {
			say("fail round trip %d came back wrong", i)
			return
		}
		if i >= ppWarmup {
			rtts = append(rtts, us)
		}
	}
	reportRTT(rtts)
}
