package node

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/cluster-dev/cluster/bindings/go/internal/ffi"
)

// The receive path. Every envelope a node receives goes one of two ways:
//
//	the node (cluster_recv_batch) -> fill -> Inbox -> the program (<-Inbox or Recv)
//	the node (cluster_recv_batch) -> fill -> ready -> the program (Recv)
//
// fill is the only code that receives from the node, and only the holder
// of the turn calls it: a Recv that finds nothing to take, or the Inbox
// goroutine, which the first Inbox call starts and which keeps the turn
// from then on. A Recv's fill puts envelopes on ready, a list the next
// Recvs take from under a mutex (no channel send and receive a message);
// the Inbox goroutine moves what ready holds onto Inbox before its first
// fill, and its fills put envelopes on Inbox. So until Inbox is first
// called only ready holds envelopes, after that only Inbox: they keep the
// order the node gave them whoever reads and however Recv and <-Inbox are
// mixed. A fill starts only with ready empty (the turn's holder takes
// from ready first, and only the turn's holder adds to it), and a Recv
// fills at most the room Inbox has, so ready always fits on Inbox.

// receiver is a node's receiving state.
type receiver struct {
	turn  chan struct{} // holds a token while someone fills
	batch *ffi.RecvBatch
	each  func(pid, msgID int64, kind uint32, data []byte)
	mem   recvMem
	// fresh collects a Recv's fill (filling set: the turn's holder owns
	// both), moved to ready in one go.
	fresh   []*Envelope
	filling bool

	mu    sync.Mutex
	ready []*Envelope // from head on: what Recvs' fills took, in order
	head  int

	pumpOnce sync.Once // starts the Inbox goroutine; Close runs it empty
}

// fill receives up to max envelopes (max >= 1) from the node, waiting up
// to timeoutMs (negative: until a message or close) for the first, and
// puts them on Inbox in order. Hold the turn. A
// message that cannot be decoded is logged, counted and dropped. If Inbox
// is full, fill waits for room, or for Close (the envelope is then
// counted as discarded): only the Inbox goroutine asks for more than the
// room Inbox has.
func (n *Node) fill(max int, timeoutMs int64) error {
	r := &n.rx
	return n.with(func(h *ffi.Node) error {
		if r.batch == nil { // made here: Close frees it under the same lock
			r.batch = ffi.NewRecvBatch(batchMax)
			r.each = n.deliver
		}
		return r.batch.Recv(h, max, timeoutMs, r.each)
	})
}

// deliver decodes one envelope received and puts it on Inbox, or, while
// a Recv fills, on fresh.
func (n *Node) deliver(pid, msgID int64, kind uint32, data []byte) {
	msg, err := n.rx.mem.decode(kind, data)
	if err != nil {
		n.decodeErrors.Add(1)
		n.log.printf("decode", "cluster: server %d: message %d from %d dropped: %v", n.pid, msgID, pid, err)
		return
	}
	e := n.rx.mem.envelope()
	*e = Envelope{Pid: int(pid), MsgId: msgID, Msg: msg}
	if n.rx.filling {
		n.rx.fresh = append(n.rx.fresh, e)
		return
	}
	select {
	case n.inbox <- e:
		return
	default:
	}
	select {
	case n.inbox <- e:
	case <-n.stop:
		n.discarded.Add(1)
	}
}

// pollTries is how many times fillPatient looks for messages on a mock
// server, letting other goroutines run in between, before it blocks in C.
const pollTries = 8

// fillPatient is fill for a receive that may wait (w). On a mock server,
// whose messages come from goroutines of this process, it takes what the
// node holds without waiting, and while that is nothing lets the other
// goroutines run (the senders, on this P) and looks again, pollTries
// times, before it blocks in C: a cgo call that blocks keeps its P until
// sysmon notices (tens of µs, all the more with 2 Ps), and the core's own
// wait polls before it parks, so the polling is done here, where the
// goroutines it waits for can run meanwhile. A TCP node's messages come
// from the core's threads: it blocks in C at once (polling here made TCP
// ping-pong's p50 17 -> 43 µs).
func (n *Node) fillPatient(max int, w *wait) error {
	tries := 0
	if n.dynamic {
		tries = pollTries
	}
	for i := 0; ; i++ {
		ms := w.ms()
		if i < tries && ms != 0 {
			ms = 0
		}
		err := n.fill(max, ms)
		if err != ffi.ErrTimeout || ms != 0 || w.ms() == 0 {
			return err
		}
		runtime.Gosched()
	}
}

// room is how many envelopes a fill may put on Inbox (or ready) without
// waiting (at most batchMax).
func (n *Node) room() int {
	return min(cap(n.inbox)-len(n.inbox), batchMax)
}

// pop takes the first envelope of ready, if any.
func (r *receiver) pop() *Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.popLocked()
}

func (r *receiver) popLocked() *Envelope {
	if r.head == len(r.ready) {
		return nil
	}
	e := r.ready[r.head]
	r.ready[r.head] = nil
	r.head++
	return e
}

// publish makes what the fill put on fresh the new ready (the turn held,
// ready empty: see above; the two lists trade places), and pops its first
// envelope.
func (r *receiver) publish() *Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ready, r.fresh, r.head = r.fresh, r.ready[:0], 0
	return r.popLocked()
}

// toInbox moves what ready holds onto Inbox, which has room for it: the
// Inbox goroutine does, holding the turn, before its first fill, or Close
// if that goroutine never started.
func (n *Node) toInbox() {
	r := &n.rx
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.ready[r.head:] {
		n.inbox <- e
	}
	clear(r.ready)
	r.ready, r.head = r.ready[:0], 0
}

// Recv returns the next envelope received, Pid set to the sender, waiting
// up to timeout for it (0: not at all; negative: until one comes or
// Close). It fails with ffi.ErrTimeout, or ffi.ErrClosed once Close has been
// called and Inbox is empty. Recv takes envelopes from Inbox, in order;
// when Inbox is empty and no other goroutine is receiving from the node,
// it receives from the node itself (no goroutine in between), putting on
// Inbox what comes with the envelope it returns, for the next Recv or
// <-Inbox. Recv and <-Inbox may be mixed, and used from many goroutines:
// each envelope goes to one of them, in the order received.
func (n *Node) Recv(timeout time.Duration) (*Envelope, error) {
	select {
	case e := <-n.inbox:
		return e, nil
	default:
	}
	if e := n.rx.pop(); e != nil {
		return e, nil
	}
	w := newWait(timeout)
	return n.recvWait(&w)
}

// RecvContext is Recv with no timeout, until ctx is done: then it returns
// ctx.Err() and has taken nothing (a message that arrives is left for the
// next receive). While it waits it holds no thread and burns no CPU: it
// waits for the node's readiness descriptor in Go's netpoller. It may be
// mixed with Recv and <-Inbox as they are with each other.
func (n *Node) RecvContext(ctx context.Context) (*Envelope, error) {
	return n.recvWait(&wait{timeout: -1, ctx: ctx})
}

// recvWait is Recv once Inbox was found empty, and RecvContext. It stops w.
func (n *Node) recvWait(w *wait) (*Envelope, error) {
	defer w.stop()
	for {
		if err := w.cancelled(); err != nil {
			return nil, err
		}
		select {
		case e := <-n.inbox:
			return e, nil
		default:
		}
		if e := n.rx.pop(); e != nil {
			return e, nil
		}
		if n.closed.Load() {
			return nil, ffi.ErrClosed
		}
		select {
		case n.rx.turn <- struct{}{}:
		default:
			// Another goroutine receives from the node: wait for what it
			// puts on Inbox, or for the turn.
			if w.timeout == 0 {
				return nil, ffi.ErrTimeout
			}
			select {
			case e := <-n.inbox:
				return e, nil
			case n.rx.turn <- struct{}{}:
			case <-n.stop:
				return nil, ffi.ErrClosed
			case <-w.expired():
				return nil, ffi.ErrTimeout
			case <-w.done():
				return nil, w.ctx.Err()
			}
		}
		// The turn held: what ready holds now came before what a fill
		// would bring.
		if e := n.rx.pop(); e != nil {
			<-n.rx.turn
			return e, nil
		}
		var err error
		if room := n.room(); room > 0 {
			n.rx.filling = true
			if w.ctx != nil {
				err = n.fillReady(w, room)
			} else {
				err = n.fillPatient(room, w)
			}
			n.rx.filling = false
		}
		e := n.rx.publish()
		<-n.rx.turn
		if e != nil {
			return e, nil
		}
		if len(n.inbox) > 0 {
			continue
		}
		switch {
		case err == ffi.ErrTimeout:
			return nil, ffi.ErrTimeout
		case errors.Is(err, ffi.ErrClosed):
			return nil, ffi.ErrClosed
		case err != nil: // ctx.Err() among them
			return nil, err
		case w.ms() == 0:
			return nil, ffi.ErrTimeout
		}
		// What the fill brought went to other readers, or could not be
		// decoded: wait on.
	}
}

// fillReady is RecvContext's fill (the turn held, room > 0): it never
// blocks in the library. It takes what the node holds (timeout 0) and,
// while that is nothing, waits in Go's netpoller for the node's readiness
// descriptor and takes again, until a take brings something (nil), the
// node closes, or ctx is done (ctx.Err(), nothing taken since ctx was seen
// live: ctx is checked before every take).
//
// No wake-up is lost. Go's netpoller is edge-triggered: a readiness event
// that arrives before RawRead starts is forgotten (RawRead resets the
// descriptor's state first). So the take that decides to wait runs inside
// RawRead's callback, after that reset: if it finds nothing, the node's
// queue was empty (the descriptor lowered) at that moment, and the next
// message makes it non-empty, which writes the eventfd (the core does on
// every empty -> non-empty transition, and on close), an event that comes
// after the reset and so ends the wait; the callback is called again and
// takes it. Only the holder of the turn takes from the node, so between
// the take and the wait nobody else can empty the queue again unseen.
func (n *Node) fillReady(w *wait, room int) error {
	if err := n.fill(room, 0); err != ffi.ErrTimeout {
		return err
	}
	rc, err := w.readiness(n)
	if err != nil {
		return err
	}
	ctx := w.ctx // not w: the callback escapes, and Recv's w stays on the stack
	var took error = ffi.ErrTimeout
	err = rc.Read(func(uintptr) bool {
		if ctx.Err() != nil {
			return true
		}
		took = n.fill(room, 0)
		return took != ffi.ErrTimeout
	})
	if cerr := ctx.Err(); cerr != nil && (err != nil || took == ffi.ErrTimeout) {
		return cerr
	}
	if err != nil {
		return err
	}
	return took
}

// pump is the Inbox goroutine: it takes the turn for good (after any
// Recv receiving now) and fills Inbox from the node until Close.
func (n *Node) pump() {
	defer n.wg.Done()
	select {
	case n.rx.turn <- struct{}{}: // kept: from now on only this goroutine fills
	case <-n.stop:
		return
	}
	n.toInbox()
	for {
		select {
		case <-n.stop: // what the node still holds, it discards and counts
			return
		default:
		}
		// Let the reader just woken run on this P now: the next receive
		// may block in C, and a P held by a blocked cgo call is handed
		// on only when sysmon notices, which costs tens of µs a message.
		runtime.Gosched()
		if err := n.fillPatient(max(n.room(), 1), &wait{timeout: -1}); err != nil {
			if !errors.Is(err, ffi.ErrClosed) {
				n.log.printf("recv", "cluster: server %d: receive failed, inbox stops: %v", n.pid, err)
			}
			return
		}
	}
}

// free releases the C memory; the node is closed and nobody receives.
func (r *receiver) free() {
	if r.batch != nil {
		r.batch.Free()
		r.batch = nil
	}
}

// wait is one call's timeout (0: do not wait; negative: no limit), its
// timer made only if the call has to wait; or RecvContext's context and,
// made once it has to wait, its dup of the readiness descriptor.
type wait struct {
	timeout  time.Duration
	deadline time.Time
	timer    *time.Timer

	ctx       context.Context // RecvContext's, else nil
	file      *os.File        // the dup, in the netpoller
	raw       syscall.RawConn
	stopAfter func() bool // stops the AfterFunc that cancels the wait
}

func newWait(timeout time.Duration) wait {
	w := wait{timeout: timeout}
	if timeout > 0 {
		w.deadline = time.Now().Add(timeout)
	}
	return w
}

// cancelled is ctx.Err() (nil without a context).
func (w *wait) cancelled() error {
	if w.ctx == nil {
		return nil
	}
	return w.ctx.Err()
}

// done is ctx.Done() (never without a context).
func (w *wait) done() <-chan struct{} {
	if w.ctx == nil {
		return nil
	}
	return w.ctx.Done()
}

// expired is a channel that fires at the deadline (never without one).
func (w *wait) expired() <-chan time.Time {
	if w.timeout < 0 {
		return nil
	}
	if w.timer == nil {
		w.timer = time.NewTimer(time.Until(w.deadline))
	}
	return w.timer.C
}

// ms is the time left in whole milliseconds, rounded up, for the C ABI.
func (w *wait) ms() int64 {
	if w.timeout < 0 {
		return -1
	}
	left := time.Until(w.deadline)
	if w.timeout == 0 || left <= 0 {
		return 0
	}
	return int64((left + time.Millisecond - 1) / time.Millisecond)
}

// readiness is this call's own dup of the node's readiness descriptor (so
// the original, which Close frees, is never in the netpoller, and closing
// the dup touches no other call's), registered with the netpoller, and
// set to fail its wait (a read deadline in the past) when ctx is done.
func (w *wait) readiness(n *Node) (syscall.RawConn, error) {
	if w.raw != nil {
		return w.raw, nil
	}
	var fd int
	err := n.with(func(h *ffi.Node) error { // the descriptor lives until Free
		orig, err := h.RecvFD()
		if err == nil {
			fd, err = dupCloexec(orig)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// Non-blocking (the eventfd is, and a dup shares that), so NewFile
	// registers it with the netpoller.
	f := os.NewFile(uintptr(fd), "cluster-recv-fd")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	w.file, w.raw = f, raw
	w.stopAfter = context.AfterFunc(w.ctx, func() { f.SetReadDeadline(time.Now()) })
	return raw, nil
}

// dupCloexec duplicates fd, close-on-exec.
func dupCloexec(fd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
	if errno != 0 {
		return -1, ffi.Errorf(ffi.ErrIO, "dup of the readiness descriptor: %v", errno)
	}
	return int(r), nil
}

func (w *wait) stop() {
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.file != nil {
		w.stopAfter()
		w.file.Close() // a deadline the AfterFunc sets now fails harmlessly
	}
}

// Received envelopes, small payloads and the headers of []byte and
// string messages are carved out of blocks of Go memory: a []byte or
// string message costs no allocation of its own, where a plain
// interface{} conversion would make one (its header's) and the envelope
// and payload two more. A block stays alive while anything carved from
// it does.
const (
	envBlock  = 64      // envelopes a block
	byteBlock = 4 << 10 // bytes a block of payloads
	smallMax  = 256     // larger payloads get their own allocation
	headBlock = 64      // string or []byte headers a block
)

// recvMem hands out received envelopes and payloads; the turn's holder
// uses it.
type recvMem struct {
	envs   block[Envelope]
	bytes  block[byte]
	texts  block[string]
	slices block[[]byte]
}

// block is a slice of Go memory handed out from the front.
type block[T any] struct {
	items []T
	used  int
}

// take hands out the next n items (n <= size), making a block of size
// first if fewer are left.
func (b *block[T]) take(n, size int) []T {
	if len(b.items)-b.used < n {
		b.items, b.used = make([]T, size), 0
	}
	out := b.items[b.used : b.used+n : b.used+n]
	b.used += n
	return out
}

// envelope hands out the next envelope.
func (m *recvMem) envelope() *Envelope { return &m.envs.take(1, envBlock)[0] }

// copy copies view (C memory) into Go memory.
func (m *recvMem) copy(view []byte) []byte {
	if len(view) > smallMax {
		return append([]byte(nil), view...)
	}
	out := m.bytes.take(len(view), byteBlock)
	copy(out, view)
	return out
}

// decode decodes a payload still in C memory from a Go copy. Text becomes
// a string over its copy (unsafe.String): no region of a block is written
// twice, so the string stays immutable. A string or []byte message is
// boxed in place (see boxed).
func (m *recvMem) decode(kind uint32, view []byte) (interface{}, error) {
	b := m.copy(view)
	switch kind {
	case kindText:
		h := &m.texts.take(1, headBlock)[0]
		*h = unsafe.String(unsafe.SliceData(b), len(b))
		return boxed(stringType, h), nil
	case kindBytes:
		h := &m.slices.take(1, headBlock)[0]
		*h = b
		return boxed(bytesType, h), nil
	}
	return decode(kind, b)
}

// eface is the layout of an interface{} value: its dynamic type, and a
// pointer to its value (for a type that is not pointer-shaped, as string
// and []byte are not).
type eface struct {
	typ, data unsafe.Pointer
}

// typeWord is the type word of an interface{} holding a T.
func typeWord[T any]() unsafe.Pointer {
	var v interface{} = *new(T)
	return (*eface)(unsafe.Pointer(&v)).typ
}

var (
	stringType = typeWord[string]()
	bytesType  = typeWord[[]byte]()
)

// boxed is the interface{} holding *h, made over h itself instead of a
// copy on the heap (which converting *h would allocate). typ must be T's
// type word, T not pointer-shaped, and *h never written again: a value
// in an interface is immutable.
func boxed[T any](typ unsafe.Pointer, h *T) (v interface{}) {
	e := (*eface)(unsafe.Pointer(&v))
	e.typ, e.data = typ, unsafe.Pointer(h)
	return v
}
