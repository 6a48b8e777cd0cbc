//! Kernel modules to load at boot: `/etc/modules-load.d/*.conf`, `/run/modules-load.d`,
//! `/usr/lib/modules-load.d` (same precedence as sysctl.d), one module name per line, `#` and
//! `;` comments. Loading runs `modprobe NAME` when modprobe exists.

use std::path::Path;

pub const MODULES_DIRS: [&str; 3] = [
    "/etc/modules-load.d",
    "/run/modules-load.d",
    "/usr/lib/modules-load.d",
];

/// Module names in load order, each once.
pub fn collect(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in super::config_files(root, &MODULES_DIRS, None) {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if !out.iter().any(|m| m == line) {
                out.push(line.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_in_order_once() {
        let tmp = tempfile::tempdir().unwrap();
        let w = |rel: &str, text: &str| {
            let p = tmp.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        w(
            "usr/lib/modules-load.d/virtio.conf",
            "virtio_blk\n# comment\nvirtio_net\n",
        );
        w("etc/modules-load.d/virtio.conf", "virtio_console\n");
        w("etc/modules-load.d/a.conf", "; c\nloop\nvirtio_console\n");
        assert_eq!(collect(tmp.path()), ["loop", "virtio_console"]);
    }
}
