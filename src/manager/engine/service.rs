//! One service's lifecycle as a pure function: `(state, event) -> actions`, with the state
//! changed in place. No I/O happens here — the job engine ([`super`]) turns the [`Action`]s into
//! effects for the executor (spawn, signal, remove the cgroup) or into its own tables (the
//! unit's timer, the caller's job), and feeds what the executor observes back as [`Event`]s.
//! That keeps every transition testable with tables.
//!
//! Each unit has one timer: the start timeout while activating, the stop timeout while
//! deactivating, the restart delay while waiting to restart. Arming it replaces the previous
//! deadline. The start timeout runs from the launch for every type: a launch is carried out off
//! the event loop and its outcome ([`Event::Spawned`]) arrives later, so a child that never
//! execs (its cgroup frozen, a hung file system) ends as a `timeout` like a notify service that
//! never sends `READY=1`.
//!
//! Stopping always ends with the cgroup empty: the stop signal goes to every process of the
//! unit (or only the main process with `kill-mode = "process"`), then after `stop-timeout`
//! `cgroup.kill` ends whatever is left, and the unit settles only when the kernel reports the
//! cgroup unpopulated ([`Event::CgroupEmpty`]).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::unit::{KillMode, OomPolicy, Restart, Service, ServiceType};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveState {
    Inactive,
    Activating,
    Active,
    Deactivating,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubState {
    Dead,
    Start,
    Running,
    Exited,
    StopSigterm,
    StopSigkill,
    AutoRestart,
    Failed,
}

/// Why a unit last stopped or failed (`Result` on D-Bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitResult {
    Success,
    ExitCode,
    Signal,
    OomKill,
    Timeout,
    StartLimitHit,
    Dependency,
    /// A scope's processes could not be moved into its cgroup (systemd's name).
    Resources,
}

/// How a job ended (`JobRemoved`'s result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobResult {
    Done,
    Failed,
    Timeout,
    Dependency,
    Canceled,
}

macro_rules! names {
    ($ty:ty { $($variant:ident => $s:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $s),* }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(ActiveState { Inactive => "inactive", Activating => "activating", Active => "active",
    Deactivating => "deactivating", Failed => "failed" });
names!(SubState { Dead => "dead", Start => "start", Running => "running", Exited => "exited",
    StopSigterm => "stop-sigterm", StopSigkill => "stop-sigkill", AutoRestart => "auto-restart",
    Failed => "failed" });
names!(UnitResult { Success => "success", ExitCode => "exit-code", Signal => "signal",
    OomKill => "oom-kill", Timeout => "timeout", StartLimitHit => "start-limit-hit",
    Dependency => "dependency", Resources => "resources" });
names!(JobResult { Done => "done", Failed => "failed", Timeout => "timeout",
    Dependency => "dependency", Canceled => "canceled" });

/// How the main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// An adopted process whose status can't be known (it was not our child): counts as a
    /// failure, as the design says.
    Unknown,
}

impl Exit {
    fn result(self) -> UnitResult {
        match self {
            Exit::Code(0) => UnitResult::Success,
            Exit::Code(_) | Exit::Unknown => UnitResult::ExitCode,
            Exit::Signal(_) => UnitResult::Signal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A start job reached the unit (its dependencies are up).
    Start,
    /// A stop job reached the unit.
    Stop,
    /// The main process exists and has exec'ed (the launch's outcome).
    Spawned {
        pid: u32,
    },
    /// exec or the set-up before it failed.
    SpawnFailed,
    MainExited(Exit),
    /// `READY=1` from the notify socket.
    Ready,
    /// The kernel reports the unit's cgroup unpopulated.
    CgroupEmpty,
    /// The unit's timer fired.
    Timer,
    /// `oom_kill` grew in the unit's memory.events.
    OomKill,
    /// A unit this one requires failed to start.
    DependencyFailed,
    /// The `exec-stop` command ended (or could not start).
    ControlExited,
    /// A scope's processes were moved into its cgroup (or not: `false`).
    Attached(bool),
    /// `ResetFailedUnit`: a failed unit goes back to inactive.
    ResetFailed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the main process in the unit's cgroup (created first).
    Spawn,
    /// Run `exec-stop` in the unit's cgroup; its end comes back as [`Event::ControlExited`].
    RunExecStop,
    /// Send this signal to every process of the unit (`all`) or the main process only.
    Signal {
        signal: i32,
        all: bool,
    },
    /// `cgroup.kill`: SIGKILL to every process of the unit.
    KillAll,
    /// Check whether the cgroup is already empty (and send [`Event::CgroupEmpty`] if so).
    CheckEmpty,
    ArmTimer(Duration),
    CancelTimer,
    RemoveCgroup,
    FinishJob(JobResult),
    /// A scope's start: make its cgroup, write its limits and move its processes in; the
    /// outcome comes back as [`Event::Attached`].
    Attach,
}

/// What a job is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    Start,
    Stop,
}

/// The run-time state of one service.
#[derive(Debug, Clone)]
pub struct ServiceState {
    pub active: ActiveState,
    pub sub: SubState,
    pub result: UnitResult,
    pub main_pid: Option<u32>,
    /// Last exit status of the main process (code or signal number).
    pub exit_status: i32,
    pub n_restarts: u32,
    pub job: Option<Pending>,
    /// The delay before the next automatic restart.
    next_delay: Duration,
    /// Start times inside the start-limit interval.
    starts: VecDeque<Instant>,
    /// When the unit last became active (for resetting the restart delay).
    pub active_since: Option<Instant>,
    /// A stop was asked for: when the processes are gone, don't restart.
    stop_requested: bool,
    /// `exec-stop` is running; the stop signal follows when it ends.
    control_running: bool,
    /// A launch of the main process is under way: its outcome ([`Event::Spawned`] or
    /// [`Event::SpawnFailed`]) has not arrived yet.
    pub launching: bool,
    /// Which launch is the current one (counts up at each); the engine drops the outcome of
    /// an earlier one.
    pub launch: u64,
}

impl ServiceState {
    pub fn new(cfg: &Service) -> Self {
        ServiceState {
            active: ActiveState::Inactive,
            sub: SubState::Dead,
            result: UnitResult::Success,
            main_pid: None,
            exit_status: 0,
            n_restarts: 0,
            job: None,
            next_delay: cfg.restart_delay,
            starts: VecDeque::new(),
            active_since: None,
            stop_requested: false,
            control_running: false,
            launching: false,
            launch: 0,
        }
    }

    fn set(&mut self, active: ActiveState, sub: SubState) {
        self.active = active;
        self.sub = sub;
    }

    fn finish_job(&mut self, r: JobResult, out: &mut Vec<Action>) {
        finish_job(&mut self.job, r, out);
    }
}

/// Ends the pending job, if there is one, with `r` (a job is finished once: a second event
/// that would end it finds none).
pub(super) fn finish_job(job: &mut Option<Pending>, r: JobResult, out: &mut Vec<Action>) {
    if job.take().is_some() {
        out.push(Action::FinishJob(r));
    }
}

/// Applies one event; returns what the executor must do, in order.
pub fn step(cfg: &Service, st: &mut ServiceState, ev: Event, now: Instant) -> Vec<Action> {
    use ActiveState as A;
    use SubState as S;
    let mut out = Vec::new();
    if matches!(ev, Event::Spawned { .. } | Event::SpawnFailed) {
        st.launching = false;
    }
    match (st.sub, ev) {
        // ── starting ──
        (S::Dead | S::Failed, Event::Start) => begin_start(cfg, st, now, &mut out),
        (S::Running | S::Exited | S::Start, Event::Start) => {
            // Already started or starting: the job merges with the running one.
            if st.active == A::Active {
                out.push(Action::FinishJob(JobResult::Done));
            } else {
                st.job = Some(Pending::Start);
            }
        }
        (S::AutoRestart, Event::Start) => {
            out.push(Action::CancelTimer);
            st.job = Some(Pending::Start);
            begin_start(cfg, st, now, &mut out);
        }
        (S::AutoRestart, Event::Timer) => {
            begin_start(cfg, st, now, &mut out);
            // A restart the start limit refused is no restart.
            if st.sub == S::Start {
                st.n_restarts += 1;
            }
        }
        (S::Start, Event::Spawned { pid }) => {
            st.main_pid = Some(pid);
            match cfg.kind {
                ServiceType::Simple | ServiceType::Exec => {
                    out.push(Action::CancelTimer);
                    become_active(st, S::Running, now, &mut out)
                }
                // notify waits for READY=1, oneshot for the exit.
                ServiceType::Notify | ServiceType::Oneshot { .. } => {}
            }
        }
        (S::Start, Event::Ready) if cfg.kind == ServiceType::Notify => {
            out.push(Action::CancelTimer);
            become_active(st, S::Running, now, &mut out);
        }
        (S::Start, Event::SpawnFailed) => {
            st.main_pid = None;
            st.result = UnitResult::ExitCode;
            st.exit_status = 127;
            begin_cleanup(cfg, st, now, &mut out);
        }
        (S::Start, Event::Timer) => {
            st.result = UnitResult::Timeout;
            begin_stop(cfg, st, now, &mut out);
        }
        (S::Start, Event::MainExited(exit)) => {
            st.main_pid = None;
            record_exit(st, exit);
            match (cfg.kind, exit.result()) {
                (
                    ServiceType::Oneshot {
                        remain_after_exit: true,
                    },
                    UnitResult::Success,
                ) => {
                    out.push(Action::CancelTimer);
                    become_active(st, S::Exited, now, &mut out);
                    // Whatever the oneshot left behind is still stopped: it is done.
                    out.push(Action::Signal {
                        signal: cfg.stop_signal as i32,
                        all: true,
                    });
                }
                (ServiceType::Oneshot { .. }, UnitResult::Success) => {
                    out.push(Action::CancelTimer);
                    st.finish_job(JobResult::Done, &mut out);
                    begin_cleanup(cfg, st, now, &mut out);
                }
                _ => {
                    out.push(Action::CancelTimer);
                    // A notify service that exits before READY=1 failed even with status 0.
                    if st.result == UnitResult::Success {
                        st.result = UnitResult::ExitCode;
                    }
                    begin_cleanup(cfg, st, now, &mut out);
                }
            }
        }

        // ── running ──
        (S::Running, Event::MainExited(exit)) => {
            st.main_pid = None;
            record_exit(st, exit);
            begin_cleanup(cfg, st, now, &mut out);
        }
        (S::Running | S::Start | S::Exited, Event::OomKill) => match cfg.oom_policy {
            OomPolicy::Continue => {}
            OomPolicy::Stop | OomPolicy::Kill => {
                st.result = UnitResult::OomKill;
                begin_stop(cfg, st, now, &mut out);
            }
        },

        // ── stopping ──
        (S::Running | S::Start | S::Exited, Event::Stop) => {
            st.stop_requested = true;
            if st.job == Some(Pending::Start) {
                st.finish_job(JobResult::Canceled, &mut out);
            }
            st.job = Some(Pending::Stop);
            if !cfg.exec_stop.is_empty() && st.active == A::Active {
                // exec-stop first; the stop signal follows when it ends (or stop-timeout hits).
                st.control_running = true;
                st.set(A::Deactivating, S::StopSigterm);
                out.push(Action::RunExecStop);
                out.push(Action::ArmTimer(cfg.stop_timeout));
            } else {
                begin_stop(cfg, st, now, &mut out);
            }
        }
        (S::StopSigterm, Event::ControlExited) if st.control_running => {
            st.control_running = false;
            let all = cfg.kill_mode == crate::unit::KillMode::ControlGroup || st.main_pid.is_none();
            out.push(Action::Signal {
                signal: cfg.stop_signal as i32,
                all,
            });
            out.push(Action::CheckEmpty);
        }
        // The launch finished after the stop began (a child slow to exec): it is the main
        // process now, and with kill-mode = process the only one the stop reaches.
        (S::StopSigterm | S::StopSigkill, Event::Spawned { pid }) if st.main_pid.is_none() => {
            st.main_pid = Some(pid);
            if cfg.kill_mode == KillMode::Process {
                let signal = if st.sub == S::StopSigkill {
                    libc::SIGKILL
                } else {
                    cfg.stop_signal as i32
                };
                out.push(Action::Signal { signal, all: false });
            }
        }
        // The launch failed after the stop began: with kill-mode = process it was all there
        // was to wait for.
        (S::StopSigterm | S::StopSigkill, Event::SpawnFailed) => match cfg.kill_mode {
            KillMode::Process if st.main_pid.is_none() && !st.control_running => {
                settle(cfg, st, now, &mut out)
            }
            KillMode::Process => {}
            KillMode::ControlGroup => out.push(Action::CheckEmpty),
        },
        (S::StopSigterm | S::StopSigkill, Event::Stop) => {
            st.stop_requested = true;
            st.job = Some(Pending::Stop);
        }
        // A start while the unit goes down: it begins once the unit is down (see `settle`).
        (S::StopSigterm | S::StopSigkill, Event::Start) => {
            st.job = Some(Pending::Start);
        }
        (S::AutoRestart, Event::Stop) => {
            out.push(Action::CancelTimer);
            st.set(A::Inactive, S::Dead);
            out.push(Action::FinishJob(JobResult::Done));
        }
        (S::Dead | S::Failed, Event::Stop) => out.push(Action::FinishJob(JobResult::Done)),
        // The kernel killed a process for memory while the unit was already going down (its
        // main process died first): the cause is still the OOM kill.
        (S::StopSigterm | S::StopSigkill, Event::OomKill)
            if !st.stop_requested && cfg.oom_policy != OomPolicy::Continue =>
        {
            st.result = UnitResult::OomKill;
        }
        (S::StopSigterm | S::StopSigkill, Event::MainExited(exit)) => {
            st.main_pid = None;
            if !st.stop_requested && st.result == UnitResult::Success {
                record_exit(st, exit);
            }
            match cfg.kill_mode {
                // kill-mode = process: the main process was all there was to stop.
                KillMode::Process if !st.control_running => settle(cfg, st, now, &mut out),
                KillMode::Process => {}
                // Often the main process was the last one: its exit empties the cgroup at
                // once, while the kernel may hold back the cgroup.events notification by up
                // to 10 ms.
                KillMode::ControlGroup => out.push(Action::CheckEmpty),
            }
        }
        (S::StopSigterm, Event::Timer) => {
            st.control_running = false;
            if st.result == UnitResult::Success && !st.stop_requested {
                st.result = UnitResult::Timeout;
            }
            st.sub = S::StopSigkill;
            match cfg.kill_mode {
                KillMode::ControlGroup => out.push(Action::KillAll),
                // A launch that never reported (its child stuck before exec, unknown to us):
                // only the cgroup reaches it.
                KillMode::Process if st.launching && st.main_pid.is_none() => {
                    out.push(Action::KillAll)
                }
                KillMode::Process => out.push(Action::Signal {
                    signal: libc::SIGKILL,
                    all: false,
                }),
            }
            out.push(Action::ArmTimer(cfg.stop_timeout));
        }
        (S::StopSigkill, Event::Timer) => {
            // SIGKILL did not empty the cgroup (a process stuck in the kernel). Settle as
            // failed; the cgroup stays until it empties.
            st.result = UnitResult::Timeout;
            st.set(A::Failed, S::Failed);
            st.finish_job(JobResult::Timeout, &mut out);
        }
        (S::StopSigterm | S::StopSigkill, Event::CgroupEmpty) => settle(cfg, st, now, &mut out),

        // ── failures before starting ──
        (S::Dead | S::Failed, Event::DependencyFailed) => {
            st.result = UnitResult::Dependency;
            st.set(A::Failed, S::Failed);
            st.job = None;
            out.push(Action::FinishJob(JobResult::Dependency));
        }

        // ── after a failure ──
        (S::Failed, Event::ResetFailed) => {
            // As systemd's reset-failed: the result and the start limit's count go too.
            st.result = UnitResult::Success;
            st.starts.clear();
            st.set(A::Inactive, S::Dead);
        }

        // Anything else is stale (a timer that fired after it was replaced, a duplicate
        // notification) and changes nothing.
        _ => {}
    }
    out
}

impl ServiceState {
    /// What the state file holds of this service: nothing while it is not running, else its
    /// main process and restart count. Nor while its first launch is under way: with no main
    /// process and no restart counted there is nothing to remember that its cgroup would not
    /// tell a re-executed daemon (a start cut short is adopted from the cgroup alone).
    pub fn saved_part(&self) -> Option<(Option<u32>, u32)> {
        let launching = self.active == ActiveState::Activating
            && self.main_pid.is_none()
            && self.n_restarts == 0;
        (!matches!(self.active, ActiveState::Inactive | ActiveState::Failed) && !launching)
            .then_some((self.main_pid, self.n_restarts))
    }

    /// The state of a service found running at start: active, with that main process.
    pub fn adopt(&mut self, main_pid: Option<u32>, n_restarts: u32, now: Instant) {
        self.active = ActiveState::Active;
        self.sub = SubState::Running;
        self.main_pid = main_pid;
        self.n_restarts = n_restarts;
        self.active_since = Some(now);
    }
}

fn record_exit(st: &mut ServiceState, exit: Exit) {
    st.result = exit.result();
    st.exit_status = match exit {
        Exit::Code(c) => c,
        Exit::Signal(s) => s,
        Exit::Unknown => -1,
    };
}

fn begin_start(cfg: &Service, st: &mut ServiceState, now: Instant, out: &mut Vec<Action>) {
    // A start from rest is the caller's job (an automatic restart is nobody's); set before the
    // start limit is looked at, so a refused start still ends its job.
    if st.job.is_none() && st.sub != SubState::AutoRestart {
        st.job = Some(Pending::Start);
    }
    let limit = cfg.start_limit;
    if !limit.interval.is_zero() {
        while st
            .starts
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limit.interval)
        {
            st.starts.pop_front();
        }
        if st.starts.len() >= limit.burst as usize {
            st.result = UnitResult::StartLimitHit;
            st.set(ActiveState::Failed, SubState::Failed);
            st.finish_job(JobResult::Failed, out);
            return;
        }
        st.starts.push_back(now);
    }
    st.result = UnitResult::Success;
    st.stop_requested = false;
    st.set(ActiveState::Activating, SubState::Start);
    st.launching = true;
    st.launch += 1;
    out.push(Action::Spawn);
    out.push(Action::ArmTimer(cfg.start_timeout));
}

fn become_active(st: &mut ServiceState, sub: SubState, now: Instant, out: &mut Vec<Action>) {
    st.set(ActiveState::Active, sub);
    st.active_since = Some(now);
    st.finish_job(JobResult::Done, out);
}

/// Stop on request or on failure: the stop signal, then the stop timeout.
fn begin_stop(cfg: &Service, st: &mut ServiceState, now: Instant, out: &mut Vec<Action>) {
    if st.job == Some(Pending::Start) {
        let r = if st.result == UnitResult::Timeout {
            JobResult::Timeout
        } else {
            JobResult::Failed
        };
        st.finish_job(r, out);
    }
    st.set(ActiveState::Deactivating, SubState::StopSigterm);
    match (cfg.kill_mode, st.main_pid) {
        (KillMode::ControlGroup, _) => {
            out.push(Action::Signal {
                signal: cfg.stop_signal as i32,
                all: true,
            });
            out.push(Action::ArmTimer(cfg.stop_timeout));
            out.push(Action::CheckEmpty);
        }
        (KillMode::Process, Some(_)) => {
            out.push(Action::Signal {
                signal: cfg.stop_signal as i32,
                all: false,
            });
            out.push(Action::ArmTimer(cfg.stop_timeout));
        }
        // kill-mode = process and no main process yet, but one is being launched: wait for
        // it (its outcome stops it), or for the stop timeout.
        (KillMode::Process, None) if st.launching => {
            out.push(Action::ArmTimer(cfg.stop_timeout));
        }
        // kill-mode = process and no main process: nothing of ours to stop.
        (KillMode::Process, None) => settle(cfg, st, now, out),
    }
}

/// The main process is gone on its own: stop what is left of the unit (with kill-mode =
/// process, nothing: the rest may outlive it, as a delegated manager's services must), then
/// settle.
fn begin_cleanup(cfg: &Service, st: &mut ServiceState, now: Instant, out: &mut Vec<Action>) {
    if st.job == Some(Pending::Start) && st.result != UnitResult::Success {
        st.finish_job(JobResult::Failed, out);
    }
    begin_stop(cfg, st, now, out);
}

/// The unit's processes are gone (with kill-mode = process: its main process): decide between
/// dead, failed and a restart. The executor removes the cgroup only if it is empty.
fn settle(cfg: &Service, st: &mut ServiceState, now: Instant, out: &mut Vec<Action>) {
    out.push(Action::CancelTimer);
    out.push(Action::RemoveCgroup);
    st.main_pid = None;
    if st.job == Some(Pending::Start) {
        // Started again while it was going down: down now, it starts.
        st.stop_requested = false;
        begin_start(cfg, st, now, out);
        return;
    }
    let failed = st.result != UnitResult::Success;
    let restart = !st.stop_requested
        && st.result != UnitResult::StartLimitHit
        && match cfg.restart {
            Restart::No => false,
            Restart::OnFailure => failed,
            Restart::Always => true,
        };
    if restart {
        // The delay doubles after each consecutive restart, up to the maximum, and starts over
        // once the unit stayed up for restart-delay-max.
        if st
            .active_since
            .is_some_and(|t| now.duration_since(t) >= cfg.restart_delay_max)
        {
            st.next_delay = cfg.restart_delay;
        }
        let delay = st.next_delay;
        st.next_delay = (delay * 2).min(cfg.restart_delay_max);
        st.set(ActiveState::Activating, SubState::AutoRestart);
        out.push(Action::ArmTimer(delay));
        return;
    }
    if failed && !st.stop_requested {
        st.set(ActiveState::Failed, SubState::Failed);
        st.finish_job(JobResult::Failed, out);
    } else {
        if st.stop_requested {
            st.result = UnitResult::Success;
        }
        st.set(ActiveState::Inactive, SubState::Dead);
        st.finish_job(JobResult::Done, out);
    }
    st.stop_requested = false;
}

#[cfg(test)]
mod tests;
