//! `corralctl doctor`: what this machine offers corral, found with no daemon (DESIGN §9). One
//! [`Finding`] per line — `ok`, `warn` or `error` — and every `warn` and `error` says how to fix
//! it.
//!
//! What is looked at, all from files so that tests can hand in a fake machine ([`Roots`]):
//! - `PROC/self/mountinfo`: every cgroup mount, v1 (`cgroup`, with the controllers in its super
//!   options) and v2 (`cgroup2`), which gives the layout: **unified** (cgroup2 only — a v1
//!   hierarchy with no controller, such as systemd's `name=systemd`, does not count), **hybrid**
//!   (cgroup2 beside v1 controller hierarchies, the unified one usually at
//!   `/sys/fs/cgroup/unified`) or **legacy** (no cgroup2);
//! - `PROC/cgroups`: each controller the kernel has, the hierarchy it is bound to (0: cgroup2 or
//!   none) and whether it is enabled (`cgroup_disable=` turns one off). A controller bound to a
//!   v1 hierarchy can't be on cgroup2 at the same time; cgroup2 itself lists what it offers in
//!   its root's `cgroup.controllers`. v2's `io` is `blkio` in this file;
//! - the cgroup2 tree: who owns it — corrald as PID 1 (`PROC/1/comm`, or PID 1 answering on
//!   corrald's socket, since as `/init` its name is `init`), or a cgroup delegated by
//!   the `trusted.delegate`/`user.delegate` xattrs (looked for a few levels down), and which
//!   process its `init.scope` holds;
//! - `PROC/sys/kernel/osrelease` and `PROC/self/ns/time`: kernel features by the version that
//!   brought them (clone3 with `CLONE_INTO_CGROUP` 5.7, pidfd 5.3, `cgroup.kill` 5.14) and by
//!   what exists (time namespaces, PSI files);
//! - the bus socket and corrald's private socket (connected to, so a stale one shows).
//!
//! Every path read from mountinfo is taken under `Roots::fs`, so a fixture tree stands in for
//! `/`. Reading is bounded: the delegation search stops at a depth of 4 and 64 directories.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::cgroup::ownership::{DELEGATE_XATTRS, get_xattr, unescape};
use crate::cgroup::tree::INIT_SCOPE;
use crate::cgroup::{CONTROLLERS, Controller, ControllerSet, PROCS};

/// The boot parameters that put every controller on cgroup2.
pub const UNIFIED_BOOT: &str =
    "boot with `systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all` on the kernel command line";

/// Where the machine's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// `/proc`.
    pub proc: PathBuf,
    /// The root that mount points (from mountinfo) are under: `/`.
    pub fs: PathBuf,
    /// The bus corrald would join.
    pub bus_socket: PathBuf,
    /// corrald's private socket.
    pub daemon_socket: PathBuf,
}

impl Roots {
    /// This machine, for the system manager or (with `user`) the user's.
    pub fn this_machine(user: bool) -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let runtime = match env("XDG_RUNTIME_DIR") {
            Some(r) if user => PathBuf::from(r),
            _ if user => PathBuf::from(format!("/run/user/{}", nix::unistd::getuid())),
            _ => PathBuf::from("/run"),
        };
        let (bus_var, bus_default) = if user {
            ("DBUS_SESSION_BUS_ADDRESS", runtime.join("bus"))
        } else {
            (
                "DBUS_SYSTEM_BUS_ADDRESS",
                PathBuf::from("/run/dbus/system_bus_socket"),
            )
        };
        let bus_socket = env(bus_var)
            .and_then(|a| {
                a.split(';').find_map(|t| {
                    t.strip_prefix("unix:path=")
                        .map(|p| p.split(',').next().unwrap_or(p).to_string())
                })
            })
            .map_or(bus_default, PathBuf::from);
        Roots {
            proc: "/proc".into(),
            fs: "/".into(),
            bus_socket,
            daemon_socket: runtime.join("corral/private"),
        }
    }

    fn under_fs(&self, abs: &Path) -> PathBuf {
        self.fs.join(abs.strip_prefix("/").unwrap_or(abs))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub level: Level,
    /// What was checked: `layout`, `cpu`, `tree`, `kernel`, …
    pub check: String,
    pub message: String,
    /// How to fix it (every `warn` and `error` has one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {}: {}", self.level, self.check, self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, " — fix: {fix}")?;
        }
        Ok(())
    }
}

/// Everything doctor found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn push(&mut self, level: Level, check: &str, message: impl Into<String>, fix: Option<String>) {
        self.findings.push(Finding {
            level,
            check: check.into(),
            message: message.into(),
            fix,
        });
    }

    fn ok(&mut self, check: &str, message: impl Into<String>) {
        self.push(Level::Ok, check, message, None);
    }

    fn bad(
        &mut self,
        level: Level,
        check: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.push(level, check, message, Some(fix.into()));
    }

    pub fn errors(&self) -> usize {
        self.count(Level::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Level::Warn)
    }

    fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    /// The finding of a check, for tests and scripts.
    pub fn get(&self, check: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.check == check)
    }

    pub fn to_text(&self) -> String {
        self.findings.iter().map(|f| format!("{f}\n")).collect()
    }

    pub fn to_json(&self) -> String {
        let v = serde_json::json!({
            "findings": self.findings,
            "errors": self.errors(),
            "warnings": self.warnings(),
        });
        format!("{v}\n")
    }
}

/// The cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Unified,
    Hybrid,
    Legacy,
    None,
}

/// A cgroup mount from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub mount_point: PathBuf,
    pub v2: bool,
    /// v1: the controllers (and `name=…`) in its super options.
    pub controllers: Vec<String>,
}

/// Every cgroup and cgroup2 mount in a mountinfo text.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    const NOT_CONTROLLERS: [&str; 8] = [
        "rw",
        "ro",
        "nsdelegate",
        "memory_recursiveprot",
        "clone_children",
        "noprefix",
        "xattr",
        "favordynmods",
    ];
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mut post = post.split_whitespace();
            let fstype = post.next()?;
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let mount_point = PathBuf::from(unescape(pre.split_whitespace().nth(4)?));
            let supers = post.nth(1).unwrap_or("");
            let controllers = if v2 {
                Vec::new()
            } else {
                supers
                    .split(',')
                    .filter(|o| {
                        !o.is_empty()
                            && !NOT_CONTROLLERS.contains(o)
                            && !o.starts_with("release_agent=")
                    })
                    .map(String::from)
                    .collect()
            };
            Some(CgroupMount {
                mount_point,
                v2,
                controllers,
            })
        })
        .collect()
}

/// The layout the mounts make.
pub fn layout(mounts: &[CgroupMount]) -> Layout {
    let v2 = mounts.iter().any(|m| m.v2);
    let v1_controllers = mounts
        .iter()
        .any(|m| !m.v2 && m.controllers.iter().any(|c| !c.starts_with("name=")));
    match (v2, v1_controllers) {
        (true, false) => Layout::Unified,
        (true, true) => Layout::Hybrid,
        (false, true) => Layout::Legacy,
        (false, false) if mounts.is_empty() => Layout::None,
        (false, false) => Layout::Legacy,
    }
}

/// One row of `/proc/cgroups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelController {
    pub name: String,
    pub hierarchy: u32,
    pub enabled: bool,
}

/// `/proc/cgroups`: `#subsys_name hierarchy num_cgroups enabled`.
pub fn proc_cgroups(text: &str) -> Vec<KernelController> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(KernelController {
                name: f.first()?.to_string(),
                hierarchy: f.get(1)?.parse().ok()?,
                enabled: *f.get(3)? == "1",
            })
        })
        .collect()
}

/// `"6.1.0-13-amd64"` → `(6, 1)`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Inspects the machine under `roots`.
pub fn inspect(roots: &Roots) -> Report {
    let mut r = Report::default();
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    let mountinfo = read(roots.proc.join("self/mountinfo")).unwrap_or_default();
    let mounts = cgroup_mounts(&mountinfo);
    let v2 = mounts.iter().find(|m| m.v2).cloned();
    let cg2 = v2.as_ref().map(|m| roots.under_fs(&m.mount_point));
    let kernel = read(roots.proc.join("cgroups"))
        .map(|t| proc_cgroups(&t))
        .unwrap_or_default();

    layout_finding(&mut r, &mounts, v2.as_ref());
    let offered = cg2
        .as_ref()
        .and_then(|p| read(p.join(CONTROLLERS)))
        .map(|t| ControllerSet::parse(&t));
    let owner = tree_findings_prepare(roots, cg2.as_deref());
    controller_findings(&mut r, &mounts, &kernel, offered, v2.as_ref(), &owner);
    tree_finding(&mut r, &owner, cg2.as_deref());
    kernel_findings(&mut r, roots, cg2.as_deref());
    socket_findings(&mut r, roots);
    r
}

fn layout_finding(r: &mut Report, mounts: &[CgroupMount], v2: Option<&CgroupMount>) {
    let v1: Vec<String> = mounts
        .iter()
        .filter(|m| !m.v2 && !m.controllers.iter().all(|c| c.starts_with("name=")))
        .map(|m| format!("{} at {}", m.controllers.join(","), m.mount_point.display()))
        .collect();
    match (layout(mounts), v2) {
        (Layout::Unified, Some(m)) => r.ok(
            "layout",
            format!("unified: cgroup2 at {}", m.mount_point.display()),
        ),
        (Layout::Hybrid, Some(m)) => r.bad(
            Level::Warn,
            "layout",
            format!(
                "hybrid: cgroup2 at {}, and cgroup v1 holds {}",
                m.mount_point.display(),
                v1.join("; ")
            ),
            UNIFIED_BOOT,
        ),
        (Layout::None, _) => r.bad(
            Level::Error,
            "layout",
            "no cgroup file system is mounted",
            format!("mount cgroup2 (`mount -t cgroup2 cgroup2 /sys/fs/cgroup`), or {UNIFIED_BOOT}"),
        ),
        _ => r.bad(
            Level::Error,
            "layout",
            format!(
                "legacy: no cgroup2 is mounted (cgroup v1 holds {}); corrald can't start",
                v1.join("; ")
            ),
            UNIFIED_BOOT,
        ),
    }
}

/// `/proc/cgroups` calls v2's io controller by its v1 name.
fn kernel_name(c: Controller) -> &'static str {
    match c {
        Controller::Io => "blkio",
        other => other.name(),
    }
}

/// What each controller does for corral, and how bad its absence is.
fn role(c: Controller) -> (&'static str, Level) {
    match c {
        Controller::Cpu => ("cpu-max, cpu-weight", Level::Error),
        Controller::Memory => ("memory-* and memory accounting", Level::Error),
        Controller::Pids => ("pids-max and task accounting", Level::Error),
        Controller::Io => ("io-max, io-weight", Level::Warn),
        Controller::Cpuset => ("cpuset-cpus, cpuset-mems", Level::Warn),
    }
}

fn controller_findings(
    r: &mut Report,
    mounts: &[CgroupMount],
    kernel: &[KernelController],
    offered: Option<ControllerSet>,
    v2: Option<&CgroupMount>,
    owner: &Owner,
) {
    for c in Controller::ALL {
        let (keys, level) = role(c);
        let name = c.name();
        let row = kernel.iter().find(|k| k.name == kernel_name(c));
        let v1_at = mounts.iter().find(|m| {
            !m.v2
                && m.controllers
                    .iter()
                    .any(|x| x == kernel_name(c) || x == name)
        });
        let on_v2 = offered.is_some_and(|o| o.contains(c));
        if let Some(k) = row
            && !k.enabled
        {
            r.bad(
                level,
                name,
                format!("disabled on the kernel command line; {keys} can't be enforced"),
                format!(
                    "remove `cgroup_disable={}` from the kernel command line",
                    k.name
                ),
            );
        } else if on_v2 {
            let mount = v2.map_or(String::new(), |m| m.mount_point.display().to_string());
            match &owner.delegated_missing(c) {
                Some(at) => r.bad(
                    Level::Warn,
                    name,
                    format!(
                        "on cgroup2 at {mount}, but not offered to the delegated tree {}",
                        at.display()
                    ),
                    format!(
                        "enable it in the parent's cgroup.subtree_control (under systemd: \
                         Delegate=yes, or DelegateControllers= naming {name})"
                    ),
                ),
                None => r.ok(name, format!("on cgroup2 at {mount}")),
            }
        } else if let Some(m) = v1_at {
            r.bad(
                level,
                name,
                format!(
                    "bound to cgroup v1 at {}, so cgroup2 can't offer it; {keys} can't be enforced",
                    m.mount_point.display()
                ),
                UNIFIED_BOOT,
            );
        } else if row.is_none() && !kernel.is_empty() {
            r.bad(
                level,
                name,
                format!("the kernel has no {name} controller; {keys} can't be enforced"),
                "use a kernel built with it (Debian's kernels have every controller)",
            );
        } else if v2.is_none() {
            r.bad(
                level,
                name,
                format!("no cgroup2 to offer it; {keys} can't be enforced"),
                UNIFIED_BOOT,
            );
        } else {
            r.bad(
                level,
                name,
                format!(
                    "not offered by cgroup2's root (cgroup.controllers); {keys} can't be enforced"
                ),
                format!("{UNIFIED_BOOT}, so that no v1 hierarchy holds it"),
            );
        }
    }
}

/// A delegated cgroup found in the tree.
#[derive(Debug)]
struct Delegated {
    path: PathBuf,
    /// The xattr that marks it.
    mark: &'static str,
    /// What its init.scope holds: `(pid, comm)`.
    held: Option<(u32, String)>,
    /// The controllers it is offered.
    offers: ControllerSet,
}

/// Who owns the cgroup2 tree, as far as files tell.
#[derive(Debug, Default)]
struct Owner {
    pid1: Option<String>,
    delegated: Vec<Delegated>,
    /// The controllers the hierarchy's root offers.
    root_offers: ControllerSet,
}

impl Owner {
    /// The tree corrald would use, if it lacks a controller the root has.
    fn delegated_missing(&self, c: Controller) -> Option<PathBuf> {
        if self.pid1.as_deref() == Some("corrald") {
            return None;
        }
        let d = self.corrald_tree()?;
        (self.root_offers.contains(c) && !d.offers.contains(c)).then(|| d.path.clone())
    }

    /// The delegated cgroup corrald runs in, else the first delegated one.
    fn corrald_tree(&self) -> Option<&Delegated> {
        self.delegated
            .iter()
            .find(|d| d.held.as_ref().is_some_and(|(_, c)| c == "corrald"))
            .or_else(|| self.delegated.first())
    }
}

fn tree_findings_prepare(roots: &Roots, cg2: Option<&Path>) -> Owner {
    let mut owner = Owner {
        pid1: std::fs::read_to_string(roots.proc.join("1/comm"))
            .ok()
            .map(|s| s.trim().to_string()),
        ..Owner::default()
    };
    // As PID 1 corrald is often installed as /init (comm "init"): the daemon's socket says who
    // serves it.
    if daemon_peer_pid(&roots.daemon_socket) == Some(1) {
        owner.pid1 = Some("corrald".into());
    }
    let Some(root) = cg2 else { return owner };
    owner.root_offers = std::fs::read_to_string(root.join(CONTROLLERS))
        .map(|t| ControllerSet::parse(&t))
        .unwrap_or_default();
    // Breadth first, bounded: delegated cgroups are near the top (system.slice/x.service,
    // user.slice/user-N.slice/user@N.service/…); a delegated one is not searched below.
    let mut queue = vec![(root.to_path_buf(), 0)];
    let mut seen = 0;
    while let Some((dir, depth)) = (!queue.is_empty()).then(|| queue.remove(0)) {
        seen += 1;
        if seen > 64 {
            break;
        }
        if depth > 0
            && let Some(mark) = DELEGATE_XATTRS.iter().find(|x| {
                get_xattr(&dir, x)
                    .ok()
                    .flatten()
                    .is_some_and(|v| v.as_slice() != b"0")
            })
        {
            let held = std::fs::read_to_string(dir.join(INIT_SCOPE).join(PROCS))
                .ok()
                .and_then(|t| t.lines().find_map(|l| l.trim().parse::<u32>().ok()))
                .map(|pid| {
                    let comm = std::fs::read_to_string(roots.proc.join(format!("{pid}/comm")))
                        .map(|c| c.trim().to_string())
                        .unwrap_or_else(|_| "unknown".into());
                    (pid, comm)
                });
            let offers = std::fs::read_to_string(dir.join(CONTROLLERS))
                .map(|t| ControllerSet::parse(&t))
                .unwrap_or_default();
            owner.delegated.push(Delegated {
                path: dir,
                mark,
                held,
                offers,
            });
            continue;
        }
        if depth >= 4 {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut children: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        children.sort();
        queue.extend(children.into_iter().map(|c| (c, depth + 1)));
    }
    owner
}

/// The PID of the process serving corrald's socket (`SO_PEERCRED`), if one answers.
fn daemon_peer_pid(socket: &Path) -> Option<i32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    getsockopt(&stream, PeerCredentials).ok().map(|c| c.pid())
}

fn tree_finding(r: &mut Report, owner: &Owner, cg2: Option<&Path>) {
    let Some(root) = cg2 else {
        r.bad(
            Level::Error,
            "tree",
            "no cgroup2 tree for corrald to manage",
            UNIFIED_BOOT,
        );
        return;
    };
    let init = owner.pid1.as_deref().unwrap_or("unknown");
    if init == "corrald" {
        r.ok(
            "tree",
            format!(
                "corrald is PID 1 and owns the whole hierarchy at {}",
                root.display()
            ),
        );
        return;
    }
    let how = "run corrald under systemd with Delegate=yes (the packaged corrald.service), under \
               corral with delegate = true, or pass --cgroup-root with a cgroup you created";
    match owner.corrald_tree() {
        Some(Delegated {
            path,
            mark,
            held: Some((pid, comm)),
            ..
        }) if comm == "corrald" => r.ok(
            "tree",
            format!(
                "{} is delegated ({mark}) and corrald (PID {pid}) manages it; the hierarchy's \
                 root belongs to PID 1 ({init})",
                path.display()
            ),
        ),
        Some(Delegated {
            path, mark, held, ..
        }) => {
            let holder = match held {
                Some((pid, comm)) => {
                    format!("; its {INIT_SCOPE} holds PID {pid} ({comm}), another manager")
                }
                None => String::new(),
            };
            let others = owner.delegated.len() - 1;
            let more = if others > 0 {
                format!(" (and {others} more)")
            } else {
                String::new()
            };
            r.ok(
                "tree",
                format!(
                    "the hierarchy's root belongs to PID 1 ({init}); {}{more} is delegated \
                     ({mark}){holder}: corrald started in a delegated cgroup of its own takes it",
                    path.display()
                ),
            )
        }
        None => r.bad(
            Level::Warn,
            "tree",
            format!(
                "the hierarchy at {} belongs to PID 1 ({init}) and no cgroup in it is delegated \
                 (no trusted.delegate or user.delegate xattr): corrald has no tree of its own",
                root.display()
            ),
            how,
        ),
    }
}

fn kernel_findings(r: &mut Report, roots: &Roots, cg2: Option<&Path>) {
    let release = std::fs::read_to_string(roots.proc.join("sys/kernel/osrelease"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let version = kernel_version(&release);
    let at_least = |v: (u32, u32)| version.is_some_and(|k| k >= v);
    let upgrade = "use Linux 6.1 or newer (Debian 12's kernel)";
    match version {
        Some(v) if v >= (6, 1) => r.ok("kernel", format!("Linux {release}")),
        Some(v) if v >= (5, 7) => r.bad(
            Level::Warn,
            "kernel",
            format!("Linux {release}: older than 6.1, the oldest corral is tested on"),
            upgrade,
        ),
        Some(_) => r.bad(
            Level::Error,
            "kernel",
            format!("Linux {release}: older than 5.7, which corral's spawning needs"),
            upgrade,
        ),
        None => r.bad(
            Level::Warn,
            "kernel",
            format!("can't read the kernel version ({:?})", release),
            "mount /proc",
        ),
    }
    for (check, since, what, level) in [
        (
            "clone3",
            (5, 7),
            "clone3 with CLONE_INTO_CGROUP (services start in their cgroup)",
            Level::Error,
        ),
        (
            "pidfd",
            (5, 3),
            "pidfds (adopting services after a restart)",
            Level::Error,
        ),
        (
            "cgroup.kill",
            (5, 14),
            "cgroup.kill (stopping every process of a unit at once)",
            Level::Error,
        ),
    ] {
        if at_least(since) {
            r.ok(
                check,
                format!("{what}: since Linux {}.{}", since.0, since.1),
            );
        } else {
            r.bad(
                level,
                check,
                format!("{what} needs Linux {}.{}", since.0, since.1),
                upgrade,
            );
        }
    }
    if roots.proc.join("self/ns/time").exists() {
        r.ok("time namespace", "available (namespaces.time)");
    } else {
        r.bad(
            Level::Warn,
            "time namespace",
            "the kernel has no time namespaces: units with time = true fail to start",
            "use a kernel built with CONFIG_TIME_NS (Linux 5.6+; Debian's has it)",
        );
    }
    if let Some(root) = cg2 {
        if root.join("cpu.pressure").exists() {
            r.ok(
                "psi",
                "pressure stall information (CPUPressure, MemoryPressure, IOPressure)",
            );
        } else {
            r.bad(
                Level::Warn,
                "psi",
                "no pressure stall information: the *Pressure properties read as unknown",
                "boot with `psi=1` (a kernel built with CONFIG_PSI)",
            );
        }
    }
}

fn socket_findings(r: &mut Report, roots: &Roots) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false)
    };
    if is_socket(&roots.bus_socket) {
        r.ok(
            "bus",
            format!("D-Bus socket at {}", roots.bus_socket.display()),
        );
    } else {
        r.bad(
            Level::Warn,
            "bus",
            format!(
                "no D-Bus socket at {}: corralctl as root uses corrald's private socket, but \
                 other users read through the bus",
                roots.bus_socket.display()
            ),
            "install and start dbus (`apt install dbus`), or run dbus-daemon as a corral unit",
        );
    }
    let sock = &roots.daemon_socket;
    if !sock.exists() {
        r.bad(
            Level::Warn,
            "daemon",
            format!("corrald is not running: no socket at {}", sock.display()),
            "start it: `systemctl start corrald`, or corrald as PID 1",
        );
    } else if !is_socket(sock) {
        r.bad(
            Level::Warn,
            "daemon",
            format!("{} is not a socket", sock.display()),
            "remove it and start corrald",
        );
    } else {
        match std::os::unix::net::UnixStream::connect(sock) {
            Ok(_) => r.ok("daemon", format!("corrald answers on {}", sock.display())),
            Err(e) => r.bad(
                Level::Warn,
                "daemon",
                format!("{} does not answer ({e}): a stale socket", sock.display()),
                "start corrald (it replaces the socket)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn layouts_from_mountinfo() {
        let m = cgroup_mounts(HYBRID);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(m[2].controllers, ["name=systemd"]);
        assert!(m[3].v2);
        assert_eq!(layout(&m), Layout::Hybrid);
        let unified =
            "24 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(layout(&cgroup_mounts(unified)), Layout::Unified);
        // systemd's named v1 hierarchy beside cgroup2 holds no controller: still unified.
        let named = format!(
            "{unified}40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
        );
        assert_eq!(layout(&cgroup_mounts(&named)), Layout::Unified);
        let legacy: String = HYBRID.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert_eq!(layout(&cgroup_mounts(&legacy)), Layout::Legacy);
        assert_eq!(layout(&[]), Layout::None);
    }

    #[test]
    fn proc_cgroups_and_versions() {
        let rows = proc_cgroups(
            "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t1\t1\nmemory\t0\t1\t0\nbad\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].hierarchy, 1);
        assert!(!rows[1].enabled);
        assert_eq!(kernel_version("6.1.0-13-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("6.18.44-fc-v1098\n"), Some((6, 18)));
        assert_eq!(kernel_version("junk"), None);
    }
}
