package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

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
	return parseNumbers(f[1:])
}

// parseNumbers parses the numbers of a result line.
func parseNumbers(fields []string) ([]float64, error) {
	var v []float64
	for _, s := range fields {
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
