package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	cluster "github.com/cluster-dev/cluster/bindings/go"
)

// The floor under the Outbox and Inbox channels: one Go channel hop and
// nothing else. The unicast workload's channels sender makes a new
// envelope per message and puts it on Outbox; a goroutine of the wrapper
// takes it off. The hop measures that pair with no library behind it, so
// the wrapper's column can be read against what Go's channels alone allow
// on the machine.

// hopCap is the hop's channel capacity: the default OutboxSize.
const hopCap = 1000

// hopChild runs as "gobench hop SIZE COUNT": one goroutine puts COUNT new
// envelopes (a SIZE-byte numbered payload each, as the channels child
// sends) on a channel of hopCap, another takes them off and checks their
// order; prints "result MSGS/S CPU-NS/MSG".
func hopChild(args []string) {
	if len(args) != 2 {
		fail("usage: gobench hop SIZE COUNT")
	}
	size, _ := strconv.Atoi(args[0])
	count, _ := strconv.Atoi(args[1])
	if size < 8 || count < 1 {
		fail("bad arguments")
	}
	ch := make(chan *cluster.Envelope, hopCap)
	cpu0 := cpuTime()
	t0 := time.Now()
	go func() {
		for i := 0; i < count; i++ {
			ch <- fresh(size, i)
		}
	}()
	for i := 0; i < count; i++ {
		e := <-ch
		if b, ok := e.Msg.([]byte); !ok || e.MsgId != int64(i) || len(b) != size {
			fail("hop: message %d out of order or changed", i)
		}
	}
	d, cpu := time.Since(t0), cpuTime()-cpu0
	fmt.Printf("result %.1f %.1f\n", float64(count)/d.Seconds(), float64(cpu.Nanoseconds())/float64(count))
}

// runHop runs the hop `runs` times with the workload's size and count and
// returns each run's numbers (msgs/s, CPU ns a message).
func runHop(self string, w workload, runs int) [][]float64 {
	var res [][]float64
	for r := 0; r < runs; r++ {
		v, err := resultOf(self, "hop", strconv.Itoa(w.size), strconv.Itoa(w.count))
		if err != nil {
			fmt.Fprintf(os.Stderr, "gobench: hop, run %d: %v\n", r+1, err)
			v = nil
		}
		res = append(res, v)
	}
	return res
}

// printHop prints the hop's msgs/s under the unicast table, with the
// channels column's share of it and its own ratio to the C bench. The hop
// runs after the table's runs, not between them: its ratios compare
// minutes apart on a machine that drifts.
func printHop(runs [][]float64, goS, cS summary) {
	hop := summarize(runs, 0)
	if hop.n == 0 {
		return
	}
	line := fmt.Sprintf("one Go channel hop, no library (GOMAXPROCS %d): %s msgs/s", runtime.GOMAXPROCS(0), hop)
	if goS.n > 0 {
		line += fmt.Sprintf("; Go wrapper = %.2fx of it", goS.med/hop.med)
	}
	if cS.n > 0 {
		line += fmt.Sprintf("; the hop alone = %.2fx of the C bench", hop.med/cS.med)
	}
	fmt.Println(line)
}
