//! The daemon's life, from a parsed [`Config`] to the end (DESIGN §1, §6, §7): `corrald`'s
//! `main` only parses its command line (or, as PID 1, the kernel's), sets up logging and calls
//! [`run`], so that the start-up order is the library's and is tested in-process.
//!
//! **Start-up order**, each step relying on the ones before it:
//! 1. SIGCHLD blocked and the subreaper flag set, before any thread exists (the reaper reads a
//!    signalfd; orphans of services must come back to us);
//! 2. the cgroup tree decided ([`decide_root`]) and corrald moved into its `init.scope`;
//! 3. the units loaded (every error logged; a bad file never stops the others);
//! 4. on the event loop: SIGTERM/SIGINT handlers installed *before* the socket is bound (a
//!    client that sees the socket may send SIGTERM at once);
//! 5. the manager created, the private socket bound and served (with `--systemd-compat` also
//!    `/run/systemd/private` and the `/run/systemd/system` marker), the bus joined in the
//!    background (never a reason to fail);
//! 6. services still running from an earlier corrald adopted, *then* autostart units started
//!    (no duplicate of an adopted service);
//! 7. `READY=1` to our own supervisor, once the units are loaded and the API answers;
//! 8. the manager's loop, until a shutdown is asked for and every unit is down — or a re-exec,
//!    or a panic in any task ([`panic`]: the run ends as a fatal error does).
//!
//! **Signals** (tokio's handlers, on the loop): SIGTERM and SIGINT stop every unit, then the run
//! ends (as PID 1: power off and reboot); SIGHUP re-reads the unit files, as `Reload` does and
//! as systemd does on SIGHUP — never the end of the daemon.

use std::collections::HashMap;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use crate::boot::pid1::Final;
use crate::bus::{
    Access, BusServer, ManagerHandle, Mode, Notifier, PrivateServer, ServerError, ServerInfo,
    bus_address, systemd1,
};
use crate::cgroup::{CgroupError, HostInfo, OwnershipError, RootRequest, Tree, decide_root};
use crate::manager::executor::{Manager, Paths};
use crate::manager::request::{Lane, Request, ShutdownKind, request_queue};
use crate::unit::{SearchPath, load_path};

pub mod panic;

/// What the daemon is told to do: `corrald`'s flags (DESIGN §1), however they were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A per-user manager (`--user`) rather than the system one.
    pub user: bool,
    /// The delegated cgroup to manage instead of the one corrald was started in.
    pub cgroup_root: Option<PathBuf>,
    /// Replaces the unit search path when not empty (first wins).
    pub unit_paths: Vec<PathBuf>,
    /// Where the private socket and the state live.
    pub runtime_dir: Option<PathBuf>,
    /// Where service logs go.
    pub log_dir: Option<PathBuf>,
    /// Serve only the private socket.
    pub no_bus: bool,
    /// Serve the `org.freedesktop.systemd1` subset for container runtimes (DESIGN §9): on the
    /// bus, on `/run/systemd/private`, with the `/run/systemd/system` marker. On by default as
    /// PID 1; never when a real systemd is PID 1.
    pub systemd_compat: bool,
}

impl Config {
    pub fn mode(&self) -> Mode {
        if self.user { Mode::User } else { Mode::System }
    }
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    #[error("{what}: {source}")]
    Cgroup {
        what: &'static str,
        source: CgroupError,
    },
    #[error("serving {path}: {source}")]
    Serve { path: PathBuf, source: ServerError },
    #[error("{0}")]
    Layout(String),
    #[error("re-executing corrald: {0}")]
    Reexec(std::io::Error),
    #[error("a task of corrald panicked (see the line above)")]
    Panicked,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// Where things live (DESIGN §1): the system paths, or the XDG ones with `--user`; the flags
/// override either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub search: SearchPath,
    pub runtime_dir: PathBuf,
    pub log_dir: PathBuf,
}

impl Layout {
    /// The layout for `config`, with the user's directories from `env` (`HOME`, `XDG_*`).
    pub fn new(
        config: &Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Layout, DaemonError> {
        let (search, runtime, log) = if config.user {
            let uid = nix::unistd::getuid().as_raw();
            let home = env("HOME")
                .map(PathBuf::from)
                .ok_or_else(|| DaemonError::Layout("--user needs $HOME".into()))?;
            let xdg = |var: &str, default: PathBuf| {
                env(var)
                    .filter(|v| v.starts_with('/'))
                    .map_or(default, PathBuf::from)
            };
            let runtime = xdg("XDG_RUNTIME_DIR", PathBuf::from(format!("/run/user/{uid}")));
            let state = xdg("XDG_STATE_HOME", home.join(".local/state"));
            (
                SearchPath::user(&env, &home, uid),
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
        let runtime_dir = config.runtime_dir.clone().unwrap_or(runtime);
        let mut search = if config.unit_paths.is_empty() {
            search
        } else {
            SearchPath(config.unit_paths.clone())
        };
        // Transient units and runtime drop-ins live in RUNTIME/units (DESIGN §1), second on
        // the path (after the administrator's directory) unless the path names it already.
        let runtime_units = runtime_dir.join("units");
        if !search.0.contains(&runtime_units) {
            let at = search.0.len().min(1);
            search.0.insert(at, runtime_units);
        }
        Ok(Layout {
            search,
            runtime_dir,
            log_dir: config.log_dir.clone().unwrap_or(log),
        })
    }
}

/// Runs the daemon until SIGTERM (power off) or SIGINT (reboot) and every unit is down; see
/// the module doc for the order of its steps. `inherited` holds the log pipes a re-executing
/// daemon handed on. On a re-exec it does not return (unless the exec fails).
pub fn run(config: Config, inherited: HashMap<String, OwnedFd>) -> Result<Final, DaemonError> {
    run_until(config, inherited, std::future::pending())
}

/// [`run`], also ending (as SIGTERM would) when `stop` resolves: for tests in-process.
pub fn run_until(
    config: Config,
    inherited: HashMap<String, OwnedFd>,
    stop: impl Future<Output = ()>,
) -> Result<Final, DaemonError> {
    // Before any thread exists: SIGCHLD is read from a signalfd, so it must be blocked
    // everywhere; and orphans of our services must come back to us to be reaped.
    crate::process::block_sigchld().map_err(|e| io("blocking SIGCHLD")(e.into()))?;
    crate::process::set_child_subreaper().map_err(|e| io("becoming a subreaper")(e.into()))?;

    let request = RootRequest::detect(config.user, config.cgroup_root.clone())?;
    let root = decide_root(&request)?;
    let tree = Tree::new(root.path.clone());
    tree.enter_init_scope(std::process::id())
        .map_err(|source| DaemonError::Cgroup {
            what: "moving corrald into init.scope",
            source,
        })?;
    tracing::info!("managing cgroup tree {}", root.path.display());

    let layout = Layout::new(&config, |k| std::env::var(k).ok())?;
    let units = load_path(&layout.search);
    let loaded = units.loaded().count();
    for d in &units.diagnostics {
        tracing::warn!("{d}");
    }
    let host = HostInfo::detect().map_err(|source| DaemonError::Cgroup {
        what: "reading the host's facts",
        source,
    })?;
    let paths = Paths {
        log_dir: layout.log_dir.clone(),
        cgroup_mount: request.mount.clone(),
        runtime_dir: layout.runtime_dir.clone(),
        unit_dirs: layout.search.0.clone(),
    };
    let mode = config.mode();
    let socket = layout.runtime_dir.join("private");
    let rt = EventLoop(std::mem::ManuallyDrop::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("starting the event loop"))?,
    ));
    let how = rt.block_on(async move {
        // Before the socket is bound: a client (or a supervisor) that sees the socket may
        // send SIGTERM at once, and until a handler exists its default action kills us.
        let mut term = signal(SignalKind::terminate()).map_err(io("handling SIGTERM"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(io("handling SIGINT"))?;
        let mut hup = signal(SignalKind::hangup()).map_err(io("handling SIGHUP"))?;
        let (requests_tx, requests_rx) = request_queue();
        let reloads = requests_tx.clone();
        let notify_tx = Notifier::new(1024);
        let mut manager = Manager::new(units, tree, host, paths, notify_tx.clone())
            .map_err(io("starting the manager"))?;
        let compat = config.systemd_compat
            && match systemd1::refused_here() {
                Some(why) => {
                    tracing::warn!("not serving {}: {why}", systemd1::BUS_NAME);
                    false
                }
                None => true,
            };
        let info =
            ServerInfo::new(mode, root.path.display().to_string()).with_systemd_compat(compat);
        let handle = ManagerHandle::new(requests_tx, notify_tx);
        let access = Access::for_mode(mode);
        let server = PrivateServer::bind(&socket, info.clone(), access, handle.clone()).map_err(
            |source| DaemonError::Serve {
                path: socket.clone(),
                source,
            },
        )?;
        tracing::info!("serving the API on {}", socket.display());
        // Container runtimes look for systemd's socket and marker (never a reason to fail).
        let compat_host = compat
            .then(|| {
                let (socket, marker) = systemd1::host_paths(mode, &layout.runtime_dir);
                systemd1::Host::start(
                    &socket,
                    marker.as_deref(),
                    info.clone(),
                    access,
                    handle.clone(),
                )
                .inspect(|_| {
                    tracing::info!("serving {} on {}", systemd1::BUS_NAME, socket.display())
                })
                .map_err(|e| tracing::warn!("{e}"))
                .ok()
            })
            .flatten();
        // The bus comes and goes on its own (at boot it is not up yet); never fatal.
        let bus =
            (!config.no_bus).then(|| BusServer::spawn(bus_address(mode), info, access, handle));
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
            sd_notify::NotifyState::Status(&format!("managing {loaded} units")),
        ]) {
            tracing::warn!("telling our supervisor we are ready: {e}");
        }
        // As PID 1, SIGTERM powers off (what a container runtime's stop expects) and SIGINT
        // (ctrl-alt-del) reboots; otherwise both stop every unit and exit. SIGHUP reloads: a
        // request of the daemon's own, answered on the loop like any other.
        let shutdown = async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = term.recv() => break ShutdownKind::PowerOff,
                    _ = int.recv() => break ShutdownKind::Reboot,
                    () = &mut stop => break ShutdownKind::PowerOff,
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: re-reading the unit files");
                        // The reload logs its errors; nobody waits for the reply.
                        let (reply, _) = oneshot::channel();
                        let _ = reloads.send(&Lane::internal(), Request::Reload { reply });
                    }
                }
            }
        };
        let relays = manager.relays();
        let run = manager.run(requests_rx, async {
            let how = shutdown.await;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            how
        });
        // A panic in any other task ends the run (see [`panic`]); one of the loop itself
        // unwinds out of `block_on`.
        let how = tokio::select! {
            how = run => how.map_err(io("the manager's event loop"))?,
            () = panic::panicked() => return Err(DaemonError::Panicked),
        };
        if how == ShutdownKind::Reexec {
            // The caller's reply is on its way out: give it a moment before the sockets close.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(bus) = bus {
                bus.shutdown();
            }
            server.shutdown();
            if let Some(host) = compat_host {
                host.shutdown(false);
            }
            return Err(DaemonError::Reexec(crate::manager::reexec::exec(&relays)));
        }
        if let Some(bus) = bus {
            bus.shutdown();
        }
        server.shutdown();
        if let Some(host) = compat_host {
            host.shutdown(true);
        }
        Ok::<_, DaemonError>(how)
    })?;
    tracing::info!("every unit stopped");
    drop(rt);
    Ok(match how {
        ShutdownKind::Reboot => Final::Reboot,
        ShutdownKind::PowerOff | ShutdownKind::Exit | ShutdownKind::Reexec => Final::PowerOff,
    })
}

/// The daemon's tokio runtime, shut down without waiting for its blocking threads when the run
/// ends — also when it unwinds from a panic: a thread still in a launch (a `clone3` into a
/// cgroup someone froze waits until its start times out) must not hold up the end, nor PID 1's
/// fallback after a fatal error.
struct EventLoop(std::mem::ManuallyDrop<tokio::runtime::Runtime>);

impl EventLoop {
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0.block_on(future)
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        // SAFETY: the runtime is taken once, here, and never used again.
        let rt = unsafe { std::mem::ManuallyDrop::take(&mut self.0) };
        rt.shutdown_background();
    }
}
