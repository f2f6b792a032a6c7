//! The frame decoder on arbitrary bytes: no panic, no payload above the
//! limit, never more payload than the input held; and the reader's paths
//! that keep small frames in wire form, one frame a call or a run at a
//! time within a burst's bounds, yield exactly the same envelopes, in the
//! same order, and stop where the plain decoder stops.
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

    // One frame a call, then runs with bounds the input picks.
    let bounds = [None, Some((1 + data.len() % 7, 32 + data.len() % 200))];
    for bounds in bounds {
        let (mixed, mixed_end) = wire_form(data, bounds);
        assert_eq!(plain, mixed);
        assert_eq!(plain_end, mixed_end);
    }
});

/// The envelopes of `data` through the wire-form path (runs of at most
/// `bounds` frames and bytes, else one frame a call), and whether it ended
/// cleanly; the bounds are checked on every run.
fn wire_form(data: &[u8], bounds: Option<(usize, usize)>) -> (Vec<Envelope>, bool) {
    // A read buffer the input sizes (16 bytes to 4 KiB), so that frames
    // are often cut at its end.
    let buffer = 16 + 16 * data.first().map_or(0, |&b| b as usize);
    let mut frames = FrameReader::new(data, MAX, buffer);
    let mut small = FrameBuf::with_capacity(7, 0);
    let mut mixed: Vec<Envelope> = Vec::new();
    let (max_frames, max_bytes) = bounds.unwrap_or((1, usize::MAX));
    let end = loop {
        let (frames_before, bytes_before) = (small.len(), small.wire_len());
        let next = match bounds {
            None => frames.next_into(&mut small),
            Some((n, bytes)) => frames.next_run_into(&mut small, n, bytes),
        };
        match next {
            Ok(Next::Appended) => {
                // At least one frame, and past the first within both bounds.
                let added = small.len() - frames_before;
                assert!((1..=max_frames.max(1)).contains(&added));
                assert!(added == 1 || small.wire_len() - bytes_before <= max_bytes);
            }
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
    (mixed, end)
}
