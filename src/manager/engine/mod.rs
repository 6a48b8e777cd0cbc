//! The job engine: every decision the manager makes, as a pure function over its tables,
//! `(tables, input) → (tables, effects)` ([`Engine::handle`]). No I/O happens here: the executor
//! ([`super::executor`]) carries the [`Effect`]s out — launching, signalling, cgroup writes —
//! and turns what it observes into [`Input`]s. Tested with tables (`tests.rs`), as the
//! service state machine it drives ([`service`]) is.
//!
//! **The tables**: each service's [`ServiceState`] and each scope's [`ScopeState`] (DESIGN §9:
//! processes adopted by PID, [`scope`]), which slices are realized, the units of
//! start transactions not yet started (`queued`) and the units waiting to be stopped
//! (`to_stop`), the caller's job of each unit, the units being restarted, which process belongs
//! to which unit (main processes, `MAINPID=`, adopted ones, `exec-stop`), each unit's timer, and
//! what `STATUS=` said. Every state change happens here, adoption and `MAINPID=` included.
//!
//! **No recursion.** One input can cause a cascade (a unit settles, its dependents stop, a
//! restart begins, the next queued units start); the engine works it off a queue of per-unit
//! events, then advances the start and stop queues, until nothing is left — each step is a
//! plain loop, so no chain of units can grow the stack.
//!
//! **Jobs and transactions** (DESIGN §2): a start pulls in its transaction (`requires`, `wants`,
//! slices, namespace owners: [`crate::unit::Graph::transaction`]); a queued unit starts once
//! nothing it is ordered after is still activating; a required unit that is missing or failed
//! fails it with result `dependency`. A slice is realized (its cgroup made, its limits written)
//! by the executor, which reports back ([`Input::SliceRealized`]).
//!
//! **Stops** go in reverse order: a unit waiting in `to_stop` is sent its stop once no unit
//! ordered after it is still stopping or waiting to stop. A stop job takes with it every running
//! unit that requires the unit (transitively), and cancels their queued starts; a restart job
//! restarts them too. A unit that stops or fails on its own stops the running units that
//! require it (a pod member goes down with its pod's infra unit) — except a unit that was never
//! active and ends with success (a oneshot that did its job: no stop). Stopping a
//! slice stops every service inside it, then removes its cgroup and those of its sub-slices.
//!
//! **Launches** are carried out off the event loop, so their outcome arrives later
//! ([`Input::Spawned`]) and may be stale: each launch is numbered ([`ServiceState::launch`])
//! and the outcome of any but the unit's current launch is dropped.

pub mod scope;
pub mod service;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Instant, SystemTime};

use self::scope::ScopeState;
use self::service::{
    Action, ActiveState, Event, Exit, JobResult, ServiceState, SubState, UnitResult, step,
};
use super::request::JobKind;
use crate::unit::graph::Pull;
use crate::unit::{Kind, UnitName, UnitSet};

/// The time an input happens at: the monotonic clock for timers, the wall clock for
/// `ActiveEnterTimestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub now: Instant,
    pub wall: SystemTime,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            now: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// What happened, as the executor (or a caller) tells the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A caller's job, with the id it was given ([`Engine::new_job_id`]). The executor has
    /// checked that the unit exists, loaded, and that the job makes sense for its kind.
    Job {
        unit: UnitName,
        kind: JobKind,
        id: u32,
    },
    /// Start these units and what they pull in, with no caller waiting (autostart).
    Start(Vec<UnitName>),
    /// Stop every service, in reverse order: the machine or the daemon is going down.
    StopAll,
    /// Launch `seq` of the unit's main process has exec'ed as `pid`.
    Spawned { unit: UnitName, seq: u64, pid: u32 },
    /// Launch `seq` failed before or at exec.
    SpawnFailed { unit: UnitName, seq: u64 },
    /// The unit's `exec-stop` runs as `pid`.
    ControlSpawned { unit: UnitName, pid: u32 },
    /// The unit's `exec-stop` could not be started.
    ControlFailed { unit: UnitName },
    /// A process ended; the tables say whose it was.
    Exited { pid: u32, exit: Exit },
    /// The kernel reports the unit's cgroup unpopulated.
    CgroupEmpty(UnitName),
    /// `oom_kill` grew in the unit's `memory.events`.
    OomKill(UnitName),
    /// The executor realized a slice (made its cgroup, wrote its limits), or could not.
    SliceRealized { unit: UnitName, ok: bool },
    /// Time passed: the timers due by the clock fire.
    Tick,
    /// An accepted sd_notify message of the unit (the executor found the unit from the
    /// sender's pid or cgroup and checked `notify-access`; `main_pid` is a process of the unit).
    Notify {
        unit: UnitName,
        ready: bool,
        status: Option<String>,
        main_pid: Option<u32>,
    },
    /// The executor made a scope's cgroup and moved its processes in (or could not).
    ScopeAttached { unit: UnitName, ok: bool },
    /// `ResetFailedUnit`: a failed service or scope goes back to inactive.
    ResetFailed(UnitName),
    /// A scope or slice made over D-Bus found in the state file with its cgroup (after a crash
    /// or a re-exec): a scope whose cgroup holds processes is up again, a slice is live.
    AdoptMade {
        unit: UnitName,
        active_enter: SystemTime,
    },
    /// A service found running at start-up (after a crash or a re-exec).
    Adopt {
        unit: UnitName,
        main_pid: Option<u32>,
        n_restarts: u32,
        active_enter: SystemTime,
    },
}

/// Which processes of a unit a signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every process of the unit's cgroup.
    All,
    /// The main process.
    Main(u32),
}

/// What the executor must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Launch the unit's main process (its cgroup made first); report the outcome as
    /// [`Input::Spawned`] / [`Input::SpawnFailed`] with this `seq`.
    Spawn { unit: UnitName, seq: u64 },
    /// Launch `exec-stop` in the unit's cgroup; report [`Input::ControlSpawned`] or
    /// [`Input::ControlFailed`], and its end as [`Input::Exited`].
    SpawnControl(UnitName),
    Signal {
        unit: UnitName,
        signal: i32,
        target: Target,
    },
    /// `cgroup.kill`: SIGKILL to every process of the unit.
    KillAll(UnitName),
    /// Report [`Input::CgroupEmpty`] if the unit's cgroup is empty now.
    CheckEmpty(UnitName),
    /// Remove the unit's cgroup if it is empty.
    RemoveCgroup(UnitName),
    /// Make the slice's cgroup and write its limits; report [`Input::SliceRealized`].
    RealizeSlice(UnitName),
    /// Remove a stopped slice's cgroup (its sub-slices come first, each its own effect).
    RemoveSlice(UnitName),
    /// Make a scope's cgroup, write its limits and move its processes in; report
    /// [`Input::ScopeAttached`].
    AttachScope(UnitName),
    /// A caller's job ended.
    JobRemoved {
        id: u32,
        unit: UnitName,
        result: JobResult,
    },
    /// A unit's state changed (announce it; a transient unit that became inactive is
    /// collected once the input is worked off).
    StateChanged {
        unit: UnitName,
        from: (ActiveState, &'static str),
        to: (ActiveState, &'static str),
        result: UnitResult,
    },
    /// Something worth a line in the log (rare: a unit to start that does not exist).
    Note { unit: UnitName, text: String },
}

/// The manager's tables (see the module doc).
#[derive(Debug, Default)]
pub struct Engine {
    services: BTreeMap<UnitName, ServiceState>,
    scopes: BTreeMap<UnitName, ScopeState>,
    /// Slices whose cgroup exists.
    live_slices: BTreeSet<UnitName>,
    /// Slices the executor is realizing.
    realizing: BTreeSet<UnitName>,
    /// Units of start transactions, not yet started, and how they were pulled in.
    queued: BTreeMap<UnitName, Pull>,
    /// Services to be stopped once nothing ordered after them is still stopping.
    to_stop: BTreeSet<UnitName>,
    /// Slices whose stop job waits for the services inside them.
    stopping_slices: BTreeSet<UnitName>,
    /// The job each unit is running for a caller, by id.
    jobs: BTreeMap<UnitName, u32>,
    next_job: u32,
    /// Units being restarted: started again once their stop settles.
    restarting: BTreeSet<UnitName>,
    /// Main processes (ours, `MAINPID=`, adopted) by pid.
    pids: HashMap<u32, UnitName>,
    /// Running `exec-stop` processes.
    control_pids: HashMap<u32, UnitName>,
    deadlines: BTreeMap<UnitName, Instant>,
    /// When each unit last became active (wall clock).
    active_enter: BTreeMap<UnitName, SystemTime>,
    /// The last `STATUS=` of each service.
    status_text: BTreeMap<UnitName, String>,
    /// Services that became active since they last settled (whose settling is a stop that
    /// the units requiring them follow).
    was_active: BTreeSet<UnitName>,
    /// Something the state file holds changed since [`Engine::take_dirty`].
    dirty: bool,
    /// Per-unit events of the input being worked off.
    work: VecDeque<(UnitName, Event)>,
    /// A state changed: the start and stop queues may move.
    needs_advance: bool,
    /// Units whose standing in the queues changed since the queues were last looked at
    /// (queued, started, stopping, settled): only they and their neighbours in the ordering
    /// are looked at again, so a queue of n units costs O(n) to work off, not O(n²).
    touched: BTreeSet<UnitName>,
}

fn settled(a: ActiveState) -> bool {
    matches!(a, ActiveState::Inactive | ActiveState::Failed)
}

impl Engine {
    /// Tables for the loaded units of `units`, every one inactive.
    pub fn new(units: &UnitSet) -> Engine {
        let mut e = Engine {
            next_job: 1,
            ..Engine::default()
        };
        e.sync_units(units);
        e
    }

    /// Follows a change of the unit set (a reload, a transient unit added or collected): new
    /// services and scopes get a state, units no longer in the set lose theirs.
    pub fn sync_units(&mut self, units: &UnitSet) {
        for u in units.loaded() {
            if let Some(svc) = &u.service {
                self.services
                    .entry(u.name.clone())
                    .or_insert_with(|| ServiceState::new(svc));
            }
            if u.scope.is_some() {
                self.scopes.entry(u.name.clone()).or_default();
            }
        }
        self.services
            .retain(|name, _| units.get(name).is_some_and(|u| u.service.is_some()));
        self.scopes
            .retain(|name, _| units.get(name).is_some_and(|u| u.scope.is_some()));
    }

    /// Gives one unit that joined the set (made, or made again) a fresh state, without a walk
    /// over every unit.
    pub fn track(&mut self, unit: &crate::unit::Unit) {
        self.forget(&unit.name);
        if let Some(svc) = &unit.service {
            self.services
                .insert(unit.name.clone(), ServiceState::new(svc));
        }
        if unit.scope.is_some() {
            self.scopes.insert(unit.name.clone(), ScopeState::default());
        }
    }

    /// Forgets a unit that left the unit set.
    pub fn forget(&mut self, name: &UnitName) {
        self.services.remove(name);
        self.scopes.remove(name);
        self.was_active.remove(name);
        self.active_enter.remove(name);
        self.status_text.remove(name);
        self.deadlines.remove(name);
        self.live_slices.remove(name);
    }

    /// Forgets a slice whose cgroup was removed (at the end).
    pub fn forget_slice(&mut self, name: &UnitName) {
        self.live_slices.remove(name);
    }

    /// A fresh job id (never 0).
    pub fn new_job_id(&mut self) -> u32 {
        let id = self.next_job.max(1);
        self.next_job = id.wrapping_add(1).max(1);
        id
    }

    // ── reading the tables ──

    pub fn service(&self, name: &UnitName) -> Option<&ServiceState> {
        self.services.get(name)
    }

    pub fn services(&self) -> impl Iterator<Item = (&UnitName, &ServiceState)> {
        self.services.iter()
    }

    pub fn scope(&self, name: &UnitName) -> Option<&ScopeState> {
        self.scopes.get(name)
    }

    pub fn scopes(&self) -> impl Iterator<Item = (&UnitName, &ScopeState)> {
        self.scopes.iter()
    }

    /// The active state of a service or scope (`None` for a slice or an unknown unit).
    fn active_of(&self, name: &UnitName) -> Option<ActiveState> {
        self.services
            .get(name)
            .map(|s| s.active)
            .or_else(|| self.scopes.get(name).map(|s| s.active))
    }

    /// Whether a service or scope is up (neither inactive nor failed).
    fn is_up(&self, name: &UnitName) -> bool {
        self.active_of(name).is_some_and(|a| !settled(a))
    }

    pub fn is_live_slice(&self, name: &UnitName) -> bool {
        self.live_slices.contains(name)
    }

    pub fn live_slices(&self) -> impl Iterator<Item = &UnitName> {
        self.live_slices.iter()
    }

    /// Active and sub state as D-Bus shows them (a slice: `active`/`dead`).
    pub fn active_sub(&self, name: &UnitName) -> (ActiveState, &'static str) {
        if let Some(s) = self.services.get(name) {
            return (s.active, s.sub.as_str());
        }
        match self.scopes.get(name) {
            Some(s) => (s.active, s.sub.as_str()),
            None if self.live_slices.contains(name) => (ActiveState::Active, "active"),
            None => (ActiveState::Inactive, "dead"),
        }
    }

    /// The result of a service or scope (`success` for a slice).
    pub fn result(&self, name: &UnitName) -> UnitResult {
        self.services
            .get(name)
            .map(|s| s.result)
            .or_else(|| self.scopes.get(name).map(|s| s.result))
            .unwrap_or(UnitResult::Success)
    }

    pub fn main_pid(&self, name: &UnitName) -> Option<u32> {
        self.services.get(name).and_then(|s| s.main_pid)
    }

    /// The unit a main or control process belongs to.
    pub fn unit_of_pid(&self, pid: u32) -> Option<&UnitName> {
        self.pids.get(&pid).or_else(|| self.control_pids.get(&pid))
    }

    pub fn active_enter(&self, name: &UnitName) -> Option<SystemTime> {
        self.active_enter.get(name).copied()
    }

    pub fn status_text(&self, name: &UnitName) -> Option<&str> {
        self.status_text.get(name).map(String::as_str)
    }

    /// Whether a unit is queued to start or being started (a job is under way).
    pub fn is_busy(&self, name: &UnitName) -> bool {
        self.queued.contains_key(name)
            || self.to_stop.contains(name)
            || self.restarting.contains(name)
            || self.jobs.contains_key(name)
    }

    /// Whether a main or control process is known whose exit has not been seen.
    pub fn tracks_processes(&self) -> bool {
        !self.pids.is_empty() || !self.control_pids.is_empty()
    }

    /// The nearest timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// True when no service or scope has processes left to stop.
    pub fn all_stopped(&self) -> bool {
        self.services.values().all(|s| settled(s.active))
            && self.scopes.values().all(|s| settled(s.active))
    }

    /// Something the state file holds changed outside the engine (a made unit's limits).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether something the state file holds changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    // ── the function ──

    /// Applies one input and everything it causes; returns what the executor must do.
    pub fn handle(&mut self, units: &UnitSet, clock: Clock, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        self.accept(units, clock, input, &mut out);
        loop {
            while let Some((name, ev)) = self.work.pop_front() {
                self.step_unit(units, clock, &name, ev, &mut out);
            }
            if !std::mem::take(&mut self.needs_advance) {
                break;
            }
            // Whatever moved is worked off first; then the queues are looked at again (a
            // start that merged with a running unit changes no state, yet frees what waits
            // on it).
            let touched = std::mem::take(&mut self.touched);
            let moved = self.advance(units, &touched, &mut out)
                | self.advance_stops(units, &touched)
                | self.finish_slice_stops(units, &mut out);
            self.needs_advance |= moved;
        }
        out
    }

    fn accept(&mut self, units: &UnitSet, clock: Clock, input: Input, out: &mut Vec<Effect>) {
        match input {
            Input::Job { unit, kind, id } => self.job(units, unit, kind, id, out),
            Input::Start(names) => self.start(units, &names),
            Input::StopAll => {
                for name in std::mem::take(&mut self.queued).into_keys() {
                    self.cancel_job(&name, out);
                    self.touched.insert(name);
                }
                self.restarting.clear();
                let running: Vec<UnitName> = self
                    .services
                    .iter()
                    .map(|(n, s)| (n, s.active))
                    .chain(self.scopes.iter().map(|(n, s)| (n, s.active)))
                    .filter(|(_, a)| !settled(*a))
                    .map(|(n, _)| n.clone())
                    .collect();
                self.touched.extend(running.iter().cloned());
                self.to_stop.extend(running);
                self.needs_advance = true;
            }
            Input::ScopeAttached { unit, ok } => {
                self.work.push_back((unit, Event::Attached(ok)));
            }
            Input::ResetFailed(unit) => self.work.push_back((unit, Event::ResetFailed)),
            Input::AdoptMade { unit, active_enter } => {
                if let Some(st) = self.scopes.get_mut(&unit) {
                    st.adopt(clock.now);
                    self.active_enter.insert(unit.clone(), active_enter);
                }
                // Its slices exist (a slice's own cgroup too).
                let mut cur = match unit.kind() {
                    Kind::Slice => Some(unit),
                    _ => units.get(&unit).and_then(|u| u.slice()),
                };
                while let Some(s) = cur {
                    cur = s.parent_slice();
                    self.live_slices.insert(s);
                }
                self.dirty = true;
            }
            Input::Spawned { unit, seq, pid } => {
                if self.current_launch(&unit, seq) {
                    self.pids.insert(pid, unit.clone());
                    self.work.push_back((unit, Event::Spawned { pid }));
                }
            }
            Input::SpawnFailed { unit, seq } => {
                if self.current_launch(&unit, seq) {
                    self.work.push_back((unit, Event::SpawnFailed));
                }
            }
            Input::ControlSpawned { unit, pid } => {
                self.control_pids.insert(pid, unit);
            }
            Input::ControlFailed { unit } => self.work.push_back((unit, Event::ControlExited)),
            Input::Exited { pid, exit } => {
                if let Some(unit) = self.control_pids.remove(&pid) {
                    self.work.push_back((unit, Event::ControlExited));
                } else if let Some(unit) = self.pids.remove(&pid) {
                    // The unit may have settled (and even restarted) meanwhile: only its
                    // current main process's exit is news.
                    if self.main_pid(&unit) == Some(pid) {
                        self.work.push_back((unit, Event::MainExited(exit)));
                    }
                }
            }
            Input::CgroupEmpty(unit) => self.work.push_back((unit, Event::CgroupEmpty)),
            Input::OomKill(unit) => self.work.push_back((unit, Event::OomKill)),
            Input::SliceRealized { unit, ok } => {
                self.realizing.remove(&unit);
                self.touched.insert(unit.clone());
                let result = if ok {
                    // A slice made over D-Bus is in the state file while it lives.
                    self.dirty |= self.live_slices.insert(unit.clone())
                        && units.get(&unit).is_some_and(|u| u.transient);
                    JobResult::Done
                } else {
                    JobResult::Failed
                };
                self.finish_job(&unit, result, out);
                self.needs_advance = true;
            }
            Input::Tick => {
                let due: Vec<UnitName> = self
                    .deadlines
                    .iter()
                    .filter(|(_, t)| **t <= clock.now)
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in due {
                    self.deadlines.remove(&n);
                    self.work.push_back((n, Event::Timer));
                }
            }
            Input::Notify {
                unit,
                ready,
                status,
                main_pid,
            } => {
                if let Some(status) = status {
                    self.status_text.insert(unit.clone(), status);
                }
                if let Some(pid) = main_pid
                    && let Some(st) = self.services.get_mut(&unit)
                {
                    if let Some(old) = st.main_pid.replace(pid) {
                        self.pids.remove(&old);
                    }
                    self.pids.insert(pid, unit.clone());
                    self.dirty = true;
                }
                if ready {
                    self.work.push_back((unit, Event::Ready));
                }
            }
            Input::Adopt {
                unit,
                main_pid,
                n_restarts,
                active_enter,
            } => {
                let Some(st) = self.services.get_mut(&unit) else {
                    return;
                };
                st.adopt(main_pid, n_restarts, clock.now);
                if let Some(pid) = main_pid {
                    self.pids.insert(pid, unit.clone());
                }
                self.active_enter.insert(unit.clone(), active_enter);
                self.was_active.insert(unit.clone());
                // Its slices exist, with it in them.
                let mut cur = units.get(&unit).and_then(|u| u.slice());
                while let Some(s) = cur {
                    cur = s.parent_slice();
                    self.live_slices.insert(s);
                }
                self.dirty = true;
            }
        }
    }

    /// Whether a launch's outcome is still wanted: the unit's latest launch, and the unit not
    /// settled meanwhile (stopped before its child appeared).
    /// Whether `seq` is the unit's launch under way (an older one's outcome is dropped).
    pub fn current_launch(&self, unit: &UnitName, seq: u64) -> bool {
        self.services
            .get(unit)
            .is_some_and(|s| s.launching && s.launch == seq && !settled(s.active))
    }

    fn job(
        &mut self,
        units: &UnitSet,
        unit: UnitName,
        kind: JobKind,
        id: u32,
        out: &mut Vec<Effect>,
    ) {
        if let Some(old) = self.jobs.insert(unit.clone(), id) {
            // A new job replaces the unit's pending one, as systemd's job merging would.
            out.push(Effect::JobRemoved {
                id: old,
                unit: unit.clone(),
                result: JobResult::Canceled,
            });
        }
        let slice = unit.kind() == Kind::Slice;
        match kind {
            JobKind::Start => self.start(units, std::slice::from_ref(&unit)),
            JobKind::Stop if slice => {
                let members = self.members_of(units, &unit);
                for m in &members {
                    self.cancel_queued(m, out);
                    self.restarting.remove(m);
                }
                let running: Vec<UnitName> =
                    members.into_iter().filter(|m| self.is_up(m)).collect();
                self.touched.extend(running.iter().cloned());
                self.to_stop.extend(running);
                self.stopping_slices.insert(unit);
                self.needs_advance = true;
            }
            JobKind::Stop => {
                self.restarting.remove(&unit);
                self.queued.remove(&unit);
                for d in self.dependents(units, &unit) {
                    self.cancel_queued(&d, out);
                    self.restarting.remove(&d);
                    if self.is_up(&d) {
                        self.touched.insert(d.clone());
                        self.to_stop.insert(d);
                    }
                }
                self.touched.insert(unit.clone());
                self.to_stop.insert(unit);
                self.needs_advance = true;
            }
            JobKind::Restart => {
                let running = self.services.get(&unit).is_some_and(|s| !settled(s.active));
                if !running {
                    self.start(units, std::slice::from_ref(&unit));
                    return;
                }
                for d in self.dependents(units, &unit) {
                    if self.services.get(&d).is_some_and(|s| !settled(s.active)) {
                        self.restarting.insert(d.clone());
                        self.touched.insert(d.clone());
                        self.to_stop.insert(d);
                    }
                }
                self.restarting.insert(unit.clone());
                self.touched.insert(unit.clone());
                self.to_stop.insert(unit);
                self.needs_advance = true;
            }
        }
    }

    /// Every service or scope that requires `unit`, transitively (through `requires`,
    /// namespaces joined, and slices they live in).
    fn dependents(&self, units: &UnitSet, unit: &UnitName) -> BTreeSet<UnitName> {
        let mut found = BTreeSet::new();
        let mut todo = vec![unit.clone()];
        while let Some(u) = todo.pop() {
            for d in units.graph.required_by(&u) {
                if found.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        found.retain(|d| self.services.contains_key(d) || self.scopes.contains_key(d));
        found
    }

    /// Every service and scope inside a slice or its sub-slices.
    fn members_of(&self, units: &UnitSet, slice: &UnitName) -> Vec<UnitName> {
        self.services
            .keys()
            .chain(self.scopes.keys())
            .filter(|s| {
                let mut cur = units.get(s).and_then(|u| u.slice());
                while let Some(c) = cur {
                    if &c == slice {
                        return true;
                    }
                    cur = c.parent_slice();
                }
                false
            })
            .cloned()
            .collect()
    }

    fn start(&mut self, units: &UnitSet, names: &[UnitName]) {
        for (u, pull) in units.graph.transaction(names) {
            // A unit waiting to stop is not stopped after all: it is wanted again (unless it is
            // being restarted: its stop comes first).
            if !self.restarting.contains(&u) {
                self.to_stop.remove(&u);
            }
            self.touched.insert(u.clone());
            let e = self.queued.entry(u).or_insert(pull);
            *e = (*e).min(pull);
        }
        self.needs_advance = true;
    }

    fn cancel_job(&mut self, unit: &UnitName, out: &mut Vec<Effect>) {
        if let Some(id) = self.jobs.remove(unit) {
            out.push(Effect::JobRemoved {
                id,
                unit: unit.clone(),
                result: JobResult::Canceled,
            });
        }
    }

    fn cancel_queued(&mut self, unit: &UnitName, out: &mut Vec<Effect>) {
        if self.queued.remove(unit).is_some() {
            self.touched.insert(unit.clone());
            self.cancel_job(unit, out);
        }
    }

    fn finish_job(&mut self, unit: &UnitName, result: JobResult, out: &mut Vec<Effect>) {
        if self.restarting.contains(unit) {
            // The stop half of a restart: the caller's job ends with the start.
            return;
        }
        if let Some(id) = self.jobs.remove(unit) {
            out.push(Effect::JobRemoved {
                id,
                unit: unit.clone(),
                result,
            });
        }
    }

    /// Feeds one event to a service and turns its actions into effects and table changes.
    fn step_unit(
        &mut self,
        units: &UnitSet,
        clock: Clock,
        name: &UnitName,
        ev: Event,
        out: &mut Vec<Effect>,
    ) {
        let Some(unit) = units.get(name) else {
            return;
        };
        let (before, actions, after, result, main_pid, launch);
        if let (Some(cfg), Some(st)) = (unit.service.as_deref(), self.services.get_mut(name)) {
            before = (st.active, st.sub);
            let saved_before = st.saved_part();
            actions = step(cfg, st, ev, clock.now);
            after = (st.active, st.sub);
            result = st.result;
            (main_pid, launch) = (st.main_pid, st.launch);
            if st.saved_part() != saved_before {
                self.dirty = true;
            }
        } else if let (Some(cfg), Some(st)) = (unit.scope.as_deref(), self.scopes.get_mut(name)) {
            before = (st.active, st.sub);
            actions = scope::step(cfg, st, ev, clock.now);
            after = (st.active, st.sub);
            result = st.result;
            (main_pid, launch) = (None, 0);
            if settled(before.0) != settled(after.0) {
                // A scope is in the state file while it is up (re-adopted after a re-exec).
                self.dirty = true;
            }
        } else {
            return;
        }
        let changed = before != after;
        if changed {
            out.push(Effect::StateChanged {
                unit: name.clone(),
                from: (before.0, before.1.as_str()),
                to: (after.0, after.1.as_str()),
                result,
            });
        }
        for a in actions {
            match a {
                Action::Spawn => out.push(Effect::Spawn {
                    unit: name.clone(),
                    seq: launch,
                }),
                Action::RunExecStop => out.push(Effect::SpawnControl(name.clone())),
                Action::Signal { signal, all } => {
                    let target = match (all, main_pid) {
                        (true, _) => Some(Target::All),
                        (false, Some(pid)) => Some(Target::Main(pid)),
                        (false, None) => None,
                    };
                    if let Some(target) = target {
                        out.push(Effect::Signal {
                            unit: name.clone(),
                            signal,
                            target,
                        });
                    }
                }
                Action::KillAll => out.push(Effect::KillAll(name.clone())),
                Action::CheckEmpty => out.push(Effect::CheckEmpty(name.clone())),
                // A deadline past what the clock can hold (`start-timeout = "100years"`) is
                // no deadline at all.
                Action::ArmTimer(d) => match clock.now.checked_add(d) {
                    Some(at) => {
                        self.deadlines.insert(name.clone(), at);
                    }
                    None => {
                        self.deadlines.remove(name);
                    }
                },
                Action::CancelTimer => {
                    self.deadlines.remove(name);
                }
                Action::RemoveCgroup => out.push(Effect::RemoveCgroup(name.clone())),
                Action::FinishJob(r) => self.finish_job(name, r, out),
                Action::Attach => out.push(Effect::AttachScope(name.clone())),
            }
        }
        if !changed {
            return;
        }
        self.needs_advance = true;
        self.touched.insert(name.clone());
        if after.0 == ActiveState::Active {
            self.active_enter.insert(name.clone(), clock.wall);
            self.was_active.insert(name.clone());
            self.dirty = true;
        }
        if settled(after.0) {
            self.on_settled(units, name, after.0);
        }
    }

    /// A service or scope is down (inactive or failed): a restart begins again; the running
    /// units that require it stop if it failed or had been active (a oneshot that did its job
    /// and never was active is no stop).
    fn on_settled(&mut self, units: &UnitSet, name: &UnitName, after: ActiveState) {
        if self.to_stop.remove(name) {
            self.touched.insert(name.clone());
        }
        let was_up = self.was_active.remove(name);
        if self.restarting.remove(name) {
            self.start(units, std::slice::from_ref(name));
            return;
        }
        if !(was_up || after == ActiveState::Failed) {
            return;
        }
        for d in units.graph.required_by(name) {
            if self
                .active_of(d)
                .is_some_and(|a| !settled(a) && a != ActiveState::Deactivating)
            {
                self.touched.insert(d.clone());
                self.to_stop.insert(d.clone());
            }
        }
    }

    /// Whether a unit ordered before another holds it back: it is still to start, being
    /// started, or on its way down (a failed start cleaning up: its result decides).
    fn is_activating(&self, name: &UnitName) -> bool {
        self.queued.contains_key(name)
            || self.realizing.contains(name)
            || self
                .services
                .get(name)
                .is_some_and(|s| s.sub == SubState::Start || s.active == ActiveState::Deactivating)
            || self
                .scopes
                .get(name)
                .is_some_and(|s| s.sub == SubState::Start || s.active == ActiveState::Deactivating)
    }

    fn is_stopping(&self, name: &UnitName) -> bool {
        self.to_stop.contains(name) || self.active_of(name) == Some(ActiveState::Deactivating)
    }

    /// A required unit (requires, slice, namespace owner) that is missing or failed.
    fn failed_requirement(&self, units: &UnitSet, name: &UnitName) -> Option<UnitName> {
        units
            .graph
            .requirements(name)
            .find(|r| match units.get(r) {
                None => true,
                Some(u) if u.name.kind() == Kind::Slice => !self.live_slices.contains(*r),
                Some(_) => self.active_of(r) == Some(ActiveState::Failed),
            })
            .cloned()
    }

    /// Starts every queued unit whose ordering predecessors have settled: one pass, so a unit
    /// started now holds back the units ordered after it until its start is through.
    fn advance(
        &mut self,
        units: &UnitSet,
        touched: &BTreeSet<UnitName>,
        out: &mut Vec<Effect>,
    ) -> bool {
        // Only a touched unit, or one ordered after a touched unit, can have become ready.
        let candidates: BTreeSet<&UnitName> = touched
            .iter()
            .flat_map(|t| std::iter::once(t).chain(units.graph.ordered_after(t)))
            .filter(|c| self.queued.contains_key(*c))
            .collect();
        let ready: Vec<UnitName> = candidates
            .into_iter()
            .filter(|n| !units.graph.waits_on(n).any(|d| self.is_activating(d)))
            .cloned()
            .collect();
        let moved = !ready.is_empty();
        for name in ready {
            self.queued.remove(&name);
            self.touched.insert(name.clone());
            let kind = units.get(&name).map(|u| u.name.kind());
            if self.failed_requirement(units, &name).is_some() {
                // A unit already up stays up; its start merges with it.
                match kind {
                    Some(Kind::Service | Kind::Scope) if self.is_up(&name) => {
                        self.work.push_back((name, Event::Start))
                    }
                    Some(Kind::Service | Kind::Scope) => {
                        self.work.push_back((name, Event::DependencyFailed))
                    }
                    _ => self.finish_job(&name, JobResult::Dependency, out),
                }
                continue;
            }
            match kind {
                Some(Kind::Slice) if name.is_root_slice() => {
                    // The root slice is the cgroup root itself: it exists and takes no limits.
                    self.live_slices.insert(name.clone());
                    self.finish_job(&name, JobResult::Done, out);
                    self.needs_advance = true;
                }
                Some(Kind::Slice) => {
                    self.realizing.insert(name.clone());
                    out.push(Effect::RealizeSlice(name));
                }
                Some(Kind::Service | Kind::Scope) => self.work.push_back((name, Event::Start)),
                None => out.push(Effect::Note {
                    text: format!("no such unit to start: {name}"),
                    unit: name,
                }),
            }
        }
        moved
    }

    /// Sends its stop to every unit waiting in `to_stop` that nothing ordered after it holds
    /// back.
    fn advance_stops(&mut self, units: &UnitSet, touched: &BTreeSet<UnitName>) -> bool {
        // Only a touched unit, or one ordered before a touched unit, can have become ready.
        let candidates: BTreeSet<&UnitName> = touched
            .iter()
            .flat_map(|t| std::iter::once(t).chain(units.graph.waits_on(t)))
            .filter(|c| self.to_stop.contains(*c))
            .collect();
        let ready: Vec<UnitName> = candidates
            .into_iter()
            .filter(|u| {
                !units
                    .graph
                    .ordered_after(u)
                    .any(|a| *a != **u && self.is_stopping(a))
            })
            .cloned()
            .collect();
        let moved = !ready.is_empty();
        for u in ready {
            self.to_stop.remove(&u);
            self.touched.insert(u.clone());
            self.work.push_back((u, Event::Stop));
        }
        moved
    }

    /// A slice whose services are all down is removed with its sub-slices, deepest first, and
    /// its stop job ends.
    fn finish_slice_stops(&mut self, units: &UnitSet, out: &mut Vec<Effect>) -> bool {
        let done: Vec<UnitName> = self
            .stopping_slices
            .iter()
            .filter(|s| {
                self.members_of(units, s)
                    .iter()
                    .all(|m| !self.to_stop.contains(m) && !self.is_up(m))
            })
            .cloned()
            .collect();
        for slice in done.iter().cloned() {
            self.stopping_slices.remove(&slice);
            let mut gone: Vec<UnitName> = self
                .live_slices
                .iter()
                .filter(|s| {
                    !s.is_root_slice()
                        && (**s == slice
                            || std::iter::successors(s.parent_slice(), |p| p.parent_slice())
                                .any(|p| p == slice))
                })
                .cloned()
                .collect();
            gone.sort_by_key(|s| std::cmp::Reverse(s.as_str().matches('-').count()));
            for s in gone {
                self.live_slices.remove(&s);
                self.dirty |= units.get(&s).is_some_and(|u| u.transient);
                out.push(Effect::RemoveSlice(s));
            }
            self.finish_job(&slice, JobResult::Done, out);
        }
        !done.is_empty()
    }
}
