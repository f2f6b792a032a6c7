package mock_test

import (
	"fmt"
	"time"

	cluster "github.com/cluster-dev/cluster/bindings/go"
	"github.com/cluster-dev/cluster/bindings/go/mock"
)

// A three-server mock cluster, partitioned so that 3 hears nothing from 1.
func Example() {
	cl, err := mock.NewCluster(cluster.Config{Peers: []cluster.PeerConfig{{Id: 1}, {Id: 2}, {Id: 3}}})
	if err != nil {
		panic(err)
	}
	defer cl.Close()
	if err := cl.Partition([]int{1, 2}, []int{3}); err != nil {
		panic(err)
	}
	cl.Servers[1].Outbox() <- &cluster.Envelope{Pid: cluster.BROADCAST, MsgId: 7, Msg: "hello"}
	select {
	case e := <-cl.Servers[2].Inbox():
		fmt.Println("2 got", e.Msg, "from", e.Pid)
	case <-time.After(10 * time.Second):
		fmt.Println("2 got nothing")
	}
	select {
	case e := <-cl.Servers[3].Inbox():
		fmt.Println("3 got", e.Msg)
	case <-time.After(100 * time.Millisecond):
		fmt.Println("3 got nothing")
	}
	// Output:
	// 2 got hello from 1
	// 3 got nothing
}
