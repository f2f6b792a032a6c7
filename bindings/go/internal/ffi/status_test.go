package ffi

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"testing"

	"github.com/cluster-dev/cluster/bindings/go/internal/testutil"
)

// A status in cluster.h: a define (#define CLUSTER_E_X -n), or a member of
// the named enum the header is moving to (CLUSTER_E_X = -n,).
var (
	statusDefine = regexp.MustCompile(`^\s*#\s*define\s+(CLUSTER_(?:OK|E_[A-Z0-9_]+))\s+\(?\s*(-?\s*\d+)\s*\)?\s*$`)
	statusMember = regexp.MustCompile(`^\s*(CLUSTER_(?:OK|E_[A-Z0-9_]+))\s*=\s*\(?\s*(-?\s*\d+)\s*\)?\s*,?\s*$`)
)

// headerStatuses is every CLUSTER_OK / CLUSTER_E_* name of a header's text
// with its number; a name given twice is an error.
func headerStatuses(text string) (map[string]int, error) {
	out := map[string]int{}
	for i, line := range regexp.MustCompile(`\r?\n`).Split(text, -1) {
		m := statusDefine.FindStringSubmatch(line)
		if m == nil {
			m = statusMember.FindStringSubmatch(line)
		}
		if m == nil {
			continue
		}
		n, err := strconv.Atoi(regexp.MustCompile(`\s`).ReplaceAllString(m[2], ""))
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", i+1, err)
		}
		if _, dup := out[m[1]]; dup {
			return nil, fmt.Errorf("line %d: %s given twice", i+1, m[1])
		}
		out[m[1]] = n
	}
	return out, nil
}

// The Go table of status codes is the header's: every CLUSTER_OK and
// CLUSTER_E_* name with its number, both ways.
func TestStatusTableMatchesHeader(t *testing.T) {
	include := testutil.PkgConfig(t, "--variable=includedir")
	text, err := os.ReadFile(filepath.Join(include[0], "cluster.h"))
	if err != nil {
		t.Fatal(err)
	}
	header, err := headerStatuses(string(text))
	if err != nil {
		t.Fatal(err)
	}
	ours := Statuses()
	for name, code := range header {
		if got, ok := ours[name]; !ok {
			t.Errorf("cluster.h has %s = %d; the Go table does not", name, code)
		} else if got != code {
			t.Errorf("%s is %d in cluster.h, %d in the Go table", name, code, got)
		}
	}
	for name, code := range ours {
		if _, ok := header[name]; !ok {
			t.Errorf("the Go table has %s = %d; cluster.h does not", name, code)
		}
	}
	if len(header) < 2 {
		t.Fatalf("found only %v in cluster.h: the parser no longer reads it", header)
	}
}

// The parser reads both forms the header may take, and nothing from
// comments or other names.
func TestHeaderStatusesForms(t *testing.T) {
	defines := `
/*
 A required pointer argument was NULL: CLUSTER_E_NULL_ARG -1 in prose.
 */
#define CLUSTER_OK 0
#define CLUSTER_E_NULL_ARG -1
#define  CLUSTER_E_BUFFER_TOO_SMALL (-12)
#define CLUSTER_CUT_OUT 1
#define CLUSTER_ERROR_MESSAGE_LEN 256
`
	enum := `
enum cluster_status_t {
  /*
   Success.
   */
  CLUSTER_OK = 0,
  CLUSTER_E_NULL_ARG = -1,
  CLUSTER_E_BUFFER_TOO_SMALL = -12
};
typedef int32_t cluster_status_t;
`
	want := map[string]int{"CLUSTER_OK": 0, "CLUSTER_E_NULL_ARG": -1, "CLUSTER_E_BUFFER_TOO_SMALL": -12}
	for _, text := range []string{defines, enum} {
		got, err := headerStatuses(text)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("got %v, %v; want %v from\n%s", got, err, want, text)
		}
	}
	if _, err := headerStatuses("#define CLUSTER_OK 0\nCLUSTER_OK = 0,\n"); err == nil {
		t.Error("a name given twice was accepted")
	}
}

// The library compiled in names each code as the table does.
func TestStatusNamesMatchLibrary(t *testing.T) {
	for name, code := range Statuses() {
		if got := StatusName(code); got != name {
			t.Errorf("the library calls %d %q, the Go table %q", code, got, name)
		}
	}
}

// errors.Is tells an error's kind by its code, whatever its message.
func TestErrorIs(t *testing.T) {
	err := fmt.Errorf("opening: %w", &Error{Code: ErrConfig.Code, Name: "CLUSTER_E_CONFIG", Message: "Peers[0]: missing \"Id\""})
	if !errors.Is(err, ErrConfig) {
		t.Errorf("%v is not ErrConfig", err)
	}
	for _, k := range Kinds {
		if k != ErrConfig && errors.Is(err, k) {
			t.Errorf("%v is also %s", err, k.Name)
		}
	}
	if errors.Is(errors.New("cluster: CLUSTER_E_CONFIG"), ErrConfig) {
		t.Error("an error that is not an *Error matched a kind")
	}
}
