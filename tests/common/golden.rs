//! Golden files: compare generated text with a file in the repository, or rewrite the file when
//! `UPDATE_GOLDEN=1` is set (as zbus does with `TEST_OVERWRITE`). A mismatch fails with a line
//! diff and the command that refreshes the file. [`mask`] hides what changes from run to run in
//! corralctl's output (no regex: literal search). Include with
//! `#[path = "common/golden.rs"] mod golden;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A path relative to the repository root.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// True when the goldens are to be rewritten rather than checked.
pub fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Checks `actual` against the golden file `rel` (relative to the repository root), or
/// rewrites the file under `UPDATE_GOLDEN=1`. `test` names the test target, for the hint.
pub fn check(rel: &str, actual: &str, test: &str) {
    check_with(rel, actual, actual, test, |golden| golden.to_string());
}

/// Like [`check`], for files whose text is compared after `normalise` (e.g. XML whose layout
/// doesn't matter): `rendered` is what gets written, `actual` the normalised served form.
pub fn check_with(
    rel: &str,
    actual: &str,
    rendered: &str,
    test: &str,
    normalise: impl Fn(&str) -> String,
) {
    let path = repo_path(rel);
    if updating() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("creating the golden directory");
        }
        std::fs::write(&path, rendered).expect("writing the golden file");
        eprintln!("updated {rel}");
        return;
    }
    let hint = format!("refresh with: UPDATE_GOLDEN=1 cargo test --test {test}");
    let golden = match std::fs::read_to_string(&path) {
        Ok(g) => g,
        Err(e) => panic!("reading {rel}: {e}; {hint}"),
    };
    let expected = normalise(&golden);
    if expected != actual {
        panic!(
            "{rel} differs from what was produced (- golden, + now):\n{}\n{hint}",
            diff(&expected, actual)
        );
    }
}

/// A line diff (longest common subsequence): changed lines with `-`/`+`, and up to two lines of
/// context around them.
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near_change = |k: usize| {
        let lo = k.saturating_sub(2);
        let hi = (k + 2).min(ops.len() - 1);
        ops[lo..=hi].iter().any(|(op, _)| *op != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near_change(k) {
            if skipped {
                out.push_str("  …\n");
                skipped = false;
            }
            out.push(*op);
            out.push(' ');
            out.push_str(line);
            out.push('\n');
        } else {
            skipped = true;
        }
    }
    if skipped {
        out.push_str("  …\n");
    }
    out
}

#[test]
fn diff_shows_changes_with_context() {
    let d = diff("a\nb\nc\nd\ne\nf\ng\n", "a\nb\nc\nX\ne\nf\ng\n");
    assert_eq!(d, "  …\n  b\n  c\n- d\n+ X\n  e\n  f\n  …\n", "{d}");
}

/// `line` with what follows `label` replaced by `mask`, up to `" ("` (where limits start) or
/// the end of the line.
pub fn mask_after(line: &str, label: &str, mask: &str) -> Option<String> {
    let at = line.find(label)? + label.len();
    let rest = &line[at..];
    let end = rest.find(" (").unwrap_or(rest.len());
    Some(format!("{}{mask}{}", &line[..at], &rest[end..]))
}

/// Masks what changes from run to run; `replace` holds literal (text, mask) pairs (paths).
pub fn mask(out: &str, replace: &[(&str, &str)]) -> String {
    let mut text = out.to_string();
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    let mut lines = Vec::new();
    for line in text.lines() {
        let mut line = line.to_string();
        for (label, m) in [
            ("Main PID: ", "<pid>"),
            ("Tasks: ", "<usage>"),
            ("Memory: ", "<usage>"),
            ("CPU: ", "<usage>"),
            ("IO: ", "<usage>"),
        ] {
            if let Some(masked) = mask_after(&line, label, m) {
                line = masked;
            }
        }
        // `since <time>`, wherever it is shown.
        if let Some(at) = line.find(" since ") {
            let end = line[at..].find(';').map_or(line.len(), |e| at + e);
            line = format!("{} since <time>{}", &line[..at], &line[end..]);
        }
        // Processes: `├─1234 cmd` / `└─1234 cmd`.
        for branch in ["├─", "└─"] {
            if let Some(at) = line.find(branch) {
                let start = at + branch.len();
                let digits = line[start..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .count();
                if digits > 0 {
                    line = format!("{}<pid>{}", &line[..start], &line[start + digits..]);
                }
            }
        }
        lines.push(line);
    }
    let mut masked = lines.join("\n");
    if out.ends_with('\n') {
        masked.push('\n');
    }
    masked
}

#[test]
fn masking_hides_what_changes_and_keeps_the_rest() {
    let out = "   Main PID: 4242\n     Active: active (running) since Tue 10:00:01; 3s ago\n     \
               Memory: 1.5M, peak 2M (memory-max 512M)\n        CPU: 0.010s\n             \
               ├─42 /bin/sleep 1000\n             └─43 sleep\n     CGroup: /t-99/a.service\n";
    let masked = mask(out, &[("/t-99", "/<root>")]);
    assert_eq!(
        masked,
        "   Main PID: <pid>\n     Active: active (running) since <time>; 3s ago\n     \
         Memory: <usage> (memory-max 512M)\n        CPU: <usage>\n             \
         ├─<pid> /bin/sleep 1000\n             └─<pid> sleep\n     CGroup: /<root>/a.service\n"
    );
}
