//! The accept thread and one reader thread per incoming connection.

use super::acks::AckSender;
use super::{handshake, Shared};
use crate::envelope::{FrameError, FrameReader};
use crate::inbox::push;
use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections still in their handshake beyond this number are refused.
const MAX_PENDING: usize = 64;
/// Read buffer of an incoming connection.
const READ_BUFFER: usize = 64 << 10;

pub(crate) struct Acceptor {
    pub shared: Arc<Shared>,
    pub listener: Arc<TcpListener>,
    pub readers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// What the readers share: the count of pending handshakes and the current
/// connection of each peer.
#[derive(Default)]
struct Registry {
    pending: AtomicUsize,
    by_peer: Mutex<HashMap<i64, u64>>,
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
                Ok((s, _)) => s,
                Err(_) => {
                    // Out of descriptors or a transient error: back off a
                    // little instead of spinning.
                    if self.shared.shutdown.sleep(Duration::from_millis(10)) {
                        return;
                    }
                    continue;
                }
            };
            if registry.pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING {
                registry.pending.fetch_sub(1, Ordering::AcqRel);
                self.shared.stats.rejected.inc();
                continue;
            }
            let reader = Reader {
                shared: self.shared.clone(),
                registry: registry.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("cluster-r{}", self.shared.id))
                .spawn(move || reader.serve(stream));
            let mut readers = self.readers.lock().unwrap_or_else(|e| e.into_inner());
            readers.retain(|h| !h.is_finished());
            match spawned {
                Ok(h) => readers.push(h),
                Err(_) => {
                    registry.pending.fetch_sub(1, Ordering::AcqRel);
                    self.shared.stats.rejected.inc();
                }
            }
        }
    }
}

struct Reader {
    shared: Arc<Shared>,
    registry: Arc<Registry>,
}

impl Reader {
    fn serve(self, stream: TcpStream) {
        super::sockets::tune(&stream);
        let Some(token) = self.shared.sockets.add(&stream, true) else {
            self.registry.pending.fetch_sub(1, Ordering::AcqRel);
            return;
        };
        let answer = handshake::answer(&stream, &self.shared.config, self.shared.id);
        self.registry.pending.fetch_sub(1, Ordering::AcqRel);
        if let Ok(from) = answer {
            self.shared.stats.accepted.inc();
            // A peer has one connection to us; a new one means the old is dead.
            let old = self
                .registry
                .by_peer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(from, token);
            if let Some(old) = old {
                self.shared.sockets.cut(old);
            }
            self.read_frames(&stream, from);
            let mut by_peer = self
                .registry
                .by_peer
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if by_peer.get(&from) == Some(&token) {
                by_peer.remove(&from);
            }
        } else {
            self.shared.stats.rejected.inc();
            if answer == Err(handshake::Refusal::Auth) {
                self.shared.stats.auth_failed.inc();
            }
        }
        self.shared.sockets.remove(token);
    }

    /// Moves frames into the inbox until the connection ends or misbehaves.
    fn read_frames(&self, stream: &TcpStream, from: i64) {
        let mut acks = AckSender::default();
        self.read_frames_acked(stream, from, &mut acks);
        // Whatever ended the stream, the writer learns all we took in.
        acks.flush(stream);
    }

    fn read_frames_acked(&self, stream: &TcpStream, from: i64, acks: &mut AckSender) {
        let s = &self.shared;
        let mut frames = FrameReader::new(stream, s.config.max_message_size, READ_BUFFER);
        loop {
            // About to wait for more bytes: tell the writer what arrived.
            if frames.buffered() == 0 {
                acks.flush(stream);
            }
            let env = match frames.next_frame(from) {
                Ok(Some(env)) => env,
                Ok(None) | Err(FrameError::Io(_)) => return,
                Err(FrameError::Wire(_)) => {
                    s.stats.bad_frames.inc();
                    return;
                }
            };
            if s.faults.cuts_in(from) {
                // Taken in and thrown away here: acknowledged and counted.
                acks.delivered();
                s.stats.dropped.fault.inc();
                continue;
            }
            let len = env.data.len() as u64;
            // About to wait for room in the inbox: acknowledge first.
            if s.inbox.sender().is_full() {
                acks.flush(stream);
            }
            if push(s.inbox.sender(), env, None, &s.shutdown).is_err() {
                return;
            }
            acks.delivered();
            s.stats.received.inc();
            s.stats.received_bytes.add(len);
        }
    }
}
