package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"sort"
	"strconv"
	"strings"
	"time"

	cluster "github.com/cluster-dev/cluster/bindings/go"
	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

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
	defer profile(fmt.Sprintf("%s.%s.%d", role, impl, me))()
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

// profile starts a CPU profile or an execution trace of this child, on
// request: the file PREFIX.NAME for PREFIX in GOBENCH_CPUPROFILE or
// GOBENCH_TRACE. It returns the function that stops them.
func profile(name string) (stop func()) {
	output := func(env string) *os.File {
		prefix := os.Getenv(env)
		if prefix == "" {
			return nil
		}
		f, err := os.Create(prefix + "." + name)
		if err != nil {
			fail("%v", err)
		}
		return f
	}
	var stops []func()
	if f := output("GOBENCH_CPUPROFILE"); f != nil {
		if err := pprof.StartCPUProfile(f); err != nil {
			fail("%v", err)
		}
		stops = append(stops, pprof.StopCPUProfile)
	}
	if f := output("GOBENCH_TRACE"); f != nil {
		if err := trace.Start(f); err != nil {
			fail("%v", err)
		}
		stops = append(stops, trace.Stop)
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
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

// fresh is message i (see numbered) to node 2 in a new envelope, as a
// program using Outbox makes each one.
func fresh(size, i int) *cluster.Envelope {
	return &cluster.Envelope{Pid: 2, MsgId: int64(i), Msg: numbered(size, i)}
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
		send:  func(e *cluster.Envelope) { out <- e },
		seq:   func(size, i int) { out <- fresh(size, i) },
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
