//! The attacker's test of file modes (DESIGN §4): corrald started with a umask of 000 — which
//! used to make `RUNTIME/units` world-writable, so that any user could add a drop-in with
//! `exec` — creates every file and directory with its own mode: directories 0755, the state
//! file and transient units 0600, drop-ins 0644, logs 0640, the private socket 0600. Then
//! uid 65534 (through `setpriv`) tries to add a drop-in or a unit wherever corrald looks for
//! them, and to read what is private, and fails each time.
//!
//! Needs root, the host's cgroup2 mount and `setpriv`.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use daemon::wait_for;

const SETPRIV: &str = "/usr/bin/setpriv";

/// Every file and directory below `dir`, with its mode (`lstat`).
fn walk(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let is_dir = meta.is_dir();
        out.push((path.clone(), meta));
        if is_dir {
            walk(&path, out);
        }
    }
}

/// The mode corrald must have given `path` (relative to the test's directory), by what it is.
fn expected(rel: &Path, meta: &std::fs::Metadata) -> Option<u32> {
    let name = rel.file_name()?.to_str()?;
    let parent = rel.parent()?;
    let in_dropin_dir = parent
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".d"));
    if meta.is_dir() {
        return Some(0o755);
    }
    if meta.file_type().is_socket() {
        // The notify socket is for every service's user; the API's is root's.
        return Some(if name == "notify" { 0o777 } else { 0o600 });
    }
    if rel == Path::new("run/state") {
        return Some(0o600);
    }
    if in_dropin_dir && name.ends_with(".toml") {
        return Some(0o644);
    }
    if parent == Path::new("run/units") && name.ends_with(".toml") {
        return Some(0o600);
    }
    if parent == Path::new("log") && name.ends_with(".log") {
        return Some(0o640);
    }
    None
}

/// Runs `script` with `sh -c` as uid/gid 65534; its exit status and output.
fn as_nobody(script: &str) -> (bool, String) {
    let out = Command::new(SETPRIV)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/sh",
            "-c",
        ])
        .arg(script)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_umask_of_000_leaves_nothing_open_to_other_users() {
    if !Path::new(SETPRIV).exists() || !nix::unistd::geteuid().is_root() {
        skip::skipped("needs root and setpriv to become uid 65534");
        return;
    }
    let units = [
        (
            "talker.service.toml",
            "[unit]\nautostart = true\n[service]\n\
             exec = [\"/bin/sh\", \"-c\", \"echo hello; exec sleep 1000\"]\n"
                .to_string(),
        ),
        (
            "web.service.toml",
            "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
        ),
    ];
    let Some(d) = daemon::Daemon::start_with_umask("umask", &units, 0o000) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let top = d.out_dir().to_path_buf();
    // Nothing above corrald's own files keeps uid 65534 out: only their modes do.
    for dir in [top.as_path(), &top.join("units")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ctl = |args: &[&str]| {
        let out = d.ctl(args);
        assert!(
            out.status.success(),
            "corralctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // Everything corrald writes: a transient unit, runtime and persistent limits, an
    // enable drop-in, the state file (web running), a service's log.
    ctl(&["start", "web.service"]);
    ctl(&[
        "run",
        "--name",
        "passing.service",
        "--",
        "/bin/sleep",
        "1000",
    ]);
    ctl(&["limit", "web.service", "pids-max=100", "--runtime"]);
    ctl(&["limit", "web.service", "memory-high=64M"]);
    ctl(&["enable", "web.service"]);
    let log = top.join("log/talker.service.log");
    wait_for("talker's log", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("hello"))
    });
    assert!(top.join("run/state").exists());

    // Every file and directory corrald made (its runtime and log directories, the drop-in
    // directory in the unit directory), with the mode it must have.
    let mut entries = Vec::new();
    for dir in ["run", "log", "units/web.service.d"] {
        let dir = top.join(dir);
        entries.push((dir.clone(), std::fs::symlink_metadata(&dir).unwrap()));
        walk(&dir, &mut entries);
    }
    let mut wrong = Vec::new();
    for (path, meta) in &entries {
        let rel = path.strip_prefix(&top).unwrap();
        let mode = meta.mode() & 0o7777;
        match expected(rel, meta) {
            Some(want) if want == mode => {}
            Some(want) => wrong.push(format!("{}: {mode:04o}, not {want:04o}", rel.display())),
            None => wrong.push(format!(
                "{}: {mode:04o}, not expected at all",
                rel.display()
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "with a umask of 000:\n{}",
        wrong.join("\n")
    );
    for want in [
        "run/units/passing.service.toml",
        "units/web.service.d/50-limits.toml",
        "units/web.service.d/50-autostart.toml",
    ] {
        assert!(
            entries.iter().any(|(p, _)| p.ends_with(want)),
            "{want} was not written"
        );
    }
    assert!(
        entries
            .iter()
            .any(|(p, _)| p.starts_with(top.join("run/units/web.service.d"))
                && p.extension().is_some_and(|e| e == "toml")),
        "the runtime limits were not written"
    );

    // The attacker: a drop-in or a unit of their own wherever corrald reads them, and a look
    // at what is private.
    let evil = "[service]\nexec = [\"/bin/sh\", \"-c\", \"id > /tmp/owned\"]\n";
    let attempts = [
        format!(
            "mkdir -p {r}/web.service.d && printf '{evil}' > {r}/web.service.d/99-evil.toml",
            r = top.join("run/units").display()
        ),
        format!(
            "printf '{evil}' > {}/99-evil.toml",
            top.join("run/units/passing.service.d").display()
        ),
        format!(
            "printf '{evil}' > {}/evil.service.toml",
            top.join("run/units").display()
        ),
        format!(
            "printf '{evil}' > {}/99-evil.toml",
            top.join("units/web.service.d").display()
        ),
        format!(
            "cat {}",
            top.join("run/units/passing.service.toml").display()
        ),
        format!("cat {}", top.join("run/state").display()),
        format!("cat {}", log.display()),
        format!("printf x >> {}", log.display()),
    ];
    for attempt in &attempts {
        let (ok, out) = as_nobody(attempt);
        assert!(!ok, "uid 65534 succeeded: {attempt}\n{out}");
    }
    // Reload: nothing of the attacker's was read.
    ctl(&["reload"]);
    let out = d.ctl(&["cat", "web.service"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("owned"), "{text}");
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
}
