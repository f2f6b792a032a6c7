// Package testutil holds the helpers the wrapper's test suites share.
package testutil

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// PkgConfig returns pkg-config's answer for libcluster, the library the
// binding is built against (an install, or the checkout's through dev.sh),
// split into words.
func PkgConfig(t testing.TB, args ...string) []string {
	t.Helper()
	out, err := exec.Command("pkg-config", append(args, "cluster")...).CombinedOutput()
	if err != nil {
		t.Fatalf("pkg-config %s cluster: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.Fields(string(out))
}

// WaitFor polls cond until it holds or d passes, then fails the test.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// CheckNoLeak fails the test if, once it has cleaned up, more goroutines
// run than before it started.
func CheckNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		WaitFor(t, 10*time.Second, "goroutines to end", func() bool {
			return runtime.NumGoroutine() <= before
		})
	})
}
