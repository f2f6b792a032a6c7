//! A short chaos soak across five node processes (the long one is
//! `cluster-soak run --seconds 600`; see the README). SOAK_SECONDS sets the
//! length of this one.

use std::process::Command;

#[test]
fn chaos_soak_loses_nothing_without_counting_it() {
    let seconds = std::env::var("SOAK_SECONDS").unwrap_or_else(|_| "8".into());
    let out = Command::new(env!("CARGO_BIN_EXE_cluster-soak"))
        .args(["run", "--seconds", &seconds, "--seed", "7"])
        .output()
        .expect("cluster-soak runs");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "soak failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    assert!(text.contains("kill -9"), "the soak injected kills:\n{text}");
}
