package node

import (
	"encoding/json"
	"os"
	"strings"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// The configuration is the library's to parse: Go hands it the text and
// takes its verdict. Go reads two numbers back only, InboxSize and
// OutboxSize, for the capacities of its own channels, and only from text
// the library has accepted.

// ConfigText is the JSON text of a configuration given as a string: JSON
// text (starting with '{', as cluster.h defines it) as it is, otherwise
// the contents of the file it names, read once so that the library and
// QueueSizes see the same text. A file that cannot be read is an
// ErrConfig *ffi.Error.
func ConfigText(textOrFile string) (string, error) {
	if strings.HasPrefix(strings.TrimSpace(textOrFile), "{") {
		return textOrFile, nil
	}
	text, err := os.ReadFile(textOrFile)
	if err != nil {
		return "", ffi.Errorf(ffi.ErrConfig, "cannot read config file %q: %v", textOrFile, err)
	}
	return string(text), nil
}

// QueueSizes is the InboxSize and OutboxSize of configuration text the
// library has accepted (so both are at least 1 where given), by their
// exact names as the library reads them; 0 where not given (the default).
func QueueSizes(text string) (inbox, outbox int) {
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(text), &fields) != nil {
		return 0, 0
	}
	size := func(name string) int {
		var n int
		if json.Unmarshal(fields[name], &n) != nil {
			return 0
		}
		return n
	}
	return size("InboxSize"), size("OutboxSize")
}
