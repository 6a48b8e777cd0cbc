//! A service's `[namespaces]` table (DESIGN §2) turned into what [`crate::process::spawn`]
//! takes: [`process::Namespaces`] and the credentials the service runs with *inside* them.
//!
//! The executor calls [`apply`] once per spawn, after it has resolved `user`/`group` into
//! `spec.credentials` and before `process::spawn`; it also sets the service's privileges
//! ([`privileges`]: `no-new-privileges`, `capabilities`, `ambient-capabilities`), which belong
//! with the credentials they are applied around:
//!
//! ```ignore
//! namespaces::apply(&mut spec, svc, |u| self.states.get(u).and_then(|s| s.main_pid))
//!     .map_err(|e| e.to_string())?;
//! ```
//!
//! and calls [`apply_control`] the same way for a control command (`exec-stop`), passing the
//! unit's own main PID as well.
//!
//! Decisions written down here (DESIGN is silent on them):
//! - **Sharing** (`net = "pod.service"`) opens `/proc/PID/ns/KIND` of the owner's *main
//!   process*. The owner must be running: the dependency graph already orders a guest after
//!   its owners and pulls them in, so a missing main process means the owner exited (a oneshot,
//!   a crash) — an error naming the owner, never a silent fallback to the host's namespace.
//!   The PID can't be a recycled one: the main process is the daemon's unreaped child, and
//!   reaping happens in the same task that calls this.
//! - **A namespace file** (`net = "/run/netns/x"`) is opened here and checked with
//!   `ioctl(NS_GET_NSTYPE)`, so a wrong file fails at start with its path, not as a bare EINVAL
//!   from `setns` in the child.
//! - **Credentials with a user namespace.** `user`/`group` always name the identity *outside*
//!   (as in systemd, and as DESIGN's default map says); the child switches to the ids that map
//!   to it *inside*:
//!   - `user = true` without `uid-map`/`gid-map`: root inside = the service's user and group
//!     outside (`0 UID 1`, `0 GID 1`); unset `user`/`group` mean the daemon's own ids. A map
//!     left out when the other is given gets this default too.
//!   - explicit maps: unset `user` and `group` run the service as root of the namespace
//!     (`0:0`, the container convention); a given identity is translated through the maps
//!     and must be covered by them (an error otherwise). Supplementary groups the gid map
//!     doesn't cover are dropped (`setgroups` would refuse them).
//!   - `user = "owner.service"`: the same, with the owner's maps read from
//!     `/proc/PID/uid_map` and `gid_map` (printed in the daemon's terms: outside ids).
//!   - `user = "/path"`: a namespace file has no readable map, so `user`/`group` are taken
//!     as ids *inside* it; unset means root inside.
//! - **Control commands** (`exec-stop`) run *inside the service's namespaces*, as systemd's
//!   `ExecStop=` does: they join every namespace of the running main process
//!   (`/proc/MAIN/ns/*`, a PID namespace included), so a stop command sees the service's
//!   private `/tmp`, its root, its network, and can signal it by its PID inside. Nothing is
//!   set up again (no hostname, sysctls, mounts or maps: the namespaces exist). Credentials are
//!   translated through the main process's own maps. With no main process (a oneshot that has
//!   exited), the command gets fresh namespaces configured like the service's, as the main
//!   process did. On an initramfs, where the service's root was entered with `chroot`, joining
//!   its mount namespace lands at the namespace's root, not at the service's `root`.
//! - **Sysctls with a shared namespace** (`net = "pod.service"` plus a `net.*` sysctl) are
//!   written into the owner's namespace: the kernel keeps one value per namespace, so every
//!   member of the pod sees the last one written.
//! - **Clock offsets** are signed ([`process::ClockOffset`]): the kernel takes negative
//!   seconds, as long as the clock inside stays ≥ 0 when they are written (ERANGE otherwise).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::process::{self, ClockOffset, Credentials, IdMap, MountSetup, SpawnSpec};
use crate::unit::{NsKind, NsMode, Propagation, Service, UnitName};

/// `NS_GET_NSTYPE` = `_IO(0xb7, 0x3)` from `linux/nsfs.h` (4.11+): the `CLONE_NEW*` type of a
/// namespace file.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Why a service's namespaces could not be prepared. Messages name the unit-file key.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// The unit whose namespace this one shares has no main process.
    #[error(
        "[namespaces] {kind} = \"{owner}\": {owner} is not running, so it has no {kind} \
         namespace to share (start it first, or make it a long-running service)"
    )]
    OwnerNotRunning { kind: &'static str, owner: UnitName },
    /// Opening `/proc/PID/ns/KIND` of the owner failed (it exited in between: ENOENT).
    #[error("[namespaces] {kind} = \"{owner}\": opening {}: {source}", path.display())]
    OpenOwner {
        kind: &'static str,
        owner: UnitName,
        path: PathBuf,
        source: io::Error,
    },
    /// Opening a namespace file given as a path failed.
    #[error("[namespaces] {kind} = \"{}\": {source}", path.display())]
    OpenPath {
        kind: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A namespace file of another kind, or no namespace file at all.
    #[error("[namespaces] {kind} = \"{}\": {found}", path.display())]
    WrongKind {
        kind: &'static str,
        path: PathBuf,
        found: String,
    },
    /// Opening a namespace of the unit's own main process, for a control command.
    #[error("joining the {kind} namespace of the main process: opening {}: {source}", path.display())]
    OpenMain {
        kind: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Reading the id maps of a process whose user namespace is joined.
    #[error("{context}: reading {}: {source}", path.display())]
    ReadMap {
        /// `[namespaces] user = "owner.service"` or `the main process`.
        context: String,
        path: PathBuf,
        source: io::Error,
    },
    /// The service's user or group has no id inside the user namespace.
    #[error(
        "[service] {key} {id} has no id inside the user namespace: {map} maps {}",
        describe(maps)
    )]
    Unmapped {
        key: &'static str,
        id: u32,
        map: &'static str,
        maps: Vec<IdMap>,
    },
}

fn describe(maps: &[IdMap]) -> String {
    maps.iter()
        .map(|m| {
            format!(
                "{}..{} to {}..{} outside",
                m.inside,
                u64::from(m.inside) + u64::from(m.count),
                m.outside,
                u64::from(m.outside) + u64::from(m.count)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a service is started with: its namespaces and the credentials it switches to inside
/// them (`None`: keep the daemon's).
#[derive(Debug)]
pub struct Isolation {
    pub namespaces: process::Namespaces,
    pub credentials: Option<Credentials>,
}

/// Sets `spec.namespaces` from the service's `[namespaces]` table and rewrites
/// `spec.credentials` — the service's resolved `user`/`group`, ids *outside*, or `None` when
/// neither is set — into the ids to run as inside a user namespace (unchanged without one).
/// `main_pid_of` gives the main process of a running unit (for `net = "pod.service"`).
///
/// On error `spec` is left as it was.
pub fn apply(
    spec: &mut SpawnSpec,
    svc: &Service,
    main_pid_of: impl Fn(&UnitName) -> Option<u32>,
) -> Result<(), NamespaceError> {
    let iso = for_service(svc, spec.credentials.clone(), main_pid_of)?;
    spec.namespaces = iso.namespaces;
    spec.credentials = iso.credentials;
    spec.privileges = privileges(svc);
    Ok(())
}

/// The service's `no-new-privileges`, `capabilities` and `ambient-capabilities` (DESIGN §2), for
/// its main process and its control commands alike, as systemd applies them to every `Exec*=`.
/// They are taken relative to the namespaces the process ends up in: with a user namespace,
/// the bounding and ambient sets are those of root (or the service's user) inside it.
pub fn privileges(svc: &Service) -> process::Privileges {
    process::Privileges {
        no_new_privs: svc.no_new_privileges,
        bounding: svc.capabilities,
        ambient: svc.ambient_capabilities,
    }
}

/// The process-level namespaces of a service and its credentials inside them; see [`apply`]
/// and the module docs for the rules. `outside` is the identity resolved from `user`/`group`
/// (`None` when neither is set). Opens `/proc/PID/ns/KIND` of the main process of each unit it
/// shares with (looked up through `main_pid_of`) and the file of each `Path` namespace; fails
/// clearly when an owner isn't running.
pub fn for_service(
    svc: &Service,
    outside: Option<Credentials>,
    main_pid_of: impl Fn(&UnitName) -> Option<u32>,
) -> Result<Isolation, NamespaceError> {
    let u = &svc.namespaces;
    let mode = |kind: NsKind| -> Result<process::NsMode, NamespaceError> {
        Ok(match u.get(kind) {
            None => process::NsMode::Host,
            Some(NsMode::New) => process::NsMode::New,
            Some(NsMode::Share(owner)) => {
                let pid = main_pid_of(owner).ok_or_else(|| NamespaceError::OwnerNotRunning {
                    kind: kind.name(),
                    owner: owner.clone(),
                })?;
                process::NsMode::Join(open_owner(kind, owner, pid)?)
            }
            Some(NsMode::Path(path)) => process::NsMode::Join(open_path(kind, path)?),
        })
    };
    let mut ns = process::Namespaces {
        monotonic_offset: ClockOffset::from_nanos(u.monotonic_offset),
        boottime_offset: ClockOffset::from_nanos(u.boottime_offset),
        hostname: u.hostname.clone(),
        sysctls: u
            .sysctl
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        mounts: MountSetup {
            propagation: match u.propagation {
                None | Some(Propagation::Private) => process::Propagation::Private,
                Some(Propagation::Slave) => process::Propagation::Slave,
                Some(Propagation::Shared) => process::Propagation::Shared,
            },
            root: u.root.clone(),
            private_tmp: u.private_tmp,
            read_only_paths: u.read_only_paths.clone(),
            binds: u
                .bind
                .iter()
                .map(|b| process::Bind {
                    source: b.source.clone(),
                    target: b.target.clone(),
                    read_only: b.read_only,
                })
                .collect(),
        },
        ..process::Namespaces::default()
    };
    for kind in NsKind::ALL {
        *ns.get_mut(kind) = mode(kind)?;
    }

    let credentials = match &u.user {
        None => outside,
        Some(NsMode::New) => {
            let me = outside.clone().unwrap_or_else(daemon_credentials);
            let map = |given: &[crate::unit::IdMap], id: u32| -> Vec<IdMap> {
                if given.is_empty() {
                    vec![IdMap::root_to(id)]
                } else {
                    given.iter().map(|m| to_process_map(*m)).collect()
                }
            };
            ns.uid_map = map(&u.uid_map, me.uid);
            ns.gid_map = map(&u.gid_map, me.gid);
            let defaults = u.uid_map.is_empty() && u.gid_map.is_empty();
            match outside {
                // Root of the namespace: with the default maps that *is* the daemon's identity.
                None => Some(root_inside()),
                Some(c) if defaults => Some(Credentials {
                    uid: 0,
                    gid: 0,
                    groups: translate_groups(&c, &ns.gid_map),
                }),
                Some(c) => Some(inside(&c, &ns.uid_map, &ns.gid_map)?),
            }
        }
        Some(NsMode::Share(owner)) => match outside {
            None => Some(root_inside()),
            Some(c) => {
                // `mode` found the owner running a moment ago; read its maps the same way.
                let pid = main_pid_of(owner).ok_or_else(|| NamespaceError::OwnerNotRunning {
                    kind: NsKind::User.name(),
                    owner: owner.clone(),
                })?;
                let context = || format!("[namespaces] user = \"{owner}\"");
                let uid_map = read_map(pid, "uid_map", context)?;
                let gid_map = read_map(pid, "gid_map", context)?;
                Some(inside(&c, &uid_map, &gid_map)?)
            }
        },
        Some(NsMode::Path(_)) => Some(outside.unwrap_or_else(root_inside)),
    };
    Ok(Isolation {
        namespaces: ns,
        credentials,
    })
}

/// [`apply`] for a control command of the unit (`exec-stop`): joins the namespaces of the
/// unit's running main process `main_pid` (see the module docs); without one, the same as
/// [`apply`].
pub fn apply_control(
    spec: &mut SpawnSpec,
    svc: &Service,
    main_pid: Option<u32>,
    main_pid_of: impl Fn(&UnitName) -> Option<u32>,
) -> Result<(), NamespaceError> {
    let iso = match main_pid {
        Some(pid) => for_control(svc, spec.credentials.clone(), pid)?,
        None => for_service(svc, spec.credentials.clone(), main_pid_of)?,
    };
    spec.namespaces = iso.namespaces;
    spec.credentials = iso.credentials;
    spec.privileges = privileges(svc);
    Ok(())
}

/// The namespaces of a control command: every kind the service has (new, shared or a file) is
/// joined from `/proc/MAIN/ns/KIND` of its running main process.
pub fn for_control(
    svc: &Service,
    outside: Option<Credentials>,
    main_pid: u32,
) -> Result<Isolation, NamespaceError> {
    let u = &svc.namespaces;
    let mut ns = process::Namespaces::default();
    for kind in NsKind::ALL {
        if u.get(kind).is_none() {
            continue;
        }
        let fd = open_ns(kind, main_pid).map_err(|(path, source)| NamespaceError::OpenMain {
            kind: kind.name(),
            path,
            source,
        })?;
        *ns.get_mut(kind) = process::NsMode::Join(fd);
    }
    let credentials = match (&u.user, outside) {
        (None, outside) => outside,
        (Some(_), None) => Some(root_inside()),
        (Some(_), Some(c)) => {
            let context = || "the main process".to_string();
            let uid_map = read_map(main_pid, "uid_map", context)?;
            let gid_map = read_map(main_pid, "gid_map", context)?;
            Some(inside(&c, &uid_map, &gid_map)?)
        }
    };
    Ok(Isolation {
        namespaces: ns,
        credentials,
    })
}

/// Opens `/proc/PID/ns/KIND` (O_CLOEXEC, std's default: the fd reaches the child through the
/// plan, not by exec).
fn open_ns(kind: NsKind, pid: u32) -> Result<OwnedFd, (PathBuf, io::Error)> {
    let path = PathBuf::from(format!("/proc/{pid}/ns/{}", kind.proc_name()));
    match File::open(&path) {
        Ok(f) => Ok(f.into()),
        Err(e) => Err((path, e)),
    }
}

fn open_owner(kind: NsKind, owner: &UnitName, pid: u32) -> Result<OwnedFd, NamespaceError> {
    open_ns(kind, pid).map_err(|(path, source)| NamespaceError::OpenOwner {
        kind: kind.name(),
        owner: owner.clone(),
        path,
        source,
    })
}

fn open_path(kind: NsKind, path: &Path) -> Result<OwnedFd, NamespaceError> {
    let file = File::open(path).map_err(|source| NamespaceError::OpenPath {
        kind: kind.name(),
        path: path.to_path_buf(),
        source,
    })?;
    let wrong = |found: String| NamespaceError::WrongKind {
        kind: kind.name(),
        path: path.to_path_buf(),
        found,
    };
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor's namespace.
    let got = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
    if got < 0 {
        let err = io::Error::last_os_error();
        return Err(wrong(match err.raw_os_error() {
            Some(libc::ENOTTY) | Some(libc::EINVAL) => "not a namespace file".to_string(),
            _ => format!("asking its namespace type: {err}"),
        }));
    }
    if got != kind.flag() {
        let name = NsKind::from_flag(got).map_or("an unknown", NsKind::name);
        return Err(wrong(format!("is {name} namespace, not a {kind} one")));
    }
    Ok(file.into())
}

fn to_process_map(m: crate::unit::IdMap) -> IdMap {
    IdMap {
        inside: m.inside,
        outside: m.outside,
        count: m.count,
    }
}

/// The daemon's own effective ids: the default map's outside identity when no `user` is set.
fn daemon_credentials() -> Credentials {
    let (uid, gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    Credentials {
        uid,
        gid,
        groups: vec![gid],
    }
}

fn root_inside() -> Credentials {
    Credentials {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    }
}

/// The inside id that `outside` maps to, if a line covers it.
fn map_in(maps: &[IdMap], outside: u32) -> Option<u32> {
    maps.iter().find_map(|m| {
        let offset = outside.checked_sub(m.outside)?;
        (offset < m.count).then(|| m.inside.checked_add(offset))?
    })
}

fn translate_groups(c: &Credentials, gid_map: &[IdMap]) -> Vec<u32> {
    let mut groups: Vec<u32> = c
        .groups
        .iter()
        .filter_map(|g| map_in(gid_map, *g))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups
}

fn inside(
    c: &Credentials,
    uid_map: &[IdMap],
    gid_map: &[IdMap],
) -> Result<Credentials, NamespaceError> {
    let unmapped = |key, id, map, maps: &[IdMap]| NamespaceError::Unmapped {
        key,
        id,
        map,
        maps: maps.to_vec(),
    };
    Ok(Credentials {
        uid: map_in(uid_map, c.uid).ok_or_else(|| unmapped("user", c.uid, "uid-map", uid_map))?,
        gid: map_in(gid_map, c.gid).ok_or_else(|| unmapped("group", c.gid, "gid-map", gid_map))?,
        groups: translate_groups(c, gid_map),
    })
}

/// Reads `/proc/PID/uid_map` or `gid_map` (printed in the reader's terms: the daemon's ids
/// as outside ids).
fn read_map(
    pid: u32,
    file: &str,
    context: impl Fn() -> String,
) -> Result<Vec<IdMap>, NamespaceError> {
    let path = PathBuf::from(format!("/proc/{pid}/{file}"));
    let maps = std::fs::read_to_string(&path).and_then(|text| {
        parse_map(&text).map_err(|line| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected line {line:?}"),
            )
        })
    });
    maps.map_err(|source| NamespaceError::ReadMap {
        context: context(),
        path,
        source,
    })
}

/// Parses lines of `INSIDE OUTSIDE COUNT`.
fn parse_map(text: &str) -> Result<Vec<IdMap>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut n = line.split_whitespace().map(str::parse::<u32>);
            match (n.next(), n.next(), n.next(), n.next()) {
                (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count)), None) => Ok(IdMap {
                    inside,
                    outside,
                    count,
                }),
                _ => Err(line.to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::unit::parse_unit;

    fn service(ns: &str) -> Service {
        let name = UnitName::parse("t.service").unwrap();
        let text = format!("[service]\nexec = [\"/bin/true\"]\n[namespaces]\n{ns}\n");
        let unit = parse_unit(&name, Path::new("t.service.toml"), &text)
            .unwrap_or_else(|d| panic!("{d:?}"));
        *unit.service.unwrap()
    }

    fn nobody() -> Option<u32> {
        None
    }

    fn me(_: &UnitName) -> Option<u32> {
        Some(std::process::id())
    }

    fn creds(uid: u32, gid: u32, groups: &[u32]) -> Credentials {
        Credentials {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    fn inode(fd: &OwnedFd) -> u64 {
        let file = File::from(fd.as_fd().try_clone_to_owned().unwrap());
        file.metadata().unwrap().ino()
    }

    #[test]
    fn no_table_means_the_hosts_and_credentials_pass_through() {
        let svc = service("");
        let c = Some(creds(1000, 1000, &[1000]));
        let iso = for_service(&svc, c.clone(), |_| nobody()).unwrap();
        assert!(iso.namespaces.net.is_host() && iso.namespaces.user.is_host());
        assert!(iso.namespaces.mounts.is_empty());
        assert_eq!(iso.credentials, c);
    }

    #[test]
    fn every_new_namespace_and_its_setup() {
        let svc = service(
            r#"pid = true
net = true
uts = true
ipc = true
cgroup = true
time = true
hostname = "web-1"
monotonic-offset = "-1500ms"
boottime-offset = "1d"
root = "/srv/r"
private-tmp = true
read-only-paths = ["/etc"]
bind = [{ source = "/data", target = "/data", read-only = true }]
propagation = "slave"
sysctl = { "net.ipv4.ip_unprivileged_port_start" = "80", "kernel.msgmax" = "4096" }"#,
        );
        let ns = for_service(&svc, None, |_| nobody()).unwrap().namespaces;
        for m in [
            &ns.pid, &ns.net, &ns.mount, &ns.uts, &ns.ipc, &ns.cgroup, &ns.time,
        ] {
            assert!(m.is_new());
        }
        assert!(ns.user.is_host());
        assert_eq!(ns.monotonic_offset.timens_parts(), (-2, 500_000_000));
        assert_eq!(ns.boottime_offset, ClockOffset::from_secs(86400));
        assert_eq!(ns.hostname.as_deref(), Some("web-1"));
        assert_eq!(ns.mounts.root.as_deref(), Some(Path::new("/srv/r")));
        assert!(ns.mounts.private_tmp);
        assert_eq!(ns.mounts.read_only_paths, [PathBuf::from("/etc")]);
        assert_eq!(ns.mounts.propagation, process::Propagation::Slave);
        assert_eq!(
            ns.mounts.binds,
            [process::Bind {
                source: "/data".into(),
                target: "/data".into(),
                read_only: true
            }]
        );
        assert_eq!(
            ns.sysctls,
            [
                ("kernel.msgmax".to_string(), "4096".to_string()),
                (
                    "net.ipv4.ip_unprivileged_port_start".to_string(),
                    "80".to_string()
                )
            ]
        );
    }

    #[test]
    fn sharing_needs_a_running_owner() {
        let svc = service(r#"net = "pod.service""#);
        let err = for_service(&svc, None, |_| nobody()).unwrap_err();
        assert!(matches!(
            err,
            NamespaceError::OwnerNotRunning { kind: "net", .. }
        ));
        assert_eq!(
            err.to_string(),
            "[namespaces] net = \"pod.service\": pod.service is not running, so it has no net \
             namespace to share (start it first, or make it a long-running service)"
        );
        // A main PID that is gone: the open fails and says which file.
        let err = for_service(&svc, None, |_| Some(u32::MAX)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "[namespaces] net = \"pod.service\": opening /proc/4294967295/ns/net:"
            ),
            "{err}"
        );
    }

    #[test]
    fn sharing_opens_the_owners_namespaces() {
        let svc = service(
            r#"net = "pod.service"
ipc = "pod.service"
mount = "pod.service"
uts = true"#,
        );
        let ns = for_service(&svc, None, me).unwrap().namespaces;
        let own = |kind: &str| {
            std::fs::metadata(format!("/proc/self/ns/{kind}"))
                .unwrap()
                .ino()
        };
        for (mode, kind) in [(&ns.net, "net"), (&ns.ipc, "ipc"), (&ns.mount, "mnt")] {
            match mode {
                process::NsMode::Join(fd) => assert_eq!(inode(fd), own(kind), "{kind}"),
                other => panic!("{kind}: {other:?}"),
            }
        }
        assert!(ns.uts.is_new());
    }

    #[test]
    fn namespace_files_are_checked_for_their_kind() {
        let ns = for_service(&service(r#"net = "/proc/self/ns/net""#), None, |_| nobody())
            .unwrap()
            .namespaces;
        assert!(matches!(ns.net, process::NsMode::Join(_)));

        let err =
            for_service(&service(r#"net = "/proc/self/ns/uts""#), None, |_| nobody()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[namespaces] net = \"/proc/self/ns/uts\": is uts namespace, not a net one"
        );
        let err =
            for_service(&service(r#"net = "/etc/hostname""#), None, |_| nobody()).unwrap_err();
        assert!(err.to_string().ends_with("not a namespace file"), "{err}");
        let err = for_service(&service(r#"ipc = "/no/such/ns""#), None, |_| nobody()).unwrap_err();
        assert!(matches!(err, NamespaceError::OpenPath { kind: "ipc", .. }));
    }

    #[test]
    fn default_map_makes_the_services_user_root_inside() {
        let svc = service("user = true");
        let iso = for_service(&svc, Some(creds(1000, 100, &[27, 100])), |_| nobody()).unwrap();
        assert_eq!(iso.namespaces.uid_map, [IdMap::root_to(1000)]);
        assert_eq!(iso.namespaces.gid_map, [IdMap::root_to(100)]);
        assert_eq!(iso.credentials, Some(creds(0, 0, &[0])));

        // No user set: the daemon's own ids outside, root inside.
        let iso = for_service(&svc, None, |_| nobody()).unwrap();
        let euid = nix::unistd::geteuid().as_raw();
        assert_eq!(iso.namespaces.uid_map, [IdMap::root_to(euid)]);
        assert_eq!(iso.credentials, Some(root_inside()));
    }

    #[test]
    fn explicit_maps_translate_the_services_user() {
        let svc = service(
            r#"user = true
uid-map = [{ inside = 0, outside = 100000, count = 65536 }]
gid-map = [{ inside = 0, outside = 100000, count = 65536 }]"#,
        );
        let iso = for_service(&svc, None, |_| nobody()).unwrap();
        assert_eq!(iso.credentials, Some(root_inside()));
        assert_eq!(
            iso.namespaces.uid_map,
            [IdMap {
                inside: 0,
                outside: 100000,
                count: 65536
            }]
        );
        let c = creds(100033, 100033, &[100033, 100100, 5]);
        let iso = for_service(&svc, Some(c), |_| nobody()).unwrap();
        assert_eq!(iso.credentials, Some(creds(33, 33, &[33, 100])));

        let err = for_service(&svc, Some(creds(1000, 100033, &[])), |_| nobody()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[service] user 1000 has no id inside the user namespace: uid-map maps \
             0..65536 to 100000..165536 outside"
        );

        // Only a uid map: the gid map defaults to root inside = the service's group.
        let svc = service(
            r#"user = true
uid-map = [{ inside = 0, outside = 100000, count = 10 }]"#,
        );
        let iso = for_service(&svc, Some(creds(100001, 50, &[50])), |_| nobody()).unwrap();
        assert_eq!(iso.namespaces.gid_map, [IdMap::root_to(50)]);
        assert_eq!(iso.credentials, Some(creds(1, 0, &[0])));
    }

    #[test]
    fn a_shared_user_namespace_uses_the_owners_maps() {
        // Our own maps (the initial namespace: identity over the whole range, or a
        // container's): whatever they are, an id they cover comes back translated.
        let svc = service(r#"user = "owner.service""#);
        let maps = parse_map(&std::fs::read_to_string("/proc/self/uid_map").unwrap()).unwrap();
        let outside = maps[0].outside;
        let iso = for_service(&svc, Some(creds(outside, outside, &[])), me);
        let iso = iso.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(iso.namespaces.user, process::NsMode::Join(_)));
        assert!(iso.namespaces.uid_map.is_empty());
        assert_eq!(iso.credentials.map(|c| c.uid), Some(maps[0].inside));
        // Unset user: root of the namespace.
        let iso = for_service(&svc, None, me).unwrap();
        assert_eq!(iso.credentials, Some(root_inside()));
    }

    #[test]
    fn apply_fills_the_spec_or_leaves_it_alone() {
        let svc = service("user = true\nuts = true\nhostname = \"x\"");
        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.credentials = Some(creds(1000, 1000, &[1000]));
        apply(&mut spec, &svc, |_| nobody()).unwrap();
        assert_eq!(spec.credentials, Some(creds(0, 0, &[0])));
        assert_eq!(spec.namespaces.hostname.as_deref(), Some("x"));

        let svc = service(r#"net = "pod.service""#);
        let mut spec = SpawnSpec::new(["/bin/true"]);
        spec.credentials = Some(creds(1000, 1000, &[1000]));
        assert!(apply(&mut spec, &svc, |_| nobody()).is_err());
        assert_eq!(spec.credentials, Some(creds(1000, 1000, &[1000])));
        assert!(spec.namespaces.net.is_host());
    }

    #[test]
    fn privileges_go_to_the_main_process_and_control_commands() {
        let name = UnitName::parse("t.service").unwrap();
        let text = "[service]\nexec = [\"/bin/true\"]\nno-new-privileges = true\n\
                    capabilities = [\"CAP_NET_BIND_SERVICE\"]\n\
                    ambient-capabilities = [\"CAP_NET_BIND_SERVICE\"]\n";
        let unit = parse_unit(&name, Path::new("t.service.toml"), text).unwrap();
        let svc = unit.service.unwrap();
        for control in [false, true] {
            let mut spec = SpawnSpec::new(["/bin/true"]);
            if control {
                apply_control(&mut spec, &svc, None, |_| nobody()).unwrap();
            } else {
                apply(&mut spec, &svc, |_| nobody()).unwrap();
            }
            let p = spec.privileges;
            assert!(p.no_new_privs);
            assert_eq!(p.bounding.map(|b| b.bits()), Some(1 << 10));
            assert_eq!(p.ambient.bits(), 1 << 10);
        }
        // Unset: the daemon's bounding set, nothing ambient.
        let p = privileges(&service(""));
        assert_eq!(p, process::Privileges::default());
    }

    #[test]
    fn control_commands_join_the_main_processs_namespaces() {
        let svc = service(
            r#"net = true
uts = true
hostname = "web-1"
private-tmp = true
user = true"#,
        );
        let pid = std::process::id();
        let maps = parse_map(&std::fs::read_to_string("/proc/self/uid_map").unwrap()).unwrap();
        let outside = maps[0].outside;
        let iso = for_control(&svc, Some(creds(outside, outside, &[])), pid).unwrap();
        let ns = &iso.namespaces;
        for (mode, kind) in [(&ns.net, "net"), (&ns.uts, "uts"), (&ns.mount, "mnt")] {
            match mode {
                process::NsMode::Join(fd) => {
                    let own = std::fs::metadata(format!("/proc/self/ns/{kind}")).unwrap();
                    assert_eq!(inode(fd), own.ino(), "{kind}");
                }
                other => panic!("{kind}: {other:?}"),
            }
        }
        assert!(matches!(ns.user, process::NsMode::Join(_)));
        assert!(ns.pid.is_host() && ns.ipc.is_host());
        // Nothing is set up again in namespaces that exist.
        assert!(ns.hostname.is_none() && ns.mounts.is_empty() && ns.uid_map.is_empty());
        assert_eq!(iso.credentials.map(|c| c.uid), Some(maps[0].inside));

        let err = for_control(&svc, None, u32::MAX).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "joining the net namespace of the main process: opening /proc/4294967295/ns/net:"
            ),
            "{err}"
        );

        // No main process: fresh namespaces, set up like the service's.
        let mut spec = SpawnSpec::new(["/bin/true"]);
        apply_control(&mut spec, &svc, None, |_| nobody()).unwrap();
        assert!(spec.namespaces.net.is_new());
        assert_eq!(spec.namespaces.hostname.as_deref(), Some("web-1"));
    }

    #[test]
    fn id_maps_parse_and_translate() {
        let maps = parse_map("         0     100000      65536\n    65536  1000 1\n").unwrap();
        assert_eq!(map_in(&maps, 100000), Some(0));
        assert_eq!(map_in(&maps, 165535), Some(65535));
        assert_eq!(map_in(&maps, 165536), None);
        assert_eq!(map_in(&maps, 1000), Some(65536));
        assert_eq!(map_in(&maps, 99999), None);
        assert!(parse_map("0 1\n").is_err());
        assert!(parse_map("0 1 2 3\n").is_err());
        // The whole range of the initial namespace: no overflow at the top.
        let all = parse_map("0 0 4294967295\n").unwrap();
        assert_eq!(map_in(&all, u32::MAX - 1), Some(u32::MAX - 1));
    }
}
