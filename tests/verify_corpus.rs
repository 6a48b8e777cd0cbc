//! The malformed-unit corpus: every directory under `tests/corpus/` holds one or more broken
//! unit files and `expected`, the exit status and exact diagnostics `corralctl verify` must
//! print for them. `UPDATE_GOLDEN=1 cargo test --test verify_corpus` rewrites `expected`
//! (review the diff: it is the specification of the messages). `tests/corpus/systemd/` is not
//! a case: it holds systemd unit files for `corralctl import` (`tests/ctl_import.rs`).

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/corpus exists")
        .map(|e| e.expect("readable corpus entry").path())
        .filter(|p| p.is_dir() && !p.ends_with("systemd"))
        .collect();
    dirs.sort();
    dirs
}

fn unit_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("readable case dir")
        .map(|e| {
            e.expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8 name")
        })
        .filter(|f| f.ends_with(".toml"))
        .collect();
    files.sort();
    files
}

/// `FILE:LINE:COL: error|warning: …` where FILE is one of the case's files and, unless the
/// problem is the file's name itself, a key follows.
fn check_shape(case: &str, line: &str, files: &[String]) {
    let (file, rest) = line
        .split_once(':')
        .unwrap_or_else(|| panic!("{case}: no file in {line:?}"));
    assert!(
        files.iter().any(|f| f == file) || file.contains(".d/"),
        "{case}: {file:?} is not one of the case's files in {line:?}"
    );
    let mut parts = rest.splitn(3, ':');
    let ln: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let col: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    assert!(
        ln >= 1 && col >= 1,
        "{case}: no line and column in {line:?}"
    );
    let rest = parts.next().unwrap_or_default();
    let body = rest
        .strip_prefix(" error: ")
        .or_else(|| rest.strip_prefix(" warning: "))
        .unwrap_or_else(|| panic!("{case}: no severity in {line:?}"));
    let names_key =
        body.starts_with('[') || body.split(':').next().is_some_and(|k| !k.contains(' '));
    let about_name = body.starts_with("unit name ");
    assert!(names_key || about_name, "{case}: no key named in {line:?}");
}

#[test]
fn every_malformed_unit_gets_its_expected_message() {
    let bin = assert_cmd::cargo::cargo_bin!("corralctl");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dirs = case_dirs();
    assert!(dirs.len() >= 40, "the corpus has only {} cases", dirs.len());
    let mut failures = Vec::new();
    for dir in &dirs {
        let case = dir.file_name().unwrap().to_string_lossy().into_owned();
        let files = unit_files(dir);
        let out = Command::new(bin)
            .current_dir(dir)
            .arg("verify")
            .arg("--")
            .args(&files)
            .output()
            .expect("corralctl runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let actual = format!("exit {}\n{stderr}", out.status.code().unwrap_or(-1));
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(!lines.is_empty(), "{case}: verify found nothing wrong");
        for line in &lines {
            check_shape(&case, line, &files);
        }
        let expected_path = dir.join("expected");
        if update {
            std::fs::write(&expected_path, &actual).expect("write expected");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{case}: no expected file (run with UPDATE_GOLDEN=1)"));
        if expected != actual {
            failures.push(format!("── {case}\nexpected:\n{expected}actual:\n{actual}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn error_cases_exit_non_zero_and_warning_cases_zero() {
    for dir in case_dirs() {
        let expected = std::fs::read_to_string(dir.join("expected")).unwrap_or_default();
        let has_error = expected.contains(": error: ");
        let exit_line = expected.lines().next().unwrap_or_default();
        assert_eq!(
            exit_line,
            if has_error { "exit 1" } else { "exit 0" },
            "{}",
            dir.display()
        );
    }
}
