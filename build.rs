//! Regenerates include/cluster.h from the FFI layer with cbindgen, and
//! derives from the one list of status codes (`enum Status` in
//! src/error.rs) both the header's `cluster_status_t` and the Rust table
//! of their C names.

use std::fmt::Write;

/// A status code as written in src/error.rs.
struct Code {
    rust: String,
    c: String,
    value: i32,
    doc: Vec<String>,
}

/// The variants of `pub enum Status { .. }`, with their docs.
fn status_codes(source: &str) -> Vec<Code> {
    let body = source
        .split_once("pub enum Status {")
        .and_then(|(_, rest)| rest.split_once("\n}"))
        .map(|(body, _)| body)
        .expect("src/error.rs defines `pub enum Status { .. }`");
    let mut codes = Vec::new();
    let mut doc = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(d) = line.strip_prefix("///") {
            doc.push(d.trim().to_string());
        } else if let Some((name, value)) = line.trim_end_matches(',').split_once(" = ") {
            let c = match name {
                "Ok" => "CLUSTER_OK".to_string(),
                _ => format!("CLUSTER_E_{}", screaming(name)),
            };
            codes.push(Code {
                rust: name.to_string(),
                c,
                value: value.parse().expect("status values are integers"),
                doc: std::mem::take(&mut doc),
            });
        }
    }
    codes
}

/// `AddrInUse` -> `ADDR_IN_USE`.
fn screaming(camel: &str) -> String {
    let mut out = String::new();
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// `impl Status { ALL, c_name }`, included by src/error.rs.
fn rust_table(codes: &[Code]) -> String {
    let mut s = String::from("impl Status {\n");
    let _ = writeln!(s, "    /// Every status, in the order of the enum.");
    let _ = writeln!(s, "    pub const ALL: [Status; {}] = [", codes.len());
    for c in codes {
        let _ = writeln!(s, "        Status::{},", c.rust);
    }
    s.push_str("    ];\n\n");
    s.push_str("    /// The stable C name of the code, e.g. `c\"CLUSTER_E_TIMEOUT\"`.\n");
    s.push_str("    pub fn c_name(self) -> &'static std::ffi::CStr {\n        match self {\n");
    for c in codes {
        let _ = writeln!(s, "            Status::{} => c\"{}\",", c.rust, c.c);
    }
    s.push_str("        }\n    }\n}\n");
    s
}

/// The header's `cluster_status_t`.
fn c_enum(codes: &[Code]) -> String {
    let mut s = String::from(
        "\n/*\n Status codes: every function that can fail returns one of these (as an\n \
         int), and writes it with a message into its `cluster_error_t`. The\n \
         numbers never change; new codes only get new numbers.\n */\n\
         typedef enum cluster_status_t {\n",
    );
    for c in codes {
        let _ = writeln!(s, "  /* {} */", c.doc.join(" "));
        let _ = writeln!(s, "  {} = {},", c.c, c.value);
    }
    s.push_str("} cluster_status_t;\n");
    s
}

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/error.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let errors = std::fs::read_to_string(format!("{dir}/src/error.rs")).expect("src/error.rs");
    let codes = status_codes(&errors);
    std::fs::write(format!("{out}/status_table.rs"), rust_table(&codes))
        .expect("OUT_DIR is writable");
    let mut config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    config.after_includes = Some(c_enum(&codes));
    match cbindgen::generate_with_config(&dir, config) {
        Ok(b) => {
            b.write_to_file(format!("{dir}/include/cluster.h"));
        }
        // A half-written tree (e.g. during editing) must not break the build;
        // the header check in CI catches a stale header.
        Err(e) => println!("cargo:warning=cbindgen: {e}"),
    }
}
