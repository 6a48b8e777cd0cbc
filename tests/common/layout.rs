//! How a release corrald was linked (build.rs): the size of the section the recorded code order
//! (`link/corrald.ld`, opt-in with `CORRAL_LINK_ORDER=1`) fills, read from `readelf -SW`'s
//! section table. Shared by `tests/deb.rs` and the benchmark.

#![allow(dead_code)]

/// The bytes of `.text.corral_order` in `sections` (`readelf -SW`'s output), or `None` when the
/// binary has no such section: no order was asked for, the file was missing, or nothing of it
/// matched this code.
pub fn ordered_code_bytes(sections: &str) -> Option<u64> {
    sections
        .lines()
        .find(|l| l.contains(" .text.corral_order "))
        // `[Nr] Name Type Address Off Size ES Flg Lk Inf Al`: Size is the sixth from the end.
        .and_then(|l| l.split_whitespace().rev().nth(5))
        .and_then(|size| u64::from_str_radix(size, 16).ok())
}
