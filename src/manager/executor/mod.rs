//! The executor: the manager task's event loop, which carries out what the job engine
//! ([`super::engine`]) decides and feeds back what it observes. It owns the unit set, the
//! cgroup tree and every descriptor the decisions need; it decides nothing itself.
//!
//! Rooms: this file — the loop, the feeding of inputs (one queue, no recursion: an effect's
//! outcome becomes the next input) and the requests from the bus; [`launch`] — starting a
//! unit's processes off the loop; [`watches`] — cgroup events, exits of adopted processes,
//! sd_notify messages, and signalling processes we hold a pidfd for; [`removal`] — removing
//! the cgroups of what stopped; [`properties`] — what a unit looks like from the bus.
//!
//! **Nothing on the loop waits on anything outside it**, nor does work whose size someone else
//! controls without a bound: a launch (user lookup, file opens, clone, exec) runs on a blocking
//! thread and its outcome comes back as an input, and so does the removal of a delegated
//! subtree (as many cgroups as its nested manager made); a listing of a unit's processes
//! replies from a thread of its own; a busy cgroup waits for its next "empty" event, never
//! for a sleep; each source gets a bounded share of a turn
//! (requests, reaped children, notify datagrams), and log lines a service or a user can cause
//! are rate-limited. Everything is event-driven, nothing polls: child exits arrive on a
//! signalfd (SIGCHLD), `cgroup.events`/`memory.events` changes on an inotify fd, launch
//! outcomes on a channel, and the only timer is the engine's nearest deadline.

mod announce;
mod launch;
mod properties;
mod removal;
mod watches;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Instant;

use tokio::io::unix::AsyncFd;

use super::engine::service::{ActiveState, JobResult};
use super::engine::{Clock, Effect, Engine, Input, Target};
use super::notify::NotifySocket;
use super::request::{
    JobKind, Notification, Notifier, REQUESTS_PER_TURN, Request, RequestError, RequestReceiver,
    ShutdownKind, Usage,
};
use crate::cgroup::{HostInfo, Tree};
use crate::process::Reaper;
use crate::unit::{Kind, LoadState as Loaded, UnitName, UnitSet};

pub use launch::DEFAULT_PATH;
pub(crate) use properties::usage_of;
pub(crate) use watches::pidfd_in;

/// How many ended children are reaped in one turn (the rest in the next).
const REAPS_PER_TURN: usize = 256;

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
    pub(super) engine: Engine,
    /// Slices this daemon has realized, with the limits written then: starting another unit
    /// in one of them skips its realize (reload and set-limits write changes to live cgroups
    /// themselves; limits that differ from these, or a cgroup gone, realize it again).
    realized_slices: BTreeMap<UnitName, crate::limits::Resources>,
    watches: watches::Watches,
    launches: launch::Launches,
    reaper: Reaper,
    /// Announcements to the bus (state changes, finished jobs).
    pub(super) notify: Notifier,
    /// State changes of the current turn not announced yet ([`announce`]).
    changes: announce::Announcements,
    /// Units whose cgroup `cgroup.events` showed empty this turn: a main process's exit
    /// signals the rest, checks for emptiness and removes the cgroup, one read for all three.
    /// Forgotten at the end of the turn, and for a unit when something is launched into it.
    empty_this_turn: HashSet<UnitName>,
    /// Set by `PowerOff`/`Reboot`/`Reexec`: stop every unit (or none), then end like that.
    pub(super) shutdown: Option<ShutdownKind>,
    notify_socket: NotifySocket,
    /// The running log relays (handed on by a re-exec).
    pub(super) relays: super::logs::Relays,
    /// Relays handed on by the daemon that re-executed into this one, until adopted.
    pub(super) inherited_relays: HashMap<String, OwnedFd>,
    /// What a unit's cgroup last showed before it was removed (OOM kills, CPU time…): read
    /// back until the unit starts again, so a failed unit still says why.
    pub(super) last_usage: BTreeMap<UnitName, Usage>,
    /// A digest of the state file's text as last written by us (`None`: not yet, or the
    /// write failed), so an unchanged state is not written again.
    pub(super) saved_digest: std::cell::Cell<Option<u64>>,
    /// Transient units that became inactive while the current input was worked off: collected
    /// once it is (DESIGN §9).
    inactive: Vec<UnitName>,
    /// Cgroups waiting to be removed, and delegated subtrees being removed off the loop.
    removals: removal::Removals,
}

impl Manager {
    pub fn new(
        units: UnitSet,
        tree: Tree,
        host: HostInfo,
        paths: Paths,
        notify: Notifier,
    ) -> std::io::Result<Self> {
        let engine = Engine::new(&units);
        // The units were just loaded: what loading freed goes back to the kernel.
        super::admin::release_freed_memory();
        Ok(Manager {
            units,
            tree,
            host,
            engine,
            realized_slices: BTreeMap::new(),
            watches: watches::Watches::new()?,
            launches: launch::Launches::new(),
            reaper: Reaper::new().map_err(std::io::Error::from)?,
            notify,
            changes: announce::Announcements::default(),
            empty_this_turn: HashSet::new(),
            shutdown: None,
            notify_socket: NotifySocket::bind(&paths.runtime_dir.join("notify"))?,
            relays: super::logs::Relays::default(),
            inherited_relays: HashMap::new(),
            last_usage: BTreeMap::new(),
            saved_digest: std::cell::Cell::new(None),
            inactive: Vec::new(),
            removals: removal::Removals::new(),
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

    /// Queues a start of every `autostart` unit.
    pub fn start_autostart(&mut self) {
        let names: Vec<UnitName> = self
            .units
            .loaded()
            .filter(|u| u.service.as_ref().is_some_and(|s| s.autostart))
            .map(|u| u.name.clone())
            .collect();
        self.feed(Input::Start(names));
    }

    /// Works off one input: the engine decides, the effects are carried out, and what they
    /// report is fed back — from one queue, until nothing is left.
    pub(super) fn feed(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for effect in self.engine.handle(&self.units, Clock::now(), input) {
                self.perform(effect, &mut inputs);
            }
        }
        self.announce_changes();
        self.empty_this_turn.clear();
        self.collect_transients();
    }

    fn perform(&mut self, effect: Effect, inputs: &mut VecDeque<Input>) {
        if let Effect::Spawn { unit, .. } | Effect::SpawnControl(unit) | Effect::AttachScope(unit) =
            &effect
        {
            self.empty_this_turn.remove(unit);
            self.removals.in_use(unit);
        }
        match effect {
            Effect::Spawn { unit, seq } => {
                if self.removals.defer_spawn(&unit, seq) {
                    tracing::info!(unit = %unit, "starts once its old cgroups are removed");
                    return;
                }
                if let Err(e) = self.launch_main(&unit, seq) {
                    tracing::error!(unit = %unit, "{e}");
                    inputs.push_back(Input::SpawnFailed { unit, seq });
                }
            }
            Effect::SpawnControl(unit) => {
                if let Err(e) = self.launch_control(&unit) {
                    tracing::error!(unit = %unit, "exec-stop: {e}");
                    inputs.push_back(Input::ControlFailed { unit });
                }
            }
            Effect::Signal {
                unit,
                signal,
                target,
            } => match target {
                Target::All => {
                    if !self.cgroup_empty(&unit) {
                        self.signal_populated(&unit, signal);
                    }
                }
                Target::Main(pid) => self.signal_main(&unit, pid, signal),
            },
            Effect::KillAll(unit) => {
                if let Ok(cg) = self.tree.cgroup(self.cgroup_path(&unit))
                    && let Err(e) = cg.kill()
                {
                    tracing::warn!(unit = %unit, "{e}");
                }
            }
            Effect::CheckEmpty(unit) => {
                if self.cgroup_empty(&unit) {
                    inputs.push_back(Input::CgroupEmpty(unit));
                }
            }
            Effect::RemoveCgroup(unit) => self.remove_cgroup(&unit),
            Effect::RealizeSlice(unit) => {
                let ok = self.realize_slice(&unit);
                inputs.push_back(Input::SliceRealized { unit, ok });
            }
            Effect::RemoveSlice(unit) => {
                self.realized_slices.remove(&unit);
                self.remove_slice(&unit);
                // A slice made over D-Bus goes once stopped (DESIGN §9).
                if self.units.get(&unit).is_some_and(|u| u.transient) {
                    self.inactive.push(unit);
                }
            }
            Effect::AttachScope(unit) => {
                if self.removals.defer_attach(&unit) {
                    return;
                }
                let ok = self.attach_scope(&unit);
                inputs.push_back(Input::ScopeAttached { unit, ok });
            }
            Effect::JobRemoved { id, unit, result } => {
                let word = if result == JobResult::Done {
                    "done"
                } else {
                    result.as_str()
                };
                tracing::info!(unit = %unit, "job {word}");
                // The state the job left its unit in is heard before its result.
                self.announce_changes();
                let _ = self
                    .notify
                    .send(Notification::JobRemoved { id, unit, result });
            }
            Effect::StateChanged {
                unit,
                from,
                to,
                result,
            } => {
                tracing::info!(
                    unit = %unit,
                    "{} ({}) → {} ({}), result {result}",
                    from.0,
                    from.1,
                    to.0,
                    to.1,
                );
                if to.0 == ActiveState::Inactive {
                    self.inactive.push(unit.clone());
                }
                self.changes.changed(&unit, from, to);
            }
            Effect::Note { unit, text } => tracing::warn!(unit = %unit, "{text}"),
        }
    }

    /// Whether the unit's cgroup subtree holds no process (or is gone, or unreadable: then
    /// there is nothing to wait for); read once a turn while it says empty.
    fn cgroup_empty(&mut self, name: &UnitName) -> bool {
        if self.empty_this_turn.contains(name) {
            return true;
        }
        let empty = !self
            .tree
            .cgroup(self.cgroup_path(name))
            .is_ok_and(|c| c.is_populated().unwrap_or(false));
        if empty {
            self.empty_this_turn.insert(name.clone());
        }
        empty
    }

    /// Sends the state changes owed (once per unit, see [`announce`]).
    fn announce_changes(&mut self) {
        for n in self.changes.take() {
            let _ = self.notify.send(n);
        }
    }

    /// The unit's cgroup relative to the root (an unknown unit: its name, which never
    /// exists).
    pub(super) fn cgroup_path(&self, name: &UnitName) -> PathBuf {
        self.units
            .get(name)
            .map_or_else(|| name.cgroup_path(None), |u| u.cgroup_path())
    }

    fn realize_slice(&mut self, name: &UnitName) -> bool {
        let Some(unit) = self.units.get(name) else {
            return false;
        };
        let rel = unit.cgroup_path();
        if self.engine.is_live_slice(name)
            && self.realized_slices.get(name) == Some(&unit.resources)
            && self.tree.root().join(&rel).is_dir()
        {
            return true;
        }
        match self.tree.realize(&rel, &unit.resources, &self.host) {
            Ok(warnings) => {
                for w in warnings {
                    tracing::warn!(unit = %name, "{w}");
                }
                self.removals.in_use(name);
                self.realized_slices
                    .insert(name.clone(), unit.resources.clone());
                true
            }
            Err(e) => {
                tracing::error!(unit = %name, "{e}");
                false
            }
        }
    }

    /// Unloads the transient units that became inactive and stayed so (DESIGN §9): their
    /// file goes, their object goes. A failed one stays until it is reset or started again.
    /// Units made over D-Bus (scopes, slices) are transient too; a slice stays while a unit
    /// still lives in it.
    fn collect_transients(&mut self) {
        for name in std::mem::take(&mut self.inactive) {
            if self.collectable(&name) {
                self.unload_transient(&name);
            }
        }
    }

    /// Whether `name` is a transient unit (or one whose file is in the runtime units
    /// directory) that is inactive, has no job and holds no unit: it goes now.
    fn collectable(&self, name: &UnitName) -> bool {
        let dir = self.paths.runtime_dir.join("units");
        let dir = dir.as_path();
        let inactive = self.engine.active_sub(name).0 == ActiveState::Inactive;
        let transient = self.units.units.get(name).is_some_and(|e| {
            e.unit().is_some_and(|u| u.transient)
                || e.files.first().is_some_and(|f| {
                    f.parent() == Some(dir)
                        && f.file_name().and_then(|n| n.to_str()) == Some(&format!("{name}.toml"))
                })
        });
        let holds_units =
            name.kind() == Kind::Slice && self.units.graph.required_by(name).next().is_some();
        inactive && transient && !holds_units && !self.engine.is_busy(name)
    }

    /// Removes a transient unit's files and forgets it.
    pub(super) fn unload_transient(&mut self, name: &UnitName) {
        let Some(entry) = self.units.remove(name) else {
            return;
        };
        for f in &entry.files {
            if let Err(e) = std::fs::remove_file(f)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(unit = %name, "removing {}: {e}", f.display());
            }
        }
        self.engine.forget(name);
        self.last_usage.remove(name);
        // A cgroup that processes still hold stays watched, to go when they do.
        if !self.removals.unremoved.contains_key(name) {
            self.watches.unwatch(name);
        }
        tracing::info!(unit = %name, "transient unit collected");
        let _ = self.notify.send(Notification::UnitRemoved(name.clone()));
    }

    /// Runs the manager until `shutdown` resolves, then stops every unit and waits until they
    /// are all down.
    pub async fn run(
        mut self,
        mut requests: RequestReceiver,
        shutdown: impl std::future::Future<Output = ShutdownKind>,
    ) -> std::io::Result<ShutdownKind> {
        let reaper_fd = readable(self.reaper.as_fd().try_clone_to_owned()?)?;
        let watcher_fd = readable(self.watches.fd()?)?;
        let notify_fd = readable(self.notify_socket.fd()?)?;
        tokio::pin!(shutdown);
        let mut stopping = None;
        let mut adopted_exits = self.watches.take_adopted_exits()?;
        let mut launched = self.launches.take_outcomes()?;
        let mut removed = self.removals.take_outcomes()?;
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
                self.feed(Input::StopAll);
            }
            // Done once every unit is down and no launch is still under way (its child would
            // be left behind, in a cgroup no one watches), nor a subtree's removal.
            if let Some(how) = stopping
                && self.engine.all_stopped()
                && self.launches.in_flight == 0
                && self.removals.in_flight.is_empty()
            {
                self.reap_remaining();
                self.remove_slices();
                self.flush_state();
                return Ok(how);
            }
            let deadline = self.engine.next_deadline();
            tokio::select! {
                r = reaper_fd.readable() => {
                    let mut g = r?;
                    let (exits, more) = self.reaper.reap_up_to(REAPS_PER_TURN);
                    if !more {
                        g.clear_ready();
                    }
                    for (pid, status) in exits {
                        self.on_exit(pid.as_raw() as u32, status);
                    }
                }
                r = watcher_fd.readable() => {
                    let mut g = r?;
                    g.clear_ready();
                    self.on_cgroup_events();
                }
                _ = sleep_until(deadline) => self.feed(Input::Tick),
                Some(req) = requests.recv() => {
                    self.handle(req);
                    // A burst of requests shares one turn (and one state file write), a
                    // bounded one (in count and time: `RequestReceiver::try_recv`): the other
                    // sources get their turn in between. A requested
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
                Some(outcome) = launched.recv() => self.on_launched(outcome),
                Some(outcome) = removed.recv() => self.on_subtree_removed(outcome),
                r = notify_fd.readable() => {
                    let mut g = r?;
                    if !self.on_notify() {
                        g.clear_ready();
                    }
                }
                how = &mut shutdown, if stopping.is_none() => {
                    tracing::info!("stopping every unit");
                    stopping = Some(how);
                    self.feed(Input::StopAll);
                }
            }
            self.flush_state();
        }
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
            } => self.freeze_unit(&unit, freeze, reply),
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
            Request::GetLog {
                unit,
                lines,
                reader,
                reply,
            } => {
                let _ = reply.send(self.unit_log(&unit, lines, reader.as_ref()));
            }
            Request::GetProcesses { unit, reply } => self.list_processes(&unit, reply),
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
                crate::daemon::panic::test_point(crate::daemon::panic::Site::Reload);
                let _ = reply.send(self.reload());
            }
            Request::Shutdown { how, reply } => {
                let _ = reply.send(self.request_shutdown(how));
            }
            Request::ResetFailed { unit, reply } => {
                let _ = reply.send(self.reset_failed(&unit));
            }
            Request::StartBusTransient { spec, reply } => {
                let _ = reply.send(self.start_bus_transient(*spec));
            }
            Request::SetProperties {
                unit,
                limits,
                runtime,
                reply,
            } => {
                let _ = reply.send(self.set_properties(&unit, &limits, runtime));
            }
            Request::AttachProcesses {
                unit,
                subcgroup,
                pids,
                reply,
            } => {
                let _ = reply.send(self.attach_processes(&unit, &subcgroup, &pids));
            }
            Request::KillMain {
                unit,
                signal,
                reply,
            } => {
                let _ = reply.send(self.kill_main(&unit, signal));
            }
        }
    }

    /// Checks that a job makes sense, gives it an id and hands it to the engine.
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
        if unit.kind() == Kind::Slice && kind == JobKind::Restart {
            return Err(RequestError::NotSupported(format!(
                "restarting a slice ({unit}) is not supported: stop it, then start its units"
            )));
        }
        if unit.kind() == Kind::Scope && kind != JobKind::Stop {
            let up = self.engine.scope(&unit).is_some_and(|s| s.started);
            if kind == JobKind::Restart || up {
                return Err(RequestError::NotSupported(format!(
                    "{unit} is a scope: its processes were adopted once, when it was made; it \
                     can only be stopped"
                )));
            }
        }
        if unit.is_root_slice() && kind == JobKind::Stop {
            return Err(RequestError::NotSupported(
                "the root slice -.slice is the whole tree: stop its units instead".into(),
            ));
        }
        let id = self.engine.new_job_id();
        self.feed(Input::Job { unit, kind, id });
        Ok(id)
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
    /// whoever inherits it. Bounded: two seconds at most, on the way out.
    fn reap_remaining(&mut self) {
        let deadline = Instant::now() + std::time::Duration::from_secs(2);
        while self.engine.tracks_processes() && Instant::now() < deadline {
            for (pid, status) in self.reaper.reap() {
                self.on_exit(pid.as_raw() as u32, status);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Removes the cgroups of slices, deepest first (on shutdown, once every service is down).
    fn remove_slices(&mut self) {
        let mut slices: Vec<(PathBuf, UnitName)> = self
            .engine
            .live_slices()
            .filter(|s| !s.is_root_slice())
            .filter_map(|s| self.units.get(s).map(|u| (u.cgroup_path(), s.clone())))
            .collect();
        slices.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, name) in slices {
            if let Err(e) = self.tree.remove_childless(&rel) {
                tracing::warn!(unit = %name, "{e}");
            }
            self.engine.forget_slice(&name);
            self.realized_slices.remove(&name);
        }
    }
}

/// Registers a duplicate of a signalfd or inotify fd with the event loop: readiness belongs to
/// the open file description, so the original keeps being read as before.
pub(super) fn readable(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, so it stays open and the same for the AsyncFd's lifetime.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(Into::into)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}
