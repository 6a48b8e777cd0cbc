//! The administrative D-Bus methods against a real corrald on the host, over its private socket
//! with a zbus client: StartTransientUnit, EnableUnit/DisableUnit, GetUnitFiles, Reload,
//! PowerOff outside PID 1, and the errors each gives.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

use std::time::Duration;

use daemon::{Daemon, wait_for};
use zbus::proxy::Proxy;

async fn client(d: &Daemon) -> (zbus::Connection, Proxy<'static>) {
    let stream = tokio::net::UnixStream::connect(d.socket())
        .await
        .expect("connect");
    let conn = zbus::connection::Builder::unix_stream(stream)
        .p2p()
        .auth_mechanism(zbus::AuthMechanism::External)
        .build()
        .await
        .expect("p2p connection");
    let manager = Proxy::new(&conn, "org.corral1", "/org/corral1", "org.corral1.Manager")
        .await
        .expect("manager proxy");
    (conn, manager)
}

fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => format!("{other:?}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_units_enable_files_and_reload() {
    let units = [(
        "web.service.toml",
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n[resources]\npids-max = 100\n".to_string(),
    )];
    let Some(d) = Daemon::start("admin", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let (_conn, m) = client(&d).await;

    // A transient unit is validated like a file and started; bad TOML names file, line, key.
    let job: u32 = m
        .call(
            "StartTransientUnit",
            &(
                "job.service",
                "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n",
            ),
        )
        .await
        .expect("StartTransientUnit");
    assert!(job > 0);
    let status = |u: &str| text(&d.ctl(&["status", u]).stdout);
    wait_for("job.service active", Duration::from_secs(5), || {
        status("job.service").contains("active (running)")
    });
    assert!(d.out_dir().join("run/units/job.service.toml").exists());
    let err = m
        .call::<_, _, u32>(
            "StartTransientUnit",
            &("bad.service", "[service]\nrestrat = 1\n"),
        )
        .await
        .unwrap_err();
    assert_eq!(error_name(&err), "org.corral1.Error.InvalidUnit");
    let msg = err.to_string();
    assert!(
        msg.contains("bad.service.toml:2:1") && msg.contains("did you mean \"restart\""),
        "{msg}"
    );
    let err = m
        .call::<_, _, u32>(
            "StartTransientUnit",
            &("web.service", "[service]\nexec = [\"/bin/true\"]\n"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    // Enable writes the autostart drop-in, GetUnitFiles lists it in merge order.
    let () = m
        .call("EnableUnit", &("web.service",))
        .await
        .expect("EnableUnit");
    let dropin = d.out_dir().join("units/web.service.d/50-autostart.toml");
    assert!(
        std::fs::read_to_string(&dropin)
            .unwrap()
            .contains("autostart = true")
    );
    let files: Vec<(String, String)> = m.call("GetUnitFiles", &("web.service",)).await.unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files[0].0.ends_with("units/web.service.toml") && files[0].1.contains("pids-max"));
    assert!(files[1].0.ends_with("web.service.d/50-autostart.toml"));
    let () = m
        .call("DisableUnit", &("web.service",))
        .await
        .expect("DisableUnit");
    assert!(!dropin.exists());

    // Reload: a new unit appears, a changed limit shows, errors come back as (file, message).
    std::fs::write(
        d.out_dir().join("units/new.service.toml"),
        "[service]\nexec = [\"/bin/true\"]\n",
    )
    .unwrap();
    std::fs::write(
        d.out_dir().join("units/web.service.toml"),
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n[resources]\npids-max = 42\n",
    )
    .unwrap();
    std::fs::write(d.out_dir().join("units/broken.service.toml"), "[service\n").unwrap();
    let errors: Vec<(String, String)> = m.call("Reload", &()).await.expect("Reload");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].0.ends_with("broken.service.toml"), "{errors:?}");
    assert!(text(&d.ctl(&["list"]).stdout).contains("new.service"));
    let j: serde_json::Value =
        serde_json::from_slice(&d.ctl(&["--json", "status", "web.service"]).stdout).unwrap();
    assert_eq!(j[0]["Limits"]["pids-max"], "42");
    // The transient unit survived the reload and still runs.
    assert!(status("job.service").contains("active (running)"));

    // Not PID 1: PowerOff and Reboot are refused with NotSupported.
    for method in ["PowerOff", "Reboot"] {
        let err = m.call::<_, _, ()>(method, &()).await.unwrap_err();
        assert_eq!(
            error_name(&err),
            "org.corral1.Error.NotSupported",
            "{method}"
        );
    }
    let (st, log) = d.stop();
    assert!(st.success(), "{log}");
}

#[test]
fn corralctl_run_cat_enable_reload() {
    let units = [(
        "web.service.toml",
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
    )];
    let Some(d) = Daemon::start("run", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    // run: a transient unit from a command line; --wait returns its exit status.
    let out = d.ctl(&[
        "run",
        "--name",
        "once.service",
        "-p",
        "pids-max=10",
        "--wait",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let out = d.ctl(&["run", "--name", "bg.service", "--", "/bin/sleep", "1000"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Running as unit: bg.service"));
    assert!(text(&d.ctl(&["status", "bg.service"]).stdout).contains("active (running)"));
    let cat = text(&d.ctl(&["cat", "once.service"]).stdout);
    assert!(
        cat.contains("pids-max = \"10\"") && cat.contains("/once.service.toml"),
        "{cat}"
    );
    // enable / disable, shown by cat.
    assert!(d.ctl(&["enable", "web.service"]).status.success());
    assert!(text(&d.ctl(&["cat", "web.service"]).stdout).contains("autostart = true"));
    assert!(d.ctl(&["disable", "web.service"]).status.success());
    assert!(!text(&d.ctl(&["cat", "web.service"]).stdout).contains("autostart"));
    // reload reports errors and exits non-zero on them.
    std::fs::write(
        d.out_dir().join("units/bad.service.toml"),
        "[service]\nexec = 1\n",
    )
    .unwrap();
    let out = d.ctl(&["reload"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("bad.service.toml"),
        "{}",
        text(&out.stderr)
    );
    // Not PID 1: poweroff is refused with the reason.
    let out = d.ctl(&["poweroff"]);
    assert!(text(&out.stderr).contains("PID 1"), "{}", text(&out.stderr));
    let (st, log) = d.stop();
    assert!(st.success(), "{log}");
}

/// A limit set for this boot only (`--runtime`) holds over a persistent one at the next
/// `Reload`, even though both are `NAME.d` drop-ins and a same-named drop-in in the first unit
/// directory masks the runtime directory's (DESIGN §1): the runtime one has a name of its own,
/// which sorts after. The newest setting of a key wins, whichever kind it was; without the
/// runtime directory (a reboot) the persistent value is back.
#[test]
fn a_runtime_limit_holds_over_a_persistent_one_until_the_runtime_directory_goes() {
    let units = [(
        "web.service.toml",
        "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
    )];
    let Some(mut d) = Daemon::start("runtime-limits", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let ok = |d: &Daemon, args: &[&str]| {
        let out = d.ctl(args);
        assert!(
            out.status.success(),
            "corralctl {args:?}: {}",
            text(&out.stderr)
        );
    };
    let pids_max = |d: &Daemon| -> String {
        let out = d.ctl(&["--json", "status", "web.service"]);
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
        j[0]["Limits"]["pids-max"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    ok(&d, &["start", "web.service"]);
    ok(&d, &["limit", "web.service", "pids-max=100"]);
    ok(&d, &["limit", "web.service", "pids-max=50", "--runtime"]);
    assert_eq!(pids_max(&d), "50");
    ok(&d, &["reload"]);
    assert_eq!(
        pids_max(&d),
        "50",
        "the runtime limit was lost at the reload"
    );
    // A persistent setting after it is the newest: it holds over the runtime one.
    ok(&d, &["limit", "web.service", "pids-max=70"]);
    ok(&d, &["reload"]);
    assert_eq!(
        pids_max(&d),
        "70",
        "an older runtime limit came back at the reload"
    );
    ok(&d, &["limit", "web.service", "pids-max=40", "--runtime"]);
    ok(&d, &["reload"]);
    assert_eq!(pids_max(&d), "40");
    let cat = text(&d.ctl(&["cat", "web.service"]).stdout);
    assert!(
        cat.contains("units/web.service.d/50-limits.toml")
            && cat.contains("run/units/web.service.d/50-runtime-limits.toml"),
        "{cat}"
    );
    // A reboot: the runtime directory is gone; the persistent value is back.
    let _ = d.child.kill();
    let _ = d.child.wait();
    std::fs::remove_dir_all(d.out_dir().join("run")).unwrap();
    d.crash_and_restart();
    wait_for("the restarted daemon", Duration::from_secs(10), || {
        d.ctl(&["status", "web.service"]).status.success()
    });
    assert_eq!(pids_max(&d), "70");
    let (st, log) = d.stop();
    assert!(st.success(), "{log}");
}

/// A service whose main process ends with nothing else in its cgroup goes from `active` to
/// `inactive` in one turn, and the bus hears that turn once: no `deactivating (stop-sigterm)`
/// on the way (as from systemd), which cost every connection two signals more per exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_service_is_announced_once_per_turn() {
    use futures_util::StreamExt;
    let Some(d) = Daemon::start("announce", &[]) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let (conn, manager) = client(&d).await;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path("/org/corral1")
        .unwrap()
        .member("UnitStateChanged")
        .unwrap()
        .build();
    let mut changes = zbus::MessageStream::for_match_rule(rule, &conn, None)
        .await
        .expect("matching UnitStateChanged");
    for round in 0..5 {
        let _: u32 = manager
            .call(
                "StartTransientUnit",
                &("once.service", "[service]\nexec = [\"/bin/true\"]\n"),
            )
            .await
            .expect("StartTransientUnit");
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            let mut seen = Vec::new();
            while let Some(msg) = changes.next().await {
                let msg = msg.expect("a signal");
                let (unit, active, sub): (String, String, String) =
                    msg.body().deserialize().expect("(sss)");
                if unit == "once.service" {
                    seen.push(format!("{active} ({sub})"));
                    if active == "inactive" || active == "failed" {
                        return seen;
                    }
                }
            }
            panic!("the signal stream ended");
        })
        .await
        .expect("once.service ends within 10 s");
        // The launch's outcome and the exit may be worked off in the same turn: `active`
        // may be skipped, never the turn's end.
        assert!(
            seen == ["activating (start)", "active (running)", "inactive (dead)"]
                || seen == ["activating (start)", "inactive (dead)"],
            "round {round}: {seen:?}"
        );
        // Collected at the end of the turn that ended it: the name is free for the next round.
        wait_for(
            "once.service to be collected",
            Duration::from_secs(5),
            || !String::from_utf8_lossy(&d.ctl(&["list"]).stdout).contains("once.service"),
        );
    }
    let (st, log) = d.stop();
    assert!(st.success(), "{log}");
}
