//! corrald's PID 1 duties (DESIGN §6), proven in one QEMU run with corrald as `/init`:
//!
//! - the early mounts (`/proc`, `/sys`, devtmpfs, `/dev/pts`, `/dev/shm`, `/run`, cgroup2 with
//!   `nsdelegate,memory_recursiveprot`), the hostname from `/etc/hostname`;
//! - `corralctl doctor` in the guest: the unified layout, corrald as PID 1, no error;
//! - sysctls the way systemd-sysctl applies them, checked in `/proc/sys`: a same-named file in
//!   `/etc/sysctl.d` masks the whole `/usr/lib/sysctl.d` file, files apply in lexical order of
//!   name across directories, `/etc/sysctl.conf` last, and after modules-load.d (a key that only
//!   a listed module creates);
//! - modules-load.d: the listed modules are loaded (`/proc/modules`, `/sys/module`, the virtio
//!   disk appears), a masked file's module is not;
//! - every autostart unit reaches `active`, in dependency order; boot-to-ready time (guest
//!   uptime when the checks unit starts, i.e. once every other autostart unit is active), with
//!   20 autostart units (14 plain services are added to the image);
//! - the kernel's words for init on the command line (`splash single 3`) are ignored, as they
//!   must be (an init that exits over them panics the kernel);
//! - orphans of a double-forking service are reparented to PID 1 and reaped (no zombie left);
//! - the shutdown paths, in one QEMU run of three boots (QEMU runs with `-action reboot=reset`,
//!   so a reboot really boots again; the disk counts the boots): boot 1 ends with a real
//!   ctrl-alt-del — the guest asks on its second serial port, the test sends `sendkey
//!   ctrl-alt-delete` to QEMU's monitor, the kernel signals SIGINT to PID 1 because corrald
//!   disabled CAD — and corrald stops every unit and reboots; boot 2 ends with `kill -INT 1`
//!   (reboot again); boot 3 with `kill -TERM 1` (power off: QEMU's trace shows one guest
//!   power-off request, the resets don't go through it).
//!
//! Units and scripts: `tests/vm/boot/`; the files under `tests/vm/boot/root/` are copied to the
//! guest's `/` as they are. `/run/sysctl.d` and `/run/modules-load.d` are not covered here:
//! `/run` is a fresh tmpfs mounted by corrald itself, so nothing can put files there before
//! corrald reads them (the unit tests in `src/boot/` cover that directory's precedence).

#[path = "common/keys.rs"]
mod keys;
#[path = "common/vm.rs"]
mod vm;

use std::fs;
use std::path::Path;
use std::time::Duration;

use keys::KeyPresser;

/// The autostart unit that ends each boot; it is still running when PID 1 gets the signal.
const FINISH_UNIT: &str = "finish.service";

/// Plain services added to the image beside the files of `tests/vm/boot/`, so that
/// boot-to-ready is measured with 20 autostart units (issue 8's boot figure).
const FLEET: usize = 14;

/// One of them: running, and ordered before the checks unit.
const FLEET_UNIT: &str = "[unit]\nautostart = true\nbefore = [\"checks.service\"]\n\
                          [service]\nexec = [\"/bin/sleep\", \"100000\"]\n";

/// The boots of the run: ctrl-alt-del, SIGINT and SIGTERM end them (`finish.sh`).
const BOOTS: usize = 3;

/// What the last boot leaves at the start of the disk (`finish.sh`).
const LAST_BOOT_MARKER: &[u8] = b"corral-boot-3";

/// The time limit for all three boots.
const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn pid1_duties_hold_in_the_guest_kernel() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/boot");
    let kernel = vm::Kernel::host();
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(env!("CARGO_BIN_EXE_corrald"), "/init")
        .binary(env!("CARGO_BIN_EXE_corralctl"), "/usr/bin/corralctl")
        .dir("/etc/corral/units", 0o755)
        .dir("/var/log/corral", 0o755)
        .kernel_modules(
            kernel,
            &["virtio_pci", "virtio_blk", "loop", "brd", "br_netfilter"],
        );
    overlay.copy_tree(dir.join("root"), "/");
    let mut autostart: Vec<String> = overlay
        .checks_dir(&dir, "/etc/corral/units")
        .into_iter()
        .filter(|name| {
            let text = fs::read_to_string(dir.join(name)).expect("reading a unit file");
            text.lines().any(|l| l.trim() == "autostart = true")
        })
        .map(|name| name.trim_end_matches(".toml").to_owned())
        .collect();
    for i in 1..=FLEET {
        let unit = format!("fleet-{i}.service");
        overlay.file(format!("/etc/corral/units/{unit}.toml"), FLEET_UNIT, 0o644);
        autostart.push(unit);
    }
    let overlay = overlay.build();

    // /dev/vda proves virtio_blk loaded, and it counts the boots.
    let disk = vm::scratch_disk();

    let keys = KeyPresser::start();
    let vm = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .disk(disk.path())
        // Words the kernel hands to init as arguments (Ubuntu's `splash`, runlevels): PID 1
        // must boot with them, not exit over them (DESIGN §6).
        .kernel_param("splash")
        .kernel_param("single")
        .kernel_param("3")
        .reset_on_reboot()
        .timeout(TIMEOUT);
    let out = keys.attach(vm).run();
    let presses = keys.presses();
    eprintln!(
        "VM boot test: {:.2} s wall for {BOOTS} boots, {}; ctrl-alt-del pressed: {}",
        out.wall.as_secs_f64(),
        out.exit,
        match &presses {
            Ok(n) => format!("{n} time(s)"),
            Err(e) => e.to_string(),
        }
    );
    if out.timed_out() {
        out.fail("the VM timed out");
    }
    for check in out.checks.iter().filter(|c| c.name == "boot-to-ready") {
        eprintln!(
            "boot-to-ready (kernel start → all {} autostart units active): {}",
            autostart.len(),
            check.detail
        );
    }

    let checks = [
        "boot-to-ready",
        "mounts",
        "cgroup2-options",
        "doctor",
        "hostname",
        "sysctl-masking",
        "sysctl-order",
        "sysctl-conf-last",
        "sysctl-after-modules",
        "modules-load",
        "units-ran",
        "orphans-reaped",
        "ctrl-alt-del-disabled",
        "reboot-ctrl-alt-del",
        "reboot-sigint",
    ];
    out.assert_passed(&checks);
    out.assert_all_passed();
    let readies = out
        .checks
        .iter()
        .filter(|c| c.name == "boot-to-ready")
        .count();
    if readies != BOOTS {
        out.fail(&format!(
            "expected {BOOTS} boots to get ready, saw {readies}"
        ));
    }
    match presses {
        Ok(1) => {}
        Ok(n) => out.fail(&format!(
            "the guest asked for ctrl-alt-del {n} times, not once"
        )),
        Err(e) => out.fail(&format!(
            "pressing ctrl-alt-del through QEMU's monitor: {e}"
        )),
    }

    // corrald's own record: every autostart unit went active on every boot, none failed.
    for unit in &autostart {
        let tag = format!("unit={unit}");
        let actives = out
            .console
            .lines()
            .filter(|l| l.contains(&tag) && l.contains("→ active ("))
            .count();
        if unit != FINISH_UNIT && actives != BOOTS {
            out.fail(&format!(
                "{unit} went active {actives} times, expected once per boot"
            ));
        }
        if let Some(line) = out
            .console
            .lines()
            .find(|l| l.contains(&tag) && l.contains("→ failed"))
        {
            out.fail(&format!("{unit} failed: {line}"));
        }
        let started = out
            .console
            .lines()
            .filter(|l| l.contains(&tag) && l.contains("→ activating ("))
            .count()
            + actives;
        if started < BOOTS {
            out.fail(&format!("{unit} did not start on every boot"));
        }
    }

    // The sysctl problems are reported and the boot goes on; `-key` failures are silent.
    if !out.console.contains("corral_missing_key") {
        out.fail("no warning about the missing sysctl key kernel.corral_missing_key");
    }
    if out.console.contains("corral_optional_key") {
        out.fail("a warning about -kernel.corral_optional_key, whose failure must be ignored");
    }

    // The shutdown paths, in order: ctrl-alt-del → stop every unit → reboot; SIGINT → the
    // same; SIGTERM → stop every unit → power off.
    if out.console.contains("no ctrl-alt-del arrived") {
        out.fail("ctrl-alt-del did not reach PID 1 (finish.sh fell back to kill -INT 1)");
    }
    // corrald's last words name the reboot(2) command; the kernel's own line says what it did.
    let sequence = [
        "pressing ctrl-alt-del",
        "stopping every unit",
        "every unit stopped",
        "pid1: Reboot",
        "reboot: Restarting system",
        "sending SIGINT to PID 1",
        "stopping every unit",
        "every unit stopped",
        "pid1: Reboot",
        "reboot: Restarting system",
        "sending SIGTERM to PID 1",
        "stopping every unit",
        "every unit stopped",
        "pid1: PowerOff",
        "reboot: Power down",
    ];
    out.assert_in_order(&sequence);
    let marker = fs::read(disk.path()).expect("reading the disk image back");
    if !marker.starts_with(LAST_BOOT_MARKER) {
        out.fail(&format!(
            "the disk starts with {:?}, not the last boot's marker",
            String::from_utf8_lossy(&marker[..16])
        ));
    }
    out.assert_one_power_off();
}
