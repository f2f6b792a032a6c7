package node

import (
	"encoding/gob"
	"encoding/json"
	"reflect"
	"testing"
)

type point struct{ X, Y int }

func init() {
	gob.Register(point{})
	gob.Register(map[string]int{})
}

func TestRoundTrip(t *testing.T) {
	for _, msg := range []interface{}{
		[]byte("raw"), "text", "", nil, point{1, 2}, 3.5, []string{"a"}, map[string]int{"k": 1},
	} {
		kind, data, err := encode(msg)
		if err != nil {
			t.Fatalf("encode(%#v): %v", msg, err)
		}
		got, err := decode(kind, data)
		if err != nil || !reflect.DeepEqual(got, msg) {
			t.Errorf("%#v came back as %#v (%v)", msg, got, err)
		}
	}
}

func TestKinds(t *testing.T) {
	cases := []struct {
		msg  interface{}
		kind uint32
	}{{[]byte{1}, kindBytes}, {"s", kindText}, {json.RawMessage(`[1]`), kindJSON}, {point{}, kindGob}, {nil, kindGob}}
	for _, c := range cases {
		if kind, _, _ := encode(c.msg); kind != c.kind {
			t.Errorf("%#v: kind %d, want %d", c.msg, kind, c.kind)
		}
	}
}

func TestBadValues(t *testing.T) {
	type private struct{ A int }
	if _, _, err := encode(private{1}); err == nil {
		t.Error("an unregistered type was encoded")
	}
	if _, _, err := encode(json.RawMessage(`{`)); err == nil {
		t.Error("invalid JSON was sent as JSON")
	}
	if _, _, err := encode(make(chan int)); err == nil {
		t.Error("a channel was encoded")
	}
	for _, c := range []struct {
		kind uint32
		data string
	}{{kindJSON, "{"}, {kindGob, "\x05garbage"}} {
		if v, err := decode(c.kind, []byte(c.data)); err == nil {
			t.Errorf("kind %d %q decoded as %#v", c.kind, c.data, v)
		}
	}
	if v, err := decode(99, []byte("x")); err != nil || string(v.([]byte)) != "x" {
		t.Errorf("unknown kind: %#v, %v", v, err)
	}
}

// Encoding []byte or a string must not allocate: it runs once a message
// on the sender goroutine.
func TestEncodeRawDoesNotAllocate(t *testing.T) {
	var msg interface{} = []byte("payload")
	var text interface{} = "text"
	if n := testing.AllocsPerRun(100, func() { encode(msg) }); n != 0 {
		t.Errorf("encode([]byte) allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { encode(text) }); n != 0 {
		t.Errorf("encode(string) allocates %v times", n)
	}
}
