// Command chat is a two-terminal chat over a two-member cluster on
// localhost. Run `go run ./examples/chat 1` in one terminal and
// `go run ./examples/chat 2` in another, then type lines; Ctrl-D or Ctrl-C
// leaves.
package main

import (
	"bufio"
	"fmt"
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
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: chat 1|2")
		os.Exit(2)
	}
	id, err := strconv.Atoi(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "usage: chat 1|2")
		os.Exit(2)
	}
	srv, err := cluster.New(id, config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer srv.Close()
	fmt.Printf("chat: you are %d, peers %v; type a line and press Enter\n", srv.Pid(), srv.Peers())

	lines := make(chan string)
	go func() {
		defer close(lines)
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			lines <- in.Text()
		}
	}()
	interrupt := make(chan os.Signal, 1)
	signal.Notify(interrupt, os.Interrupt)

	for n := int64(1); ; n++ {
		select {
		case line, ok := <-lines:
			if !ok {
				return
			}
			srv.Outbox() <- &cluster.Envelope{Pid: cluster.BROADCAST, MsgId: n, Msg: line}
		case env := <-srv.Inbox():
			fmt.Printf("[%d] %v\n", env.Pid, env.Msg)
		case <-interrupt:
			return
		}
	}
}
