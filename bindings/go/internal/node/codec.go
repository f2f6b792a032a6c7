package node

import (
	"bytes"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"unsafe"
)

// Kind tags of the payload, shared by every language (see SPEC.md).
const (
	kindBytes uint32 = 0  // raw bytes: Go []byte
	kindText  uint32 = 1  // UTF-8 text: Go string
	kindJSON  uint32 = 2  // JSON: Go json.RawMessage on send, decoded value on receive
	kindGob   uint32 = 16 // a Go value, gob-encoded as an interface
)

// encode turns a message into a kind tag and payload: []byte as raw bytes,
// string as text, json.RawMessage as JSON, and anything else (nil included)
// gob-encoded as an interface value, whose concrete type must be registered
// with gob.Register.
func encode(msg interface{}) (uint32, []byte, error) {
	switch m := msg.(type) {
	case json.RawMessage:
		if !json.Valid(m) {
			return 0, nil, fmt.Errorf("json.RawMessage is not valid JSON")
		}
		return kindJSON, m, nil
	case []byte:
		return kindBytes, m, nil
	case string:
		// A read-only view, not a copy: the sender copies it into C memory.
		return kindText, unsafe.Slice(unsafe.StringData(m), len(m)), nil
	case nil:
		return kindGob, nil, nil
	}
	data, err := encodeGob(msg)
	return kindGob, data, err
}

// encodeGob is apart from encode so that only gob's callers pay for msg
// escaping to the heap (Encode takes its address).
func encodeGob(msg interface{}) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&msg); err != nil {
		return nil, fmt.Errorf("gob-encoding a %T: %w", msg, err)
	}
	return buf.Bytes(), nil
}

// decode turns a kind tag and payload back into a message: raw bytes as
// []byte, text as string, JSON decoded by encoding/json into interface{}
// (maps, slices, float64, string, bool, nil), gob into the registered type,
// and a kind this package does not know as its raw []byte.
func decode(kind uint32, data []byte) (interface{}, error) {
	switch kind {
	case kindBytes:
		return data, nil
	case kindText:
		return string(data), nil
	case kindJSON:
		var v interface{}
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("decoding a JSON message: %w", err)
		}
		return v, nil
	case kindGob:
		if len(data) == 0 {
			return nil, nil
		}
		var v interface{}
		if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&v); err != nil {
			return nil, fmt.Errorf("decoding a gob message: %w", err)
		}
		return v, nil
	}
	return data, nil
}
