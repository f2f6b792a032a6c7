package cluster

import (
	"strings"
	"testing"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// The module's Version (Cargo.toml's, through build.rs) and the library it
// runs on share MAJOR.MINOR, the ABI that the SONAME names while MAJOR is 0.
func TestVersionMatchesLibrary(t *testing.T) {
	majorMinor := func(v string) string {
		parts := strings.SplitN(v, ".", 3)
		return strings.Join(parts[:min(2, len(parts))], ".")
	}
	lib := ffi.LibraryVersion()
	if majorMinor(lib) != majorMinor(Version) {
		t.Fatalf("libcluster %s is loaded; this module (%s) needs %s.x", lib, Version, majorMinor(Version))
	}
}
