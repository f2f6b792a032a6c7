package cluster

import (
	"encoding/gob"
	"errors"
	"github.com/cluster-dev/cluster/bindings/go/internal/testutil"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// point is a gob-registered message type of the tests.
type point struct{ X, Y int }

func init() { gob.Register(point{}) }

// freeConfig is a Config of n members with ids 1..n on free loopback ports.
func freeConfig(t testing.TB, n int) Config {
	t.Helper()
	cfg := Config{}
	var ls []net.Listener
	for i := 1; i <= n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		cfg.Peers = append(cfg.Peers, PeerConfig{Id: i, Address: l.Addr().String()})
	}
	for _, l := range ls {
		l.Close()
	}
	return cfg
}

// writeConfig writes cfg as a JSON file and returns its name.
func writeConfig(t testing.TB, cfg Config) string {
	t.Helper()
	text, err := configText(cfg)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(t.TempDir(), "cluster_test_config.json")
	if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// startAll starts every member of cfg and closes them when the test ends.
func startAll(t testing.TB, cfg interface{}, ids ...int) []Server {
	t.Helper()
	var srvs []Server
	for _, id := range ids {
		s, err := New(id, cfg)
		if err != nil {
			t.Fatalf("New(%d): %v", id, err)
		}
		t.Cleanup(s.Close)
		srvs = append(srvs, s)
	}
	return srvs
}

// startFree starts members 1..n of a fresh freeConfig and closes them when
// the test ends, trying new ports if another test took one of them
// between freeConfig and New (at most 20 times).
func startFree(t testing.TB, n int) []Server {
	t.Helper()
	for try := 0; try < 20; try++ {
		cfg := freeConfig(t, n)
		var srvs []Server
		var err error
		for id := 1; id <= n && err == nil; id++ {
			var s Server
			if s, err = New(id, cfg); err == nil {
				srvs = append(srvs, s)
			}
		}
		if err == nil {
			for _, s := range srvs {
				t.Cleanup(s.Close)
			}
			return srvs
		}
		for _, s := range srvs {
			s.Close()
		}
		if !errors.Is(err, ErrAddrInUse) {
			t.Fatalf("New: %v", err)
		}
	}
	t.Fatalf("no free ports after 20 tries")
	return nil
}

// recvWithin takes one envelope from srv's Inbox or fails after d.
func recvWithin(t testing.TB, srv Server, d time.Duration) *Envelope {
	t.Helper()
	select {
	case e := <-srv.Inbox():
		return e
	case <-time.After(d):
		t.Fatalf("server %d: nothing received within %v", srv.Pid(), d)
		return nil
	}
}

// waitFor and checkNoLeak: see package testutil.
var (
	waitFor     = testutil.WaitFor
	checkNoLeak = testutil.CheckNoLeak
)
