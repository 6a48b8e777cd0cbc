//! The job engine's tables: units from unit-file text, a sequence of inputs, and after each
//! the effects (written compactly, see [`show`]) and states expected. The service state machine
//! has tables of its own (`service/tests.rs`); these cover what lies between units: jobs,
//! transactions, ordering, slices, stop propagation, restarts, stale launches, adoption.

use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::unit::{SearchPath, load_path};

struct World {
    units: UnitSet,
    engine: Engine,
    t0: Instant,
    /// Milliseconds since `t0`.
    ms: u64,
    _dir: tempfile::TempDir,
}

fn world(files: &[(&str, &str)]) -> World {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
    }
    let units = load_path(&SearchPath(vec![dir.path().to_path_buf()]));
    assert!(
        units.errors().next().is_none(),
        "{:?}",
        units.errors().collect::<Vec<_>>()
    );
    World {
        engine: Engine::new(&units),
        units,
        t0: Instant::now(),
        ms: 0,
        _dir: dir,
    }
}

fn n(s: &str) -> UnitName {
    UnitName::parse(s).unwrap()
}

/// An effect in a few words.
fn show(e: &Effect) -> String {
    match e {
        Effect::Spawn { unit, seq } => format!("spawn {unit}#{seq}"),
        Effect::SpawnControl(u) => format!("exec-stop {u}"),
        Effect::Signal {
            unit,
            signal,
            target,
        } => match target {
            Target::All => format!("signal {unit} {signal}"),
            Target::Main(pid) => format!("signal {unit} {signal} to {pid}"),
        },
        Effect::KillAll(u) => format!("kill {u}"),
        Effect::CheckEmpty(u) => format!("check {u}"),
        Effect::RemoveCgroup(u) => format!("rmcg {u}"),
        Effect::RealizeSlice(u) => format!("realize {u}"),
        Effect::RemoveSlice(u) => format!("rmslice {u}"),
        Effect::AttachScope(u) => format!("attach {u}"),
        Effect::JobRemoved { id, unit, result } => format!("job {id} {unit} {result}"),
        Effect::StateChanged { unit, to, .. } => format!("{unit} {}/{}", to.0, to.1),
        Effect::Note { unit, text } => format!("note {unit}: {text}"),
    }
}

impl World {
    fn clock(&self) -> Clock {
        Clock {
            now: self.t0 + Duration::from_millis(self.ms),
            wall: SystemTime::UNIX_EPOCH + Duration::from_millis(self.ms),
        }
    }

    fn input(&mut self, input: Input) -> Vec<String> {
        let clock = self.clock();
        self.engine
            .handle(&self.units, clock, input)
            .iter()
            .map(show)
            .collect()
    }

    /// Feeds an input; the effects must be exactly `want`.
    #[track_caller]
    fn expect(&mut self, input: Input, want: &[&str]) {
        let got = self.input(input);
        assert_eq!(got, want);
    }

    fn job(&mut self, unit: &str, kind: JobKind) -> (u32, Vec<String>) {
        let id = self.engine.new_job_id();
        let effects = self.input(Input::Job {
            unit: n(unit),
            kind,
            id,
        });
        (id, effects)
    }

    fn realized(&mut self, slice: &str) -> Vec<String> {
        self.input(Input::SliceRealized {
            unit: n(slice),
            ok: true,
        })
    }

    /// Realizes every slice `effects` ask for (and those their realization asks for); returns
    /// the effects of the last.
    fn realize_all(&mut self, effects: Vec<String>) -> Vec<String> {
        let mut last = effects;
        while let Some(slice) = last
            .iter()
            .find_map(|e| e.strip_prefix("realize ").map(str::to_string))
        {
            let rest: Vec<String> = last
                .iter()
                .filter(|e| **e != format!("realize {slice}"))
                .cloned()
                .collect();
            let mut next = self.realized(&slice);
            next.extend(rest.into_iter().filter(|e| e.starts_with("realize ")));
            last = next;
        }
        last
    }

    fn spawned(&mut self, unit: &str, pid: u32) -> Vec<String> {
        let seq = self.engine.service(&n(unit)).unwrap().launch;
        self.input(Input::Spawned {
            unit: n(unit),
            seq,
            pid,
        })
    }

    fn exited(&mut self, pid: u32, code: i32) -> Vec<String> {
        self.input(Input::Exited {
            pid,
            exit: Exit::Code(code),
        })
    }

    fn state(&self, unit: &str) -> String {
        let n = n(unit);
        if let Some(s) = self.engine.scope(&n) {
            return format!("{}/{}/{}", s.active, s.sub, s.result);
        }
        match self.engine.service(&n) {
            Some(s) => format!("{}/{}/{}", s.active, s.sub, s.result),
            None => format!(
                "{}/{}",
                self.engine.active_sub(&n).0,
                self.engine.active_sub(&n).1
            ),
        }
    }

    /// Starts `unit` (its slice realized, its process spawned as `pid`) until it is active.
    fn up(&mut self, unit: &str, pid: u32) {
        let (_, e) = self.job(unit, JobKind::Start);
        self.realize_all(e);
        self.spawned(unit, pid);
        assert_eq!(self.state(unit), "active/running/success");
    }
}

const SVC: &str = "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n";

fn svc(unit: &str) -> String {
    format!("[unit]\n{unit}\n{SVC}")
}

#[test]
fn a_start_realizes_the_slice_first_then_spawns() {
    let mut w = world(&[("a.service", SVC)]);
    let (id, e) = w.job("a.service", JobKind::Start);
    assert_eq!(e, ["realize system.slice"]);
    assert_eq!(w.state("a.service"), "inactive/dead/success");
    w.expect(
        Input::SliceRealized {
            unit: n("system.slice"),
            ok: true,
        },
        &["a.service activating/start", "spawn a.service#1"],
    );
    // Launching, with no main process yet: nothing for the state file to remember.
    assert!(
        !w.engine.take_dirty(),
        "a first launch under way is not saved"
    );
    assert_eq!(
        w.spawned("a.service", 10),
        [
            "a.service active/running",
            &format!("job {id} a.service done")
        ]
    );
    assert_eq!(w.engine.unit_of_pid(10), Some(&n("a.service")));
    assert!(
        w.engine.take_dirty(),
        "a running service goes to the state file"
    );
}

#[test]
fn a_slice_that_cannot_be_realized_fails_what_is_in_it() {
    let mut w = world(&[("a.service", SVC)]);
    let (id, _) = w.job("a.service", JobKind::Start);
    w.expect(
        Input::SliceRealized {
            unit: n("system.slice"),
            ok: false,
        },
        &[
            "a.service failed/failed",
            &format!("job {id} a.service dependency"),
        ],
    );
}

#[test]
fn ordering_holds_a_unit_back_until_the_one_before_it_is_up() {
    let mut w = world(&[
        ("a.service", SVC),
        (
            "b.service",
            &svc("requires = [\"a.service\"]\nafter = [\"a.service\"]"),
        ),
    ]);
    let (id, _) = w.job("b.service", JobKind::Start);
    let e = w.realized("system.slice");
    assert_eq!(e, ["a.service activating/start", "spawn a.service#1"]);
    let e = w.spawned("a.service", 10);
    assert_eq!(
        e,
        [
            "a.service active/running",
            "b.service activating/start",
            "spawn b.service#1"
        ]
    );
    let e = w.spawned("b.service", 11);
    assert_eq!(
        e,
        [
            "b.service active/running".into(),
            format!("job {id} b.service done")
        ]
    );
}

#[test]
fn a_required_unit_that_fails_to_start_fails_its_dependents() {
    let mut w = world(&[
        ("a.service", SVC),
        (
            "b.service",
            &svc("requires = [\"a.service\"]\nafter = [\"a.service\"]"),
        ),
    ]);
    let (id, _) = w.job("b.service", JobKind::Start);
    w.realized("system.slice");
    let e = w.input(Input::SpawnFailed {
        unit: n("a.service"),
        seq: 1,
    });
    // Cleaning up after itself, a holds b back until it has settled.
    assert_eq!(
        e,
        [
            "a.service deactivating/stop-sigterm",
            "signal a.service 15",
            "check a.service"
        ]
    );
    let e = w.input(Input::CgroupEmpty(n("a.service")));
    assert!(e.contains(&"a.service failed/failed".to_string()), "{e:?}");
    assert!(
        e.contains(&format!("job {id} b.service dependency")),
        "{e:?}"
    );
    assert_eq!(w.state("b.service"), "failed/failed/dependency");
}

#[test]
fn stopping_a_unit_stops_what_requires_it_first() {
    let mut w = world(&[
        ("pod.service", SVC),
        (
            "web.service",
            &format!("[namespaces]\nnet = \"pod.service\"\n{SVC}"),
        ),
        ("other.service", SVC),
    ]);
    w.up("pod.service", 10);
    w.up("web.service", 11);
    w.up("other.service", 12);
    let (id, e) = w.job("pod.service", JobKind::Stop);
    // The guest goes first (it is ordered after the owner of the namespace it joins).
    assert_eq!(
        e,
        [
            "web.service deactivating/stop-sigterm",
            "signal web.service 15",
            "check web.service"
        ]
    );
    let e = w.input(Input::CgroupEmpty(n("web.service")));
    assert_eq!(
        e,
        [
            "web.service inactive/dead",
            "rmcg web.service",
            "pod.service deactivating/stop-sigterm",
            "signal pod.service 15",
            "check pod.service"
        ]
    );
    let e = w.input(Input::CgroupEmpty(n("pod.service")));
    assert_eq!(
        e,
        [
            "pod.service inactive/dead",
            "rmcg pod.service",
            format!("job {id} pod.service done").as_str()
        ]
    );
    assert_eq!(w.state("other.service"), "active/running/success");
}

#[test]
fn a_unit_that_stops_on_its_own_takes_its_dependents_down() {
    let mut w = world(&[
        ("pod.service", SVC),
        (
            "web.service",
            &format!("[namespaces]\nnet = \"pod.service\"\n{SVC}"),
        ),
    ]);
    w.up("pod.service", 10);
    w.up("web.service", 11);
    // The pod's infra process dies: its unit fails, and the member stops with it.
    let e = w.exited(10, 1);
    assert_eq!(
        e,
        [
            "pod.service deactivating/stop-sigterm",
            "signal pod.service 15",
            "check pod.service"
        ]
    );
    let e = w.input(Input::CgroupEmpty(n("pod.service")));
    assert_eq!(
        e,
        [
            "pod.service failed/failed",
            "rmcg pod.service",
            "web.service deactivating/stop-sigterm",
            "signal web.service 15",
            "check web.service"
        ]
    );
    w.input(Input::CgroupEmpty(n("web.service")));
    assert_eq!(w.state("web.service"), "inactive/dead/success");
}

#[test]
fn a_oneshot_that_did_its_job_does_not_stop_its_dependents() {
    let mut w = world(&[
        (
            "setup.service",
            "[service]\ntype = \"oneshot\"\nexec = [\"/bin/true\"]\n",
        ),
        ("app.service", &svc("requires = [\"setup.service\"]")),
    ]);
    w.job("app.service", JobKind::Start);
    w.realized("system.slice");
    w.spawned("setup.service", 10);
    w.spawned("app.service", 11);
    assert_eq!(w.state("app.service"), "active/running/success");
    w.exited(10, 0);
    w.input(Input::CgroupEmpty(n("setup.service")));
    assert_eq!(w.state("setup.service"), "inactive/dead/success");
    assert_eq!(w.state("app.service"), "active/running/success");
}

#[test]
fn a_restart_restarts_what_requires_it() {
    let mut w = world(&[
        ("db.service", SVC),
        (
            "app.service",
            &svc("requires = [\"db.service\"]\nafter = [\"db.service\"]"),
        ),
    ]);
    w.up("db.service", 10);
    w.up("app.service", 11);
    let (id, e) = w.job("db.service", JobKind::Restart);
    assert_eq!(
        w.state("app.service"),
        "deactivating/stop-sigterm/success",
        "{e:?}"
    );
    assert_eq!(w.state("db.service"), "active/running/success");
    w.input(Input::CgroupEmpty(n("app.service")));
    assert_eq!(w.state("db.service"), "deactivating/stop-sigterm/success");
    let e = w.input(Input::CgroupEmpty(n("db.service")));
    assert!(
        !e.iter().any(|x| x.starts_with("job")),
        "the job ends with the start: {e:?}"
    );
    let e = w.realize_all(e);
    assert!(e.contains(&"spawn db.service#2".to_string()), "{e:?}");
    let e = w.spawned("db.service", 20);
    assert_eq!(
        e,
        [
            "db.service active/running".into(),
            format!("job {id} db.service done"),
            "app.service activating/start".into(),
            "spawn app.service#2".into()
        ]
    );
}

#[test]
fn a_stale_launch_outcome_is_dropped() {
    let mut w = world(&[("a.service", SVC)]);
    w.job("a.service", JobKind::Start);
    w.realized("system.slice");
    // Stopped while its launch is under way, and started again.
    w.job("a.service", JobKind::Stop);
    w.input(Input::CgroupEmpty(n("a.service")));
    assert_eq!(w.state("a.service"), "inactive/dead/success");
    let (_, e) = w.job("a.service", JobKind::Start);
    w.realize_all(e);
    assert_eq!(w.state("a.service"), "activating/start/success");
    // The first launch reports now: not the main process of the second.
    let e = w.input(Input::Spawned {
        unit: n("a.service"),
        seq: 1,
        pid: 10,
    });
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(w.engine.unit_of_pid(10), None);
    w.spawned("a.service", 11);
    assert_eq!(w.engine.main_pid(&n("a.service")), Some(11));
}

#[test]
fn a_launch_that_never_reports_times_out() {
    let mut w = world(&[("a.service", &format!("{SVC}start-timeout = \"5s\"\n"))]);
    let (id, _) = w.job("a.service", JobKind::Start);
    w.realized("system.slice");
    w.ms = 5000;
    let e = w.input(Input::Tick);
    assert_eq!(
        e,
        [
            "a.service deactivating/stop-sigterm".into(),
            format!("job {id} a.service timeout"),
            "signal a.service 15".into(),
            "check a.service".into()
        ]
    );
    // The child never got to exec; its cgroup is killed after the stop timeout.
    w.ms = 15000;
    let e = w.input(Input::Tick);
    assert_eq!(e, ["a.service deactivating/stop-sigkill", "kill a.service"]);
    w.input(Input::CgroupEmpty(n("a.service")));
    assert_eq!(w.state("a.service"), "failed/failed/timeout");
}

#[test]
fn mainpid_moves_the_main_process() {
    let mut w = world(&[(
        "d.service",
        "[service]\ntype = \"notify\"\nexec = [\"/bin/d\"]\nrestart = \"on-failure\"\n",
    )]);
    w.job("d.service", JobKind::Start);
    w.realized("system.slice");
    w.spawned("d.service", 10);
    w.input(Input::Notify {
        unit: n("d.service"),
        ready: true,
        status: Some("up".into()),
        main_pid: Some(20),
    });
    assert_eq!(w.state("d.service"), "active/running/success");
    assert_eq!(w.engine.main_pid(&n("d.service")), Some(20));
    assert_eq!(w.engine.status_text(&n("d.service")), Some("up"));
    // The launcher's exit is no news now; the new main process's is.
    assert!(w.exited(10, 0).is_empty());
    let e = w.exited(20, 3);
    assert_eq!(
        e,
        [
            "d.service deactivating/stop-sigterm",
            "signal d.service 15",
            "check d.service"
        ]
    );
}

#[test]
fn an_adopted_service_restarts_on_failure_when_it_ends() {
    let mut w = world(&[(
        "a.service",
        &format!("{SVC}restart = \"on-failure\"\nrestart-delay = \"1s\"\n"),
    )]);
    w.input(Input::Adopt {
        unit: n("a.service"),
        main_pid: Some(77),
        n_restarts: 4,
        active_enter: SystemTime::UNIX_EPOCH,
    });
    assert_eq!(w.state("a.service"), "active/running/success");
    assert!(w.engine.is_live_slice(&n("system.slice")));
    // Not our child: its status can't be known, which counts as a failure.
    w.input(Input::Exited {
        pid: 77,
        exit: Exit::Unknown,
    });
    w.input(Input::CgroupEmpty(n("a.service")));
    assert_eq!(w.state("a.service"), "activating/auto-restart/exit-code");
    w.ms = 1000;
    let e = w.input(Input::Tick);
    assert_eq!(e, ["a.service activating/start", "spawn a.service#1"]);
    assert_eq!(w.engine.service(&n("a.service")).unwrap().n_restarts, 5);
}

#[test]
fn stopping_everything_goes_in_reverse_order() {
    let mut w = world(&[
        ("a.service", SVC),
        ("b.service", &svc("after = [\"a.service\"]")),
        ("c.service", &svc("after = [\"b.service\"]")),
    ]);
    w.up("a.service", 10);
    w.up("b.service", 11);
    w.up("c.service", 12);
    let e = w.input(Input::StopAll);
    assert_eq!(
        e,
        [
            "c.service deactivating/stop-sigterm",
            "signal c.service 15",
            "check c.service"
        ]
    );
    let e = w.input(Input::CgroupEmpty(n("c.service")));
    assert!(e.contains(&"signal b.service 15".to_string()), "{e:?}");
    assert!(!e.contains(&"signal a.service 15".to_string()), "{e:?}");
    w.input(Input::CgroupEmpty(n("b.service")));
    w.input(Input::CgroupEmpty(n("a.service")));
    assert!(w.engine.all_stopped());
}

#[test]
fn stopping_a_slice_stops_what_is_inside_then_removes_it() {
    let mut w = world(&[
        ("x.service", &svc("slice = \"apps-batch.slice\"")),
        ("y.service", &svc("slice = \"apps.slice\"")),
        ("z.service", SVC),
    ]);
    for (u, pid) in [("x.service", 10), ("y.service", 11), ("z.service", 12)] {
        w.up(u, pid);
    }
    let (id, e) = w.job("apps.slice", JobKind::Stop);
    assert!(e.contains(&"signal x.service 15".to_string()), "{e:?}");
    assert!(e.contains(&"signal y.service 15".to_string()), "{e:?}");
    assert!(
        w.input(Input::CgroupEmpty(n("x.service")))
            .iter()
            .all(|x| !x.starts_with("rmslice"))
    );
    let e = w.input(Input::CgroupEmpty(n("y.service")));
    assert_eq!(
        e[e.len() - 3..],
        [
            "rmslice apps-batch.slice".to_string(),
            "rmslice apps.slice".into(),
            format!("job {id} apps.slice done")
        ]
    );
    assert_eq!(w.state("apps.slice"), "inactive/dead");
    assert_eq!(w.state("z.service"), "active/running/success");
}

#[test]
fn a_new_job_cancels_the_pending_one() {
    let mut w = world(&[("a.service", SVC)]);
    let (first, _) = w.job("a.service", JobKind::Start);
    let (second, e) = w.job("a.service", JobKind::Stop);
    assert_eq!(e[0], format!("job {first} a.service canceled"));
    assert!(e.contains(&format!("job {second} a.service done")), "{e:?}");
}

/// A chain of 5000 units, each ordered after and requiring the one before: starting the last
/// and stopping them all is worked off with loops, not recursion (a test thread's 2 MiB stack
/// would not hold a frame per unit), and in order.
#[test]
fn a_long_chain_starts_and_stops_without_recursion() {
    const N: usize = 5000;
    let mut files = vec![("u0.service".to_string(), SVC.to_string())];
    for i in 1..N {
        files.push((
            format!("u{i}.service"),
            svc(&format!(
                "requires = [\"u{}.service\"]\nafter = [\"u{}.service\"]",
                i - 1,
                i - 1
            )),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let mut w = world(&refs);
    let last = format!("u{}.service", N - 1);
    w.job(&last, JobKind::Start);
    w.realized("system.slice");
    for i in 0..N {
        let e = w.spawned(&format!("u{i}.service"), 100 + i as u32);
        assert!(
            e.iter().any(|x| x.ends_with("active/running")),
            "u{i}: {e:?}"
        );
    }
    // The first unit fails: everything that requires it stops, each after the one it
    // requires has gone.
    w.exited(100, 1);
    let e = w.input(Input::CgroupEmpty(n("u0.service")));
    assert!(e.contains(&"signal u1.service 15".to_string()), "{e:?}");
    for i in 1..N {
        w.input(Input::CgroupEmpty(n(&format!("u{i}.service"))));
    }
    assert!(w.engine.all_stopped());
}

// ── scopes and slices made over D-Bus (DESIGN §9) ──

/// A scope or slice as `org.freedesktop.systemd1` makes it: no file, transient; joined to the
/// set (its parent slices implied) and to the engine.
fn bus_unit(w: &mut World, name: &str, slice: Option<&str>, delegate: bool) {
    let name = n(name);
    let scope = (name.kind() == Kind::Scope).then(|| {
        Box::new(crate::unit::Scope {
            slice: n(slice.unwrap_or("system.slice")),
            pids: vec![4242],
            delegate,
            stop_timeout: Duration::from_secs(5),
        })
    });
    let unit = crate::unit::Unit {
        scope,
        transient: true,
        ..crate::unit::Unit::implicit_slice(name.clone())
    };
    w.units.insert(unit);
    let u = w.units.get(&name).unwrap().clone();
    w.engine.track(&u);
}

/// A scope in a slice tree that does not exist yet: its start realizes the slices top-down,
/// then adopts its processes; it is active while populated and gone once empty.
#[test]
fn a_scope_is_adopted_into_its_implied_slices_and_ends_when_empty() {
    let mut w = world(&[]);
    bus_unit(
        &mut w,
        "c1.scope",
        Some("kubepods-besteffort-pod1.slice"),
        true,
    );
    for implied in [
        "kubepods.slice",
        "kubepods-besteffort.slice",
        "kubepods-besteffort-pod1.slice",
    ] {
        assert!(w.units.get(&n(implied)).is_some(), "{implied} is implied");
    }
    let (id, e) = w.job("c1.scope", JobKind::Start);
    assert_eq!(e, ["realize kubepods.slice"]);
    assert_eq!(
        w.realized("kubepods.slice"),
        ["realize kubepods-besteffort.slice"]
    );
    assert_eq!(
        w.realized("kubepods-besteffort.slice"),
        ["realize kubepods-besteffort-pod1.slice"]
    );
    assert_eq!(
        w.realized("kubepods-besteffort-pod1.slice"),
        ["c1.scope activating/start", "attach c1.scope"]
    );
    assert_eq!(w.state("c1.scope"), "activating/start/success");
    w.expect(
        Input::ScopeAttached {
            unit: n("c1.scope"),
            ok: true,
        },
        &[
            "c1.scope active/running",
            &format!("job {id} c1.scope done"),
            "check c1.scope",
        ],
    );
    assert!(
        w.engine.take_dirty(),
        "a scope that is up goes to the state file"
    );
    w.expect(
        Input::CgroupEmpty(n("c1.scope")),
        &["c1.scope inactive/dead", "rmcg c1.scope"],
    );
    assert_eq!(w.state("kubepods-besteffort-pod1.slice"), "active/active");
}

#[test]
fn a_scope_whose_processes_cannot_be_moved_fails_and_is_reset() {
    let mut w = world(&[]);
    bus_unit(&mut w, "c1.scope", None, false);
    let (id, e) = w.job("c1.scope", JobKind::Start);
    w.realize_all(e);
    w.expect(
        Input::ScopeAttached {
            unit: n("c1.scope"),
            ok: false,
        },
        &[
            "c1.scope failed/failed",
            &format!("job {id} c1.scope failed"),
            "rmcg c1.scope",
        ],
    );
    assert_eq!(w.state("c1.scope"), "failed/failed/resources");
    w.expect(
        Input::ResetFailed(n("c1.scope")),
        &["c1.scope inactive/dead"],
    );
}

/// A stop job: SIGTERM to the scope's cgroup, `cgroup.kill` after its timeout, done once empty.
#[test]
fn stopping_a_scope_signals_then_kills_its_cgroup() {
    let mut w = world(&[]);
    bus_unit(&mut w, "c1.scope", None, true);
    let (_, e) = w.job("c1.scope", JobKind::Start);
    w.realize_all(e);
    w.input(Input::ScopeAttached {
        unit: n("c1.scope"),
        ok: true,
    });
    let (id, e) = w.job("c1.scope", JobKind::Stop);
    assert_eq!(
        e,
        [
            "c1.scope deactivating/stop-sigterm",
            "signal c1.scope 15",
            "check c1.scope"
        ]
    );
    w.ms += 5000;
    w.expect(
        Input::Tick,
        &["c1.scope deactivating/stop-sigkill", "kill c1.scope"],
    );
    w.expect(
        Input::CgroupEmpty(n("c1.scope")),
        &[
            "c1.scope inactive/dead",
            "rmcg c1.scope",
            &format!("job {id} c1.scope done"),
        ],
    );
}

/// Stopping a slice stops the scopes inside it as it stops services, then removes the slice;
/// and the machine's end stops scopes too.
#[test]
fn stopping_a_slice_stops_its_scopes() {
    let mut w = world(&[("a.service", &svc("slice = \"pod-x.slice\""))]);
    w.up("a.service", 10);
    bus_unit(&mut w, "c1.scope", Some("pod-x.slice"), true);
    let (_, e) = w.job("c1.scope", JobKind::Start);
    w.realize_all(e);
    w.input(Input::ScopeAttached {
        unit: n("c1.scope"),
        ok: true,
    });
    let (id, e) = w.job("pod.slice", JobKind::Stop);
    assert!(e.contains(&"signal c1.scope 15".to_string()), "{e:?}");
    assert!(e.contains(&"signal a.service 15".to_string()), "{e:?}");
    w.input(Input::CgroupEmpty(n("a.service")));
    let e = w.input(Input::CgroupEmpty(n("c1.scope")));
    assert_eq!(
        e[e.len() - 3..],
        [
            "rmslice pod-x.slice".to_string(),
            "rmslice pod.slice".into(),
            format!("job {id} pod.slice done")
        ]
    );

    let mut w = world(&[]);
    bus_unit(&mut w, "c2.scope", None, false);
    let (_, e) = w.job("c2.scope", JobKind::Start);
    w.realize_all(e);
    w.input(Input::ScopeAttached {
        unit: n("c2.scope"),
        ok: true,
    });
    assert!(!w.engine.all_stopped());
    let e = w.input(Input::StopAll);
    assert!(e.contains(&"signal c2.scope 15".to_string()), "{e:?}");
    w.input(Input::CgroupEmpty(n("c2.scope")));
    assert!(w.engine.all_stopped());
}

/// A slice made over D-Bus (kubelet's pod slice): its parents are implied and realized first,
/// top-down, and its start job ends once it is.
#[test]
fn a_slice_made_over_dbus_realizes_its_implied_parents_first() {
    let mut w = world(&[]);
    bus_unit(&mut w, "kubepods-burstable-pod9.slice", None, false);
    let (id, e) = w.job("kubepods-burstable-pod9.slice", JobKind::Start);
    assert_eq!(e, ["realize kubepods.slice"]);
    let e = w.realize_all(e);
    assert_eq!(e, [format!("job {id} kubepods-burstable-pod9.slice done")]);
    for s in [
        "kubepods.slice",
        "kubepods-burstable.slice",
        "kubepods-burstable-pod9.slice",
    ] {
        assert_eq!(w.state(s), "active/active", "{s}");
    }
    let (id, e) = w.job("kubepods-burstable-pod9.slice", JobKind::Stop);
    assert_eq!(
        e,
        [
            "rmslice kubepods-burstable-pod9.slice".to_string(),
            format!("job {id} kubepods-burstable-pod9.slice done")
        ]
    );
    assert_eq!(w.state("kubepods-burstable.slice"), "active/active");
}

/// reset-failed: a failed service is inactive again, its start limit forgiven.
#[test]
fn reset_failed_returns_a_failed_service_to_inactive() {
    let mut w = world(&[("a.service", SVC)]);
    w.up("a.service", 10);
    w.exited(10, 3);
    w.input(Input::CgroupEmpty(n("a.service")));
    assert_eq!(w.state("a.service"), "failed/failed/exit-code");
    w.expect(
        Input::ResetFailed(n("a.service")),
        &["a.service inactive/dead"],
    );
    assert_eq!(w.state("a.service"), "inactive/dead/success");
    // Nothing for a unit that has not failed.
    w.expect(Input::ResetFailed(n("a.service")), &[]);
    w.expect(Input::ResetFailed(n("system.slice")), &[]);
}

/// After a re-exec or a crash: a scope made over D-Bus found with processes is running again,
/// its slices live; and it goes on as any scope.
#[test]
fn a_made_scope_is_adopted_running_with_its_slices() {
    let mut w = world(&[]);
    bus_unit(&mut w, "c1.scope", Some("kubepods-pod1.slice"), true);
    w.expect(
        Input::AdoptMade {
            unit: n("c1.scope"),
            active_enter: SystemTime::UNIX_EPOCH,
        },
        &[],
    );
    assert_eq!(w.state("c1.scope"), "active/running/success");
    for s in ["kubepods.slice", "kubepods-pod1.slice"] {
        assert_eq!(w.state(s), "active/active", "{s}");
    }
    assert!(w.engine.take_dirty());
    let (id, e) = w.job("c1.scope", JobKind::Stop);
    assert_eq!(e[1], "signal c1.scope 15");
    w.expect(
        Input::CgroupEmpty(n("c1.scope")),
        &[
            "c1.scope inactive/dead",
            "rmcg c1.scope",
            &format!("job {id} c1.scope done"),
        ],
    );
    // A made slice: live again.
    bus_unit(&mut w, "pods-x.slice", None, false);
    w.input(Input::AdoptMade {
        unit: n("pods-x.slice"),
        active_enter: SystemTime::UNIX_EPOCH,
    });
    assert_eq!(w.state("pods-x.slice"), "active/active");
    assert_eq!(w.state("pods.slice"), "active/active");
}
