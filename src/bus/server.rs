//! The private peer-to-peer socket (`RUNTIME/private`, DESIGN §1, §4): bound with mode 0600,
//! accepted in one tokio task, each connection served by its own task as a zbus p2p server
//! (EXTERNAL authentication) with the [`Hello`] shim, the manager object and an object for each
//! unit the client calls (registered at its first call: [`on_demand`](super::on_demand)).
//!
//! **Binding.** The socket is bound under a temporary name, chmod'ed to 0600 and renamed into
//! place, so there is no moment at which it exists with the umask's mode (changing the umask
//! instead would race with every other thread of the daemon). The rename also replaces a stale
//! socket; one that still accepts connections belongs to a live daemon and is an error, and
//! anything at the path that is not a socket is never replaced. The parent (RUNTIME) is created
//! 0755 when missing.
//!
//! **Credentials.** The peer's uid comes from `SO_PEERCRED`, read once at accept — see
//! [`access`](super::access).
//!
//! **A client is one connection**: it may have [`crate::bounds::MAX_CALLS_IN_FLIGHT`] calls
//! unanswered before its socket is no longer read ([`on_demand`]); one that stops reading is
//! dropped, and its socket shut down so nothing of it stays behind.
//!
//! **Objects.** What is served on a connection, and how it follows the manager, is shared
//! with the bus connection: see [`objects`](super::objects).

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::unix::UCred;
use tokio::net::{UnixListener, UnixStream};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, warn};
use zbus::{AuthMechanism, Guid, OwnedGuid};

use super::access::{Caller, Gate};
use super::hello::{HELLO_PATH, Hello};
use super::objects::{Objects, ServeError};
use super::on_demand;
use super::{Access, ManagerHandle, Mode, ServerError};

/// Mode of the private socket: only its owner (root, or the user in user mode) connects.
pub const SOCKET_MODE: u32 = 0o600;
/// Mode of a runtime directory we create.
pub const RUNTIME_DIR_MODE: u32 = crate::files::DIR_MODE;
/// A client that has not authenticated by then is dropped.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The manager's constant properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: String,
    pub mode: Mode,
    /// The cgroup root, as an absolute path (`/sys/fs/cgroup/…`).
    pub cgroup_root: String,
    /// Serve the `org.freedesktop.systemd1` subset too ([`super::systemd1`]).
    pub systemd_compat: bool,
}

impl ServerInfo {
    /// This build's version, for a daemon in `mode` owning `cgroup_root`.
    pub fn new(mode: Mode, cgroup_root: impl Into<String>) -> Self {
        ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            mode,
            cgroup_root: cgroup_root.into(),
            systemd_compat: false,
        }
    }

    /// The same, serving the `org.freedesktop.systemd1` subset when `on`.
    pub fn with_systemd_compat(mut self, on: bool) -> Self {
        self.systemd_compat = on;
        self
    }
}

/// What every connection of one server shares (immutable).
#[derive(Debug)]
struct Shared {
    info: Arc<ServerInfo>,
    access: Access,
    manager: ManagerHandle,
    guid: OwnedGuid,
}

/// A running private-socket server. Dropping it stops accepting and ends every connection;
/// [`PrivateServer::shutdown`] also removes the socket.
#[derive(Debug)]
pub struct PrivateServer {
    path: PathBuf,
    accept: JoinHandle<()>,
}

impl PrivateServer {
    /// Binds `path` (normally `RUNTIME/private`) and starts serving it on the current tokio
    /// runtime.
    pub fn bind(
        path: impl Into<PathBuf>,
        info: ServerInfo,
        access: Access,
        manager: ManagerHandle,
    ) -> Result<Self, ServerError> {
        let path = path.into();
        let listener = bind_socket(&path)?;
        let shared = Arc::new(Shared {
            info: Arc::new(info),
            access,
            manager,
            guid: server_guid(),
        });
        let accept = tokio::spawn(accept_loop(listener, shared));
        Ok(PrivateServer { path, accept })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving and removes the socket.
    pub fn shutdown(self) {
        self.accept.abort();
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!("removing {}: {e}", self.path.display());
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.accept.abort();
    }
}

/// Creates the socket at `path` with mode [`SOCKET_MODE`], atomically (see the module doc).
fn bind_socket(path: &Path) -> Result<UnixListener, ServerError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => {
            return Err(ServerError::NoParent {
                path: path.to_path_buf(),
            });
        }
    };
    let file_name = path.file_name().ok_or_else(|| ServerError::NoParent {
        path: path.to_path_buf(),
    })?;
    crate::files::create_dir_all(parent, RUNTIME_DIR_MODE).map_err(|source| {
        ServerError::CreateDir {
            path: parent.to_path_buf(),
            source,
        }
    })?;

    match fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            // A socket that still accepts belongs to a live daemon; a refused one is stale.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::InUse {
                    path: path.to_path_buf(),
                });
            }
        }
        Ok(_) => {
            return Err(ServerError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServerError::Stat {
                path: path.to_path_buf(),
                source,
            });
        }
    }

    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = parent.join(tmp_name);
    // Left over by an earlier process with our pid, or by a failed attempt of ours.
    let _ = fs::remove_file(&tmp);
    let std_listener =
        std::os::unix::net::UnixListener::bind(&tmp).map_err(|source| ServerError::Bind {
            path: tmp.clone(),
            source,
        })?;
    let finish = || -> Result<(), ServerError> {
        fs::set_permissions(&tmp, fs::Permissions::from_mode(SOCKET_MODE)).map_err(|source| {
            ServerError::Chmod {
                path: tmp.clone(),
                mode: SOCKET_MODE,
                source,
            }
        })?;
        fs::rename(&tmp, path).map_err(|source| ServerError::Rename {
            from: tmp.clone(),
            to: path.to_path_buf(),
            source,
        })?;
        std_listener
            .set_nonblocking(true)
            .map_err(|source| ServerError::Bind {
                path: path.to_path_buf(),
                source,
            })
    };
    if let Err(e) = finish() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    UnixListener::from_std(std_listener).map_err(|source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    })
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    let mut serial: u64 = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    crate::daemon::panic::test_point(crate::daemon::panic::Site::Accept);
                    serial += 1;
                    connections.spawn(serve_connection(stream, serial, shared.clone()));
                }
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS are transient: back off instead of spinning.
                    warn!("accepting on the private socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                // The connection's objects (one per unit) are freed now; glibc would keep most
                // of that memory (13 MB after one `corralctl list` with 10 000 units).
                crate::manager::admin::release_freed_memory();
            }
        }
    }
}

async fn serve_connection(stream: UnixStream, serial: u64, shared: Arc<Shared>) {
    let peer = match stream.peer_cred() {
        Ok(cred) => Some(cred),
        Err(e) => {
            // Without credentials the peer can still read; every state change is denied.
            warn!("SO_PEERCRED on the private socket: {e}");
            None
        }
    };
    // The same socket, to shut down when serving ends.
    let socket = stream.as_fd().try_clone_to_owned();
    match serve(stream, serial, peer, &shared).await {
        Ok(()) => debug!("private socket client :1.{serial} disconnected"),
        Err(e) => debug!("private socket client :1.{serial}: {e}"),
    }
    // Replies still being written to a client that stopped reading wait for its socket
    // forever, each holding the connection: shutting the socket down ends them (they fail
    // with EPIPE), so everything of the connection is freed now.
    if let Ok(socket) = socket {
        let _ = nix::sys::socket::shutdown(socket.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }
}

async fn serve(
    stream: UnixStream,
    serial: u64,
    peer: Option<UCred>,
    shared: &Shared,
) -> Result<(), ServeError> {
    let (builder, units) = on_demand::builder(stream, on_demand::Client::One, peer);
    let builder = builder
        .server(shared.guid.clone())?
        .p2p()
        .auth_mechanism(AuthMechanism::External)
        .serve_at(HELLO_PATH, Hello::new(serial))?;
    let gate = Gate::new(
        shared.manager.clone(),
        shared.access,
        Caller::Peer {
            uid: peer.map(|c| c.uid()),
            serial,
        },
    );
    let (builder, objects, notifications) =
        Objects::register(builder, gate, shared.info.clone(), units).await?;
    let conn = tokio::time::timeout(AUTH_TIMEOUT, builder.build())
        .await
        .map_err(|_| ServeError::AuthTimeout(AUTH_TIMEOUT))??;
    let who = format!("private socket client :1.{serial}");
    objects.follow(&conn, notifications, &who).await
}

/// The server's GUID. zbus's `Guid::generate` draws a v4 UUID from `getrandom`, which blocks
/// until the kernel's random pool is ready — about 1.5 s into a VM boot, a long wait for PID 1
/// to start serving. A GUID only has to be unique, not secret: `GRND_INSECURE` never blocks.
fn server_guid() -> OwnedGuid {
    let mut bytes = [0u8; 16];
    // SAFETY: writes at most 16 bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), libc::GRND_INSECURE) };
    if n != 16 {
        // Before Linux 5.6: the time and our pid are unique enough for one socket.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (now ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match Guid::try_from(hex) {
        Ok(g) => g.into(),
        Err(_) => Guid::generate().into(),
    }
}
