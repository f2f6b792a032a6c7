// Command chat is a two-terminal chat over a two-member cluster on
// localhost. Run `go run ./examples/chat 1` in one terminal and
// `go run ./examples/chat 2` in another, then type lines; Ctrl-D or Ctrl-C
// leaves.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"

	cluster "github.com/cluster-dev/cluster/bindings/go"
)

// config is the chat's cluster: two members on localhost only.
const config = `{
  "Peers": [{"Id": 1, "Address": "localhost:7071"},
            {"Id": 2, "Address": "localhost:7072"}],
  "InboxSize": 100, "OutboxSize": 100
}`

func main() {
	id, err := 0, error(nil)
	if len(os.Args) == 2 {
		id, err = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) != 2 || err != nil {
		fmt.Fprintln(os.Stderr, "usage: chat 1|2")
		os.Exit(2)
	}
	interrupt := make(chan os.Signal, 1)
	signal.Notify(interrupt, os.Interrupt)
	if err := chat(id, config, os.Stdin, os.Stdout, interrupt); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// chat runs member id of the cluster in config: each line read from in is
// broadcast, each message received is written to out as "[sender] text",
// until in ends or stop fires.
func chat(id int, config string, in io.Reader, out io.Writer, stop <-chan os.Signal) error {
	srv, err := cluster.New(id, config)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(out, "chat: you are %d, peers %v; type a line and press Enter\n", srv.Pid(), srv.Peers())

	lines := make(chan string)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
	}()
	for n := int64(1); ; n++ {
		select {
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			srv.Outbox() <- &cluster.Envelope{Pid: cluster.BROADCAST, MsgId: n, Msg: line}
		case env := <-srv.Inbox():
			fmt.Fprintf(out, "[%d] %v\n", env.Pid, env.Msg)
		case <-stop:
			return nil
		}
	}
}
