package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// Two chat members on free ports: a line typed into one shows up in the
// other's output, and each ends when its input does.
func TestChat(t *testing.T) {
	var addrs []string
	for i := 0; i < 2; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	cfg := fmt.Sprintf(`{"Peers": [{"Id": 1, "Address": %q}, {"Id": 2, "Address": %q}]}`, addrs[0], addrs[1])

	type member struct {
		in   *io.PipeWriter
		out  *bufio.Scanner
		done chan error
	}
	start := func(id int) *member {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		m := &member{in: inW, out: bufio.NewScanner(outR), done: make(chan error, 1)}
		go func() {
			err := chat(id, cfg, inR, outW, make(chan os.Signal))
			outW.Close()
			m.done <- err
		}()
		return m
	}
	readLine := func(m *member) string {
		got := make(chan string, 1)
		go func() {
			if m.out.Scan() {
				got <- m.out.Text()
			}
			close(got)
		}()
		select {
		case line, ok := <-got:
			if !ok {
				t.Fatalf("the member ended: %v", <-m.done)
			}
			return line
		case <-time.After(20 * time.Second):
			t.Fatal("no output")
			return ""
		}
	}
	a, b := start(1), start(2)
	if l := readLine(a); !strings.HasPrefix(l, "chat: you are 1") {
		t.Fatalf("banner %q", l)
	}
	if l := readLine(b); !strings.HasPrefix(l, "chat: you are 2") {
		t.Fatalf("banner %q", l)
	}
	fmt.Fprintln(a.in, "hello from one")
	if l := readLine(b); l != "[1] hello from one" {
		t.Fatalf("2 printed %q", l)
	}
	fmt.Fprintln(b.in, "hi from two")
	if l := readLine(a); l != "[2] hi from two" {
		t.Fatalf("1 printed %q", l)
	}
	for _, m := range []*member{a, b} {
		m.in.Close()
		go func(m *member) { // drain its output so it can finish
			for m.out.Scan() {
			}
		}(m)
		select {
		case err := <-m.done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a member did not end with its input")
		}
	}
}
