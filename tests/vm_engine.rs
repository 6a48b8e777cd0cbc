//! The manager under pressure, with corrald as PID 1 in a VM (issues 13 and 14; the checks are
//! `tests/vm/engine/engine.sh`):
//!
//! - a unit floods the notify socket for 20 s from its main process and a child
//!   (`examples/notify_flood.rs`): root's `corralctl list` keeps answering (its times are
//!   printed), and the console gets a bounded number of lines about it (counted here);
//! - a start whose child can never exec (its cgroup frozen first) is served off the loop: other
//!   calls and starts go on, and it ends as a `timeout`;
//! - `requires`: stopping a pod's infra unit, or its death, stops the unit that joins its
//!   network namespace;
//! - an OOM-killed unit still shows `OOMKills` ≥ 1 once its cgroup is gone;
//! - 100 finished `corralctl run --wait` leave no unit and no file; a failed one stays;
//! - the attack of issue 14 on a delegated unit (`delegatee.sh`, as an unprivileged user):
//!   its init.scope replaced by a frozen one of its own before a restart; corrald replaces it
//!   and answers throughout; and `KillUnit` reaches every process of that delegated unit;
//! - a delegatee's sprawl (`sprawl.sh`, as an unprivileged user): 3100 cgroups below its
//!   delegated cgroup, walked for `corralctl status` and removed when it stops, both off the
//!   loop.

#[path = "common/vm.rs"]
mod vm;

use std::path::{Path, PathBuf};

/// The flooder, built by `cargo build --examples` (scripts/test does) beside the test binaries
/// (`target/debug/examples`); `cargo test --all-targets` alone builds only its test harness.
fn notify_flood() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("examples/notify_flood"))
        .expect("target/debug/examples");
    assert!(
        path.is_file(),
        "{} is missing: build it with `cargo build --examples` \
         (scripts/test does)",
        path.display()
    );
    path
}

#[test]
fn the_manager_holds_under_pressure_in_the_guest_kernel() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/engine");
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(env!("CARGO_BIN_EXE_corrald"), "/init")
        .binary(env!("CARGO_BIN_EXE_corralctl"), "/usr/bin/corralctl")
        .binary(notify_flood(), "/usr/bin/notify_flood")
        .binary("/usr/bin/busctl", "/usr/bin/busctl")
        .users_and(&[("svc", 1000)])
        .dir("/var/log/corral", 0o755);
    overlay.checks_dir(&dir, "/etc/corral/units");
    let overlay = overlay.build();
    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .timeout(std::time::Duration::from_secs(240))
        .run_reported("engine");
    out.assert_passed(&[
        "notify-flood",
        "exec-hang",
        "requires-stop",
        "oom-kills-kept",
        "transient-collected",
        "delegate-freeze",
        "kill-delegated",
        "delegated-sprawl",
    ]);
    out.assert_all_passed();
    // 20 s of flood, at most 10 lines a second of each kind (and a few at the edges).
    for what in ["status: flood", "not the main process"] {
        let lines = out.console.lines().filter(|l| l.contains(what)).count();
        eprintln!("console lines with {what:?}: {lines}");
        assert!(
            lines <= 300,
            "{lines} console lines with {what:?}: a flood from a unit must not reach the console"
        );
    }
    assert!(
        out.console.contains("more like this suppressed"),
        "the lines held back are counted"
    );
    assert!(
        matches!(out.exit, vm::Exit::PowerOff),
        "expected a clean power-off, got {}",
        out.exit
    );
}
