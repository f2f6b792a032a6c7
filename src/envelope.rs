//! What a user sends and receives: the envelope, its payload, and a message
//! to send whose payload is still the caller's. Its wire form is in
//! [`crate::wire`].

use crate::buffer::Buf;
use std::sync::Arc;

/// Payloads up to this size travel inline, with no allocation of their own.
pub const INLINE: usize = 64;

/// A payload. Small ones are stored inline (no allocation on the sender and
/// no free on another thread, which is what small messages cost most);
/// larger ones are shared without copying between the queues of a broadcast.
#[derive(Clone)]
pub struct Payload(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<Buf>),
}

impl Payload {
    /// A copy of `data`: inline when it is small, shared otherwise.
    pub fn copy_from(data: &[u8]) -> Payload {
        if data.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..data.len()].copy_from_slice(data);
            Payload(Repr::Inline {
                len: data.len() as u8,
                bytes,
            })
        } else {
            Payload(Repr::Shared(Arc::new(Buf::copy_from(data))))
        }
    }

    /// The bytes as one shared buffer (small payloads are copied into
    /// one), e.g. to hand them to C.
    pub fn into_shared(self) -> Arc<Buf> {
        match self.0 {
            Repr::Inline { .. } => Arc::new(Buf::copy_from(&self)),
            Repr::Shared(a) => a,
        }
    }
}

impl From<Arc<Buf>> for Payload {
    fn from(a: Arc<Buf>) -> Payload {
        Payload(Repr::Shared(a))
    }
}

impl std::ops::Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Shared(a) => a,
        }
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// A message and its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// On send: the destination id or BROADCAST; on receive: the sender's id.
    pub pid: i64,
    /// Opaque to the library; for duplicate detection above it.
    pub msg_id: i64,
    /// Opaque tag saying how `data` is encoded (0 bytes, 1 UTF-8, 2 JSON, ...).
    pub kind: u32,
    /// The payload.
    pub data: Payload,
}

impl Envelope {
    /// Builds an envelope, copying the payload once.
    pub fn new(pid: i64, msg_id: i64, kind: u32, data: &[u8]) -> Envelope {
        Envelope {
            pid,
            msg_id,
            kind,
            data: Payload::copy_from(data),
        }
    }
}

/// A message to send whose payload is still the caller's: it is copied
/// once, into wherever the transport keeps it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outgoing<'a> {
    /// The destination id, BROADCAST or one's own id.
    pub to: i64,
    /// Opaque to the library.
    pub msg_id: i64,
    /// How `data` is encoded.
    pub kind: u32,
    /// The payload.
    pub data: &'a [u8],
}

impl Outgoing<'_> {
    /// The message as an envelope (the payload copied).
    pub fn to_envelope(&self) -> Envelope {
        Envelope::new(self.to, self.msg_id, self.kind, self.data)
    }
}
