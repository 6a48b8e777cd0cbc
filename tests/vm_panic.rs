//! PID 1 keeps its promises after a panic (DESIGN §6), proven in one QEMU run of two boots with
//! corrald as `/init` and the test-only trigger `CORRAL_TEST_PANIC=accept` on the kernel command
//! line (init's environment), which makes the private socket's accept loop — a spawned task —
//! panic at its next connection:
//!
//! - the panic is logged (thread, place, message) and PID 1 falls back: the API is gone, the
//!   services keep running, orphans reparented to PID 1 are still reaped;
//! - boot 1 ends with a real ctrl-alt-del (pressed through QEMU's monitor, as in
//!   tests/vm_boot.rs): the fallback reboots the machine; boot 2 ends with `kill -TERM 1`: the
//!   fallback powers it off (QEMU's trace shows one power-off request, the reboot is a reset);
//! - before the panic, boot 1 floods the console from a restart loop of a unit whose program
//!   does not exist (a spawn failure and state changes a cycle, hundreds of cycles a second):
//!   corrald's lines on the console stay within [`corral::console`]'s bound, and the count of
//!   what was held back is said.
//!
//! Units and script: `tests/vm/panic/`.

#[path = "common/keys.rs"]
mod keys;
#[path = "common/vm.rs"]
mod vm;

use std::path::Path;
use std::time::Duration;

use corral::console::{INFO_BURST, INFO_PER_SECOND, WARN_BURST, WARN_PER_SECOND};
use keys::KeyPresser;

/// The time limit for both boots.
const TIMEOUT: Duration = Duration::from_secs(300);

/// The restart cycles of `flood.service` (its `start-limit` burst); each logs one error, the
/// failed spawn.
const FLOOD_CYCLES: u32 = 500;

#[test]
fn pid1_reaps_and_ends_the_machine_after_a_panic_and_bounds_its_console() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/panic");
    let kernel = vm::Kernel::host();
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(env!("CARGO_BIN_EXE_corrald"), "/init")
        .binary(env!("CARGO_BIN_EXE_corralctl"), "/usr/bin/corralctl")
        .dir("/etc/corral/units", 0o755)
        .dir("/var/log/corral", 0o755)
        .file(
            "/etc/modules-load.d/disk.conf",
            "virtio_pci\nvirtio_blk\n",
            0o644,
        )
        .kernel_modules(kernel, &["virtio_pci", "virtio_blk"]);
    overlay.checks_dir(&dir, "/etc/corral/units");
    let overlay = overlay.build();
    // The disk counts the boots.
    let disk = vm::scratch_disk();

    let keys = KeyPresser::start();
    let vm = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .disk(disk.path())
        .env("CORRAL_TEST_PANIC", "accept")
        .reset_on_reboot()
        .timeout(TIMEOUT);
    let out = keys.attach(vm).run_reported("panic");
    let presses = keys.presses();

    let per_boot = [
        "sleeper-runs",
        "api-gone",
        "services-kept",
        "orphans-reparented",
        "orphans-reaped",
    ];
    out.assert_passed(&per_boot);
    out.assert_passed(&["flood-over"]);
    out.assert_all_passed();
    for name in per_boot {
        let n = out.checks.iter().filter(|c| c.name == name).count();
        if n != 2 {
            out.fail(&format!(
                "check {name} reported {n} times, not once per boot"
            ));
        }
    }
    match presses {
        Ok(1) => {}
        Ok(n) => out.fail(&format!("ctrl-alt-del pressed {n} times, not once")),
        Err(e) => out.fail(&format!("pressing ctrl-alt-del: {e}")),
    }

    // The panic, logged; the fallback; the end of each boot by its signal.
    let panic_line = "panic in thread main at src/bus/server.rs";
    let sequence = [
        "panic-check: connecting, which panics",
        panic_line,
        "CORRAL_TEST_PANIC: a panic injected at Accept",
        "corrald can't manage this machine any more",
        "panic-check: boot 1 done, pressing ctrl-alt-del",
        "Reboot requested; ending the machine without its manager",
        "pid1: Reboot",
        "reboot: Restarting system",
        "panic-check: connecting, which panics",
        panic_line,
        "corrald can't manage this machine any more",
        "panic-check: boot 2 done, sending SIGTERM to PID 1",
        "PowerOff requested; ending the machine without its manager",
        "pid1: PowerOff",
        "reboot: Power down",
    ];
    out.assert_in_order(&sequence);
    if out.console.contains("no ctrl-alt-del arrived") {
        out.fail("ctrl-alt-del did not reach PID 1 after its panic");
    }
    out.assert_one_power_off();

    // The console during the flood: corrald's lines within the bound, by its own timestamps.
    // From the start of the console (boot 1) to the check's word that the flood is over.
    let flood = section(&out.console, "", "panic-check: flood over")
        .unwrap_or_else(|| out.fail("the flood's end is not on the console"));
    let stamped: Vec<f64> = flood.lines().filter_map(timestamp).collect();
    let notes = flood
        .lines()
        .filter(|l| l.contains("held back (at most"))
        .count();
    let (Some(first), Some(last)) = (stamped.first(), stamped.last()) else {
        out.fail("no line of corrald during the flood");
    };
    let span = (last - first).rem_euclid(86_400.0);
    let bound = f64::from(INFO_BURST + WARN_BURST)
        + f64::from(INFO_PER_SECOND + WARN_PER_SECOND) * (span + 1.0);
    let errors = flood
        .lines()
        .filter(|l| timestamp(l).is_some() && l.contains("ERROR"))
        .count();
    eprintln!(
        "console during the flood: {} lines of corrald in {span:.1} s (bound {bound:.0}), \
         {errors} of them errors, {notes} notes of lines held back",
        stamped.len()
    );
    if stamped.len() as f64 > bound {
        out.fail(&format!(
            "{} console lines in {span:.1} s: more than the bound of {bound:.0}",
            stamped.len()
        ));
    }
    // Whether the flood offered more errors than the bound lets through in its span. On a
    // quiet host it does many times over; a guest slowed by a busy host may cycle so slowly
    // that nothing needs holding back, and then only the bound above is proven.
    let error_allowance = f64::from(WARN_BURST) + f64::from(WARN_PER_SECOND) * (span + 1.0);
    if f64::from(FLOOD_CYCLES) > error_allowance {
        if notes == 0 {
            out.fail(&format!(
                "nothing was held back, though {FLOOD_CYCLES} errors in {span:.1} s exceed \
                 the {error_allowance:.0} the bound lets through"
            ));
        }
    } else {
        eprintln!(
            "the flood was too slow to reach the bound ({FLOOD_CYCLES} errors in {span:.1} s, \
             {error_allowance:.0} let through): the guest ran slowly on a busy host"
        );
    }
}

/// The console between the first `from` and the next `to` after it.
fn section<'a>(console: &'a str, from: &str, to: &str) -> Option<&'a str> {
    let start = console.find(from)? + from.len();
    let len = console[start..].find(to)?;
    Some(&console[start..start + len])
}

/// Seconds of the day of a line of corrald's log (`2026-12-03T06:00:00.123456Z  INFO …`).
fn timestamp(line: &str) -> Option<f64> {
    let token = line.split_whitespace().next()?;
    let time = token.get(11..)?.strip_suffix('Z')?;
    if token.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}
