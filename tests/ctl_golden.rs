//! Golden tests of what people read: `corralctl --help`, and `list` and `status` against a real
//! corrald, with volatile fields masked (PIDs, times, usage figures, the test's own paths).
//! Files under `tests/golden/`; refresh with `UPDATE_GOLDEN=1 cargo test --test ctl_golden`.
//!
//! The output must not depend on the host: a usage line appears only where there is a figure
//! or a limit, and whether the kernel gives a figure depends on the controllers the host
//! enables. So the running unit here has a limit in every usage line (its line always shows),
//! and the other units have no cgroup (no figures anywhere).

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/golden.rs"]
mod golden;
#[path = "common/skip.rs"]
mod skip;

use std::time::Duration;

use daemon::{Daemon, wait_for};
use golden::mask;

const TEST: &str = "ctl_golden";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_matches_golden() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corralctl"))
        .arg("--help")
        .output()
        .expect("running corralctl");
    assert!(out.status.success());
    golden::check("tests/golden/help.txt", &text(&out.stdout), TEST);
}

#[test]
fn list_and_status_match_golden() {
    let units = [
        (
            "apps.slice.toml",
            "[unit]\ndescription = \"Applications\"\n[resources]\nmemory-max = \"256M\"\n\
             pids-max = 128\ncpu-weight = 50\nio-weight = 50\n"
                .to_string(),
        ),
        (
            "web.service.toml",
            "[unit]\ndescription = \"Web server\"\nslice = \"apps.slice\"\nautostart = true\n\
             [service]\nexec = [\"/bin/sh\", \"-c\", \"echo listening; exec sleep 1000\"]\n\
             [resources]\nmemory-max = \"512M\"\npids-max = 64\ncpu-weight = 200\n\
             io-weight = 300\n"
                .to_string(),
        ),
        (
            "fail.service.toml",
            "[unit]\ndescription = \"Always fails\"\nautostart = true\n\
             [service]\nexec = [\"/bin/false\"]\n"
                .to_string(),
        ),
        (
            "idle.service.toml",
            "[unit]\ndescription = \"Never started\"\n[service]\nexec = [\"/bin/true\"]\n"
                .to_string(),
        ),
        (
            "broken.service.toml",
            "[service]\nexec = [\"/bin/true\"]\nrestart = \"sometimes\"\n".to_string(),
        ),
    ];
    let Some(d) = Daemon::start("golden", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    wait_for("web.service running", Duration::from_secs(10), || {
        text(&d.ctl(&["status", "web.service"]).stdout).contains("Active: active (running)")
    });
    wait_for("fail.service failed", Duration::from_secs(10), || {
        text(&d.ctl(&["status", "fail.service"]).stdout).contains("Active: failed")
    });
    wait_for("web.service's log line", Duration::from_secs(10), || {
        text(&d.ctl(&["logs", "web.service"]).stdout).contains("listening")
    });
    // The shell has printed its line and exec'd: one process, `sleep 1000`.
    wait_for(
        "web.service's shell to exec",
        Duration::from_secs(10),
        || {
            text(&d.ctl(&["status", "web.service"]).stdout)
                .lines()
                .any(|l| l.trim_start().split_once(' ').map(|(_, cmd)| cmd) == Some("sleep 1000"))
        },
    );

    // The test's paths: the unit directory (in load errors) and the cgroup root.
    let root_name = d
        .root
        .0
        .file_name()
        .and_then(|n| n.to_str())
        .expect("cgroup root name")
        .to_string();
    let dir = d.out_dir().display().to_string();
    let replace = [
        (dir.as_str(), "<dir>"),
        (&*format!("/{root_name}/"), "/<root>/"),
    ];

    let out = d.ctl(&["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    golden::check(
        "tests/golden/list.txt",
        &mask(&text(&out.stdout), &replace),
        TEST,
    );

    let out = d.ctl(&[
        "status",
        "web.service",
        "apps.slice",
        "fail.service",
        "idle.service",
        "broken.service",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    golden::check(
        "tests/golden/status.txt",
        &mask(&text(&out.stdout), &replace),
        TEST,
    );
}
