//! Starting a unit's processes without the event loop ever waiting for them.
//!
//! A launch has two halves. **On the loop**, what only takes the daemon's own tables and the
//! cgroup file system: the unit's cgroup is made and its limits written, its watch added, the
//! log relay's pipe made, and the [`SpawnSpec`] put together. **On a blocking thread**
//! (tokio's pool), everything that can take as long as someone else decides: the user and group
//! lookups (NSS: a slow LDAP server), opening the namespaces of the units it joins, a delegated
//! unit's `init.scope`, `file:` outputs (opened by [`process::spawn`]), and
//! `clone3` itself, which with `CLONE_VFORK` returns only once the child has exec'ed — never,
//! if its cgroup is frozen. The outcome comes back on a channel as an input for the engine
//! ([`Launched`]); meanwhile the unit's start timeout runs, and a child that never execs ends
//! its unit as `timeout` (its cgroup killed, which also frees the thread).
//!
//! **An exit before its launch's outcome.** The loop reaps every child (`waitpid(-1)`), so a
//! child that exits at once may be reaped before the thread that launched it has reported its
//! pid. Exits of pids no unit knows are therefore kept while any launch is in flight
//! ([`Launches::early_exit`]) and handed to the unit when its launch reports; once no launch is
//! in flight they are orphans of services (reparented to us as subreaper) and dropped.
//!
//! **Delegated units** start in `<unit>/init.scope`, which corrald creates and owns: its
//! delegatee (the unit's user) owns the unit's cgroup and may remove an empty `init.scope` and
//! make one of its own, frozen. So at each start an `init.scope` not owned by root, or frozen,
//! is replaced when empty and refused otherwise; what could still race with that (a swap
//! between the check and clone) costs at most a thread until the start timeout.

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::super::engine::Input;
use super::Manager;
use crate::cgroup::{self, Cgroup};
use crate::process::{self, ExitStatus, SpawnSpec, Stdio};
use crate::unit::{Ident, Output, Service, ServiceType, UnitName};

/// The PATH a service gets when its unit sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Exits of unknown pids kept while launches are in flight (see the module doc); beyond this
/// the oldest go (a launch reports within microseconds of its child's exit, so only a flood
/// of orphans could push a real one out).
const EARLY_EXITS_KEPT: usize = 4096;

/// Which process of the unit a launch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The main process, launch number `seq`.
    Main { seq: u64 },
    /// `exec-stop`.
    Control,
}

/// A launch's outcome, sent back to the loop.
#[derive(Debug)]
pub(super) struct Launched {
    unit: UnitName,
    role: Role,
    result: Result<process::Child, String>,
}

/// The channel launches report on, and the exits waiting for them.
pub(super) struct Launches {
    tx: mpsc::UnboundedSender<Launched>,
    rx: Option<mpsc::UnboundedReceiver<Launched>>,
    pub(super) in_flight: usize,
    early_exits: VecDeque<(u32, ExitStatus)>,
}

impl Launches {
    pub(super) fn new() -> Launches {
        let (tx, rx) = mpsc::unbounded_channel();
        Launches {
            tx,
            rx: Some(rx),
            in_flight: 0,
            early_exits: VecDeque::new(),
        }
    }

    pub(super) fn take_outcomes(&mut self) -> std::io::Result<mpsc::UnboundedReceiver<Launched>> {
        self.rx
            .take()
            .ok_or_else(|| std::io::Error::other("the manager runs once"))
    }

    /// An exit of a pid no unit knows: kept while a launch is in flight.
    pub(super) fn early_exit(&mut self, pid: u32, status: ExitStatus) {
        if self.in_flight == 0 {
            return;
        }
        if self.early_exits.len() == EARLY_EXITS_KEPT {
            self.early_exits.pop_front();
        }
        self.early_exits.push_back((pid, status));
    }

    /// The exit kept for `pid`, if any.
    fn claim(&mut self, pid: u32) -> Option<ExitStatus> {
        let at = self.early_exits.iter().position(|(p, _)| *p == pid)?;
        self.early_exits.remove(at).map(|(_, s)| s)
    }
}

/// What the blocking half of a launch needs: the spec so far and what is left to resolve.
struct Prepared {
    spec: SpawnSpec,
    svc: Service,
    /// `user`/`group` as names or numbers, resolved off the loop.
    ids: Option<(String, Option<String>)>,
    /// The main processes of the units whose namespaces it joins.
    owners: HashMap<UnitName, u32>,
    /// For `exec-stop`: the main process whose namespaces it joins.
    control_of: Option<Option<u32>>,
    /// A delegated unit's cgroup: the launch prepares its `init.scope` and starts there.
    delegate: Option<PathBuf>,
}

impl Manager {
    /// Launches the unit's main process (launch `seq`): cgroup, limits and watch on the loop,
    /// the rest on a blocking thread.
    pub(super) fn launch_main(&mut self, name: &UnitName, seq: u64) -> Result<(), String> {
        let unit = self.units.get(name).ok_or("no such unit")?;
        let svc = unit.service.as_deref().ok_or("not a service")?;
        let rel = unit.cgroup_path();
        let warnings = self
            .tree
            .realize(&rel, &unit.resources, &self.host)
            .map_err(|e| e.to_string())?;
        for w in warnings {
            tracing::warn!(unit = %name, "{w}");
        }
        let dir = self.tree.root().join(&rel);
        let delegate = svc.delegate.then(|| dir.clone());
        if delegate.is_some() {
            // Every controller the kernel offers reaches the delegated cgroup (as systemd's
            // Delegate=yes): what the nested manager enables below is its business.
            let all = cgroup::ControllerSet::parse("cpuset cpu io memory pids");
            if let Err(e) = self.tree.enable_controllers(&rel, all) {
                tracing::warn!(unit = %name, "enabling controllers for the delegate: {e}");
            }
        }
        let exec = svc.exec.clone();
        let prepared = self.prepare(name, &exec, dir, delegate, None)?;
        self.watch(name)?;
        // A new run: the counters of the last one are the cgroup's again.
        self.last_usage.remove(name);
        self.dispatch(name.clone(), Role::Main { seq }, prepared);
        Ok(())
    }

    /// Launches the unit's `exec-stop` in its cgroup, in the namespaces of its main process.
    pub(super) fn launch_control(&mut self, name: &UnitName) -> Result<(), String> {
        let unit = self.units.get(name).ok_or("no such unit")?;
        let svc = unit.service.as_deref().ok_or("not a service")?;
        let dir = self.tree.root().join(unit.cgroup_path());
        let argv = svc.exec_stop.clone();
        let main = self.engine.main_pid(name);
        let prepared = self.prepare(name, &argv, dir, None, Some(main))?;
        self.dispatch(name.clone(), Role::Control, prepared);
        Ok(())
    }

    /// The loop's half: everything but what may block.
    fn prepare(
        &self,
        name: &UnitName,
        argv: &[String],
        dir: PathBuf,
        delegate: Option<PathBuf>,
        control_of: Option<Option<u32>>,
    ) -> Result<Prepared, String> {
        let svc = self
            .units
            .get(name)
            .and_then(|u| u.service.as_deref())
            .ok_or("not a service")?;
        let mut spec = SpawnSpec::new(argv.iter().map(String::as_str));
        // As systemd does: a PATH unless the unit sets one; nothing else of ours leaks in.
        if !svc.environment.contains_key("PATH") {
            spec.env("PATH", DEFAULT_PATH);
        }
        for (k, v) in &svc.environment {
            spec.env(k, v);
        }
        spec.working_directory = svc.working_directory.clone();
        spec.umask = svc.umask;
        spec.cgroup = Some(dir);
        if svc.kind == ServiceType::Notify {
            spec.env("NOTIFY_SOCKET", self.notify_socket.path());
        }
        // One relay pipe for both streams when either goes to the log.
        let mut log_pipe = if svc.stdout == Output::Log || svc.stderr == Output::Log {
            Some(
                super::super::logs::start_relay(&self.paths.log_dir, name.as_str(), &self.relays)
                    .map_err(|e| format!("log of {name}: {e}"))?,
            )
        } else {
            None
        };
        for (stdout, o) in [(true, &svc.stdout), (false, &svc.stderr)] {
            let stdio = match o {
                Output::Null => Stdio::Null,
                Output::Inherit => Stdio::Inherit,
                // Opened by process::spawn, off the loop: no symlink followed, regular files
                // only, never blocking.
                Output::File(p) => Stdio::File(p.clone()),
                Output::Log => {
                    let fd = log_pipe.take().ok_or("no log pipe")?;
                    let dup = fd.try_clone().map_err(|e| format!("log pipe: {e}"))?;
                    log_pipe = Some(dup);
                    Stdio::Fd(fd)
                }
            };
            if stdout {
                spec.stdout = stdio;
            } else {
                spec.stderr = stdio;
            }
        }
        let ident = |i: &Ident| match i {
            Ident::Name(n) => n.clone(),
            Ident::Id(id) => id.to_string(),
        };
        let ids = (svc.user.is_some() || svc.group.is_some()).then(|| {
            (
                svc.user.as_ref().map_or_else(|| "root".to_string(), ident),
                svc.group.as_ref().map(ident),
            )
        });
        let owners = svc
            .namespaces
            .shared_with()
            .filter_map(|u| Some((u.clone(), self.engine.main_pid(u)?)))
            .collect();
        Ok(Prepared {
            spec,
            svc: svc.clone(),
            ids,
            owners,
            control_of,
            delegate,
        })
    }

    /// Hands the blocking half to a thread; its outcome comes back to [`Manager::on_launched`].
    fn dispatch(&mut self, unit: UnitName, role: Role, prepared: Prepared) {
        let tx = self.launches.tx.clone();
        self.launches.in_flight += 1;
        tokio::task::spawn_blocking(move || {
            let result = carry_out(prepared);
            let _ = tx.send(Launched { unit, role, result });
        });
    }

    /// A launch reported: the engine learns the outcome, and an exit that came first follows.
    pub(super) fn on_launched(&mut self, launched: Launched) {
        self.launches.in_flight = self.launches.in_flight.saturating_sub(1);
        let Launched { unit, role, result } = launched;
        let unit_name = unit.clone();
        let input = match (role, result) {
            (Role::Main { seq }, Ok(child)) => {
                let pid = child.pid.as_raw() as u32;
                if let Some(fd) = child.pidfd {
                    self.watches.hold(pid, fd);
                }
                self.watches.mark_populated(&unit);
                Input::Spawned { unit, seq, pid }
            }
            (Role::Main { seq }, Err(e)) => {
                tracing::error!(unit = %unit, "{e}");
                Input::SpawnFailed { unit, seq }
            }
            (Role::Control, Ok(child)) => Input::ControlSpawned {
                unit,
                pid: child.pid.as_raw() as u32,
            },
            (Role::Control, Err(e)) => {
                tracing::error!(unit = %unit, "exec-stop: {e}");
                Input::ControlFailed { unit }
            }
        };
        let pid = match &input {
            Input::Spawned { pid, .. } | Input::ControlSpawned { pid, .. } => Some(*pid),
            _ => None,
        };
        self.feed(input);
        if let Some(pid) = pid {
            if let Some(status) = self.launches.claim(pid) {
                self.on_exit(pid, status);
            } else if self.engine.unit_of_pid(pid).is_none() {
                // A launch the engine no longer wanted (its unit stopped, or started again,
                // meanwhile): its child must not live on unsupervised.
                tracing::info!("pid {pid}: launched for a start that is over; killed");
                self.signal_main(&unit_name, pid, libc::SIGKILL);
            }
        }
        if self.launches.in_flight == 0 {
            self.launches.early_exits.clear();
        }
    }
}

/// The blocking half of a launch, on a thread of its own: lookups, opens, clone, exec.
fn carry_out(p: Prepared) -> Result<process::Child, String> {
    let Prepared {
        mut spec,
        svc,
        ids,
        owners,
        control_of,
        delegate,
    } = p;
    if let Some((user, group)) = &ids {
        spec.credentials =
            Some(process::resolve_user(user, group.as_deref()).map_err(|e| e.to_string())?);
    }
    let (uid, gid) = spec.credentials.as_ref().map_or((0, 0), |c| (c.uid, c.gid));
    if let Some(dir) = &delegate {
        spec.cgroup = Some(init_scope(dir, uid, gid)?);
    }
    let main_pid_of = |u: &UnitName| owners.get(u).copied();
    match control_of {
        Some(main) => super::super::namespaces::apply_control(&mut spec, &svc, main, main_pid_of),
        None => super::super::namespaces::apply(&mut spec, &svc, main_pid_of),
    }
    .map_err(|e| e.to_string())?;
    process::spawn(&spec).map_err(|e| e.to_string())
}

/// Prepares a delegated unit's cgroup: marked and given to its user, with an `init.scope` that
/// corrald owns and that is not frozen (see the module doc). Returns the `init.scope`.
fn init_scope(dir: &Path, uid: u32, gid: u32) -> Result<PathBuf, String> {
    Cgroup::new(dir)
        .delegate_to(uid, gid)
        .map_err(|e| format!("delegating {}: {e}", dir.display()))?;
    let scope = Cgroup::new(dir.join("init.scope"));
    if std::fs::symlink_metadata(scope.path()).is_ok() {
        let frozen = scope.events().is_ok_and(|e| e.frozen)
            || cgroup::read_knob(&scope.file("cgroup.freeze")).is_ok_and(|v| v.trim() != "0");
        // A cgroup's files belong to whoever made it: root's for ours (its directory and
        // cgroup.procs are given to the delegatee below, cgroup.freeze never is).
        let foreign =
            std::fs::symlink_metadata(scope.file("cgroup.freeze")).map_or(true, |md| md.uid() != 0);
        if frozen || foreign {
            if scope.is_populated().unwrap_or(true) {
                return Err(format!(
                    "{} is {} and holds processes: corrald starts a delegated unit only in an \
                     init.scope of its own; move them out (or stop the unit) first",
                    scope.path().display(),
                    if frozen { "frozen" } else { "not corrald's" }
                ));
            }
            scope
                .remove()
                .map_err(|e| format!("replacing {}: {e}", scope.path().display()))?;
        }
    }
    if !scope.exists() {
        scope.create().map_err(|e| e.to_string())?;
    }
    // The delegatee may move its processes in and out of init.scope; its other files
    // (cgroup.freeze, cgroup.kill) stay root's.
    for p in [scope.path().to_path_buf(), scope.file(cgroup::PROCS)] {
        nix::unistd::chown(&p, Some(uid.into()), Some(gid.into()))
            .map_err(|e| format!("giving {} to uid {uid}: {e}", p.display()))?;
    }
    Ok(scope.path().to_path_buf())
}
