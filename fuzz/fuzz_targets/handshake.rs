//! Both sides of the handshake against a peer that sends arbitrary bytes:
//! no panic, only configured ids let in, and never a caller with a secret
//! that it cannot prove.
#![no_main]

use cluster::transport::handshake::{answer_on, dial_on};
use cluster::Config;
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};

/// A connection whose far side sends `input` and swallows what we write.
struct Peer<'a> {
    input: &'a [u8],
    written: usize,
}

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Peer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written += buf.len();
        assert!(self.written < 4096, "a handshake writes little");
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let secret = if mode & 1 == 1 { r#""Secret":"k","# } else { "" };
    let cfg = Config::from_json(&format!(
        r#"{{{secret}"Peers":[{{"Id":1,"Address":"127.0.0.1:1"}},{{"Id":2,"Address":"127.0.0.1:2"}}]}}"#
    ))
    .unwrap();
    let mut peer = Peer { input, written: 0 };
    if let Ok((from, keys)) = answer_on(&mut peer, &cfg, 1) {
        assert_eq!(from, 2, "only the configured peer gets in");
        assert!(cfg.secret.is_none(), "no forged proof passes");
        assert!(keys.is_none(), "no keys without a secret");
    }
    let mut peer = Peer { input, written: 0 };
    if let Some(keys) = dial_on(&mut peer, &cfg, 1, 2) {
        assert!(cfg.secret.is_none(), "no forged listener proof passes");
        assert!(keys.is_none(), "no keys without a secret");
    }
});
