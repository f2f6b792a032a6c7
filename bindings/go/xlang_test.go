package cluster

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cluster-dev/cluster/bindings/go/internal/testutil"
)

// The cross-language test: one cluster of a Go member (this process), a C
// member (testdata/xnode.c, built here against the same libcluster) and a Python
// member (testdata/xnode.py over the Python wrapper), each sending bytes,
// text and JSON to both others. The Python member takes part when
// `python3 -c "import cluster"` works; set CLUSTER_XLANG_PYTHON=require
// to fail instead of leaving it out. It runs twice: in the clear, and with
// a shared secret (every frame and ack encrypted), which every member
// reads from the environment through "SecretEnv".

// payload is one message as it must arrive: its kind and bytes (JSON
// compared as values, so spacing does not matter).
type payload struct {
	kind uint32
	data string
}

// greetings is what each language's member sends to every peer.
var greetings = map[string][]payload{
	"Go":     {{0, "\x00\x01\x02\xff"}, {1, "text from Go"}, {2, `{"from": "Go", "id": 1}`}},
	"C":      {{0, "C\x00\xff"}, {1, "text from C"}, {2, `{"from": "C", "id": 2}`}},
	"Python": {{0, "Py\x00\xff"}, {1, "text from Python"}, {2, `{"from": "Python", "id": 3}`}},
}

// foreign is a member running in another process, speaking the xnode
// protocol: "ready" when listening, "got FROM KIND HEX" per message.
type foreign struct {
	id   int
	lang string
	cmd  *exec.Cmd
	got  chan string // its "got" lines; closed at its EOF
	exit chan error  // its exit status, after its EOF
}

func startForeign(t *testing.T, id int, lang string, argv ...string) *foreign {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the %s member: %v", lang, err)
	}
	f := &foreign{id: id, lang: lang, cmd: cmd, got: make(chan string, 64), exit: make(chan error, 1)}
	ready, eof := make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
			} else {
				f.got <- sc.Text()
			}
		}
		close(f.got)
		close(eof)
		f.exit <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // if the test failed before it exited
		<-f.exit
	})
	select {
	case <-ready:
	case <-eof:
		t.Fatalf("the %s member ended before it was ready", lang)
	case <-time.After(30 * time.Second):
		t.Fatalf("the %s member did not become ready", lang)
	}
	return f
}

// buildXnode compiles testdata/xnode.c against the library the binding
// links, as pkg-config describes it.
func buildXnode(t *testing.T) string {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	exe := filepath.Join(t.TempDir(), "xnode")
	args := append([]string{"-Wall", "-Wextra", "-Werror", "-o", exe, "testdata/xnode.c"},
		testutil.PkgConfig(t, "--cflags", "--libs")...)
	out, err := exec.Command(cc, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("building xnode: %v\n%s", err, out)
	}
	return exe
}

// pythonReady reports whether the Python wrapper imports, failing the test
// if it must.
func pythonReady(t *testing.T) bool {
	out, err := exec.Command("python3", "-c", "import cluster").CombinedOutput()
	if err == nil {
		return true
	}
	if os.Getenv("CLUSTER_XLANG_PYTHON") == "require" {
		t.Fatalf("the Python wrapper does not import: %v\n%s", err, out)
	}
	t.Logf("Python member left out: `import cluster` fails (%v)", err)
	return false
}

// same reports whether a received message is the payload sent.
func same(kind uint32, data []byte, want payload) bool {
	if kind != want.kind {
		return false
	}
	if kind != 2 {
		return string(data) == want.data
	}
	var a, b interface{}
	return json.Unmarshal(data, &a) == nil && json.Unmarshal([]byte(want.data), &b) == nil &&
		reflect.DeepEqual(a, b)
}

func TestCrossLanguage(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the C member is built with cc")
	}
	t.Run("plain", func(t *testing.T) { crossLanguage(t, false) })
	t.Run("secret", func(t *testing.T) { crossLanguage(t, true) })
}

// xlangSecret names the variable the members read the secret from.
const xlangSecret = "CLUSTER_XLANG_SECRET"

func crossLanguage(t *testing.T, secret bool) {
	checkNoLeak(t)
	lang := map[int]string{1: "Go", 2: "C"}
	if pythonReady(t) {
		lang[3] = "Python"
	}
	file := writeConfig(t, freeConfig(t, len(lang)))
	if secret {
		// The members are started after this, and inherit it.
		t.Setenv(xlangSecret, "shared by Go, C and Python")
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		with := strings.Replace(string(text), "{", `{"SecretEnv":"`+xlangSecret+`",`, 1)
		if err := os.WriteFile(file, []byte(with), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	members := []*foreign{startForeign(t, 2, "C", buildXnode(t), "2", file)}
	if lang[3] != "" {
		members = append(members, startForeign(t, 3, "Python", "python3", "testdata/xnode.py", "3", file))
	}
	srv := startAll(t, file, 1)[0]

	for _, f := range members {
		for _, p := range greetings["Go"] {
			var msg interface{} = []byte(p.data)
			switch p.kind {
			case 1:
				msg = p.data
			case 2:
				msg = json.RawMessage(p.data)
			}
			srv.Outbox() <- &Envelope{Pid: f.id, Msg: msg}
		}
		srv.Outbox() <- &Envelope{Pid: f.id, Msg: "start"}
	}

	// Go receives each foreign member's three messages, decoded.
	for range 3 * len(members) {
		e := recvWithin(t, srv, 30*time.Second)
		want := greetings[lang[e.Pid]]
		var ok bool
		switch m := e.Msg.(type) {
		case []byte:
			ok = same(0, m, want[0])
		case string:
			ok = same(1, []byte(m), want[1])
		case map[string]interface{}:
			text, _ := json.Marshal(m)
			ok = same(2, text, want[2])
		}
		if !ok {
			t.Errorf("Go got %#v (%T) from %s", e.Msg, e.Msg, lang[e.Pid])
		}
	}

	// Each foreign member reports three messages from each other member.
	for _, f := range members {
		for range 3 * (len(lang) - 1) {
			var line string
			select {
			case line = <-f.got:
			case <-time.After(30 * time.Second):
				t.Fatalf("the %s member reported nothing more", f.lang)
			}
			var from int
			var kind uint32
			var hexdata string
			if _, err := fmt.Sscanf(line, "got %d %d %s", &from, &kind, &hexdata); err != nil {
				t.Fatalf("%s member: bad line %q", f.lang, line)
			}
			data, err := hex.DecodeString(hexdata)
			if err != nil || kind > 2 || !same(kind, data, greetings[lang[from]][kind]) {
				t.Errorf("%s got kind %d %q from %s", f.lang, kind, data, lang[from])
			}
		}
	}

	if text, err := srv.(*Node).Stats(); err != nil {
		t.Error(err)
	} else {
		var st map[string]interface{}
		if err := json.Unmarshal([]byte(text), &st); err != nil || st["auth_failed"] != 0.0 || st["bad_frames"] != 0.0 {
			t.Errorf("the Go member's stats: %s", text)
		}
	}
	for _, f := range members {
		srv.Outbox() <- &Envelope{Pid: f.id, Msg: "bye"}
	}
	for _, f := range members {
		select {
		case err := <-f.exit:
			if err != nil {
				t.Errorf("the %s member: %v", f.lang, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("the %s member did not exit", f.lang)
		}
		f.exit <- nil // for the cleanup
	}
}
