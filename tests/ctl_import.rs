//! `corralctl import` as a user runs it: real unit files that Debian's packages install
//! (`tests/corpus/systemd/`, and `/lib/systemd/system` when present) converted and then checked
//! with `corralctl verify`; bad input that must end in a located error and a non-zero exit,
//! never a panic or a hang.
//!
//! The corpus figures in `tests/corpus/systemd/README.md` (between the `results` markers) are
//! computed here: refresh with `UPDATE_GOLDEN=1 cargo test --test ctl_import` and review the
//! diff.

#[path = "common/golden.rs"]
mod golden;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

fn corralctl(args: &[&str], files: &[PathBuf]) -> Output {
    Command::cargo_bin("corralctl")
        .unwrap()
        .args(args)
        .args(files)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The unit files (not drop-ins) of a directory.
fn unit_files(dir: &Path, kinds: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| kinds.contains(&e))
        })
        .collect();
    files.sort();
    files
}

/// What importing a set of files gave.
struct Run {
    converted: Vec<PathBuf>,
    /// File and error line.
    failed: Vec<(String, String)>,
    /// `[Section] Key` → (count, the first message seen).
    warnings: BTreeMap<String, (usize, String)>,
    out_dir: tempfile::TempDir,
}

/// Imports `files` into a fresh directory, then verifies everything written there as one set.
fn import_and_verify(files: &[PathBuf]) -> Run {
    let out_dir = tempfile::tempdir().unwrap();
    let out = corralctl(&["import", "-o", out_dir.path().to_str().unwrap()], files);
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let converted: Vec<PathBuf> = text(&out.stdout).lines().map(PathBuf::from).collect();
    let mut failed = Vec::new();
    let mut warnings: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for line in stderr.lines() {
        if let Some((file, rest)) = line.split_once(": warning: ") {
            let _ = file;
            let (key, why) = rest.split_once("]").map_or((rest, ""), |(s, r)| {
                let (k, w) = r.trim_start().split_once(": ").unwrap_or((r, ""));
                (&rest[..s.len() + 1 + 1 + k.len()], w)
            });
            let e = warnings
                .entry(key.to_string())
                .or_insert((0, why.to_string()));
            e.0 += 1;
        } else if line.contains(": error: ") {
            let (file, err) = line.split_once(": error: ").unwrap();
            let name = Path::new(file.split(':').next().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            failed.push((name, err.to_string()));
        }
    }
    assert_eq!(
        converted.len() + failed.len(),
        files.len(),
        "every file is converted or fails with an error:\n{stderr}"
    );
    assert_eq!(out.status.success(), failed.is_empty(), "{stderr}");
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with(&format!(
            "{} of {} files converted",
            converted.len(),
            files.len()
        )),
        "{summary}"
    );
    if !converted.is_empty() {
        let verify = corralctl(&["verify"], &converted);
        assert!(
            verify.status.success(),
            "corralctl verify refused the output:\n{}{}",
            text(&verify.stdout),
            text(&verify.stderr)
        );
    }
    Run {
        converted,
        failed,
        warnings,
        out_dir,
    }
}

fn percent(n: usize, of: usize) -> String {
    format!("{:.1} %", n as f64 * 100.0 / of as f64)
}

#[test]
fn debian_units_in_the_corpus_import_and_verify() {
    let dir = golden::repo_path("tests/corpus/systemd");
    let services = unit_files(&dir, &["service"]);
    let slices = unit_files(&dir, &["slice"]);
    assert!(services.len() >= 50, "{}", services.len());
    let all: Vec<PathBuf> = services.iter().chain(&slices).cloned().collect();
    let run = import_and_verify(&all);
    let ok_services = services.len()
        - run
            .failed
            .iter()
            .filter(|(f, _)| f.ends_with(".service"))
            .count();
    assert!(
        ok_services * 10 >= services.len() * 9,
        "{ok_services} of {} services converted",
        services.len()
    );
    // The drop-ins beside a unit are merged in.
    let rc = std::fs::read_to_string(run.out_dir.path().join("rc-local.service.toml")).unwrap();
    assert!(rc.contains("rc-local.service.d/debian.conf"), "{rc}");

    let mut report = String::new();
    report.push_str(&format!(
        "{ok_services} of {} service files import with no error ({}), and {} of {} slices. \
         Every converted file passes `corralctl verify`, as one set.\n\n",
        services.len(),
        percent(ok_services, services.len()),
        slices.len()
            - run
                .failed
                .iter()
                .filter(|(f, _)| f.ends_with(".slice"))
                .count(),
        slices.len(),
    ));
    report.push_str("Not converted:\n\n");
    for (file, err) in &run.failed {
        report.push_str(&format!("- `{file}`: {err}\n"));
    }
    let total: usize = run.warnings.values().map(|(n, _)| n).sum();
    report.push_str(&format!(
        "\n{total} warnings in all. The commonest (warnings per key, with the first message):\n\n\
         | count | key | why |\n|---:|---|---|\n"
    ));
    let mut common: Vec<(&String, &(usize, String))> = run.warnings.iter().collect();
    common.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    for (key, (n, why)) in common.iter().take(20) {
        let why = match why.char_indices().nth(100) {
            Some((i, _)) => format!("{}…", &why[..i]),
            None => why.clone(),
        };
        report.push_str(&format!(
            "| {n} | `{key}` | {} |\n",
            why.replace('|', "\\|")
        ));
    }
    check_readme_block(&report);
}

/// Compares the block between the result markers of the corpus README (or rewrites it).
fn check_readme_block(actual: &str) {
    const START: &str =
        "<!-- results: refreshed by `UPDATE_GOLDEN=1 cargo test --test ctl_import` -->\n";
    const END: &str = "<!-- /results -->";
    let path = golden::repo_path("tests/corpus/systemd/README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = readme.split_once(START).expect("results start marker");
    let (old, tail) = rest.split_once(END).expect("results end marker");
    if golden::updating() {
        std::fs::write(&path, format!("{head}{START}{actual}{END}{tail}")).unwrap();
    } else {
        assert!(
            old == actual,
            "the corpus figures changed:\n{}\nrefresh with UPDATE_GOLDEN=1 cargo test --test ctl_import",
            golden::diff(old, actual)
        );
    }
}

#[test]
fn this_machines_own_units_import_and_verify() {
    let dir = Path::new("/lib/systemd/system");
    if !dir.is_dir() {
        println!("no /lib/systemd/system here");
        return;
    }
    let services = unit_files(dir, &["service"]);
    let masked = services
        .iter()
        .filter(|p| std::fs::read_link(p).is_ok_and(|t| t == Path::new("/dev/null")))
        .count();
    let run = import_and_verify(&services);
    println!(
        "/lib/systemd/system: {} of {} services converted ({}); {masked} are masked; not converted:",
        run.converted.len(),
        services.len(),
        percent(run.converted.len(), services.len()),
    );
    for (f, e) in &run.failed {
        println!("  {f}: {e}");
    }
    let units = services.len() - masked;
    assert!(
        run.converted.len() * 10 >= units * 9,
        "{} of {units} unmasked services converted",
        run.converted.len()
    );
}

/// A directory of test files.
fn dir_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let p = d.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    d
}

/// Runs import on one file and returns (success, stdout, stderr).
fn import_one(path: &Path) -> (bool, String, String) {
    let out = corralctl(&["import"], &[path.to_path_buf()]);
    let err = text(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    (out.status.success(), text(&out.stdout), err)
}

#[test]
fn bad_input_is_a_located_error_and_a_failure() {
    let ten_mb = {
        let mut b = b"[Service]\nExecStart=/bin/true\nDescription=".to_vec();
        b.extend(std::iter::repeat_n(b'x', 10 << 20));
        b.push(b'\n');
        b
    };
    let d = dir_with(&[
        ("prose.service", b"This is a letter, not a unit.\n"),
        ("junk.service", b"\x7fELF\x02\x01\x01\0\0\0\0\0\x03\0>\0"),
        ("latin1.service", b"[Unit]\nDescription=caf\xe9\n"),
        (
            "section.service",
            b"[Unit]\nDescription=x\n[Socket]\nListenStream=80\n",
        ),
        (
            "noequals.service",
            b"[Service]\nExecStart=/bin/true\nRestart\n",
        ),
        ("long.service", &ten_mb),
        ("empty.service", b""),
        ("noexec.service", b"[Unit]\nDescription=nothing to run\n"),
        (
            "quote.service",
            b"[Service]\nExecStart=/bin/echo \"unterminated\n",
        ),
        ("web.socket", b"[Socket]\nListenStream=80\n"),
    ]);
    let cases: &[(&str, &str)] = &[
        (
            "prose.service",
            "prose.service:1: error: \"This is a letter, not a unit.\" is not a directive: it has no \"=\"",
        ),
        (
            "junk.service",
            "junk.service:1: error: contains a NUL byte: this is not a text file",
        ),
        (
            "latin1.service",
            "latin1.service:2: error: is not valid UTF-8 (at byte 16): this is not a unit file",
        ),
        (
            "section.service",
            "section.service:3: error: unknown section [Socket]; a .service file has [Unit], [Service], [Install]",
        ),
        (
            "noequals.service",
            "noequals.service:3: error: \"Restart\" is not a directive: it has no \"=\"",
        ),
        (
            "long.service",
            "long.service:3: error: is longer than 1024 KiB, systemd's limit for a line",
        ),
        (
            "empty.service",
            "empty.service: error: not a unit file: it has no [Section]",
        ),
        (
            "noexec.service",
            "noexec.service:1: error: no ExecStart= to run: a corral service runs a command",
        ),
        (
            "web.socket",
            "web.socket: error: \"web.socket\" is not a .service or .slice file",
        ),
    ];
    for (file, want) in cases {
        let (ok, out, err) = import_one(&d.path().join(file));
        assert!(!ok, "{file} converted:\n{out}");
        let want = format!("{}/{want}", d.path().display());
        assert!(
            err.lines().any(|l| l.starts_with(&want)),
            "{file}: want {want:?}\ngot:\n{err}"
        );
        assert!(out.is_empty(), "{out}");
    }
    // An unterminated quote costs its command, and so the unit.
    let (ok, _, err) = import_one(&d.path().join("quote.service"));
    assert!(!ok);
    assert!(
        err.contains("quote.service:2: warning: [Service] ExecStart: unterminated \" quote"),
        "{err}"
    );
}

#[test]
fn files_that_are_not_unit_files() {
    let d = dir_with(&[
        ("ok.service", b"[Service]\nExecStart=/bin/true\n"),
        ("real.service", b"[Service]\nExecStart=/bin/true\n"),
    ]);
    let p = |n: &str| d.path().join(n);
    // A drop-in directory that is there but can't be read (a dangling link).
    symlink("/nonexistent/dir", p("ok.service.d")).unwrap();
    let (ok, _, err) = import_one(&p("ok.service"));
    assert!(!ok);
    assert!(
        err.contains(&format!(
            "{}: error: cannot read drop-in directory: No such file",
            p("ok.service.d").display()
        )),
        "{err}"
    );
    // Masked, missing, a FIFO (read without blocking), a directory.
    symlink("/dev/null", p("masked.service")).unwrap();
    nix::unistd::mkfifo(
        &p("fifo.service"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    std::fs::create_dir(p("dir.service")).unwrap();
    for (file, want) in [
        (
            "masked.service",
            "error: masked (a link to /dev/null): there is nothing to import",
        ),
        (
            "missing.service",
            "error: cannot read: No such file or directory",
        ),
        ("fifo.service", "error: not a regular file"),
        ("dir.service", "error: not a regular file"),
    ] {
        let (ok, _, err) = import_one(&p(file));
        assert!(!ok, "{file}");
        assert!(
            err.contains(&format!("{}: {want}", p(file).display())),
            "{file}:\n{err}"
        );
    }
    // An alias (a link to another unit file) is imported under the name it points to.
    symlink("real.service", p("alias.service")).unwrap();
    let (ok, out, err) = import_one(&p("alias.service"));
    assert!(ok, "{err}");
    assert!(out.starts_with("# real.service: imported from"), "{out}");
    assert!(
        err.contains("alias.service:1: warning: [Unit] Alias: a link to real.service"),
        "{err}"
    );
}

#[test]
fn good_and_bad_together_write_the_good_ones_and_fail() {
    let d = dir_with(&[
        (
            "a.service",
            b"[Service]\nExecStart=/bin/sleep 1\nMemoryMax=1G\nSyslogIdentifier=a\n",
        ),
        ("b.service", b"[Service]\nExecStart\n"),
        ("c.slice", b"[Slice]\nCPUQuota=50%\n"),
    ]);
    let out_dir = d.path().join("out");
    let files = vec![
        d.path().join("a.service"),
        d.path().join("b.service"),
        d.path().join("c.slice"),
    ];
    let out = corralctl(&["import", "-o", out_dir.to_str().unwrap()], &files);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}\n{}\n",
            out_dir.join("a.service.toml").display(),
            out_dir.join("c.slice.toml").display()
        )
    );
    assert!(
        err.ends_with("2 of 3 files converted, 1 warning\n"),
        "{err}"
    );
    // Only warnings: exit 0, the units on stdout.
    let out = corralctl(&["import"], &[files[0].clone(), files[2].clone()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("exec = [\"/bin/sleep\", \"1\"]\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[resources]\ncpu-max = \"50%\"\n"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr)
            .contains("a.service:4: warning: [Service] SyslogIdentifier: no corral equivalent"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_instance_is_read_from_its_template() {
    let dir = golden::repo_path("tests/corpus/systemd");
    let (ok, out, err) = import_one(&dir.join("serial-getty@ttyS0.service"));
    assert!(ok, "{err}");
    assert!(
        out.starts_with("# serial-getty@ttyS0.service: imported from"),
        "{out}"
    );
    assert!(
        out.contains("description = \"Serial Getty on ttyS0\""),
        "{out}"
    );
    assert!(out.contains("ttyS0"), "{out}");
    assert!(!err.contains("%I"), "{err}");
}
