//! A mock trace drawn as a space-time diagram: one vertical line per
//! server, time downward, an arrow per delivered message (dashed for a
//! duplicate), a cross where one was lost (colored by cause: partition,
//! cut, drop, full, closed), held messages parked beside their sender
//! until released. Hovering an arrow or a cross shows the message
//! (an SVG `<title>`: msg_id, seq, link, times). The `cluster-trace`
//! binary is a thin shell over [`render_svg`] and [`render_html`].
//!
//! Time runs down in rows: each send, landing, loss and hold gets the
//! next row in the trace's order (a broadcast's sends share one), so
//! nothing overlaps however many events share a time. On a virtual clock
//! the left margin shows the virtual time (`t_us`) where it changes.

use crate::error::{Error, Result, Status};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

/// Why a message was lost, as the diagram colors it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A partition separated sender and destination.
    Partition,
    /// A node cut (`cut_out` or `cut_in`).
    Cut,
    /// The drop probability.
    Drop,
    /// A full inbox or in-flight bound.
    Full,
    /// The destination or the cluster closed.
    Closed,
}

impl Cause {
    /// Every cause, in the legend's order.
    pub const ALL: [Cause; 5] = [
        Cause::Partition,
        Cause::Cut,
        Cause::Drop,
        Cause::Full,
        Cause::Closed,
    ];

    /// The cause's name, also its CSS class (`cross partition`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Cause::Partition => "partition",
            Cause::Cut => "cut",
            Cause::Drop => "drop",
            Cause::Full => "full",
            Cause::Closed => "closed",
        }
    }

    fn color(self) -> &'static str {
        match self {
            Cause::Partition => "#d62728",
            Cause::Cut => "#9467bd",
            Cause::Drop => "#ff7f0e",
            Cause::Full => "#8c564b",
            Cause::Closed => "#7f7f7f",
        }
    }

    fn of(event: &Value) -> Option<Cause> {
        Some(match event["event"].as_str()? {
            "dropped_full" => Cause::Full,
            "dropped_closed" => Cause::Closed,
            "dropped_fault" => match event["reason"].as_str() {
                Some("partition") => Cause::Partition,
                Some("cut_out" | "cut_in") => Cause::Cut,
                _ => Cause::Drop,
            },
            _ => return None,
        })
    }
}

const LEFT: f64 = 120.0;
const GAP: f64 = 110.0;
const TOP: f64 = 70.0;
const ROW: f64 = 12.0;
const ARROW: &str = "#1f77b4";

/// Where a message's arrow starts: its send, or where it was parked.
#[derive(Clone, Copy)]
struct Start {
    x: f64,
    y: f64,
    t: Option<u64>,
}

/// The rows of the diagram and the time labels of the left margin.
#[derive(Default)]
struct Rows {
    row: usize,
    last_label: Option<(Option<u64>, usize)>,
    labels: String,
}

impl Rows {
    /// The current row's y.
    fn y(&self) -> f64 {
        TOP + ROW * self.row as f64
    }

    /// The y of the next row (of the current one if `shares`), at time
    /// `t`, labelled where the time changed (at most every other row).
    fn next(&mut self, shares: bool, t: Option<u64>) -> f64 {
        if !shares {
            self.row += 1;
        }
        let y = self.y();
        let row = self.row;
        if t.is_some()
            && self
                .last_label
                .is_none_or(|(lt, lr)| lt != t && row >= lr + 2)
        {
            let _ = writeln!(
                self.labels,
                "<text class=\"time\" x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT - 12.0,
                y + 3.0,
                ms(t).trim_start()
            );
            self.last_label = Some((t, row));
        }
        y
    }
}

/// The message a trace event is about: (from, to, seq).
type Link = (i64, i64, u64);

fn int(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or(0)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn ms(t: Option<u64>) -> String {
    t.map_or_else(String::new, |us| format!(" t={:.3} ms", us as f64 / 1000.0))
}

/// Parses a trace (JSON lines; blank lines skipped). An error names the
/// line that is not a JSON object.
pub fn parse(trace: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, line) in trace.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => out.push(v),
            Ok(_) => {
                return Err(Error::new(
                    Status::InvalidArg,
                    format!("trace line {}: not a JSON object", i + 1),
                ))
            }
            Err(e) => {
                return Err(Error::new(
                    Status::InvalidArg,
                    format!("trace line {}: {e}", i + 1),
                ))
            }
        }
    }
    Ok(out)
}

/// Draws a trace (JSON lines, as `cluster_mock_trace_take` gives) as a
/// standalone SVG document. Errors: a line that is not a JSON object.
pub fn render_svg(trace: &str) -> Result<String> {
    Ok(draw(&parse(trace)?))
}

/// A standalone HTML page (no script, nothing fetched) showing the
/// diagram of `trace` under `title`, with a legend.
pub fn render_html(trace: &str, title: &str) -> Result<String> {
    let svg = render_svg(trace)?;
    let svg = svg.trim_start_matches(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let title = esc(title);
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>body {{ font-family: sans-serif; margin: 1em; }}\n\
         svg g.msg:hover line, svg g.msg:hover path {{ stroke-width: 3; }}</style>\n\
         </head>\n<body>\n<h1>{title}</h1>\n<p>One vertical line per server, time \
         downward. Arrows are delivered messages (dashed: a duplicate), crosses lost \
         ones, colored by cause; a square is a held message, parked until its link \
         is released. Hover for msg_id and seq.</p>\n{svg}</body>\n</html>\n"
    ))
}

/// The diagram of parsed events.
fn draw(events: &[Value]) -> String {
    let mut ids = BTreeSet::new();
    for e in events {
        if e.get("from").is_some() {
            ids.insert(int(e, "from"));
            ids.insert(int(e, "to"));
        }
    }
    let x_of: HashMap<i64, f64> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, LEFT + GAP * i as f64))
        .collect();
    let x = |id: i64| x_of.get(&id).copied().unwrap_or(LEFT);

    let mut body = String::new();
    let mut starts: HashMap<Link, Start> = HashMap::new();
    let mut delays: HashMap<(Link, u8), u64> = HashMap::new();
    let mut rows = Rows::default();
    let mut last_sent: Option<(i64, i64, Option<u64>)> = None;
    let (mut arrows, mut crosses, mut parked) = (0, 0, 0);
    let mut overflow = None;
    for e in events {
        let name = e["event"].as_str().unwrap_or("");
        if name == "trace_overflow" {
            overflow = e["lost"].as_u64();
            continue;
        }
        let (from, to, seq) = (int(e, "from"), int(e, "to"), e["seq"].as_u64().unwrap_or(0));
        let copy = e["copy"].as_u64().unwrap_or(0) as u8;
        let link = (from, to, seq);
        let t = e["t_us"].as_u64();
        let msg_id = int(e, "msg_id");
        // Where the message's arrow starts: its send or its parking place
        // (or here, `y`, if the trace began after it).
        let start_of = |y: f64| {
            starts
                .get(&link)
                .copied()
                .unwrap_or(Start { x: x(from), y, t })
        };
        let tip = |what: &str, start: &Start| {
            let delay = delays.get(&(link, copy)).map_or_else(String::new, |d| {
                format!(" delay={:.3} ms", *d as f64 / 1000.0)
            });
            esc(&format!(
                "{what}: msg_id={msg_id} seq={seq}{} {from}\u{2192}{to} sent{}{delay}{}",
                if copy > 0 { " (duplicate)" } else { "" },
                ms(start.t),
                if what == "delivered" {
                    format!(", landed{}", ms(t))
                } else {
                    ms(t)
                },
            ))
        };
        match name {
            "sent" => {
                // The sends of one broadcast (same sender, msg_id and
                // time, one after the other) share a row.
                let shares = last_sent == Some((from, msg_id, t)) && rows.row > 0;
                let y = rows.next(shares, t);
                starts.insert(link, Start { x: x(from), y, t });
                last_sent = Some((from, msg_id, t));
                continue;
            }
            "delayed" => {
                if let Some(d) = e["delay_us"].as_u64() {
                    delays.insert((link, copy), d);
                }
            }
            "held" => {
                let y = rows.next(false, t);
                let start = start_of(y);
                let px = start.x + (x(to) - start.x).signum() * 18.0;
                let _ = writeln!(
                    body,
                    "<g class=\"msg held\"><title>{}</title><path d=\"M{:.1},{:.1} L{px:.1},{y:.1}\" \
                     stroke=\"#999\" stroke-dasharray=\"2,2\" fill=\"none\"/>\
                     <rect class=\"park\" x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"8\" fill=\"#999\"/></g>",
                    tip("held", &start),
                    start.x,
                    start.y,
                    px - 4.0,
                    y - 4.0,
                );
                parked += 1;
                starts.insert(link, Start { x: px, y, t });
            }
            "delivered" => {
                let y = rows.next(false, t);
                let start = start_of(y);
                let dash = if copy > 0 {
                    " stroke-dasharray=\"6,3\""
                } else {
                    ""
                };
                let class = if copy > 0 { "arrow dup" } else { "arrow" };
                let _ = writeln!(
                    body,
                    "<g class=\"msg delivered\"><title>{}</title><line class=\"{class}\" \
                     x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{ARROW}\"{dash} \
                     marker-end=\"url(#head)\"/></g>",
                    tip("delivered", &start),
                    start.x,
                    start.y,
                    x(to),
                );
                arrows += 1;
            }
            _ => {
                let Some(cause) = Cause::of(e) else {
                    continue;
                };
                let start = start_of(rows.y());
                // A fault loss is decided at the send: a short stub from
                // it. A full inbox or a close is met on arrival: its own row.
                let (cx, cy) = if name == "dropped_fault" {
                    (start.x + (x(to) - start.x) * 0.35, start.y + ROW * 0.8)
                } else {
                    (start.x + (x(to) - start.x) * 0.8, rows.next(false, t))
                };
                let c = cause.color();
                let _ = writeln!(
                    body,
                    "<g class=\"msg lost\"><title>{}</title><line x1=\"{:.1}\" y1=\"{:.1}\" \
                     x2=\"{cx:.1}\" y2=\"{cy:.1}\" stroke=\"{c}\" stroke-opacity=\"0.6\"/>\
                     <path class=\"cross {}\" d=\"M{:.1},{:.1} l8,8 m0,-8 l-8,8\" stroke=\"{c}\" \
                     stroke-width=\"2.5\"/></g>",
                    tip(&format!("lost ({})", cause.name()), &start),
                    start.x,
                    start.y,
                    cause.name(),
                    cx - 4.0,
                    cy - 4.0,
                );
                crosses += 1;
            }
        }
        last_sent = None;
    }

    let width = LEFT + GAP * ids.len().max(1) as f64 + 140.0;
    let height = TOP + ROW * (rows.row + 3) as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\" \
         data-arrows=\"{arrows}\" data-crosses=\"{crosses}\" data-held=\"{parked}\">\n\
         <defs><marker id=\"head\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" \
         fill=\"{ARROW}\"/></marker></defs>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    );
    for &id in &ids {
        let _ = writeln!(
            svg,
            "<g class=\"server\"><text x=\"{0:.1}\" y=\"{1:.1}\" text-anchor=\"middle\" \
             font-weight=\"bold\">server {id}</text><line x1=\"{0:.1}\" y1=\"{2:.1}\" \
             x2=\"{0:.1}\" y2=\"{3:.1}\" stroke=\"#333\"/></g>",
            x(id),
            TOP - 22.0,
            TOP - 12.0,
            height - 10.0,
        );
    }
    svg.push_str(&rows.labels);
    svg.push_str(&body);
    // The legend, right of the last server.
    let lx = LEFT + GAP * ids.len().max(1) as f64 - 40.0;
    let mut ly = TOP;
    let _ = writeln!(
        svg,
        "<g class=\"legend\"><line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{ARROW}\" \
         marker-end=\"url(#head)\"/><text x=\"{}\" y=\"{}\">delivered</text>\n\
         <line x1=\"{lx}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{ARROW}\" stroke-dasharray=\"6,3\"/>\
         <text x=\"{}\" y=\"{}\">duplicate</text>",
        lx + 24.0,
        lx + 30.0,
        ly + 4.0,
        ly + 16.0,
        lx + 24.0,
        ly + 16.0,
        lx + 30.0,
        ly + 20.0,
    );
    ly += 32.0;
    let _ = writeln!(
        svg,
        "<rect x=\"{}\" y=\"{}\" width=\"8\" height=\"8\" fill=\"#999\"/><text x=\"{}\" y=\"{}\">held</text>",
        lx + 8.0,
        ly - 4.0,
        lx + 30.0,
        ly + 4.0
    );
    for cause in Cause::ALL {
        ly += 16.0;
        let _ = writeln!(
            svg,
            "<path d=\"M{:.1},{:.1} l8,8 m0,-8 l-8,8\" stroke=\"{}\" stroke-width=\"2.5\"/>\
             <text x=\"{}\" y=\"{}\">lost: {}</text>",
            lx + 8.0,
            ly - 4.0,
            cause.color(),
            lx + 30.0,
            ly + 4.0,
            cause.name()
        );
    }
    if let Some(lost) = overflow {
        let _ = writeln!(
            svg,
            "<text x=\"{lx}\" y=\"{}\" fill=\"#d62728\">{lost} events past the trace cap not shown</text>",
            ly + 24.0
        );
    }
    svg.push_str("</g>\n</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = r#"{"event":"sent","from":1,"to":2,"seq":0,"copy":0,"msg_id":7,"t_us":0}
{"event":"delayed","from":1,"to":2,"seq":0,"copy":0,"msg_id":7,"delay_us":1500,"t_us":0}
{"event":"duplicated","from":1,"to":2,"seq":0,"copy":0,"msg_id":7,"t_us":0}
{"event":"sent","from":1,"to":3,"seq":0,"copy":0,"msg_id":7,"t_us":0}
{"event":"dropped_fault","from":1,"to":3,"seq":0,"copy":0,"msg_id":7,"reason":"partition","t_us":0}
{"event":"sent","from":2,"to":3,"seq":0,"copy":0,"msg_id":8,"t_us":0}
{"event":"held","from":2,"to":3,"seq":0,"copy":0,"msg_id":8,"t_us":0}
{"event":"sent","from":3,"to":1,"seq":0,"copy":0,"msg_id":9,"t_us":0}
{"event":"dropped_fault","from":3,"to":1,"seq":0,"copy":0,"msg_id":9,"reason":"cut_in","t_us":0}
{"event":"delivered","from":1,"to":2,"seq":0,"copy":0,"msg_id":7,"t_us":1500}
{"event":"delivered","from":1,"to":2,"seq":0,"copy":1,"msg_id":7,"t_us":1600}
{"event":"delivered","from":2,"to":3,"seq":0,"copy":0,"msg_id":8,"t_us":2000}
{"event":"sent","from":3,"to":2,"seq":1,"copy":0,"msg_id":10,"t_us":2000}
{"event":"dropped_full","from":3,"to":2,"seq":1,"copy":0,"msg_id":10,"t_us":2000}
{"event":"dropped_closed","from":3,"to":1,"seq":5,"copy":0,"msg_id":11,"t_us":2000}
"#;

    #[test]
    fn a_known_trace_gives_its_arrows_crosses_and_titles() {
        let svg = render_svg(TRACE).unwrap();
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"server\"").count(), 3);
        assert_eq!(svg.matches("<line class=\"arrow").count(), 3);
        assert_eq!(svg.matches("class=\"arrow dup\"").count(), 1);
        assert_eq!(svg.matches("class=\"cross ").count(), 4);
        for cause in ["partition", "cut", "full", "closed"] {
            assert_eq!(svg.matches(&format!("class=\"cross {cause}\"")).count(), 1);
        }
        assert_eq!(svg.matches("class=\"park\"").count(), 1);
        assert!(svg.contains("data-arrows=\"3\" data-crosses=\"4\" data-held=\"1\""));
        assert!(svg.contains("<title>delivered: msg_id=7 seq=0 1\u{2192}2 sent t=0.000 ms delay=1.500 ms, landed t=1.500 ms</title>"), "{svg}");
        assert!(svg.contains("msg_id=7 seq=0 (duplicate)"));
        assert!(svg.contains(">t=1.500 ms</text>"), "time labels");
        // Every element closes: the document parses as balanced tags.
        assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
    }

    #[test]
    fn a_broadcast_shares_one_row_and_arrows_point_down() {
        let trace = (2..=5)
            .map(|to| {
                format!(
                    "{{\"event\":\"sent\",\"from\":1,\"to\":{to},\"seq\":0,\"copy\":0,\"msg_id\":1}}\n"
                )
            })
            .chain((2..=5).map(|to| {
                format!(
                    "{{\"event\":\"delivered\",\"from\":1,\"to\":{to},\"seq\":0,\"copy\":0,\"msg_id\":1}}\n"
                )
            }))
            .collect::<String>();
        let svg = render_svg(&trace).unwrap();
        let y1: BTreeSet<&str> = svg
            .split("y1=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        // Four arrows from one point (plus the server lines' and legend's tops).
        assert_eq!(svg.matches("<line class=\"arrow\"").count(), 4);
        assert!(y1.contains(&format!("{:.1}", TOP + ROW).as_str()));
        assert!(!svg.contains(">t="), "no time labels without t_us");
    }

    #[test]
    fn bad_lines_are_named_and_html_is_standalone() {
        let e = render_svg("{\"event\":\"sent\"}\nnot json\n").unwrap_err();
        assert_eq!(e.status, Status::InvalidArg);
        assert!(e.message.contains("line 2"), "{}", e.message);
        assert!(render_svg("[1]").unwrap_err().message.contains("line 1"));
        let html = render_html(TRACE, "a <run>").unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>a &lt;run&gt;</title>"));
        assert!(html.contains("<svg ") && !html.contains("<?xml"));
        assert!(
            !html.contains("http://") || !html.contains("src="),
            "nothing fetched"
        );
        assert!(!html.contains("<script"));
        let empty = render_svg("").unwrap();
        assert!(empty.contains("data-arrows=\"0\""));
    }
}
