//! corral against Debian's systemd 252 as the PID 1 of the same VM (issue 13's proof): the
//! same 20 autostarted `/bin/sleep` services under each, and a unit ordered after all 20 that
//! reports (`tests/vm/compare/compare.sh`)
//!
//! - **boot**: the guest's uptime when it runs, minus the kernel's `Run /init as init process`
//!   stamp in `dmesg` — PID 1's part of the boot only;
//! - **PID 1's CPU per start**: PID 1's utime + stime (`/proc/1/stat`, threads included) over
//!   `runs` sequential `corralctl run --wait -- /bin/true` or `systemd-run -q -p Type=oneshot
//!   -p DefaultDependencies=no /bin/true` calls, divided by `runs` (a whole transient service's life each: start, exit,
//!   collection). systemd-run's `--wait` needs a D-Bus daemon (it refuses systemd's private
//!   socket, which cannot hold a unit reference); a `oneshot` start waits the same way — its job
//!   ends when `/bin/true` has exited — and goes over the private socket, as corralctl does.
//!
//! The services are equivalent under both: corral's `simple` is active once its `execve`
//! succeeded, which in systemd is `Type=exec`; nothing else is started (systemd gets a target
//! of its own with `DefaultDependencies=no`, as `tests/vm_systemd.rs` does; corrald runs without
//! a bus, as systemd here has none). Both log at their `quiet` default: warnings only.
//!
//! Used by `tests/vm_compare.rs` (one boot each, figures printed, sanity bounds only) and by
//! `scripts/bench --vm` (the median of three boots each, with release binaries, beside the
//! floor: busybox `sh` as PID 1 forking the same sleeps, [`Init::Floor`]).

// The test boots corral and systemd; the benchmark the floor too.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use super::vm;

/// The services both boots start.
pub const SERVICES: usize = 20;

/// USER_HZ, the unit of `/proc/PID/stat` times: 100 on x86 whatever the kernel's HZ.
const TICKS_PER_SEC: u64 = 100;

/// Which PID 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    Corral,
    Systemd,
    /// The floor: busybox `sh` as PID 1 mounting `/proc` and `/dev` (a background job's stdin
    /// is `/dev/null`: without it no sleep starts), forking the 20 `/bin/sleep`s and
    /// running the report — what any init must do, without supervising anything. busybox runs
    /// `/bin/sleep` as an applet in the forked child (no `execve`, so its command line is not
    /// `/bin/sleep 100000`): the `sleeps` it reports is not a count, and it makes no `run` calls.
    Floor,
}

impl Init {
    pub fn name(self) -> &'static str {
        match self {
            Init::Corral => "corral",
            Init::Systemd => "systemd 252",
            Init::Floor => "floor (busybox sh)",
        }
    }
}

/// What one boot measured.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The kernel ran `/init` → the unit after the 20 services runs.
    pub to_ready: Duration,
    /// The `/bin/sleep 100000` processes running then.
    pub sleeps: usize,
    /// PID 1's CPU time until then.
    pub boot_cpu: Duration,
    /// The `run` calls made, and how many failed.
    pub runs: usize,
    pub failed: usize,
    /// PID 1's CPU time over the calls.
    pub run_cpu: Duration,
    /// The calls' wall time in the guest.
    pub run_wall: Duration,
}

impl Boot {
    /// PID 1's CPU time per `run` call.
    pub fn cpu_per_run(&self) -> Duration {
        self.run_cpu / self.runs.max(1) as u32
    }
}

/// The systemd binaries the comparison needs on the host; `None` when systemd isn't installed.
pub fn systemd_available() -> bool {
    [
        "/lib/systemd/systemd",
        "/usr/bin/systemd-run",
        "/bin/systemctl",
    ]
    .iter()
    .all(|p| Path::new(p).is_file())
}

/// The image overlay for `init`, with `runs` `run` calls after boot. `corrald` and `corralctl`
/// are the binaries to measure.
pub fn image(init: Init, corrald: &Path, corralctl: &Path, runs: usize) -> vm::Image {
    overlay(init, corrald, corralctl, runs).build()
}

/// The corral image of [`image`] whose unit after the services profiles PID 1 with `perf`
/// over `runs` calls instead (`tests/vm/compare/profile.sh`); `None` without `/usr/bin/perf`
/// (Debian's `linux-perf`). `corrald` should keep its symbols (a release build with
/// `CARGO_PROFILE_RELEASE_STRIP=false`).
pub fn profile_image(corrald: &Path, corralctl: &Path, runs: usize) -> Option<vm::Image> {
    let perf = Path::new("/usr/bin/perf");
    if !perf.is_file() {
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/compare/profile.sh");
    let mut overlay = overlay(Init::Corral, corrald, corralctl, runs);
    overlay
        .copy(&script, "/checks/compare.sh")
        .binary(perf, perf);
    Some(overlay.build())
}

/// Boots a [`profile_image`] and returns perf's report of PID 1 (its inclusive shares by
/// function); panics with the console's tail when the guest did not give one.
pub fn profile(image: &vm::Image) -> String {
    let out = vm::Vm::new(vm::base_image())
        .initrd(image.path())
        .memory_mib(1024)
        .timeout(Duration::from_secs(900))
        .kernel_param("corral.log-level=warn")
        .kernel_param("corral.no-bus")
        .run_reported("corral, profiled");
    out.assert_passed(&["profile"]);
    let report: Vec<&str> = out
        .console
        .lines()
        .skip_while(|l| !l.contains("PROFILE-BEGIN"))
        .skip(1)
        .take_while(|l| !l.contains("PROFILE-END"))
        .collect();
    if report.is_empty() {
        out.fail("perf printed no report");
    }
    report.join("\n")
}

fn overlay(init: Init, corrald: &Path, corralctl: &Path, runs: usize) -> vm::Initramfs {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/compare/compare.sh");
    let mut overlay = vm::Initramfs::new();
    overlay.copy(&script, "/checks/compare.sh").file(
        "/etc/compare/runs",
        format!("{}\n", if init == Init::Floor { 0 } else { runs }),
        0o644,
    );
    let sleeps: Vec<String> = (1..=SERVICES)
        .map(|i| format!("sleep-{i}.service"))
        .collect();
    match init {
        Init::Floor => {
            let init = format!(
                "#!/bin/sh\nmount -t proc proc /proc\nmount -t devtmpfs devtmpfs /dev\ni=0\nwhile [ $i -lt {SERVICES} ]; do \
                 /bin/sleep 100000 & i=$((i + 1)); done\nexec /bin/sh /checks/compare.sh\n"
            );
            overlay.file("/init", init, 0o755);
        }
        Init::Corral => {
            overlay
                .binary(corrald, "/init")
                .binary(corralctl, "/usr/bin/corralctl")
                .dir("/var/log/corral", 0o755)
                .file(
                    "/etc/compare/run-one",
                    "#!/bin/sh\nexec /usr/bin/corralctl run --wait -- /bin/true\n",
                    0o755,
                );
            for name in &sleeps {
                overlay.file(
                    format!("/etc/corral/units/{name}.toml"),
                    "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sleep\", \"100000\"]\n",
                    0o644,
                );
            }
            let after: Vec<String> = sleeps.iter().map(|n| format!("\"{n}\"")).collect();
            overlay.file(
                "/etc/corral/units/compare.service.toml",
                format!(
                    "[unit]\nautostart = true\nafter = [{}]\n[service]\ntype = \"oneshot\"\n\
                     exec = [\"/bin/sh\", \"/checks/compare.sh\"]\nstdout = \"inherit\"\n\
                     stderr = \"inherit\"\nstart-timeout = \"10min\"\n",
                    after.join(", ")
                ),
                0o644,
            );
        }
        Init::Systemd => {
            overlay
                .binary("/lib/systemd/systemd", "/lib/systemd/systemd")
                .symlink("/lib/systemd/systemd", "/init")
                .binary("/bin/systemctl", "/usr/bin/systemctl")
                .binary("/usr/bin/systemd-run", "/usr/bin/systemd-run")
                .file(
                    "/etc/os-release",
                    "ID=debian\nNAME=\"corral comparison\"\n",
                    0o644,
                )
                .file("/etc/machine-id", "", 0o444)
                .file(
                    "/etc/compare/run-one",
                    "#!/bin/sh\nexec /usr/bin/systemd-run -q -p Type=oneshot -p DefaultDependencies=no /bin/true\n",
                    0o755,
                );
            for name in &sleeps {
                overlay.file(
                    format!("/etc/systemd/system/{name}"),
                    "[Unit]\nDefaultDependencies=no\n[Service]\nType=exec\n\
                     ExecStart=/bin/sleep 100000\n",
                    0o644,
                );
            }
            overlay
                .file(
                    "/etc/systemd/system/compare.service",
                    format!(
                        "[Unit]\nDefaultDependencies=no\nAfter={}\n[Service]\nType=oneshot\n\
                         ExecStart=/bin/sh /checks/compare.sh\nStandardOutput=tty\n\
                         StandardError=tty\nTTYPath=/dev/console\n",
                        sleeps.join(" ")
                    ),
                    0o644,
                )
                .file(
                    "/etc/systemd/system/compare.target",
                    format!(
                        "[Unit]\nDescription=corral comparison\nWants={} compare.service\n",
                        sleeps.join(" ")
                    ),
                    0o644,
                );
        }
    }
    overlay
}

/// Boots `image` (from [`image`] for `init`) once and reads its figures; panics with the
/// console's tail when the guest did not report them.
pub fn boot(init: Init, image: &vm::Image) -> Boot {
    let mut machine = vm::Vm::new(vm::base_image())
        .initrd(image.path())
        .timeout(Duration::from_secs(300));
    machine = match init {
        // The harness asks for corrald's informational lines; `quiet` alone means warnings.
        Init::Corral => machine
            .kernel_param("corral.log-level=warn")
            .kernel_param("corral.no-bus"),
        Init::Systemd => machine
            .kernel_param("systemd.unit=compare.target")
            .kernel_param("systemd.show_status=0")
            .env("SYSTEMD_IN_INITRD", "0"),
        Init::Floor => machine,
    };
    let out = machine.run_reported(init.name());
    let field = |check: &str, key: &str| -> f64 {
        let Some(c) = out.check(check) else {
            out.fail(&format!("the guest never reported {check}"));
        };
        c.detail
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| out.fail(&format!("{check}: no number {key}= in {:?}", c.detail)))
    };
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let ticks = |t: f64| Duration::from_millis(t as u64 * 1000 / TICKS_PER_SEC);
    let boot = Boot {
        to_ready: secs(field("compare-ready", "ready") - field("compare-ready", "init")),
        sleeps: field("compare-ready", "sleeps") as usize,
        boot_cpu: ticks(field("compare-ready", "pid1_ticks")),
        runs: field("compare-runs", "runs") as usize,
        failed: field("compare-runs", "failed") as usize,
        run_cpu: ticks(field("compare-runs", "pid1_ticks")),
        run_wall: secs(field("compare-runs", "to") - field("compare-runs", "from")),
    };
    out.assert_exit(0);
    eprintln!(
        "{}: /init → ready {:.2} s ({} sleeps running, PID 1 CPU {:?}); {} runs ({} failed) in \
         {:.2} s, PID 1 CPU {:?} = {:.1} ms per run",
        init.name(),
        boot.to_ready.as_secs_f64(),
        boot.sleeps,
        boot.boot_cpu,
        boot.runs,
        boot.failed,
        boot.run_wall.as_secs_f64(),
        boot.run_cpu,
        boot.cpu_per_run().as_secs_f64() * 1000.0
    );
    boot
}
