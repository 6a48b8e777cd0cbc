//! corrald on the host, delegated a fresh child of the real cgroup2 mount (`--cgroup-root`):
//! autostart units start in dependency order inside their own cgroups, a crashing unit restarts
//! until its start limit, and SIGTERM stops every unit in reverse order, removes the cgroups and
//! exits. (No resource controllers here: limits are proven in the VM.)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

use daemon::{TestRoot, wait_for};

/// Shell lines that set `$d` to a delegated unit's own cgroup (its processes start in the
/// `init.scope` below it).
const DELEGATED_DIR: &str = "m=$(awk '$3 == \"cgroup2\" { print $2; exit }' /proc/self/mounts)\n\
     p=$(sed -n 's/^0:://p' /proc/self/cgroup)\n\
     d=$m${p%/init.scope}\n";

/// A service started with corrald that runs until stopped.
const SLEEPER: &str = "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn autostart_restart_limits_and_clean_shutdown() {
    let Some(root) = TestRoot::new("daemon") else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let units = tmp.path().join("units");
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let o = out.display();
    write(
        &units,
        "web.service.toml",
        &format!(
            "[unit]\nslice = \"apps.slice\"\nautostart = true\n[service]\n\
             exec = [\"/bin/sh\", \"-c\", \"echo $$ > {o}/web.pid; exec sleep 1000\"]\n"
        ),
    );
    write(
        &units,
        "dep.service.toml",
        &format!(
            "[unit]\nrequires = [\"web.service\"]\nafter = [\"web.service\"]\nautostart = true\n\
             [service]\ntype = \"oneshot\"\nremain-after-exit = true\n\
             exec = [\"/bin/sh\", \"-c\", \"test -d {r}/apps.slice/web.service && cat /proc/self/cgroup > {o}/dep.cgroup\"]\n",
            r = root.0.display()
        ),
    );
    write(
        &units,
        "crash.service.toml",
        &format!(
            "[unit]\nautostart = true\n[service]\n\
             exec = [\"/bin/sh\", \"-c\", \"echo x >> {o}/crash.count; exit 3\"]\n\
             restart = \"on-failure\"\nrestart-delay = \"20ms\"\nrestart-delay-max = \"40ms\"\n\
             start-limit = {{ burst = 3, interval = \"1m\" }}\n"
        ),
    );
    write(
        &units,
        "missing.service.toml",
        "[service]\nexec = [\"/nonexistent/program\"]\n",
    );

    let daemon = Command::new(env!("CARGO_BIN_EXE_corrald"))
        .arg("--cgroup-root")
        .arg(&root.0)
        .arg("--unit-path")
        .arg(&units)
        .arg("--runtime-dir")
        .arg(tmp.path().join("run"))
        .arg("--log-dir")
        .arg(tmp.path().join("log"))
        .arg("--no-bus")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(daemon);

    // web runs in its own cgroup under apps.slice; dep ran after it, in system.slice.
    let web_pid_file = out.join("web.pid");
    wait_for("web.service", Duration::from_secs(10), || {
        std::fs::read_to_string(&web_pid_file).is_ok_and(|s| !s.trim().is_empty())
    });
    let web_pid: u32 = std::fs::read_to_string(&web_pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let web_cg = root.0.join("apps.slice/web.service");
    let procs = std::fs::read_to_string(web_cg.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == web_pid.to_string()), "{procs}");
    let dep_file = out.join("dep.cgroup");
    // The shell creates the file before it writes it: wait for the content.
    wait_for("dep.service", Duration::from_secs(10), || {
        std::fs::read_to_string(&dep_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let dep_cgroup = std::fs::read_to_string(&dep_file).unwrap();
    assert!(
        dep_cgroup.contains("/system.slice/dep.service"),
        "{dep_cgroup}"
    );
    // The daemon itself moved into init.scope.
    let init = std::fs::read_to_string(root.0.join("init.scope/cgroup.procs")).unwrap();
    assert!(
        init.lines().any(|l| l == daemon.0.id().to_string()),
        "{init}"
    );

    // crash.service: 3 starts within the start limit, then it stays failed.
    let count = out.join("crash.count");
    wait_for(
        "crash.service's three starts",
        Duration::from_secs(10),
        || std::fs::read_to_string(&count).is_ok_and(|s| s.lines().count() >= 3),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 3);

    // SIGTERM: everything stops, the cgroups go, the daemon exits cleanly.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = daemon.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "corrald did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(daemon.0.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(status.success(), "corrald: {status}\n{log}");
    assert!(
        !Path::new(&format!("/proc/{web_pid}")).exists(),
        "web's process survived shutdown"
    );
    assert!(!web_cg.exists(), "web's cgroup was not removed\n{log}");
    assert!(
        !root.0.join("apps.slice").exists(),
        "apps.slice was not removed\n{log}"
    );
}

/// With NOTIFY_SOCKET set (systemd Type=notify, or corral above us), corrald sends READY=1
/// exactly once, when the API answers, and STOPPING=1 when it goes down.
#[test]
fn tells_its_own_supervisor_when_ready_and_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let units = [("a.service.toml", SLEEPER.to_string())];
    let Some(d) =
        daemon::Daemon::start_with_env("notify-up", &units, &[("NOTIFY_SOCKET", &sock_path)])
    else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a message from corrald");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(msg.contains("STATUS=managing"), "{msg}");
    // The API answers now.
    let out = d.ctl(&["list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Exactly once.
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(sock.recv(&mut buf).is_err(), "a second message arrived");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(d.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), "STOPPING=1");
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}

/// Bug: the SIGTERM handler was installed after the socket was bound, so a SIGTERM sent as
/// soon as the socket appeared (a supervisor stopping a daemon it just saw come up) killed
/// corrald outright, its units unstopped. Sent at the first sight of the socket (while the
/// autostart unit is being started, which keeps the old window open for milliseconds), it must
/// be handled: corrald stops its units — the stop within milliseconds of the start included —
/// and exits cleanly instead of dying by the signal.
#[test]
fn sigterm_as_soon_as_the_socket_appears_is_handled() {
    use std::os::unix::process::ExitStatusExt;
    let units = [("a.service.toml", SLEEPER.to_string())];
    let Some(mut d) = daemon::Daemon::spawn_unwaited("early-term", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let sock = d.socket();
    let start = Instant::now();
    // Spinning, not sleeping: the signal must land as close to the bind as we can get.
    while !sock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "corrald never bound its socket"
        );
        std::hint::spin_loop();
    }
    let pid = nix::unistd::Pid::from_raw(d.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    // Generous: a stop that misses its unit's end waits out stop-timeout (10 s) twice.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = d.child.kill();
            break d.child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut log = String::new();
    if let Some(mut e) = d.child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut log);
    }
    assert_ne!(
        status.signal(),
        Some(libc::SIGTERM),
        "corrald died of the SIGTERM: {log}"
    );
    assert!(log.contains("stopping every unit"), "{status}: {log}");
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("every unit stopped"), "{log}");
}

/// A crashed corrald's services keep running; the next corrald adopts them — same PIDs, no
/// restart, no duplicate — and can still stop them; an adopted process's exit is seen.
#[test]
fn a_restarted_daemon_adopts_running_services() {
    let units = [
        (
            "web.service.toml",
            "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\nkill-mode = \"process\"\n"
                .to_string(),
        ),
        (
            "worker.service.toml",
            "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\nrestart = \"on-failure\"\nrestart-delay = \"100ms\"\n"
                .to_string(),
        ),
    ];
    let Some(mut d) = daemon::Daemon::start("adopt", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let main_pid = |d: &daemon::Daemon, u: &str| -> Option<u32> {
        let out = d.ctl(&["--json", "status", u]);
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        j[0]["MainPID"]
            .as_u64()
            .filter(|p| *p > 0)
            .map(|p| p as u32)
    };
    wait_for("both units running", Duration::from_secs(10), || {
        main_pid(&d, "web.service").is_some() && main_pid(&d, "worker.service").is_some()
    });
    let (web, worker) = (
        main_pid(&d, "web.service").unwrap(),
        main_pid(&d, "worker.service").unwrap(),
    );

    d.crash_and_restart();
    assert!(
        Path::new(&format!("/proc/{web}")).exists(),
        "the crash took web with it"
    );
    wait_for("adoption", Duration::from_secs(10), || {
        main_pid(&d, "web.service") == Some(web) && main_pid(&d, "worker.service") == Some(worker)
    });
    // No duplicate: one process in each cgroup.
    for u in ["web.service", "worker.service"] {
        let procs =
            std::fs::read_to_string(d.root.0.join("system.slice").join(u).join("cgroup.procs"))
                .unwrap();
        assert_eq!(procs.lines().count(), 1, "{u}: {procs}");
    }
    // An adopted process's exit is seen (pidfd); its status is unknown, so on-failure restarts.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("worker restarted", Duration::from_secs(10), || {
        main_pid(&d, "worker.service").is_some_and(|p| p != worker)
    });
    // Stop still works on an adopted unit.
    let out = d.ctl(&["stop", "web.service"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("web gone", Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{web}")).exists()
    });
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("adopted: still running as"), "{log}");
}

/// `corralctl daemon-reexec`: the daemon executes itself again in the same process; every
/// service keeps running with the same PID, its output keeps reaching its log through the exec,
/// and its exit is still reaped with the real status (they are still our children).
#[test]
fn a_reexecuted_daemon_keeps_every_service_and_its_output() {
    let go = tempfile::tempdir().expect("tempdir");
    let flag = go.path().join("go");
    let units = [
        (
            "ticker.service.toml",
            "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sh\", \"-c\", \
             \"i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.05; done\"]\n"
                .to_string(),
        ),
        (
            "exiter.service.toml",
            format!(
                "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sh\", \"-c\", \
                 \"while [ ! -e {} ]; do sleep 0.05; done; exit 3\"]\n",
                flag.display()
            ),
        ),
    ];
    let Some(d) = daemon::Daemon::start("reexec", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let status = |u: &str| -> serde_json::Value {
        let out = d.ctl(&["--json", "status", u]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .map(|j| j[0].clone())
            .unwrap_or_default()
    };
    let main_pid = |u: &str| status(u)["MainPID"].as_u64().filter(|p| *p > 0);
    wait_for("both units running", Duration::from_secs(10), || {
        main_pid("ticker.service").is_some() && main_pid("exiter.service").is_some()
    });
    let (ticker, exiter) = (main_pid("ticker.service"), main_pid("exiter.service"));
    let log = d.out_dir().join("log/ticker.service.log");
    let ticks = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_for("ticks in the log", Duration::from_secs(10), || ticks() > 0);

    let out = d.ctl(&["daemon-reexec"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // corralctl returned once the new daemon answers: the same process, the same services.
    assert!(
        Path::new(&format!("/proc/{}", d.child.id())).exists(),
        "corrald exited"
    );
    assert_eq!(main_pid("ticker.service"), ticker);
    assert_eq!(main_pid("exiter.service"), exiter);
    assert_eq!(status("ticker.service")["ActiveState"], "active");
    // Output written after the exec still reaches the log: the pipe was handed on.
    let before = ticks();
    wait_for("ticks after the re-exec", Duration::from_secs(10), || {
        ticks() > before + 3
    });
    // An exit after the re-exec is reaped with its real status.
    std::fs::write(&flag, "").expect("flag");
    wait_for("exiter failed", Duration::from_secs(10), || {
        status("exiter.service")["ActiveState"] == "failed"
    });
    let exiter = status("exiter.service");
    assert_eq!(exiter["Result"], "exit-code", "{exiter}");
    assert_eq!(exiter["ExitStatus"], 3, "{exiter}");
    let out = d.ctl(&["stop", "ticker.service"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("re-executing"), "{log}");
    assert!(log.contains("adopted: still running as"), "{log}");
}

/// A state file cut short or garbled while corrald was down never stops the next corrald: it
/// starts, adopts the service still running from its cgroup alone (its main process unknown),
/// starts no second one, and answers.
#[test]
fn a_corrupt_state_file_never_stops_the_restarted_daemon() {
    let units = [("web.service.toml", SLEEPER.to_string())];
    let Some(mut d) = daemon::Daemon::start("corrupt-state", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let status = |d: &daemon::Daemon| -> serde_json::Value {
        let out = d.ctl(&["--json", "status", "web.service"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    wait_for("web running", Duration::from_secs(10), || {
        status(&d)[0]["MainPID"].as_u64().is_some_and(|p| p > 0)
    });
    let web = status(&d)[0]["MainPID"].as_u64().unwrap();
    let state = d.out_dir().join("run/state");
    wait_for("the state file", Duration::from_secs(5), || state.exists());
    let sample = std::fs::read(&state).unwrap();
    let garbled = String::from_utf8_lossy(&sample).replace(':', "\"");
    let corruptions: [(&str, Vec<u8>); 4] = [
        ("cut in half", sample[..sample.len() / 2].to_vec()),
        ("garbled", garbled.into_bytes()),
        ("not UTF-8", vec![0xff; 64]),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in corruptions {
        d.crash_and_restart_with(|| std::fs::write(&state, &bytes).unwrap());
        wait_for(
            &format!("web adopted after a state file {what}"),
            Duration::from_secs(10),
            || status(&d)[0]["ActiveState"] == "active",
        );
        assert!(
            Path::new(&format!("/proc/{web}")).exists(),
            "{what}: web was stopped"
        );
        let procs = std::fs::read_to_string(d.root.0.join("system.slice/web.service/cgroup.procs"))
            .unwrap();
        assert_eq!(
            procs.lines().collect::<Vec<_>>(),
            [web.to_string()],
            "{what}"
        );
    }
    let (st, log) = d.stop();
    assert!(st.success(), "{log}");
    assert!(log.contains("adopted: still running"), "{log}");
    wait_for("web stopped", Duration::from_secs(5), || {
        !Path::new(&format!("/proc/{web}")).exists()
    });
}

/// SIGHUP re-reads the unit files, as `Reload` (and systemd's SIGHUP) does; it never ends the
/// daemon.
#[test]
fn sighup_reloads_the_unit_files() {
    let units = [(
        "a.service.toml",
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
    )];
    let Some(mut d) = daemon::Daemon::start("sighup", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    std::fs::write(
        d.out_dir().join("units/b.service.toml"),
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
    )
    .unwrap();
    let pid = nix::unistd::Pid::from_raw(d.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for("b.service after SIGHUP", Duration::from_secs(10), || {
        d.ctl(&["status", "b.service"]).status.success()
    });
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "SIGHUP ended corrald"
    );
    // And again: each SIGHUP is a reload.
    std::fs::remove_file(d.out_dir().join("units/b.service.toml")).unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    wait_for(
        "b.service gone after SIGHUP",
        Duration::from_secs(10),
        || !d.ctl(&["status", "b.service"]).status.success(),
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{status}\n{log}");
    assert_eq!(
        log.matches("SIGHUP: re-reading the unit files").count(),
        2,
        "{log}"
    );
}

/// A panic injected (test-only `CORRAL_TEST_PANIC`) in a spawned task — the private socket's
/// accept loop — and in the event loop itself: each is logged with where it happened, and ends
/// the daemon (outside PID 1) with a failure, as a crash does: its services keep running, and
/// the next daemon adopts them.
#[test]
fn a_panic_in_a_task_or_the_loop_is_logged_and_ends_the_daemon() {
    let units = [("kept.service.toml", SLEEPER.to_string())];
    for (site, trigger) in [("accept", "list"), ("reload", "reload")] {
        let env = [("CORRAL_TEST_PANIC", Path::new(site))];
        let Some(mut d) = daemon::Daemon::start_with_env(&format!("panic-{site}"), &units, &env)
        else {
            skip::skipped("no cgroup2 mount on this host");
            return;
        };
        let procs = d.root.0.join("system.slice/kept.service/cgroup.procs");
        let running = || {
            std::fs::read_to_string(&procs)
                .map(|p| p.split_whitespace().map(String::from).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        wait_for("kept.service", Duration::from_secs(10), || {
            running().len() == 1
        });
        let before = running();
        let out = d.ctl(&[trigger]);
        assert!(
            !out.status.success(),
            "{site}: `corralctl {trigger}` succeeded through a panic"
        );
        wait_for(
            "corrald to end after the panic",
            Duration::from_secs(10),
            || d.child.try_wait().unwrap().is_some(),
        );
        let mut log = String::new();
        std::io::Read::read_to_string(d.child.stderr.as_mut().unwrap(), &mut log).unwrap();
        let status = d.child.try_wait().unwrap().unwrap();
        assert!(!status.success(), "{site}: {status}\n{log}");
        assert!(
            log.contains("panic in thread") && log.contains("CORRAL_TEST_PANIC: a panic injected"),
            "{site}: the panic is not logged\n{log}"
        );
        assert_eq!(
            running(),
            before,
            "{site}: the service did not survive the panic"
        );
        // The next daemon (no trigger) adopts it.
        d.crash_and_restart();
        wait_for("adoption", Duration::from_secs(10), || {
            let out = d.ctl(&["--json", "status", "kept.service"]);
            serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|j| {
                j[0]["MainPID"].as_u64().map(|p| p.to_string()).as_ref() == before.first()
            })
        });
        assert_eq!(
            running(),
            before,
            "{site}: started again instead of adopted"
        );
        let (status, log) = d.stop();
        assert!(status.success(), "{log}");
    }
}

/// A service that leaves a process behind (kill-mode = process) keeps its cgroup, and so its
/// slice's, while the process lives; nothing waits for them on the loop (the slice's `rmdir`
/// meets EBUSY once and is put off); both go when the process does, on its `cgroup.events`.
#[test]
fn a_cgroup_held_by_a_leftover_process_goes_when_the_process_does() {
    let out = tempfile::tempdir().unwrap();
    let pid_file = out.path().join("stray.pid");
    let units = [(
        "stray.service.toml",
        format!(
            "[unit]\nslice = \"batch.slice\"\n[service]\nkill-mode = \"process\"\n\
             exec = [\"/bin/sh\", \"-c\", \"sleep 1000 & echo $! > {}\"]\n",
            pid_file.display()
        ),
    )];
    let Some(d) = daemon::Daemon::start("leftover", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let slice = d.root.0.join("batch.slice");
    let unit = slice.join("stray.service");
    let ok = |args: &[&str]| d.ctl_ok(args);
    ok(&["start", "stray.service"]);
    wait_for("the stray's pid", Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let stray: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for("the service inactive", Duration::from_secs(10), || {
        ok(&["status", "stray.service"]).contains("inactive")
    });
    let procs = std::fs::read_to_string(unit.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == stray.to_string()),
        "the stray is not in the unit's cgroup: {procs}"
    );

    // The slice stops; its cgroup holds the unit's, which holds the stray.
    ok(&["stop", "batch.slice"]);
    assert!(unit.is_dir(), "a cgroup with a process in it went");
    assert!(ok(&["list"]).contains("stray.service"));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(stray),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("both cgroups gone", Duration::from_secs(10), || {
        !unit.exists() && !slice.exists()
    });
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}

/// A delegated unit's nested cgroups, as many as its manager made, are removed off the loop
/// when it stops; a restart waits for that removal and starts into a fresh subtree, and a
/// slice stopped with it goes once the subtree has.
#[test]
fn a_delegated_subtree_is_removed_before_the_unit_starts_again() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display();
    let script = format!(
        "{DELEGATED_DIR}\
         i=0; while [ $i -lt 200 ]; do mkdir $d/w$i; i=$((i + 1)); done\n\
         c=$d; i=0; while [ $i -lt 30 ]; do c=$c/n; mkdir $c; i=$((i + 1)); done\n\
         [ -e {o}/first ] || mkdir $d/first\n\
         echo $d > {o}/dir; echo $$ > {o}/first; echo $$ > {o}/made\n\
         exec sleep 1000\n"
    );
    std::fs::write(out.path().join("nest.sh"), script).unwrap();
    let units = [(
        "nest.service.toml",
        format!(
            "[unit]\nslice = \"nest.slice\"\n[service]\ndelegate = true\n\
             exec = [\"/bin/sh\", \"{o}/nest.sh\"]\nstop-timeout = \"5s\"\n"
        ),
    )];
    let Some(d) = daemon::Daemon::start("nest", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let ok = |args: &[&str]| d.ctl_ok(args);
    let made = out.path().join("made");
    let made_pid = || {
        std::fs::read_to_string(&made)
            .ok()
            .filter(|s| s.ends_with('\n'))
    };
    ok(&["start", "nest.service"]);
    wait_for("the nested cgroups made", Duration::from_secs(20), || {
        made_pid().is_some()
    });
    let first = made_pid().unwrap();
    let dir = std::path::PathBuf::from(
        std::fs::read_to_string(out.path().join("dir"))
            .unwrap()
            .trim(),
    );
    assert!(dir.join("first").is_dir() && dir.join("w199").is_dir());
    std::fs::remove_file(&made).unwrap();

    // Stop (the subtree goes, off the loop), then start at once: the start waits for it.
    ok(&["restart", "nest.service"]);
    wait_for(
        "the nested cgroups made again",
        Duration::from_secs(20),
        || made_pid().is_some(),
    );
    assert_ne!(made_pid().unwrap(), first, "not restarted");
    assert!(
        !dir.join("first").exists(),
        "the first run's cgroups were not removed before the restart"
    );
    assert!(dir.join("init.scope").is_dir() && dir.join("w199").is_dir());

    // The slice stops with its unit: its cgroup waits for the unit's subtree, then goes.
    ok(&["stop", "nest.slice"]);
    let slice = dir.parent().unwrap().to_path_buf();
    assert!(slice.ends_with("nest.slice"), "{}", slice.display());
    wait_for(
        "the subtree and the slice gone",
        Duration::from_secs(20),
        || !dir.exists() && !slice.exists(),
    );
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
}

/// A unit's processes are listed off the loop, its whole delegated subtree with their
/// command lines, while other calls go on.
#[test]
fn status_lists_every_process_of_a_delegated_subtree() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display();
    let script = format!(
        "{DELEGATED_DIR}\
         mkdir $d/aside\n\
         sleep 1001 & echo $! > $d/aside/cgroup.procs\n\
         i=0; while [ $i -lt 30 ]; do sleep 1000 & i=$((i + 1)); done\n\
         echo $$ > {o}/made\n\
         wait\n"
    );
    std::fs::write(out.path().join("crowd.sh"), script).unwrap();
    let units = [(
        "crowd.service.toml",
        format!("[service]\ndelegate = true\nexec = [\"/bin/sh\", \"{o}/crowd.sh\"]\n"),
    )];
    let Some(d) = daemon::Daemon::start("crowd", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    d.ctl_ok(&["start", "crowd.service"]);
    wait_for("the processes made", Duration::from_secs(20), || {
        out.path().join("made").exists()
    });
    // Several listings at once, and a call between them.
    let listings: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| d.ctl_ok(&["status", "crowd.service"])))
            .collect();
        assert!(d.ctl_ok(&["list"]).contains("crowd.service"));
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for status in listings {
        let count = |cmd: &str| status.lines().filter(|l| l.ends_with(cmd)).count();
        assert_eq!(count("sleep 1000"), 30, "{status}");
        assert_eq!(
            count("sleep 1001"),
            1,
            "the process in a nested cgroup: {status}"
        );
    }
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}
