//! How the release binaries are linked (docs/PERFORMANCE.md, finding 11).
//!
//! An idle corrald's resident memory is mostly its own code. The kernel maps a file's pages 64 KiB
//! at a time around each page fault ("fault-around"), so one function run at start-up keeps its
//! whole 64 KiB neighbourhood resident, and in the compiler's order the ~1 MB of functions that
//! start-up and a client's usual calls run are spread over nearly every block of the 2.8 MB
//! `.text`. Two linker options fix that for release builds:
//!
//! - `link/corrald.ld`, written by `scripts/symbol-order` from a recorded run, places the functions
//!   that ran first, part by part (start-up and idle, then starting services, then a client's
//!   calls), so what runs is packed together. It is an `INSERT BEFORE .text` fragment: the
//!   default layout stays and only these sections move. Its patterns leave out the hashes in
//!   symbol names, which differ between profiles (`cargo bench` builds the binaries with other
//!   hashes than `cargo build --release`); a function renamed since the file was written is
//!   just not moved, so a stale file costs memory, never correctness.
//! - `-z pack-relative-relocs` stores the position-independent binary's ~5000 relative
//!   relocations as DT_RELR (glibc ≥ 2.36) instead of 128 KiB of RELA entries read at every
//!   start.
//!
//! Both need LLD, the linker rustc uses for x86_64-unknown-linux-gnu since 1.90; on any other
//! target, or with `CORRAL_PLAIN_LINK=1`, the binaries are linked as rustc would by default.
//!
//! **The recorded order is opt-in**: only a build with `CORRAL_LINK_ORDER=1` uses it — the
//! release packaging (`scripts/build-deb`) and the benchmark (`scripts/bench`), which measure
//! the binary users run. Every other build, tests included, links in the compiler's order, so
//! no build depends on the file being there or current: with `CORRAL_LINK_ORDER=1` and no file
//! the build warns and goes on, and a stale file only places fewer functions. The file is never
//! handed to the linker as it is: its `*(…)` pattern lines are read, any line that is not one
//! (a corrupt or hand-edited file) is dropped with a warning, and a fresh script is written to
//! `OUT_DIR` — so no content of it can make the link fail.

use std::env;
use std::fs;
use std::path::Path;
use std::process::Command;

const LAYOUT: &str = "link/corrald.ld";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={LAYOUT}");
    println!("cargo:rerun-if-env-changed=CORRAL_PLAIN_LINK");
    println!("cargo:rerun-if-env-changed=CORRAL_LINK_ORDER");

    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = env::var("TARGET").unwrap_or_default();
    let plain = flag("CORRAL_PLAIN_LINK");
    if !release || plain || target != "x86_64-unknown-linux-gnu" || !rustc_links_with_lld() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    if !flag("CORRAL_LINK_ORDER") {
        return;
    }
    let layout = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(LAYOUT);
    let Ok(bytes) = fs::read(&layout) else {
        println!(
            "cargo:warning=CORRAL_LINK_ORDER is set but {LAYOUT} is missing: corrald is linked \
             in the compiler's order (scripts/symbol-order records one)"
        );
        return;
    };
    let (script, placed, dropped) = clean_order(&String::from_utf8_lossy(&bytes));
    if dropped > 0 {
        println!(
            "cargo:warning={LAYOUT}: {dropped} line(s) are not `*(…)` patterns of section \
             names and were left out (run scripts/symbol-order again)"
        );
    }
    let out = Path::new(&env::var_os("OUT_DIR").unwrap_or_default()).join("corrald.ld");
    if placed == 0 || fs::write(&out, script).is_err() {
        println!(
            "cargo:warning={LAYOUT} has no usable pattern: corrald is linked in the compiler's \
             order (scripts/symbol-order records one)"
        );
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=corrald=-Wl,--script={}",
        out.display()
    );
}

/// The linker script for `recorded` (link/corrald.ld as scripts/symbol-order writes it): its
/// pattern lines, `*(SECTION SECTION…)` with section names of the characters mangled symbols
/// and globs use, inside a fixed frame; every other non-frame line is dropped. Returns the
/// script, the patterns kept and the lines dropped.
fn clean_order(recorded: &str) -> (String, usize, usize) {
    let frame = [
        "SECTIONS {",
        ".text.corral_order : {",
        "}",
        "} INSERT BEFORE .text;",
    ];
    let name_char = |c: char| c.is_ascii_alphanumeric() || "_.$*?".contains(c);
    let mut script = String::from("SECTIONS {\n  .text.corral_order : {\n");
    let (mut placed, mut dropped) = (0, 0);
    let mut comment = false;
    for line in recorded.lines().map(str::trim) {
        // The file's comments: the header, and one before each part.
        if comment || line.starts_with("/*") {
            comment = !line.ends_with("*/");
            continue;
        }
        if line.is_empty() || frame.contains(&line) {
            continue;
        }
        let patterns = line
            .strip_prefix("*(")
            .and_then(|l| l.strip_suffix(')'))
            .filter(|p| {
                !p.trim().is_empty()
                    && p.split(' ')
                        .all(|n| !n.is_empty() && n.chars().all(name_char))
            });
        match patterns {
            Some(p) => {
                script.push_str("    *(");
                script.push_str(p);
                script.push_str(")\n");
                placed += 1;
            }
            None => dropped += 1,
        }
    }
    script.push_str("  }\n} INSERT BEFORE .text;\n");
    (script, placed, dropped)
}

/// Whether the environment variable `name` is set to something other than empty or `0`.
fn flag(name: &str) -> bool {
    env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether rustc is 1.90 or later, whose default linker on this target is its own LLD.
fn rustc_links_with_lld() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
