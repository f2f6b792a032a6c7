//! Draws a mock trace (JSON lines, as `cluster_mock_trace_take` gives) as a
//! space-time diagram: one vertical line per server, time downward, an
//! arrow per delivered message, a cross per lost one (colored by cause),
//! held messages parked until released. See `cluster::mock::svg`.
//!
//! Usage: `cluster-trace [--html] [--title TEXT] [-o OUT] [TRACE]`
//! reads TRACE (a file; `-` or none: standard input) and writes a
//! standalone SVG, or with `--html` a page that shows it (nothing fetched
//! from the network), to OUT (default: standard output).

use cluster::mock::svg;
use std::io::{Read, Write};

const USAGE: &str = "usage: cluster-trace [--html] [--title TEXT] [-o OUT] [TRACE]";

fn main() {
    if let Err(e) = run() {
        eprintln!("cluster-trace: {e}");
        std::process::exit(if e.starts_with("usage") { 2 } else { 1 });
    }
}

fn run() -> Result<(), String> {
    let (mut html, mut title, mut out, mut input) = (false, None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--html" => html = true,
            "--title" => title = Some(args.next().ok_or(USAGE)?),
            "-o" => out = Some(args.next().ok_or(USAGE)?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            s if s.starts_with('-') && s != "-" => {
                return Err(format!("{USAGE} (unknown option {s})"))
            }
            _ if input.is_some() => return Err(USAGE.into()),
            _ => input = Some(a),
        }
    }
    let mut text = String::new();
    match input.as_deref() {
        None | Some("-") => std::io::stdin().read_to_string(&mut text),
        Some(path) => std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text)),
    }
    .map_err(|e| {
        format!(
            "cannot read {}: {e}",
            input.as_deref().unwrap_or("standard input")
        )
    })?;
    let title =
        title.unwrap_or_else(|| format!("cluster trace: {}", input.as_deref().unwrap_or("stdin")));
    let doc = if html {
        svg::render_html(&text, &title)
    } else {
        svg::render_svg(&text)
    }
    .map_err(|e| e.message)?;
    match out {
        Some(path) => std::fs::write(&path, doc).map_err(|e| format!("cannot write {path}: {e}")),
        None => std::io::stdout()
            .write_all(doc.as_bytes())
            .map_err(|e| format!("cannot write: {e}")),
    }
}
