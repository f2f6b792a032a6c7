//! The trace diagram: a known virtual-clock scenario drawn by the
//! `cluster-trace` binary has one arrow per delivered message and one
//! cross per lost one; the README's picture is that drawing, up to date;
//! and a real headless browser (Chromium) lays the HTML page out.

#[path = "../examples/partition_heal.rs"]
mod partition_heal;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn events(trace: &str, name: &str) -> usize {
    trace
        .lines()
        .filter(|l| l.contains(&format!("\"event\":\"{name}\"")))
        .count()
}

/// Runs `cluster-trace` with `args`, `input` on its stdin; (status, stdout, stderr).
fn tool(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cluster-trace"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cluster-trace runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_scenario_drawn_has_an_arrow_per_delivery_and_a_cross_per_loss() {
    let trace = partition_heal::scenario(7, 1).unwrap();
    let (code, svg, err) = tool(&[], &trace);
    assert_eq!(code, 0, "{err}");
    let delivered = events(&trace, "delivered");
    let lost = events(&trace, "dropped_fault")
        + events(&trace, "dropped_full")
        + events(&trace, "dropped_closed");
    assert!(
        delivered > 20 && lost > 5,
        "{delivered} delivered, {lost} lost"
    );
    assert_eq!(svg.matches("<line class=\"arrow").count(), delivered);
    assert_eq!(
        svg.matches("class=\"arrow dup\"").count(),
        trace
            .lines()
            .filter(|l| l.contains("\"event\":\"delivered\"") && l.contains("\"copy\":1"))
            .count()
    );
    assert_eq!(svg.matches("class=\"cross ").count(), lost);
    assert!(svg.matches("class=\"cross partition\"").count() > 0);
    assert_eq!(
        svg.matches("class=\"park\"").count(),
        events(&trace, "held")
    );
    assert_eq!(svg.matches("class=\"server\"").count(), 5);
    assert_eq!(
        svg.matches("<title>").count(),
        delivered + lost + events(&trace, "held")
    );

    // The README's picture is this drawing (regenerate it with the
    // command in README.md if the scenario or the drawing changes).
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/partition-heal.svg"),
    )
    .unwrap();
    assert!(
        committed == svg,
        "docs/partition-heal.svg is stale: cargo run --example partition_heal -- 7 1 | cargo run --bin cluster-trace > docs/partition-heal.svg"
    );
}

#[test]
fn the_tool_reads_files_writes_html_and_names_bad_lines() {
    let trace = partition_heal::scenario(3, 1).unwrap();
    let dir = std::env::temp_dir().join(format!("cluster-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("run.jsonl");
    std::fs::write(&input, &trace).unwrap();
    let out = dir.join("run.html");
    let (code, _, err) = tool(
        &[
            "--html",
            "--title",
            "seed 3",
            "-o",
            out.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<title>seed 3</title>"));
    assert!(html.contains("<svg "));
    let (code, _, err) = tool(&[], "{\"event\":\"sent\"}\n{oops\n");
    assert_eq!(code, 1);
    assert!(err.contains("line 2"), "{err}");
    let (code, _, err) = tool(&["--bogus"], "");
    assert_eq!(code, 2, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Chromium (installed by scripts/setup.sh) opens the page with no
/// network: a script added to a copy of the page counts the arrows the
/// browser parsed and measures the laid-out diagram; a screenshot is made.
#[test]
fn a_headless_browser_renders_the_page() {
    let trace = partition_heal::scenario(7, 1).unwrap();
    let (code, html, err) = tool(&["--html"], &trace);
    assert_eq!(code, 0, "{err}");
    let dir = std::env::temp_dir().join(format!("cluster-trace-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let probe = "<script>const s = document.querySelector('svg'); const b = s.getBBox(); \
                 document.body.setAttribute('data-probe', \
                 document.querySelectorAll('line.arrow').length + ' arrows, ' + \
                 document.querySelectorAll('path.cross').length + ' crosses, ' + \
                 (b.width > 300 && b.height > 300 ? 'laid out' : 'empty'));</script>";
    let page = dir.join("probe.html");
    std::fs::write(&page, html.replace("</body>", &format!("{probe}</body>"))).unwrap();
    let shot = dir.join("shot.png");
    let chromium = |extra: &[&str]| {
        let mut cmd = Command::new("timeout");
        cmd.args([
            "120",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(extra)
        .arg(format!("file://{}", page.display()));
        let out = cmd.output().unwrap_or_else(|e| {
            panic!("cannot run chromium ({e}): install it with scripts/setup.sh (apt-get install chromium)")
        });
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = chromium(&["--dump-dom"]);
    let want = format!(
        "data-probe=\"{} arrows, {} crosses, laid out\"",
        events(&trace, "delivered"),
        html.matches("class=\"cross ").count()
    );
    assert!(
        dom.contains(&want),
        "want {want} in the DOM:\n{}",
        &dom[..dom.len().min(2000)]
    );
    chromium(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=800,1400",
    ]);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
