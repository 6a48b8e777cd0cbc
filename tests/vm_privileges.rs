//! corrald as PID 1 of a VM, attacked as issue 14 describes, in the guest kernel:
//! - **mount paths through symlinks** (the class of runc's CVE-2021-30465): a service root
//!   (`/srv/evil`) whose `etc` is a symlink to the host's `/etc`, and whose `up` climbs out
//!   (`../../..`), with `propagation = "shared"` on a host whose `/` is shared. A bind onto
//!   `/etc`, `read-only-paths = ["/etc"]`, a bind target to be created under it, and one
//!   through `up`: each start fails naming the path, and the host's `/etc` is neither mounted
//!   over, made read-only, nor written to. A symlink-free root with shared propagation starts,
//!   and none of its mounts reach the host, while the host's reach it;
//! - **`file:` outputs**: `out.service` runs as `svc` with `stdout = "file:/var/log/svc/out.log"`
//!   in a directory svc owns. svc replaces the file with a symlink to `/etc/victim`, a FIFO and a
//!   hard link to it; each following start fails at once, `/etc/victim` is unchanged, and
//!   `corralctl list` answers right after;
//! - **capabilities** from inside (`/proc/self/status`): root with a two-capability bounding set
//!   and `no-new-privileges` (and `chown` refused), svc with `CAP_NET_BIND_SERVICE` ambient
//!   serving busybox httpd on port 80, and the control without it refused port 81.
//!
//! `checks.service` (`checks.sh`) prints the `CORRAL-CHECK` lines; corrald's reasons for the
//! refused starts are on the console (its stderr as PID 1), where this test reads them.

#[path = "common/vm.rs"]
mod vm;

use std::path::Path;

#[test]
fn privileges_hold_against_an_attacker_in_the_guest_kernel() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/privileges");
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(env!("CARGO_BIN_EXE_corrald"), "/init")
        .binary(env!("CARGO_BIN_EXE_corralctl"), "/usr/bin/corralctl")
        // svc (1001): the service account the attacks run as.
        .users_and(&[("svc", 1001)])
        .file("/etc/victim", "victim: root's file\n", 0o644)
        .dir("/etc/corral/units", 0o755)
        .dir("/var/log/corral", 0o755)
        .dir("/var/log/svc", 0o755)
        .dir("/var/priv", 0o1777)
        .file("/srv/payload/payload-marker", "payload\n", 0o644)
        .file("/srv/www/index.html", "corral web\n", 0o644)
        // The attacker's root: etc points at the host's /etc, up climbs out of the root.
        .symlink("/etc", "/srv/evil/etc")
        .symlink("../../..", "/srv/evil/up")
        // A symlink-free root.
        .dir("/srv/good/proc", 0o555)
        .dir("/srv/good/tmp", 0o1777)
        .file("/srv/good/etc/hostname", "good\n", 0o644);
    overlay.checks_dir(&dir, "/etc/corral/units");
    let overlay = overlay.build();
    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .timeout(std::time::Duration::from_secs(300))
        .run_reported("privileges");
    out.assert_passed(&[
        "mount-symlink-bind",
        "mount-symlink-read-only",
        "mount-symlink-create",
        "mount-symlink-up",
        "shared-no-leak",
        "shared-receives",
        "caps-root-bounding",
        "caps-ambient-port-80",
        "caps-control",
        "out-file-created",
        "out-symlink",
        "out-fifo",
        "out-hardlink",
    ]);
    out.assert_all_passed();
    // corrald's own word on each refused start: one console line names the unit and the reason.
    let never = "the path goes through a symbolic link, which mount setup never follows";
    let out_log = "stdout = \"file:/var/log/svc/out.log\"";
    let reasons = [
        (
            "evil-bind.service",
            format!("mount target /etc in /srv/evil: {never}"),
        ),
        (
            "evil-ro.service",
            format!("mount target /etc in /srv/evil: {never}"),
        ),
        (
            "evil-create.service",
            format!("mount target /etc/corral-pwned/x in /srv/evil: {never}"),
        ),
        (
            "evil-up.service",
            format!("mount target /up/etc/corral-up in /srv/evil: {never}"),
        ),
        (
            "out.service",
            format!("{out_log}: a component of the path is a symbolic link"),
        ),
        (
            "out.service",
            format!("{out_log}: a FIFO or a device, not a regular file"),
        ),
        ("out.service", format!("{out_log}: it has 2 hard links")),
    ];
    for (unit, reason) in reasons {
        let said = out
            .console
            .lines()
            .any(|l| l.contains(unit) && l.contains(&reason));
        if !said {
            out.fail(&format!("no console line says why {unit} failed: {reason}"));
        }
    }
    assert!(
        matches!(out.exit, vm::Exit::PowerOff),
        "expected a clean power-off, got {}",
        out.exit
    );
}
