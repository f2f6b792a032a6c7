package cluster

import (
	"testing"
	"time"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// What other languages send arrives decoded; what cannot be decoded is
// counted and skipped, and the server goes on.
func TestForeignKinds(t *testing.T) {
	checkNoLeak(t)
	cfg := freeConfig(t, 2)
	srv := startAll(t, cfg, 1)[0]
	text, err := configText(cfg)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ffi.NewNode(2, text)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { peer.Close(); peer.Free() }()
	raw := ffi.NewRaw()
	defer raw.Free()
	sends := []struct {
		kind uint32
		data string
	}{
		{16, "not gob at all"},         // undecodable: counted
		{2, `{"broken": `},             // undecodable: counted
		{2, `{"n": 1, "s": ["a"]}`},    // JSON from Python
		{1, "text from C"},             // text
		{0, "\x00\x01"},                // bytes
		{7, "a kind Go does not know"}, // raw bytes
	}
	for _, s := range sends {
		if err := raw.Send(peer, 1, 0, s.kind, []byte(s.data), 5000); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, ok bool) {
		if !ok {
			t.Errorf("%s did not arrive as expected", what)
		}
	}
	e := recvWithin(t, srv, 10*time.Second)
	m, ok := e.Msg.(map[string]interface{})
	check("JSON", ok && m["n"] == 1.0 && m["s"].([]interface{})[0] == "a" && e.Pid == 2)
	check("text", recvWithin(t, srv, 10*time.Second).Msg == "text from C")
	b, ok := recvWithin(t, srv, 10*time.Second).Msg.([]byte)
	check("bytes", ok && string(b) == "\x00\x01")
	b, ok = recvWithin(t, srv, 10*time.Second).Msg.([]byte)
	check("kind 7", ok && string(b) == "a kind Go does not know")
	if c := srv.(*Node).Counters(); c.DecodeErrors != 2 {
		t.Errorf("DecodeErrors %d, want 2", c.DecodeErrors)
	}
}
