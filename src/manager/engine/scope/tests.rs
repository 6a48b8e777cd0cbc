//! Transition tables of a scope: a configuration, a sequence of events, and after each the
//! state and the actions expected (as `service/tests.rs` has them for services).

use std::time::{Duration, Instant};

use super::*;
use crate::unit::UnitName;

fn scope(delegate: bool) -> Scope {
    Scope {
        slice: UnitName::parse("kubepods.slice").unwrap(),
        pids: vec![4242],
        delegate,
        stop_timeout: Duration::from_secs(3),
    }
}

/// Runs `events` and checks `(active/sub/result, actions)` after each.
fn run(cfg: &Scope, st: &mut ScopeState, steps: &[(Event, &str, &[Action])]) {
    let now = Instant::now();
    for (i, (ev, want_state, want_actions)) in steps.iter().enumerate() {
        let actions = step(cfg, st, *ev, now);
        let got = format!("{}/{}/{}", st.active, st.sub, st.result);
        assert_eq!(&got, want_state, "step {i} ({ev:?})");
        assert_eq!(actions, *want_actions, "step {i} ({ev:?}) actions");
    }
}

/// A scope that started and is running: its processes attached, its job done.
fn running(cfg: &Scope) -> ScopeState {
    let mut st = ScopeState::default();
    run(
        cfg,
        &mut st,
        &[
            (Start, "activating/start/success", &[Attach]),
            (
                Attached(true),
                "active/running/success",
                &[FinishJob(JobResult::Done), CheckEmpty],
            ),
        ],
    );
    st
}

fn term() -> Action {
    Action::Signal {
        signal: libc::SIGTERM,
        all: true,
    }
}
fn arm() -> Action {
    Action::ArmTimer(Duration::from_secs(3))
}
use Action::{Attach, CancelTimer, CheckEmpty, FinishJob, KillAll, RemoveCgroup};
use Event::*;

/// Adopted by PID, active while populated, gone once empty.
#[test]
fn a_scope_is_adopted_and_ends_when_its_processes_are_gone() {
    let cfg = scope(true);
    let mut st = ScopeState::default();
    run(
        &cfg,
        &mut st,
        &[
            (Start, "activating/start/success", &[Attach]),
            // A second start while attaching merges with it.
            (Start, "activating/start/success", &[]),
            (
                Attached(true),
                "active/running/success",
                &[FinishJob(JobResult::Done), CheckEmpty],
            ),
            (
                Start,
                "active/running/success",
                &[FinishJob(JobResult::Done)],
            ),
            (CgroupEmpty, "inactive/dead/success", &[RemoveCgroup]),
            // A second report of the same emptiness changes nothing.
            (CgroupEmpty, "inactive/dead/success", &[]),
            // Its processes are gone: it does not start again.
            (
                Start,
                "inactive/dead/success",
                &[FinishJob(JobResult::Failed)],
            ),
        ],
    );
}

#[test]
fn a_scope_whose_processes_cannot_be_moved_fails_with_resources() {
    let cfg = scope(false);
    let mut st = ScopeState::default();
    run(
        &cfg,
        &mut st,
        &[
            (Start, "activating/start/success", &[Attach]),
            (
                Attached(false),
                "failed/failed/resources",
                &[FinishJob(JobResult::Failed), RemoveCgroup],
            ),
            // reset-failed: inactive again (the executor then unloads it).
            (ResetFailed, "inactive/dead/success", &[]),
            (ResetFailed, "inactive/dead/success", &[]),
        ],
    );
}

/// Stop: SIGTERM to the cgroup, `cgroup.kill` after the timeout, then gone once empty — a
/// stop that was asked for ends inactive even when it took SIGKILL.
#[test]
fn a_stop_signals_the_cgroup_then_kills_it() {
    let cfg = scope(true);
    let mut st = running(&cfg);
    run(
        &cfg,
        &mut st,
        &[
            (
                Stop,
                "deactivating/stop-sigterm/success",
                &[term(), arm(), CheckEmpty],
            ),
            // A second stop job joins the first.
            (Stop, "deactivating/stop-sigterm/success", &[]),
            (
                Timer,
                "deactivating/stop-sigkill/success",
                &[KillAll, arm()],
            ),
            (
                CgroupEmpty,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
            (Stop, "inactive/dead/success", &[FinishJob(JobResult::Done)]),
        ],
    );
}

#[test]
fn a_scope_that_survives_cgroup_kill_fails_with_timeout() {
    let cfg = scope(false);
    let mut st = running(&cfg);
    run(
        &cfg,
        &mut st,
        &[
            (
                Stop,
                "deactivating/stop-sigterm/success",
                &[term(), arm(), CheckEmpty],
            ),
            (
                Timer,
                "deactivating/stop-sigkill/success",
                &[KillAll, arm()],
            ),
            (
                Timer,
                "failed/failed/timeout",
                &[FinishJob(JobResult::Timeout)],
            ),
            // Emptying later changes nothing: it stays failed until reset.
            (CgroupEmpty, "failed/failed/timeout", &[]),
            (ResetFailed, "inactive/dead/success", &[]),
        ],
    );
}

/// An OOM kill stops a scope corral owns whole; a delegated scope's OOM kills are its
/// runtime's business.
#[test]
fn oom_kills_stop_only_a_scope_that_is_not_delegated() {
    let cfg = scope(false);
    let mut st = running(&cfg);
    run(
        &cfg,
        &mut st,
        &[
            (
                OomKill,
                "deactivating/stop-sigterm/oom-kill",
                &[term(), arm(), CheckEmpty],
            ),
            (
                CgroupEmpty,
                "failed/failed/oom-kill",
                &[CancelTimer, RemoveCgroup],
            ),
        ],
    );
    let cfg = scope(true);
    let mut st = running(&cfg);
    run(&cfg, &mut st, &[(OomKill, "active/running/success", &[])]);
}

#[test]
fn a_stop_while_attaching_cancels_the_start() {
    let cfg = scope(true);
    let mut st = ScopeState::default();
    run(
        &cfg,
        &mut st,
        &[
            (Start, "activating/start/success", &[Attach]),
            (
                Stop,
                "deactivating/stop-sigterm/success",
                &[FinishJob(JobResult::Canceled), term(), arm(), CheckEmpty],
            ),
            // The attach's outcome arrives late: stale.
            (Attached(true), "deactivating/stop-sigterm/success", &[]),
            (
                CgroupEmpty,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
        ],
    );
}

#[test]
fn a_slice_that_failed_fails_the_scope_with_dependency() {
    let cfg = scope(true);
    let mut st = ScopeState::default();
    run(
        &cfg,
        &mut st,
        &[(
            DependencyFailed,
            "failed/failed/dependency",
            &[FinishJob(JobResult::Dependency)],
        )],
    );
    assert!(st.started, "a scope whose start failed can't start again");
}
