//! corrald's PID 1 duties (DESIGN §6), proven in one QEMU run with corrald as `/init`:
//!
//! - the early mounts (`/proc`, `/sys`, devtmpfs, `/dev/pts`, `/dev/shm`, `/run`, cgroup2 with
//!   `nsdelegate,memory_recursiveprot`), the hostname from `/etc/hostname`;
//! - sysctls the way systemd-sysctl applies them, checked in `/proc/sys`: a same-named file in
//!   `/etc/sysctl.d` masks the whole `/usr/lib/sysctl.d` file, files apply in lexical order of
//!   name across directories, `/etc/sysctl.conf` last, and after modules-load.d (a key that only
//!   a listed module creates);
//! - modules-load.d: the listed modules are loaded (`/proc/modules`, `/sys/module`, the virtio
//!   disk appears), a masked file's module is not;
//! - every autostart unit reaches `active`, in dependency order; boot-to-ready time (guest
//!   uptime when the checks unit starts, i.e. once every other autostart unit is active), with
//!   20 autostart units (14 plain services are added to the image);
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

#[path = "common/vm.rs"]
mod vm;

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

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

    // A small disk: /dev/vda proves virtio_blk loaded, and it counts the boots.
    let disk = tempfile::NamedTempFile::new().expect("creating the disk image");
    disk.as_file()
        .set_len(1 << 20)
        .expect("sizing the disk image");

    let keys = KeyPresser::start(TIMEOUT);
    let vm = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .disk(disk.path())
        // Overrides the harness's -no-reboot: a reboot resets the machine, which boots again.
        .qemu_arg("-action")
        .qemu_arg("reboot=reset")
        // QEMU's own record of a guest power-off (a reset does not go through it).
        .qemu_arg("-trace")
        .qemu_arg("qemu_system_shutdown_request")
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
    let mut rest = out.console.as_str();
    for step in sequence {
        match rest.find(step) {
            Some(at) => rest = &rest[at + step.len()..],
            None => out.fail(&format!(
                "the console lacks {step:?} in the shutdown sequence {sequence:?}"
            )),
        }
    }
    let marker = fs::read(disk.path()).expect("reading the disk image back");
    if !marker.starts_with(LAST_BOOT_MARKER) {
        out.fail(&format!(
            "the disk starts with {:?}, not the last boot's marker",
            String::from_utf8_lossy(&marker[..16])
        ));
    }
    let power_offs = out
        .qemu_stderr
        .lines()
        .filter(|l| l.contains("qemu_system_shutdown_request"))
        .count();
    if power_offs != 1 {
        out.fail(&format!(
            "QEMU saw {power_offs} power-off requests, expected one (the reboot is a reset)"
        ));
    }
    assert_eq!(
        out.exit,
        vm::Exit::PowerOff,
        "expected a clean power-off after the reboot"
    );
}

/// Presses ctrl-alt-del in the guest when it asks: the guest writes a line `ctrl-alt-del` to
/// its second serial port (`/dev/ttyS1`, a socket here), and this sends `sendkey
/// ctrl-alt-delete` to QEMU's human monitor (another socket). QEMU connects to both sockets as
/// a client when it starts.
struct KeyPresser {
    dir: tempfile::TempDir,
    thread: JoinHandle<io::Result<usize>>,
}

impl KeyPresser {
    /// Listens on the two sockets; gives up on QEMU after `limit`.
    fn start(limit: Duration) -> Self {
        let dir = tempfile::tempdir().expect("creating a directory for QEMU's sockets");
        let serial = UnixListener::bind(dir.path().join("ttyS1.sock")).expect("binding ttyS1");
        let monitor =
            UnixListener::bind(dir.path().join("monitor.sock")).expect("binding the monitor");
        let deadline = Instant::now() + limit;
        let thread = thread::spawn(move || press_on_request(&serial, &monitor, deadline));
        KeyPresser { dir, thread }
    }

    /// `vm` with its second serial port and its monitor on the sockets.
    fn attach(&self, vm: vm::Vm) -> vm::Vm {
        let socket = |name: &str| {
            let path = self.dir.path().join(name);
            let path = path
                .to_str()
                .expect("UTF-8 temporary paths")
                .replace(',', ",,");
            format!("socket,id={},path={path}", name.trim_end_matches(".sock"))
        };
        vm.qemu_arg("-chardev")
            .qemu_arg(socket("ttyS1.sock"))
            .qemu_arg("-serial")
            .qemu_arg("chardev:ttyS1")
            .qemu_arg("-chardev")
            .qemu_arg(socket("monitor.sock"))
            .qemu_arg("-mon")
            .qemu_arg("chardev=monitor,mode=readline")
    }

    /// How many times ctrl-alt-del was pressed, once QEMU has exited.
    fn presses(self) -> io::Result<usize> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the key-pressing thread panicked")))
    }
}

fn press_on_request(
    serial: &UnixListener,
    monitor: &UnixListener,
    deadline: Instant,
) -> io::Result<usize> {
    let serial = accept_until(serial, deadline)?;
    let mut monitor = accept_until(monitor, deadline)?;
    let mut presses = 0;
    // Ends when QEMU exits (or is killed) and closes the socket.
    for line in BufReader::new(serial).lines() {
        if line?.trim() == "ctrl-alt-del" {
            monitor.write_all(b"sendkey ctrl-alt-delete\n")?;
            presses += 1;
        }
    }
    Ok(presses)
}

/// Accepts one connection, or fails at `deadline` (QEMU never started).
fn accept_until(listener: &UnixListener, deadline: Instant) -> io::Result<UnixStream> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "QEMU never connected to its sockets",
                ));
            }
            Err(e) => return Err(e),
        }
    }
}
