//! The Debian package: `scripts/build-deb` builds it (release binaries, generated completions
//! and man pages, `cargo deb --no-build`), and this test reads what is inside with `dpkg-deb`:
//! every path a user relies on, the control fields, the maintainer scripts (corrald is never
//! started, stopped or restarted by dpkg: stopping it stops every service it manages), and the
//! files themselves (the unit is a delegated notify service, the binaries run, the man pages
//! and completions are the real generated ones).
//!
//! The release build goes to the same target directory this test was built in. Skipped, with
//! the reason printed, only when cargo-deb is not installed (`scripts/test` installs it).

#[path = "common/layout.rs"]
mod layout;
#[path = "common/skip.rs"]
mod skip;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target directory of this build (`<target>/debug/corralctl` → `<target>`).
fn target_dir() -> PathBuf {
    let ctl = Path::new(env!("CARGO_BIN_EXE_corralctl"));
    ctl.parent()
        .and_then(Path::parent)
        .expect("corralctl lives in <target>/<profile>/")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn cargo_deb_installed() -> bool {
    Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Every example unit file, as the package path it must be installed at.
fn example_units() -> Vec<String> {
    fn walk(dir: &Path, rel: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("units/") {
            let entry = entry.expect("units/ entry");
            let path = entry.path();
            let rel = rel.join(entry.file_name());
            if path.is_dir() {
                walk(&path, &rel, out);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(format!(
                    "/usr/share/doc/corral/examples/units/{}",
                    rel.display()
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("units"), Path::new(""), &mut out);
    assert!(out.len() >= 5, "units/ has the example units: {out:?}");
    out
}

#[test]
fn the_deb_installs_everything_it_should() {
    if !cargo_deb_installed() {
        skip::skipped(
            "cargo-deb is not installed \
             (cargo install cargo-deb --locked --version 3.8.0; scripts/test does it)",
        );
        return;
    }

    let started = Instant::now();
    let stdout = run(Command::new(repo().join("scripts/build-deb"))
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", target_dir()));
    println!("scripts/build-deb took {:.0?}", started.elapsed());
    let deb = PathBuf::from(stdout.lines().last().expect("build-deb prints the .deb"));
    assert!(deb.is_file(), "{} is not a file", deb.display());
    assert!(
        deb.starts_with(target_dir().join("debian")),
        "{} is not under the target directory",
        deb.display()
    );

    // ---- what is in it ----
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    println!("{listing}");
    // `-rwxr-xr-x root/root 123 2026-01-01 00:00 ./usr/bin/corrald`: mode, owner, path.
    let mut entries = std::collections::BTreeMap::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 6, "odd dpkg-deb -c line: {line}");
        let path = fields[5].trim_start_matches('.').to_string();
        entries.insert(path, (fields[0].to_string(), fields[1].to_string()));
    }
    let paths: BTreeSet<&str> = entries.keys().map(String::as_str).collect();

    let mut expected: Vec<String> = [
        "/usr/bin/corrald",
        "/usr/bin/corralctl",
        "/usr/lib/systemd/system/corrald.service",
        "/usr/lib/systemd/system/corrald-recover.service",
        "/usr/lib/systemd/user/corrald.service",
        "/usr/share/dbus-1/system.d/org.corral1.conf",
        "/usr/share/man/man1/corralctl.1.gz",
        "/usr/share/man/man1/corralctl-status.1.gz",
        "/usr/share/man/man8/corrald.8.gz",
        "/usr/share/bash-completion/completions/corralctl",
        "/usr/share/zsh/vendor-completions/_corralctl",
        "/usr/share/fish/vendor_completions.d/corralctl.fish",
        "/usr/share/doc/corral/copyright",
        "/etc/corral/units/",
        "/etc/corral/units/README",
    ]
    .map(String::from)
    .to_vec();
    expected.extend(example_units());
    let missing: Vec<&String> = expected
        .iter()
        .filter(|p| !paths.contains(p.as_str()))
        .collect();
    assert!(missing.is_empty(), "missing from the .deb: {missing:?}");

    for bin in ["/usr/bin/corrald", "/usr/bin/corralctl"] {
        assert_eq!(entries[bin].0, "-rwxr-xr-x", "{bin} mode");
    }
    for (path, (mode, owner)) in &entries {
        assert!(
            ["0/0", "root/root"].contains(&owner.as_str()),
            "{path} owner {owner}"
        );
        assert!(
            ["-rw-r--r--", "-rwxr-xr-x", "drwxr-xr-x"].contains(&mode.as_str()),
            "{path}: mode {mode}"
        );
    }
    // Nothing of the build tree or of a developer's machine slips in.
    for path in &paths {
        assert!(
            path.starts_with("/usr/")
                || path.starts_with("/etc/corral/")
                || *path == "/"
                || *path == "/etc/",
            "unexpected path in the .deb: {path}"
        );
    }

    // ---- control fields ----
    let field = |name: &str| run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name));
    assert_eq!(field("Package").trim(), "corral");
    assert_eq!(
        field("Version").trim(),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(field("Section").trim(), "admin");
    assert!(
        field("Depends").contains("libc6"),
        "Depends: {}",
        field("Depends")
    );
    assert!(field("Recommends").contains("dbus"));
    assert!(!field("Maintainer").trim().is_empty());
    assert!(field("Description").contains("cgroup v2"));

    // ---- maintainer scripts ----
    let tmp = tempfile::tempdir().expect("tempdir");
    let control = tmp.path().join("DEBIAN");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap_or_default();
    assert!(
        conffiles.lines().any(|l| l == "/etc/corral/units/README"),
        "conffiles: {conffiles}"
    );
    let script = |name: &str| std::fs::read_to_string(control.join(name)).unwrap_or_default();
    let (postinst, prerm) = (script("postinst"), script("prerm"));
    assert!(postinst.contains("daemon-reload"), "postinst: {postinst}");
    // An upgrade re-executes a running corrald in place.
    assert!(
        postinst.contains("corralctl daemon-reexec"),
        "postinst: {postinst}"
    );
    for (name, text) in [("postinst", &postinst), ("prerm", &prerm)] {
        // Never started on install nor restarted on upgrade; stopped only on removal.
        for word in [
            "deb-systemd-invoke start",
            "deb-systemd-invoke restart",
            "try-restart",
        ] {
            assert!(!text.contains(word), "{name} has {word}:\n{text}");
        }
    }
    if prerm.contains("deb-systemd-invoke stop") {
        assert!(
            prerm.contains("\"$1\" = remove"),
            "prerm stops on upgrade:\n{prerm}"
        );
    }

    // ---- the files themselves ----
    let root = tmp.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let read = |p: &str| {
        std::fs::read_to_string(root.join(p.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    // Each unit file has these lines, exactly.
    let units: [(&str, &[&str]); 3] = [
        (
            "/usr/lib/systemd/system/corrald.service",
            &[
                "Type=notify",
                "NotifyAccess=main",
                "Delegate=yes",
                "KillMode=process",
                "ExecStart=/usr/bin/corrald --system",
                "ExecReload=/usr/bin/corralctl reload",
                "OOMPolicy=continue",
                "Restart=on-failure",
                "OnFailure=corrald-recover.service",
            ],
        ),
        (
            "/usr/lib/systemd/system/corrald-recover.service",
            &[
                "Type=notify",
                "KillMode=process",
                "Conflicts=corrald.service",
                "ExecStart=/usr/bin/corrald --system --cgroup-root /sys/fs/cgroup/system.slice/corrald.service",
            ],
        ),
        (
            "/usr/lib/systemd/user/corrald.service",
            &[
                "ExecStart=/usr/bin/corrald --user",
                "Delegate=yes",
                "KillMode=process",
            ],
        ),
    ];
    for (path, lines) in units {
        let text = read(path);
        for line in lines {
            assert!(text.lines().any(|l| l == *line), "{path} lacks {line}");
        }
    }
    // No bus activation file: corrald is the machine's resource manager, started with the
    // system (`systemctl enable --now corrald`) and joining the bus when it can; a call to
    // org.corral1 must not start the managed tree as a side effect.
    assert!(!root.join("usr/share/dbus-1/system-services").exists());
    let policy = read("/usr/share/dbus-1/system.d/org.corral1.conf");
    assert!(policy.contains("<allow own=\"org.corral1\"/>"), "{policy}");

    // The packaged binaries run, and what was generated from them is their own.
    for bin in ["corrald", "corralctl"] {
        let version = run(Command::new(root.join("usr/bin").join(bin)).arg("--version"));
        assert!(
            version.contains(env!("CARGO_PKG_VERSION")),
            "{bin} --version: {version}"
        );
    }
    // The release link's layout (build.rs): relocations as DT_RELR, and — when the recorded
    // order (`link/corrald.ld`, opt-in for the packaging) is there and matches this code — the
    // functions that run first packed at the start. A missing or stale order costs idle memory,
    // not correctness: reported, never a failure.
    let sections = run(Command::new("readelf")
        .arg("-SW")
        .arg(root.join("usr/bin/corrald")));
    match layout::ordered_code_bytes(&sections) {
        Some(bytes) => println!(
            "corrald's recorded code order places {} KiB (scripts/symbol-order recorded ~1 MB; \
             far less means the order is stale)",
            bytes / 1024
        ),
        None => println!(
            "corrald has no ordered code section: link/corrald.ld is missing or matched nothing \
             (run scripts/symbol-order)"
        ),
    }
    assert!(sections.contains(" .relr.dyn "), "{sections}");
    let bash = read("/usr/share/bash-completion/completions/corralctl");
    assert!(
        bash.contains("corralctl") && bash.contains("status"),
        "bash completion"
    );
    run(Command::new("bash")
        .arg("-n")
        .arg(root.join("usr/share/bash-completion/completions/corralctl")));
    assert!(read("/usr/share/zsh/vendor-completions/_corralctl").starts_with("#compdef corralctl"));
    assert!(
        read("/usr/share/fish/vendor_completions.d/corralctl.fish")
            .contains("complete -c corralctl")
    );
    for (page, title) in [
        ("/usr/share/man/man1/corralctl.1.gz", ".TH corralctl 1"),
        ("/usr/share/man/man8/corrald.8.gz", ".TH CORRALD 8"),
    ] {
        let text = run(Command::new("gzip")
            .arg("-dc")
            .arg(root.join(page.trim_start_matches('/'))));
        assert!(
            text.contains(title),
            "{page} is not the expected page:\n{text}"
        );
    }
    // corrald(8) is written by hand: it must document every option the daemon has.
    let corrald_8 = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.join("usr/share/man/man8/corrald.8.gz")))
    .replace("\\-", "-");
    let help = run(Command::new(root.join("usr/bin/corrald")).arg("--help"));
    let options: BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .collect();
    assert!(options.contains("--cgroup-root"), "corrald --help: {help}");
    for option in options {
        assert!(
            corrald_8
                .lines()
                .any(|l| l.starts_with(".B") && l.split([' ', ',']).any(|w| w == option)),
            "corrald(8) doesn't document {option} (packaging/corrald.8)"
        );
    }
    for unit in example_units() {
        let rel = unit.trim_start_matches("/usr/share/doc/corral/examples/");
        assert_eq!(
            read(&unit),
            std::fs::read_to_string(repo().join(rel)).expect("source unit"),
            "{unit} differs from {rel}"
        );
    }
}
