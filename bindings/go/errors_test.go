package cluster

import (
	"errors"
	"testing"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// Every status code of the header (checked in internal/ffi) has its
// exported kind here, and no kind is exported twice.
func TestEveryKindExported(t *testing.T) {
	exported := []*Error{
		ErrNullArg, ErrInvalidArg, ErrConfig, ErrAddrInUse, ErrIO, ErrUnknownPeer,
		ErrTooLarge, ErrTimeout, ErrClosed, ErrFull, ErrPanic, ErrBufferTooSmall,
	}
	seen := map[int]bool{}
	for _, k := range exported {
		if seen[k.Code] {
			t.Errorf("%s exported twice", k.Name)
		}
		seen[k.Code] = true
	}
	for _, k := range ffi.Kinds {
		if !seen[k.Code] {
			t.Errorf("%s (%d) is not exported", k.Name, k.Code)
		}
	}
	if len(exported) != len(ffi.Kinds) {
		t.Errorf("%d kinds exported, %d in the table", len(exported), len(ffi.Kinds))
	}
}

// The errors the library returns tell their kind through errors.Is.
func TestErrorKinds(t *testing.T) {
	cfg := freeConfig(t, 1)
	srv := startAll(t, cfg, 1)[0]
	_, err := New(1, cfg)
	if !errors.Is(err, ErrAddrInUse) || errors.Is(err, ErrConfig) {
		t.Errorf("a second server on one address: %v, want ErrAddrInUse", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Name != "CLUSTER_E_ADDR_IN_USE" || e.Message == "" {
		t.Errorf("%#v: want an *Error with its name and a message", err)
	}
	if _, err := New(7, cfg); !errors.Is(err, ErrConfig) {
		t.Errorf("an id not in the config: %v, want ErrConfig", err)
	}
	n := srv.(*Node)
	if err := n.Send(&Envelope{Pid: 99, Msg: "x"}); !errors.Is(err, ErrUnknownPeer) {
		t.Errorf("send to 99: %v, want ErrUnknownPeer", err)
	}
	if err := n.SetDropProbability(2); !errors.Is(err, ErrInvalidArg) {
		t.Errorf("drop probability 2: %v, want ErrInvalidArg", err)
	}
	if _, err := n.Recv(0); err != ErrTimeout || !errors.Is(err, ErrTimeout) {
		t.Errorf("Recv(0): %v, want ErrTimeout", err)
	}
	srv.Close()
	if _, err := n.Recv(0); err != ErrClosed {
		t.Errorf("Recv after Close: %v, want ErrClosed", err)
	}
}
