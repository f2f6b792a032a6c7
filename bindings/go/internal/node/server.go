// Package node is the Go runtime around one node handle of the C ABI: the
// Outbox and Inbox channels, the two goroutines that serve them, the codec
// of Msg values and Close. Package cluster (real TCP nodes) and package mock
// (mock servers) both build on it.
package node

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

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
	// is registered with gob.Register.
	Msg interface{}
}

const (
	// batchMax is how many envelopes one cgo call sends or receives at most.
	batchMax = 256
	// flushWait bounds how long Close lets the sender goroutine hand the
	// envelopes still in Outbox to the node before closing it anyway.
	flushWait = time.Second
	// DefaultQueueSize is the capacity of Inbox and Outbox when the
	// configuration gives none.
	DefaultQueueSize = 1000
)

// ErrClosed is returned by calls on a closed server.
var ErrClosed = errors.New("cluster: server is closed")

// Counters are a server's Go-side failures: each is also logged.
type Counters struct {
	// Outbox messages that could not be encoded (e.g. an unregistered gob type).
	EncodeErrors uint64
	// Received messages that could not be decoded; they are not delivered.
	DecodeErrors uint64
	// Outbox messages the node refused: unknown peer, too large, queue full.
	SendErrors uint64
	// Outbox messages that were nil, or still unsent when the node closed.
	Discarded uint64
}

// Server serves a node handle's Outbox and Inbox channels. All methods are
// safe for concurrent use.
type Server struct {
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

	encodeErrors, decodeErrors, sendErrors, discarded atomic.Uint64
	log                                               limiter
}

// Start takes ownership of h and starts serving it. dynamicPeers makes
// Peers ask the node each time (a mock server's peers come and go). On
// error h is closed and released.
func Start(h *ffi.Node, inboxSize, outboxSize int, dynamicPeers bool) (*Server, error) {
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
	s := &Server{
		h: h, pid: int(pid), peers: peers, dynamic: dynamicPeers,
		inbox:  make(chan *Envelope, queueSize(inboxSize)),
		outbox: make(chan *Envelope, queueSize(outboxSize)),
		stop:   make(chan struct{}),
		sent:   make(chan struct{}),
	}
	s.wg.Add(2)
	go s.sendLoop()
	go s.recvLoop()
	return s, nil
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
func (s *Server) Pid() int { return s.pid }

// Peers is the ids of the other servers (for a mock server, those open now).
func (s *Server) Peers() []int {
	if s.dynamic {
		var peers []int
		if s.With(func(h *ffi.Node) (err error) { peers, err = peerList(h); return }) == nil {
			return peers
		}
	}
	return append([]int(nil), s.peers...)
}

// Outbox is the channel to send envelopes on. It is never closed, so a
// send after Close does not panic; what is sent after Close is never sent.
func (s *Server) Outbox() chan *Envelope { return s.outbox }

// Inbox is the channel received envelopes arrive on; Pid is the sender's.
func (s *Server) Inbox() chan *Envelope { return s.inbox }

// IsClosed reports whether Close has been called.
func (s *Server) IsClosed() bool { return s.closed.Load() }

// Counters is a snapshot of the server's Go-side failure counters.
func (s *Server) Counters() Counters {
	return Counters{
		EncodeErrors: s.encodeErrors.Load(),
		DecodeErrors: s.decodeErrors.Load(),
		SendErrors:   s.sendErrors.Load(),
		Discarded:    s.discarded.Load(),
	}
}

// Stats is the node's counters as JSON text (see the README); it works
// until Close returns.
func (s *Server) Stats() (string, error) {
	var out string
	err := s.With(func(h *ffi.Node) (err error) { out, err = h.Stats(); return })
	return out, err
}

// With runs f on the node handle unless the server has been closed and its
// handle released, in which case it returns ErrClosed.
func (s *Server) With(f func(*ffi.Node) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.freed {
		return ErrClosed
	}
	return f(s.h)
}

// Close hands what is in Outbox to the node (waiting at most flushWait for
// room), closes the node (which flushes within its linger and releases its
// port), waits for both goroutines to end and releases the handle.
// Idempotent; a concurrent second call waits for the first.
func (s *Server) Close() {
	s.once.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		t := time.NewTimer(flushWait)
		select {
		case <-s.sent:
		case <-t.C:
		}
		t.Stop()
		if err := s.h.Close(); err != nil {
			s.log.printf("close", "cluster: closing server %d: %v", s.pid, err)
		}
		s.wg.Wait()
		s.mu.Lock()
		s.freed = true
		s.h.Free()
		s.mu.Unlock()
	})
}

// sendLoop takes envelopes from Outbox, as many as are there up to
// batchMax, and sends them with one cgo call. After stop it sends what is
// left in Outbox and ends.
func (s *Server) sendLoop() {
	defer s.wg.Done()
	defer close(s.sent)
	b := ffi.NewSendBatch(batchMax)
	defer b.Free()
	for {
		select {
		case e := <-s.outbox:
			s.add(b, e)
		case <-s.stop:
			s.drain(b)
			return
		}
	fill:
		for !b.Full() {
			select {
			case e := <-s.outbox:
				s.add(b, e)
			default:
				break fill
			}
		}
		if !s.send(b) {
			return
		}
	}
}

// drain sends what Outbox holds when Close is called.
func (s *Server) drain(b *ffi.SendBatch) {
	for {
		select {
		case e := <-s.outbox:
			s.add(b, e)
			if b.Full() && !s.send(b) {
				return
			}
		default:
			s.send(b)
			return
		}
	}
}

func (s *Server) add(b *ffi.SendBatch, e *Envelope) {
	if e == nil {
		s.discarded.Add(1)
		s.log.printf("nil", "cluster: server %d: nil envelope on Outbox ignored", s.pid)
		return
	}
	kind, data, err := Encode(e.Msg)
	if err != nil {
		s.encodeErrors.Add(1)
		s.log.printf("encode", "cluster: server %d: message %d to %d not sent: %v", s.pid, e.MsgId, e.Pid, err)
		return
	}
	b.Add(int64(e.Pid), e.MsgId, kind, data)
}

// send sends the batch, waiting for room in live peers' queues until the
// node closes; false once the node is closed.
func (s *Server) send(b *ffi.SendBatch) bool {
	if b.Len() == 0 {
		return true
	}
	unsent, err := b.Send(s.h, -1, func(i int, err error) {
		s.sendErrors.Add(1)
		s.log.printf(err.Error(), "cluster: server %d: %v", s.pid, err)
	})
	s.discarded.Add(uint64(unsent))
	return err == nil
}

// recvLoop receives batches from the node (blocking inside the library
// until a message comes or the node closes) and puts them on Inbox.
func (s *Server) recvLoop() {
	defer s.wg.Done()
	b := ffi.NewRecvBatch(batchMax)
	defer b.Free()
	got := make([]*Envelope, 0, batchMax)
	for {
		got = got[:0]
		err := b.Recv(s.h, -1, func(pid, msgID int64, kind uint32, data []byte) {
			msg, err := Decode(kind, data)
			if err != nil {
				s.decodeErrors.Add(1)
				s.log.printf("decode", "cluster: server %d: message %d from %d dropped: %v", s.pid, msgID, pid, err)
				return
			}
			got = append(got, &Envelope{Pid: int(pid), MsgId: msgID, Msg: msg})
		})
		if err != nil {
			if ffi.Code(err) != ffi.ErrClosed {
				s.log.printf("recv", "cluster: server %d: receive failed, inbox stops: %v", s.pid, err)
			}
			return
		}
		for _, e := range got {
			select {
			case s.inbox <- e:
			case <-s.stop:
				return
			}
		}
		// Let the reader just woken run on this P now: the next Recv
		// may block in C, and a P held by a blocked cgo call is handed
		// on only when sysmon notices, which costs tens of µs a message.
		runtime.Gosched()
	}
}
