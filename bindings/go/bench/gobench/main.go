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
//	alt     the channel children of another build of gobench (-alt), for A/B;
//	        alt-direct, alt-batch: that build's other children
//	a+b     node 0 (sender, client) on a and node 1 (receiver, server) on
//	        b, e.g. go+c and c+go to see which side costs what
//
// and prints the median of the runs ± half their range (relative to the
// median), and the ratio of each wrapper path to the C bench with the goal
// (within 2x). bindings/go/bench.sh builds everything and runs it.
//
// A third workload, "mock broadcast" (mock.go), measures the wrapper's
// mock network against a pure-Go baseline with the original Go mock's
// costs: transports base (the baseline), go (Outbox and Inbox), gofaults
// (the same with the fault model on), direct (Send and Recv), raw (the C
// ABI called from Go, batches of 256 each way), rawcall (the same but one
// cluster_send a broadcast: the ceiling of a Go Send), c and cbatch (the core's mock without Go: the
// mock_broadcast bench, given with -cmock, sending one message a call or
// 256) and cfaults, cbatchfaults (the same with the fault model on), py
// and pymany (the Python wrapper's
// mock, bench.py --mock-once, given with -python and -pybench), and
// alt-go, alt-direct (another build's, with -alt).
//
// Usage: gobench [-runs N] [-only unicast|ping-pong|mock] [-impl go,direct,batch,raw,c]
// [-mock base,go,gofaults,direct,raw,rawcall,c,cbatch,cfaults,cbatchfaults,py,pymany]
// [-cbench PATH] [-cmock PATH]
// [-python PATH -pybench PATH] [-alt PATH] [-scale F].
// GOBENCH_CPUPROFILE=prefix and GOBENCH_TRACE=prefix make each Go child
// write a CPU profile or an execution trace.
//
// With the go transport, the unicast workload is followed by the floor
// under the channels (hop.go): one Go channel hop with the sender's
// allocations and no library, in one process; then two such processes at
// once, as a message through Outbox and Inbox makes two hops, one in each
// process, on the same cores.
//
// Run with a role (gobench thr|pp go|direct|batch|raw ME N PORTS SIZE
// COUNT, gobench mock base|go|gofaults|direct|raw|rawcall SERVERS COUNT, or gobench
// hop SIZE COUNT) it is a child.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
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

// asChild runs the child role that args name (thr, pp, mock or hop),
// and reports whether they named one: flags start with "-".
func asChild(args []string) bool {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return false
	}
	switch args[0] {
	case "mock":
		mockChild(args[1:])
	case "hop":
		hopChild(args[1:])
	default:
		child(args)
	}
	return true
}

func main() {
	if asChild(os.Args[1:]) {
		return
	}
	runs := flag.Int("runs", 5, "runs of each workload and transport")
	only := flag.String("only", "", "workloads whose name contains this")
	cbench := flag.String("cbench", "", "the C bench binary (bench/build/bench); without it the C column is skipped")
	alt := flag.String("alt", "", "another build of this program: transport \"alt\" (or alt-IMPL) runs its Go wrapper children (for before/after comparisons in one run)")
	mockList := flag.String("mock", "base,go,gofaults,direct,raw,rawcall,c,cbatch,cfaults,cbatchfaults,py,pymany", "the transports of the mock workload (alt-go, alt-direct: the -alt build's; c, cbatch, cfaults, cbatchfaults: the -cmock binary's; py, pymany: bench.py's, with -python and -pybench)")
	cmock := flag.String("cmock", "", "the core's mock bench binary (cargo bench --bench mock_broadcast); without it the mock's c, cbatch, cfaults and cbatchfaults lines are skipped")
	python := flag.String("python", "", "a Python interpreter with the cluster package installed; with -pybench, the mock's py and pymany lines run")
	pybench := flag.String("pybench", "", "bindings/python/bench.py (see -python)")
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
	printed := false
	for _, w := range workloads {
		if !strings.Contains(w.name, *only) {
			continue
		}
		if !printed {
			fmt.Println(header)
			printed = true
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
					case "alt-direct", "alt-batch", "alt-raw":
						nodes[i] = node{*alt, strings.TrimPrefix(t, "alt-")}
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
		if w.role == "thr" && len(res["go"]) > 0 {
			printHop(runHop(self, w, *runs), summarize(res["go"], 0), summarize(res["c"], 0))
		}
	}
	if strings.Contains("mock broadcast", *only) {
		runMock(self, *alt, *cmock, pyMock{*python, *pybench}, strings.Split(*mockList, ","), *runs, max(1, int(float64(mockCount)**scale)))
	}
}
