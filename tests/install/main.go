// A program written against the original Go library's API, only its import
// paths changed. scripts/test-install.sh builds it outside the checkout,
// with the module from a module proxy and an installed libcluster, and runs
// it: two TCP nodes on free loopback ports exchange a message (and the
// reply), then two servers of a mock cluster do, across a healed partition.
package main

import (
	"fmt"
	"net"
	"os"
	"time"

	cluster "github.com/cluster-dev/cluster/bindings/go"
	"github.com/cluster-dev/cluster/bindings/go/mock"
)

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
}

func freeAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().String()
}

// exchange sends a message from a to b and b's reply back, through the
// channels, and checks what arrives.
func exchange(a, b cluster.Server) {
	a.Outbox() <- &cluster.Envelope{Pid: b.Pid(), MsgId: 7, Msg: "hello"}
	got := receive(b)
	if got.Pid != a.Pid() || got.MsgId != 7 || got.Msg != "hello" {
		check(fmt.Errorf("%d got %+v", b.Pid(), got))
	}
	got.Msg = []byte("hi back")
	b.Outbox() <- got // the received envelope names its sender
	if reply := receive(a); reply.Pid != b.Pid() || string(reply.Msg.([]byte)) != "hi back" {
		check(fmt.Errorf("%d got %+v", a.Pid(), reply))
	}
}

func receive(s cluster.Server) *cluster.Envelope {
	select {
	case env := <-s.Inbox():
		return env
	case <-time.After(10 * time.Second):
		check(fmt.Errorf("%d received nothing in 10 s", s.Pid()))
		return nil
	}
}

func main() {
	conf := cluster.Config{Peers: []cluster.PeerConfig{
		{Id: 1, Address: freeAddress()}, {Id: 2, Address: freeAddress()}}}
	a, err := cluster.New(1, conf)
	check(err)
	defer a.Close()
	b, err := cluster.New(2, conf)
	check(err)
	defer b.Close()
	exchange(a, b)

	mc, err := mock.NewCluster(cluster.Config{Peers: []cluster.PeerConfig{{Id: 1}, {Id: 2}}})
	check(err)
	defer mc.Close()
	check(mc.Partition([]int{1}, []int{2}))
	mc.Heal()
	exchange(mc.Servers[1], mc.Servers[2])
	fmt.Printf("cluster %s: TCP and mock nodes exchanged messages\n", cluster.Version)
}
