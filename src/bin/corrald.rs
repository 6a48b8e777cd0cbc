//! `corrald`: the daemon. Parses its command line (DESIGN §1) — or, as PID 1, the kernel's
//! `corral.*` words ([`corral::boot::cmdline`]) — sets up logging and hands over to
//! [`corral::daemon::run`].
//!
//! As PID 1 it first mounts the API file systems and applies the boot settings, and at the end
//! powers off (SIGTERM) or reboots (SIGINT) once every unit is down; it never exits and never
//! panics into the kernel: after a fatal error or a panic in any task it falls back to
//! [`pid1::fallback`]. Every panic is logged ([`corral::daemon::panic`]).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use corral::boot::pid1;
use corral::daemon::Config;
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Debug, Parser)]
#[command(
    name = "corrald",
    version,
    about = "The corral resource supervisor daemon"
)]
struct Args {
    /// Run as the system manager (the default).
    #[arg(long, conflicts_with = "user")]
    system: bool,
    /// Run as a per-user manager.
    #[arg(long)]
    user: bool,
    /// The delegated cgroup to manage instead of the one corrald was started in.
    #[arg(long, value_name = "PATH")]
    cgroup_root: Option<PathBuf>,
    /// Replace the unit search path (repeatable; first wins).
    #[arg(long = "unit-path", value_name = "DIR")]
    unit_path: Vec<PathBuf>,
    /// Where the private socket and state live (default /run/corral; with --user
    /// $XDG_RUNTIME_DIR/corral).
    #[arg(long, value_name = "DIR")]
    runtime_dir: Option<PathBuf>,
    /// Where service logs go (default /var/log/corral; with --user
    /// $XDG_STATE_HOME/corral/log).
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// Serve only the private socket, never the bus.
    #[arg(long)]
    no_bus: bool,
    /// Also serve the org.freedesktop.systemd1 subset container runtimes and kubelet use
    /// (their systemd cgroup driver): on the bus, on /run/systemd/private, with the
    /// /run/systemd/system marker. On by default as PID 1; refused when systemd is PID 1.
    #[arg(long)]
    systemd_compat: bool,
    /// error, warn, info, debug or trace.
    #[arg(long, value_name = "L", default_value = "info")]
    log_level: tracing::Level,
}

impl Args {
    fn config(&self) -> Config {
        Config {
            user: self.user,
            cgroup_root: self.cgroup_root.clone(),
            unit_paths: self.unit_path.clone(),
            runtime_dir: self.runtime_dir.clone(),
            log_dir: self.log_dir.clone(),
            no_bus: self.no_bus,
            systemd_compat: self.systemd_compat,
        }
    }
}

/// Where the daemon's own lines go (DESIGN §7): to journald, with priorities and fields, when
/// stderr is the journal already (systemd says so in `JOURNAL_STREAM`, "DEVICE:INODE" of the
/// stream it gave us); otherwise to stderr — the console as PID 1, or whatever captures it —
/// with colours only on a terminal, and never on the console (a serial line, read by tests and
/// by people with `grep`), where [`corral::console::Guard`] bounds the lines a second.
fn init_logging(level: tracing::Level, pid1: bool) {
    // zbus opens an INFO span for every method call it dispatches (`dispatch_call`, fields
    // the whole message and header, formatted with Debug): ~60 000 instructions per call that
    // nothing shows (no line is logged inside it). zbus's own lines are kept from WARN up,
    // and everything with --log-level debug or trace.
    let zbus_level = if level >= tracing::Level::DEBUG {
        level
    } else {
        tracing::Level::WARN
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("zbus", zbus_level);
    let registry = tracing_subscriber::registry().with(filter);
    if !pid1
        && stderr_is_the_journal()
        && let Ok(journald) = tracing_journald::layer()
    {
        // Syslog's meaning of the levels, as systemd logs: a state change is informational.
        let journald = journald.with_priority_mappings(PriorityMappings {
            info: Priority::Informational,
            debug: Priority::Debug,
            ..PriorityMappings::new()
        });
        registry.with(journald).init();
        return;
    }
    // As PID 1 stderr is the console: a bounded number of lines a second, whoever causes
    // them (DESIGN §6).
    let writer = if pid1 {
        BoxMakeWriter::new(corral::console::Guard::new(std::io::stderr))
    } else {
        BoxMakeWriter::new(std::io::stderr)
    };
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(!pid1 && std::io::stderr().is_terminal()),
        )
        .init();
}

/// Whether stderr is the journal stream systemd connected (`JOURNAL_STREAM=DEVICE:INODE`).
fn stderr_is_the_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::io::stderr()) else {
        return false;
    };
    stream.to_str() == Some(&format!("{}:{}", st.st_dev, st.st_ino))
}

/// What PID 1 says when it can't manage the machine any more.
const FALLBACK: &str = "corrald can't manage this machine any more: it keeps reaping, powers \
                        off on SIGTERM and reboots on ctrl-alt-del";

fn main() -> ExitCode {
    // First, before anything opens a file: a re-exec hands on its services' log pipes.
    let inherited = corral::manager::reexec::inherited();
    let pid1 = std::process::id() == 1;
    // A re-executed PID 1 finds the machine booted.
    let boot = pid1 && inherited.is_none();
    if boot {
        pid1::early_mounts();
    }
    let config = if pid1 {
        // The kernel's words for init (`splash`, `single`, `3`…) are not ours to refuse.
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let kernel = corral::boot::cmdline::parse(&cmdline);
        init_logging(kernel.level(), true);
        let argv: Vec<String> = std::env::args().skip(1).collect();
        if !argv.is_empty() {
            tracing::info!(
                "as PID 1 corrald takes its settings from corral.* words on the kernel \
                 command line; ignoring its arguments: {}",
                argv.join(" ")
            );
        }
        for p in &kernel.problems {
            tracing::warn!("kernel command line: {p}");
        }
        kernel.config
    } else {
        let args = Args::parse();
        init_logging(args.log_level, false);
        args.config()
    };
    corral::daemon::panic::install_hook();
    corral::daemon::panic::arm_test_trigger();
    if boot {
        pid1::boot();
        if let Err(e) = corral::process::net::loopback_up() {
            tracing::warn!("bringing up lo: {e}");
        }
    }
    let outcome =
        std::panic::catch_unwind(|| corral::daemon::run(config, inherited.unwrap_or_default()));
    match (outcome, pid1) {
        (Ok(Ok(how)), true) => pid1::finish(how, Duration::from_secs(5)),
        (Ok(Ok(_)), false) => ExitCode::SUCCESS,
        (Ok(Err(e)), false) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
        (Ok(Err(e)), true) => {
            tracing::error!("{e:#}; {FALLBACK}");
            pid1::fallback()
        }
        (Err(_), true) => {
            tracing::error!("corrald panicked; {FALLBACK}");
            pid1::fallback()
        }
        (Err(_), false) => {
            tracing::error!("corrald panicked; exiting, its services keep running");
            ExitCode::FAILURE
        }
    }
}
