package mock_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	cluster "github.com/cluster-dev/cluster/bindings/go"
	"github.com/cluster-dev/cluster/bindings/go/mock"
)

// drain takes what a server's inbox holds, without waiting.
func drain(t *testing.T, s *mock.MockServer) []*cluster.Envelope {
	t.Helper()
	var got []*cluster.Envelope
	for {
		e, err := s.Recv(0)
		if errors.Is(err, cluster.ErrTimeout) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
}

func TestVirtualClockDelaysPassOnlyWhenAdvanced(t *testing.T) {
	cl, err := mock.NewCluster(nil, mock.VirtualClock())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for id := 1; id <= 2; id++ {
		if _, err := cl.AddServer(id); err != nil {
			t.Fatal(err)
		}
	}
	a, b := cl.Servers[1], cl.Servers[2]
	a.SetMaxMessageDelay(100)
	for i := 0; i < 20; i++ {
		if err := a.Send(&cluster.Envelope{Pid: 2, MsgId: int64(i), Msg: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	if got := drain(t, b); len(got) != 0 {
		t.Fatalf("%d delivered before time moved", len(got))
	}
	early, err := cl.Advance(50 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if got := drain(t, b); len(got) != early {
		t.Fatalf("advance said %d landed, inbox has %d", early, len(got))
	}
	rest, err := cl.Advance(50 * time.Millisecond)
	if err != nil || early+rest != 20 {
		t.Fatalf("%d + %d landed (%v), want 20", early, rest, err)
	}
	if got := drain(t, b); len(got) != rest {
		t.Fatalf("inbox has %d, want %d", len(got), rest)
	}
	if now, err := cl.Now(); err != nil || now != 100*time.Millisecond {
		t.Fatalf("Now = %v, %v; want 100ms", now, err)
	}
	if _, err := cl.Advance(-time.Second); !errors.Is(err, cluster.ErrInvalidArg) {
		t.Fatalf("negative advance: %v", err)
	}
}

func TestRealClockIsTheDefault(t *testing.T) {
	cl, err := mock.NewCluster(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Now(); !errors.Is(err, cluster.ErrInvalidArg) {
		t.Fatalf("Now on the real clock: %v", err)
	}
	if _, err := cl.Advance(time.Millisecond); !errors.Is(err, cluster.ErrInvalidArg) {
		t.Fatalf("Advance on the real clock: %v", err)
	}
}

// scenario runs five servers with delays up to 1 s, losses, a partition
// and a heal on a virtual clock, and returns the trace.
func scenario(t *testing.T, seed uint64) string {
	t.Helper()
	old := mock.Seed
	mock.Seed = seed
	defer func() { mock.Seed = old }()
	cl, err := mock.NewCluster(cluster.Config{Peers: []cluster.PeerConfig{{Id: 1}, {Id: 2}, {Id: 3}, {Id: 4}, {Id: 5}}}, mock.VirtualClock())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Trace(true); err != nil {
		t.Fatal(err)
	}
	cl.ForAll(func(s *mock.MockServer) { s.SetMaxMessageDelay(1000) })
	cl.Servers[3].SetDropProbability(0.2)
	for phase := 0; phase < 3; phase++ {
		switch phase {
		case 1:
			if err := cl.Partition([]int{1, 2}, []int{3, 4, 5}); err != nil {
				t.Fatal(err)
			}
		case 2:
			cl.Heal()
		}
		cl.ForAll(func(s *mock.MockServer) {
			for k := 0; k < 5; k++ {
				if err := s.Send(&cluster.Envelope{Pid: cluster.BROADCAST, MsgId: int64(phase*10 + k), Msg: "hi"}); err != nil {
					t.Fatal(err)
				}
			}
		})
		if _, err := cl.Advance(time.Second); err != nil {
			t.Fatal(err)
		}
		cl.ForAll(func(s *mock.MockServer) { drain(t, s) })
	}
	if _, err := cl.RunUntilIdle(); err != nil {
		t.Fatal(err)
	}
	trace, err := cl.TakeTrace()
	if err != nil {
		t.Fatal(err)
	}
	return trace
}

func TestVirtualClockGivesTheSameTrace(t *testing.T) {
	first := scenario(t, 7)
	if !strings.Contains(first, `"t_us":`) || !strings.Contains(first, `"reason":"partition"`) {
		t.Fatalf("the trace lacks virtual times or partition losses:\n%.500s", first)
	}
	for i := 0; i < 20; i++ {
		if again := scenario(t, 7); again != first {
			t.Fatalf("rerun %d differs", i)
		}
	}
	if scenario(t, 8) == first {
		t.Fatal("another seed gave the same trace")
	}
}
