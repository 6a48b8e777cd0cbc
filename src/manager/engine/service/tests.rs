//! Transition tables: each case is a unit configuration, a sequence of events, and after each
//! event the state and the actions expected.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::unit::{UnitName, parse_unit};

fn service(extra: &str) -> Service {
    let text = format!("[service]\nexec = [\"/bin/true\"]\n{extra}");
    let unit = parse_unit(
        &UnitName::parse("t.service").unwrap(),
        Path::new("t"),
        &text,
    )
    .unwrap_or_else(|d| panic!("{d:?}"));
    *unit.service.unwrap()
}

/// Runs `events` (with a time offset in ms each) and checks `(active/sub/result, actions)`.
fn run(cfg: &Service, steps: &[(u64, Event, &str, &[Action])]) -> ServiceState {
    let t0 = Instant::now();
    let mut st = ServiceState::new(cfg);
    for (i, (ms, ev, want_state, want_actions)) in steps.iter().enumerate() {
        let actions = step(cfg, &mut st, *ev, t0 + Duration::from_millis(*ms));
        let got = format!("{}/{}/{}", st.active, st.sub, st.result);
        assert_eq!(&got, want_state, "step {i} ({ev:?})");
        assert_eq!(actions, *want_actions, "step {i} ({ev:?}) actions");
    }
    st
}

const TERM: i32 = 15;
fn sig(all: bool) -> Action {
    Action::Signal { signal: TERM, all }
}
fn arm(s: u64) -> Action {
    Action::ArmTimer(Duration::from_secs(s))
}
fn arm_ms(ms: u64) -> Action {
    Action::ArmTimer(Duration::from_millis(ms))
}
use Action::{CancelTimer, CheckEmpty, FinishJob, KillAll, RemoveCgroup, Spawn};
use Event::*;

#[test]
fn simple_start_and_stop() {
    let cfg = service("");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 42 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (
                5,
                Stop,
                "deactivating/stop-sigterm/success",
                &[sig(true), arm(10), CheckEmpty],
            ),
            // The main process was reaped: whether it was the last is checked at once, not
            // left to a cgroup.events notification the kernel may delay by 10 ms.
            (
                6,
                MainExited(Exit::Signal(TERM)),
                "deactivating/stop-sigterm/success",
                // The main process may have been the last: look at once, don't wait for the
                // (rate-limited) cgroup.events notification.
                &[CheckEmpty],
            ),
            (
                7,
                CgroupEmpty,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
        ],
    );
}

#[test]
fn stop_timeout_escalates_to_cgroup_kill() {
    let cfg = service("stop-timeout = \"2s\"\n");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 7 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (
                2,
                Stop,
                "deactivating/stop-sigterm/success",
                &[sig(true), arm(2), CheckEmpty],
            ),
            (
                2002,
                Timer,
                "deactivating/stop-sigkill/success",
                &[KillAll, arm(2)],
            ),
            (
                2003,
                CgroupEmpty,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
        ],
    );
}

/// kill-mode = process (a delegated manager): only the main process is stopped, and when it
/// dies on its own the rest of the unit is left alone.
#[test]
fn kill_mode_process_touches_only_the_main_process() {
    let cfg = service(
        "stop-timeout = \"2s\"\nkill-mode = \"process\"\nrestart = \"on-failure\"\nrestart-delay = \"1s\"\nrestart-delay-max = \"1s\"\n",
    );
    let kill_main = Action::Signal {
        signal: 9,
        all: false,
    };
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 7 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            // The main process crashes: no signal to the rest, straight to the restart delay.
            (
                2,
                MainExited(Exit::Signal(9)),
                "activating/auto-restart/signal",
                &[CancelTimer, RemoveCgroup, arm(1)],
            ),
            (1002, Timer, "activating/start/success", &[Spawn, arm(90)]),
            (
                1003,
                Spawned { pid: 8 },
                "active/running/success",
                &[CancelTimer],
            ),
            // A stop: the stop signal to the main process only, SIGKILL to it at the timeout.
            (
                1004,
                Stop,
                "deactivating/stop-sigterm/success",
                &[sig(false), arm(2)],
            ),
            (
                3004,
                Timer,
                "deactivating/stop-sigkill/success",
                &[kill_main, arm(2)],
            ),
            (
                3005,
                MainExited(Exit::Signal(9)),
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
        ],
    );
}

#[test]
fn failure_without_restart_ends_failed() {
    let cfg = service("");
    let st = run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 9 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (
                3,
                MainExited(Exit::Code(3)),
                "deactivating/stop-sigterm/exit-code",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (
                4,
                CgroupEmpty,
                "failed/failed/exit-code",
                &[CancelTimer, RemoveCgroup],
            ),
        ],
    );
    assert_eq!(st.exit_status, 3);
    assert_eq!(st.main_pid, None);
}

#[test]
fn clean_exit_of_simple_service_is_inactive() {
    let cfg = service("restart = \"on-failure\"\n");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 9 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (
                3,
                MainExited(Exit::Code(0)),
                "deactivating/stop-sigterm/success",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (
                4,
                CgroupEmpty,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup],
            ),
        ],
    );
}

#[test]
fn restart_delay_doubles_up_to_the_maximum_and_counts() {
    let cfg = service(
        "restart = \"always\"\nrestart-delay = \"100ms\"\nrestart-delay-max = \"300ms\"\nstart-limit = { burst = 10, interval = \"1s\" }\n",
    );
    let st = run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 1 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (
                2,
                MainExited(Exit::Signal(9)),
                "deactivating/stop-sigterm/signal",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (
                3,
                CgroupEmpty,
                "activating/auto-restart/signal",
                &[CancelTimer, RemoveCgroup, arm_ms(100)],
            ),
            (103, Timer, "activating/start/success", &[Spawn, arm(90)]),
            (
                104,
                Spawned { pid: 2 },
                "active/running/success",
                &[CancelTimer],
            ),
            (
                105,
                MainExited(Exit::Code(1)),
                "deactivating/stop-sigterm/exit-code",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (
                106,
                CgroupEmpty,
                "activating/auto-restart/exit-code",
                &[CancelTimer, RemoveCgroup, arm_ms(200)],
            ),
            (306, Timer, "activating/start/success", &[Spawn, arm(90)]),
            (
                307,
                Spawned { pid: 3 },
                "active/running/success",
                &[CancelTimer],
            ),
            (
                308,
                MainExited(Exit::Code(1)),
                "deactivating/stop-sigterm/exit-code",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (
                309,
                CgroupEmpty,
                "activating/auto-restart/exit-code",
                &[CancelTimer, RemoveCgroup, arm_ms(300)],
            ),
            (609, Timer, "activating/start/success", &[Spawn, arm(90)]),
            (
                610,
                Spawned { pid: 4 },
                "active/running/success",
                &[CancelTimer],
            ),
            // Up for longer than restart-delay-max: the delay starts over.
            (
                1000,
                MainExited(Exit::Code(1)),
                "deactivating/stop-sigterm/exit-code",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (
                1001,
                CgroupEmpty,
                "activating/auto-restart/exit-code",
                &[CancelTimer, RemoveCgroup, arm_ms(100)],
            ),
            (
                1002,
                Stop,
                "inactive/dead/exit-code",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
        ],
    );
    assert_eq!(st.n_restarts, 3);
}

#[test]
fn start_limit_fails_the_unit() {
    let cfg = service(
        "restart = \"always\"\nrestart-delay = \"1ms\"\nrestart-delay-max = \"1ms\"\nstart-limit = { burst = 2, interval = \"10s\" }\n",
    );
    let st = run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                SpawnFailed,
                "deactivating/stop-sigterm/exit-code",
                &[FinishJob(JobResult::Failed), sig(true), arm(10), CheckEmpty],
            ),
            (
                2,
                CgroupEmpty,
                "activating/auto-restart/exit-code",
                &[CancelTimer, RemoveCgroup, arm_ms(1)],
            ),
            (3, Timer, "activating/start/success", &[Spawn, arm(90)]),
            (
                4,
                SpawnFailed,
                "deactivating/stop-sigterm/exit-code",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (
                5,
                CgroupEmpty,
                "activating/auto-restart/exit-code",
                &[CancelTimer, RemoveCgroup, arm_ms(1)],
            ),
            (6, Timer, "failed/failed/start-limit-hit", &[]),
            // A later manual start is allowed again once the interval has passed.
            (10_006, Start, "activating/start/success", &[Spawn, arm(90)]),
        ],
    );
    // Of the starts in a row, one was a restart; the refused one was not.
    assert_eq!(st.n_restarts, 1);
}

#[test]
fn notify_waits_for_ready_or_times_out() {
    let cfg = service("type = \"notify\"\nstart-timeout = \"5s\"\n");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(5)]),
            (1, Spawned { pid: 5 }, "activating/start/success", &[]),
            (
                2,
                Ready,
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
        ],
    );
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(5)]),
            (1, Spawned { pid: 5 }, "activating/start/success", &[]),
            (
                5001,
                Timer,
                "deactivating/stop-sigterm/timeout",
                &[
                    FinishJob(JobResult::Timeout),
                    sig(true),
                    arm(10),
                    CheckEmpty,
                ],
            ),
            (
                5002,
                CgroupEmpty,
                "failed/failed/timeout",
                &[CancelTimer, RemoveCgroup],
            ),
        ],
    );
    // Exiting before READY=1 is a failure, even with status 0.
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(5)]),
            (1, Spawned { pid: 5 }, "activating/start/success", &[]),
            (
                2,
                MainExited(Exit::Code(0)),
                "deactivating/stop-sigterm/exit-code",
                &[
                    CancelTimer,
                    FinishJob(JobResult::Failed),
                    sig(true),
                    arm(10),
                    CheckEmpty,
                ],
            ),
        ],
    );
}

#[test]
fn oneshot_with_and_without_remain_after_exit() {
    let cfg = service("type = \"oneshot\"\nremain-after-exit = true\nstart-timeout = \"3s\"\n");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(3)]),
            (1, Spawned { pid: 5 }, "activating/start/success", &[]),
            (
                2,
                MainExited(Exit::Code(0)),
                "active/exited/success",
                &[CancelTimer, FinishJob(JobResult::Done), sig(true)],
            ),
            (
                3,
                Stop,
                "deactivating/stop-sigterm/success",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (
                4,
                CgroupEmpty,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
        ],
    );
    let cfg = service("type = \"oneshot\"\n");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (1, Spawned { pid: 5 }, "activating/start/success", &[]),
            (
                2,
                MainExited(Exit::Code(0)),
                "deactivating/stop-sigterm/success",
                &[
                    CancelTimer,
                    FinishJob(JobResult::Done),
                    sig(true),
                    arm(10),
                    CheckEmpty,
                ],
            ),
            (
                3,
                CgroupEmpty,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup],
            ),
        ],
    );
}

#[test]
fn oom_policies() {
    let stop = service("");
    run(
        &stop,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 5 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (
                2,
                OomKill,
                "deactivating/stop-sigterm/oom-kill",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (
                3,
                MainExited(Exit::Signal(9)),
                "deactivating/stop-sigterm/oom-kill",
                &[CheckEmpty],
            ),
            (
                4,
                CgroupEmpty,
                "failed/failed/oom-kill",
                &[CancelTimer, RemoveCgroup],
            ),
        ],
    );
    let cont = service("oom-policy = \"continue\"\n");
    run(
        &cont,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 5 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (2, OomKill, "active/running/success", &[]),
        ],
    );
}

#[test]
fn dependency_failure_and_stale_events() {
    let cfg = service("");
    run(
        &cfg,
        &[
            (
                0,
                DependencyFailed,
                "failed/failed/dependency",
                &[FinishJob(JobResult::Dependency)],
            ),
            (1, Timer, "failed/failed/dependency", &[]),
            (2, CgroupEmpty, "failed/failed/dependency", &[]),
            (
                3,
                Stop,
                "failed/failed/dependency",
                &[FinishJob(JobResult::Done)],
            ),
            (4, Start, "activating/start/success", &[Spawn, arm(90)]),
            (5, Start, "activating/start/success", &[]),
        ],
    );
}

#[test]
fn stop_while_starting_cancels_the_start_job() {
    let cfg = service("type = \"notify\"\n");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (1, Spawned { pid: 5 }, "activating/start/success", &[]),
            (
                2,
                Stop,
                "deactivating/stop-sigterm/success",
                &[
                    FinishJob(JobResult::Canceled),
                    sig(true),
                    arm(10),
                    CheckEmpty,
                ],
            ),
            (
                3,
                CgroupEmpty,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
        ],
    );
}

#[test]
fn oom_kill_seen_after_the_main_process_died_is_still_the_cause() {
    let cfg = service("");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 5 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (
                2,
                MainExited(Exit::Signal(9)),
                "deactivating/stop-sigterm/signal",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (3, OomKill, "deactivating/stop-sigterm/oom-kill", &[]),
            (
                4,
                CgroupEmpty,
                "failed/failed/oom-kill",
                &[CancelTimer, RemoveCgroup],
            ),
        ],
    );
}

#[test]
fn exec_stop_runs_before_the_stop_signal() {
    let cfg = service("exec-stop = [\"/bin/kill\", \"-HUP\", \"1\"]\nstop-timeout = \"3s\"\n");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 5 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (
                2,
                Stop,
                "deactivating/stop-sigterm/success",
                &[Action::RunExecStop, arm(3)],
            ),
            (
                3,
                ControlExited,
                "deactivating/stop-sigterm/success",
                &[sig(true), CheckEmpty],
            ),
            (
                4,
                CgroupEmpty,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
        ],
    );
    // exec-stop that hangs: stop-timeout ends everything with cgroup.kill.
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 5 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (
                2,
                Stop,
                "deactivating/stop-sigterm/success",
                &[Action::RunExecStop, arm(3)],
            ),
            (
                3002,
                Timer,
                "deactivating/stop-sigkill/success",
                &[KillAll, arm(3)],
            ),
            (
                3003,
                ControlExited,
                "deactivating/stop-sigkill/success",
                &[],
            ),
            (
                3004,
                CgroupEmpty,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
        ],
    );
}

#[test]
fn a_start_while_stopping_begins_once_the_unit_is_down() {
    let cfg = service("");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Spawned { pid: 7 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
            (
                2,
                Stop,
                "deactivating/stop-sigterm/success",
                &[sig(true), arm(10), CheckEmpty],
            ),
            (3, Start, "deactivating/stop-sigterm/success", &[]),
            (
                4,
                CgroupEmpty,
                "activating/start/success",
                &[CancelTimer, RemoveCgroup, Spawn, arm(90)],
            ),
            (
                5,
                Spawned { pid: 8 },
                "active/running/success",
                &[CancelTimer, FinishJob(JobResult::Done)],
            ),
        ],
    );
}

/// Launches finish after the fact: a stop while the launch is under way waits for it with
/// kill-mode = process, and the late main process gets the stop signal.
#[test]
fn a_launch_that_reports_during_the_stop_is_stopped() {
    let cfg = service("kill-mode = \"process\"\n");
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Stop,
                "deactivating/stop-sigterm/success",
                &[FinishJob(JobResult::Canceled), arm(10)],
            ),
            (
                2,
                Spawned { pid: 9 },
                "deactivating/stop-sigterm/success",
                &[sig(false)],
            ),
            (
                3,
                MainExited(Exit::Signal(15)),
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
        ],
    );
    // Never reports: after the stop timeout only the cgroup reaches it.
    run(
        &cfg,
        &[
            (0, Start, "activating/start/success", &[Spawn, arm(90)]),
            (
                1,
                Stop,
                "deactivating/stop-sigterm/success",
                &[FinishJob(JobResult::Canceled), arm(10)],
            ),
            (
                10_001,
                Timer,
                "deactivating/stop-sigkill/success",
                &[KillAll, arm(10)],
            ),
            (
                10_002,
                SpawnFailed,
                "inactive/dead/success",
                &[CancelTimer, RemoveCgroup, FinishJob(JobResult::Done)],
            ),
        ],
    );
}
