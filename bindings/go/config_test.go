package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// The library reads every form of a configuration, and the capacities of
// Inbox and Outbox follow its InboxSize and OutboxSize.
func TestConfigForms(t *testing.T) {
	checkNoLeak(t)
	cfg := freeConfig(t, 2)
	cfg.InboxSize, cfg.OutboxSize = 7, 9
	text, err := configText(cfg)
	if err != nil {
		t.Fatal(err)
	}
	servers := strings.Replace(text, `"Peers"`, `"Servers"`, 1)
	for _, form := range []interface{}{cfg, &cfg, text, writeConfig(t, cfg), servers} {
		s, err := New(1, form)
		if err != nil {
			t.Fatalf("New(1, %v): %v", form, err)
		}
		if cap(s.Inbox()) != 7 || cap(s.Outbox()) != 9 {
			t.Errorf("%v: Inbox %d, Outbox %d; want 7 and 9", form, cap(s.Inbox()), cap(s.Outbox()))
		}
		if p := s.Peers(); len(p) != 1 || p[0] != 2 {
			t.Errorf("%v: peers %v", form, p)
		}
		s.Close()
	}
	// A size of 0 in a Config is the default, as in the original.
	cfg.InboxSize, cfg.OutboxSize = 0, 0
	s, err := New(1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cap(s.Inbox()) != 1000 || cap(s.Outbox()) != 1000 {
		t.Errorf("Inbox %d, Outbox %d; want the default 1000", cap(s.Inbox()), cap(s.Outbox()))
	}
	s.Close()
}

// A Config names where the secret is; members with it talk, and the
// library's error for a variable that is not set names it.
func TestConfigSecret(t *testing.T) {
	checkNoLeak(t)
	t.Setenv("CLUSTER_GO_TEST_SECRET", "from the environment")
	cfg := freeConfig(t, 2)
	cfg.SecretEnv = "CLUSTER_GO_TEST_SECRET"
	if text, _ := configText(cfg); !strings.Contains(text, `"SecretEnv":"CLUSTER_GO_TEST_SECRET"`) {
		t.Fatalf("config text %s", text)
	}
	srvs := startAll(t, cfg, 1, 2)
	srvs[0].Outbox() <- &Envelope{Pid: 2, Msg: "sealed"}
	if e := recvWithin(t, srvs[1], 10*time.Second); e.Msg != "sealed" {
		t.Errorf("got %#v", e.Msg)
	}
	cfg.SecretEnv = "CLUSTER_GO_TEST_NOT_SET"
	if _, err := New(1, cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "CLUSTER_GO_TEST_NOT_SET") {
		t.Errorf("New with an unset SecretEnv: %v", err)
	}
}

// What the library refuses, Go does not let through, and the reverse: the
// error is the library's, of kind ErrConfig, naming the problem.
func TestConfigIsTheLibrarys(t *testing.T) {
	cfg := freeConfig(t, 2)
	peers := fmt.Sprintf(`[{"Id": 1, "Address": %q}, {"Id": 2, "Address": %q}]`, cfg.Peers[0].Address, cfg.Peers[1].Address)
	for _, c := range []struct{ text, want string }{
		{`{"Peers": ` + peers + `, "Servers": ` + peers + `}`, `both "Peers" and "Servers"`},
		{`{"Peers": ` + peers + `, "InboxSize": 0}`, `"InboxSize" must be at least 1`},
		{`{"Peers": ` + peers + `, "OutboxSize": -3}`, `"OutboxSize"`},
		{`{"Peers": [{"Id": 1}]}`, `missing "Address"`},
		{`{"Peers": ` + peers + `,}`, "JSON"},
	} {
		s, err := New(1, c.text)
		if err == nil {
			s.Close()
			t.Errorf("%s was accepted", c.text)
			continue
		}
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want ErrConfig naming %s", c.text, err, c.want)
		}
	}
	for _, bad := range []interface{}{"/no/such/config.json", 42, (*Config)(nil), nil} {
		if _, err := New(1, bad); !errors.Is(err, ErrConfig) {
			t.Errorf("New(1, %#v): %v; want ErrConfig", bad, err)
		}
	}
}
