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
		kind, data, err := Encode(msg)
		if err != nil {
			t.Fatalf("Encode(%#v): %v", msg, err)
		}
		got, err := Decode(kind, data)
		if err != nil || !reflect.DeepEqual(got, msg) {
			t.Errorf("%#v came back as %#v (%v)", msg, got, err)
		}
	}
}

func TestKinds(t *testing.T) {
	cases := []struct {
		msg  interface{}
		kind uint32
	}{{[]byte{1}, KindBytes}, {"s", KindText}, {json.RawMessage(`[1]`), KindJSON}, {point{}, KindGob}, {nil, KindGob}}
	for _, c := range cases {
		if kind, _, _ := Encode(c.msg); kind != c.kind {
			t.Errorf("%#v: kind %d, want %d", c.msg, kind, c.kind)
		}
	}
}

func TestBadValues(t *testing.T) {
	type private struct{ A int }
	if _, _, err := Encode(private{1}); err == nil {
		t.Error("an unregistered type was encoded")
	}
	if _, _, err := Encode(json.RawMessage(`{`)); err == nil {
		t.Error("invalid JSON was sent as JSON")
	}
	if _, _, err := Encode(make(chan int)); err == nil {
		t.Error("a channel was encoded")
	}
	for _, c := range []struct {
		kind uint32
		data string
	}{{KindJSON, "{"}, {KindGob, "\x05garbage"}} {
		if v, err := Decode(c.kind, []byte(c.data)); err == nil {
			t.Errorf("kind %d %q decoded as %#v", c.kind, c.data, v)
		}
	}
	if v, err := Decode(99, []byte("x")); err != nil || string(v.([]byte)) != "x" {
		t.Errorf("unknown kind: %#v, %v", v, err)
	}
}
