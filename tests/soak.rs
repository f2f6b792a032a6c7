//! A short chaos soak across five node processes, in the clear and then
//! with a shared secret (the long one is `cluster-soak run --seconds 600`;
//! see the README). SOAK_SECONDS sets the length of each.

use std::process::Command;

#[test]
fn chaos_soak_loses_nothing_without_counting_it() {
    soak(&[]);
}

#[test]
fn chaos_soak_with_a_secret_loses_nothing_and_fails_no_record() {
    soak(&["--secret"]);
}

fn soak(extra: &[&str]) {
    // One soak at a time: two at once on a small machine measure the machine.
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let seconds = std::env::var("SOAK_SECONDS").unwrap_or_else(|_| "8".into());
    let out = Command::new(env!("CARGO_BIN_EXE_cluster-soak"))
        .args(["run", "--seconds", &seconds, "--seed", "7"])
        .args(extra)
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
    if extra.contains(&"--secret") {
        assert!(text.contains(", with a secret"), "the soak had a secret");
    }
}
