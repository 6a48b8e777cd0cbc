//! What corrald does as PID 1 before and after it manages units (DESIGN §6): the early mounts,
//! the hostname, modules then sysctls at boot; at shutdown, the end of every remaining process,
//! sync, unmount and `reboot(2)`.
//!
//! Nothing here may panic: a panic in PID 1 is a kernel panic. Each step logs its failure and
//! the boot goes on with what works.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::reboot::{RebootMode, reboot, set_cad_enabled};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::{modules, sysctl};

/// One early mount: source, target, file system type, flags, data.
struct Mount {
    source: &'static str,
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
    mode: u32,
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

const MOUNTS: &[Mount] = &[
    Mount {
        source: "proc",
        target: "/proc",
        fstype: "proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        mode: 0o555,
    },
    Mount {
        source: "sysfs",
        target: "/sys",
        fstype: "sysfs",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
        mode: 0o555,
    },
    Mount {
        source: "devtmpfs",
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
        mode: 0o755,
    },
    Mount {
        source: "devpts",
        target: "/dev/pts",
        fstype: "devpts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("gid=5,mode=620,ptmxmode=000"),
        mode: 0o755,
    },
    Mount {
        source: "tmpfs",
        target: "/dev/shm",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=1777"),
        mode: 0o1777,
    },
    Mount {
        source: "tmpfs",
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
        mode: 0o755,
    },
    // As systemd does: nsdelegate makes cgroup namespaces delegation boundaries, and
    // memory_recursiveprot lets memory.low/min protect a whole subtree.
    Mount {
        source: "cgroup2",
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("nsdelegate,memory_recursiveprot"),
        mode: 0o755,
    },
];

/// Mount points already mounted (from /proc/self/mountinfo, once /proc is there).
fn mounted() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Mounts the API file systems that are not mounted yet.
///
/// This runs before logging is set up (the log level comes from the command line, parsed
/// after the mounts), so a `tracing` event here would go nowhere: failures are written to
/// stderr, which PID 1 has on the console.
pub fn early_mounts() {
    for m in MOUNTS {
        if mounted().iter().any(|t| t == m.target) {
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(m.target) {
            eprintln!("corrald: creating {}: {e}", m.target);
        }
        let _ = std::fs::set_permissions(
            m.target,
            std::os::unix::fs::PermissionsExt::from_mode(m.mode),
        );
        if let Err(e) = mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data) {
            eprintln!("corrald: mounting {} on {}: {e}", m.fstype, m.target);
        }
    }
    // Programs look for the bus socket under /var/run.
    if !Path::new("/var/run").exists() {
        let _ = std::fs::create_dir_all("/var");
        let _ = std::os::unix::fs::symlink("/run", "/var/run");
    }
}

/// The boot steps after the mounts: ctrl-alt-del as SIGINT, hostname, modules, sysctls.
pub fn boot() {
    // The kernel then sends SIGINT to PID 1 on ctrl-alt-del instead of rebooting at once.
    if let Err(e) = set_cad_enabled(false) {
        tracing::warn!("reboot(RB_DISABLE_CAD): {e}");
    }
    match std::fs::read_to_string("/etc/hostname") {
        Ok(text) => {
            if let Some(name) = hostname_from(&text)
                && let Err(e) = nix::unistd::sethostname(name)
            {
                tracing::warn!("setting the hostname {name:?}: {e}");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("reading /etc/hostname: {e}"),
    }
    // Modules first, as systemd orders systemd-sysctl after systemd-modules-load: many keys
    // exist only once their module is loaded (`net.bridge.*` needs br_netfilter).
    load_modules(&modules::collect(Path::new("/")));
    let files = super::config_files(
        Path::new("/"),
        &sysctl::SYSCTL_DIRS,
        Some(sysctl::SYSCTL_CONF),
    );
    let (assignments, mut problems) = sysctl::collect(&files);
    problems.extend(sysctl::apply(&assignments, Path::new("/proc/sys")));
    for p in problems {
        tracing::warn!("sysctl: {p}");
    }
}

/// The hostname in the text of `/etc/hostname`: its first line that is neither blank nor a
/// `#` comment, trimmed (hostname(5); systemd reads it the same way).
fn hostname_from(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
}

fn load_modules(names: &[String]) {
    if names.is_empty() {
        return;
    }
    let Some(modprobe) = ["/sbin/modprobe", "/usr/sbin/modprobe", "/bin/modprobe"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        tracing::warn!("modules-load.d lists modules but there is no modprobe");
        return;
    };
    for name in names {
        // SIGCHLD is blocked for the signalfd reaper; std's wait() waits for this pid only.
        match std::process::Command::new(modprobe).arg(name).status() {
            Ok(s) if s.success() => {}
            Ok(s) => tracing::warn!("modprobe {name}: {s}"),
            Err(e) => tracing::warn!("modprobe {name}: {e}"),
        }
    }
}

/// How the machine ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    PowerOff,
    Reboot,
}

/// The end of the machine, once every unit is stopped: SIGTERM to every remaining process,
/// SIGKILL to what is left after `grace`, sync, unmount, `reboot(2)`. Never returns.
pub fn finish(how: Final, grace: Duration) -> ! {
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && reap_some() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    while reap_some() {
        std::thread::sleep(Duration::from_millis(5));
    }
    nix::unistd::sync();
    unmount_all();
    nix::unistd::sync();
    let mode = match how {
        Final::PowerOff => RebootMode::RB_POWER_OFF,
        Final::Reboot => RebootMode::RB_AUTOBOOT,
    };
    tracing::info!("{how:?}");
    let err = reboot(mode);
    tracing::error!("reboot(2) failed: {err:?}; reaping forever");
    reap_forever()
}

/// Reaps what has exited; true while any child is left.
fn reap_some() -> bool {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return true,
            Ok(_) => continue,
            Err(_) => return false, // ECHILD: nothing left
        }
    }
}

/// Unmounts everything but `/`, deepest first, detaching what is busy.
fn unmount_all() {
    let mut targets = mounted();
    targets.retain(|t| t != "/");
    targets.sort_by_key(|t| std::cmp::Reverse(t.matches('/').count()));
    for t in targets {
        if umount2(t.as_str(), MntFlags::empty()).is_err() {
            let _ = umount2(t.as_str(), MntFlags::MNT_DETACH);
        }
    }
}

/// What PID 1 does once it can't manage the machine any more (a fatal error, a panic in a
/// task: [`crate::daemon::panic`]): it keeps the promises it still can (DESIGN §6) — every
/// orphan is reaped, SIGTERM powers off and SIGINT (ctrl-alt-del) reboots, through [`finish`]
/// (every process is signalled, then sync, unmount, `reboot(2)`; the units' order is the
/// manager's and went with it). Services keep running meanwhile. Never returns.
///
/// It waits on a fresh event loop of its own: the daemon's is gone, and the signal handlers it
/// installed (tokio's, process-wide) stay — without a loop reading them SIGTERM and SIGINT were
/// swallowed, and without any handler the kernel drops both for PID 1.
pub fn fallback() -> ! {
    // A panic here too (logged by the hook) leaves the last resort, never an exit.
    match std::panic::catch_unwind(wait_for_the_end) {
        Ok(Ok(how)) => {
            tracing::info!("{how:?} requested; ending the machine without its manager");
            finish(how, Duration::from_secs(5))
        }
        Ok(Err(e)) => {
            tracing::error!("waiting for SIGTERM or ctrl-alt-del: {e}; only reaping now");
            reap_forever()
        }
        Err(_) => reap_forever(),
    }
}

/// Reaps every child that ends until SIGTERM (power off) or SIGINT (reboot) arrives.
fn wait_for_the_end() -> std::io::Result<Final> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut reaper = crate::process::Reaper::new().map_err(std::io::Error::from)?;
        let fd = std::os::fd::AsFd::as_fd(&reaper).try_clone_to_owned()?;
        // SAFETY: the AsyncFd owns `fd`, so it stays open and the same for its lifetime.
        let exits = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }?;
        loop {
            // Whatever ended before the signalfd existed, and since it was last readable.
            reaper.reap();
            tokio::select! {
                _ = term.recv() => return Ok(Final::PowerOff),
                _ = int.recv() => return Ok(Final::Reboot),
                ready = exits.readable() => ready?.clear_ready(),
            }
        }
    })
}

/// The very last resort, when not even [`fallback`] can wait for signals: keep reaping orphans
/// so the machine stays usable. Never returns.
pub fn reap_forever() -> ! {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hostname_from;

    #[test]
    fn hostname_skips_comments_and_blank_lines() {
        assert_eq!(hostname_from("web-1\n"), Some("web-1"));
        assert_eq!(
            hostname_from("# set by the installer\n\n  box \nother\n"),
            Some("box")
        );
        assert_eq!(hostname_from("# only a comment\n\n"), None);
        assert_eq!(hostname_from(""), None);
    }
}
