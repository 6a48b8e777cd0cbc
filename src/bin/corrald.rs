//! `corrald`: the daemon. Parses the command line (DESIGN §1), sets up logging, decides which
//! cgroup tree it owns, loads the units and hands them to the manager.
//!
//! As PID 1 it first mounts the API file systems and applies the boot settings, and at the end
//! powers off (SIGTERM) or reboots (SIGINT) once every unit is down; it never exits and never
//! panics into the kernel.
//!
//! The API is served on the private socket `RUNTIME/private` and, unless `--no-bus`, on the
//! system bus (with `--user` the session bus) as `org.corral1`: connected whenever the bus
//! socket is there, waited for with inotify when it isn't (at boot), reconnected when the bus
//! restarts — see [`corral::bus::message_bus`]. The bus is never a reason to fail.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use corral::boot::pid1::{self, Final};
use corral::bus::{
    Access, BusServer, ManagerHandle, Mode, Notifier, PrivateServer, ServerInfo, bus_address,
};
use corral::cgroup::{HostInfo, RootRequest, Tree, decide_root};
use corral::manager::executor::{Manager, Paths};
use corral::manager::request::ShutdownKind;
use corral::unit::{SearchPath, load_path};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tracing_journald::{Priority, PriorityMappings};
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
    /// error, warn, info, debug or trace.
    #[arg(long, value_name = "L", default_value = "info")]
    log_level: tracing::Level,
}

/// Where the daemon's own lines go (DESIGN §7): to journald, with priorities and fields, when
/// stderr is the journal already (systemd says so in `JOURNAL_STREAM`, "DEVICE:INODE" of the
/// stream it gave us); otherwise to stderr — the console as PID 1, or whatever captures it —
/// with colours only on a terminal, and never on the console (a serial line, read by tests and
/// by people with `grep`).
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
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
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

fn main() -> ExitCode {
    // First, before anything opens a file: a re-exec hands on its services' log pipes.
    let inherited = corral::manager::reexec::inherited();
    let pid1 = std::process::id() == 1;
    // A re-executed PID 1 finds the machine booted.
    let boot = pid1 && inherited.is_none();
    if boot {
        pid1::early_mounts();
    }
    let args = Args::parse();
    init_logging(args.log_level, pid1);
    if boot {
        pid1::boot();
        if let Err(e) = corral::process::net::loopback_up() {
            tracing::warn!("bringing up lo: {e}");
        }
    }
    let outcome = std::panic::catch_unwind(|| run(args, inherited.unwrap_or_default()));
    match (outcome, pid1) {
        (Ok(Ok(how)), true) => pid1::finish(how, Duration::from_secs(5)),
        (Ok(Ok(_)), false) => ExitCode::SUCCESS,
        (Ok(Err(e)), false) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
        (Ok(Err(e)), true) => {
            tracing::error!("{e:#}; corrald can't manage this machine, but keeps reaping");
            pid1::reap_forever()
        }
        (Err(_), true) => {
            tracing::error!("corrald panicked; it keeps reaping");
            pid1::reap_forever()
        }
        (Err(_), false) => ExitCode::FAILURE,
    }
}

/// Where things live (DESIGN §1): the system paths, or the XDG ones with `--user`; the
/// flags override either.
struct Layout {
    search: SearchPath,
    runtime_dir: PathBuf,
    log_dir: PathBuf,
}

impl Layout {
    fn new(args: &Args) -> anyhow::Result<Layout> {
        let (search, runtime, log) = if args.user {
            let env = |k: &str| std::env::var(k).ok();
            let uid = nix::unistd::getuid().as_raw();
            let home = env("HOME")
                .map(PathBuf::from)
                .context("--user needs $HOME")?;
            let xdg = |var: &str, default: PathBuf| {
                env(var)
                    .filter(|v| v.starts_with('/'))
                    .map_or(default, PathBuf::from)
            };
            let runtime = xdg("XDG_RUNTIME_DIR", PathBuf::from(format!("/run/user/{uid}")));
            let state = xdg("XDG_STATE_HOME", home.join(".local/state"));
            (
                SearchPath::user(env, &home, uid),
                runtime.join("corral"),
                state.join("corral/log"),
            )
        } else {
            (
                SearchPath::system(),
                PathBuf::from("/run/corral"),
                PathBuf::from("/var/log/corral"),
            )
        };
        Ok(Layout {
            search,
            runtime_dir: args.runtime_dir.clone().unwrap_or(runtime),
            log_dir: args.log_dir.clone().unwrap_or(log),
        })
    }
}

/// Runs until SIGTERM (power off) or SIGINT (reboot) and every unit is down.
fn run(args: Args, inherited: HashMap<String, OwnedFd>) -> anyhow::Result<Final> {
    // Before any thread exists: SIGCHLD is read from a signalfd, so it must be blocked
    // everywhere; and orphans of our services must come back to us to be reaped.
    corral::process::block_sigchld().context("blocking SIGCHLD")?;
    corral::process::set_child_subreaper().context("becoming a subreaper")?;

    let request = RootRequest::detect(args.user, args.cgroup_root.clone())?;
    let root = decide_root(&request)?;
    let tree = Tree::new(root.path.clone());
    tree.enter_init_scope(std::process::id())
        .context("moving corrald into init.scope")?;
    tracing::info!("managing cgroup tree {}", root.path.display());

    let layout = Layout::new(&args)?;
    let mut search = if !args.unit_path.is_empty() {
        SearchPath(args.unit_path.clone())
    } else {
        layout.search
    };
    // Transient units and runtime drop-ins live in RUNTIME/units (DESIGN §1).
    let runtime_units = layout.runtime_dir.join("units");
    if !search.0.contains(&runtime_units) {
        let at = search.0.len().min(1);
        search.0.insert(at, runtime_units);
    }
    let units = load_path(&search);
    let loaded = units.loaded().count();
    for d in &units.diagnostics {
        tracing::warn!("{d}");
    }
    let host = HostInfo::detect()?;
    let paths = Paths {
        log_dir: layout.log_dir.clone(),
        cgroup_mount: request.mount.clone(),
        runtime_dir: layout.runtime_dir.clone(),
        unit_dirs: search.0.clone(),
    };
    let mode = if args.user { Mode::User } else { Mode::System };
    let socket = layout.runtime_dir.join("private");
    let no_bus = args.no_bus;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    rt.block_on(async move {
        // Before the socket is bound: a client (or a supervisor) that sees the socket may
        // send SIGTERM at once, and until a handler exists its default action kills us.
        let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
        let (requests_tx, requests_rx) = mpsc::channel(64);
        let notify_tx = Notifier::new(1024);
        let mut manager = Manager::new(units, tree, host, paths, notify_tx.clone())?;
        let info = ServerInfo::new(mode, root.path.display().to_string());
        let handle = ManagerHandle::new(requests_tx, notify_tx);
        let access = Access::for_mode(mode);
        let server = PrivateServer::bind(&socket, info.clone(), access, handle.clone())
            .with_context(|| format!("serving {}", socket.display()))?;
        tracing::info!("serving the API on {}", socket.display());
        // The bus comes and goes on its own (at boot it is not up yet); never fatal.
        let bus = (!no_bus).then(|| BusServer::spawn(bus_address(mode), info, access, handle));
        // Services still running from an earlier corrald (a crash, an upgrade) are adopted
        // before anything starts: same PIDs, no restart, no duplicate.
        manager.inherit_relays(inherited);
        let adopted = manager.adopt();
        if !adopted.is_empty() {
            tracing::info!("adopted {} running units", adopted.len());
        }
        manager.start_autostart();
        // Our own supervisor (systemd with Type=notify, or a corral above us): ready once the
        // units are loaded and the API answers — the socket is bound and its accept loop runs.
        if let Err(e) = sd_notify::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&format!("managing {} units", loaded)),
        ]) {
            tracing::warn!("telling our supervisor we are ready: {e}");
        }
        // As PID 1, SIGTERM powers off (what a container runtime's stop expects) and SIGINT
        // (ctrl-alt-del) reboots; otherwise both stop every unit and exit.
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => ShutdownKind::PowerOff,
                _ = int.recv() => ShutdownKind::Reboot,
            }
        };
        let relays = manager.relays();
        let how = manager
            .run(requests_rx, async {
                let how = shutdown.await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                how
            })
            .await?;
        if how == ShutdownKind::Reexec {
            // The caller's reply is on its way out: give it a moment before the sockets close.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(bus) = bus {
                bus.shutdown();
            }
            server.shutdown();
            let e = corral::manager::reexec::exec(&relays);
            anyhow::bail!("re-executing corrald: {e}");
        }
        if let Some(bus) = bus {
            bus.shutdown();
        }
        server.shutdown();
        Ok::<_, anyhow::Error>(match how {
            ShutdownKind::Reboot => Final::Reboot,
            ShutdownKind::PowerOff | ShutdownKind::Exit | ShutdownKind::Reexec => Final::PowerOff,
        })
    })
    .inspect(|_| tracing::info!("every unit stopped"))
}
