// Package node is the Go binding's server: a node handle of the C ABI
// (a real TCP node or a mock server) behind the Outbox and Inbox channels
// and the synchronous Send, SendMany and Recv, and SendContext and
// RecvContext. Package cluster (New) and
// package mock (AddServer) both serve their handles with it; they give it
// its public names (cluster.Node, cluster.Envelope).
//
// The files, one job each: node.go the server's life (start, state,
// Close); send.go the send path (Outbox goroutine, Send, SendMany);
// recv.go the receive path (the node -> Inbox -> Recv or <-Inbox);
// codec.go the payload kinds; faults.go fault injection; limiter.go the
// rate-limited log.
package node

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

const (
	// batchMax is how many envelopes one cgo call sends or receives at most
	// (1024 measured about 10 % more unicast msgs/s than 256 on 2 cores).
	batchMax = 1024
	// flushWait bounds how long Close lets the sender goroutine hand the
	// envelopes still in Outbox to the node before closing it anyway.
	flushWait = time.Second
	// DefaultQueueSize is the capacity of Inbox and Outbox when the
	// configuration gives none (the library's default InboxSize and
	// OutboxSize).
	DefaultQueueSize = 1000
	// broadcast as a Pid sends to every peer but oneself (cluster.BROADCAST).
	broadcast = -1
)

// Node is a member of a cluster (cluster.Node): the Server that
// cluster.New returns, and the server inside each mock.MockServer. Its
// methods beyond cluster.Server are extras: the synchronous Send, SendMany
// and Recv, their context-aware SendContext and RecvContext, counters and
// fault injection. All methods are safe for
// concurrent use.
type Node struct {
	h       *ffi.Node
	mu      sync.RWMutex // write-held only to free h
	freed   bool
	pid     int
	peers   []int
	dynamic bool // ask the node for its peers each time (mock servers)

	inbox, outbox chan *Envelope
	stop          chan struct{} // closed by Close
	sent          chan struct{} // closed when the sender goroutine is done
	wg            sync.WaitGroup
	once          sync.Once
	closed        atomic.Bool

	rx      receiver
	batchMu sync.Mutex // held while SendMany uses batch
	batch   *ffi.SendBatch
	senders senderPool // SendContext's

	encodeErrors, decodeErrors, sendErrors, discarded atomic.Uint64
	log                                               limiter
}

// Envelope is a message and its address (cluster.Envelope).
type Envelope struct {
	// On send, the destination's id or BROADCAST (-1). On receive, the
	// sender's id, so a reply can reuse the envelope.
	Pid int

	// An id opaque to the library, for duplicate detection above it.
	MsgId int64

	// The message: []byte, string, json.RawMessage, or any value whose type
	// is registered with gob.Register (see codec.go).
	Msg interface{}
}

// Counters are a server's Go-side failures (cluster.Counters); each but
// Discarded is also logged.
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

// Start takes ownership of h and serves it, with Inbox and Outbox of the
// given capacities (0 or less: DefaultQueueSize). dynamicPeers makes Peers
// ask the node each time (a mock server's peers come and go). On error h
// is closed and released.
func Start(h *ffi.Node, inboxSize, outboxSize int, dynamicPeers bool) (*Node, error) {
	pid, err := h.Pid()
	var peers []int
	if err == nil {
		peers, err = peerList(h)
	}
	if err != nil {
		h.Close()
		h.Free()
		return nil, err
	}
	n := &Node{
		h: h, pid: int(pid), peers: peers, dynamic: dynamicPeers,
		inbox:  make(chan *Envelope, queueSize(inboxSize)),
		outbox: make(chan *Envelope, queueSize(outboxSize)),
		stop:   make(chan struct{}),
		sent:   make(chan struct{}),
	}
	n.rx.turn = make(chan struct{}, 1)
	n.wg.Add(1)
	go n.sendLoop()
	return n, nil
}

func queueSize(n int) int {
	if n <= 0 {
		return DefaultQueueSize
	}
	return n
}

func peerList(h *ffi.Node) ([]int, error) {
	ids, err := h.Peers()
	peers := make([]int, len(ids))
	for i, id := range ids {
		peers[i] = int(id)
	}
	return peers, err
}

// Pid is this server's id.
func (n *Node) Pid() int { return n.pid }

// Peers is the ids of the other members, in configuration order (for a
// mock server, those open now).
func (n *Node) Peers() []int {
	if n.dynamic {
		var peers []int
		if n.with(func(h *ffi.Node) (err error) { peers, err = peerList(h); return }) == nil {
			return peers
		}
	}
	return append([]int(nil), n.peers...)
}

// Outbox is the channel to send envelopes on. It is never closed: after
// Close, envelopes put on it are discarded until its buffer is full, and
// then a send blocks like a send on any channel nobody reads.
func (n *Node) Outbox() chan *Envelope { return n.outbox }

// Inbox is the channel received envelopes arrive on, Pid set to the
// sender. The first call starts the goroutine that fills it from the node
// (until then, Recv receives from the node itself); Recv takes from it
// too (see recv.go). It is never closed.
func (n *Node) Inbox() chan *Envelope {
	n.rx.pumpOnce.Do(func() {
		if !n.closed.Load() {
			n.wg.Add(1)
			go n.pump()
		}
	})
	return n.inbox
}

// IsClosed reports whether Close has been called.
func (n *Node) IsClosed() bool { return n.closed.Load() }

// Counters is a snapshot of the Go-side failure counters.
func (n *Node) Counters() Counters {
	return Counters{
		EncodeErrors: n.encodeErrors.Load(),
		DecodeErrors: n.decodeErrors.Load(),
		SendErrors:   n.sendErrors.Load(),
		Discarded:    n.discarded.Load(),
	}
}

// Stats is the library's counters as JSON: sent, received, delivered,
// bytes, drops by cause, reconnects, per-peer queue depth and connection
// state. ffi.ErrClosed after Close.
func (n *Node) Stats() (string, error) {
	var out string
	err := n.with(func(h *ffi.Node) (err error) { out, err = h.Stats(); return })
	return out, err
}

// with runs f on the node handle unless Close has released it, in which
// case it returns ffi.ErrClosed.
func (n *Node) with(f func(*ffi.Node) error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.freed {
		return ffi.ErrClosed
	}
	return f(n.h)
}

// Close sends what Outbox holds (waiting at most a second for room), stops
// the node (which flushes within its linger and releases its port, so a
// new server can start on the same address at once), waits for the
// server's goroutines and the calls in progress to end and releases the
// handle. Idempotent and safe from any goroutine; a concurrent second call
// waits for the first.
func (n *Node) Close() {
	n.once.Do(func() {
		n.closed.Store(true)
		close(n.stop)
		// An Inbox goroutine starting now is in wg; if none ever started,
		// what Recvs took ahead goes on Inbox, for readers of either.
		n.rx.pumpOnce.Do(n.toInbox)
		t := time.NewTimer(flushWait)
		select {
		case <-n.sent:
		case <-t.C:
		}
		t.Stop()
		if err := n.h.Close(); err != nil {
			n.log.printf("close", "cluster: closing server %d: %v", n.pid, err)
		}
		n.wg.Wait()
		n.mu.Lock()
		n.freed = true
		n.h.Free()
		n.rx.free()
		if n.batch != nil {
			n.batch.Free()
		}
		n.senders.free()
		n.mu.Unlock()
	})
}
