//! Which cgroup tree is corrald's (DESIGN §1, "one manager per tree"), and marking a unit's
//! cgroup as delegated to a nested manager (`delegate = true`).
//!
//! The root, in order:
//! 1. as PID 1, the whole hierarchy (the cgroup2 mount; `--cgroup-root` is not consulted, as
//!    the design's "otherwise" says);
//! 2. `--cgroup-root PATH`: a cgroup below the cgroup2 mount that the operator created (and
//!    chowned, for a user manager); no delegation mark is required — the flag is the operator
//!    saying so;
//! 3. the cgroup corrald was started in (`0::/path` in `/proc/self/cgroup`) — or its parent, if
//!    that cgroup is named `init.scope` (a delegated daemon restarting finds its tree again) —
//!    when it is delegated: it carries the `trusted.delegate` or `user.delegate` xattr (systemd
//!    sets them for `Delegate=yes`, corral for `delegate = true`), or in user mode it is owned by
//!    the daemon's uid.
//!
//! Whatever the source, the root must not be the root of the hierarchy unless corrald is PID 1
//! (that tree belongs to the init system), its `cgroup.procs` and `cgroup.subtree_control` must
//! be writable, and its `init.scope` must not hold a live process other than corrald itself:
//! that would be another manager, and two managers of one tree is the failure this design
//! exists to prevent. Every refusal says who owns the tree and how to delegate one.
//!
//! The root of the hierarchy is recognised by having no `cgroup.type` (every other cgroup has
//! one), which also holds inside a cgroup namespace, where the namespace's root is an ordinary
//! cgroup.
//!
//! Extended attributes: nix has no xattr calls, so [`get_xattr`]/[`set_xattr`] are small
//! wrappers over `libc` (already a direct dependency).

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{AccessFlags, Gid, Uid, access, chown};

use super::tree::INIT_SCOPE;
use super::{CgroupError, PROCS, SUBTREE_CONTROL, TYPE, os_msg};

/// The xattrs that mark a cgroup as delegated, in the order they are checked.
pub const DELEGATE_XATTRS: [&str; 2] = ["trusted.delegate", "user.delegate"];

const HOW_TO_DELEGATE: &str = "To give corrald a tree of its own: run it under systemd with \
     Delegate=yes, under corral with delegate = true, or pass --cgroup-root with a cgroup you \
     created (and chowned to corrald's user). `corralctl doctor` shows who owns which tree";

/// Why corrald may not manage a tree.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    #[error(
        "no cgroup2 file system is mounted (none in /proc/self/mountinfo): this machine keeps \
         its controllers on cgroup v1; `corralctl doctor` shows where and how to move them"
    )]
    NoCgroup2,
    #[error("reading {}: {}", path.display(), os_msg(err))]
    Read { path: PathBuf, err: io::Error },
    #[error("no cgroup v2 entry (\"0::/…\") in /proc/self/cgroup")]
    NoOwnCgroup,
    #[error(
        "corrald's cgroup {own} is not visible under the cgroup2 mount {} (which shows {root})",
        mount.display()
    )]
    OwnCgroupNotVisible {
        own: String,
        mount: PathBuf,
        root: String,
    },
    #[error(
        "{} is the root of the cgroup hierarchy: it belongs to the init system, and corrald \
         manages it only as PID 1. {HOW_TO_DELEGATE}",
        path.display()
    )]
    HierarchyRoot { path: PathBuf },
    #[error(
        "{} (the cgroup corrald was started in) is not delegated to it: it has neither the \
         trusted.delegate nor the user.delegate xattr{owner}. {HOW_TO_DELEGATE}",
        path.display()
    )]
    NotDelegated { path: PathBuf, owner: String },
    #[error("--cgroup-root {}: {reason}. {HOW_TO_DELEGATE}", path.display())]
    BadRootFlag { path: PathBuf, reason: String },
    #[error(
        "cannot manage {}: {} is not writable ({}). {HOW_TO_DELEGATE}",
        path.display(), file.display(), err.desc()
    )]
    NotWritable {
        path: PathBuf,
        file: PathBuf,
        err: Errno,
    },
    #[error(
        "{} is managed by another process: {} holds PID {pid} ({comm}). Two managers must not \
         share a tree; stop that manager, or give corrald a tree of its own. {HOW_TO_DELEGATE}",
        root.display(), scope.display()
    )]
    OtherManager {
        root: PathBuf,
        scope: PathBuf,
        pid: u32,
        comm: String,
    },
}

/// How the chosen root came to be ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootSource {
    /// PID 1: the whole hierarchy.
    WholeHierarchy,
    /// `--cgroup-root`.
    Flag,
    /// The cgroup corrald was started in, delegated by this mark.
    Delegated(DelegationMark),
}

/// What says a cgroup is delegated to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegationMark {
    TrustedXattr,
    UserXattr,
    /// User mode: the cgroup belongs to the daemon's uid.
    OwnedByUid(u32),
}

impl fmt::Display for DelegationMark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DelegationMark::TrustedXattr => f.write_str("trusted.delegate xattr"),
            DelegationMark::UserXattr => f.write_str("user.delegate xattr"),
            DelegationMark::OwnedByUid(uid) => write!(f, "owned by uid {uid}"),
        }
    }
}

/// The tree corrald will manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupRoot {
    pub path: PathBuf,
    pub source: RootSource,
}

/// Everything [`decide_root`] needs; [`RootRequest::detect`] fills it from the running process,
/// tests fill it by hand with a temp dir as the mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRequest {
    pub is_pid1: bool,
    pub user_mode: bool,
    /// `--cgroup-root`.
    pub cgroup_root: Option<PathBuf>,
    /// Where cgroup2 is mounted.
    pub mount: PathBuf,
    /// The directory of the cgroup corrald runs in, under `mount`.
    pub own_cgroup: PathBuf,
    pub uid: u32,
    pub pid: u32,
}

impl RootRequest {
    /// Reads `/proc/self/mountinfo`, `/proc/self/cgroup`, the PID and uid.
    pub fn detect(user_mode: bool, cgroup_root: Option<PathBuf>) -> Result<Self, OwnershipError> {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|err| OwnershipError::Read {
                path: PathBuf::from(p),
                err,
            })
        };
        let mount =
            parse_mountinfo(&read("/proc/self/mountinfo")?).ok_or(OwnershipError::NoCgroup2)?;
        let own =
            parse_proc_cgroup(&read("/proc/self/cgroup")?).ok_or(OwnershipError::NoOwnCgroup)?;
        let own_cgroup = mount
            .dir_of(&own)
            .ok_or_else(|| OwnershipError::OwnCgroupNotVisible {
                own: own.clone(),
                mount: mount.mount_point.clone(),
                root: mount.root.clone(),
            })?;
        let pid = nix::unistd::getpid().as_raw() as u32;
        Ok(RootRequest {
            is_pid1: pid == 1,
            user_mode,
            cgroup_root,
            mount: mount.mount_point,
            own_cgroup,
            uid: Uid::current().as_raw(),
            pid,
        })
    }
}

/// A cgroup2 mount from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    pub mount_point: PathBuf,
    /// The cgroup shown at the mount point (`/` unless a subtree is bind-mounted).
    pub root: String,
}

impl Cgroup2Mount {
    /// The directory of the cgroup `/path` (as in `/proc/self/cgroup`) under this mount.
    pub fn dir_of(&self, cgroup: &str) -> Option<PathBuf> {
        let rest = if self.root == "/" {
            cgroup
        } else {
            let rest = cgroup.strip_prefix(self.root.as_str())?;
            if !(rest.is_empty() || rest.starts_with('/')) {
                return None;
            }
            rest
        };
        Some(self.mount_point.join(rest.trim_start_matches('/')))
    }
}

/// The first cgroup2 mount in a mountinfo text. Fields: `ID PARENT MAJ:MIN ROOT MOUNTPOINT
/// OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTS`, paths with `\040`-style octal escapes.
pub fn parse_mountinfo(text: &str) -> Option<Cgroup2Mount> {
    text.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = pre.split_whitespace().collect();
        Some(Cgroup2Mount {
            root: unescape(fields.get(3)?),
            mount_point: PathBuf::from(unescape(fields.get(4)?)),
        })
    })
}

/// Undoes mountinfo's `\040`-style octal escapes in a path field.
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v2 path in `/proc/self/cgroup`: the `0::/path` line.
pub fn parse_proc_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().to_string())
}

/// True for the root of the hierarchy: the only cgroup without `cgroup.type`.
pub fn is_hierarchy_root(dir: &Path) -> bool {
    dir.is_dir() && !dir.join(TYPE).exists()
}

/// Decides the tree corrald manages, or why it may not manage one.
pub fn decide_root(req: &RootRequest) -> Result<CgroupRoot, OwnershipError> {
    if req.is_pid1 {
        return Ok(CgroupRoot {
            path: req.mount.clone(),
            source: RootSource::WholeHierarchy,
        });
    }
    let (path, source) = match &req.cgroup_root {
        Some(p) => {
            let bad = |reason: &str| OwnershipError::BadRootFlag {
                path: p.clone(),
                reason: reason.to_string(),
            };
            // Canonical, so `..` or a symlink can't lead outside the mount unnoticed.
            let Ok(canonical) = p.canonicalize() else {
                return Err(bad("no such cgroup (create it first)"));
            };
            let mount = req
                .mount
                .canonicalize()
                .unwrap_or_else(|_| req.mount.clone());
            if !canonical.starts_with(&mount) {
                return Err(bad(&format!(
                    "not below the cgroup2 mount {}",
                    req.mount.display()
                )));
            }
            if !canonical.is_dir() {
                return Err(bad("not a cgroup directory"));
            }
            (canonical, RootSource::Flag)
        }
        None => {
            let mut dir = req.own_cgroup.clone();
            if dir.file_name().is_some_and(|n| n == INIT_SCOPE) {
                dir.pop();
            }
            if is_hierarchy_root(&dir) {
                return Err(OwnershipError::HierarchyRoot { path: dir });
            }
            match delegation_mark(&dir, req.user_mode, req.uid) {
                Some(mark) => (dir, RootSource::Delegated(mark)),
                None => {
                    let owner = match dir.metadata() {
                        Ok(m) if req.user_mode => {
                            format!(", and it is owned by uid {}, not {}", m.uid(), req.uid)
                        }
                        _ => String::new(),
                    };
                    return Err(OwnershipError::NotDelegated { path: dir, owner });
                }
            }
        }
    };
    if is_hierarchy_root(&path) {
        return Err(OwnershipError::HierarchyRoot { path });
    }
    for name in [PROCS, SUBTREE_CONTROL] {
        let file = path.join(name);
        if let Err(err) = access(&file, AccessFlags::W_OK) {
            return Err(OwnershipError::NotWritable { path, file, err });
        }
    }
    if let Some((pid, comm)) = other_manager(&path, req.pid)? {
        return Err(OwnershipError::OtherManager {
            scope: path.join(INIT_SCOPE),
            root: path,
            pid,
            comm,
        });
    }
    Ok(CgroupRoot { path, source })
}

/// What marks `dir` as delegated: a delegate xattr, or (user mode) ownership by `uid`.
pub fn delegation_mark(dir: &Path, user_mode: bool, uid: u32) -> Option<DelegationMark> {
    for (name, mark) in DELEGATE_XATTRS
        .into_iter()
        .zip([DelegationMark::TrustedXattr, DelegationMark::UserXattr])
    {
        // systemd writes "1"; anything but an explicit "0" counts as set.
        if let Ok(Some(v)) = get_xattr(dir, name)
            && v.as_slice() != b"0"
        {
            return Some(mark);
        }
    }
    match dir.metadata() {
        Ok(m) if user_mode && m.uid() == uid => Some(DelegationMark::OwnedByUid(uid)),
        _ => None,
    }
}

/// A process in `<root>/init.scope` that is not `own_pid`: `(pid, comm)`.
fn other_manager(root: &Path, own_pid: u32) -> Result<Option<(u32, String)>, OwnershipError> {
    let procs = root.join(INIT_SCOPE).join(PROCS);
    let text = match std::fs::read_to_string(&procs) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(OwnershipError::Read { path: procs, err }),
    };
    // cgroup.procs lists live processes only; an unparsable line is not one.
    let other = text
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|&pid| pid != own_pid);
    Ok(other.map(|pid| {
        let comm = if pid == 0 {
            "a process outside corrald's PID namespace".to_string()
        } else {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim().to_string())
                .unwrap_or_else(|_| "unknown".to_string())
        };
        (pid, comm)
    }))
}

/// Marks `dir` as delegated: the delegate xattrs (trusted.* needs CAP_SYS_ADMIN, user.* works
/// for its owner; one of them suffices) and ownership of the directory and of the files a nested
/// manager writes, as systemd does for `Delegate=yes`.
pub fn mark_delegated(dir: &Path, uid: u32, gid: u32) -> Result<(), CgroupError> {
    let mut last_err = None;
    let mut any = false;
    for name in DELEGATE_XATTRS {
        match set_xattr(dir, name, b"1") {
            Ok(()) => any = true,
            Err(err) => last_err = Some(err),
        }
    }
    if let (false, Some(err)) = (any, last_err) {
        return Err(CgroupError::Write {
            path: dir.to_path_buf(),
            value: "trusted.delegate=1".into(),
            err,
        });
    }
    let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    for name in ["", PROCS, SUBTREE_CONTROL, "cgroup.threads"] {
        let path = if name.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(name)
        };
        match chown(&path, u, g) {
            Ok(()) => {}
            Err(Errno::ENOENT) if !name.is_empty() => {}
            Err(err) => {
                return Err(CgroupError::Write {
                    path,
                    value: format!("owner {uid}:{gid}"),
                    err: io::Error::from_raw_os_error(err as i32),
                });
            }
        }
    }
    Ok(())
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// getxattr(2): `Ok(None)` when the attribute is absent (or the namespace is invisible to us,
/// as `trusted.*` is without CAP_SYS_ADMIN).
pub fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let c_path = c_path(path)?;
    let c_name = CString::new(name).map_err(io::Error::other)?;
    let mut buf = [0u8; 256];
    // SAFETY (libc wrapper): both strings are NUL-terminated and outlive the call; `buf` is
    // valid for writes of `buf.len()` bytes, which is the size passed.
    let n = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::EOPNOTSUPP) => Ok(None),
            // Longer than any delegate value we'd write, but present.
            Some(libc::ERANGE) => Ok(Some(Vec::new())),
            _ => Err(err),
        };
    }
    Ok(Some(buf[..n as usize].to_vec()))
}

/// setxattr(2), creating or replacing.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let c_path = c_path(path)?;
    let c_name = CString::new(name).map_err(io::Error::other)?;
    // SAFETY (libc wrapper): both strings are NUL-terminated and outlive the call; `value` is
    // valid for reads of `value.len()` bytes.
    let r = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fixture::Fixture;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_and_proc_cgroup() {
        let m = parse_mountinfo(MOUNTINFO).unwrap();
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(m.root, "/");
        assert_eq!(
            m.dir_of("/system.slice/x.service"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/system.slice/x.service"
            ))
        );
        assert_eq!(m.dir_of("/"), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert!(parse_mountinfo("31 23 0:28 / /sys rw - sysfs sysfs rw\n").is_none());
        let spaced = "50 1 0:40 /a\\040b /mnt/c\\040g rw - cgroup2 none rw\n";
        let m = parse_mountinfo(spaced).unwrap();
        assert_eq!(m.mount_point, Path::new("/mnt/c g"));
        assert_eq!(m.dir_of("/a b/x"), Some(PathBuf::from("/mnt/c g/x")));
        assert_eq!(m.dir_of("/a bc"), None);
        assert_eq!(m.dir_of("/other"), None);

        let pc = "9:name=systemd:/\n4:memory:/x\n0::/system.slice/corrald.service\n";
        assert_eq!(
            parse_proc_cgroup(pc).as_deref(),
            Some("/system.slice/corrald.service")
        );
        assert_eq!(parse_proc_cgroup("1:cpu:/\n"), None);
    }

    struct Host {
        fx: Fixture,
    }

    impl Host {
        fn new() -> Self {
            let fx = Fixture::new();
            fx.cgroup("system.slice/corrald.service");
            Host { fx }
        }
        fn req(&self, own: &str) -> RootRequest {
            RootRequest {
                is_pid1: false,
                user_mode: false,
                cgroup_root: None,
                mount: self.fx.path().to_path_buf(),
                own_cgroup: self.fx.path().join(own),
                uid: 4242,
                pid: std::process::id(),
            }
        }
        fn svc(&self) -> PathBuf {
            self.fx.path().join("system.slice/corrald.service")
        }
    }

    #[test]
    fn pid1_takes_the_whole_hierarchy() {
        let h = Host::new();
        let req = RootRequest {
            is_pid1: true,
            ..h.req("")
        };
        assert_eq!(
            decide_root(&req).unwrap(),
            CgroupRoot {
                path: h.fx.path().to_path_buf(),
                source: RootSource::WholeHierarchy
            }
        );
    }

    #[test]
    fn refuses_the_hierarchy_root_unless_pid1() {
        let h = Host::new();
        let err = decide_root(&h.req("")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, OwnershipError::HierarchyRoot { .. }), "{msg}");
        assert!(msg.contains("root of the cgroup hierarchy"), "{msg}");
        assert!(msg.contains("Delegate=yes"), "{msg}");
        assert!(msg.contains("delegate = true"), "{msg}");
        assert!(msg.contains("--cgroup-root"), "{msg}");
        // /init.scope at the top: its parent is the hierarchy root.
        h.fx.cgroup("init.scope");
        assert!(matches!(
            decide_root(&h.req("init.scope")),
            Err(OwnershipError::HierarchyRoot { .. })
        ));
        let flag = RootRequest {
            cgroup_root: Some(h.fx.path().to_path_buf()),
            ..h.req("")
        };
        assert!(matches!(
            decide_root(&flag),
            Err(OwnershipError::HierarchyRoot { .. })
        ));
    }

    #[test]
    fn started_in_cgroup_needs_a_delegation_mark() {
        let h = Host::new();
        let err = decide_root(&h.req("system.slice/corrald.service")).unwrap_err();
        assert!(matches!(err, OwnershipError::NotDelegated { .. }), "{err}");
        assert!(
            err.to_string().contains("neither the trusted.delegate nor"),
            "{err}"
        );

        set_xattr(&h.svc(), "user.delegate", b"1").unwrap();
        let got = decide_root(&h.req("system.slice/corrald.service")).unwrap();
        assert_eq!(got.path, h.svc());
        assert_eq!(got.source, RootSource::Delegated(DelegationMark::UserXattr));
        // After moving into init.scope (a restart), the parent is found again.
        h.fx.cgroup("system.slice/corrald.service/init.scope");
        let got = decide_root(&h.req("system.slice/corrald.service/init.scope")).unwrap();
        assert_eq!(got.path, h.svc());

        set_xattr(&h.svc(), "user.delegate", b"0").unwrap();
        assert!(decide_root(&h.req("system.slice/corrald.service")).is_err());
        if Uid::effective().is_root() {
            set_xattr(&h.svc(), "trusted.delegate", b"1").unwrap();
            let got = decide_root(&h.req("system.slice/corrald.service")).unwrap();
            assert_eq!(
                got.source,
                RootSource::Delegated(DelegationMark::TrustedXattr)
            );
        }
    }

    #[test]
    fn user_mode_accepts_a_cgroup_it_owns() {
        let h = Host::new();
        let owner = h.svc().metadata().unwrap().uid();
        let req = RootRequest {
            user_mode: true,
            uid: owner,
            ..h.req("system.slice/corrald.service")
        };
        assert_eq!(
            decide_root(&req).unwrap().source,
            RootSource::Delegated(DelegationMark::OwnedByUid(owner))
        );
        let stranger = RootRequest {
            uid: owner + 1,
            ..req.clone()
        };
        let err = decide_root(&stranger).unwrap_err().to_string();
        assert!(
            err.contains(&format!("owned by uid {owner}, not {}", owner + 1)),
            "{err}"
        );
        // System mode: ownership alone is not delegation.
        let system = RootRequest {
            user_mode: false,
            ..req
        };
        assert!(decide_root(&system).is_err());
    }

    #[test]
    fn cgroup_root_flag() {
        let h = Host::new();
        let flag = |p: PathBuf| RootRequest {
            cgroup_root: Some(p),
            ..h.req("")
        };
        let got = decide_root(&flag(h.svc())).unwrap();
        assert_eq!(got.source, RootSource::Flag);
        let err = decide_root(&flag(PathBuf::from("/tmp")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not below the cgroup2 mount"), "{err}");
        let err = decide_root(&flag(h.fx.path().join("nope.slice")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such cgroup"), "{err}");
        // `..` can't walk out of the mount.
        let outside = h.fx.path().join("system.slice/../..");
        let err = decide_root(&flag(outside)).unwrap_err().to_string();
        assert!(err.contains("not below the cgroup2 mount"), "{err}");
        let err = decide_root(&flag(h.svc().join("cgroup.procs")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a cgroup directory"), "{err}");
    }

    #[test]
    fn another_manager_in_init_scope_is_refused() {
        let h = Host::new();
        let req = RootRequest {
            cgroup_root: Some(h.svc()),
            ..h.req("")
        };
        h.fx.cgroup("system.slice/corrald.service/init.scope");
        let rel = "system.slice/corrald.service/init.scope";
        h.fx.write(rel, "cgroup.procs", &format!("{}\n", std::process::id()));
        assert!(decide_root(&req).is_ok(), "our own PID is fine");
        h.fx.write(rel, "cgroup.procs", &format!("{}\n1\n", std::process::id()));
        let err = decide_root(&req).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, OwnershipError::OtherManager { pid: 1, .. }),
            "{msg}"
        );
        assert!(msg.contains("holds PID 1 ("), "{msg}");
        assert!(msg.contains("Delegate=yes"), "{msg}");
        h.fx.write(rel, "cgroup.procs", "0\n");
        let msg = decide_root(&req).unwrap_err().to_string();
        assert!(msg.contains("outside corrald's PID namespace"), "{msg}");
    }

    #[test]
    fn xattr_wrappers() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(get_xattr(dir.path(), "user.delegate").unwrap(), None);
        set_xattr(dir.path(), "user.delegate", b"1").unwrap();
        assert_eq!(
            get_xattr(dir.path(), "user.delegate").unwrap(),
            Some(b"1".to_vec())
        );
        assert!(get_xattr(&dir.path().join("nope"), "user.delegate").is_err());
    }
}
