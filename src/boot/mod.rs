//! PID 1 duties (DESIGN §6): early mounts, hostname, sysctls, kernel modules, and the shutdown
//! path. Only used when corrald runs as PID 1.

pub mod cmdline;
pub mod modules;
pub mod pid1;
pub mod sysctl;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `*.conf` files of a systemd-style `.d` search: `dirs` first wins for a file name, files
/// apply in lexical order of name, then `last` (if it exists). `root` prefixes every path (`/`
/// on a real system; a temporary directory in tests).
pub fn config_files(root: &Path, dirs: &[&str], last: Option<&str>) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(root.join(dir.trim_start_matches('/'))) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.ends_with(".conf") {
                by_name.entry(name).or_insert_with(|| e.path());
            }
        }
    }
    let mut files: Vec<PathBuf> = by_name.into_values().collect();
    if let Some(last) = last.map(|l| root.join(l.trim_start_matches('/')))
        && last.is_file()
    {
        files.push(last);
    }
    files
}
