//! corralctl against a real corrald on the host (private socket, `--cgroup-root` on the host's
//! cgroup2): list, status, start, stop, restart, JSON, and the errors a user sees.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

use std::time::Duration;

use daemon::{Daemon, wait_for};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn corralctl_drives_the_daemon() {
    let units = [
        (
            "web.service.toml",
            "[unit]\ndescription = \"Web\"\nslice = \"apps.slice\"\nautostart = true\n\
             [service]\nexec = [\"/bin/sleep\", \"1000\"]\n"
                .to_string(),
        ),
        (
            "db.service.toml",
            "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
        ),
        (
            "app.service.toml",
            "[unit]\nrequires = [\"db.service\", \"gone.service\"]\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n"
                .to_string(),
        ),
        (
            "broken.service.toml",
            "[service]\nexec = [\"/bin/true\"]\nrestart = \"sometimes\"\n".to_string(),
        ),
    ];
    let Some(d) = Daemon::start("ctl", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    wait_for("web.service active", Duration::from_secs(10), || {
        text(&d.ctl(&["status", "web.service"]).stdout).contains("Active: active (running)")
    });

    // list: every unit, loaded or not, with its state.
    let out = d.ctl(&["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    let row = |name: &str| -> Vec<String> {
        list.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{list}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("web.service"),
        ["web.service", "loaded", "active", "running", "Web"]
    );
    assert_eq!(
        row("db.service"),
        ["db.service", "loaded", "inactive", "dead"]
    );
    assert_eq!(
        row("broken.service"),
        ["broken.service", "error", "inactive", "dead"]
    );
    assert_eq!(
        row("apps.slice"),
        ["apps.slice", "loaded", "active", "active"]
    );

    // status: state, main PID, cgroup; the process really is in that cgroup.
    let status = text(&d.ctl(&["status", "web.service"]).stdout);
    let pid: u32 = status
        .lines()
        .find_map(|l| l.trim().strip_prefix("Main PID: "))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no main PID in:\n{status}"));
    let cg = d.root.0.join("apps.slice/web.service/cgroup.procs");
    assert!(
        std::fs::read_to_string(&cg)
            .unwrap()
            .lines()
            .any(|l| l == pid.to_string())
    );
    assert!(status.contains("Slice: apps.slice"), "{status}");
    assert!(status.contains("/apps.slice/web.service"), "{status}");

    // start waits for the job; a dependency failure exits non-zero with the reason.
    let out = d.ctl(&["start", "db.service"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&d.ctl(&["status", "db.service"]).stdout).contains("active (running)"));
    let out = d.ctl(&["start", "app.service"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("job for app.service ended: dependency"),
        "{}",
        text(&out.stderr)
    );
    let out = d.ctl(&["--json", "status", "app.service"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(json[0]["ActiveState"], "failed");
    assert_eq!(json[0]["Result"], "dependency");

    // A unit with load errors can't be started, and says why.
    let out = d.ctl(&["start", "broken.service"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("[service] restart") && err.contains("JobFailed"),
        "{err}"
    );

    // restart gives a new main process; stop ends it and removes its cgroup.
    let out = d.ctl(&["restart", "web.service"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&d.ctl(&["status", "web.service"]).stdout);
    assert!(status.contains("active (running)"), "{status}");
    assert!(
        !status.contains(&format!("Main PID: {pid}\n")),
        "same PID after restart:\n{status}"
    );
    let out = d.ctl(&["stop", "web.service"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&d.ctl(&["status", "web.service"]).stdout).contains("inactive (dead)"));
    assert!(!d.root.0.join("apps.slice/web.service").exists());

    // Errors name the problem: unknown unit, a name with "/", a missing socket.
    let out = d.ctl(&["status", "nope.service"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("NoSuchUnit"),
        "{}",
        text(&out.stderr)
    );
    let out = d.ctl(&["stop", "../etc.service"]);
    assert!(
        text(&out.stderr).contains("InvalidUnit"),
        "{}",
        text(&out.stderr)
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .args(["--address", "unix:path=/nonexistent/private", "list"])
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("is corrald running?"),
        "{}",
        text(&out.stderr)
    );

    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn notify_services_are_active_only_once_ready() {
    let units = [
        (
            "ready.service.toml",
            "[unit]\nautostart = true\n[service]\ntype = \"notify\"\n\
             exec = [\"/bin/sh\", \"-c\", \"sleep 1; systemd-notify --ready --status=serving --pid=$$; exec sleep 1000\"]\n"
                .to_string(),
        ),
        (
            "mute.service.toml",
            "[unit]\nautostart = true\n[service]\ntype = \"notify\"\nstart-timeout = \"1s\"\n\
             exec = [\"/bin/sleep\", \"1000\"]\n"
                .to_string(),
        ),
    ];
    let Some(d) = Daemon::start("notify", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    // Activating until READY=1 arrives.
    let early = text(&d.ctl(&["status", "ready.service"]).stdout);
    assert!(early.contains("Active: activating (start)"), "{early}");
    wait_for("ready.service active", Duration::from_secs(10), || {
        text(&d.ctl(&["status", "ready.service"]).stdout).contains("Active: active (running)")
    });
    // Never ready: start-timeout fails it with result timeout.
    wait_for("mute.service to time out", Duration::from_secs(10), || {
        text(&d.ctl(&["status", "mute.service"]).stdout).contains("Active: failed")
    });
    let mute = text(&d.ctl(&["status", "mute.service"]).stdout);
    assert!(mute.contains("Result: timeout"), "{mute}");
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("status: serving"), "{log}");
}

#[test]
fn service_types_stop_paths_logs_and_orphans() {
    let units = [
        (
            "exec.service.toml",
            "[service]\ntype = \"exec\"\nexec = [\"/bin/sh\", \"-c\", \"echo hello from exec; echo oops >&2; exec sleep 1000\"]\n"
                .to_string(),
        ),
        (
            "once.service.toml",
            "[service]\ntype = \"oneshot\"\nexec = [\"/bin/sh\", \"-c\", \"sleep 0.2; exit 0\"]\n".to_string(),
        ),
        (
            "once-fail.service.toml",
            "[service]\ntype = \"oneshot\"\nexec = [\"/bin/sh\", \"-c\", \"exit 4\"]\n".to_string(),
        ),
        (
            "stubborn.service.toml",
            "[service]\nexec = [\"/bin/sh\", \"-c\", \"trap '' TERM; while :; do sleep 0.1; done\"]\nstop-timeout = \"1s\"\n"
                .to_string(),
        ),
        (
            "polite.service.toml",
            "[service]\nexec = [\"/bin/sleep\", \"1000\"]\nexec-stop = [\"/bin/sh\", \"-c\", \"echo stopping-now\"]\n"
                .to_string(),
        ),
        (
            "orphans.service.toml",
            "[service]\nexec = [\"/bin/sh\", \"-c\", \"(sleep 0.1 &) ; (true &) ; exec sleep 1000\"]\n".to_string(),
        ),
        (
            "missing.service.toml",
            "[service]\nexec = [\"/nonexistent/program\", \"--flag\"]\n".to_string(),
        ),
    ];
    let Some(d) = Daemon::start("types", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let ok = |args: &[&str]| {
        let out = d.ctl(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    let status = |u: &str| text(&d.ctl(&["status", u]).stdout);

    // exec: active once exec succeeded; its output reaches the unit's log file.
    ok(&["start", "exec.service"]);
    assert!(status("exec.service").contains("active (running)"));
    let log = d.out_dir().join("log/exec.service.log");
    wait_for("exec.service's log", Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("hello from exec") && l.contains("oops"))
    });

    // oneshot: the start job ends when it exits; success leaves it inactive, failure failed.
    ok(&["start", "once.service"]);
    assert!(
        status("once.service").contains("inactive (dead)"),
        "{}",
        status("once.service")
    );
    let out = d.ctl(&["start", "once-fail.service"]);
    assert!(!out.status.success());
    let s = status("once-fail.service");
    assert!(
        s.contains("failed (failed)") && s.contains("Result: exit-code (status 4)"),
        "{s}"
    );

    // A service that ignores SIGTERM is ended by cgroup.kill within stop-timeout + 1 s.
    ok(&["start", "stubborn.service"]);
    let t = std::time::Instant::now();
    ok(&["stop", "stubborn.service"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "stopped too early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(status("stubborn.service").contains("inactive (dead)"));
    assert!(!d.root.0.join("system.slice/stubborn.service").exists());

    // exec-stop runs before the stop signal.
    ok(&["start", "polite.service"]);
    ok(&["stop", "polite.service"]);
    let log =
        std::fs::read_to_string(d.out_dir().join("log/polite.service.log")).unwrap_or_default();
    assert!(log.contains("stopping-now"), "{log}");

    // Orphans reparented to corrald (a subreaper) are reaped: no zombie children.
    ok(&["start", "orphans.service"]);
    std::thread::sleep(Duration::from_millis(500));
    let zombies: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|st| {
            st.contains("State:\tZ") && st.lines().any(|l| l == format!("PPid:\t{}", d.child.id()))
        })
        .collect();
    assert!(zombies.is_empty(), "zombies of corrald: {zombies:?}");

    // An exec failure is the unit's error, in the daemon's words.
    let out = d.ctl(&["start", "missing.service"]);
    assert!(!out.status.success());
    assert!(status("missing.service").contains("Result: exit-code (status 127)"));

    let (st, log) = d.stop();
    assert!(st.success(), "{log}");
    assert!(
        log.contains("exec /nonexistent/program: No such file or directory"),
        "{log}"
    );
}

#[test]
fn limits_freeze_kill_and_logs() {
    let units = [
        (
            "apps-batch.slice.toml",
            "[resources]\npids-max = 50\ncpu-max = \"30%\"\n".to_string(),
        ),
        (
            "job.service.toml",
            "[unit]\nslice = \"apps-batch.slice\"\nautostart = true\n[service]\n\
             exec = [\"/bin/sh\", \"-c\", \"echo job says hi; exec sleep 1000\"]\n\
             [resources]\npids-max = 100\ncpu-max = \"60%\"\nmemory-max = \"64M\"\n"
                .to_string(),
        ),
    ];
    let Some(d) = Daemon::start("limits", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    wait_for("job.service active", Duration::from_secs(10), || {
        text(&d.ctl(&["status", "job.service"]).stdout).contains("active (running)")
    });
    let json = |d: &Daemon| -> serde_json::Value {
        serde_json::from_slice(&d.ctl(&["--json", "status", "job.service"]).stdout)
            .expect("status --json")
    };
    // Effective limits: the tightest over the unit and its slices, with the binding unit.
    let j = json(&d);
    assert_eq!(j[0]["EffectiveLimits"]["pids-max"][0], "50");
    assert_eq!(j[0]["EffectiveLimits"]["pids-max"][1], "apps-batch.slice");
    assert_eq!(j[0]["EffectiveLimits"]["cpu-max"][1], "apps-batch.slice");
    assert_eq!(j[0]["EffectiveLimits"]["memory-max"][1], "job.service");
    assert_eq!(j[0]["Limits"]["cpu-max"], "60%");
    // status shows processes and recent log lines.
    let s = text(&d.ctl(&["status", "job.service"]).stdout);
    assert!(s.contains("pids-max 50 (from apps-batch.slice)"), "{s}");
    assert!(s.contains("sleep 1000"), "{s}");
    wait_for("the log line", Duration::from_secs(5), || {
        text(&d.ctl(&["logs", "job.service"]).stdout).contains("job says hi")
    });

    // A live change is persisted as a drop-in and now binds.
    let out = d.ctl(&["limit", "job.service", "pids-max=20", "memory-high=32M"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dropin = d.out_dir().join("units/job.service.d/50-limits.toml");
    let saved = std::fs::read_to_string(&dropin).expect("the drop-in");
    assert!(
        saved.contains("pids-max = \"20\"") && saved.contains("memory-high = \"32M\""),
        "{saved}"
    );
    let j = json(&d);
    assert_eq!(j[0]["EffectiveLimits"]["pids-max"][1], "job.service");
    assert_eq!(j[0]["Limits"]["memory-high"], "32M");
    // --runtime goes to the runtime directory instead.
    let out = d.ctl(&["limit", "job.service", "cpu-max=10%", "--runtime"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        d.out_dir()
            .join("run/units/job.service.d/50-runtime-limits.toml")
            .exists()
    );
    // Bad values are refused with the key and what was expected, and change nothing.
    let out = d.ctl(&["limit", "job.service", "memory-max=lots"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("InvalidLimit") && err.contains("memory-max: expected a size"),
        "{err}"
    );
    let out = d.ctl(&["limit", "-.slice", "memory-max=1G"]);
    assert!(
        text(&out.stderr).contains("takes no limits"),
        "{}",
        text(&out.stderr)
    );

    // freeze/thaw: the kernel reports the cgroup frozen, then running.
    let out = d.ctl(&["freeze", "job.service"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json(&d)[0]["FreezerState"], "frozen");
    let events = std::fs::read_to_string(
        d.root
            .0
            .join("apps.slice/apps-batch.slice/job.service/cgroup.events"),
    )
    .unwrap();
    assert!(events.contains("frozen 1"), "{events}");
    let out = d.ctl(&["thaw", "job.service"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(json(&d)[0]["FreezerState"], "running");

    // kill: the signal reaches the processes; the unit sees its main process die.
    let out = d.ctl(&["kill", "job.service", "--signal", "KILL"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for(
        "job.service failed by SIGKILL",
        Duration::from_secs(5),
        || {
            let s = text(&d.ctl(&["status", "job.service"]).stdout);
            s.contains("failed (failed)") && s.contains("Result: signal (status 9)")
        },
    );
    let out = d.ctl(&["freeze", "job.service"]);
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        text(&out.stderr)
    );

    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}

/// `delegate = true`: a second corrald runs as a service of the first, finds its tree from
/// the delegation mark, runs its own services below, and goes down cleanly when stopped.
#[test]
fn a_nested_corrald_manages_its_delegated_subtree() {
    let tmp = tempfile::tempdir().unwrap();
    let inner_units = tmp.path().join("inner-units");
    std::fs::create_dir_all(&inner_units).unwrap();
    std::fs::write(
        inner_units.join("inner.service.toml"),
        "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
    )
    .unwrap();
    let nested = format!(
        "[unit]\nautostart = true\n[service]\nexec = [\"{}\", \"--unit-path\", \"{}\", \"--runtime-dir\", \"{}\", \"--log-dir\", \"{}\", \"--no-bus\"]\n\
         delegate = true\nkill-mode = \"process\"\n",
        env!("CARGO_BIN_EXE_corrald"),
        inner_units.display(),
        tmp.path().join("inner-run").display(),
        tmp.path().join("inner-log").display(),
    );
    let Some(d) = Daemon::start("nested", &[("nested.service.toml", nested)]) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let nested_cg = d.root.0.join("system.slice/nested.service");
    let inner_cg = nested_cg.join("system.slice/inner.service");
    wait_for(
        "the nested corrald's service",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(inner_cg.join("cgroup.procs"))
                .is_ok_and(|p| !p.trim().is_empty())
        },
    );
    // The nested daemon lives in the delegated cgroup's init.scope; the mark is there.
    let scope = std::fs::read_to_string(nested_cg.join("init.scope/cgroup.procs")).unwrap();
    assert_eq!(scope.lines().count(), 1, "{scope}");
    let inner = std::process::Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .args([
            "--address",
            &format!(
                "unix:path={}",
                tmp.path().join("inner-run/private").display()
            ),
        ])
        .args(["status", "inner.service"])
        .output()
        .unwrap();
    assert!(
        text(&inner.stdout).contains("active (running)"),
        "{}",
        text(&inner.stderr)
    );

    // Stopping the delegate (kill-mode = process) signals the nested corrald only; it stops
    // its own services and exits, and the whole subtree goes.
    let out = d.ctl(&["stop", "nested.service"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    wait_for(
        "the delegated subtree to go",
        Duration::from_secs(10),
        || !nested_cg.exists(),
    );
    let (st, log) = d.stop();
    assert!(st.success(), "{log}");
}

/// A stop right after a start: the process is born and dies within the kernel's 10 ms
/// rate limit of cgroup.events notifications, so its birth may never be seen in an event. Every
/// stop must still end `done` at once — not `failed` after stop-timeout twice.
#[test]
fn a_stop_right_after_a_start_settles_at_once() {
    let units = [(
        "quick.service.toml",
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\nstop-timeout = \"2s\"\n\
         start-limit = { interval = \"0s\" }\n"
            .to_string(),
    )];
    let Some(d) = Daemon::start("quick", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    for i in 0..30 {
        for verb in ["start", "stop"] {
            // A stop that missed the cgroup emptying ends `timeout` and corralctl fails.
            let out = d.ctl(&[verb, "quick.service"]);
            assert!(
                out.status.success(),
                "cycle {i}: {verb}: {}",
                text(&out.stderr)
            );
        }
    }
    let status = text(&d.ctl(&["status", "quick.service"]).stdout);
    assert!(status.contains("Active: inactive (dead)"), "{status}");
}

/// `logs -f`: the last lines, then every new line once, in order, as it arrives.
#[test]
fn logs_follow_prints_each_new_line_once() {
    let units = [(
        "ticker.service.toml",
        "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sh\", \"-c\", \
         \"i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.03; done\"]\n"
            .to_string(),
    )];
    let Some(d) = Daemon::start("follow", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    wait_for("ticks", Duration::from_secs(10), || {
        text(&d.ctl(&["logs", "ticker.service"]).stdout).contains("tick 3")
    });
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .arg("--address")
        .arg(format!("unix:path={}", d.socket().display()))
        .args(["logs", "-f", "-n", "2", "ticker.service"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("corralctl logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen: Vec<u64> = Vec::new();
    while seen.len() < 40 {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no new line; seen {seen:?}"));
        let n = line
            .strip_prefix("tick ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        seen.push(n);
    }
    let _ = child.kill();
    let _ = child.wait();
    // Consecutive: nothing skipped, nothing twice, across many looks of the follower.
    for pair in seen.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "{seen:?}");
    }
}
