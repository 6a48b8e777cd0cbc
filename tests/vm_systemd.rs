//! corrald as a service of systemd — Debian 12's systemd 252 as the guest's PID 1 — with the
//! packaged `corrald.service` (`Type=notify`, `Delegate=yes`, `KillMode=process`): systemd sees
//! it ready, corrald builds its tree in the delegated cgroup and its limits hold, `systemctl
//! reload` re-reads the units; after a crash — which systemd 252 can't restart in place (EBUSY:
//! the no-internal-process rule) — `corrald-recover.service` takes over and adopts the running
//! services with their limits; `systemctl stop` leaves nothing behind; a clean tree starts again,
//! and `daemon-reexec` keeps systemd's main PID and every service.

#[path = "common/skip.rs"]
mod skip;
#[path = "common/vm.rs"]
mod vm;

use std::path::Path;

#[test]
fn corrald_under_systemd_in_the_guest_kernel() {
    let systemd = Path::new("/lib/systemd/systemd");
    if !systemd.is_file() {
        skip::skipped(format!("no {} (the systemd package)", systemd.display()));
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/vm/systemd");
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(systemd, "/lib/systemd/systemd")
        .symlink("/lib/systemd/systemd", "/init")
        .binary("/bin/systemctl", "/usr/bin/systemctl")
        .binary(env!("CARGO_BIN_EXE_corrald"), "/usr/bin/corrald")
        .binary(env!("CARGO_BIN_EXE_corralctl"), "/usr/bin/corralctl")
        .file(
            "/etc/os-release",
            "ID=debian\nNAME=\"corral test\"\n",
            0o644,
        )
        .file("/etc/machine-id", "", 0o444)
        .dir("/var/log/corral", 0o755)
        .copy(
            root.join("packaging/corrald.service"),
            "/etc/systemd/system/corrald.service",
        )
        .copy(
            dir.join("corrald-vm.conf"),
            "/etc/systemd/system/corrald.service.d/vm.conf",
        )
        .copy(
            root.join("packaging/corrald-recover.service"),
            "/etc/systemd/system/corrald-recover.service",
        )
        .copy(
            dir.join("corrald-recover-vm.conf"),
            "/etc/systemd/system/corrald-recover.service.d/vm.conf",
        )
        .copy(
            dir.join("checks.service"),
            "/etc/systemd/system/checks.service",
        )
        .copy(
            dir.join("corral-test.target"),
            "/etc/systemd/system/corral-test.target",
        );
    overlay.checks_dir(&dir, "/etc/corral/units");
    overlay.checks_dir(dir.join("corral"), "/etc/corral/units");
    let overlay = overlay.build();
    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .kernel_param("systemd.unit=corral-test.target")
        .kernel_param("systemd.log_target=console")
        .kernel_param("systemd.show_status=0")
        .env("SYSTEMD_IN_INITRD", "0")
        .timeout(std::time::Duration::from_secs(240))
        .run_reported("systemd");
    out.assert_passed(&[
        "notify-ready",
        "delegated-tree",
        "limit-holds",
        "systemctl-reload",
        "crash-adopts",
        "adopted-limits",
        "systemctl-stop",
        "start-and-reexec",
    ]);
    out.assert_all_passed();
    out.assert_exit(0);
}
