package cluster

import (
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
	"github.com/cluster-dev/cluster/bindings/go/internal/node"
)

// Quick in-process benchmarks at 64-byte payloads, through the wrapper
// (Outbox/Inbox channels) and through the raw C ABI called from Go (one
// cgo call per message, no channels, no codec), for profiling. Both nodes
// run in this process, so these are not comparable with the C bench:
// ./bench.sh (bench/gobench) measures in separate processes, as the C
// bench does.
//
//	go test -bench . -run '^$'
//
// Unicast reports delivered msgs/s and fails on any loss; ping-pong reports
// the round-trip time percentiles in µs.

var payload64 = make([]byte, 64)

// rawPair starts two raw node handles of a fresh two-member cluster. When
// the benchmark ends they are closed, the goroutines counted in wg are
// awaited, and the handles freed.
func rawPair(b *testing.B, wg *sync.WaitGroup) (*ffi.Node, *ffi.Node) {
	text, err := configText(freeConfig(b, 2))
	if err != nil {
		b.Fatal(err)
	}
	var hs []*ffi.Node
	for id := int64(1); id <= 2; id++ {
		h, err := ffi.NewNode(id, text)
		if err != nil {
			b.Fatal(err)
		}
		hs = append(hs, h)
	}
	b.Cleanup(func() {
		for _, h := range hs {
			h.Close()
		}
		wg.Wait()
		for _, h := range hs {
			h.Free()
		}
	})
	return hs[0], hs[1]
}

func reportRate(b *testing.B, start time.Time, got int) {
	if got != b.N {
		b.Fatalf("delivered %d of %d", got, b.N)
	}
	b.ReportMetric(float64(got)/time.Since(start).Seconds(), "msgs/s")
}

func reportRTT(b *testing.B, rtts []time.Duration) {
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	at := func(q float64) float64 {
		return float64(rtts[int(q*float64(len(rtts)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.5), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}

func BenchmarkUnicast64(b *testing.B) {
	srvs := startFree(b, 2)
	b.ResetTimer()
	start := time.Now()
	go func() {
		for i := 0; i < b.N; i++ {
			srvs[0].Outbox() <- &Envelope{Pid: 2, MsgId: int64(i), Msg: payload64}
		}
	}()
	got := 0
	deadline := time.After(time.Minute)
	for ; got < b.N; got++ {
		select {
		case <-srvs[1].Inbox():
		case <-deadline:
			b.Fatalf("stalled after %d of %d", got, b.N)
		}
	}
	reportRate(b, start, got)
}

func BenchmarkRawUnicast64(b *testing.B) {
	var wg sync.WaitGroup
	h1, h2 := rawPair(b, &wg)
	b.ResetTimer()
	start := time.Now()
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := ffi.NewRaw()
		defer r.Free()
		for i := 0; i < b.N; i++ {
			if r.Send(h1, 2, 0, 0, payload64, -1) != nil {
				return
			}
		}
	}()
	r := ffi.NewRaw()
	defer r.Free()
	got := 0
	for ; got < b.N; got++ {
		if _, err := r.RecvBatch(h2, 1, 10000, ignore); err != nil {
			b.Fatalf("after %d of %d: %v", got, b.N, err)
		}
	}
	reportRate(b, start, got)
}

func BenchmarkPingPong64(b *testing.B) {
	srvs := startFree(b, 2)
	done := make(chan struct{})
	b.Cleanup(func() { close(done) })
	go func() { // echo until the benchmark ends
		for {
			select {
			case e := <-srvs[1].Inbox():
				e.Pid = 1
				srvs[1].Outbox() <- e
			case <-done:
				return
			}
		}
	}()
	rtts := make([]time.Duration, 0, b.N)
	deadline := time.After(time.Minute)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		srvs[0].Outbox() <- &Envelope{Pid: 2, MsgId: int64(i), Msg: payload64}
		select {
		case <-srvs[0].Inbox():
		case <-deadline:
			b.Fatalf("no reply to %d", i)
		}
		rtts = append(rtts, time.Since(t0))
	}
	b.StopTimer()
	reportRTT(b, rtts)
}

func BenchmarkRawPingPong64(b *testing.B) {
	var wg sync.WaitGroup
	h1, h2 := rawPair(b, &wg)
	wg.Add(1)
	go func() { // echo until h2 closes
		defer wg.Done()
		r := ffi.NewRaw()
		defer r.Free()
		for {
			if _, err := r.RecvBatch(h2, 1, -1, ignore); err != nil {
				return
			}
			if r.Send(h2, 1, 0, 0, payload64, -1) != nil {
				return
			}
		}
	}()
	r := ffi.NewRaw()
	defer r.Free()
	rtts := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := r.Send(h1, 2, 0, 0, payload64, -1); err != nil {
			b.Fatal(err)
		}
		if _, err := r.RecvBatch(h1, 1, 10000, ignore); err != nil {
			b.Fatalf("no reply to %d: %v", i, err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	b.StopTimer()
	reportRTT(b, rtts)
}

// ignore is a RecvBatch callback that keeps nothing.
func ignore(_, _ int64, _ []byte) {}

// BenchmarkRecvQueued measures the receive path: b.N 64-byte messages are
// queued first (in the sender's queue, OutboxSize b.N, and the receiver's
// inbox), then taken with Recv (or, with /inbox, from Inbox), so that no
// Go sender competes for the CPU (the core's writer and reader threads
// still run).
func BenchmarkRecvQueued(b *testing.B) {
	for _, how := range []string{"recv", "inbox"} {
		b.Run(how, func(b *testing.B) {
			cfg := freeConfig(b, 2)
			cfg.OutboxSize = max(b.N, 1)
			srvs := startAll(b, cfg, 1, 2)
			a, r := srvs[0].(*Node), srvs[1].(*Node)
			const batch = 1024
			envs := make([]*Envelope, batch)
			for i := range envs {
				envs[i] = &Envelope{Pid: 2, Msg: payload64}
			}
			for sent := 0; sent < b.N; sent += batch {
				if _, err := a.SendMany(envs[:min(batch, b.N-sent)]); err != nil {
					b.Fatal(err)
				}
			}
			waitFor(b, time.Minute, "the inbox to fill", func() bool {
				text, _ := r.Stats()
				var st struct{ Received int }
				json.Unmarshal([]byte(text), &st)
				return st.Received >= min(b.N, node.DefaultQueueSize)
			})
			b.ResetTimer()
			if how == "recv" {
				for i := 0; i < b.N; i++ {
					if _, err := r.Recv(-1); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			in := r.Inbox()
			for i := 0; i < b.N; i++ {
				<-in
			}
		})
	}
}
