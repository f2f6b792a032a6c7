//! The accept thread and one reader thread per incoming connection.

use super::acks::AckSender;
use super::handshake;
use super::shared::Shared;
use crate::inbox::Burst;
use crate::stats::Gauge;
use crate::sync::PushError;
use crate::wire::{
    record_error, FrameError, FrameReader, Next, Opener, RecordError, RecordReader, Sealer,
    RECORD_MAX,
};
use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections in their handshake at most: a newcomer beyond it cuts the
/// oldest of them. A real peer's handshake takes microseconds and a silent
/// socket's never ends, so silent sockets cannot keep real peers out.
const MAX_PENDING: usize = 64;
/// How long a peer may pause in the middle of a frame before it is cut.
const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reader waits for inbox room under its peer's gate before it
/// checks again that its connection is still the peer's current one.
const PUSH_SLICE: Duration = Duration::from_millis(50);
/// Read buffer of an incoming connection. Once a read of small frames fills
/// it, the peer streams them, and the buffer grows to
/// `STREAM_READ_BUFFER`: fewer, larger reads (batched 64 B +15–30 % in
/// alternated runs). It shrinks back when the connection is quiet
/// (`STALL_TIMEOUT`), so the many connections that carry little keep a
/// small buffer (256 KiB for every connection made a node of 64 peers hold
/// 19 MiB instead of 7); large frames do not grow it (a 64 KiB payload
/// read through a larger buffer is copied once more).
const READ_BUFFER: usize = 64 << 10;
/// The read buffer of a connection whose peer streams.
const STREAM_READ_BUFFER: usize = 256 << 10;
/// The frame reader's buffer over sealed records, which are buffered
/// already: small, so a large payload is copied from the opened record
/// straight into its own buffer, not through this one.
const SEALED_READ_BUFFER: usize = 8 << 10;
/// Frames decoded before they are pushed into the inbox in one go.
const BURST: usize = 512;
/// Bytes of frames in wire form after which a burst is pushed even if it
/// has fewer frames: a receiver that keeps one of them keeps its burst's
/// buffer alive, so a burst stays small.
const BURST_BYTES: usize = 32 << 10;

/// A reader's part of the node's `read_buffer_bytes`: its buffer's size,
/// kept up to date, given back when the reader ends.
struct BufferBytes<'a> {
    gauge: &'a Gauge,
    size: usize,
}

impl<'a> BufferBytes<'a> {
    fn new(gauge: &'a Gauge, size: usize) -> Self {
        gauge.add(size as u64);
        BufferBytes { gauge, size }
    }

    /// The buffer is `size` bytes now.
    fn set(&mut self, size: usize) {
        if size != self.size {
            // Added first: a reader of the gauge never sees it wrap.
            self.gauge.add(size as u64);
            self.gauge.sub(self.size as u64);
            self.size = size;
        }
    }
}

impl Drop for BufferBytes<'_> {
    fn drop(&mut self) {
        self.gauge.sub(self.size as u64);
    }
}

pub(crate) struct Acceptor {
    pub shared: Arc<Shared>,
    pub listener: Arc<TcpListener>,
    pub readers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// What the readers share: the pending handshakes and the current
/// connection of each peer.
#[derive(Default)]
struct Registry {
    pending: Mutex<Pending>,
    /// Each peer's current connection: its socket token and its turn.
    by_peer: Mutex<HashMap<i64, (u64, Turn)>>,
}

/// A connection's right to push into the inbox. A peer's connections share
/// one gate; each push happens under it, after a check of the connection's
/// own flag, which a newer connection of the peer sets before its first
/// push. So once the new connection has pushed anything, the old one
/// cannot push again: what it still holds was counted lost by the peer's
/// writer, and delivering it would break FIFO.
#[derive(Clone)]
struct Turn {
    gate: Arc<Mutex<()>>,
    superseded: Arc<AtomicBool>,
}

/// Connections in their handshake, by ticket: the oldest has the lowest.
#[derive(Default)]
struct Pending {
    next: u64,
    socks: BTreeMap<u64, Arc<TcpStream>>,
}

impl Registry {
    /// Registers a connection that starts its handshake, cutting the oldest
    /// pending one if the cap is reached; its ticket, or `None` if the
    /// socket cannot be kept.
    fn admit(&self, s: &Arc<TcpStream>) -> Option<u64> {
        let clone = s.clone();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.socks.len() >= MAX_PENDING {
            // Its reader fails the handshake and counts it as rejected.
            if let Some((_, oldest)) = p.socks.pop_first() {
                let _ = oldest.shutdown(std::net::Shutdown::Both);
            }
        }
        let ticket = p.next;
        p.next += 1;
        p.socks.insert(ticket, clone);
        Some(ticket)
    }

    /// Ends the handshake of `ticket`: false if a newer connection cut it.
    fn settle(&self, ticket: u64) -> bool {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.socks.remove(&ticket).is_some()
    }
}

impl Acceptor {
    pub fn run(self) {
        let registry = Arc::new(Registry::default());
        loop {
            let accepted = self.listener.accept();
            if self.shared.shutdown.is_fired() {
                return;
            }
            let stream = match accepted {
                Ok((s, _)) => Arc::new(s),
                Err(_) => {
                    // Out of descriptors or a transient error: back off a
                    // little instead of spinning.
                    if self.shared.shutdown.sleep(Duration::from_millis(10)) {
                        return;
                    }
                    continue;
                }
            };
            let Some(ticket) = registry.admit(&stream) else {
                self.shared.stats.rejected.inc();
                continue;
            };
            let reader = Reader {
                shared: self.shared.clone(),
                registry: registry.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("cluster-r{}", self.shared.id))
                .spawn(move || reader.serve(stream, ticket));
            let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            // Readers that are done are joined here, not left detached.
            let (done, live): (Vec<_>, Vec<_>) = readers.drain(..).partition(|h| h.is_finished());
            *readers = live;
            match spawned {
                Ok(h) => readers.push(h),
                Err(_) => {
                    registry.settle(ticket);
                    self.shared.stats.rejected.inc();
                }
            }
            drop(readers);
            for h in done {
                let _ = h.join();
            }
        }
    }
}

struct Reader {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
}

impl Reader {
    fn serve(self, stream: Arc<TcpStream>, ticket: u64) {
        super::sockets::tune(&stream, self.shared.config.peer_timeout);
        let Some(token) = self.shared.sockets.add(&stream, true) else {
            self.registry.settle(ticket);
            return;
        };
        let answer = handshake::answer(&stream, &self.shared.config, self.shared.id);
        // A handshake cut for a newer connection is refused, however far
        // it got (and is no proof of a wrong secret).
        let answer = match self.registry.settle(ticket) {
            true => answer,
            false => Err(handshake::Refusal::Protocol),
        };
        if let Ok((from, keys)) = answer {
            self.shared.stats.accepted.inc();
            // A peer has one connection to us; a new one means the old is
            // dead, and its writer has counted what the old one had not
            // acknowledged as lost: the old reader must deliver no more.
            let turn = {
                let mut by_peer = self
                    .registry
                    .by_peer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let gate = by_peer.get(&from).map(|(_, t)| t.gate.clone());
                let turn = Turn {
                    gate: gate.unwrap_or_default(),
                    superseded: Arc::default(),
                };
                if let Some((old, t)) = by_peer.insert(from, (token, turn.clone())) {
                    t.superseded.store(true, Ordering::Release);
                    self.shared.sockets.cut(old);
                }
                turn
            };
            self.read_frames(&stream, from, keys, &turn);
            let mut by_peer = self
                .registry
                .by_peer
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if by_peer.get(&from).is_some_and(|(t, _)| *t == token) {
                by_peer.remove(&from);
            }
        } else {
            self.shared.stats.rejected.inc();
            if matches!(answer, Err(handshake::Refusal::Auth)) {
                self.shared.stats.auth_failed.inc();
            }
        }
        self.shared.sockets.remove(token);
    }

    /// Moves frames into the inbox until the connection ends or misbehaves;
    /// with `keys`, frames come in sealed records and acks go out sealed.
    fn read_frames(
        &self,
        stream: &TcpStream,
        from: i64,
        keys: Option<handshake::Keys>,
        turn: &Turn,
    ) {
        let (source, mut acks) = match keys {
            Some(k) => (
                Source::Sealed(Box::new(RecordReader::new(
                    Conn::new(stream),
                    Opener::new(&k.frames, RECORD_MAX),
                ))),
                AckSender::new(Some(Sealer::new(&k.acks))),
            ),
            None => (Source::Plain(Conn::new(stream)), AckSender::new(None)),
        };
        self.read_frames_acked(stream, source, from, &mut acks, turn);
        // Whatever ended the stream, the writer learns all we took in.
        acks.flush(stream);
    }

    fn read_frames_acked(
        &self,
        stream: &TcpStream,
        source: Source,
        from: i64,
        acks: &mut AckSender,
        turn: &Turn,
    ) {
        let s = &self.shared;
        let buffer = match source {
            Source::Plain(_) => READ_BUFFER,
            Source::Sealed(_) => SEALED_READ_BUFFER,
        };
        let mut frames = FrameReader::new(source, s.config.max_message_size, buffer);
        let mut held = BufferBytes::new(&s.stats.read_buffer_bytes, frames.capacity());
        // A peer that stops in the middle of a frame is cut after this long;
        // between frames a connection may stay idle for ever.
        if stream.set_read_timeout(Some(STALL_TIMEOUT)).is_err() {
            return;
        }
        let mut got = Burst::new(from);
        // The last frame was small: a stream of them grows the buffer.
        let mut small = false;
        loop {
            // About to wait for more bytes: deliver what was decoded and tell
            // the writer what arrived.
            if frames.buffered() == 0 && !frames.get_ref().has_ready() {
                if !self.deliver(&mut got, stream, acks, turn) {
                    return;
                }
                acks.flush(stream);
                if buffer == READ_BUFFER && small && frames.filled() {
                    frames = frames.rebuffered(STREAM_READ_BUFFER);
                    held.set(frames.capacity());
                }
            }
            // Frames are appended in wire form only while no cut is set; a
            // frame that needed a read is judged once it is in.
            let next = match s.faults.cuts_in(from) {
                false => {
                    let room = BURST.saturating_sub(got.len());
                    let bytes = BURST_BYTES.saturating_sub(got.held_bytes());
                    frames.next_run_into(got.frames(), room, bytes)
                }
                true => frames
                    .next_frame(from)
                    .map(|e| e.map_or(Next::End, Next::Envelope)),
            };
            small = matches!(next, Ok(Next::Appended));
            match next {
                Ok(Next::Appended) => {}
                Ok(Next::Envelope(_)) if s.faults.cuts_in(from) => {
                    // Taken in and thrown away here: acknowledged and counted.
                    acks.delivered(1);
                    s.stats.dropped.fault.inc();
                }
                Ok(Next::Envelope(env)) => got.push(env),
                Err(FrameError::Idle) => {
                    // Quiet between frames: wait for the next one without a
                    // timeout (no wake-ups while idle), with a small buffer.
                    if buffer == READ_BUFFER {
                        frames = frames.rebuffered(READ_BUFFER);
                        held.set(frames.capacity());
                    }
                    if frames.get_ref().conn().rest().is_err() {
                        return;
                    }
                }
                end => {
                    // The frames before the end are good: deliver them.
                    self.deliver(&mut got, stream, acks, turn);
                    match end {
                        Err(FrameError::Io(e)) => match record_error(&e) {
                            // Forged, altered, replayed, reordered or dropped.
                            Some(RecordError::Forged) => s.stats.auth_failed.inc(),
                            Some(_) => s.stats.bad_frames.inc(),
                            None if matches!(
                                e.kind(),
                                ErrorKind::WouldBlock | ErrorKind::TimedOut
                            ) =>
                            {
                                s.stats.bad_frames.inc()
                            }
                            None => {}
                        },
                        Err(FrameError::Wire(_)) => s.stats.bad_frames.inc(),
                        _ => {}
                    }
                    return;
                }
            }
            let full = got.len() >= BURST || got.held_bytes() >= BURST_BYTES;
            if full && !self.deliver(&mut got, stream, acks, turn) {
                return;
            }
        }
    }

    /// Moves `got` into the inbox, waiting for room as long as this is
    /// still the peer's current connection; false if the node closes or a
    /// newer connection replaced this one.
    fn deliver(
        &self,
        got: &mut Burst,
        stream: &TcpStream,
        acks: &mut AckSender,
        turn: &Turn,
    ) -> bool {
        let s = &self.shared;
        let mut wait = Duration::ZERO;
        while !got.is_empty() {
            // The gate is held for one push: at most a slice of waiting for
            // room, and only the peer's newer connection waits for it.
            let pushed = {
                let _gate = turn.gate.lock().unwrap_or_else(|e| e.into_inner());
                if turn.superseded.load(Ordering::Acquire) {
                    return false;
                }
                s.inbox.push_many(0, got, Some(wait), &s.shutdown)
            };
            match pushed {
                Ok((0, _)) => {
                    // About to wait for room in the inbox: acknowledge first.
                    acks.flush(stream);
                    wait = PUSH_SLICE;
                }
                Ok((n, _)) => {
                    acks.delivered(n as u64);
                }
                Err(PushError::Full) | Err(PushError::Closed) => return false,
            }
        }
        true
    }
}

/// What an incoming connection's frames are read from: the socket itself,
/// or, with a secret, the verified plaintext of its records.
enum Source<'a> {
    Plain(Conn<'a>),
    Sealed(Box<RecordReader<Conn<'a>>>),
}

impl<'a> Source<'a> {
    /// Whether bytes are ready without a read from the socket.
    fn has_ready(&self) -> bool {
        match self {
            Source::Plain(_) => false,
            Source::Sealed(r) => r.has_ready(),
        }
    }

    /// The socket underneath.
    fn conn(&self) -> &Conn<'a> {
        match self {
            Source::Plain(c) => c,
            Source::Sealed(r) => r.get_ref(),
        }
    }
}

impl Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Source::Plain(s) => s.read(buf),
            Source::Sealed(r) => r.read(buf),
        }
    }
}

/// An incoming connection's socket as its reader reads it. A read times out
/// after [`STALL_TIMEOUT`], which cuts a peer that stalls in the middle of
/// a frame; once a timeout found the connection quiet between frames, it
/// rests: reads wait without a timeout until bytes come, and the first
/// bytes bring the timeout back.
struct Conn<'a> {
    stream: &'a TcpStream,
    resting: std::cell::Cell<bool>,
}

impl<'a> Conn<'a> {
    fn new(stream: &'a TcpStream) -> Conn<'a> {
        Conn {
            stream,
            resting: std::cell::Cell::new(false),
        }
    }

    /// The connection is quiet between frames: reads wait for ever.
    fn rest(&self) -> std::io::Result<()> {
        self.stream.set_read_timeout(None)?;
        self.resting.set(true);
        Ok(())
    }
}

impl Read for Conn<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stream.read(buf)?;
        if n > 0 && self.resting.get() {
            self.stream.set_read_timeout(Some(STALL_TIMEOUT))?;
            self.resting.set(false);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn a_resting_connection_waits_for_ever_until_bytes_come_then_times_out_again() {
        use std::io::Write;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(STALL_TIMEOUT)).unwrap();
        let mut conn = Conn::new(&s);
        conn.rest().unwrap();
        assert_eq!(s.read_timeout().unwrap(), None, "idle: no wake-ups");
        peer.write_all(b"half a frame").unwrap();
        let mut b = [0u8; 4];
        assert_eq!(conn.read(&mut b).unwrap(), 4);
        assert_eq!(
            s.read_timeout().unwrap(),
            Some(STALL_TIMEOUT),
            "a stall from here on is cut"
        );
    }

    #[test]
    fn pending_handshakes_stay_capped_and_the_oldest_are_cut() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let r = Registry::default();
        let mut clients = Vec::new();
        let mut tickets = Vec::new();
        for _ in 0..MAX_PENDING + 10 {
            clients.push(TcpStream::connect(addr).unwrap());
            let (s, _) = l.accept().unwrap();
            tickets.push(r.admit(&Arc::new(s)).unwrap());
            assert!(r.pending.lock().unwrap().socks.len() <= MAX_PENDING);
        }
        let mut b = [0u8; 1];
        for (i, c) in clients.iter_mut().enumerate() {
            // The ten oldest see their end; the others are left alone.
            if i < 10 {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                assert!(matches!(c.read(&mut b), Ok(0)), "connection {i}");
            } else {
                c.set_nonblocking(true).unwrap();
                let e = c.read(&mut b).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::WouldBlock, "connection {i}");
            }
        }
        assert!(!r.settle(tickets[0]), "the oldest was cut");
        assert!(r.settle(tickets[10]));
        assert!(!r.settle(tickets[10]), "settled once");
    }
}
