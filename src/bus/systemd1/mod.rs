//! The `org.freedesktop.systemd1` subset (DESIGN §9) that container runtimes and kubelet use
//! with the systemd cgroup driver, so that on a machine whose cgroup manager is corral they
//! ask corral instead of writing the tree behind its back.
//!
//! Served beside `org.corral1`, on the same connections, when the daemon runs with it
//! ([`ServerInfo::systemd_compat`](super::ServerInfo)): the manager object
//! `/org/freedesktop/systemd1` ([`manager`]) and an object per unit at
//! `/org/freedesktop/systemd1/unit/ESCAPED` ([`unit`]), registered with the unit's
//! `org.corral1` object (at a client's first call to either). On the bus the same connection
//! owns both names, so the broadcast `JobRemoved(uoss)` comes from the owner of
//! `org.freedesktop.systemd1` (crun matches on that sender); on `/run/systemd/private` it goes
//! to every connection, without `Hello`, as systemd's private socket does (runc falls back to
//! it when there is no bus).
//!
//! Nothing here holds state: properties are read ([`properties`]) into a request for the
//! manager ([`crate::manager::scopes`]); errors carry systemd's names ([`error`]). Every call
//! and property read is for uid 0 only, judged by the [`Gate`](super::Gate) from kernel
//! credentials.

pub mod error;
pub mod manager;
pub mod properties;
pub mod unit;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use super::{Access, ManagerHandle, Mode, PrivateServer, ServerInfo};
use crate::unit::UnitName;

/// The well-known bus name.
pub const BUS_NAME: &str = "org.freedesktop.systemd1";
/// The manager object.
pub const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
pub const MANAGER_INTERFACE: &str = "org.freedesktop.systemd1.Manager";
/// Parent of every unit object.
pub const UNIT_PATH_PREFIX: &str = "/org/freedesktop/systemd1/unit";
/// Parent of the job paths `StartTransientUnit` and `StopUnit` return.
pub const JOB_PATH_PREFIX: &str = "/org/freedesktop/systemd1/job";
/// systemd's version as clients read it: runc gates features on its digits (≥ 244
/// `AllowedCPUs`, ≥ 252 `CPUWeight` 0 for idle), and this subset is systemd 252's.
pub const VERSION: &str = "252";
/// Where systemd's private socket is (peer to peer, no `Hello`).
pub const PRIVATE_SOCKET: &str = "/run/systemd/private";
/// `sd_booted()`'s marker: runc and crun use the systemd driver only where it exists.
pub const BOOTED_MARKER: &str = "/run/systemd/system";

/// The object path of a unit: `/org/freedesktop/systemd1/unit/c1_2escope`.
pub fn unit_path(name: &UnitName) -> OwnedObjectPath {
    super::unit_path_under(UNIT_PATH_PREFIX, name)
}

/// The unit a path under [`UNIT_PATH_PREFIX`] names.
pub fn unit_from_path(path: &str) -> Option<UnitName> {
    super::unit_from_path_under(UNIT_PATH_PREFIX, path)
}

/// Reads of the subset are for uid 0 only, as its calls are: `AccessDenied` for anyone else.
pub(crate) async fn require_root(
    gate: &super::Gate,
    header: Option<&zbus::message::Header<'_>>,
) -> zbus::fdo::Result<super::access::Who> {
    let who = gate.who(None, header).await;
    if gate.privileged(&who) {
        return Ok(who);
    }
    Err(zbus::fdo::Error::AccessDenied(format!(
        "{BUS_NAME} is for uid 0 only; the caller is {}",
        who.uid
            .map_or_else(|| "unknown".to_string(), |u| format!("uid {u}"))
    )))
}

/// The path of job `id`.
pub fn job_path(id: u32) -> OwnedObjectPath {
    ObjectPath::from_string_unchecked(format!("{JOB_PATH_PREFIX}/{id}")).into()
}

/// Distinct names of ignored properties logged, at most; beyond that they are not.
const IGNORED_NAMES_LOGGED: usize = 128;

/// Logs each ignored property's name once per daemon (DESIGN §9: "accepted and ignored,
/// logged once").
pub(crate) fn log_ignored(method: &str, names: &[String]) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = seen.get_or_insert_with(HashSet::new);
    for name in names {
        if seen.len() >= IGNORED_NAMES_LOGGED || seen.contains(name) {
            continue;
        }
        tracing::info!(
            "{BUS_NAME}: property {name} of {method} is accepted and ignored (logged once)"
        );
        seen.insert(name.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_and_job_paths() {
        let name = UnitName::parse("cri-containerd-1a.scope").unwrap();
        let path = unit_path(&name);
        assert_eq!(
            path.as_str(),
            "/org/freedesktop/systemd1/unit/cri_2dcontainerd_2d1a_2escope"
        );
        assert_eq!(unit_from_path(path.as_str()), Some(name));
        assert_eq!(unit_from_path("/org/freedesktop/systemd1"), None);
        assert_eq!(unit_from_path("/org/corral1/unit/x_2escope"), None);
        assert_eq!(job_path(7).as_str(), "/org/freedesktop/systemd1/job/7");
    }
}

/// Where systemd's private socket and `sd_booted()` marker are for a daemon in `mode`:
/// `/run/systemd/private` and `/run/systemd/system`; a per-user manager's socket is
/// `$XDG_RUNTIME_DIR/systemd/private` (as `systemd --user`'s), and it makes no marker.
pub fn host_paths(mode: Mode, runtime_dir: &Path) -> (PathBuf, Option<PathBuf>) {
    match mode {
        Mode::System => (
            PathBuf::from(PRIVATE_SOCKET),
            Some(PathBuf::from(BOOTED_MARKER)),
        ),
        // RUNTIME is $XDG_RUNTIME_DIR/corral for a user manager.
        Mode::User => (
            runtime_dir
                .parent()
                .unwrap_or(runtime_dir)
                .join("systemd/private"),
            None,
        ),
    }
}

/// Why the subset must not be served here, if it must not: a real systemd is PID 1 (DESIGN §9:
/// never beside it) — unless this daemon runs in a mount namespace of its own, where systemd's
/// `/run/systemd` is not the one it would serve (a test's private `/run`): PID 1's mount
/// namespace that can't be read counts as ours.
pub fn refused_here() -> Option<String> {
    if std::process::id() == 1 {
        return None;
    }
    let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    if comm.trim_end() != "systemd" {
        return None;
    }
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let apart = matches!((ns("1"), ns("self")), (Some(a), Some(b)) if a != b);
    (!apart).then(|| "a real systemd is PID 1 and serves org.freedesktop.systemd1 itself".into())
}

/// The subset's own piece of the host: systemd's private socket, served like corrald's own
/// (peer to peer, 0600, without `Hello`), and the `sd_booted()` marker directory, made 0755
/// (and removed at the end if this daemon made it, unless it re-executes).
#[derive(Debug)]
pub struct Host {
    server: PrivateServer,
    made_marker: Option<PathBuf>,
}

impl Host {
    /// Serves `socket` and makes `marker`.
    pub fn start(
        socket: &Path,
        marker: Option<&Path>,
        info: ServerInfo,
        access: Access,
        manager: ManagerHandle,
    ) -> Result<Host, String> {
        let server = PrivateServer::bind(socket, info, access, manager)
            .map_err(|e| format!("serving {}: {e}", socket.display()))?;
        let mut made_marker = None;
        if let Some(marker) = marker
            && !marker.is_dir()
        {
            // 0755 whatever the umask, as every directory corrald makes (and its parents).
            crate::files::create_dir_all(marker, crate::files::DIR_MODE)
                .map_err(|e| format!("making {}: {e}", marker.display()))?;
            made_marker = Some(marker.to_path_buf());
        }
        Ok(Host {
            server,
            made_marker,
        })
    }

    /// Stops serving; with `for_good` (not a re-exec) the marker made goes too.
    pub fn shutdown(self, for_good: bool) {
        self.server.shutdown();
        if for_good && let Some(marker) = self.made_marker {
            let _ = std::fs::remove_dir(marker);
        }
    }
}
