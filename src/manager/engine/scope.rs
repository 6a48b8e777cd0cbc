//! One scope's lifecycle as a pure function, as [`super::service`] is for services (DESIGN §9):
//! `(state, event) -> actions`, the state changed in place, tested with tables
//! (`scope/tests.rs`).
//!
//! A scope is a group of processes corral did not start. Its life:
//! - **adopted by PID**: its start job, once its slices are realized, asks the executor to
//!   make its cgroup, write its limits and move its processes in ([`Action::Attach`]); the
//!   outcome comes back as [`Event::Attached`]. A process that could not be moved fails the
//!   scope with result `resources` (as systemd's).
//! - **active while populated**: the kernel reporting the cgroup empty (every process gone,
//!   the subtree of a delegated scope included) ends it, `inactive` with `success`; the
//!   executor then unloads it (a scope is always transient: gone once stopped or empty).
//! - **stopped by signalling its cgroup**: SIGTERM to every process, then after the stop
//!   timeout `cgroup.kill`, then, if even that leaves it populated, `failed` with `timeout`.
//!   A stop that was asked for ends `inactive` however it ended (SIGKILL included), so that a
//!   container runtime's next scope of the same name is not refused for a failed one.
//! - **OOM kills**: a delegated scope's are its runtime's business (counted, nothing else, as
//!   systemd's `OOMPolicy=continue` for delegated units); any other scope stops and fails with
//!   `oom-kill`, as a service with `oom-policy = "stop"`.
//! - **reset-failed**: a failed scope goes back to `inactive` (and is then unloaded).
//!
//! A scope starts once: its processes are gone when it ends, so a start of a scope that has
//! run already fails its job (the executor refuses such jobs before they get here).

use std::time::Instant;

use super::service::{Action, ActiveState, Event, JobResult, Pending, SubState, UnitResult};
use crate::unit::Scope;

/// The run-time state of one scope.
#[derive(Debug, Clone)]
pub struct ScopeState {
    pub active: ActiveState,
    pub sub: SubState,
    pub result: UnitResult,
    pub job: Option<Pending>,
    /// The processes were attached once: the scope can't start again.
    pub started: bool,
    /// A stop was asked for (not an OOM kill): it ends `inactive`, however it ends.
    stop_requested: bool,
    /// When it became active.
    pub active_since: Option<Instant>,
}

impl Default for ScopeState {
    fn default() -> Self {
        ScopeState {
            active: ActiveState::Inactive,
            sub: SubState::Dead,
            result: UnitResult::Success,
            job: None,
            started: false,
            stop_requested: false,
            active_since: None,
        }
    }
}

impl ScopeState {
    /// The state of a scope found up at start (after a re-exec or a crash): running.
    pub fn adopt(&mut self, now: Instant) {
        self.started = true;
        self.set(ActiveState::Active, SubState::Running);
        self.active_since = Some(now);
    }

    fn set(&mut self, active: ActiveState, sub: SubState) {
        self.active = active;
        self.sub = sub;
    }

    fn finish_job(&mut self, r: JobResult, out: &mut Vec<Action>) {
        super::service::finish_job(&mut self.job, r, out);
    }
}

/// Applies one event; returns what the executor must do, in order.
pub fn step(cfg: &Scope, st: &mut ScopeState, ev: Event, now: Instant) -> Vec<Action> {
    use ActiveState as A;
    use SubState as S;
    let mut out = Vec::new();
    match (st.sub, ev) {
        // ── starting ──
        (S::Dead | S::Failed, Event::Start) if st.started => {
            // Its processes are gone: there is nothing to start again.
            out.push(Action::FinishJob(JobResult::Failed));
        }
        (S::Dead | S::Failed, Event::Start) => {
            st.started = true;
            st.job = Some(Pending::Start);
            st.result = UnitResult::Success;
            st.set(A::Activating, S::Start);
            out.push(Action::Attach);
        }
        (S::Start, Event::Start) => st.job = Some(Pending::Start),
        (S::Running, Event::Start) => out.push(Action::FinishJob(JobResult::Done)),
        (S::Start, Event::Attached(true)) => {
            st.set(A::Active, S::Running);
            st.active_since = Some(now);
            st.finish_job(JobResult::Done, &mut out);
            // Its processes may all have exited before the watch existed.
            out.push(Action::CheckEmpty);
        }
        (S::Start, Event::Attached(false)) => {
            st.result = UnitResult::Resources;
            st.set(A::Failed, S::Failed);
            st.finish_job(JobResult::Failed, &mut out);
            // Processes that were moved before one failed stay until they end on their own.
            out.push(Action::RemoveCgroup);
        }
        (S::Dead | S::Failed, Event::DependencyFailed) => {
            st.started = true;
            st.result = UnitResult::Dependency;
            st.set(A::Failed, S::Failed);
            st.job = None;
            out.push(Action::FinishJob(JobResult::Dependency));
        }

        // ── running ──
        (S::Running, Event::CgroupEmpty) => {
            st.set(A::Inactive, S::Dead);
            out.push(Action::RemoveCgroup);
        }
        (S::Running, Event::OomKill) if !cfg.delegate => {
            st.result = UnitResult::OomKill;
            begin_stop(cfg, st, &mut out);
        }

        // ── stopping ──
        (S::Start | S::Running, Event::Stop) => {
            if st.job == Some(Pending::Start) {
                st.finish_job(JobResult::Canceled, &mut out);
            }
            st.stop_requested = true;
            st.job = Some(Pending::Stop);
            begin_stop(cfg, st, &mut out);
        }
        (S::StopSigterm | S::StopSigkill, Event::Stop) => {
            st.stop_requested = true;
            st.job = Some(Pending::Stop);
        }
        (S::Dead | S::Failed, Event::Stop) => out.push(Action::FinishJob(JobResult::Done)),
        (S::StopSigterm, Event::Timer) => {
            st.sub = S::StopSigkill;
            out.push(Action::KillAll);
            out.push(Action::ArmTimer(cfg.stop_timeout));
        }
        (S::StopSigkill, Event::Timer) => {
            // cgroup.kill did not empty it (a process stuck in the kernel): it stays, failed.
            st.result = UnitResult::Timeout;
            st.set(A::Failed, S::Failed);
            st.stop_requested = false;
            st.finish_job(JobResult::Timeout, &mut out);
        }
        (S::StopSigterm | S::StopSigkill, Event::CgroupEmpty) => {
            out.push(Action::CancelTimer);
            out.push(Action::RemoveCgroup);
            if st.stop_requested || st.result == UnitResult::Success {
                st.result = UnitResult::Success;
                st.set(A::Inactive, S::Dead);
            } else {
                st.set(A::Failed, S::Failed);
            }
            st.stop_requested = false;
            st.finish_job(JobResult::Done, &mut out);
        }

        // ── after a failure ──
        (S::Failed, Event::ResetFailed) => {
            st.result = UnitResult::Success;
            st.set(A::Inactive, S::Dead);
        }

        // Anything else is stale (a timer replaced meanwhile, a second empty report) and
        // changes nothing.
        _ => {}
    }
    out
}

/// SIGTERM to every process, the stop timeout armed, and a look at whether it is empty
/// already.
fn begin_stop(cfg: &Scope, st: &mut ScopeState, out: &mut Vec<Action>) {
    st.set(ActiveState::Deactivating, SubState::StopSigterm);
    out.push(Action::Signal {
        signal: libc::SIGTERM,
        all: true,
    });
    out.push(Action::ArmTimer(cfg.stop_timeout));
    out.push(Action::CheckEmpty);
}

#[cfg(test)]
mod tests;
