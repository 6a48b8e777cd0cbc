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

use std::env;
use std::path::Path;
use std::process::Command;

const LAYOUT: &str = "link/corrald.ld";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={LAYOUT}");
    println!("cargo:rerun-if-env-changed=CORRAL_PLAIN_LINK");

    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = env::var("TARGET").unwrap_or_default();
    let plain = env::var_os("CORRAL_PLAIN_LINK").is_some_and(|v| !v.is_empty() && v != "0");
    if !release || plain || target != "x86_64-unknown-linux-gnu" || !rustc_links_with_lld() {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    let layout = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join(LAYOUT);
    if layout.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=corrald=-Wl,--script={}",
            layout.display()
        );
    }
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
