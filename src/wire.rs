//! The wire format, and the only code that knows its byte offsets: the
//! handshake (hello, welcome), the 16-byte frame header, the frame reader,
//! small frames kept in their wire form until they are taken, and, with a
//! shared secret, the encrypted records every byte after the handshake
//! travels in.
//!
//! Everything here is pure encoding and decoding over byte slices, so it can
//! be tested and fuzzed without sockets.

use crate::buffer::Buf;
use crate::envelope::{Envelope, Payload};
use std::sync::Arc;

/// The four bytes that open every connection.
pub const MAGIC: [u8; 4] = *b"CLST";
/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Size of the hello a connecting node sends.
pub const HELLO_LEN: usize = 24;
/// Size of the answer to a hello.
pub const WELCOME_LEN: usize = 16;
/// Size of a frame header.
pub const HEADER_LEN: usize = 16;

/// The first message on a connection: who is calling whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The connecting node's id.
    pub from: i64,
    /// The id the connecting node believes it is talking to.
    pub to: i64,
    /// Options of the caller, e.g. [`HELLO_AUTH`].
    pub flags: u16,
}

/// Hello flag: the caller knows a shared secret and a challenge follows
/// (its 16-byte nonce comes right after the hello).
pub const HELLO_AUTH: u16 = 1;
/// Size of a handshake nonce.
pub const NONCE_LEN: usize = 16;
/// Size of a handshake proof (an HMAC-SHA256).
pub const PROOF_LEN: usize = 32;

/// How the listening side answers a hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Verdict {
    /// Accepted: frames may follow.
    Accepted = 0,
    /// The caller's id is not in the listener's config.
    UnknownSender = 1,
    /// The caller addressed another id than the listener's own.
    WrongTarget = 2,
    /// The two sides disagree on the shared secret (or on having one).
    AuthFailed = 3,
    /// Prove you know the secret: a nonce and the listener's proof follow.
    Challenge = 4,
}

/// Why bytes from the wire were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The connection does not start with [`MAGIC`].
    BadMagic,
    /// The peer speaks a protocol version this build does not.
    BadVersion(u16),
    /// The answer to a hello carries an unknown verdict.
    BadVerdict(u16),
    /// A frame announces a payload larger than the limit.
    TooLarge(u64),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::BadMagic => write!(f, "bad protocol magic"),
            WireError::BadVersion(v) => write!(f, "unsupported protocol version {v}"),
            WireError::BadVerdict(v) => write!(f, "unknown handshake verdict {v}"),
            WireError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the limit"),
        }
    }
}

fn check_magic(b: &[u8]) -> Result<(), WireError> {
    if b[0..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    if version != VERSION {
        return Err(WireError::BadVersion(version));
    }
    Ok(())
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

impl Hello {
    /// The hello's wire form.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.from.to_le_bytes());
        b[16..24].copy_from_slice(&self.to.to_le_bytes());
        b
    }

    /// Parses a hello.
    pub fn decode(b: &[u8; HELLO_LEN]) -> Result<Hello, WireError> {
        check_magic(b)?;
        Ok(Hello {
            from: i64_at(b, 8),
            to: i64_at(b, 16),
            flags: u16::from_le_bytes([b[6], b[7]]),
        })
    }
}

/// The listener's answer: its verdict and its own id.
pub fn encode_welcome(verdict: Verdict, own_id: i64) -> [u8; WELCOME_LEN] {
    let mut b = [0u8; WELCOME_LEN];
    b[0..4].copy_from_slice(&MAGIC);
    b[4..6].copy_from_slice(&VERSION.to_le_bytes());
    b[6..8].copy_from_slice(&(verdict as u16).to_le_bytes());
    b[8..16].copy_from_slice(&own_id.to_le_bytes());
    b
}

/// Parses the listener's answer into its verdict and id.
pub fn decode_welcome(b: &[u8; WELCOME_LEN]) -> Result<(Verdict, i64), WireError> {
    check_magic(b)?;
    let verdict = match u16::from_le_bytes([b[6], b[7]]) {
        0 => Verdict::Accepted,
        1 => Verdict::UnknownSender,
        2 => Verdict::WrongTarget,
        3 => Verdict::AuthFailed,
        4 => Verdict::Challenge,
        v => return Err(WireError::BadVerdict(v)),
    };
    Ok((verdict, i64_at(b, 8)))
}

/// A frame header: the payload's length, kind and message id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Payload length in bytes.
    pub len: u32,
    /// The envelope's kind tag.
    pub kind: u32,
    /// The envelope's message id.
    pub msg_id: i64,
}

impl Header {
    /// The header of `env`'s frame.
    pub fn encode(env: &Envelope) -> [u8; HEADER_LEN] {
        Header {
            len: env.data.len() as u32,
            kind: env.kind,
            msg_id: env.msg_id,
        }
        .to_bytes()
    }

    /// The header's wire form.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..8].copy_from_slice(&self.kind.to_le_bytes());
        b[8..16].copy_from_slice(&self.msg_id.to_le_bytes());
        b
    }

    /// Parses a header, refusing payloads above `max_len`.
    pub fn decode(b: &[u8; HEADER_LEN], max_len: usize) -> Result<Header, WireError> {
        let header = Header::parse(b);
        if header.len as u64 > max_len as u64 {
            return Err(WireError::TooLarge(header.len as u64));
        }
        Ok(header)
    }

    /// Reads a header's fields, unchecked.
    fn parse(b: &[u8]) -> Header {
        Header {
            len: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            kind: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            msg_id: i64_at(b, 8),
        }
    }
}

/// Why a [`FrameReader`] stopped.
#[derive(Debug)]
pub enum FrameError {
    /// The stream failed or ended in the middle of a frame (a read timeout
    /// mid-frame lands here too: the peer stalled).
    Io(std::io::Error),
    /// A read timeout between two frames: the connection is idle, not broken.
    Idle,
    /// The bytes are not a valid frame; the connection should be dropped.
    Wire(WireError),
}

/// Splits a byte stream into envelopes: a 16-byte [`Header`] then the
/// payload. Never allocates more than the limit for one payload.
pub struct FrameReader<R> {
    inner: std::io::BufReader<R>,
    max_len: usize,
    /// A read filled the whole buffer.
    filled: bool,
}

impl<R: std::io::Read> FrameReader<R> {
    /// Reads frames of at most `max_len` payload bytes from `inner`, through
    /// a buffer of `buffer` bytes.
    pub fn new(inner: R, max_len: usize, buffer: usize) -> FrameReader<R> {
        FrameReader {
            inner: std::io::BufReader::with_capacity(buffer, inner),
            max_len,
            filled: false,
        }
    }

    /// Whether a read filled the whole buffer (the peer sends faster than
    /// it is read) since the buffer was made.
    pub fn filled(&self) -> bool {
        self.filled
    }

    /// This reader with a new buffer of `buffer` bytes, if its buffer is
    /// empty and of another size; else as it is.
    pub fn rebuffered(self, buffer: usize) -> FrameReader<R> {
        if self.inner.capacity() == buffer || !self.inner.buffer().is_empty() {
            return self;
        }
        // Nothing buffered is lost: the buffer is empty.
        FrameReader::new(self.inner.into_inner(), self.max_len, buffer)
    }

    /// The size of the read buffer.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// Bytes read from the stream but not yet decoded; 0 means the next
    /// frame needs a read from the stream.
    pub fn buffered(&self) -> usize {
        self.inner.buffer().len()
    }

    /// The stream frames are read from.
    pub fn get_ref(&self) -> &R {
        self.inner.get_ref()
    }

    /// The next envelope, its `pid` set to `from`; `Ok(None)` at a clean end
    /// of stream (between frames).
    pub fn next_frame(&mut self, from: i64) -> Result<Option<Envelope>, FrameError> {
        use std::io::{BufRead, Read};
        let mut h = [0u8; HEADER_LEN];
        if self.inner.buffer().len() >= HEADER_LEN {
            // The common case: the whole header is buffered already.
            h.copy_from_slice(&self.inner.buffer()[..HEADER_LEN]);
            self.inner.consume(HEADER_LEN);
        } else {
            let mut got = 0;
            while got < HEADER_LEN {
                match self.inner.read(&mut h[got..]) {
                    Ok(0) if got == 0 => return Ok(None),
                    Ok(0) => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e)
                        if got == 0
                            && matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                    {
                        return Err(FrameError::Idle)
                    }
                    Err(e) => return Err(FrameError::Io(e)),
                }
            }
            // The read that refilled the buffer filled it (what is left of
            // it after the header is within a header of its capacity).
            self.filled |= self.inner.buffer().len() + HEADER_LEN >= self.inner.capacity();
        }
        let header = Header::decode(&h, self.max_len).map_err(FrameError::Wire)?;
        let len = header.len as usize;
        let data: Payload = if self.inner.buffer().len() >= len {
            // Copied straight out of the buffer: inline when small, else one
            // allocation, no zeroing.
            let data = Payload::copy_from(&self.inner.buffer()[..len]);
            self.inner.consume(len);
            data
        } else {
            // Read into a buffer of its own, which a large payload may find
            // kept from an earlier one (see `buffer`).
            let data =
                Buf::filled(len, |buf| self.inner.read_exact(buf)).map_err(FrameError::Io)?;
            Arc::new(data).into()
        };
        Ok(Some(Envelope {
            pid: from,
            msg_id: header.msg_id,
            kind: header.kind,
            data,
        }))
    }
}

/// What [`FrameReader::next_into`] did with the next frame.
#[derive(Debug)]
pub enum Next {
    /// A small frame, wholly buffered, was appended to the [`FrameBuf`].
    Appended,
    /// The next frame, decoded (a large one, or one not wholly buffered).
    Envelope(Envelope),
    /// A clean end of stream (between frames).
    End,
}

impl<R: std::io::Read> FrameReader<R> {
    /// Like [`FrameReader::next_frame`], but a small frame whose bytes are
    /// all buffered is copied into `small` in its wire form instead: the
    /// reading thread only checks and copies, and the thread that takes it
    /// from the inbox decodes it.
    pub fn next_into(&mut self, small: &mut FrameBuf) -> Result<Next, FrameError> {
        self.next_run_into(small, 1, usize::MAX)
    }

    /// [`FrameReader::next_into`] for every small frame whole in the
    /// buffer: at least one, at most `max_frames`, and past the first no
    /// more than `max_bytes` wire bytes in all, copied into `small` at once
    /// (one copy a run, not one a frame). A bad header after good frames
    /// ends the run; the next call reports it.
    pub fn next_run_into(
        &mut self,
        small: &mut FrameBuf,
        max_frames: usize,
        max_bytes: usize,
    ) -> Result<Next, FrameError> {
        use std::io::BufRead;
        let buf = self.inner.buffer();
        let (mut end, mut count, mut payload) = (0, 0, 0);
        while count < max_frames.max(1) {
            let header = buf
                .get(end..end + HEADER_LEN)
                .and_then(|h| Header::decode(h.try_into().ok()?, self.max_len).ok());
            let Some(header) = header else {
                break;
            };
            let next = end + HEADER_LEN + header.len as usize;
            if header.len as usize > LENT_MAX || next > buf.len() || (count > 0 && next > max_bytes)
            {
                break;
            }
            (end, count, payload) = (next, count + 1, payload + header.len as u64);
        }
        if count == 0 {
            return Ok(match self.next_frame(small.from)? {
                Some(env) => Next::Envelope(env),
                None => Next::End,
            });
        }
        small.push_run(&buf[..end], count, payload);
        self.inner.consume(end);
        Ok(Next::Appended)
    }
}

/// Frames of at most this many payload bytes that a reader finds whole in
/// its buffer stay in their wire form, in one buffer per burst, and are
/// lent to the receiving call from there: no allocation per message.
const LENT_MAX: usize = 2 << 10;

/// Small frames from one peer being collected by a reader, in their wire
/// form; [`FrameBuf::take`] turns them into [`Frames`].
#[derive(Debug, Default)]
pub struct FrameBuf {
    from: i64,
    bytes: Vec<u8>,
    count: usize,
    payload: u64,
}

impl FrameBuf {
    /// An empty buffer for frames from peer `from`, with room for `bytes`.
    pub fn with_capacity(from: i64, bytes: usize) -> FrameBuf {
        FrameBuf {
            from,
            bytes: Vec::with_capacity(bytes),
            ..FrameBuf::default()
        }
    }

    /// Frames collected.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no frame is collected.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the frames collected (headers and payloads).
    pub fn wire_len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends `count` frames' wire bytes, checked already, of `payload`
    /// payload bytes in all.
    fn push_run(&mut self, wire: &[u8], count: usize, payload: u64) {
        self.bytes.extend_from_slice(wire);
        self.count += count;
        self.payload += payload;
    }

    /// Appends one message as a frame (its header, then its payload), as a
    /// sender in the same process hands small messages on without a stream.
    pub fn push_msg(&mut self, msg_id: i64, kind: u32, data: &[u8]) {
        let len = data.len() as u32;
        self.bytes
            .extend_from_slice(&Header { len, kind, msg_id }.to_bytes());
        self.push_run(data, 1, len as u64);
    }

    /// Takes every frame collected, as an exactly sized copy; the buffer
    /// stays for the frames to come.
    pub fn take(&mut self) -> Frames {
        let frames = Frames {
            from: self.from,
            bytes: Arc::new(Buf::copy_from(&self.bytes)),
            at: 0,
            count: self.count,
            payload: self.payload,
        };
        self.bytes.clear();
        self.count = 0;
        self.payload = 0;
        frames
    }
}

/// Small frames from one peer in their wire form, in a buffer that parts
/// split from them share: decoded one by one as they are taken (an iterator
/// of envelopes), or lent where they lie ([`Frames::next_lent`]).
#[derive(Clone, Debug)]
pub struct Frames {
    from: i64,
    bytes: Arc<Buf>,
    /// Where the next frame starts in `bytes`.
    at: usize,
    /// Frames left.
    count: usize,
    /// Payload bytes left.
    payload: u64,
}

/// One frame lent out of [`Frames`]: its envelope fields, and where its
/// payload lies in the shared buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameRef {
    /// The sender's id.
    pub pid: i64,
    /// The envelope's message id.
    pub msg_id: i64,
    /// The envelope's kind tag.
    pub kind: u32,
    /// The payload's bytes in [`Frames::buffer`].
    pub payload: std::ops::Range<usize>,
}

impl Frames {
    /// The peer the frames come from.
    pub fn from(&self) -> i64 {
        self.from
    }

    /// Frames left.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no frame is left.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Payload bytes left.
    pub fn payload_bytes(&self) -> u64 {
        self.payload
    }

    /// Bytes of the buffer these frames keep alive.
    pub fn buffer_len(&self) -> usize {
        self.bytes.len()
    }

    /// The buffer every [`FrameRef::payload`] points into.
    pub fn buffer(&self) -> &Arc<Buf> {
        &self.bytes
    }

    /// Splits off the first `n` frames (at most all); both parts share the
    /// buffer, nothing is copied.
    pub fn take_front(&mut self, n: usize) -> Frames {
        let n = n.min(self.count);
        let mut end = self.at;
        for _ in 0..n {
            end = frame_at(&self.bytes, end).1.end;
        }
        let payload = (end - self.at - n * HEADER_LEN) as u64;
        let front = Frames {
            count: n,
            payload,
            ..self.clone()
        };
        self.at = end;
        self.count -= n;
        self.payload -= payload;
        front
    }

    /// The next frame, lent: its fields and where its payload lies in
    /// [`Frames::buffer`].
    pub fn next_lent(&mut self) -> Option<FrameRef> {
        if self.count == 0 {
            return None;
        }
        let (header, payload) = frame_at(&self.bytes, self.at);
        self.at = payload.end;
        self.count -= 1;
        self.payload -= header.len as u64;
        Some(FrameRef {
            pid: self.from,
            msg_id: header.msg_id,
            kind: header.kind,
            payload,
        })
    }
}

/// The header of the checked frame that starts at `at` in `wire`, and where
/// its payload lies.
fn frame_at(wire: &[u8], at: usize) -> (Header, std::ops::Range<usize>) {
    let header = Header::parse(&wire[at..at + HEADER_LEN]);
    let start = at + HEADER_LEN;
    (header, start..start + header.len as usize)
}

impl Iterator for Frames {
    type Item = Envelope;

    fn next(&mut self) -> Option<Envelope> {
        let f = self.next_lent()?;
        Some(Envelope {
            pid: f.pid,
            msg_id: f.msg_id,
            kind: f.kind,
            data: Payload::copy_from(&self.bytes[f.payload]),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.count, Some(self.count))
    }
}

// ------------------------------------------------------------- records --
//
// With a shared secret, each direction of a connection after the handshake
// is a sequence of records: a 4-byte little-endian length `n`, then `n`
// bytes of AES-256-GCM ciphertext (ring's) whose last 16 bytes are the tag.
// The length is the associated data, the nonce is the record's number on
// its connection and direction (a counter, never sent, never repeated), so
// a record that is altered, injected, replayed, reordered or dropped fails
// to verify. Every [`REKEY_EVERY`] records both sides move to the next key
// (HKDF-Expand of the current one), keeping each key's use far inside
// AES-GCM's limits. Frames run through the records' plaintext as one stream
// (a record may hold many frames, or part of one); an acknowledgement is a
// record of exactly [`ACK_LEN`] bytes.

/// Size of a record's length prefix.
pub const RECORD_HEADER: usize = 4;
/// Size of a record's authentication tag.
pub const TAG_LEN: usize = 16;
/// The most plaintext a frame record carries.
pub const RECORD_MAX: usize = 64 << 10;
/// The plaintext of an acknowledgement: the cumulative count, a u64.
pub const ACK_LEN: usize = 8;
/// Size of a record key (one per connection and direction).
pub const KEY_LEN: usize = 32;
/// Records sealed under one key before both sides move to the next (2^24:
/// at most 1 TiB of 64 KiB records per key).
pub const REKEY_EVERY: u64 = 1 << 24;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// The nonce of record number `n`.
fn record_nonce(n: u64) -> Nonce {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(b)
}

/// One direction's key and the record number it is at; both ends of a
/// direction step through the same keys at the same records.
struct RecordKey {
    aead: LessSafeKey,
    key: [u8; KEY_LEN],
    /// The number of the current key: record `n` is sealed under key
    /// `n / rekey_every`.
    epoch: u64,
    next: u64,
    rekey_every: u64,
}

impl RecordKey {
    fn new(key: &[u8; KEY_LEN]) -> RecordKey {
        RecordKey {
            aead: LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is an AES-256 key"),
            ),
            key: *key,
            epoch: 0,
            next: 0,
            rekey_every: REKEY_EVERY,
        }
    }

    /// The nonce of the next record, moving to the next key first when its
    /// turn has come.
    fn nonce(&mut self) -> Nonce {
        while self.next / self.rekey_every > self.epoch {
            let hk = hkdf::Hkdf::<sha2::Sha256>::from_prk(&self.key)
                .expect("a 32-byte key is a valid SHA-256 PRK");
            let mut next = [0u8; KEY_LEN];
            hk.expand(b"cluster v1 next key", &mut next)
                .expect("32 bytes is a valid HKDF-SHA256 length");
            *self = RecordKey {
                epoch: self.epoch + 1,
                next: self.next,
                rekey_every: self.rekey_every,
                ..RecordKey::new(&next)
            };
        }
        record_nonce(self.next)
    }
}

/// Why a record stream was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A record failed to verify, or its length is impossible: forged,
    /// altered, replayed, reordered or dropped on the way.
    Forged,
    /// The stream ended inside a record.
    Truncated,
    /// The peer stalled inside a record for the read timeout.
    Stalled,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordError::Forged => "a record failed to verify",
            RecordError::Truncated => "the stream ended inside a record",
            RecordError::Stalled => "the peer stalled inside a record",
        })
    }
}

impl std::error::Error for RecordError {}

impl From<RecordError> for std::io::Error {
    fn from(e: RecordError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// The record error an I/O error carries, if it is one.
pub fn record_error(e: &std::io::Error) -> Option<RecordError> {
    e.get_ref()?.downcast_ref::<RecordError>().copied()
}

/// Seals plaintext into records under one direction's keys, numbering them.
pub struct Sealer {
    key: RecordKey,
}

impl Sealer {
    /// A sealer whose first record is number 0.
    pub fn new(key: &[u8; KEY_LEN]) -> Sealer {
        Sealer {
            key: RecordKey::new(key),
        }
    }

    /// Starts a record at the end of `out`: append its plaintext (at most
    /// [`RECORD_MAX`] bytes), then [`Sealer::finish`] it with what this
    /// returns.
    pub fn begin(&self, out: &mut Vec<u8>) -> usize {
        let at = out.len();
        out.extend_from_slice(&[0; RECORD_HEADER]);
        at
    }

    /// Encrypts in place the record [`Sealer::begin`] started at `at`,
    /// whose plaintext runs to the end of `out`, and appends its tag.
    pub fn finish(&mut self, out: &mut Vec<u8>, at: usize) {
        let plain = out.len() - at - RECORD_HEADER;
        assert!(
            plain <= RECORD_MAX,
            "a record holds at most RECORD_MAX bytes"
        );
        let len = (plain + TAG_LEN) as u32;
        let (head, body) = out[at..].split_at_mut(RECORD_HEADER);
        head.copy_from_slice(&len.to_le_bytes());
        let nonce = self.key.nonce();
        let tag = self
            .key
            .aead
            .seal_in_place_separate_tag(nonce, Aad::from(&*head), body)
            .expect("a record is far below the AEAD's limit");
        // 2^64 records cannot be written: the counter never wraps.
        self.key.next += 1;
        out.extend_from_slice(tag.as_ref());
    }

    /// Takes back the last record sealed, which must not have been sent
    /// (no byte of it left the process, so its nonce is still unseen): the
    /// next record gets its number.
    pub fn unseal_last(&mut self) {
        self.key.next -= 1;
    }

    /// Appends one record holding `plain`.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        let at = self.begin(out);
        out.extend_from_slice(plain);
        self.finish(out, at);
    }
}

/// Opens records sealed under one direction's keys, in order.
pub struct Opener {
    key: RecordKey,
    max: usize,
}

impl Opener {
    /// An opener expecting record 0 first, refusing records of more than
    /// `max` plaintext bytes.
    pub fn new(key: &[u8; KEY_LEN], max: usize) -> Opener {
        Opener {
            key: RecordKey::new(key),
            max,
        }
    }

    /// The size of the record `buf` starts with, once its length is in;
    /// refuses an impossible length at once.
    fn record_len(&self, buf: &[u8]) -> Result<Option<usize>, RecordError> {
        let Some(head) = buf.get(..RECORD_HEADER) else {
            return Ok(None);
        };
        let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if n < TAG_LEN || n - TAG_LEN > self.max {
            return Err(RecordError::Forged);
        }
        Ok(Some(RECORD_HEADER + n))
    }

    /// Whether `buf` starts with a whole record (or an impossible length).
    pub fn is_whole(&self, buf: &[u8]) -> bool {
        match self.record_len(buf) {
            Ok(Some(n)) => buf.len() >= n,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Opens, in place, the record `buf` starts with: `Ok(None)` while it
    /// is incomplete, else where its verified plaintext lies in `buf` and
    /// how many bytes of `buf` it took. Nothing of a record that fails to
    /// verify is returned.
    pub fn open(
        &mut self,
        buf: &mut [u8],
    ) -> Result<Option<(std::ops::Range<usize>, usize)>, RecordError> {
        let Some(n) = self.record_len(buf)? else {
            return Ok(None);
        };
        if buf.len() < n {
            return Ok(None);
        }
        let (head, rest) = buf.split_at_mut(RECORD_HEADER);
        let nonce = self.key.nonce();
        // Opens body and tag in place; the plaintext replaces the body.
        self.key
            .aead
            .open_in_place(nonce, Aad::from(&*head), &mut rest[..n - RECORD_HEADER])
            .map_err(|_| RecordError::Forged)?;
        self.key.next += 1;
        Ok(Some((RECORD_HEADER..n - TAG_LEN, n)))
    }
}

/// Room for two of the largest records: one read can take in a whole one
/// wherever the last ended.
const RECORD_BUFFER: usize = 2 * (RECORD_HEADER + RECORD_MAX + TAG_LEN);

/// Turns a stream of records back into the plaintext stream, verified: a
/// [`std::io::Read`] whose bytes all come from records that verified. The
/// first record that fails ends it for good (an `InvalidData` error that
/// [`record_error`] names).
pub struct RecordReader<R> {
    inner: R,
    opener: Opener,
    buf: Box<[u8]>,
    /// Received bytes not yet opened: `buf[start..end]`.
    start: usize,
    end: usize,
    /// Verified plaintext not yet read.
    plain: std::ops::Range<usize>,
    failed: Option<RecordError>,
}

impl<R: std::io::Read> RecordReader<R> {
    /// Reads records from `inner`, opened by `opener`.
    pub fn new(inner: R, opener: Opener) -> RecordReader<R> {
        RecordReader {
            inner,
            opener,
            buf: vec![0; RECORD_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            plain: 0..0,
            failed: None,
        }
    }

    /// The stream records are read from.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Whether a read would return without reading from the stream:
    /// plaintext or a whole record is buffered.
    pub fn has_ready(&self) -> bool {
        !self.plain.is_empty() || self.opener.is_whole(&self.buf[self.start..self.end])
    }

    fn fail(&mut self, e: RecordError) -> std::io::Error {
        self.failed = Some(e);
        e.into()
    }
}

impl<R: std::io::Read> std::io::Read for RecordReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use std::io::ErrorKind;
        loop {
            if !self.plain.is_empty() {
                let n = out.len().min(self.plain.len());
                out[..n].copy_from_slice(&self.buf[self.plain.start..self.plain.start + n]);
                self.plain.start += n;
                return Ok(n);
            }
            if let Some(e) = self.failed {
                return Err(e.into());
            }
            match self.opener.open(&mut self.buf[self.start..self.end]) {
                Err(e) => return Err(self.fail(e)),
                Ok(Some((plain, used))) => {
                    self.plain = self.start + plain.start..self.start + plain.end;
                    self.start += used;
                    continue;
                }
                Ok(None) => {}
            }
            // Room for the rest of the record: it fits once moved to the front.
            if self.start == self.end {
                (self.start, self.end) = (0, 0);
            } else if self.buf.len() - self.end < RECORD_BUFFER / 4 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) if self.start == self.end => return Ok(0),
                Ok(0) => return Err(self.fail(RecordError::Truncated)),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e)
                    if self.start != self.end
                        && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return Err(self.fail(RecordError::Stalled))
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip() {
        let h = Hello {
            from: 7,
            to: -3,
            flags: HELLO_AUTH,
        };
        assert_eq!(Hello::decode(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[0] = b'X';
        assert_eq!(Hello::decode(&bad), Err(WireError::BadMagic));
        let mut v2 = h.encode();
        v2[4] = 9;
        assert_eq!(Hello::decode(&v2), Err(WireError::BadVersion(9)));
    }

    #[test]
    fn welcome_round_trip() {
        let w = encode_welcome(Verdict::UnknownSender, 42);
        assert_eq!(decode_welcome(&w), Ok((Verdict::UnknownSender, 42)));
        let mut bad = w;
        bad[6] = 77;
        assert_eq!(decode_welcome(&bad), Err(WireError::BadVerdict(77)));
    }

    #[test]
    fn frame_reader_splits_a_stream_and_stops_on_garbage() {
        let mut wire = Vec::new();
        for (i, p) in [&b"one"[..], b"", b"three"].iter().enumerate() {
            let env = Envelope::new(0, i as i64, 1, p);
            wire.extend_from_slice(&Header::encode(&env));
            wire.extend_from_slice(p);
        }
        let mut r = FrameReader::new(&wire[..], 16, 64);
        let got: Vec<Envelope> = std::iter::from_fn(|| r.next_frame(9).unwrap()).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[2].pid, got[2].msg_id, &got[2].data[..]),
            (9, 2, &b"three"[..])
        );
        let mut half = FrameReader::new(&wire[..HEADER_LEN + 1], 16, 64);
        assert!(matches!(half.next_frame(9), Err(FrameError::Io(_))));
        let mut big = FrameReader::new(&wire[..], 2, 64);
        assert!(matches!(
            big.next_frame(9),
            Err(FrameError::Wire(WireError::TooLarge(3)))
        ));
    }

    #[test]
    fn a_reader_knows_when_a_read_filled_its_buffer_and_changes_buffers_only_when_empty() {
        let mut wire = Vec::new();
        for i in 0..10 {
            let env = Envelope::new(0, i, 1, b"0123456789abcdef");
            wire.extend_from_slice(&Header::encode(&env));
            wire.extend_from_slice(&env.data);
        }
        let mut small = FrameBuf::with_capacity(9, 0);
        // A buffer larger than everything: no read fills it.
        let mut r = FrameReader::new(&wire[..], 64, 4096);
        assert!(matches!(r.next_into(&mut small), Ok(Next::Envelope(_))));
        assert!(!r.filled());
        // Two frames a buffer: the first read fills it.
        let mut r = FrameReader::new(&wire[..], 64, 64);
        assert!(matches!(r.next_into(&mut small), Ok(Next::Envelope(_))));
        assert!(r.filled() && r.buffered() > 0);
        let mut r = r.rebuffered(4096);
        assert_eq!(
            r.buffered(),
            64 - HEADER_LEN - 16,
            "not while bytes are buffered"
        );
        assert!(matches!(r.next_into(&mut small), Ok(Next::Appended)));
        assert_eq!(r.buffered(), 0);
        let mut ids: Vec<i64> = small.take().map(|e| e.msg_id).collect();
        let mut r = r.rebuffered(4096);
        assert!(!r.filled(), "a new buffer");
        loop {
            match r.next_into(&mut small).unwrap() {
                Next::Envelope(e) => ids.push(e.msg_id),
                Next::Appended => ids.extend(small.take().map(|e| e.msg_id)),
                Next::End => break,
            }
        }
        assert_eq!(ids, (1..10).collect::<Vec<_>>(), "nothing lost or repeated");
    }

    #[test]
    fn small_buffered_frames_stay_in_wire_form_until_taken() {
        let sizes = [3usize, 0, LENT_MAX, LENT_MAX + 1, 7];
        let mut wire = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let env = Envelope::new(0, i as i64, 1, &vec![i as u8; n]);
            wire.extend_from_slice(&Header::encode(&env));
            wire.extend_from_slice(&env.data);
        }
        let mut r = FrameReader::new(&wire[..], 1 << 13, 1 << 13);
        let mut small = FrameBuf::with_capacity(9, 0);
        let mut big = Vec::new();
        loop {
            match r.next_into(&mut small).unwrap() {
                Next::Appended => {}
                Next::Envelope(e) => big.push(e),
                Next::End => break,
            }
        }
        // The first frame needs a read (nothing is buffered yet) and the
        // fourth is too large: both come decoded.
        let big: Vec<(i64, usize)> = big.iter().map(|e| (e.msg_id, e.data.len())).collect();
        assert_eq!(big, [(0, 3), (3, LENT_MAX + 1)]);
        assert_eq!(small.len(), 3);
        let mut small = small.take();
        assert_eq!(small.payload_bytes(), (LENT_MAX + 7) as u64);
        let front = small.take_front(2);
        assert_eq!((front.len(), small.len()), (2, 1));
        let got: Vec<(i64, i64, usize)> = front
            .chain(small)
            .map(|e| (e.pid, e.msg_id, e.data.len()))
            .collect();
        assert_eq!(got, [(9, 1, 0), (9, 2, LENT_MAX), (9, 4, 7)]);
    }

    #[test]
    fn a_run_of_buffered_frames_is_taken_within_its_bounds_up_to_a_bad_header() {
        let mut wire = Vec::new();
        for i in 0..9 {
            let env = Envelope::new(0, i, 1, &[i as u8; 5]);
            wire.extend_from_slice(&Header::encode(&env));
            wire.extend_from_slice(&env.data);
        }
        // A header announcing more than the limit of 64 bytes.
        wire.extend_from_slice(&Header::encode(&Envelope::new(0, 9, 1, &[0; 65])));
        let frame = HEADER_LEN + 5;
        let mut r = FrameReader::new(&wire[..], 64, 1 << 13);
        let mut small = FrameBuf::with_capacity(9, 0);
        // Nothing is buffered yet: the first frame needs a read.
        assert!(matches!(
            r.next_run_into(&mut small, 8, 1 << 10),
            Ok(Next::Envelope(e)) if e.msg_id == 0
        ));
        let mut run = |frames, bytes| match r.next_run_into(&mut small, frames, bytes) {
            Ok(Next::Appended) => Ok(small.len()),
            Ok(_) => panic!("a whole small frame is appended"),
            Err(e) => Err(e),
        };
        assert_eq!(run(2, 1 << 10).unwrap(), 2, "at most two frames");
        assert_eq!(run(8, 2 * frame - 1).unwrap(), 3, "one byte short of two");
        assert_eq!(run(8, 2 * frame).unwrap(), 5, "two frames, exactly");
        assert_eq!(run(0, 0).unwrap(), 6, "at least one frame");
        assert_eq!(run(8, 1 << 10).unwrap(), 8, "up to the bad header");
        assert!(matches!(
            run(8, 1 << 10),
            Err(FrameError::Wire(WireError::TooLarge(65)))
        ));
        let mut small = small.take();
        assert_eq!(small.payload_bytes(), 40);
        let got: Vec<(i64, Vec<u8>)> = std::iter::from_fn(|| small.next())
            .map(|e| (e.msg_id, e.data.to_vec()))
            .collect();
        let want: Vec<(i64, Vec<u8>)> = (1..9).map(|i| (i, vec![i as u8; 5])).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn header_round_trip_and_limit() {
        let env = Envelope::new(1, -5, 2, b"hello");
        let h = Header::decode(&Header::encode(&env), 5).unwrap();
        assert_eq!((h.len, h.kind, h.msg_id), (5, 2, -5));
        assert_eq!(
            Header::decode(&Header::encode(&env), 4),
            Err(WireError::TooLarge(5))
        );
        let huge = [0xffu8; HEADER_LEN];
        assert!(Header::decode(&huge, 1 << 20).is_err());
    }

    #[test]
    fn records_round_trip_and_refuse_any_change() {
        let key = [7u8; KEY_LEN];
        let mut sealer = Sealer::new(&key);
        let mut wire = Vec::new();
        let parts: [&[u8]; 3] = [b"first", b"", &[9u8; RECORD_MAX]];
        for p in parts {
            sealer.seal(p, &mut wire);
        }
        let read_all = |wire: &[u8]| {
            let mut r = RecordReader::new(wire, Opener::new(&key, RECORD_MAX));
            let mut got = Vec::new();
            let end = std::io::Read::read_to_end(&mut r, &mut got).map_err(|e| record_error(&e));
            (got, end)
        };
        let (got, end) = read_all(&wire);
        assert_eq!(got, parts.concat());
        assert!(end.is_ok());
        // Any flipped bit: nothing of that record comes out.
        for at in [0, 3, 4, 8, 4 + 5 + TAG_LEN - 1, wire.len() - 1] {
            let mut bad = wire.clone();
            bad[at] ^= 1;
            let (got, end) = read_all(&bad);
            assert!(got.len() <= 5 && b"first".starts_with(&got), "flip at {at}");
            assert_eq!(end, Err(Some(RecordError::Forged)), "flip at {at}");
        }
        // Replayed, reordered, cut short, or under another key.
        let first = RECORD_HEADER + 5 + TAG_LEN;
        let replayed = [&wire[..first], &wire[..first]].concat();
        assert_eq!(read_all(&replayed).1, Err(Some(RecordError::Forged)));
        let swapped = [&wire[first..], &wire[..first]].concat();
        assert_eq!(read_all(&swapped), (vec![], Err(Some(RecordError::Forged))));
        let (got, end) = read_all(&wire[..wire.len() - 1]);
        assert_eq!(
            (&got[..], end),
            (&b"first"[..], Err(Some(RecordError::Truncated)))
        );
        let mut r = RecordReader::new(&wire[..], Opener::new(&[8u8; KEY_LEN], RECORD_MAX));
        assert!(std::io::Read::read(&mut r, &mut [0u8; 16]).is_err());
        // A length beyond the opener's limit is refused before it is read.
        let mut acks = Opener::new(&key, ACK_LEN);
        let third = first + RECORD_HEADER + TAG_LEN;
        let mut big = wire[third..third + 4].to_vec();
        assert_eq!(acks.open(&mut big), Err(RecordError::Forged));
    }

    /// A sealer and an opener of `key` that move to the next key every
    /// `every` records.
    fn rekeying(key: &[u8; KEY_LEN], every: u64) -> (Sealer, Opener) {
        let (mut sealer, mut opener) = (Sealer::new(key), Opener::new(key, RECORD_MAX));
        sealer.key.rekey_every = every;
        opener.key.rekey_every = every;
        (sealer, opener)
    }

    /// The plaintexts of the records `opener` opens in `wire`, up to the
    /// first that fails (and whether one failed).
    fn open_all(opener: &mut Opener, mut wire: &mut [u8]) -> (Vec<Vec<u8>>, bool) {
        let mut got = Vec::new();
        while !wire.is_empty() {
            match opener.open(wire) {
                Ok(Some((plain, used))) => {
                    got.push(wire[plain].to_vec());
                    wire = &mut wire[used..];
                }
                _ => return (got, true),
            }
        }
        (got, false)
    }

    #[test]
    fn both_ends_move_to_the_next_key_at_the_same_record() {
        let key = [5u8; KEY_LEN];
        let (mut sealer, mut opener) = rekeying(&key, 3);
        let mut wire = Vec::new();
        for i in 0..10u8 {
            sealer.seal(&[i], &mut wire);
        }
        let all: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i]).collect();
        assert_eq!(
            open_all(&mut opener, &mut wire.clone()),
            (all.clone(), false)
        );
        // Records 3 and on are sealed under later keys: the first key alone
        // opens only the first three.
        let (_, mut first_key_only) = rekeying(&key, u64::MAX);
        assert_eq!(
            open_all(&mut first_key_only, &mut wire),
            (all[..3].to_vec(), true)
        );
    }

    #[test]
    fn a_record_taken_back_unsent_gives_its_number_to_the_next() {
        let (mut sealer, mut opener) = rekeying(&[6u8; KEY_LEN], 2);
        let mut wire = Vec::new();
        for i in 0..6u8 {
            // Records 2 and 4 open a new key: taking them back keeps it.
            let mut unsent = Vec::new();
            sealer.seal(b"never sent", &mut unsent);
            sealer.unseal_last();
            sealer.seal(&[i], &mut wire);
        }
        let all: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i]).collect();
        assert_eq!(open_all(&mut opener, &mut wire), (all, false));
    }
}
