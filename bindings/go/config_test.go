package cluster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestToConfig(t *testing.T) {
	want := Config{Peers: []PeerConfig{{Id: 1, Address: "localhost:1"}}, InboxSize: 5}
	text := `{"Servers": [{"Id": 1, "Address": "localhost:1"}], "InboxSize": 5}`
	file := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, in := range []interface{}{want, &want, text, file} {
		got, err := ToConfig(in)
		if err != nil || got.InboxSize != 5 || len(got.Peers) != 1 || got.Peers[0] != want.Peers[0] {
			t.Errorf("ToConfig(%v) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []interface{}{nil, 3, (*Config)(nil), "/no/such/file", "{bad"} {
		if _, err := ToConfig(in); err == nil {
			t.Errorf("ToConfig(%v) accepted", in)
		}
	}
}

func TestTextDropsZeroSizes(t *testing.T) {
	for _, in := range []interface{}{
		Config{Peers: []PeerConfig{{Id: 1, Address: "a:1"}}},
		`{"Peers": [{"Id": 1, "Address": "a:1"}], "InboxSize": 0, "OutboxSize": 0, "MaxMessageSize": 9}`,
	} {
		text, err := configText(in)
		if err != nil {
			t.Fatal(err)
		}
		var fields map[string]interface{}
		if err := json.Unmarshal([]byte(text), &fields); err != nil {
			t.Fatal(err)
		}
		if _, ok := fields["InboxSize"]; ok {
			t.Errorf("%s keeps InboxSize 0", text)
		}
		if s, ok := in.(string); ok && !strings.Contains(text, "MaxMessageSize") {
			t.Errorf("%s lost a setting of %s", text, s)
		}
	}
	if text, _ := configText(`{"Peers": [`); text != `{"Peers": [` {
		t.Errorf("broken JSON changed to %q", text)
	}
}
