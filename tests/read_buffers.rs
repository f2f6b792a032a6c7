//! What a node's readers hold, as its stats report it (`read_buffer_bytes`):
//! 64 KiB per incoming connection, 256 KiB for one whose peer streams small
//! frames, back to 64 KiB after 5 s of quiet, and nothing once the
//! connection is gone; 8 KiB with a secret, stream or not.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const KIB: u64 = 1024;

#[test]
fn a_streaming_peer_s_reader_grows_its_buffer_and_gives_it_back_when_quiet() {
    // A small inbox: the stream backs up into the socket, so the reader's
    // reads fill its buffer once node 2 drains.
    let (nodes, _) = cluster(2, r#""InboxSize":100,"OutboxSize":1000"#);
    let (a, b) = (&nodes[0], &nodes[1]);
    let buffers = || stat(b, "/read_buffer_bytes");
    // The reader starts once its connection's handshake is done, which the
    // cluster's forming does not wait for.
    wait_until(Duration::from_secs(10), "a reader", || buffers() > 0);
    assert_eq!(buffers(), 64 * KIB, "one incoming connection");

    const N: i64 = 50_000;
    let sent = Arc::new(AtomicBool::new(false));
    let sender = {
        let (a, sent) = (a.clone(), sent.clone());
        std::thread::spawn(move || {
            for i in 0..N {
                send(&a, 2, i, &i.to_le_bytes());
            }
            sent.store(true, Ordering::Release);
        })
    };
    // Before node 2 starts, its inbox is full and the rest of the stream
    // waits in the socket between them (what the socket cannot hold waits
    // in node 1's full queue): every read finds more than a buffer.
    wait_until(Duration::from_secs(10), "a backed-up stream", || {
        stat(b, "/inbox_depth") == 100
            && (sent.load(Ordering::Acquire) || stat(a, "/peers/0/queue_depth") == 1000)
    });
    for i in 0..N {
        let env = recv(b);
        assert_eq!((env.pid, env.msg_id), (1, i), "in order, none lost");
    }
    sender.join().unwrap();
    assert_eq!(buffers(), 256 * KIB, "a streaming peer's reader");

    // Quiet: back to 64 KiB after 5 s (waited for with room to spare).
    wait_until(Duration::from_secs(20), "the buffer to shrink", || {
        buffers() == 64 * KIB
    });
    // The stream still flows through the smaller buffer.
    send(a, 2, N, b"after");
    assert_eq!(recv(b).msg_id, N);

    // The peer gone, its reader gives its buffer back.
    a.close();
    wait_until(Duration::from_secs(10), "the reader to end", || {
        buffers() == 0
    });
}

#[test]
fn with_a_secret_a_reader_holds_8_kib_and_a_stream_does_not_grow_it() {
    let (nodes, _) = cluster(2, r#""Secret":"s3cret","InboxSize":100"#);
    let (a, b) = (&nodes[0], &nodes[1]);
    let buffers = || stat(b, "/read_buffer_bytes");
    wait_until(Duration::from_secs(10), "a reader", || buffers() > 0);
    assert_eq!(buffers(), 8 * KIB, "one sealed incoming connection");
    let sender = {
        let a = a.clone();
        std::thread::spawn(move || {
            for i in 0..10_000i64 {
                send(&a, 2, i, &i.to_le_bytes());
            }
        })
    };
    for i in 0..10_000 {
        assert_eq!(recv(b).msg_id, i);
    }
    sender.join().unwrap();
    assert_eq!(
        buffers(),
        8 * KIB,
        "records are buffered by the record layer"
    );
}
