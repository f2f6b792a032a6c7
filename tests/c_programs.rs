//! Builds every C program in tests/c with `-Wall -Wextra -Werror` against
//! include/cluster.h and the shared library, and runs each under valgrind:
//! it must pass its own checks with no memory error and no definite leak.
//! The examples that run on their own (examples/epoll.c) are built and run
//! the same way, on free loopback ports.

mod common;
use std::path::{Path, PathBuf};
use std::process::Command;

/// target/<profile>, where cargo put libcluster.so for this test binary.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e} (is it installed?)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn c_programs_pass_under_valgrind() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = lib_dir();
    assert!(
        lib.join("libcluster.so").exists(),
        "libcluster.so not found in {}: run `cargo build` first (cargo test does not build the cdylib)",
        lib.display()
    );
    let mut sources: Vec<PathBuf> = std::fs::read_dir(root.join("tests/c"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    assert!(!sources.is_empty(), "no C programs in tests/c");
    for src in sources {
        let name = src.file_stem().unwrap().to_string_lossy().to_string();
        let text = build_and_run(&src, &lib, &[]);
        assert!(text.contains(" passed, 0 failed"), "{name}:\n{text}");
        println!("{name}: {}", text.trim());
    }
}

#[test]
fn the_epoll_example_runs_under_valgrind() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = common::config(2, "");
    let text = build_and_run(&root.join("examples/epoll.c"), &lib_dir(), &[&config]);
    assert!(text.contains("epoll: 200 ping-pong rounds"), "{text}");
}

/// Compiles `src` against the header and the library in `lib` with every
/// warning an error, and runs it under valgrind with `args`; its output.
fn build_and_run(src: &Path, lib: &Path, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let name = src.file_stem().unwrap().to_string_lossy().to_string();
    let out_dir = lib.join("c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let bin = out_dir.join(&name);
    run(
        Command::new("cc")
            .args([
                "-std=c11",
                "-D_DEFAULT_SOURCE",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-g",
            ])
            .arg(format!("-I{}", root.join("include").display()))
            .arg(src)
            .arg("-o")
            .arg(&bin)
            .arg(format!("-L{}", lib.display()))
            .arg("-lcluster")
            .arg(format!("-Wl,-rpath,{}", lib.display())),
        &format!("compiling {name}.c"),
    );
    run(
        Command::new("valgrind")
            .args([
                "--quiet",
                "--leak-check=full",
                "--show-possibly-lost=no",
                "--errors-for-leak-kinds=definite,indirect",
                "--error-exitcode=99",
            ])
            .arg(&bin)
            .args(args),
        &format!("{name} under valgrind"),
    )
}
