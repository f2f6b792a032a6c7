package cluster

import "github.com/cluster-dev/cluster/bindings/go/internal/config"

// PeerConfig is one member of the cluster: its id and its "host:port".
type PeerConfig = config.PeerConfig

// Config describes a cluster. InboxSize and OutboxSize bound the Inbox and
// Outbox channels and the node's own queues (0: 1000).
type Config = config.Config

// ToConfig reads a configuration: the name of a JSON file, JSON text
// starting with '{', a Config or a *Config. "Servers" is accepted for
// "Peers", as in the original README.
func ToConfig(configuration interface{}) (*Config, error) {
	return config.ToConfig(configuration)
}
