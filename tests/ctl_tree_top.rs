//! `corralctl tree` and `corralctl top` against a real corrald on the host: the slice tree with
//! states and processes (PIDs checked against the cgroups, then masked), a subtree, the errors
//! for unknown and invalid names; `top` refreshing `-n` times, the CPU-heavy unit first.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/golden.rs"]
mod golden;
#[path = "common/skip.rs"]
mod skip;

use std::time::{Duration, Instant};

use daemon::{Daemon, wait_for};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn units() -> Vec<(&'static str, String)> {
    vec![
        (
            "web.service.toml",
            "[unit]\nslice = \"apps.slice\"\nautostart = true\n\
             [service]\nexec = [\"/bin/sleep\", \"1000\"]\n"
                .to_string(),
        ),
        // In a slice that has no file: it exists implicitly, under apps.slice.
        (
            "job.service.toml",
            "[unit]\nslice = \"apps-batch.slice\"\nautostart = true\n\
             [service]\nexec = [\"/bin/sleep\", \"1001\"]\n"
                .to_string(),
        ),
        (
            "busy.service.toml",
            "[unit]\nautostart = true\n\
             [service]\nexec = [\"/bin/sh\", \"-c\", \"while :; do :; done\"]\n"
                .to_string(),
        ),
        (
            "idle.service.toml",
            "[service]\nexec = [\"/bin/true\"]\n".to_string(),
        ),
    ]
}

fn running(d: &Daemon) -> bool {
    let list = text(&d.ctl(&["list"]).stdout);
    ["web.service", "job.service", "busy.service"]
        .iter()
        .all(|u| {
            list.lines()
                .any(|l| l.starts_with(&format!("{u} ")) && l.contains(" running"))
        })
}

#[test]
fn tree_draws_slices_units_and_processes() {
    let Some(d) = Daemon::start("tree", &units()) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    wait_for("the services to run", Duration::from_secs(10), || {
        running(&d)
    });

    let out = d.ctl(&["tree"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tree = text(&out.stdout);
    // The PIDs shown are the processes in the units' cgroups.
    let procs = |rel: &str| {
        std::fs::read_to_string(d.root.0.join(rel).join("cgroup.procs")).unwrap_or_default()
    };
    for (cg, cmd) in [
        ("apps.slice/web.service", "/bin/sleep 1000"),
        ("apps.slice/apps-batch.slice/job.service", "/bin/sleep 1001"),
    ] {
        let pid = procs(cg);
        let pid = pid.trim();
        assert!(
            tree.contains(&format!("─{pid} {cmd}\n")),
            "{cg}: pid {pid} not in\n{tree}"
        );
    }
    let root_name = d.root.0.file_name().unwrap().to_str().unwrap().to_string();
    let masked = golden::mask(&tree, &[(&format!("/{root_name}"), "/<root>")]);
    let expected = "\
Control group /<root>:
-.slice active
├─apps.slice active
│ ├─apps-batch.slice active
│ │ └─job.service active (running)
│ │   └─<pid> /bin/sleep 1001
│ └─web.service active (running)
│   └─<pid> /bin/sleep 1000
└─system.slice active
  ├─busy.service active (running)
  │ └─<pid> /bin/sh -c while :; do :; done
  └─idle.service inactive (dead)
";
    assert_eq!(masked, expected, "\n{tree}");

    // A subtree, and the root slice by name (a name starting with a dash).
    let out = d.ctl(&["tree", "apps-batch.slice"]);
    let sub = golden::mask(&text(&out.stdout), &[(&format!("/{root_name}"), "/<root>")]);
    assert_eq!(
        sub,
        "Control group /<root>/apps.slice/apps-batch.slice:\napps-batch.slice active\n\
         └─job.service active (running)\n  └─<pid> /bin/sleep 1001\n"
    );
    let out = d.ctl(&["tree", "-.slice"]);
    assert_eq!(text(&out.stdout), tree);

    // The daemon's own errors for names it doesn't know or can't accept.
    let out = d.ctl(&["tree", "nope.service"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("org.corral1.Error.NoSuchUnit"),
        "{}",
        text(&out.stderr)
    );
    let out = d.ctl(&["tree", "../x.service"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("org.corral1.Error.InvalidUnit"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn top_refreshes_n_times_with_the_busiest_unit_first() {
    let Some(d) = Daemon::start("top", &units()) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    wait_for("the services to run", Duration::from_secs(10), || {
        running(&d)
    });

    let start = Instant::now();
    let out = d.ctl(&["top", "--delay", "0.3", "-n", "2"]);
    let took = start.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Two frames, each one delay after the one before.
    assert!(took >= Duration::from_millis(600), "{took:?}");
    let all = text(&out.stdout);
    let frames: Vec<&str> = all.split("\n\n").collect();
    assert_eq!(frames.len(), 2, "{all}");
    for frame in frames {
        let lines: Vec<&str> = frame.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            ["UNIT", "TASKS", "%CPU", "MEMORY", "INPUT/s", "OUTPUT/s"]
        );
        let names: Vec<&str> = lines[1..]
            .iter()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        // Only live units: not the one never started.
        assert!(!names.contains(&"idle.service"), "{frame}");
        for unit in ["web.service", "job.service", "busy.service", "apps.slice"] {
            assert!(names.contains(&unit), "{unit} missing:\n{frame}");
        }
        let cpu = |unit: &str| -> f64 {
            let row = lines[1..]
                .iter()
                .find(|l| l.split_whitespace().next() == Some(unit))
                .unwrap_or_else(|| panic!("{unit}:\n{frame}"));
            row.split_whitespace()
                .nth(2)
                .and_then(|c| c.parse().ok())
                .unwrap_or_else(|| panic!("no CPU figure for {unit}:\n{frame}"))
        };
        // A shell spinning on one CPU against two sleeps (generous: the host may be busy).
        assert!(cpu("busy.service") > 10.0, "{frame}");
        assert!(cpu("web.service") < 5.0, "{frame}");
        let position = |unit: &str| names.iter().position(|n| *n == unit).unwrap();
        assert!(
            position("busy.service") < position("web.service"),
            "{frame}"
        );
        assert!(
            position("busy.service") < position("job.service"),
            "{frame}"
        );
    }

    let out = d.ctl(&["top", "-n", "0"]);
    assert!(!out.status.success());
    let out = d.ctl(&["top", "--delay", "0"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("more than zero"),
        "{}",
        text(&out.stderr)
    );
}
