//! Regenerates include/cluster.h from the FFI layer with cbindgen.

fn main() {
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    match cbindgen::generate_with_config(&dir, config) {
        Ok(b) => {
            b.write_to_file(format!("{dir}/include/cluster.h"));
        }
        // A half-written tree (e.g. during editing) must not break the build;
        // the header check in CI catches a stale header.
        Err(e) => println!("cargo:warning=cbindgen: {e}"),
    }
}
