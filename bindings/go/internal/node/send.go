package node

import (
	"context"
	"errors"
	"sync"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// The send path: the goroutine that serves Outbox (started by Start), and
// the synchronous Send and SendMany. Both encode envelopes into C memory
// and send them with one cluster_send_batch call per batch. SendContext
// sends one with cluster_try_send, which keeps a message that finds no
// room, so it can stop waiting.

// sendLoop takes envelopes from Outbox, as many as are there up to
// batchMax, and sends them with one cgo call. After stop it sends what is
// left in Outbox and ends.
func (n *Node) sendLoop() {
	defer n.wg.Done()
	defer close(n.sent)
	b := ffi.NewSendBatch(batchMax)
	defer b.Free()
	for {
		select {
		case e := <-n.outbox:
			n.add(b, e)
		case <-n.stop:
			n.drain(b)
			return
		}
	fill:
		for !b.Full() {
			select {
			case e := <-n.outbox:
				n.add(b, e)
			default:
				break fill
			}
		}
		if !n.send(b) {
			return
		}
	}
}

// drain sends what Outbox holds when Close is called.
func (n *Node) drain(b *ffi.SendBatch) {
	for {
		select {
		case e := <-n.outbox:
			n.add(b, e)
			if b.Full() && !n.send(b) {
				return
			}
		default:
			n.send(b)
			return
		}
	}
}

func (n *Node) add(b *ffi.SendBatch, e *Envelope) {
	if e == nil {
		n.discarded.Add(1)
		n.log.printf("nil", "cluster: server %d: nil envelope on Outbox ignored", n.pid)
		return
	}
	kind, data, err := encode(e.Msg)
	if err != nil {
		n.encodeErrors.Add(1)
		n.log.printf("encode", "cluster: server %d: message %d to %d not sent: %v", n.pid, e.MsgId, e.Pid, err)
		return
	}
	b.Add(int64(e.Pid), e.MsgId, kind, data)
}

// send sends the batch, waiting for room in live peers' queues until the
// node closes; false once the node is closed.
func (n *Node) send(b *ffi.SendBatch) bool {
	if b.Len() == 0 {
		return true
	}
	unsent, err := b.Send(n.h, -1, func(_ int, err error) bool {
		n.sendErrors.Add(1)
		n.log.printf(errName(err), "cluster: server %d: %v", n.pid, err)
		return true
	})
	n.discarded.Add(uint64(unsent))
	return err == nil
}

// errName is the status name of err (e.g. "CLUSTER_E_FULL") if the library
// reported it, else "error": the key of its log line.
func errName(err error) string {
	var e *ffi.Error
	if errors.As(err, &e) {
		return e.Name
	}
	return "error"
}

// Send and Recv are the synchronous way in and out of a Node, beside
// Outbox and Inbox: the calling goroutine calls into the library itself,
// with no goroutine in between, so a send's error comes back to its caller
// and a request/reply round trip skips four goroutine hand-offs.

// Send sends e now, from the calling goroutine: it returns once the node
// has queued e (waiting, as Outbox does, while a live peer's queue is full)
// or with the reason it did not: an unknown peer or a payload too large
// (*ffi.Error), a Msg that cannot be encoded, ffi.ErrClosed after Close. The
// message is copied: e and its Msg may be reused once Send returns.
// Envelopes sent with Send and on Outbox keep no order between them.
// Concurrent calls of Send and SendMany take turns: one waiting for room in
// a full peer's queue holds up the others.
func (n *Node) Send(e *Envelope) error {
	_, err := n.SendMany([]*Envelope{e})
	return err
}

// errNil is the error of sending a nil envelope.
var errNil = errors.New("cluster: nil envelope")

// SendMany sends envs in order, as Send would one by one, with one call
// into the library per 1024: it stops at the first envelope that is nil,
// cannot be encoded or is refused, and returns how many were sent and why
// it stopped. Concurrent calls take turns, as Send's do.
func (n *Node) SendMany(envs []*Envelope) (int, error) {
	sent := 0
	err := n.with(func(h *ffi.Node) error {
		n.batchMu.Lock()
		defer n.batchMu.Unlock()
		if n.batch == nil { // made here: Close frees it under the same lock
			n.batch = ffi.NewSendBatch(batchMax)
		}
		b := n.batch
		var stop error
		for sent < len(envs) && stop == nil {
			added := 0
			for _, e := range envs[sent:] {
				if b.Full() {
					break
				}
				if e == nil {
					stop = errNil
					break
				}
				kind, data, err := encode(e.Msg)
				if err != nil {
					stop = err
					break
				}
				b.Add(int64(e.Pid), e.MsgId, kind, data)
				added++
			}
			refused := 0
			unsent, err := b.Send(h, -1, func(_ int, err error) bool {
				stop, refused = err, 1
				return false
			})
			sent += added - unsent - refused
			if err != nil {
				return err
			}
		}
		return stop
	})
	return sent, closedAsIs(err)
}

// closedAsIs is err, or ffi.ErrClosed itself for any closed error, as the
// synchronous calls promise.
func closedAsIs(err error) error {
	if errors.Is(err, ffi.ErrClosed) {
		return ffi.ErrClosed
	}
	return err
}

// sendSliceMs is how long SendContext waits in the library at a time for
// room in a full queue before it looks at its context again.
const sendSliceMs = 5

// SendContext is Send until ctx is done: while a live peer's queue is
// full it waits for room in slices of 5 ms, and once ctx is done it
// returns ctx.Err() having neither sent nor dropped the message (nor
// counted it in the library's stats). Other errors are Send's. It does
// not take turns with Send and SendMany. A BROADCAST goes to each peer in
// turn the same way; cancelled midway, it has reached the peers before and
// not the others.
func (n *Node) SendContext(ctx context.Context, e *Envelope) error {
	if err := ctx.Err(); err != nil { // before encoding
		return err
	}
	if e == nil {
		return errNil
	}
	kind, data, err := encode(e.Msg)
	if err != nil {
		return err
	}
	s := n.senders.get()
	defer n.senders.put(s)
	s.Load(int64(e.Pid), e.MsgId, kind, data)
	defer s.Unload()
	if e.Pid != broadcast {
		return closedAsIs(n.trySend(ctx, s))
	}
	for _, pid := range n.Peers() {
		s.To(int64(pid))
		// A peer that is down (ErrFull, dropped and counted) or gone
		// misses it, as in a broadcast; ctx, Close or a size stop it.
		err := n.trySend(ctx, s)
		if err != nil && !errors.Is(err, ffi.ErrFull) && !errors.Is(err, ffi.ErrUnknownPeer) {
			return closedAsIs(err)
		}
	}
	return nil
}

// trySend sends the message s holds: at once if there is room, else in
// slices of sendSliceMs until there is, ctx is done (ctx.Err(), checked
// before every try) or it fails.
func (n *Node) trySend(ctx context.Context, s *ffi.Sender) error {
	for timeout := int64(0); ; timeout = sendSliceMs {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := n.with(func(h *ffi.Node) error { return s.TrySend(h, timeout) })
		if err != ffi.ErrTimeout {
			return err
		}
	}
}

// senderPool keeps SendContext's Senders (C memory) for the next calls;
// Close frees them.
type senderPool struct {
	mu     sync.Mutex
	idle   []*ffi.Sender
	closed bool
}

// senderIdleMax bounds the Senders kept idle.
const senderIdleMax = 16

func (p *senderPool) get() *ffi.Sender {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k := len(p.idle); k > 0 {
		s := p.idle[k-1]
		p.idle = p.idle[:k-1]
		return s
	}
	return ffi.NewSender()
}

func (p *senderPool) put(s *ffi.Sender) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle) == senderIdleMax {
		s.Free()
		return
	}
	p.idle = append(p.idle, s)
}

// free releases the idle Senders, and from now on those put back.
func (p *senderPool) free() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.idle {
		s.Free()
	}
	p.idle, p.closed = nil, true
}
