package main

import (
	"os"
	"strings"
	"testing"
)

// The driver runs its children from its own executable: in the tests that
// is the test binary, which becomes a child when given a role.
func TestMain(m *testing.M) {
	if asChild(os.Args[1:]) {
		return
	}
	// Children built with -race would each sleep a second on exit.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// A tiny run of each workload through the wrapper's channels, its Send and
// Recv, SendMany, the raw C ABI and mixed pairs: the children check that every message arrives once, in order,
// with its size, and report numbers.
func TestRuns(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workloads {
		w.count = 1000
		if w.role == "pp" {
			w.count = 20
		}
		for _, pair := range [][2]string{{"go", "go"}, {"direct", "direct"}, {"batch", "batch"}, {"raw", "raw"}, {"go", "raw"}, {"raw", "go"}, {"batch", "go"}} {
			v, err := runOnce([2]node{{self, pair[0]}, {self, pair[1]}}, w)
			if err != nil {
				t.Fatalf("%s, %s+%s: %v", w.name, pair[0], pair[1], err)
			}
			if len(v) != len(w.metrics) || v[0] <= 0 {
				t.Fatalf("%s, %s+%s: result %v", w.name, pair[0], pair[1], v)
			}
		}
	}
}

// A small run of the mock workload on each transport: every receiver gets
// every message once and in order, and the wrapper's runs count exactly.
func TestMockRuns(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mockImpls {
		if cmockModes[m.name] != "" || pyModes[m.name] != "" { // not Go: mock_broadcast, bench.py
			continue
		}
		v, err := mockOnce(self, m.name, 2000)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if len(v) != 2 || v[0] <= 0 || v[1] <= 0 {
			t.Fatalf("%s: result %v", m.name, v)
		}
	}
}

// The hop without a library, alone and as a pair of processes at once:
// its consumer checks every envelope's order and payload, and each run
// reports numbers.
func TestHop(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	h := runHop(self, workload{size: 64, count: 20000}, 2)
	for name, runs := range map[string][][]float64{"alone": h.alone, "pair": h.pair} {
		if len(runs) != 2 {
			t.Fatalf("%s: %d runs", name, len(runs))
		}
		for _, v := range runs {
			if len(v) != 2 || v[0] <= 0 || v[1] <= 0 {
				t.Fatalf("%s: result %v", name, v)
			}
		}
	}
}

func TestSummarize(t *testing.T) {
	runs := [][]float64{{3}, nil, {1}, {2}, {10}}
	s := summarize(runs, 0)
	if s.n != 4 || s.failed != 1 || s.med != 2.5 || s.spread != 9.0/2/2.5 {
		t.Fatalf("got %+v", s)
	}
	if got := s.String(); !strings.HasPrefix(got, "2.50 ±180%") || !strings.Contains(got, "1 FAIL") {
		t.Fatalf("got %q", got)
	}
	if got := summarize([][]float64{nil}, 0).String(); got != "FAIL" {
		t.Fatalf("got %q", got)
	}
	for v, want := range map[float64]string{2.5e6: "2.50M", 25e3: "25.0k", 123: "123", 4.5: "4.50"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
}
