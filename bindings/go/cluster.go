// Package cluster is peer-to-peer messaging between the members of a
// statically configured cluster, with the API of the original Go library
// (github.com/cs733-iitb/cluster) over libcluster's Rust core: a program
// written for it needs only its import path changed.
//
// It needs libcluster, the C library, of the same major and minor version
// as Version, installed where pkg-config finds it (package cluster): see
// the README for how to install it and what a missing library looks like.
//
// A cluster is described by JSON (a file) or a Config:
//
//	{"Peers": [{"Id": 100, "Address": "localhost:7070"},
//	           {"Id": 200, "Address": "localhost:8080"}],
//	 "InboxSize": 1000, "OutboxSize": 1000}
//
// Send by putting an envelope on Outbox, receive from Inbox:
//
//	srv, err := cluster.New(100, "config.json")
//	srv.Outbox() <- &cluster.Envelope{Pid: 200, MsgId: 1, Msg: "hello"}
//	srv.Outbox() <- &cluster.Envelope{Pid: cluster.BROADCAST, Msg: []byte{1, 2}}
//	env := <-srv.Inbox() // env.Pid is the sender
//
// Msg values travel as: []byte raw bytes (kind 0), string UTF-8 text (kind
// 1), json.RawMessage JSON (kind 2, received as the value encoding/json
// decodes into interface{}), anything else gob-encoded (kind 16; register
// its type with gob.Register), so C and Python peers read bytes, text and
// JSON. A message put on Outbox that cannot be encoded, or one received
// that cannot be decoded, is logged, counted (see Node.Counters) and
// skipped; Node.Send and Node.SendMany return an encoding error instead.
//
// Errors the library reports are *Error values; errors.Is tells their kind
// (ErrConfig, ErrUnknownPeer, ErrTimeout, ErrClosed, ... one per status
// code of cluster.h).
package cluster

import (
	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
	"github.com/cluster-dev/cluster/bindings/go/internal/node"
)

// BROADCAST as an Envelope's Pid sends to every peer but oneself.
const BROADCAST = -1

// Envelope is a message and its address, with the fields of the original
// library:
//
//	Pid   int         // on send: the destination's id or BROADCAST; on receive: the sender's id
//	MsgId int64       // opaque to the library, for duplicate detection above it
//	Msg   interface{} // []byte, string, json.RawMessage, or a gob-registered value
//
// A reply can reuse the envelope received: its Pid names the sender.
// (Defined in internal/node, which package mock shares.)
type Envelope = node.Envelope

// Server is a member of a cluster, real (New) or mock (package mock).
type Server interface {
	// Pid is this server's id.
	Pid() int

	// Peers is the ids of the other servers in the cluster.
	Peers() []int

	// Outbox is the channel to send envelopes on.
	Outbox() chan *Envelope

	// Inbox is the channel received envelopes arrive on.
	Inbox() chan *Envelope

	// Close stops the server and releases its port. Idempotent.
	Close()

	// IsClosed reports whether Close has been called.
	IsClosed() bool
}

// Node is the Server that New returns; type-assert to reach its extras:
//
//	Send(*Envelope) error                  send now, the error back to the caller
//	SendMany([]*Envelope) (int, error)     send in order, one call into the library per 1024
//	Recv(timeout time.Duration) (*Envelope, error)  take the next envelope (ErrTimeout, ErrClosed)
//	RecvContext(ctx) (*Envelope, error)    Recv until ctx is done: then ctx.Err(), nothing taken
//	SendContext(ctx, *Envelope) error      Send until ctx is done: then ctx.Err(), nothing sent or dropped
//	Stats() (string, error)                the library's counters as JSON
//	Counters() Counters                    the Go-side failure counters
//	SetDropProbability, SetMaxMessageDelay, SetDuplicateProbability,
//	Cut(direction, peers...), HealCuts, SetSeed   fault injection, as on mock servers
//
// All its methods are safe for concurrent use. (Defined in internal/node,
// which package mock shares; see the README for Recv and Inbox together.)
type Node = node.Node

// Counters are a server's Go-side failures, from Node.Counters:
// EncodeErrors (Outbox messages that could not be encoded), DecodeErrors
// (received messages that could not be decoded), SendErrors (Outbox
// messages the library refused: unknown peer, too large, queue full) and
// Discarded (nil Outbox envelopes, Outbox messages unsent at Close, and a
// received envelope that found Inbox full at Close). Each but Discarded is
// also logged, at most once a second per cause.
type Counters = node.Counters

// Directions of Node.Cut.
const (
	CutOut  = ffi.CutOut  // this node's messages to the peers are lost
	CutIn   = ffi.CutIn   // the peers' messages to this node are lost
	CutBoth = ffi.CutBoth // both
)

// New starts server myid of a cluster and returns once it listens on its
// address. configuration is the name of a JSON file, JSON text, a Config or
// a *Config; the library parses it (every setting of the README, "Servers"
// as another name for "Peers"). Bad configuration (own id missing,
// duplicate ids or addresses, an address in use, unreadable file, bad
// JSON) is an ErrConfig or ErrAddrInUse *Error whose message names the
// problem; the process never exits.
func New(myid int, configuration interface{}) (Server, error) {
	text, err := configText(configuration)
	if err != nil {
		return nil, err
	}
	h, err := ffi.NewNode(int64(myid), text)
	if err != nil {
		return nil, err
	}
	inbox, outbox := node.QueueSizes(text)
	return node.Start(h, inbox, outbox, false)
}
