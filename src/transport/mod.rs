//! The real network: one TCP listener, and per peer one bounded queue, one
//! connection and one writer thread.

mod acks;
mod batch;
mod faults;
pub mod handshake;
mod listener;
mod outq;
mod reply;
mod shared;
mod sockets;
mod writer;

use crate::backend::Transport;
use crate::config::{Config, Peer, BROADCAST};
use crate::envelope::{Envelope, Outgoing};
use crate::error::{Error, Result, Status};
use crate::fault::{FaultCmd, Faults};
use crate::inbox::{Inbox, Item, Sink, Slot};
use crate::stats::{NodeStats, PeerReport, PeerStats, Report};
use crate::sync::{PushError, Shutdown, Timeout, WhenFull};
use crossbeam_channel::{bounded, Receiver};
use outq::Outq;
use reply::ReplyHint;
use shared::Shared;
use sockets::Sockets;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a sender waits for room before checking again that the peer is up.
const WAIT_SLICE: Duration = Duration::from_millis(10);
/// Runs of at least this many small frames to one peer, sent with no
/// timeout, are written into the connection by their sender.
const DIRECT_RUN: usize = 16;

/// The sending side of one peer.
struct Link {
    id: i64,
    queue: Arc<Outq>,
    stats: Arc<PeerStats>,
    direct: Arc<writer::Direct>,
}

/// A node of a real TCP cluster.
pub struct TcpNode {
    shared: Arc<Shared>,
    links: Vec<Link>,
    /// (peer id, index in `links`), sorted by id: a binary search is
    /// cheaper than hashing on every send.
    index: Vec<(i64, usize)>,
    listener: Mutex<Option<Arc<TcpListener>>>,
    /// The writers.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The accept thread, joined before the readers: it is what starts them.
    acceptor: Mutex<Option<JoinHandle<()>>>,
    /// The readers the accept thread started and has not joined yet.
    readers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    writers_done: Receiver<()>,
    close_lock: Mutex<bool>,
    faults: faults::TcpFaults,
    reply: ReplyHint,
}

impl TcpNode {
    /// Binds the node's address and starts its threads.
    pub fn start(id: i64, config: Config) -> Result<TcpNode> {
        let me = config.peer(id).cloned().ok_or_else(|| {
            Error::config(format!(
                "own id {id} is not in the config (ids: {:?})",
                config.ids()
            ))
        })?;
        let backlog = (2 * config.peers.len()).clamp(1024, 65535) as i32;
        let listener = Arc::new(bind(&me, backlog)?);
        let shared = Arc::new(Shared {
            id,
            inbox: Inbox::new(config.inbox_size),
            stats: NodeStats::default(),
            shutdown: Shutdown::default(),
            sockets: Sockets::default(),
            faults: Faults::default(),
            config,
        });
        let (done_tx, writers_done) = bounded::<()>(0);
        let mut links = Vec::new();
        let mut threads = Vec::new();
        for peer in shared.config.peers.iter().filter(|p| p.id != id) {
            let queue = match Outq::new(shared.config.outbox_size) {
                Ok(q) => Arc::new(q),
                Err(e) => return Err(abandon(&shared, &links, threads, e.into())),
            };
            let stats = Arc::new(PeerStats::new(peer.id));
            let direct = Arc::new(writer::Direct::default());
            let w = writer::Writer {
                shared: shared.clone(),
                peer: peer.clone(),
                queue: queue.clone(),
                stats: stats.clone(),
                direct: direct.clone(),
                _done: done_tx.clone(),
            };
            links.push(Link {
                id: peer.id,
                queue,
                stats,
                direct,
            });
            match spawn(format!("cluster-w{}", peer.id), move || w.run()) {
                Ok(t) => threads.push(t),
                Err(e) => return Err(abandon(&shared, &links, threads, e)),
            }
        }
        drop(done_tx);
        let readers = Arc::new(Mutex::new(Vec::new()));
        let acceptor = listener::Acceptor {
            shared: shared.clone(),
            listener: listener.clone(),
            readers: readers.clone(),
        };
        let acceptor = match spawn(format!("cluster-a{id}"), move || acceptor.run()) {
            Ok(t) => t,
            Err(e) => return Err(abandon(&shared, &links, threads, e)),
        };
        let mut index: Vec<(i64, usize)> =
            links.iter().enumerate().map(|(i, l)| (l.id, i)).collect();
        index.sort_unstable();
        let queues = links.iter().map(|l| {
            (
                l.id,
                faults::Queue {
                    queue: l.queue.clone(),
                    stats: l.stats.clone(),
                },
            )
        });
        let faults = faults::TcpFaults::new(shared.clone(), queues.collect());
        Ok(TcpNode {
            shared,
            links,
            index,
            listener: Mutex::new(Some(listener)),
            threads: Mutex::new(threads),
            acceptor: Mutex::new(Some(acceptor)),
            readers,
            writers_done,
            close_lock: Mutex::new(false),
            faults,
            reply: ReplyHint::default(),
        })
    }

    fn enqueue(
        &self,
        link: &Link,
        env: Envelope,
        timeout: Timeout,
        replying: bool,
        when_full: WhenFull,
    ) -> Result<()> {
        let env = match self.shared.faults.is_active() {
            true => match self.faults.filter(&link.stats, env) {
                Some(env) => env,
                None => return Ok(()),
            },
            false => env,
        };
        let len = env.data.len() as u64;
        // A thread answering what it received writes the frame itself when
        // the writer is idle: request/reply saves a thread hand-off. Not for
        // a send that must not wait (a frame the socket takes only in part
        // is finished, blocking up to the timeout) nor for a large payload.
        let direct = replying && timeout != Some(Duration::ZERO) && len < batch::BIG as u64;
        if direct
            && link
                .direct
                .try_write(&link.queue, &env, &link.stats, timeout)
        {
            link.queue.count_sent(1, len);
            link.stats.written.inc();
            link.stats.written_bytes.add(len);
            return Ok(());
        }
        // Fast path: the queue has room (no clock read).
        match link.queue.push(&env, Duration::ZERO) {
            Ok(()) => return Ok(()),
            Err(PushError::Full) => {}
            Err(PushError::Closed) => return Err(Error::closed()),
        }
        let end = crate::sync::deadline(timeout);
        loop {
            // A peer that is down never makes the caller wait: its queue keeps
            // what fits and the rest is dropped and counted. Waiting is done in
            // slices so a peer that goes down meanwhile releases the caller.
            let wait = if link.stats.down.get() {
                Duration::ZERO
            } else {
                end.map_or(WAIT_SLICE, |e| {
                    e.saturating_duration_since(Instant::now()).min(WAIT_SLICE)
                })
            };
            match link.queue.push(&env, wait) {
                Ok(()) => return Ok(()),
                Err(PushError::Full) if !wait.is_zero() => continue,
                Err(PushError::Full) => {
                    // A peer that is down drops at once, whatever the caller asked.
                    let when_full = match link.stats.down.get() {
                        true => WhenFull::Drop,
                        false => when_full,
                    };
                    if when_full == WhenFull::Drop {
                        link.stats.dropped.queue_full.inc();
                        self.shared.stats.dropped.queue_full.inc();
                    }
                    return Err(when_full.error(format_args!("queue to peer {}", link.id)));
                }
                Err(PushError::Closed) => return Err(Error::closed()),
            }
        }
    }

    /// The link to peer `id`, if it is one.
    fn link(&self, id: i64) -> Option<&Link> {
        let k = self.index.binary_search_by_key(&id, |&(id, _)| id).ok()?;
        Some(&self.links[self.index[k].1])
    }

    /// Sends `msgs` in order, counting in `sent` those sent, up to the
    /// first error. In the common case, the messages of a run to one peer
    /// go into its queue under one lock. (The count is not returned with
    /// the result: `send_copy` hands the result on as it comes.)
    #[inline(always)]
    fn send_run(&self, msgs: &[Outgoing<'_>], timeout: Timeout, sent: &mut usize) -> Result<()> {
        // `msg` by reference: its fields are loaded one by one where they
        // are used (copying it whole loads a just-stored pair as one).
        while let Some(msg) = msgs.get(*sent) {
            let replying = self.begin_send(msg.data.len())?;
            if !replying && msg.data.len() < batch::BIG && !self.shared.faults.is_active() {
                // The run: this message and those after it to the same
                // destination, small and within the size limit. What
                // `begin_send` checked for the first holds for them (a close
                // racing the run is refused by the queue, or, for a run
                // written directly, settled by the writer's linger: acked,
                // or counted as dropped at close), and none of them is a
                // reply.
                let max = self.shared.config.max_message_size.min(batch::BIG - 1);
                let run = 1 + msgs[*sent + 1..]
                    .iter()
                    .take_while(|m| m.to == msg.to && m.data.len() <= max)
                    .count();
                let run = &msgs[*sent..*sent + run];
                if let Some(link) = self.link(msg.to) {
                    if let Ok(n) = self.push_run(link, run, timeout) {
                        *sent += n;
                        continue;
                    }
                } else if msg.to == BROADCAST {
                    self.broadcast_run(run, timeout)?;
                    *sent += run.len();
                    continue;
                }
            }
            self.send_checked(msg.to_envelope(), timeout, replying, WhenFull::Drop)?;
            *sent += 1;
        }
        Ok(())
    }

    /// Sends a run of small messages to one peer without waiting for room:
    /// written into the connection by this thread (see
    /// [`writer::Direct::try_write_run`]), or as many from the front as fit
    /// queued under one lock; how many (`Full` if none fit).
    #[inline(always)]
    fn push_run(
        &self,
        link: &Link,
        run: &[Outgoing<'_>],
        timeout: Timeout,
    ) -> std::result::Result<usize, PushError> {
        if run.len() >= DIRECT_RUN
            && timeout.is_none()
            && link.direct.try_write_run(
                &link.queue,
                run,
                &link.stats,
                self.shared.config.peer_timeout,
            )
        {
            return Ok(run.len());
        }
        link.queue.try_push_small_run(run)
    }

    /// Sends a run of small broadcasts as a broadcast is sent (every peer
    /// gets its chance even if one queue is full; the timeout is the whole
    /// run's), peer by peer: each peer's share goes in as runs.
    #[inline(never)]
    fn broadcast_run(&self, run: &[Outgoing<'_>], timeout: Timeout) -> Result<()> {
        let end = crate::sync::deadline(timeout);
        for link in &self.links {
            let mut done = 0;
            while let Some(rest) = run.get(done..).filter(|r| !r.is_empty()) {
                let left = end.map(|e| e.saturating_duration_since(Instant::now()));
                done += match self.push_run(link, rest, left) {
                    Ok(n) => n,
                    Err(PushError::Closed) => return Err(Error::closed()),
                    // No room: the first waits for it as a broadcast does.
                    Err(PushError::Full) => {
                        let env = rest[0].to_envelope();
                        match self.enqueue(link, env, left, false, WhenFull::Drop) {
                            Err(e) if e.status == Status::Closed => return Err(e),
                            _ => 1,
                        }
                    }
                };
            }
        }
        Ok(())
    }

    /// What every send checks first: the node is open and the payload not
    /// too large. Whether the send most likely answers a message received
    /// (see [`ReplyHint::begin_send`]).
    #[inline]
    fn begin_send(&self, len: usize) -> Result<bool> {
        if self.shared.shutdown.is_fired() {
            return Err(Error::closed());
        }
        self.shared.config.check_size(len)?;
        Ok(self.reply.begin_send())
    }

    /// Sends an envelope that passed [`TcpNode::begin_send`].
    fn send_checked(
        &self,
        env: Envelope,
        timeout: Timeout,
        replying: bool,
        when_full: WhenFull,
    ) -> Result<()> {
        if env.pid == BROADCAST {
            // Every peer gets its chance even if one queue is full; the
            // payload is shared, not copied; the timeout is the whole call's.
            let end = crate::sync::deadline(timeout);
            for link in &self.links {
                let left = end.map(|e| e.saturating_duration_since(Instant::now()));
                match self.enqueue(link, env.clone(), left, replying, WhenFull::Drop) {
                    Err(e) if e.status == Status::Closed => return Err(e),
                    _ => {}
                }
            }
            return Ok(());
        }
        if env.pid == self.shared.id {
            return self.deliver_to_self(env, timeout, when_full);
        }
        match self.link(env.pid) {
            Some(link) => self.enqueue(link, env, timeout, replying, when_full),
            None => Err(Error::unknown_peer(env.pid)),
        }
    }

    fn deliver_to_self(
        &self,
        mut env: Envelope,
        timeout: Timeout,
        when_full: WhenFull,
    ) -> Result<()> {
        let s = &self.shared;
        env.pid = s.id;
        let len = env.data.len() as u64;
        match s.inbox.push(0, env, timeout, &s.shutdown) {
            Ok(()) => {
                s.stats.sent.inc();
                s.stats.sent_bytes.add(len);
                Ok(())
            }
            Err((PushError::Full, _)) => {
                if when_full == WhenFull::Drop {
                    s.stats.dropped.queue_full.inc();
                }
                Err(when_full.error(format_args!("own inbox")))
            }
            Err((PushError::Closed, _)) => Err(Error::closed()),
        }
    }
}

/// Stops the threads a failed start had already begun, and passes `e` on.
fn abandon(shared: &Shared, links: &[Link], threads: Vec<JoinHandle<()>>, e: Error) -> Error {
    shared.inbox.close(&shared.shutdown);
    for l in links {
        l.queue.close();
    }
    shared.sockets.shutdown_all();
    for t in threads {
        let _ = t.join();
    }
    e
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(Error::from)
}

/// Binds the node's listen address with SO_REUSEADDR, so a restarted node can
/// take its port back at once, with a backlog of `backlog` connections.
fn bind(me: &Peer, backlog: i32) -> Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = me.listen;
    let fail = |e: std::io::Error| {
        let mut err = Error::from(e);
        err.message = format!(
            "cannot listen on {addr} (Id {}, \"Address\" {:?}): {}",
            me.id, me.address, err.message
        );
        err
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    // Room for every member connecting at once, with a floor.
    socket.listen(backlog).map_err(fail)?;
    Ok(socket.into())
}

impl Transport for TcpNode {
    fn pid(&self) -> i64 {
        self.shared.id
    }

    fn peers(&self) -> Vec<i64> {
        self.links.iter().map(|l| l.id).collect()
    }

    fn send(&self, env: Envelope, timeout: Timeout) -> Result<()> {
        let replying = self.begin_send(env.data.len())?;
        self.send_checked(env, timeout, replying, WhenFull::Drop)
    }

    /// The common case (a small payload to one live peer with room in its
    /// queue, no fault set, not a reply) is encoded straight into the queue.
    fn send_copy(&self, msg: Outgoing<'_>, timeout: Timeout) -> Result<()> {
        self.send_run(std::slice::from_ref(&msg), timeout, &mut 0)
    }

    fn try_send_copy(&self, msg: Outgoing<'_>, timeout: Timeout) -> Result<()> {
        let replying = self.begin_send(msg.data.len())?;
        self.send_checked(msg.to_envelope(), timeout, replying, WhenFull::Keep)
    }

    /// In the common case, the messages of a run to one peer go into its
    /// queue under one lock (see `send_run`).
    fn send_copies(&self, msgs: &[Outgoing<'_>], timeout: Timeout) -> (usize, Result<()>) {
        let mut sent = 0;
        let result = self.send_run(msgs, timeout, &mut sent);
        (sent, result)
    }

    fn recv_one(&self, timeout: Timeout, out: &mut dyn Slot) -> Result<()> {
        let s = &self.shared;
        let len = s
            .inbox
            .recv_one(timeout, self.reply.recv_spin(), &s.shutdown, out)?;
        self.reply.received(len);
        Ok(())
    }

    fn recv_into(&self, max: usize, timeout: Timeout, out: &mut dyn Sink) -> Result<usize> {
        let s = &self.shared;
        let mut out = Counted { out, bytes: 0 };
        let n = s
            .inbox
            .recv_items(max, timeout, self.reply.recv_spin(), &s.shutdown, &mut out)?;
        self.reply.received(out.bytes as usize / n.max(1));
        Ok(n)
    }

    fn inbox(&self) -> &Inbox {
        &self.shared.inbox
    }

    fn close(&self) {
        let mut closed = self.close_lock.lock().unwrap_or_else(|e| e.into_inner());
        if *closed {
            return;
        }
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(l) = &listener {
            sockets::shutdown_listener(l);
        }
        self.faults.stop();
        self.shared.inbox.close(&self.shared.shutdown);
        for l in &self.links {
            l.queue.close();
        }
        // The accept thread sees the shutdown and ends; once it is joined it
        // starts no more readers, so the list below holds every one.
        let acceptor = self
            .acceptor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = acceptor {
            let _ = t.join();
        }
        // Readers stop at the end of what they have and acknowledge it, so
        // the peers know exactly what this node took in.
        self.shared.sockets.stop_reading();
        let readers: Vec<_> = self
            .readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for t in readers {
            let _ = t.join();
        }
        // Writers flush within the linger; then every socket is cut.
        let linger = self.shared.config.close_linger;
        let _ = self.writers_done.recv_deadline(Instant::now() + linger);
        self.shared.sockets.shutdown_all();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
        drop(listener);
        let left = self.shared.inbox.drain() as u64;
        self.shared.stats.discarded.add(left);
        *closed = true;
    }

    fn is_closed(&self) -> bool {
        self.shared.shutdown.is_fired()
    }

    fn stats(&self) -> serde_json::Value {
        let s = &self.shared;
        // Sends to peers are counted by their queues; the node's own
        // counters hold the messages it sent to itself.
        let (mut sent, mut sent_bytes) = (s.stats.sent.get(), s.stats.sent_bytes.get());
        let mut reconnects = 0;
        let mut peers = Vec::with_capacity(self.links.len());
        for l in &self.links {
            let q = l.queue.counts();
            sent += q.sent;
            sent_bytes += q.sent_bytes;
            reconnects += l.stats.reconnects.get();
            let p = PeerReport::new(&l.stats, q);
            peers.push(serde_json::to_value(&p).unwrap_or_default());
        }
        let mut extra = serde_json::Map::new();
        extra.insert("reconnects".into(), reconnects.into());
        Report {
            pid: s.id,
            transport: "tcp",
            closed: s.shutdown.is_fired(),
            sent,
            sent_bytes,
            inbox: s.inbox.counts(),
            counters: &s.stats,
            faults: s.faults.describe(),
            peers,
            extra,
        }
        .to_json()
    }

    /// Cuts must name configured peers.
    fn fault(&self, cmd: &FaultCmd) -> Result<()> {
        self.faults.apply(cmd)
    }

    fn config(&self) -> &Config {
        &self.shared.config
    }
}

impl Drop for TcpNode {
    fn drop(&mut self) {
        self.close();
    }
}

/// A [`Sink`] that counts the payload bytes passed on (for the reply hint).
struct Counted<'a> {
    out: &'a mut dyn Sink,
    bytes: u64,
}

impl Sink for Counted<'_> {
    fn reserve(&mut self, items: usize, messages: usize) {
        self.out.reserve(items, messages);
    }

    fn put(&mut self, item: Item) {
        self.bytes += item.payload_bytes();
        self.out.put(item);
    }
}
