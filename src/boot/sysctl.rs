//! Boot-time sysctls, the way systemd-sysctl applies them (DESIGN §6): `*.conf` files from
//! `/etc/sysctl.d`, `/run/sysctl.d` and `/usr/lib/sysctl.d` — a file in an earlier directory
//! masks a same-named file in a later one — applied in lexical order of file name, then
//! `/etc/sysctl.conf` last. A later assignment of the same key wins.
//!
//! Format (sysctl.d(5)): `key = value` per line, `#` or `;` comments, keys with `.` or `/` as
//! separators, a leading `-` means "ignore a failure to write this key".

use std::path::{Path, PathBuf};

/// The directories searched, first wins, and the file applied last.
pub const SYSCTL_DIRS: [&str; 3] = ["/etc/sysctl.d", "/run/sysctl.d", "/usr/lib/sysctl.d"];
pub const SYSCTL_CONF: &str = "/etc/sysctl.conf";

/// One assignment, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The key with `.` separators: `net.ipv4.ip_forward`.
    pub key: String,
    pub value: String,
    /// A write failure is not an error (`-key = value`).
    pub ignore_failure: bool,
    pub file: PathBuf,
    pub line: usize,
}

impl Assignment {
    /// The file under `/proc/sys` this assignment writes.
    pub fn proc_path(&self) -> PathBuf {
        Path::new("/proc/sys").join(self.key.replace('.', "/"))
    }
}

/// Parses one file. Lines that are not `key = value` are returned as problems `(line, text)`.
pub fn parse(file: &Path, text: &str) -> (Vec<Assignment>, Vec<(usize, String)>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            bad.push((i + 1, raw.to_string()));
            continue;
        };
        let k = k.trim();
        let (ignore_failure, k) = match k.strip_prefix('-') {
            Some(rest) => (true, rest.trim()),
            None => (false, k),
        };
        if k.is_empty() || k.contains("..") {
            bad.push((i + 1, raw.to_string()));
            continue;
        }
        // sysctl.d accepts `/` as the separator too; `.` is canonical.
        let key = if k.contains('/') {
            k.replace('/', ".")
        } else {
            k.to_string()
        };
        out.push(Assignment {
            key,
            value: v.trim().to_string(),
            ignore_failure,
            file: file.to_path_buf(),
            line: i + 1,
        });
    }
    (out, bad)
}

/// Every assignment in the order it must be written; a later one of the same key replaces an
/// earlier one (it is kept at the later position).
pub fn collect(files: &[PathBuf]) -> (Vec<Assignment>, Vec<String>) {
    let mut all: Vec<Assignment> = Vec::new();
    let mut problems = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        let (assignments, bad) = parse(f, &text);
        for (line, raw) in bad {
            problems.push(format!(
                "{}:{line}: not a \"key = value\" line: {raw:?}",
                f.display()
            ));
        }
        for a in assignments {
            all.retain(|x| x.key != a.key);
            all.push(a);
        }
    }
    (all, problems)
}

/// Writes every assignment under `proc_sys` (`/proc/sys` on a real system); returns the
/// problems (failures of keys not marked `-`).
pub fn apply(assignments: &[Assignment], proc_sys: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for a in assignments {
        let path = proc_sys.join(a.key.replace('.', "/"));
        // No O_CREAT: a misspelt key must fail, not create a file.
        let res = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, a.value.as_bytes()));
        if let Err(e) = res
            && !a.ignore_failure
        {
            problems.push(format!(
                "{}:{}: writing {:?} to {}: {e}",
                a.file.display(),
                a.line,
                a.value,
                path.display()
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::config_files;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn precedence_by_directory_then_file_name_then_sysctl_conf() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        write(
            r,
            "usr/lib/sysctl.d/10-base.conf",
            "kernel.a = lib10\nkernel.b = lib10\n",
        );
        write(r, "usr/lib/sysctl.d/50-x.conf", "kernel.c = lib50\n");
        write(r, "run/sysctl.d/50-x.conf", "kernel.c = run50\n");
        write(r, "etc/sysctl.d/50-x.conf", "kernel.c = etc50\n");
        write(r, "etc/sysctl.d/20-y.conf", "kernel.b = etc20\n");
        write(r, "etc/sysctl.d/README", "kernel.z = ignored\n");
        write(r, "etc/sysctl.conf", "kernel.a = conf\n");
        let files = config_files(r, &SYSCTL_DIRS, Some(SYSCTL_CONF));
        let rel: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(r).unwrap().display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "usr/lib/sysctl.d/10-base.conf",
                "etc/sysctl.d/20-y.conf",
                "etc/sysctl.d/50-x.conf",
                "etc/sysctl.conf"
            ]
        );
        let (all, problems) = collect(&files);
        assert!(problems.is_empty(), "{problems:?}");
        let kv: Vec<String> = all
            .iter()
            .map(|a| format!("{}={}", a.key, a.value))
            .collect();
        assert_eq!(kv, ["kernel.b=etc20", "kernel.c=etc50", "kernel.a=conf"]);
    }

    #[test]
    fn parse_handles_comments_separators_and_ignore_marks() {
        let (a, bad) = parse(
            Path::new("x.conf"),
            "# c\n; c\n\nnet/ipv4/ip_forward = 1\n-kernel.nope = 2\nvm.swappiness=10 \ngarbage\n",
        );
        let kv: Vec<String> = a
            .iter()
            .map(|a| format!("{}={}:{}:{}", a.key, a.value, a.ignore_failure, a.line))
            .collect();
        assert_eq!(
            kv,
            [
                "net.ipv4.ip_forward=1:false:4",
                "kernel.nope=2:true:5",
                "vm.swappiness=10:false:6"
            ]
        );
        assert_eq!(bad, [(7, "garbage".to_string())]);
        assert_eq!(a[0].proc_path(), Path::new("/proc/sys/net/ipv4/ip_forward"));
    }

    #[test]
    fn apply_writes_existing_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "net/ipv4/ip_forward", "0");
        let (a, _) = parse(
            Path::new("x.conf"),
            "net.ipv4.ip_forward = 1\nnet.ipv4.nope = 1\n-net.ipv4.gone = 1\n",
        );
        let problems = apply(&a, tmp.path());
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("net/ipv4/ip_forward")).unwrap(),
            "1"
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("x.conf:2: writing \"1\" to "),
            "{}",
            problems[0]
        );
        assert!(
            !tmp.path().join("net/ipv4/nope").exists(),
            "no file is created"
        );
    }
}
