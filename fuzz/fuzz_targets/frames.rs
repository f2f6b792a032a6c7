//! The frame decoder on arbitrary bytes: no panic, no payload above the
//! limit, never more payload than the input held; and the reader's path
//! that keeps small frames in wire form yields exactly the same envelopes,
//! in the same order, and stops where the plain decoder stops.
#![no_main]

use cluster::wire::{FrameBuf, FrameReader, Next, HEADER_LEN};
use cluster::Envelope;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let mut frames = FrameReader::new(data, MAX, 4096);
    let mut plain = Vec::new();
    let mut consumed = 0;
    let plain_end = loop {
        match frames.next_frame(7) {
            Ok(Some(env)) => {
                assert!(env.data.len() <= MAX);
                assert_eq!(env.pid, 7);
                consumed += HEADER_LEN + env.data.len();
                assert!(consumed <= data.len());
                plain.push(env);
            }
            Ok(None) => break true,
            Err(_) => break false,
        }
    };

    let mut frames = FrameReader::new(data, MAX, 4096);
    let mut small = FrameBuf::with_capacity(7, 0);
    let mut mixed: Vec<Envelope> = Vec::new();
    let mixed_end = loop {
        match frames.next_into(&mut small) {
            Ok(Next::Appended) => {}
            Ok(Next::Envelope(env)) => {
                mixed.extend(small.take());
                mixed.push(env);
            }
            Ok(Next::End) => break true,
            Err(_) => break false,
        }
    };
    // Taken whole, and split in two parts that share the buffer.
    let mut rest = small.take();
    let half = rest.len() / 2;
    mixed.extend(rest.take_front(half));
    mixed.extend(rest);
    assert_eq!(plain, mixed);
    assert_eq!(plain_end, mixed_end);
});
