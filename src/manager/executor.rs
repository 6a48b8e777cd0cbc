//! The manager task: owns every unit's run-time state and carries out what the transition
//! function ([`super::state::step`]) asks for — create the cgroup and apply limits, spawn into
//! it, signal, arm the unit's timer, remove the cgroup — and feeds back what it observes.
//!
//! Everything is event-driven, nothing polls: child exits arrive on a signalfd (SIGCHLD),
//! `cgroup.events`/`memory.events` changes on an inotify fd, and the only timer is the nearest
//! unit deadline. PIDs are registered right after `spawn()` returns, in this same task, and the
//! reaper is only read from this task's loop — so an exit can never be observed before its PID
//! is known.
//!
//! Jobs: a start pulls in the transaction ([`crate::unit::Graph::transaction`]); a unit of it
//! starts once every unit it is ordered after has settled; a required unit that failed fails its
//! dependents with result `dependency`. Slices have no processes: a slice is active while its
//! cgroup exists.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::notify::NotifySocket;
use super::request::{
    JobKind, LoadState, Notification, Notifier, Request, RequestError, ShutdownKind,
    UnitProperties, UnitSummary,
};
use super::state::{
    Action, ActiveState, Event, Exit, JobResult, ServiceState, SubState, UnitResult, step,
};
use crate::cgroup::{self, CgroupEvent, EventWatcher, HostInfo, Tree};
use crate::process::{self, ExitStatus, Reaper, SpawnSpec, Stdio};
use crate::unit::graph::Pull;
use crate::unit::{Kind, LoadState as Loaded, Output, Unit, UnitName, UnitSet};

/// How many queued requests the manager handles in one turn of its event loop.
const REQUESTS_PER_TURN: usize = 64;

/// The PATH a service gets when its unit sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where the manager keeps things on disk.
#[derive(Debug, Clone)]
pub struct Paths {
    pub log_dir: PathBuf,
    /// Where cgroup2 is mounted (`ControlGroup` properties are relative to it).
    pub cgroup_mount: PathBuf,
    /// RUNTIME: the notify socket and runtime drop-ins live here.
    pub runtime_dir: PathBuf,
    /// The unit search path; live limit changes are persisted in the first directory.
    pub unit_dirs: Vec<PathBuf>,
}

pub struct Manager {
    pub(super) units: UnitSet,
    pub(super) tree: Tree,
    pub(super) host: HostInfo,
    pub(super) paths: Paths,
    pub(super) states: BTreeMap<UnitName, ServiceState>,
    /// Something the state file holds has changed since it was last written (see
    /// [`Manager::save_state`]): written once at the end of the event loop's turn.
    pub(super) state_dirty: bool,
    /// Slices whose cgroup exists.
    pub(super) live_slices: BTreeSet<UnitName>,
    /// Slices this daemon has realized, with the limits written then: starting another unit
    /// in one of them skips its realize (reload and set-limits write changes to live cgroups
    /// themselves; limits that differ from these, or a cgroup gone, realize it again).
    realized_slices: BTreeMap<UnitName, crate::limits::Resources>,
    pub(super) pids: HashMap<u32, UnitName>,
    /// Running `exec-stop` processes.
    control_pids: HashMap<u32, UnitName>,
    deadlines: BTreeMap<UnitName, Instant>,
    watcher: EventWatcher,
    tokens: HashMap<cgroup::Token, UnitName>,
    /// The same, by unit: a start and a stop look a unit's token up (a walk over `tokens` was
    /// O(running units) per start, O(n²) over a burst).
    token_by_unit: HashMap<UnitName, cgroup::Token>,
    next_token: u64,
    /// Units of running start transactions, not yet started, and how they were pulled in.
    queued: BTreeMap<UnitName, Pull>,
    reaper: Reaper,
    /// Announcements to the bus (state changes, finished jobs).
    pub(super) notify: Notifier,
    /// Set by `PowerOff`/`Reboot`: stop every unit, then end like that.
    pub(super) shutdown: Option<ShutdownKind>,
    /// The job each unit is running for a caller, by id.
    jobs: BTreeMap<UnitName, u32>,
    next_job: u32,
    /// Units being restarted: started again once their stop settles.
    restarting: BTreeSet<UnitName>,
    notify_socket: NotifySocket,
    /// The last `STATUS=` of each service.
    status_text: BTreeMap<UnitName, String>,
    /// When each unit last became active (wall clock, for `ActiveEnterTimestamp`).
    pub(super) active_enter: BTreeMap<UnitName, std::time::SystemTime>,
    /// Exits of adopted main processes (not our children: seen through pidfds).
    pub(super) adopted_exits: mpsc::UnboundedSender<u32>,
    /// The running log relays (handed on by a re-exec).
    pub(super) relays: super::logs::Relays,
    /// Relays handed on by the daemon that re-executed into this one, until adopted.
    pub(super) inherited_relays: HashMap<String, OwnedFd>,
    adopted_exits_rx: Option<mpsc::UnboundedReceiver<u32>>,
}

impl Manager {
    pub fn new(
        units: UnitSet,
        tree: Tree,
        host: HostInfo,
        paths: Paths,
        notify: Notifier,
    ) -> std::io::Result<Self> {
        let states = units
            .loaded()
            .filter_map(|u| {
                u.service
                    .as_ref()
                    .map(|s| (u.name.clone(), ServiceState::new(s)))
            })
            .collect();
        let (adopted_exits, adopted_exits_rx) = mpsc::unbounded_channel();
        // The units were just loaded: what loading freed goes back to the kernel.
        super::admin::release_freed_memory();
        Ok(Manager {
            units,
            tree,
            host,
            states,
            state_dirty: false,
            live_slices: BTreeSet::new(),
            realized_slices: BTreeMap::new(),
            pids: HashMap::new(),
            control_pids: HashMap::new(),
            deadlines: BTreeMap::new(),
            watcher: EventWatcher::new().map_err(std::io::Error::other)?,
            tokens: HashMap::new(),
            token_by_unit: HashMap::new(),
            next_token: 0,
            queued: BTreeMap::new(),
            reaper: Reaper::new().map_err(std::io::Error::from)?,
            notify,
            jobs: BTreeMap::new(),
            next_job: 1,
            restarting: BTreeSet::new(),
            shutdown: None,
            notify_socket: NotifySocket::bind(&paths.runtime_dir.join("notify"))?,
            status_text: BTreeMap::new(),
            active_enter: BTreeMap::new(),
            adopted_exits,
            adopted_exits_rx: Some(adopted_exits_rx),
            relays: super::logs::Relays::default(),
            inherited_relays: HashMap::new(),
            paths,
        })
    }

    /// The running log relays, for a re-exec to hand on ([`super::reexec::exec`]).
    pub fn relays(&self) -> super::logs::Relays {
        self.relays.clone()
    }

    /// Takes the log relays a re-executing daemon handed on; [`Manager::adopt`] resumes those of
    /// the services it adopts and closes the rest.
    pub fn inherit_relays(&mut self, relays: HashMap<String, OwnedFd>) {
        self.inherited_relays = relays;
    }

    /// Queues a start of `names` and everything they pull in.
    pub fn start(&mut self, names: &[UnitName]) {
        for (u, pull) in self.units.graph.transaction(names) {
            let e = self.queued.entry(u).or_insert(pull);
            *e = (*e).min(pull);
        }
        self.advance();
    }

    /// Queues a start of every `autostart` unit.
    pub fn start_autostart(&mut self) {
        let names: Vec<UnitName> = self
            .units
            .loaded()
            .filter(|u| u.service.as_ref().is_some_and(|s| s.autostart))
            .map(|u| u.name.clone())
            .collect();
        self.start(&names);
    }

    /// Stops every running service (in reverse start order) — the shutdown path.
    pub fn stop_all(&mut self) {
        self.queued.clear();
        let running: Vec<UnitName> = self
            .states
            .iter()
            .filter(|(_, s)| !matches!(s.active, ActiveState::Inactive | ActiveState::Failed))
            .map(|(n, _)| n.clone())
            .collect();
        for n in running {
            self.event(&n, Event::Stop);
        }
    }

    /// True when no service has processes left.
    pub fn all_stopped(&self) -> bool {
        self.states
            .values()
            .all(|s| matches!(s.active, ActiveState::Inactive | ActiveState::Failed))
    }

    fn unit(&self, name: &UnitName) -> Option<&Unit> {
        self.units.get(name)
    }

    /// Starts every queued unit whose ordering predecessors have settled (started, failed or
    /// not part of any job).
    fn advance(&mut self) {
        loop {
            let ready: Vec<UnitName> = self
                .queued
                .keys()
                .filter(|n| !self.units.graph.waits_on(n).any(|d| self.is_activating(d)))
                .cloned()
                .collect();
            if ready.is_empty() {
                return;
            }
            for name in ready {
                // A nested advance() (from the event below) may have taken it already.
                if self.queued.remove(&name).is_none() {
                    continue;
                }
                if let Some(failed) = self.failed_requirement(&name) {
                    tracing::warn!(unit = %name, "required unit {failed} failed");
                    self.event(&name, Event::DependencyFailed);
                    continue;
                }
                match self.unit(&name).map(|u| u.name.kind()) {
                    Some(Kind::Slice) => self.realize_slice(&name),
                    Some(Kind::Service) => self.event(&name, Event::Start),
                    None => tracing::warn!(unit = %name, "no such unit to start"),
                }
            }
        }
    }

    fn is_activating(&self, name: &UnitName) -> bool {
        self.queued.contains_key(name)
            || self
                .states
                .get(name)
                .is_some_and(|s| matches!(s.sub, SubState::Start))
    }

    /// A required unit (requires, slice, namespace owner) that is missing or failed.
    fn failed_requirement(&self, name: &UnitName) -> Option<UnitName> {
        self.units
            .graph
            .requirements(name)
            .find(|r| match self.units.get(r) {
                None => true,
                Some(u) if u.name.kind() == Kind::Slice => !self.live_slices.contains(r),
                Some(_) => self
                    .states
                    .get(r)
                    .is_some_and(|s| s.active == ActiveState::Failed),
            })
            .cloned()
    }

    fn realize_slice(&mut self, name: &UnitName) {
        if name.is_root_slice() {
            // The root slice is the cgroup root itself: it exists and takes no limits.
            self.live_slices.insert(name.clone());
            return;
        }
        let Some(unit) = self.units.get(name) else {
            return;
        };
        let rel = unit.cgroup_path();
        if self.live_slices.contains(name)
            && self.realized_slices.get(name) == Some(&unit.resources)
            && self.tree.root().join(&rel).is_dir()
        {
            return;
        }
        match self.tree.realize(&rel, &unit.resources, &self.host) {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!(unit = %name, "{w}");
                }
                self.live_slices.insert(name.clone());
                self.realized_slices
                    .insert(name.clone(), unit.resources.clone());
            }
            Err(e) => tracing::error!(unit = %name, "{e}"),
        }
    }

    /// Feeds one event to a service and performs the actions.
    pub fn event(&mut self, name: &UnitName, ev: Event) {
        let Some(cfg) = self.units.get(name).and_then(|u| u.service.clone()) else {
            return;
        };
        let Some(st) = self.states.get_mut(name) else {
            return;
        };
        let before = (st.active, st.sub);
        let saved_before = st.saved_part();
        let actions = step(&cfg, st, ev, Instant::now());
        let after = (st.active, st.sub);
        if st.saved_part() != saved_before {
            self.state_dirty = true;
        }
        if before != after {
            tracing::info!(
                unit = %name,
                "{} ({}) → {} ({}), result {}",
                before.0,
                before.1,
                after.0,
                after.1,
                st.result
            );
        }
        for a in actions {
            self.perform(name, &cfg, a);
        }
        if before != after {
            if after.0 == ActiveState::Active {
                self.active_enter
                    .insert(name.clone(), std::time::SystemTime::now());
                self.state_dirty = true;
            }
            let _ = self.notify.send(Notification::UnitStateChanged {
                unit: name.clone(),
                active_state: after.0,
                sub_state: after.1.as_str(),
            });
            if matches!(after.0, ActiveState::Inactive | ActiveState::Failed)
                && self.restarting.remove(name)
            {
                self.start(std::slice::from_ref(name));
            }
            self.advance();
        }
    }

    fn perform(&mut self, name: &UnitName, cfg: &crate::unit::Service, action: Action) {
        let Some(unit) = self.units.get(name) else {
            return;
        };
        let rel = unit.cgroup_path();
        let cg = self.tree.cgroup(&rel);
        match action {
            Action::RunExecStop => match self.spawn_control(name, &cfg.exec_stop) {
                Ok(pid) => {
                    self.control_pids.insert(pid, name.clone());
                }
                Err(e) => {
                    tracing::error!(unit = %name, "exec-stop: {e}");
                    self.event(name, Event::ControlExited);
                }
            },
            Action::Spawn => match self.spawn(name) {
                Ok(pid) => self.event(name, Event::Spawned { pid }),
                Err(e) => {
                    tracing::error!(unit = %name, "{e}");
                    self.event(name, Event::SpawnFailed);
                }
            },
            Action::Signal { signal, all } => {
                let pids: Vec<u32> = if all {
                    cg.as_ref()
                        .ok()
                        .and_then(|c| c.procs().ok())
                        .unwrap_or_default()
                } else {
                    self.states
                        .get(name)
                        .and_then(|s| s.main_pid)
                        .into_iter()
                        .collect()
                };
                for pid in pids {
                    // ESRCH: it exited meanwhile; its exit arrives through the reaper.
                    let _ = process::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
                }
            }
            Action::KillAll => {
                if let Ok(c) = &cg
                    && let Err(e) = c.kill()
                {
                    tracing::warn!(unit = %name, "{e}");
                }
            }
            Action::CheckEmpty => {
                let empty = cg
                    .as_ref()
                    .map_or(true, |c| !c.is_populated().unwrap_or(false));
                if empty {
                    self.event(name, Event::CgroupEmpty);
                }
            }
            Action::ArmTimer(d) => {
                self.deadlines.insert(name.clone(), Instant::now() + d);
            }
            Action::CancelTimer => {
                self.deadlines.remove(name);
            }
            Action::RemoveCgroup => {
                // With kill-mode = process, processes may stay behind (a delegated manager's
                // services): the cgroup and its watch stay with them.
                if cg.as_ref().is_ok_and(|c| c.is_populated().unwrap_or(false)) {
                    tracing::info!(unit = %name, "processes remain in the unit's cgroup");
                    return;
                }
                if let Some(t) = self.token_by_unit.remove(name) {
                    let _ = self.watcher.remove(t);
                    self.tokens.remove(&t);
                }
                // A delegated subtree holds the nested manager's cgroups: bottom-up.
                let removed = if cfg.delegate {
                    cg.as_ref()
                        .map_err(|e| e.to_string())
                        .and_then(|c| c.remove_tree().map_err(|e| e.to_string()))
                } else {
                    self.tree.remove(&rel).map_err(|e| e.to_string())
                };
                if let Err(e) = removed {
                    tracing::warn!(unit = %name, "{e}");
                }
            }
            Action::FinishJob(r) if self.restarting.contains(name) => {
                // The stop half of a restart: the caller's job ends with the start.
                tracing::debug!(unit = %name, "restart: stop {r}");
            }
            Action::FinishJob(r) => {
                if let Some(id) = self.jobs.remove(name) {
                    let _ = self.notify.send(Notification::JobRemoved {
                        id,
                        unit: name.clone(),
                        result: r,
                    });
                }
                let level = if r == JobResult::Done {
                    "done"
                } else {
                    r.as_str()
                };
                tracing::info!(unit = %name, "job {level}");
            }
        }
        let _ = cfg;
    }

    /// Creates the unit's cgroup, applies its limits, watches it, and spawns the main process
    /// into it.
    /// Runs a control command (`exec-stop`) of a unit in its cgroup, as the main process runs.
    fn spawn_control(&mut self, name: &UnitName, argv: &[String]) -> Result<u32, String> {
        let unit = self.units.get(name).ok_or("no such unit")?.clone();
        let svc = unit.service.as_ref().ok_or("not a service")?;
        let dir = self.tree.root().join(unit.cgroup_path());
        let mut spec = self.spec(name, svc, argv, dir)?;
        let main = self.states.get(name).and_then(|s| s.main_pid);
        super::namespaces::apply_control(&mut spec, svc, main, |u| {
            self.states.get(u).and_then(|s| s.main_pid)
        })
        .map_err(|e| e.to_string())?;
        let child = process::spawn(&spec).map_err(|e| e.to_string())?;
        Ok(child.pid.as_raw() as u32)
    }

    fn spawn(&mut self, name: &UnitName) -> Result<u32, String> {
        let unit = self.units.get(name).ok_or("no such unit")?.clone();
        let svc = unit.service.as_ref().ok_or("not a service")?;
        let rel = unit.cgroup_path();
        let warnings = self
            .tree
            .realize(&rel, &unit.resources, &self.host)
            .map_err(|e| e.to_string())?;
        for w in warnings {
            tracing::warn!(unit = %name, "{w}");
        }
        let dir = self.tree.root().join(&rel);
        self.watch(name)?;
        // delegate = true: the unit's cgroup belongs to its processes (a nested manager):
        // marked with trusted.delegate and given to the service's user; they start in its
        // init.scope, so the unit's cgroup itself stays free for child cgroups (the
        // no-internal-process rule), and corrald never writes below it.
        let dir = if svc.delegate {
            self.delegate(name, svc, &dir)?
        } else {
            dir
        };
        let mut spec = self.spec(name, svc, &svc.exec, dir)?;
        super::namespaces::apply(&mut spec, svc, |u| {
            self.states.get(u).and_then(|s| s.main_pid)
        })
        .map_err(|e| e.to_string())?;
        let child = process::spawn(&spec).map_err(|e| e.to_string())?;
        if let Some(token) = self.token_of(name) {
            self.watcher.mark_populated(token);
        }
        let pid = child.pid.as_raw() as u32;
        self.pids.insert(pid, name.clone());
        Ok(pid)
    }

    /// The watch token of a unit's cgroup, if it is watched.
    fn token_of(&self, name: &UnitName) -> Option<cgroup::Token> {
        self.token_by_unit.get(name).copied()
    }

    /// Watches the unit's cgroup for emptiness and OOM kills (once).
    pub(super) fn watch(&mut self, name: &UnitName) -> Result<(), String> {
        if self.token_of(name).is_some() {
            return Ok(());
        }
        let unit = self.units.get(name).ok_or("no such unit")?;
        let dir = self.tree.root().join(unit.cgroup_path());
        let token: cgroup::Token = self.next_token;
        self.next_token += 1;
        self.watcher.add(token, &dir).map_err(|e| e.to_string())?;
        self.tokens.insert(token, name.clone());
        self.token_by_unit.insert(name.clone(), token);
        Ok(())
    }

    /// Prepares a delegated unit's cgroup; returns `<cgroup>/init.scope`, where its processes
    /// start.
    fn delegate(
        &self,
        name: &UnitName,
        svc: &crate::unit::Service,
        dir: &std::path::Path,
    ) -> Result<PathBuf, String> {
        let creds = match (&svc.user, &svc.group) {
            (None, None) => None,
            (user, group) => {
                let ident = |i: &crate::unit::Ident| match i {
                    crate::unit::Ident::Name(n) => n.clone(),
                    crate::unit::Ident::Id(id) => id.to_string(),
                };
                let user = user.as_ref().map_or_else(|| "root".to_string(), ident);
                let group = group.as_ref().map(ident);
                Some(process::resolve_user(&user, group.as_deref()).map_err(|e| e.to_string())?)
            }
        };
        let (uid, gid) = creds.map_or((0, 0), |c| (c.uid, c.gid));
        let unit_cg = cgroup::Cgroup::new(dir);
        unit_cg
            .delegate_to(uid, gid)
            .map_err(|e| format!("delegating {name}'s cgroup: {e}"))?;
        // Every controller the kernel offers reaches the delegated cgroup (as systemd's
        // Delegate=yes): what the nested manager enables below is its business.
        let rel = dir.strip_prefix(self.tree.root()).unwrap_or(dir);
        let all = cgroup::ControllerSet::parse("cpuset cpu io memory pids");
        if let Err(e) = self.tree.enable_controllers(rel, all) {
            tracing::warn!(unit = %name, "enabling controllers for the delegate: {e}");
        }
        let scope = cgroup::Cgroup::new(dir.join("init.scope"));
        if !scope.exists() {
            scope.create().map_err(|e| e.to_string())?;
        }
        for p in [scope.path().to_path_buf(), scope.file(cgroup::PROCS)] {
            nix::unistd::chown(&p, Some(uid.into()), Some(gid.into()))
                .map_err(|e| format!("giving {} to uid {uid}: {e}", p.display()))?;
        }
        Ok(scope.path().to_path_buf())
    }

    /// What a process of the unit is started with: argv, environment, directory, umask,
    /// cgroup, output, credentials.
    fn spec(
        &self,
        name: &UnitName,
        svc: &crate::unit::Service,
        argv: &[String],
        dir: PathBuf,
    ) -> Result<SpawnSpec, String> {
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
        if svc.kind == crate::unit::ServiceType::Notify {
            spec.env("NOTIFY_SOCKET", self.notify_socket.path());
        }
        // One relay pipe for both streams when either goes to the log.
        let mut log_pipe = if svc.stdout == Output::Log || svc.stderr == Output::Log {
            Some(
                super::logs::start_relay(&self.paths.log_dir, name.as_str(), &self.relays)
                    .map_err(|e| format!("log of {name}: {e}"))?,
            )
        } else {
            None
        };
        spec.stdout = self.output(&svc.stdout, &mut log_pipe)?;
        spec.stderr = self.output(&svc.stderr, &mut log_pipe)?;
        if svc.user.is_some() || svc.group.is_some() {
            let ident = |i: &crate::unit::Ident| match i {
                crate::unit::Ident::Name(n) => n.clone(),
                crate::unit::Ident::Id(id) => id.to_string(),
            };
            let user = svc.user.as_ref().map_or_else(|| "root".to_string(), ident);
            let group = svc.group.as_ref().map(ident);
            spec.credentials =
                Some(process::resolve_user(&user, group.as_deref()).map_err(|e| e.to_string())?);
        }
        Ok(spec)
    }

    /// Where one output stream goes. `log` takes the relay pipe (the second taker gets a
    /// duplicate).
    fn output(&self, o: &Output, log_pipe: &mut Option<OwnedFd>) -> Result<Stdio, String> {
        match o {
            Output::Null => Ok(Stdio::Null),
            Output::Inherit => Ok(Stdio::Inherit),
            Output::File(p) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(|f| Stdio::Fd(OwnedFd::from(f)))
                .map_err(|e| format!("opening {}: {e}", p.display())),
            Output::Log => {
                let fd = log_pipe.take().ok_or("no log pipe")?;
                let dup = fd.try_clone().map_err(|e| format!("log pipe: {e}"))?;
                *log_pipe = Some(dup);
                Ok(Stdio::Fd(fd))
            }
        }
    }

    fn on_exit(&mut self, pid: u32, status: ExitStatus) {
        if let Some(name) = self.control_pids.remove(&pid) {
            if !status.success() {
                tracing::warn!(unit = %name, "exec-stop ended: {status}");
            }
            self.event(&name, Event::ControlExited);
            return;
        }
        let Some(name) = self.pids.remove(&pid) else {
            return;
        };
        // An OOM kill is counted in memory.events before its victim dies: take the cgroup
        // events already queued first, so the unit learns the cause before the exit.
        self.on_cgroup_events();
        // The cgroup can report empty before the exit is reaped, and the unit may have settled
        // (and even restarted, just now) meanwhile: only the current main process's exit is
        // news. Checked after the events above, which may have done exactly that.
        if self.states.get(&name).and_then(|s| s.main_pid) != Some(pid) {
            return;
        }
        let exit = match status {
            ExitStatus::Exited(c) => Exit::Code(c),
            ExitStatus::Signaled(s, _) => Exit::Signal(s),
        };
        self.event(&name, Event::MainExited(exit));
    }

    /// An adopted main process exited; not our child, so its status is unknown.
    fn on_adopted_exit(&mut self, pid: u32) {
        self.on_cgroup_events();
        let Some(name) = self.pids.remove(&pid) else {
            return;
        };
        if self.states.get(&name).and_then(|s| s.main_pid) == Some(pid) {
            self.event(&name, Event::MainExited(Exit::Unknown));
        }
    }

    fn on_cgroup_events(&mut self) {
        let events = match self.watcher.read_events() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("reading cgroup events: {e}");
                return;
            }
        };
        for ev in events {
            let (token, event) = match ev {
                CgroupEvent::Empty { token } => (token, Event::CgroupEmpty),
                CgroupEvent::OomKill { token, .. } => (token, Event::OomKill),
            };
            if let Some(name) = self.tokens.get(&token).cloned() {
                self.event(&name, event);
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<UnitName> = self
            .deadlines
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for n in due {
            self.deadlines.remove(&n);
            self.event(&n, Event::Timer);
        }
    }

    /// Runs the manager until `shutdown` resolves, then stops every unit and waits until they
    /// are all down.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        shutdown: impl std::future::Future<Output = ShutdownKind>,
    ) -> std::io::Result<ShutdownKind> {
        let reaper_fd = readable(self.reaper.as_fd().try_clone_to_owned()?)?;
        let watcher_fd = readable(self.watcher.as_fd().try_clone_to_owned()?)?;
        let notify_fd = readable(self.notify_socket.fd()?)?;
        tokio::pin!(shutdown);
        let mut stopping = None;
        let mut adopted_exits = self
            .adopted_exits_rx
            .take()
            .ok_or_else(|| std::io::Error::other("the manager runs once"))?;
        // Children that exited while no one was listening (a re-exec) are reaped now.
        for (pid, status) in self.reaper.reap() {
            self.on_exit(pid.as_raw() as u32, status);
        }
        loop {
            if self.shutdown == Some(ShutdownKind::Reexec) {
                tracing::info!("re-executing; every unit keeps running");
                self.save_state();
                return Ok(ShutdownKind::Reexec);
            }
            if stopping.is_none()
                && let Some(how) = self.shutdown
            {
                tracing::info!("stopping every unit ({how:?} requested)");
                stopping = Some(how);
                self.stop_all();
            }
            if let Some(how) = stopping
                && self.all_stopped()
            {
                self.reap_remaining();
                self.remove_slices();
                self.flush_state();
                return Ok(how);
            }
            let deadline = self.deadlines.values().min().copied();
            tokio::select! {
                r = reaper_fd.readable() => {
                    let mut g = r?;
                    g.clear_ready();
                    for (pid, status) in self.reaper.reap() {
                        self.on_exit(pid.as_raw() as u32, status);
                    }
                }
                r = watcher_fd.readable() => {
                    let mut g = r?;
                    g.clear_ready();
                    self.on_cgroup_events();
                }
                _ = sleep_until(deadline) => self.fire_timers(),
                Some(req) = requests.recv() => {
                    self.handle(req);
                    // A burst of requests shares one turn (and one state file write), a
                    // bounded one: the other sources get their turn in between. A requested
                    // shutdown ends the turn, so the loop's top starts it before what follows.
                    for _ in 1..REQUESTS_PER_TURN {
                        if self.shutdown.is_some() {
                            break;
                        }
                        match requests.try_recv() {
                            Ok(req) => self.handle(req),
                            Err(_) => break,
                        }
                    }
                }
                Some(pid) = adopted_exits.recv() => self.on_adopted_exit(pid),
                r = notify_fd.readable() => {
                    let mut g = r?;
                    g.clear_ready();
                    self.on_notify();
                }
                how = &mut shutdown, if stopping.is_none() => {
                    tracing::info!("stopping every unit");
                    stopping = Some(how);
                    self.stop_all();
                }
            }
            self.flush_state();
        }
    }
}

/// Registers a duplicate of a signalfd or inotify fd with the event loop: readiness belongs to
/// the open file description, so the original keeps being read as before.
fn readable(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, so it stays open and the same for the AsyncFd's lifetime.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(Into::into)
}

impl Manager {
    /// sd_notify messages: the sender's unit is found from its pid (the main process) or, with
    /// `notify-access = "all"`, from its cgroup.
    fn on_notify(&mut self) {
        for msg in self.notify_socket.read_all() {
            let Some((name, is_main)) = self.notify_sender(msg.pid) else {
                tracing::debug!("notify message from pid {} of no unit: ignored", msg.pid);
                continue;
            };
            let access = self
                .units
                .get(&name)
                .and_then(|u| u.service.as_ref())
                .map(|s| s.notify_access);
            if !is_main && access != Some(crate::unit::NotifyAccess::All) {
                tracing::warn!(
                    unit = %name,
                    "notify message from pid {}, not the main process: ignored \
                     (notify-access = \"all\" allows it)",
                    msg.pid
                );
                continue;
            }
            if let Some(status) = msg.status {
                tracing::info!(unit = %name, "status: {status}");
                self.status_text.insert(name.clone(), status);
            }
            if let Some(pid) = msg.main_pid {
                // Only a process of the unit may become its main process.
                if self.notify_sender(pid).is_some_and(|(n, _)| n == name) {
                    if let Some(st) = self.states.get_mut(&name) {
                        st.main_pid = Some(pid);
                        self.state_dirty = true;
                    }
                    self.pids.insert(pid, name.clone());
                }
            }
            if msg.stopping {
                tracing::info!(unit = %name, "stopping (STOPPING=1)");
            }
            if msg.ready {
                self.event(&name, Event::Ready);
            }
        }
    }

    /// The unit a process belongs to, and whether it is that unit's main process.
    fn notify_sender(&self, pid: u32) -> Option<(UnitName, bool)> {
        if let Some(name) = self.pids.get(&pid) {
            let is_main = self.states.get(name).and_then(|s| s.main_pid) == Some(pid);
            return Some((name.clone(), is_main));
        }
        let cg = super::notify::cgroup_of(pid)?;
        self.units
            .loaded()
            .find(|u| u.service.is_some() && self.control_group(&u.cgroup_path()) == cg)
            .map(|u| (u.name.clone(), false))
    }

    /// Answers one request from the bus.
    fn handle(&mut self, req: Request) {
        match req {
            Request::ListUnits { reply } => {
                let _ = reply.send(self.units.units.keys().map(|n| self.summary(n)).collect());
            }
            Request::GetUnit { unit, reply } => {
                let known = self.units.units.contains_key(&unit);
                let _ = reply.send(if known {
                    Ok(())
                } else {
                    Err(RequestError::NoSuchUnit(unit))
                });
            }
            Request::GetProperties { unit, usage, reply } => {
                let _ = reply.send(self.properties(&unit, usage));
            }
            Request::QueueJob { unit, kind, reply } => {
                let _ = reply.send(self.queue_job(unit, kind));
            }
            Request::KillUnit {
                unit,
                signal,
                reply,
            } => {
                let _ = reply.send(self.kill_unit(&unit, signal));
            }
            Request::Freeze {
                unit,
                freeze,
                reply,
            } => {
                let _ = reply.send(self.freeze_unit(&unit, freeze));
            }
            Request::SetLimits {
                unit,
                limits,
                runtime,
                reply,
            } => {
                let _ = reply.send(self.set_limits(&unit, &limits, runtime));
            }
            Request::DiffLimits {
                unit,
                limits,
                reply,
            } => {
                let _ = reply.send(self.diff_limits(&unit, &limits));
            }
            Request::GetLog { unit, lines, reply } => {
                let r = if self.units.units.contains_key(&unit) {
                    Ok(super::logs::tail(
                        &self.paths.log_dir,
                        unit.as_str(),
                        lines as usize,
                    ))
                } else {
                    Err(RequestError::NoSuchUnit(unit))
                };
                let _ = reply.send(r);
            }
            Request::GetProcesses { unit, reply } => {
                let _ = reply.send(self.processes(&unit));
            }
            Request::StartTransient { unit, toml, reply } => {
                let _ = reply.send(self.start_transient(unit, &toml));
            }
            Request::Enable {
                unit,
                enable,
                reply,
            } => {
                let _ = reply.send(self.enable(&unit, enable));
            }
            Request::GetUnitFiles { unit, reply } => {
                let _ = reply.send(self.unit_files(&unit));
            }
            Request::Reload { reply } => {
                let _ = reply.send(self.reload());
            }
            Request::Shutdown { how, reply } => {
                let _ = reply.send(self.request_shutdown(how));
            }
        }
    }

    pub(super) fn queue_job(&mut self, unit: UnitName, kind: JobKind) -> Result<u32, RequestError> {
        let entry = self
            .units
            .units
            .get(&unit)
            .ok_or_else(|| RequestError::NoSuchUnit(unit.clone()))?;
        if let Loaded::Error(msg) = &entry.state {
            return Err(RequestError::JobFailed(format!(
                "{unit} has errors in its unit files: {msg}"
            )));
        }
        if unit.kind() == Kind::Slice && kind != JobKind::Start {
            return Err(RequestError::NotSupported(format!(
                "stopping a slice ({unit}) is not supported yet: stop its units"
            )));
        }
        let id = self.next_job;
        self.next_job = self.next_job.wrapping_add(1).max(1);
        if let Some(old) = self.jobs.insert(unit.clone(), id) {
            // A new job replaces the unit's pending one, as systemd's job merging would.
            let _ = self.notify.send(Notification::JobRemoved {
                id: old,
                unit: unit.clone(),
                result: JobResult::Canceled,
            });
        }
        match kind {
            JobKind::Start if unit.kind() == Kind::Slice => {
                self.start(std::slice::from_ref(&unit));
                if let Some(id) = self.jobs.remove(&unit) {
                    let _ = self.notify.send(Notification::JobRemoved {
                        id,
                        unit: unit.clone(),
                        result: JobResult::Done,
                    });
                }
            }
            JobKind::Start => self.start(std::slice::from_ref(&unit)),
            JobKind::Stop => {
                self.restarting.remove(&unit);
                self.queued.remove(&unit);
                self.event(&unit, Event::Stop);
            }
            JobKind::Restart => {
                let running = self.states.get(&unit).is_some_and(|s| {
                    !matches!(s.active, ActiveState::Inactive | ActiveState::Failed)
                });
                if running {
                    self.restarting.insert(unit.clone());
                    self.event(&unit, Event::Stop);
                } else {
                    self.start(std::slice::from_ref(&unit));
                }
            }
        }
        Ok(id)
    }

    fn active_sub(&self, name: &UnitName) -> (ActiveState, &'static str) {
        match self.states.get(name) {
            Some(s) => (s.active, s.sub.as_str()),
            None if self.live_slices.contains(name) => (ActiveState::Active, "active"),
            None => (ActiveState::Inactive, "dead"),
        }
    }

    fn summary(&self, name: &UnitName) -> UnitSummary {
        let entry = &self.units.units[name];
        let (active_state, sub_state) = self.active_sub(name);
        UnitSummary {
            name: name.clone(),
            description: entry
                .unit()
                .map(|u| u.description.clone())
                .unwrap_or_default(),
            load_state: match entry.state {
                Loaded::Loaded(_) => LoadState::Loaded,
                Loaded::Error(_) => LoadState::Error,
            },
            active_state,
            sub_state,
        }
    }

    fn properties(&self, name: &UnitName, usage: bool) -> Result<UnitProperties, RequestError> {
        let entry = self
            .units
            .units
            .get(name)
            .ok_or_else(|| RequestError::NoSuchUnit(name.clone()))?;
        let summary = self.summary(name);
        let (limits, effective_limits, usage, freezer_state) = self.limit_properties(name, usage);
        let st = self.states.get(name);
        let unit = entry.unit();
        Ok(UnitProperties {
            name: name.clone(),
            description: summary.description,
            load_state: summary.load_state,
            load_error: match &entry.state {
                Loaded::Error(m) => m.clone(),
                Loaded::Loaded(_) => String::new(),
            },
            active_state: summary.active_state,
            sub_state: summary.sub_state,
            result: st.map_or(UnitResult::Success, |s| s.result),
            main_pid: st.and_then(|s| s.main_pid).unwrap_or(0),
            exit_status: st.map_or(0, |s| s.exit_status),
            n_restarts: st.map_or(0, |s| s.n_restarts),
            control_group: unit.map_or_else(String::new, |u| self.control_group(&u.cgroup_path())),
            slice: unit
                .and_then(Unit::slice)
                .map(|s| s.to_string())
                .unwrap_or_default(),
            limits,
            effective_limits,
            usage,
            active_enter_timestamp: self
                .active_enter
                .get(name)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as u64),
            freezer_state,
        })
    }

    /// A cgroup path as D-Bus shows it: relative to the cgroup2 mount, from `/`.
    pub(super) fn control_group(&self, rel: &std::path::Path) -> String {
        let full = self.tree.root().join(rel);
        let under_mount = full
            .strip_prefix(&self.paths.cgroup_mount)
            .unwrap_or(&full)
            .to_string_lossy()
            .into_owned();
        format!("/{}", under_mount.trim_start_matches('/'))
    }

    /// Before exiting: reaps the main processes whose exit the kernel has not reported yet (a
    /// cgroup empties a moment before its last process becomes a zombie), so none is left to
    /// whoever inherits it.
    fn reap_remaining(&mut self) {
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        while !self.pids.is_empty() && Instant::now() < deadline {
            for (pid, _) in self.reaper.reap() {
                self.pids.remove(&(pid.as_raw() as u32));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Removes the cgroups of slices, deepest first (on shutdown, once every service is down).
    fn remove_slices(&mut self) {
        let mut slices: Vec<(PathBuf, UnitName)> = self
            .live_slices
            .iter()
            .filter(|s| !s.is_root_slice())
            .filter_map(|s| self.units.get(s).map(|u| (u.cgroup_path(), s.clone())))
            .collect();
        slices.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, name) in slices {
            if let Err(e) = self.tree.remove(&rel) {
                tracing::warn!(unit = %name, "{e}");
            }
            self.live_slices.remove(&name);
            self.realized_slices.remove(&name);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
