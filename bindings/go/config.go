package cluster

import (
	"encoding/json"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
	"github.com/cluster-dev/cluster/bindings/go/internal/node"
)

// PeerConfig is one member of the cluster: its id and its "host:port".
type PeerConfig struct {
	Id      int    // the member's id (any but BROADCAST)
	Address string // where it listens, "host:port"
}

// Config describes a cluster. InboxSize and OutboxSize bound the Inbox and
// Outbox channels and the node's own queues (0: the library's default,
// 1000). SecretFile or SecretEnv names where the library reads the shared
// secret that authenticates and encrypts every connection (at most one; the
// secret itself is not a field, so a printed Config never shows it). The
// library, not Go, reads it: a Config is handed to it as JSON.
type Config struct {
	Peers      []PeerConfig // the members, this server among them
	InboxSize  int          `json:",omitempty"` // capacity of the inbox (0: 1000)
	OutboxSize int          `json:",omitempty"` // capacity of the outbox and of each peer's queue (0: 1000)
	SecretFile string       `json:",omitempty"` // a file holding the shared secret
	SecretEnv  string       `json:",omitempty"` // an environment variable holding the shared secret
}

// configText is the JSON text the library is given for a configuration:
// JSON text as it is, the contents of the JSON file a string names, or a
// Config written as JSON (a size of 0 left out, so the library's default
// applies). The library parses it and names any problem in it.
func configText(configuration interface{}) (string, error) {
	var cfg *Config
	switch c := configuration.(type) {
	case string:
		return node.ConfigText(c)
	case Config:
		cfg = &c
	case *Config:
		if c == nil {
			return "", ffi.Errorf(ErrConfig, "configuration is a nil *Config")
		}
		cfg = c
	default:
		return "", ffi.Errorf(ErrConfig, "configuration must be a JSON file name, JSON text or a Config, not %T", configuration)
	}
	text, err := json.Marshal(cfg)
	if err != nil {
		return "", ffi.Errorf(ErrConfig, "%v", err)
	}
	return string(text), nil
}
