package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// PeerConfig is one member of the cluster: its id and its "host:port".
type PeerConfig struct {
	Id      int
	Address string
}

// Config describes a cluster. InboxSize and OutboxSize bound the Inbox and
// Outbox channels and the node's own queues (0: 1000).
type Config struct {
	Peers      []PeerConfig
	InboxSize  int
	OutboxSize int
}

// ToConfig reads a configuration: the name of a JSON file, JSON text
// starting with '{', a Config or a *Config. "Servers" is accepted for
// "Peers", as in the original README.
func ToConfig(configuration interface{}) (*Config, error) {
	switch c := configuration.(type) {
	case Config:
		return &c, nil
	case *Config:
		if c == nil {
			return nil, errors.New("cluster: configuration is a nil *Config")
		}
		cp := *c
		return &cp, nil
	case string:
		text, err := readConfig(c)
		if err != nil {
			return nil, err
		}
		return parseConfig([]byte(text))
	}
	return nil, fmt.Errorf("cluster: configuration must be a JSON file name or a Config, not %T", configuration)
}

// readConfig is JSON text as it is, or the contents of the file it names.
func readConfig(textOrFile string) (string, error) {
	if strings.HasPrefix(strings.TrimSpace(textOrFile), "{") {
		return textOrFile, nil
	}
	text, err := os.ReadFile(textOrFile)
	if err != nil {
		return "", fmt.Errorf("cluster: cannot read config file: %w", err)
	}
	return string(text), nil
}

func parseConfig(text []byte) (*Config, error) {
	var raw struct {
		Config
		Servers []PeerConfig
	}
	if err := json.Unmarshal(text, &raw); err != nil {
		return nil, fmt.Errorf("cluster: config is not valid JSON: %w", err)
	}
	if raw.Peers == nil {
		raw.Peers = raw.Servers
	}
	return &raw.Config, nil
}

// configText is the JSON text the library is given. File contents and JSON
// text pass through as they are (the library reads every setting and names
// the problem in bad input, with line and column), except that a size of 0
// means the default, as in the original library; a Config is written as JSON.
func configText(configuration interface{}) (string, error) {
	s, ok := configuration.(string)
	if !ok {
		cfg, err := ToConfig(configuration)
		if err != nil {
			return "", err
		}
		s2, err := json.Marshal(cfg)
		if err != nil {
			return "", err
		}
		s = string(s2)
	} else {
		var err error
		if s, err = readConfig(s); err != nil {
			return "", err
		}
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(s), &fields) != nil {
		return s, nil // the library reports where the JSON is broken
	}
	changed := false
	for _, k := range []string{"InboxSize", "OutboxSize"} {
		if v, ok := fields[k]; ok && string(v) == "0" {
			delete(fields, k)
			changed = true
		}
	}
	if !changed {
		return s, nil
	}
	text, err := json.Marshal(fields)
	return string(text), err
}
