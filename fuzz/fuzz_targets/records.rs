//! The encrypted record decoder: on arbitrary bytes nothing verifies and
//! nothing comes out; on records sealed from the input and then damaged
//! (one byte flipped, or the stream cut), exactly the plaintext of the
//! records wholly before the damage comes out, and the stream then fails
//! (forged or truncated) or, cut on a record boundary, ends cleanly.
#![no_main]

use cluster::wire::{
    record_error, Opener, RecordError, RecordReader, Sealer, KEY_LEN, RECORD_MAX,
};
use libfuzzer_sys::fuzz_target;
use std::io::Read;

const KEY: [u8; KEY_LEN] = [9; KEY_LEN];

/// Everything the reader yields from `wire`, and how it ended.
fn read_all(wire: &[u8]) -> (Vec<u8>, Result<(), Option<RecordError>>) {
    let mut r = RecordReader::new(wire, Opener::new(&KEY, RECORD_MAX));
    let mut out = Vec::new();
    let mut buf = [0u8; 700];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Err(record_error(&e))),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // Arbitrary bytes: a forgery would need the key.
    let (out, end) = read_all(rest);
    assert!(out.is_empty(), "unsealed bytes never verify");
    assert_eq!(end.is_ok(), rest.is_empty());

    // Sealed in records of up to `chunk` bytes, then damaged at `at`.
    let chunk = 1 + (mode as usize >> 1) * 97;
    let mut sealer = Sealer::new(&KEY);
    let mut wire = Vec::new();
    let mut bounds = vec![(0, 0)]; // (wire end, plaintext end) of each record
    for piece in rest.chunks(chunk) {
        sealer.seal(piece, &mut wire);
        bounds.push((wire.len(), bounds.last().unwrap().1 + piece.len()));
    }
    let at = rest
        .iter()
        .fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize))
        % (wire.len() + 1);
    let flip = mode & 1 == 1 && at < wire.len();
    if flip {
        wire[at] ^= 0x80;
    } else {
        wire.truncate(at);
    }
    // The records wholly before the damage.
    let (good_wire, good_plain) = *bounds.iter().rev().find(|b| b.0 <= at).unwrap();
    let (out, end) = read_all(&wire);
    assert_eq!(out, &rest[..good_plain], "exactly the verified records");
    match end {
        Ok(()) => assert!(!flip && good_wire == at, "a clean end only on a boundary"),
        Err(Some(RecordError::Forged | RecordError::Truncated)) => {}
        Err(e) => panic!("unexpected end {e:?}"),
    }
});
