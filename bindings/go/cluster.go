// Package cluster is peer-to-peer messaging between the members of a
// statically configured cluster, with the API of the original Go library
// (github.com/cs733-iitb/cluster) over libcluster's Rust core: a program
// written for it needs only its import path changed.
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

// BROADCAST as an Envelope's Pid sends to every peer but oneself.
const BROADCAST = -1

// Envelope is a message and its address.
type Envelope struct {
	// On send, the destination's id or BROADCAST. On receive, the sender's
	// id, so a reply can reuse the envelope.
	Pid int

	// An id opaque to the library, for duplicate detection above it.
	MsgId int64

	// The message: []byte, string, json.RawMessage, or any value whose type
	// is registered with gob.Register (see the package doc).
	Msg interface{}
}

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

// Counters are a server's Go-side failures; each but Discarded is also
// logged.
type Counters struct {
	// Outbox messages that could not be encoded (e.g. an unregistered gob type).
	EncodeErrors uint64
	// Received messages that could not be decoded; they are not delivered.
	DecodeErrors uint64
	// Outbox messages the node refused: unknown peer, too large, queue full.
	SendErrors uint64
	// Outbox messages that were nil, or still unsent when the node closed;
	// and a received envelope that found Inbox full when the node closed.
	Discarded uint64
}
