//! Faults (issue 14): a delegated corrald (not PID 1, on a fresh cgroup of this host) SIGKILLed
//! in the middle of a start storm, again and again. After each restart:
//! - every service that was running at the kill is adopted, exactly once (one "adopted" line,
//!   its cgroup's one process as its main process), and none that wasn't;
//! - once the storm is sent again, every service runs exactly once: one process in its cgroup,
//!   one start recorded by the service itself (none was started twice), and its main PID is
//!   that process;
//! - no cgroup is left that no running unit explains (no leak), neither after the restart — an
//!   empty cgroup of a start the kill cut short included — nor once every service is stopped.
//!
//! The services use `kill-mode = "process"`, as a delegated manager's must (DESIGN §1) for its
//! supervisor to leave them running when it dies. The sizes come from the environment:
//! `CORRAL_FAULT_SERVICES` (default 30) services, `CORRAL_FAULT_KILLS` (default 3) kills; the
//! long run (100 services, 20 kills) is `scripts/faults`.
//!
//! Needs root and the host's cgroup2 mount.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{Daemon, wait_for};

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unit(i: usize) -> String {
    format!("s{i}.service")
}

/// The processes in a cgroup (none when it is gone).
fn procs(cg: &Path) -> Vec<u32> {
    std::fs::read_to_string(cg.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Every cgroup below `root`, relative to it.
fn cgroups(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let path = e.path();
                out.insert(path.strip_prefix(root).unwrap().to_path_buf());
                todo.push(path);
            }
        }
    }
    out
}

/// What the cgroup tree must hold: init.scope, system.slice and the running units' cgroups.
fn expected_cgroups(running: &BTreeSet<usize>) -> BTreeSet<PathBuf> {
    let mut want: BTreeSet<PathBuf> = ["init.scope", "system.slice"]
        .into_iter()
        .map(PathBuf::from)
        .collect();
    want.extend(
        running
            .iter()
            .map(|i| Path::new("system.slice").join(unit(*i))),
    );
    want
}

/// `corralctl --json status` of every unit: (ActiveState, MainPID) by index.
fn states(d: &Daemon, n: usize) -> Option<Vec<(String, u64)>> {
    let names: Vec<String> = (0..n).map(unit).collect();
    let mut args = vec!["--json", "status"];
    args.extend(names.iter().map(String::as_str));
    let out = d.ctl(&args);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let all = j.as_array()?;
    (all.len() == n).then(|| {
        all.iter()
            .map(|u| {
                (
                    u["ActiveState"].as_str().unwrap_or("").to_string(),
                    u["MainPID"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    })
}

/// Every unit started (`corralctl start --no-block`, one connection), in the background.
fn storm(d: &Daemon, n: usize) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .arg("--address")
        .arg(format!("unix:path={}", d.socket().display()))
        .args(["start", "--no-block", "--"])
        .args((0..n).map(unit))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running corralctl")
}

#[test]
fn sigkilled_in_a_start_storm_every_service_is_adopted_once_and_none_leaks() {
    let n = size("CORRAL_FAULT_SERVICES", 30).max(2);
    let kills = size("CORRAL_FAULT_KILLS", 3);
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display();
    let units: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("{}.toml", unit(i)),
                format!(
                    "[service]\nkill-mode = \"process\"\n\
                     exec = [\"/bin/sh\", \"-c\", \"echo $$ >> {o}/{i}.starts; exec /bin/sleep 100000\"]\n"
                ),
            )
        })
        .collect();
    let unit_refs: Vec<(&str, String)> =
        units.iter().map(|(f, t)| (f.as_str(), t.clone())).collect();
    let Some(mut d) = Daemon::start_logging_to_file("faults", &unit_refs, &[], false) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let root = d.root.0.clone();
    let cg = |i: usize| root.join("system.slice").join(unit(i));
    let log_file = d.log_file.clone().expect("a log file");
    let started = Instant::now();
    let mut mid_storm = 0;

    for round in 0..kills {
        for i in 0..n {
            let _ = std::fs::remove_file(out.path().join(format!("{i}.starts")));
        }
        // The storm, and a kill once a share of it runs (a different share each round).
        let want = 1 + (round * 37 + 11) % (n - 1);
        let mut client = storm(&d, n);
        wait_for("the storm to begin", Duration::from_secs(30), || {
            (0..n).filter(|i| !procs(&cg(*i)).is_empty()).count() >= want
        });
        let _ = d.child.kill();
        let _ = d.child.wait();
        let _ = client.wait();
        // Processes already cloned exec on their own; none can join a unit's cgroup now.
        let running: BTreeSet<usize> = (0..n).filter(|i| !procs(&cg(*i)).is_empty()).collect();
        if running.len() < n {
            mid_storm += 1;
        }
        let pids: Vec<Vec<u32>> = (0..n).map(|i| procs(&cg(i))).collect();
        for i in &running {
            assert_eq!(
                pids[*i].len(),
                1,
                "round {round}: {} at the kill: {:?}",
                unit(*i),
                pids[*i]
            );
        }
        // A start cut short between making the unit's cgroup and cloning into it leaves the
        // cgroup empty; make sure one such is there, every round.
        if let Some(cut) = (0..n).find(|i| !running.contains(i)) {
            let _ = std::fs::create_dir(cg(cut));
        }
        let log_before = std::fs::metadata(&log_file).map_or(0, |m| m.len() as usize);

        d.crash_and_restart();
        // The API answers once adoption is done (adoption comes before the loop).
        wait_for("the restarted daemon", Duration::from_secs(30), || {
            d.ctl(&["list"]).status.success()
        });
        let log = std::fs::read_to_string(&log_file).unwrap();
        let log = &log[log_before.min(log.len())..];
        let st = states(&d, n).expect("the states of every unit");
        for i in 0..n {
            let name = unit(i);
            let adoptions = log
                .lines()
                .filter(|l| {
                    l.contains("adopted: still running") && l.contains(&format!("unit={name}"))
                })
                .count();
            if running.contains(&i) {
                assert_eq!(
                    adoptions, 1,
                    "round {round}: {name} adopted {adoptions} times\n{log}"
                );
                assert_eq!(st[i].0, "active", "round {round}: {name} after adoption");
                assert_eq!(
                    st[i].1,
                    u64::from(pids[i][0]),
                    "round {round}: {name}'s main process after adoption"
                );
            } else {
                assert_eq!(adoptions, 0, "round {round}: {name} was not running\n{log}");
            }
        }
        let leaks: Vec<_> = cgroups(&root)
            .symmetric_difference(&expected_cgroups(&running))
            .cloned()
            .collect();
        assert!(
            leaks.is_empty(),
            "round {round}: cgroups after the restart, off by {leaks:?}"
        );

        // The storm again, to the end: every service runs, each started once.
        let mut client = storm(&d, n);
        let _ = client.wait();
        wait_for("every service active", Duration::from_secs(60), || {
            states(&d, n).is_some_and(|s| s.iter().all(|(a, p)| a == "active" && *p > 0))
        });
        let st = states(&d, n).expect("the states of every unit");
        for i in 0..n {
            let name = unit(i);
            let now = procs(&cg(i));
            assert_eq!(now.len(), 1, "round {round}: {name} runs {now:?}");
            let starts =
                std::fs::read_to_string(out.path().join(format!("{i}.starts"))).unwrap_or_default();
            assert_eq!(
                starts.lines().collect::<Vec<_>>(),
                [now[0].to_string()],
                "round {round}: {name} started more than once, or not as its process"
            );
            assert_eq!(
                st[i].1,
                u64::from(now[0]),
                "round {round}: {name}'s main PID"
            );
            if running.contains(&i) {
                assert_eq!(
                    now, pids[i],
                    "round {round}: {name} restarted after adoption"
                );
            }
        }
        let all: BTreeSet<usize> = (0..n).collect();
        assert_eq!(cgroups(&root), expected_cgroups(&all), "round {round}");

        // Every service stopped: nothing of them is left.
        let names: Vec<String> = (0..n).map(unit).collect();
        let mut args = vec!["stop", "--"];
        args.extend(names.iter().map(String::as_str));
        let stop = d.ctl(&args);
        assert!(
            stop.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&stop.stderr)
        );
        let none = expected_cgroups(&BTreeSet::new());
        wait_for("the units' cgroups to go", Duration::from_secs(30), || {
            cgroups(&root) == none
        });
    }
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    eprintln!(
        "{kills} kills in start storms of {n} services ({mid_storm} in the middle of the storm): \
         every service adopted once, none started twice, no cgroup leaked; {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
