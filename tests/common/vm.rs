//! QEMU VM harness for tests that need a real kernel: boots the host's Debian kernel under TCG
//! with a throwaway initramfs, streams and captures the serial console, and decodes the guest's
//! exit code and its `CORRAL-CHECK` result lines.
//!
//! # Using it
//!
//! Each test binary compiles its own copy of this module, pulled in by path:
//!
//! ```ignore
//! #[path = "common/vm.rs"]
//! mod vm;
//! ```
//!
//! (`tests/common/` is not a test target of its own; parts a binary does not use are allowed to
//! be dead code.) A test builds an image, boots it and asserts on what the guest reported:
//!
//! ```ignore
//! let mut overlay = vm::Initramfs::new();
//! overlay.binary(env!("CARGO_BIN_EXE_corrald"), "/init").file("/etc/x", "…", 0o644);
//! let overlay = overlay.build();
//! let out = vm::Vm::new(vm::base_image()).initrd(overlay.path()).env("RUST_LOG", "debug").run();
//! out.assert_passed(&["pid1"]);
//! out.assert_exit(0);
//! ```
//!
//! # Guest-side protocol
//!
//! - Checks print lines `CORRAL-CHECK <name> PASS|FAIL [detail]` to the console (`/dev/console`
//!   or `/dev/ttyS0` when not PID 1); the marker may appear mid-line, after kernel noise.
//! - `/bin/vm-exit N` (in [`Initramfs::base`]) makes QEMU exit with `(N << 1) | 1` through the
//!   `isa-debug-exit` device (port 0xf4), decoded as [`Exit::Guest`]`(N)`. It needs `/dev`
//!   mounted (devtmpfs; `DEVTMPFS_MOUNT` is off, so init mounts it); otherwise it powers off.
//! - Kernel command line `KEY=VAL` words become init's environment, words after `--` its
//!   arguments ([`Vm::env`], [`Vm::arg`]).
//!
//! # Host-side guarantees
//!
//! - One VM at a time on the machine, across test threads, test binaries and checkouts: a boot
//!   holds an exclusive `flock` on `/tmp/corral-vm-boot.lock` (two TCG guests on a 2-core host
//!   starve each other).
//! - Every boot has a time limit; QEMU is killed and reaped when it passes, when the runner is
//!   dropped or unwinds, and (`PR_SET_PDEATHSIG`) when the test thread itself dies.
//! - Missing QEMU, kernel, busybox, cpio or xz is a test failure naming `scripts/vm-deps`,
//!   never a silent skip.
//!
//! The uncompressed kernel and the shared base image live in `$CARGO_TARGET_TMPDIR/vm-cache`
//! (`target/tmp/vm-cache`), written through a temporary file and `rename` so that test binaries
//! running in parallel never see half a file. Console logs of every boot are kept in
//! `vm-cache/logs/<test name>.log`.

#![allow(dead_code)]

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::{NamedTempFile, TempDir};

/// What to tell the reader when the host lacks something the VM tests need.
const DEPS_HINT: &str = "install the VM test dependencies with `sudo scripts/vm-deps` \
     (qemu-system-x86, linux-image-amd64, busybox-static, cpio, xz-utils, …)";

/// The marker that starts a check result on the console.
const CHECK_MARKER: &str = "CORRAL-CHECK ";

/// What the kernel prints before `panic=-1` reboots (and `-no-reboot` turns that into an exit).
const PANIC_MARKER: &str = "Kernel panic - not syncing";

/// The kernel rejects longer command lines on x86 (`COMMAND_LINE_SIZE`).
const MAX_CMDLINE: usize = 2048;

/// `MAX_INIT_ARGS` / `MAX_INIT_ENVS` in `init/main.c`: the kernel panics beyond them. The
/// kernel itself uses two environment slots (`HOME`, `TERM`) and one argument slot (argv[0]).
const MAX_INIT_ENVS: usize = 32 - 2;
const MAX_INIT_ARGS: usize = 32 - 1;

/// How long a boot may take unless the test says otherwise: TCG on a busy 2-core host is slow.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// `/bin/vm-exit`, installed by [`Initramfs::vm_exit`].
const VM_EXIT_SH: &str = r#"#!/bin/sh
# vm-exit [N]: power the VM off so that QEMU exits with status (N << 1) | 1, through the
# isa-debug-exit device at I/O port 0xf4 (the test harness decodes N). N is 0..=127 (default
# 0): QEMU's exit status keeps only 8 bits, so the device's eighth bit would be lost.
# Writing /dev/port needs devtmpfs on /dev; without it this falls back to a plain power-off
# (QEMU exits 0).
code=${1:-0}
case $code in
    '' | *[!0-9]*) echo "vm-exit: '$code' is not a number; using 127" >&2; code=127 ;;
esac
[ "$code" -le 127 ] || code=127
[ -c /dev/port ] || busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
# QEMU stops at the write: nothing after it runs unless the device is missing.
busybox printf "\\$(busybox printf %03o "$code")" |
    busybox dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
echo "vm-exit: isa-debug-exit did not stop the VM; powering off" >&2
exec busybox poweroff -f
"#;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
test:x:1000:1000:test:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

const GROUP: &str = "\
root:x:0:
test:x:1000:
nogroup:x:65534:
nobody:x:65534:
";

const NSSWITCH: &str = "passwd: files\ngroup: files\nshadow: files\nhosts: files\n";

// ---------------------------------------------------------------------------------------------
// Host environment
// ---------------------------------------------------------------------------------------------

/// Fails the test because the host lacks `what`, saying how to fix it.
fn missing_dependency(what: impl fmt::Display) -> ! {
    panic!("VM test dependency missing: {what}\n  fix: {DEPS_HINT}")
}

/// Finds `name` in `$PATH` (or the usual system directories, for tools in `sbin`).
fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Like [`find_tool`], but a missing tool fails the test.
fn require_tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| missing_dependency(format_args!("`{name}` is not in PATH")))
}

/// The directory for cached artefacts shared by all test binaries of this crate.
pub fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = match option_env!("CARGO_TARGET_TMPDIR") {
            Some(tmp) => PathBuf::from(tmp),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        };
        let dir = base.join("vm-cache");
        fs::create_dir_all(dir.join("logs"))
            .unwrap_or_else(|e| panic!("creating the VM cache {}: {e}", dir.display()));
        dir
    })
}

/// Writes a file in the cache through a temporary file and `rename`, so readers in other
/// processes see either nothing, the old file or the whole new one.
fn write_cache_file(name: &str, fill: impl FnOnce(&mut File)) -> PathBuf {
    let dest = cache_dir().join(name);
    let mut tmp = NamedTempFile::new_in(cache_dir()).unwrap_or_else(|e| {
        panic!(
            "creating a temporary file in {}: {e}",
            cache_dir().display()
        )
    });
    fill(tmp.as_file_mut());
    tmp.persist(&dest)
        .unwrap_or_else(|e| panic!("renaming into {}: {}", dest.display(), e.error));
    dest
}

/// Orders version strings the way `sort -V` roughly does: runs of digits compare as numbers.
fn compare_versions(a: &str, b: &str) -> Ordering {
    /// Splits `s` into alternating runs of digits and non-digits.
    fn runs(s: &str) -> impl Iterator<Item = &str> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let digits = rest.chars().next()?.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(end);
            rest = tail;
            Some(run)
        })
    }
    let (mut ra, mut rb) = (runs(a), runs(b));
    loop {
        let ord = match (ra.next(), rb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match (x.parse::<u64>(), y.parse::<u64>()) {
                (Ok(m), Ok(n)) => m.cmp(&n),
                _ => x.cmp(y),
            },
        };
        if ord.is_ne() {
            return ord;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Kernel
// ---------------------------------------------------------------------------------------------

/// The host's newest installed kernel, uncompressed for a fast PVH boot.
#[derive(Debug)]
pub struct Kernel {
    version: String,
    bzimage: PathBuf,
    vmlinux: PathBuf,
}

impl Kernel {
    /// The newest `/boot/vmlinuz-*`, extracted into the cache on first use.
    pub fn host() -> &'static Kernel {
        static KERNEL: OnceLock<Kernel> = OnceLock::new();
        KERNEL.get_or_init(|| {
            let (version, bzimage) = newest_kernel();
            let vmlinux = extract_vmlinux(&version, &bzimage);
            Kernel {
                version,
                bzimage,
                vmlinux,
            }
        })
    }

    /// The kernel release, e.g. `6.1.0-56-amd64` (what `uname -r` prints in the guest).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The compressed image in `/boot`.
    pub fn bzimage(&self) -> &Path {
        &self.bzimage
    }

    /// The uncompressed ELF kernel that QEMU boots with `-kernel`.
    pub fn vmlinux(&self) -> &Path {
        &self.vmlinux
    }

    /// `/lib/modules/<version>` on the host: the modules this kernel can load.
    pub fn modules_dir(&self) -> PathBuf {
        Path::new("/lib/modules").join(&self.version)
    }

    /// The modules `names` need, as paths relative to [`Kernel::modules_dir`], in an order in
    /// which `insmod` can load them (dependencies first, each once). Built-in modules are left
    /// out. Note that a driver does not depend on its bus: `virtio_blk` needs `virtio_pci` too.
    pub fn module_load_order(&self, names: &[&str]) -> Vec<String> {
        let dir = self.modules_dir();
        let read = |file: &str| {
            fs::read_to_string(dir.join(file)).unwrap_or_else(|e| {
                missing_dependency(format_args!("reading {}: {e}", dir.join(file).display()))
            })
        };
        let module_name = |path: &str| {
            let file = path.rsplit('/').next().unwrap_or(path);
            file.split(".ko").next().unwrap_or(file).replace('-', "_")
        };
        let builtin: HashSet<String> = read("modules.builtin").lines().map(module_name).collect();
        let mut deps: HashMap<String, (String, Vec<String>)> = HashMap::new();
        for line in read("modules.dep").lines() {
            let Some((path, needs)) = line.split_once(':') else {
                continue;
            };
            let needs = needs.split_whitespace().map(module_name).collect();
            deps.insert(module_name(path), (path.to_owned(), needs));
        }

        fn visit(
            name: &str,
            deps: &HashMap<String, (String, Vec<String>)>,
            seen: &mut HashSet<String>,
            order: &mut Vec<String>,
        ) {
            if !seen.insert(name.to_owned()) {
                return;
            }
            let (path, needs) = &deps[name];
            for need in needs {
                visit(need, deps, seen, order);
            }
            order.push(path.clone());
        }
        let (mut seen, mut order) = (HashSet::new(), Vec::new());
        for name in names {
            let name = name.replace('-', "_");
            if deps.contains_key(&name) {
                visit(&name, &deps, &mut seen, &mut order);
            } else if !builtin.contains(&name) {
                panic!(
                    "kernel module `{name}` is neither in {}/modules.dep nor built in",
                    dir.display()
                );
            }
        }
        order
    }
}

/// Finds the newest `/boot/vmlinuz-<version>`.
fn newest_kernel() -> (String, PathBuf) {
    let entries = fs::read_dir("/boot")
        .unwrap_or_else(|e| missing_dependency(format_args!("no kernel: reading /boot: {e}")));
    entries
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?.to_owned();
            Some((version, Path::new("/boot").join(name)))
        })
        .max_by(|(a, _), (b, _)| compare_versions(a, b))
        .unwrap_or_else(|| missing_dependency("no kernel: /boot/vmlinuz-* matches nothing"))
}

/// Extracts the ELF kernel from an xz-compressed bzImage into the cache (once per kernel build).
///
/// The bzImage is a small decompressor followed by the xz stream: decompressing it ahead of
/// time saves ~3 s of TCG time on every boot, and QEMU boots the ELF through its PVH entry.
fn extract_vmlinux(version: &str, bzimage: &Path) -> PathBuf {
    let meta = fs::metadata(bzimage)
        .unwrap_or_else(|e| missing_dependency(format_args!("{}: {e}", bzimage.display())));
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    // The version alone may survive a rebuild of the package; size and mtime change with it.
    let name = format!(
        "vmlinux-{version}-{}-{}",
        meta.len(),
        mtime.map_or(0, |t| t.as_secs())
    );
    let dest = cache_dir().join(&name);
    if dest.metadata().is_ok_and(|m| m.len() > 0) {
        return dest;
    }

    let image = fs::read(bzimage).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (the kernel image must be readable by the test user)",
            bzimage.display()
        )
    });
    let xz = require_tool("xz");
    const XZ_MAGIC: &[u8] = &[0xFD, b'7', b'z', b'X', b'Z', 0x00];
    let offsets: Vec<usize> = image
        .windows(XZ_MAGIC.len())
        .enumerate()
        .filter_map(|(i, w)| (w == XZ_MAGIC).then_some(i))
        .collect();
    // Usually the first stream is the kernel; try the others if it does not decode to an ELF.
    for offset in offsets {
        let out = NamedTempFile::new_in(cache_dir()).unwrap_or_else(|e| {
            panic!(
                "creating a temporary file in {}: {e}",
                cache_dir().display()
            )
        });
        let stdout = out
            .as_file()
            .try_clone()
            .expect("duplicating a temporary file handle");
        let mut child = Command::new(&xz)
            .args(["-dc", "--single-stream"])
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", xz.display()));
        let mut stdin = child.stdin.take().expect("xz's stdin is piped");
        // xz exits early on garbage; the broken pipe then shows in its exit status.
        let _ = stdin.write_all(&image[offset..]);
        drop(stdin);
        let status = child.wait().expect("waiting for xz");
        let mut head = [0u8; 4];
        let is_elf = File::open(out.path())
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok_and(|()| head == *b"\x7fELF");
        if status.success() && is_elf {
            out.persist(&dest)
                .unwrap_or_else(|e| panic!("renaming into {}: {}", dest.display(), e.error));
            return dest;
        }
    }
    panic!(
        "{} holds no xz-compressed ELF kernel (is it an xz bzImage, as Debian's are?)",
        bzimage.display()
    )
}

// ---------------------------------------------------------------------------------------------
// Initramfs
// ---------------------------------------------------------------------------------------------

/// An initramfs being put together in a temporary staging directory.
///
/// Guest paths are absolute (`"/bin/sh"`); missing parent directories are created with mode
/// 0755 (`/tmp` 1777: an overlay's directories re-apply their modes to the base's). Everything is owned by root in the image (`cpio -R 0:0`). Adding a file where a file or
/// symlink already is replaces it. Writing *through* a symlink in the image is refused (a link
/// such as `/var/run -> /run` would otherwise resolve on the host); use the real path.
pub struct Initramfs {
    root: TempDir,
}

impl Default for Initramfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Initramfs {
    /// An empty image (only its root directory, mode 0755). Good as an overlay on
    /// [`base_image`].
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("corral-initramfs-")
            .tempdir()
            .expect("creating a staging directory for an initramfs");
        // The staging directory itself becomes the guest's `/` (the `.` entry): a tempdir is
        // 0700, which would lock every non-root user out of the whole file system.
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755))
            .expect("setting the mode of the staging directory");
        Initramfs { root }
    }

    /// The standard layout, users, busybox with its applets and `/bin/vm-exit`: everything a
    /// shell-script `/init` needs.
    pub fn base() -> Self {
        let mut image = Self::new();
        image.standard_dirs().users().busybox().vm_exit();
        image
    }

    /// The staging directory on the host (the guest's `/`).
    pub fn staging_dir(&self) -> &Path {
        self.root.path()
    }

    /// `/proc /sys /dev /run /etc /var /root /mnt /tmp` (1777) and `/var/run -> /run`.
    pub fn standard_dirs(&mut self) -> &mut Self {
        for dir in [
            "/proc", "/sys", "/dev", "/run", "/etc", "/var", "/root", "/mnt",
        ] {
            self.dir(dir, 0o755);
        }
        self.dir("/tmp", 0o1777);
        // Relative, so that even a host-side tool following it stays inside the image.
        self.symlink("../run", "/var/run")
    }

    /// `/etc/passwd` and `/etc/group` with `root` (0), `test` (1000, home `/tmp`) and `nobody`
    /// (65534, group `nogroup` or `nobody`), and an `nsswitch.conf` that reads them.
    pub fn users(&mut self) -> &mut Self {
        self.users_and(&[])
    }

    /// [`Self::users`] plus an account and a group of the same name and number for each of
    /// `extra` (shell `/bin/sh`, no home): an overlay's files win over the base image's.
    pub fn users_and(&mut self, extra: &[(&str, u32)]) -> &mut Self {
        let mut passwd = PASSWD.to_string();
        let mut group = GROUP.to_string();
        for (name, id) in extra {
            passwd.push_str(&format!("{name}:x:{id}:{id}:{name}:/nonexistent:/bin/sh\n"));
            group.push_str(&format!("{name}:x:{id}:\n"));
        }
        self.file("/etc/passwd", passwd, 0o644)
            .file("/etc/group", group, 0o644)
            .file("/etc/nsswitch.conf", NSSWITCH, 0o644)
    }

    /// The host's busybox as `/bin/busybox` plus a `/bin/<applet>` symlink for every applet
    /// not already in the image (busybox-static needs no libraries; a dynamic one gets its own).
    pub fn busybox(&mut self) -> &mut Self {
        let host = ["/bin/busybox", "/usr/bin/busybox"]
            .map(PathBuf::from)
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| require_tool("busybox"));
        self.binary(&host, "/bin/busybox");
        let list = Command::new(&host)
            .arg("--list")
            .output()
            .unwrap_or_else(|e| panic!("running {} --list: {e}", host.display()));
        assert!(
            list.status.success(),
            "{} --list failed: {}",
            host.display(),
            list.status
        );
        for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
            let guest = format!("/bin/{applet}");
            if applet != "busybox" && fs::symlink_metadata(self.host_path(&guest)).is_err() {
                self.symlink("busybox", &guest);
            }
        }
        self
    }

    /// `/bin/vm-exit N` (N in 0..=127): makes QEMU exit so that the harness reports
    /// [`Exit::Guest`]`(N)`.
    pub fn vm_exit(&mut self) -> &mut Self {
        self.file("/bin/vm-exit", VM_EXIT_SH, 0o755)
    }

    /// corrald as `/init` with corralctl, dbus-daemon, busctl and setpriv (`tools`, at their
    /// host paths), the system bus's configuration `config` and the corral bus policy, and
    /// `/var/log/corral`: a guest whose PID 1 starts the bus as a unit (`tests/vm/bus`).
    pub fn system_bus(&mut self, tools: &[&str], config: &str) -> &mut Self {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        self.binary(env!("CARGO_BIN_EXE_corrald"), "/init")
            .binary(env!("CARGO_BIN_EXE_corralctl"), "/usr/bin/corralctl");
        for tool in tools {
            self.binary(tool, tool);
        }
        self.file("/etc/dbus-1/system.conf", config, 0o644)
            .copy(
                repo.join("dbus/org.corral1.conf"),
                "/etc/dbus-1/org.corral1.conf",
            )
            .dir("/var/log/corral", 0o755)
    }

    /// A directory with `mode` (an existing one just gets the mode).
    pub fn dir(&mut self, guest: impl AsRef<Path>, mode: u32) -> &mut Self {
        let host = self.prepare(guest.as_ref());
        if !fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir()) {
            self.remove_non_dir(&host);
            fs::create_dir(&host).unwrap_or_else(|e| panic!("creating {}: {e}", host.display()));
        }
        set_mode(&host, mode);
        self
    }

    /// A file with `contents` and `mode`.
    pub fn file(
        &mut self,
        guest: impl AsRef<Path>,
        contents: impl AsRef<[u8]>,
        mode: u32,
    ) -> &mut Self {
        let host = self.prepare(guest.as_ref());
        self.remove_non_dir(&host);
        fs::write(&host, contents).unwrap_or_else(|e| panic!("writing {}: {e}", host.display()));
        set_mode(&host, mode);
        self
    }

    /// A copy of the host file `host` (symlinks followed) at `guest`, keeping its mode.
    pub fn copy(&mut self, host: impl AsRef<Path>, guest: impl AsRef<Path>) -> &mut Self {
        let (source, dest) = (host.as_ref(), self.prepare(guest.as_ref()));
        self.remove_non_dir(&dest);
        fs::copy(source, &dest)
            .unwrap_or_else(|e| panic!("copying {} into the image: {e}", source.display()));
        self
    }

    /// Every file under the host directory `host` at the same relative path under `guest`.
    pub fn copy_tree(&mut self, host: impl AsRef<Path>, guest: impl AsRef<Path>) -> &mut Self {
        let (host, guest) = (host.as_ref(), guest.as_ref());
        for entry in
            fs::read_dir(host).unwrap_or_else(|e| panic!("reading {}: {e}", host.display()))
        {
            let path = entry.expect("reading a directory entry").path();
            let target = guest.join(path.file_name().expect("a directory entry has a name"));
            if path.is_dir() {
                self.copy_tree(&path, &target);
            } else {
                self.copy(&path, &target);
            }
        }
        self
    }

    /// A VM test's directory of checks: every `*.toml` in `host` (not below) goes to the unit
    /// directory `units`, every `*.sh` to `/checks`. Returns the unit files' names, sorted.
    pub fn checks_dir(&mut self, host: impl AsRef<Path>, units: impl AsRef<Path>) -> Vec<String> {
        let (host, units) = (host.as_ref(), units.as_ref());
        let mut names = Vec::new();
        for entry in
            fs::read_dir(host).unwrap_or_else(|e| panic!("reading {}: {e}", host.display()))
        {
            let path = entry.expect("reading a directory entry").path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if name.ends_with(".toml") {
                self.copy(&path, units.join(&name));
                names.push(name);
            } else if name.ends_with(".sh") {
                self.copy(&path, Path::new("/checks").join(&name));
            }
        }
        names.sort();
        names
    }

    /// A symlink at `guest` pointing to `target` (taken literally, resolved in the guest).
    pub fn symlink(&mut self, target: impl AsRef<Path>, guest: impl AsRef<Path>) -> &mut Self {
        let host = self.prepare(guest.as_ref());
        self.remove_non_dir(&host);
        symlink(target.as_ref(), &host)
            .unwrap_or_else(|e| panic!("creating {}: {e}", host.display()));
        self
    }

    /// A host executable at `guest`, plus every shared library `ldd` lists for it (and the
    /// dynamic loader) at the same paths as on the host. A static binary needs nothing more.
    /// Libraries that are only `dlopen`ed are not found this way: add them with [`Self::copy`].
    pub fn binary(&mut self, host: impl AsRef<Path>, guest: impl AsRef<Path>) -> &mut Self {
        let host = host.as_ref();
        let guest = guest.as_ref();
        self.copy(host, guest);
        // Debug builds carry ~100 MB of debug info: the guest needs none of it, and an image
        // that big no longer unpacks in the guest's RAM. (Keeps the copy if strip is missing.)
        let staged = self.host_path(guest);
        let _ = Command::new("strip")
            .arg("--strip-debug")
            .arg(&staged)
            .status();
        for library in shared_libraries(host) {
            if fs::symlink_metadata(self.host_path(&library)).is_err() {
                self.copy(&library, &library);
            }
        }
        self
    }

    /// Kernel modules `names` and their dependencies under `/lib/modules/<version>`, indexed by
    /// the host's `depmod` so that `modprobe NAME` works in the guest (busybox and kmod alike).
    /// Remember bus drivers: `virtio_blk` is useless without `virtio_pci`.
    pub fn kernel_modules(&mut self, kernel: &Kernel, names: &[&str]) -> &mut Self {
        let (host_dir, guest_dir) = (
            kernel.modules_dir(),
            Path::new("/lib/modules").join(kernel.version()),
        );
        for module in kernel.module_load_order(names) {
            self.copy(host_dir.join(&module), guest_dir.join(&module));
        }
        for index in [
            "modules.order",
            "modules.builtin",
            "modules.builtin.modinfo",
        ] {
            if host_dir.join(index).is_file() {
                self.copy(host_dir.join(index), guest_dir.join(index));
            }
        }
        let depmod = require_tool("depmod");
        let status = Command::new(&depmod)
            .arg("-b")
            .arg(self.root.path())
            .arg(kernel.version())
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e}", depmod.display()));
        assert!(
            status.success(),
            "depmod over the initramfs failed: {status}"
        );
        self
    }

    /// Writes the newc cpio archive to `dest`.
    pub fn build_to(&self, dest: impl AsRef<Path>) {
        let dest = dest.as_ref();
        let file =
            File::create(dest).unwrap_or_else(|e| panic!("creating {}: {e}", dest.display()));
        self.write_cpio(file);
    }

    /// Writes the archive to a temporary file that lives as long as the returned [`Image`].
    pub fn build(&self) -> Image {
        let dir = tempfile::Builder::new()
            .prefix("corral-initrd-")
            .tempdir()
            .expect("creating a temporary directory for an initramfs");
        let path = dir.path().join("initramfs.cpio");
        self.build_to(&path);
        Image { _dir: dir, path }
    }

    /// Writes the archive to `vm-cache/<name>.cpio` (atomically replacing an older one) and
    /// returns its path. `name` must be unique to the image's contents across test binaries.
    pub fn build_cached(&self, name: &str) -> PathBuf {
        write_cache_file(&format!("{name}.cpio"), |file| {
            self.write_cpio(
                file.try_clone()
                    .expect("duplicating a temporary file handle"),
            )
        })
    }

    fn write_cpio(&self, out: File) {
        let cpio = require_tool("cpio");
        // Sorted, so parents come before their children (a path sorts after its prefix) and the
        // archive does not depend on directory order.
        let mut names = vec![PathBuf::from(".")];
        walk(self.root.path(), Path::new("."), &mut names);
        names[1..].sort();
        let mut list = Vec::new();
        for name in &names {
            list.extend_from_slice(name.as_os_str().as_encoded_bytes());
            list.push(0);
        }
        let mut child = Command::new(&cpio)
            .args(["-o", "-H", "newc", "-R", "0:0", "--null", "--quiet"])
            .current_dir(self.root.path())
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", cpio.display()));
        let mut stdin = child.stdin.take().expect("cpio's stdin is piped");
        let written = stdin.write_all(&list);
        drop(stdin);
        let output = child.wait_with_output().expect("waiting for cpio");
        assert!(
            written.is_ok() && output.status.success(),
            "cpio failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The staging path for an absolute guest path.
    fn host_path(&self, guest: impl AsRef<Path>) -> PathBuf {
        let guest = guest.as_ref();
        assert!(
            guest.is_absolute(),
            "guest path {} is not absolute",
            guest.display()
        );
        let mut host = self.root.path().to_path_buf();
        for component in guest.components() {
            match component {
                Component::RootDir => {}
                Component::Normal(part) => host.push(part),
                _ => panic!(
                    "guest path {} must not contain `.` or `..`",
                    guest.display()
                ),
            }
        }
        host
    }

    /// Creates the parent directories of `guest` and returns its staging path; refuses paths
    /// that go through a symlink in the image.
    fn prepare(&self, guest: &Path) -> PathBuf {
        let host = self.host_path(guest);
        assert!(
            host != self.root.path(),
            "cannot replace the image's root directory"
        );
        let mut dir = self.root.path().to_path_buf();
        let parents: Vec<_> = host
            .strip_prefix(self.root.path())
            .expect("under the root")
            .iter()
            .collect();
        for part in &parents[..parents.len() - 1] {
            dir.push(part);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => panic!(
                    "{} goes through {} in the image, which is not a directory: use the real path",
                    guest.display(),
                    dir.strip_prefix(self.root.path())
                        .expect("under the root")
                        .display()
                ),
                Err(_) => {
                    fs::create_dir(&dir)
                        .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
                    let mode = if dir == self.root.path().join("tmp") {
                        0o1777
                    } else {
                        0o755
                    };
                    set_mode(&dir, mode);
                }
            }
        }
        host
    }

    /// Removes a file or symlink at `host` so that it can be replaced.
    fn remove_non_dir(&self, host: &Path) {
        if fs::symlink_metadata(host).is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(host).unwrap_or_else(|e| panic!("removing {}: {e}", host.display()));
        }
    }
}

/// A built initramfs in a temporary file, deleted on drop.
#[derive(Debug)]
pub struct Image {
    _dir: TempDir,
    path: PathBuf,
}

impl Image {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Image {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// A zeroed 1 MiB raw disk image for [`Vm::disk`]: proof that `virtio_blk` loaded, and where
/// a guest of several boots counts them.
pub fn scratch_disk() -> tempfile::NamedTempFile {
    let disk = tempfile::NamedTempFile::new().expect("creating a disk image");
    disk.as_file()
        .set_len(1 << 20)
        .expect("sizing the disk image");
    disk
}

/// [`Initramfs::base`] built once per test process into the cache: boot it with a small
/// per-test overlay ([`Vm::initrd`]) whose `/init` and other files win.
pub fn base_image() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    // Every process rebuilds it (cheap, and never stale); they all write identical contents.
    BASE.get_or_init(|| Initramfs::base().build_cached("base"))
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("setting mode {mode:o} on {}: {e}", path.display()));
}

/// Collects the paths under `dir` (relative, prefixed by `rel`), not following symlinks.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        let rel = rel.join(entry.file_name());
        out.push(rel.clone());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&entry.path(), &rel, out);
        }
    }
}

/// The shared libraries (and dynamic loader) that `ldd` says `binary` loads.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let ldd = require_tool("ldd");
    let output = Command::new(&ldd)
        .arg(binary)
        .output()
        .unwrap_or_else(|e| panic!("running ldd {}: {e}", binary.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stdout.contains("not a dynamic executable")
        || stderr.contains("not a dynamic executable")
        || stdout.contains("statically linked")
    {
        return Vec::new();
    }
    assert!(
        output.status.success(),
        "ldd {} failed: {stderr}",
        binary.display()
    );
    let mut libraries = Vec::new();
    for line in stdout.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, `/lib64/ld-linux-x86-64.so.2
        // (0x…)` or `linux-vdso.so.1 (0x…)` (in the kernel, nothing to copy).
        let line = line.trim();
        let path = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                assert!(
                    !target.starts_with("not found"),
                    "{} needs {}, which is not on this host",
                    binary.display(),
                    name.trim()
                );
                target.split(" (").next().unwrap_or(target)
            }
            None => line.split(" (").next().unwrap_or(line),
        };
        if path.starts_with('/') {
            libraries.push(PathBuf::from(path));
        }
    }
    libraries
}

// ---------------------------------------------------------------------------------------------
// Running a VM
// ---------------------------------------------------------------------------------------------

/// How a boot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The guest wrote N to the `isa-debug-exit` port (`vm-exit N`); QEMU exited `(N << 1) | 1`.
    /// Only N in 0..=127 survives: an exit status has 8 bits.
    Guest(u8),
    /// QEMU exited 0: the guest powered off, or rebooted (`-no-reboot` makes that an exit).
    PowerOff,
    /// QEMU exited 0 after a kernel panic (`panic=-1` reboots), e.g. because init exited.
    KernelPanic,
    /// QEMU itself failed: bad arguments, a missing file, a crash.
    QemuFailed(ExitStatus),
    /// The time limit passed and the harness killed QEMU.
    TimedOut,
}

/// One `CORRAL-CHECK <name> PASS|FAIL [detail]` line from the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Everything a boot produced.
#[derive(Debug)]
pub struct VmOutput {
    /// The whole serial console, `\r\n` turned into `\n`.
    pub console: String,
    /// What QEMU printed on its own stderr (its errors and warnings).
    pub qemu_stderr: String,
    pub exit: Exit,
    /// From QEMU's start to its exit (not counting the wait for the boot lock).
    pub wall: Duration,
    /// How long this boot waited for other VMs to finish.
    pub lock_wait: Duration,
    /// The checks in console order.
    pub checks: Vec<Check>,
    /// Where the console was saved.
    pub log_file: PathBuf,
}

impl VmOutput {
    pub fn timed_out(&self) -> bool {
        self.exit == Exit::TimedOut
    }

    /// N of `vm-exit N`, if the guest left that way.
    pub fn exit_code(&self) -> Option<u8> {
        match self.exit {
            Exit::Guest(code) => Some(code),
            _ => None,
        }
    }

    /// The last report of check `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().rev().find(|c| c.name == name)
    }

    /// The last `lines` lines of the console.
    pub fn console_tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.console.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Panics unless every check in `names` was reported and none of its reports failed.
    pub fn assert_passed(&self, names: &[&str]) {
        let mut problems = Vec::new();
        for name in names {
            let reports: Vec<&Check> = self.checks.iter().filter(|c| c.name == *name).collect();
            if reports.is_empty() {
                problems.push(format!("check `{name}` was never reported"));
            }
            for failed in reports.iter().filter(|c| !c.passed) {
                problems.push(format!("check `{name}` FAILED: {}", failed.detail));
            }
        }
        if !problems.is_empty() {
            self.fail(&problems.join("\n"));
        }
    }

    /// Panics unless at least one check was reported and every check passed.
    pub fn assert_all_passed(&self) {
        let problems: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("check `{}` FAILED: {}", c.name, c.detail))
            .collect();
        if self.checks.is_empty() {
            self.fail("the guest reported no checks");
        } else if !problems.is_empty() {
            self.fail(&problems.join("\n"));
        }
    }

    /// Panics unless QEMU saw exactly one power-off request (a reboot is a reset, traced by
    /// `-trace qemu_system_shutdown_request`) and the machine ended powered off.
    pub fn assert_one_power_off(&self) {
        let power_offs = self
            .qemu_stderr
            .lines()
            .filter(|l| l.contains("qemu_system_shutdown_request"))
            .count();
        if power_offs != 1 {
            self.fail(&format!(
                "QEMU saw {power_offs} power-off requests, expected one (a reboot is a reset)"
            ));
        }
        if self.exit != Exit::PowerOff {
            self.fail("expected a power-off at the end");
        }
    }

    /// Fails unless the console holds every one of `steps`, in this order (other lines may
    /// come between them).
    pub fn assert_in_order(&self, steps: &[&str]) {
        let mut rest = self.console.as_str();
        for step in steps {
            match rest.find(step) {
                Some(at) => rest = &rest[at + step.len()..],
                None => self.fail(&format!(
                    "the console lacks {step:?} in the sequence {steps:?}"
                )),
            }
        }
    }

    /// Panics unless the guest left through `vm-exit code`.
    pub fn assert_exit(&self, code: u8) {
        if self.exit != Exit::Guest(code) {
            self.fail(&format!("expected the guest to exit with vm-exit {code}"));
        }
    }

    /// Panics with `what`, how the boot ended and the tail of the console.
    pub fn fail(&self, what: &str) -> ! {
        let stderr = match self.qemu_stderr.trim() {
            "" => String::new(),
            text => format!("\nQEMU stderr:\n{text}"),
        };
        panic!(
            "{what}\nVM: {} after {:.1} s (console saved in {}){stderr}\n\
             --- last 40 console lines ---\n{}\n---",
            self.exit,
            self.wall.as_secs_f64(),
            self.log_file.display(),
            self.console_tail(40)
        )
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Guest(code) => write!(f, "guest exited with vm-exit {code}"),
            Exit::PowerOff => f.write_str("guest powered off (QEMU exit 0)"),
            Exit::KernelPanic => f.write_str("kernel panic"),
            Exit::QemuFailed(status) => write!(f, "QEMU failed: {status}"),
            Exit::TimedOut => f.write_str("timed out and killed"),
        }
    }
}

/// A VM to boot: the host kernel, one or more initramfs images and the knobs tests turn.
#[derive(Debug, Clone)]
pub struct Vm {
    initrds: Vec<PathBuf>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    kernel_params: Vec<String>,
    qemu_args: Vec<OsString>,
    memory_mib: u32,
    cpus: u32,
    timeout: Duration,
}

impl Vm {
    /// A VM booting `initrd` with 512 MiB, 2 CPUs and a [`DEFAULT_TIMEOUT`] limit.
    pub fn new(initrd: impl AsRef<Path>) -> Self {
        Vm {
            initrds: vec![initrd.as_ref().to_path_buf()],
            env: Vec::new(),
            args: Vec::new(),
            kernel_params: Vec::new(),
            qemu_args: Vec::new(),
            memory_mib: 512,
            cpus: 2,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Another image, concatenated after the previous ones: its files win. (The kernel cannot
    /// replace a symlink with another symlink, nor a non-empty directory with a file.)
    pub fn initrd(mut self, image: impl AsRef<Path>) -> Self {
        self.initrds.push(image.as_ref().to_path_buf());
        self
    }

    /// An environment variable for init (`KEY=VAL` on the kernel command line). `key` must be
    /// an identifier without dots (dotted words are module parameters), `value` have no `"`.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        let valid_key = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        assert!(
            valid_key,
            "init environment key {key:?} cannot be passed on the kernel command line"
        );
        assert!(
            !value.contains('"') && !value.contains(|c: char| c.is_control()),
            "init environment value {value:?} cannot be passed on the kernel command line"
        );
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// An argument for init (after `--` on the kernel command line); must not contain `"`.
    pub fn arg(mut self, arg: &str) -> Self {
        assert!(
            !arg.contains('"') && !arg.contains(|c: char| c.is_control()),
            "init argument {arg:?} cannot be passed on the kernel command line"
        );
        self.args.push(arg.to_owned());
        self
    }

    /// A raw kernel command-line word, e.g. `loglevel=7` (drop `quiet`'s effect) or `rdinit=…`.
    pub fn kernel_param(mut self, param: &str) -> Self {
        self.kernel_params.push(param.to_owned());
        self
    }

    /// A raw QEMU argument.
    pub fn qemu_arg(mut self, arg: impl Into<OsString>) -> Self {
        self.qemu_args.push(arg.into());
        self
    }

    /// A guest reboot resets the machine, which boots again (overriding the harness's
    /// `-no-reboot`), and QEMU records every power-off request, for
    /// [`VmOutput::assert_one_power_off`]: a run of several boots.
    pub fn reset_on_reboot(self) -> Self {
        self.qemu_arg("-action")
            .qemu_arg("reboot=reset")
            // QEMU's own record of a guest power-off (a reset does not go through it).
            .qemu_arg("-trace")
            .qemu_arg("qemu_system_shutdown_request")
    }

    /// A raw disk image as the next virtio-blk device (`/dev/vda`, `/dev/vdb`, …); the guest
    /// needs the `virtio_pci` and `virtio_blk` modules ([`Initramfs::kernel_modules`]).
    pub fn disk(self, image: impl AsRef<Path>) -> Self {
        let path = image
            .as_ref()
            .to_str()
            .expect("disk image paths must be UTF-8");
        // QEMU's option syntax escapes a comma by doubling it.
        let drive = format!("file={},if=virtio,format=raw", path.replace(',', ",,"));
        self.qemu_arg("-drive").qemu_arg(drive)
    }

    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// The time limit for the boot, from QEMU's start to its exit.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// [`Vm::run`], then prints how long the boot of `label` took and how it ended, and fails
    /// the test if it timed out.
    pub fn run_reported(&self, label: &str) -> VmOutput {
        let out = self.run();
        eprintln!(
            "VM {label} boot: {:.2} s wall, {}",
            out.wall.as_secs_f64(),
            out.exit
        );
        if out.timed_out() {
            out.fail("the VM timed out");
        }
        out
    }

    /// The kernel command line this VM boots with.
    pub fn cmdline(&self) -> String {
        let quote = |s: &str| {
            if s.is_empty() || s.contains(char::is_whitespace) {
                format!("\"{s}\"")
            } else {
                s.to_owned()
            }
        };
        let mut words = vec![
            "console=ttyS0".to_owned(),
            "panic=-1".to_owned(),
            "quiet".to_owned(),
            // `quiet` keeps corrald as PID 1 to warnings on the console (DESIGN §6); the
            // tests read its informational lines too.
            "corral.log-level=info".to_owned(),
        ];
        words.extend(self.kernel_params.iter().cloned());
        words.extend(self.env.iter().map(|(k, v)| format!("{k}={}", quote(v))));
        if !self.args.is_empty() {
            words.push("--".to_owned());
            words.extend(self.args.iter().map(|a| quote(a)));
        }
        words.join(" ")
    }

    /// Boots the VM and waits for it to exit or be killed at the time limit. Waits first for
    /// any other VM of this crate's tests to finish.
    pub fn run(&self) -> VmOutput {
        let qemu = require_tool("qemu-system-x86_64");
        let kernel = Kernel::host();
        let cmdline = self.cmdline();
        assert!(
            cmdline.len() < MAX_CMDLINE,
            "kernel command line too long ({} bytes)",
            cmdline.len()
        );
        assert!(
            self.env.len() <= MAX_INIT_ENVS,
            "at most {MAX_INIT_ENVS} init environment variables"
        );
        assert!(
            self.args.len() <= MAX_INIT_ARGS,
            "at most {MAX_INIT_ARGS} init arguments"
        );
        for image in &self.initrds {
            assert!(
                image.is_file(),
                "initramfs {} does not exist",
                image.display()
            );
        }

        let waiting = Instant::now();
        let _lock = BootLock::acquire();
        let lock_wait = waiting.elapsed();

        // Concatenated newc archives unpack one after the other (the kernel skips the padding).
        let combined;
        let initrd = if let [single] = self.initrds.as_slice() {
            single.as_path()
        } else {
            combined = NamedTempFile::new_in(cache_dir()).expect("creating a temporary initramfs");
            let mut out = combined.as_file();
            for image in &self.initrds {
                let mut input = File::open(image)
                    .unwrap_or_else(|e| panic!("opening {}: {e}", image.display()));
                io::copy(&mut input, &mut out)
                    .unwrap_or_else(|e| panic!("copying {}: {e}", image.display()));
            }
            combined.path()
        };

        let mut command = Command::new(&qemu);
        command
            .args([
                "-accel",
                "tcg",
                "-M",
                "pc",
                "-nodefaults",
                "-no-reboot",
                "-display",
                "none",
            ])
            .args([
                "-serial",
                "stdio",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ])
            .arg("-m")
            .arg(self.memory_mib.to_string())
            .arg("-smp")
            .arg(self.cpus.to_string())
            .arg("-kernel")
            .arg(kernel.vmlinux())
            .arg("-initrd")
            .arg(initrd)
            .arg("-append")
            .arg(&cmdline)
            .args(&self.qemu_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        kill_with_parent(&mut command);

        eprintln!("[vm] booting {} with: {cmdline}", kernel.version());
        let started = Instant::now();
        let mut qemu_process = Qemu(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", qemu.display())),
        );
        let console = pump(
            qemu_process.0.stdout.take().expect("stdout is piped"),
            "[vm] ",
        );
        let stderr = pump(
            qemu_process.0.stderr.take().expect("stderr is piped"),
            "[qemu] ",
        );

        let status = qemu_process.wait_until(started + self.timeout);
        let wall = started.elapsed();
        drop(qemu_process);
        let console = normalise(join(console));
        let qemu_stderr = normalise(join(stderr));

        let exit = match status {
            None => Exit::TimedOut,
            Some(status) => classify(status, &console, &qemu_stderr),
        };
        let log_file = save_log(&console, &qemu_stderr);
        eprintln!(
            "[vm] {exit} after {:.2} s (waited {:.2} s for the boot lock)",
            wall.as_secs_f64(),
            lock_wait.as_secs_f64()
        );
        VmOutput {
            checks: parse_checks(&console),
            console,
            qemu_stderr,
            exit,
            wall,
            lock_wait,
            log_file,
        }
    }
}

/// The exclusive boot lock: an `flock` on one file for the whole machine, so it serialises
/// threads (each opens its own file description), test binaries and checkouts alike (several
/// working trees on one host each have their own cache), and dies with its holder.
/// `CORRAL_VM_LOCK` names another file.
struct BootLock(File);

impl BootLock {
    fn acquire() -> Self {
        let path = std::env::var_os("CORRAL_VM_LOCK")
            .map_or_else(|| PathBuf::from("/tmp/corral-vm-boot.lock"), PathBuf::from);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        if file.try_lock().is_err() {
            eprintln!("[vm] waiting for another VM to finish ({})", path.display());
            file.lock()
                .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()));
        }
        BootLock(file)
    }
}

/// A running QEMU, killed and reaped when dropped (also when the test panics).
struct Qemu(Child);

impl Qemu {
    /// Waits for QEMU to exit; at `deadline` kills it and returns `None`. Polling `try_wait`
    /// (rather than a thread that kills by pid) can never signal a reaped, reused pid.
    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => panic!("waiting for QEMU: {e}"),
            }
            if Instant::now() >= deadline {
                eprintln!("[vm] time limit reached: killing QEMU");
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes the kernel SIGKILL QEMU when the thread that started it dies, so that a test binary
/// killed mid-boot (a CI timeout, ^C on cargo) leaves no VM running.
fn kill_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: prctl and getppid are async-signal-safe, and the closure touches nothing else.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody is left to wait for us.
            if libc::getppid() as u32 != parent {
                return Err(io::Error::other("the test process exited"));
            }
            Ok(())
        });
    }
}

/// Copies `reader` to this test's stderr line by line (each behind `prefix`) as it arrives,
/// and returns everything it read.
fn pump(mut reader: impl Read + Send + 'static, prefix: &'static str) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        let mut line_start = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            all.extend_from_slice(&buf[..n]);
            while let Some(end) = all[line_start..].iter().position(|&b| b == b'\n') {
                let line = &all[line_start..line_start + end];
                eprintln!(
                    "{prefix}{}",
                    String::from_utf8_lossy(line).trim_end_matches('\r')
                );
                line_start += end + 1;
            }
        }
        if line_start < all.len() {
            eprintln!(
                "{prefix}{}",
                String::from_utf8_lossy(&all[line_start..]).trim_end_matches('\r')
            );
        }
        all
    })
}

fn join(pump: JoinHandle<Vec<u8>>) -> Vec<u8> {
    pump.join().unwrap_or_default()
}

fn normalise(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).replace("\r\n", "\n")
}

/// Decodes QEMU's exit status. Status 1 is both `vm-exit 0` and QEMU's own failure exit: the
/// latter always comes with an error message on stderr (`qemu-system-x86_64: …`, `qemu: …`).
fn classify(status: ExitStatus, console: &str, qemu_stderr: &str) -> Exit {
    let qemu_error = qemu_stderr
        .lines()
        .any(|line| line.starts_with("qemu") && !line.contains("warning:"));
    match status.code() {
        Some(0) if console.contains(PANIC_MARKER) => Exit::KernelPanic,
        Some(0) => Exit::PowerOff,
        Some(code) if code & 1 == 1 && !qemu_error => Exit::Guest((code >> 1) as u8),
        _ => Exit::QemuFailed(status),
    }
}

/// The `CORRAL-CHECK` lines of `console`, in order. A malformed one counts as a failure.
pub fn parse_checks(console: &str) -> Vec<Check> {
    console
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(CHECK_MARKER)? + CHECK_MARKER.len()..];
            let mut words = rest.trim().splitn(3, char::is_whitespace);
            let name = words.next().unwrap_or_default().to_owned();
            let status = words.next().unwrap_or_default();
            let detail = words.next().unwrap_or_default().trim().to_owned();
            Some(match status {
                "PASS" => Check {
                    name,
                    passed: true,
                    detail,
                },
                "FAIL" => Check {
                    name,
                    passed: false,
                    detail,
                },
                _ => Check {
                    name,
                    passed: false,
                    detail: format!("malformed check line: {line}"),
                },
            })
        })
        .collect()
}

/// Saves the console of this boot as `vm-cache/logs/<test name>.log`.
fn save_log(console: &str, qemu_stderr: &str) -> PathBuf {
    let name: String = thread::current()
        .name()
        .unwrap_or("vm")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = cache_dir().join("logs").join(format!("{name}.log"));
    let text = format!("{console}\n--- QEMU stderr ---\n{qemu_stderr}");
    if let Err(e) = fs::write(&path, text) {
        eprintln!("[vm] could not save the console to {}: {e}", path.display());
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        use Ordering::*;
        assert_eq!(compare_versions("6.1.0-9-amd64", "6.1.0-10-amd64"), Less);
        assert_eq!(compare_versions("6.10.0-1-amd64", "6.9.0-1-amd64"), Greater);
        assert_eq!(compare_versions("6.1.0-56-amd64", "6.1.0-56-amd64"), Equal);
    }

    #[test]
    fn checks_are_parsed_anywhere_in_a_line() {
        let console = "boot\nCORRAL-CHECK pid1 PASS\r\n[ 1.0] x CORRAL-CHECK mem FAIL got 3 want 4\nCORRAL-CHECK odd MAYBE\n";
        let checks = parse_checks(console);
        assert_eq!(
            checks[0],
            Check {
                name: "pid1".into(),
                passed: true,
                detail: String::new()
            }
        );
        assert_eq!(
            checks[1],
            Check {
                name: "mem".into(),
                passed: false,
                detail: "got 3 want 4".into()
            }
        );
        assert!(!checks[2].passed);
    }

    #[test]
    fn cmdline_quotes_spaces() {
        let vm = Vm::new("/x").env("A", "b c").arg("--flag").arg("two words");
        assert_eq!(
            vm.cmdline(),
            "console=ttyS0 panic=-1 quiet corral.log-level=info A=\"b c\" -- --flag \"two words\""
        );
    }
}
