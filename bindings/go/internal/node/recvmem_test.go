package node

import (
	"bytes"
	"runtime"
	"testing"
)

// Payloads carved from one block must behave as separate slices: writing
// or appending to one leaves its neighbours alone, and the copy does not
// alias the (C) memory it came from.
func TestRecvMemPayloadsAreIndependent(t *testing.T) {
	var m recvMem
	src := []byte("abcd")
	a := m.copy(src)
	b := m.copy([]byte("efgh"))
	src[0] = 'X'
	if string(a) != "abcd" {
		t.Fatalf("copy aliases its source: %q", a)
	}
	a = append(a, "zz"...)
	a[0] = 'Y'
	if string(b) != "efgh" {
		t.Fatalf("appending to one payload changed the next: %q", b)
	}
	big := bytes.Repeat([]byte{7}, smallMax+1)
	c := m.copy(big)
	if !bytes.Equal(c, big) || cap(c) < len(big) {
		t.Fatalf("large payload copied wrong")
	}
	big[0] = 8
	if c[0] != 7 {
		t.Fatalf("large payload aliases its source")
	}
	if e := m.copy(nil); len(e) != 0 {
		t.Fatalf("empty payload has length %d", len(e))
	}
}

func TestRecvMemSpansBlocks(t *testing.T) {
	var m recvMem
	var all [][]byte
	for i := 0; i < 3*byteBlock/100; i++ {
		all = append(all, m.copy(bytes.Repeat([]byte{byte(i)}, 100)))
	}
	for i, p := range all {
		if len(p) != 100 || cap(p) != 100 || p[0] != byte(i) || p[99] != byte(i) {
			t.Fatalf("payload %d corrupted (len %d cap %d)", i, len(p), cap(p))
		}
	}
	seen := map[*Envelope]bool{}
	for i := 0; i < 3*envBlock; i++ {
		e := m.envelope()
		if seen[e] {
			t.Fatalf("envelope %d handed out twice", i)
		}
		seen[e] = true
	}
}

func TestRecvMemDecode(t *testing.T) {
	var m recvMem
	view := []byte("héllo")
	s, err := m.decode(kindText, view)
	view[0] = 'X'
	if err != nil || s != "héllo" {
		t.Fatalf("text: %q, %v", s, err)
	}
	b, err := m.decode(kindBytes, []byte{1, 2})
	if err != nil || !bytes.Equal(b.([]byte), []byte{1, 2}) {
		t.Fatalf("bytes: %v, %v", b, err)
	}
	if _, err := m.decode(kindJSON, []byte("{")); err == nil {
		t.Fatal("bad JSON decoded")
	}
}

// A []byte or string message costs no allocation of its own: envelopes,
// payload bytes and the Msg interface's header come from shared blocks
// (a new block every few dozen messages).
func TestRecvMemAllocatesInBlocks(t *testing.T) {
	var m recvMem
	view := []byte("a short line of text")
	for _, kind := range []uint32{kindText, kindBytes} {
		if n := testing.AllocsPerRun(1000, func() {
			if _, err := m.decode(kind, view); err != nil {
				t.Fatal(err)
			}
			m.envelope()
		}); n > 0.1 {
			t.Errorf("kind %d: %v allocations a message", kind, n)
		}
	}
	// Messages carved from one block stay what they were, also once only
	// the messages hold the blocks; they are of their own types, compare
	// and switch as any string or []byte does.
	a, _ := m.decode(kindText, []byte("first"))
	b, _ := m.decode(kindText, []byte("second"))
	c, _ := m.decode(kindBytes, []byte("third"))
	m = recvMem{}
	for i := 0; i < 3; i++ {
		runtime.GC()
		_ = make([]byte, 1<<20) // reuse what the collector freed
	}
	if a != "first" || b != "second" || a == b {
		t.Errorf("strings changed: %q %q", a, b)
	}
	if s, ok := a.(string); !ok || s != "first" {
		t.Errorf("a text message is a %T", a)
	}
	switch v := c.(type) {
	case []byte:
		if string(v) != "third" {
			t.Errorf("bytes changed: %q", v)
		}
	default:
		t.Errorf("a bytes message is a %T", c)
	}
	if _, isString := c.(string); isString {
		t.Error("a bytes message passes for a string")
	}
}
