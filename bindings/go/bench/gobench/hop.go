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
// on the machine; two hops at once (two processes) are what a message
// through the wrapper's channels needs.

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

// hops are the runs of the hop: alone (the machine to itself), and in
// pairs, two hop processes at once, the slower of the two counting. A
// message through the wrapper's channels makes two hops, one in the
// sending process (Outbox) and one in the receiving process (Inbox), on
// the same cores: the pair is the floor under the channels column.
type hops struct {
	alone, pair [][]float64
}

// runHop runs the hop `runs` times alone and `runs` times in pairs, with
// the workload's size and count.
func runHop(self string, w workload, runs int) hops {
	args := []string{"hop", strconv.Itoa(w.size), strconv.Itoa(w.count)}
	var h hops
	for r := 0; r < runs; r++ {
		v, err := resultOf(self, args...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gobench: hop, run %d: %v\n", r+1, err)
			v = nil
		}
		h.alone = append(h.alone, v)
	}
	for r := 0; r < runs; r++ {
		var other []float64
		var otherErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			other, otherErr = resultOf(self, args...)
		}()
		v, err := resultOf(self, args...)
		<-done
		if err == nil {
			err = otherErr
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "gobench: hop pair, run %d: %v\n", r+1, err)
			v = nil
		} else if other[0] < v[0] {
			v = other
		}
		h.pair = append(h.pair, v)
	}
	return h
}

// printHop prints the hop's msgs/s under the unicast table, alone and in
// pairs, with the channels column's share of the pair and the pair's ratio
// to the C bench. The hops run after the table's runs, not between them:
// their ratios compare minutes apart on a machine that drifts.
func printHop(h hops, goS, cS summary) {
	alone, pair := summarize(h.alone, 0), summarize(h.pair, 0)
	if alone.n == 0 && pair.n == 0 {
		return
	}
	fmt.Printf("one Go channel hop, no library (GOMAXPROCS %d): %s msgs/s alone\n", runtime.GOMAXPROCS(0), alone)
	if pair.n == 0 {
		return
	}
	line := fmt.Sprintf("two hops at once in two processes, as a message through Outbox/Inbox makes (the slower): %s msgs/s", pair)
	if goS.n > 0 {
		line += fmt.Sprintf("; Go wrapper = %.2fx of it", goS.med/pair.med)
	}
	if cS.n > 0 {
		line += fmt.Sprintf("; the pair alone = %.2fx of the C bench", pair.med/cS.med)
	}
	fmt.Println(line)
}
