package cluster

import (
	"encoding/gob"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

const numMsgs = 1000

type MyMsg struct {
	MyMsgId int64
	Str     string
}

func init() {
	gob.Register(MyMsg{})
}

// Five servers from a JSON file each broadcast 1,000 gob messages at full
// speed; every server receives all 4,000 from its peers, intact.
func TestBroadcast(t *testing.T) {
	checkNoLeak(t)
	const n = 5
	file := writeConfig(t, freeConfig(t, n))
	srvs := startAll(t, file, 1, 2, 3, 4, 5)

	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for _, srv := range srvs {
		wg.Add(2)
		go func(srv Server) { // drainer
			defer wg.Done()
			counts := map[int]int{}
			for got := 0; got < numMsgs*(n-1); got++ {
				select {
				case env := <-srv.Inbox():
					m, ok := env.Msg.(MyMsg)
					switch {
					case env.Pid == srv.Pid():
						errs <- fmt.Errorf("server %d received its own broadcast", srv.Pid())
						return
					case !ok || m.Str != fmt.Sprintf("Msg:%d", env.MsgId) || m.MyMsgId != env.MsgId:
						errs <- fmt.Errorf("server %d: bad message %+v", srv.Pid(), env)
						return
					}
					counts[env.Pid]++
				case <-time.After(30 * time.Second):
					errs <- fmt.Errorf("server %d: timed out with %d of %d", srv.Pid(), got, numMsgs*(n-1))
					return
				}
			}
			for pid, c := range counts {
				if c != numMsgs {
					errs <- fmt.Errorf("server %d got %d messages from %d", srv.Pid(), c, pid)
				}
			}
		}(srv)
		go func(srv Server) { // pumper
			defer wg.Done()
			for i := 1; i <= numMsgs; i++ {
				msg := &MyMsg{MyMsgId: int64(i), Str: fmt.Sprintf("Msg:%d", i)}
				srv.Outbox() <- &Envelope{Pid: BROADCAST, MsgId: int64(i), Msg: msg}
			}
		}(srv)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// sendRcv starts two servers, sends one message from the first to the
// second and closes both.
func sendRcv(t *testing.T, cfg Config) {
	srvs := startAll(t, cfg, 1, 2)
	srvs[0].Outbox() <- &Envelope{Pid: 2, Msg: &MyMsg{MyMsgId: 1, Str: "sendRcv"}}
	e := recvWithin(t, srvs[1], 10*time.Second)
	if e.Pid != 1 || e.Msg.(MyMsg).Str != "sendRcv" {
		t.Fatalf("got %+v", e)
	}
	for _, s := range srvs {
		s.Close()
	}
}

// Servers closed and started again on the same addresses work at once.
func TestCloseAndRestart(t *testing.T) {
	checkNoLeak(t)
	cfg := freeConfig(t, 2)
	for i := 0; i < 5; i++ {
		sendRcv(t, cfg)
	}
}

// A server whose Inbox nobody reads, and whose queues are full, still
// closes, and restarts on the same address.
func TestRestartWithFullInbox(t *testing.T) {
	checkNoLeak(t)
	cfg := freeConfig(t, 2)
	cfg.InboxSize = 10
	srvs := startAll(t, cfg, 1, 2)
	for i := 0; i < 200; i++ {
		select {
		case srvs[0].Outbox() <- &Envelope{Pid: 2, MsgId: int64(i), Msg: []byte("x")}:
		case <-time.After(10 * time.Second):
			t.Fatal("outbox blocked")
		}
	}
	waitFor(t, 10*time.Second, "server 2's inbox to fill", func() bool {
		return len(srvs[1].Inbox()) == cap(srvs[1].Inbox())
	})
	srvs[1].Close()
	again, err := New(2, cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer again.Close()
	srvs[0].Outbox() <- &Envelope{Pid: 2, MsgId: 1000, Msg: "after restart"}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-again.Inbox():
			if e.Msg == "after restart" {
				return
			}
		case <-deadline:
			t.Fatal("restarted server got nothing")
		}
	}
}

type unregistered struct{ A int }

// Every kind of Msg arrives as what was sent; unknown peers, unencodable
// values and nil envelopes are counted, not fatal.
func TestMessageKinds(t *testing.T) {
	checkNoLeak(t)
	srvs := startFree(t, 2)
	a, b := srvs[0], srvs[1]
	big := []byte(strings.Repeat("z", 1<<20))
	cases := []interface{}{
		[]byte{0, 1, 2, 255}, []byte{}, "héllo", "", MyMsg{7, "seven"}, &MyMsg{8, "eight"},
		json.RawMessage(`{"a":[1,2,"x"],"b":null}`), nil, 42, big,
	}
	want := []interface{}{
		[]byte{0, 1, 2, 255}, []byte{}, "héllo", "", MyMsg{7, "seven"}, MyMsg{8, "eight"},
		map[string]interface{}{"a": []interface{}{1.0, 2.0, "x"}, "b": nil}, nil, 42, big,
	}
	a.Outbox() <- &Envelope{Pid: 99, Msg: "to nobody"}
	a.Outbox() <- &Envelope{Pid: 2, Msg: unregistered{1}}
	a.Outbox() <- nil
	for i, m := range cases {
		a.Outbox() <- &Envelope{Pid: 2, MsgId: int64(i), Msg: m}
	}
	for i, w := range want {
		e := recvWithin(t, b, 10*time.Second)
		if e.MsgId != int64(i) || e.Pid != 1 || !reflect.DeepEqual(e.Msg, w) {
			t.Errorf("message %d: got %+v (%T), want %T", i, e, e.Msg, w)
		}
	}
	c := a.(*Node).Counters()
	if c.SendErrors != 1 || c.EncodeErrors != 1 || c.Discarded != 1 {
		t.Errorf("counters %+v, want one of each", c)
	}
	// Unicast to oneself lands in one's own inbox.
	a.Outbox() <- &Envelope{Pid: 1, MsgId: 5, Msg: "me"}
	if e := recvWithin(t, a, 10*time.Second); e.Pid != 1 || e.Msg != "me" {
		t.Errorf("to self: got %+v", e)
	}
}

// Bad configurations are errors that name the problem; nothing exits.
func TestNewErrors(t *testing.T) {
	checkNoLeak(t)
	cfg := freeConfig(t, 2)
	srv := startAll(t, cfg, 1)[0]
	dup := Config{Peers: []PeerConfig{{Id: 1, Address: "127.0.0.1:1"}, {Id: 1, Address: "127.0.0.1:2"}}}
	cases := []struct {
		id     int
		config interface{}
		want   string
	}{
		{3, cfg, "own id 3"},
		{1, cfg, "CLUSTER_E_ADDR_IN_USE"},
		{1, dup, "duplicate"},
		{1, Config{Peers: []PeerConfig{{Id: 1, Address: "no port"}}}, "Address"},
		{1, "/nonexistent/config.json", "cannot read"},
		{1, `{"Peers": [`, "JSON"},
		{1, 42, "int"},
		{1, (*Config)(nil), "nil"},
	}
	for _, c := range cases {
		s, err := New(c.id, c.config)
		if err == nil {
			s.Close()
			t.Errorf("New(%d, %v): no error", c.id, c.config)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%d, %v): %v does not mention %q", c.id, c.config, err, c.want)
		}
	}
	if srv.IsClosed() {
		t.Error("a failed New closed the running server")
	}
}

// Close is idempotent, concurrent-safe and quick; sends after it neither
// panic nor reach anyone.
func TestCloseTwiceAndSendAfter(t *testing.T) {
	checkNoLeak(t)
	cfg := freeConfig(t, 2)
	srvs := startAll(t, cfg, 1, 2)
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); srvs[0].Close() }()
	}
	wg.Wait()
	if !srvs[0].IsClosed() || srvs[1].IsClosed() {
		t.Fatal("IsClosed wrong")
	}
	srvs[0].Close()
	srvs[0].Outbox() <- &Envelope{Pid: 2, Msg: "after close"}
	if _, err := srvs[0].(*Node).Stats(); err != ErrClosed {
		t.Errorf("Stats after Close: %v", err)
	}
	if got := srvs[0].Peers(); len(got) != 1 || got[0] != 2 {
		t.Errorf("Peers after Close: %v", got)
	}
	// The sender goroutine has ended: the envelope stays in Outbox.
	if n := len(srvs[0].Outbox()); n != 1 {
		t.Errorf("a send after Close was taken (%d left in Outbox)", n)
	}
}

// Stats reports what the library counted.
func TestStats(t *testing.T) {
	srvs := startFree(t, 2)
	for i := 0; i < 10; i++ {
		srvs[0].Outbox() <- &Envelope{Pid: 2, MsgId: int64(i), Msg: "x"}
	}
	for i := 0; i < 10; i++ {
		recvWithin(t, srvs[1], 10*time.Second)
	}
	text, err := srvs[1].(*Node).Stats()
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Delivered int }
	if err := json.Unmarshal([]byte(text), &st); err != nil {
		t.Fatalf("%v in %s", err, text)
	}
	if st.Delivered != 10 {
		t.Errorf("delivered %d, want 10: %s", st.Delivered, text)
	}
}

// Fault controls work on real TCP nodes as on mock servers.
func TestRealNodeFaults(t *testing.T) {
	checkNoLeak(t)
	srvs := startFree(t, 3)
	n1 := srvs[0].(*Node)
	if err := n1.Cut(CutOut, 2); err != nil {
		t.Fatal(err)
	}
	n1.Outbox() <- &Envelope{Pid: 2, Msg: "lost"}
	n1.Outbox() <- &Envelope{Pid: 3, Msg: "probe"} // sent after "lost" met the cut
	if e := recvWithin(t, srvs[2], 10*time.Second); e.Msg != "probe" {
		t.Fatalf("got %+v", e)
	}
	if err := n1.HealCuts(); err != nil {
		t.Fatal(err)
	}
	n1.Outbox() <- &Envelope{Pid: 2, Msg: "after heal"}
	if e := recvWithin(t, srvs[1], 10*time.Second); e.Msg != "after heal" {
		t.Fatalf("got %+v; the cut message arrived", e)
	}
	if err := n1.SetDropProbability(1.5); err == nil {
		t.Error("a drop probability of 1.5 was accepted")
	}
	if err := n1.SetDropProbability(1); err != nil {
		t.Fatal(err)
	}
	n1.Outbox() <- &Envelope{Pid: 2, Msg: "dropped"}
	n1.Outbox() <- &Envelope{Pid: 1, Msg: "to self"} // never faulted, and after "dropped"
	recvWithin(t, n1, 10*time.Second)
	if err := n1.SetDropProbability(0); err != nil {
		t.Fatal(err)
	}
	n1.Outbox() <- &Envelope{Pid: 2, Msg: "kept"}
	if e := recvWithin(t, srvs[1], 10*time.Second); e.Msg != "kept" {
		t.Fatalf("got %+v; the dropped message arrived", e)
	}
	n1.Close()
	if err := n1.SetMaxMessageDelay(10); err != ErrClosed {
		t.Errorf("fault control after Close: %v", err)
	}
}

// Closing servers in every state leaves no goroutine behind: one whose
// sender is blocked on a peer that reads nothing, one whose Inbox is full.
func TestNoGoroutineLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := freeConfig(t, 2)
	cfg.InboxSize, cfg.OutboxSize = 10, 10
	a, err := New(1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	go func() { // fills b, then blocks: b reads nothing
		for i := 0; i < 100000 && !a.IsClosed(); i++ {
			select {
			case a.Outbox() <- &Envelope{Pid: 2, Msg: []byte("x")}:
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	waitFor(t, 10*time.Second, "a's Outbox to back up", func() bool {
		return len(a.Outbox()) == cap(a.Outbox()) && len(b.Inbox()) == cap(b.Inbox())
	})
	a.Close()
	b.Close()
	waitFor(t, 10*time.Second, "goroutines to end", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

// A message over MaxMessageSize (a library setting the JSON passes on) is
// refused and counted; the next one goes through.
func TestTooLarge(t *testing.T) {
	cfg := freeConfig(t, 2)
	text := fmt.Sprintf(`{"Peers": [{"Id": 1, "Address": %q}, {"Id": 2, "Address": %q}], "MaxMessageSize": 100}`,
		cfg.Peers[0].Address, cfg.Peers[1].Address)
	srvs := startAll(t, text, 1, 2)
	srvs[0].Outbox() <- &Envelope{Pid: 2, MsgId: 1, Msg: make([]byte, 101)}
	srvs[0].Outbox() <- &Envelope{Pid: 2, MsgId: 2, Msg: make([]byte, 100)}
	if e := recvWithin(t, srvs[1], 10*time.Second); e.MsgId != 2 {
		t.Fatalf("got %+v", e)
	}
	if c := srvs[0].(*Node).Counters(); c.SendErrors != 1 {
		t.Errorf("counters %+v, want one refused send", c)
	}
}
