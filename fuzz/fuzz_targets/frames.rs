//! The frame decoder on arbitrary bytes: no panic, no payload above the
//! limit, never more payload than the input held.
#![no_main]

use cluster::envelope::{FrameReader, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let mut frames = FrameReader::new(data, MAX, 4096);
    let mut consumed = 0;
    while let Ok(Some(env)) = frames.next_frame(7) {
        assert!(env.data.len() <= MAX);
        assert_eq!(env.pid, 7);
        consumed += HEADER_LEN + env.data.len();
        assert!(consumed <= data.len());
    }
});
