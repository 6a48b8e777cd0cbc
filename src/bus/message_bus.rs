//! Serving the API on the message bus (DESIGN §4 "Transports"): the system bus, or with
//! `--user` the session bus, beside the private socket. One task owns the bus connection for
//! the daemon's life:
//!
//! 1. **Wait.** For a `unix:path=` address (the normal case) the task watches the way to the
//!    socket with inotify ([`PathWatch`]) and tries to connect after every change that may
//!    concern it: at boot the bus is not up yet, and no retry timer ever runs — idle, the
//!    daemon never wakes. Any other address (`tcp:`, `unixexec:`, a `;`-separated list) can't
//!    be watched: it is tried once, and a failure is a warning.
//! 2. **Serve.** The manager object is registered before the connection says `Hello`, and a
//!    unit's object when a client first calls it (on a connection to a socket path; through any
//!    other address every unit object up front), with [`Caller::Bus`]: each call's sender
//!    is found from the bus daemon's `GetConnectionCredentials` (asked once per sender), and
//!    each state-changing call or read of contents judged by it. Then `org.corral1` is
//!    requested. If another connection owns it (DESIGN §1: a warning, not a failure), the log
//!    names the owner and corrald keeps serving on its unique name; it neither queues nor lets
//!    itself be replaced, so who owns the name changes only when a connection ends. From then
//!    on it follows the manager exactly as a private-socket connection does ([`Objects`]).
//! 3. **Reconnect.** When the bus closes the connection (the bus daemon restarts), the task
//!    logs it and goes back to 1. A session that ended with an error of ours instead waits
//!    for the next change to the socket before it tries again, so a persistent failure can't
//!    spin.
//!
//! The bus is an extra: every failure here is logged and the task goes on (or, when it can't
//! watch at all, ends); the daemon and its private socket never depend on it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use zbus::Connection;
use zbus::connection::Builder;
use zbus::fdo::{DBusProxy, RequestNameFlags, RequestNameReply};
use zbus::proxy::CacheProperties;

use super::access::{Caller, Gate};
use super::objects::{Objects, ServeError, Units};
use super::on_demand;
use super::watch::PathWatch;
use super::{Access, BUS_NAME, ManagerHandle, Mode, ServerInfo, systemd1};

/// The system bus when `DBUS_SYSTEM_BUS_ADDRESS` is unset.
pub const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";
/// How long connecting and saying `Hello` may take before the attempt counts as failed (only
/// while an attempt runs: an idle daemon has no timer).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The bus a daemon in `mode` serves on (DESIGN §1): `$DBUS_SYSTEM_BUS_ADDRESS` or
/// [`DEFAULT_SYSTEM_BUS`]; in user mode `$DBUS_SESSION_BUS_ADDRESS` or
/// `unix:path=$XDG_RUNTIME_DIR/bus` (`/run/user/UID/bus` without `$XDG_RUNTIME_DIR`).
pub fn bus_address(mode: Mode) -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match mode {
        Mode::System => {
            env("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|| DEFAULT_SYSTEM_BUS.to_string())
        }
        Mode::User => env("DBUS_SESSION_BUS_ADDRESS").unwrap_or_else(|| {
            let runtime = env("XDG_RUNTIME_DIR")
                .filter(|d| d.starts_with('/'))
                .unwrap_or_else(|| format!("/run/user/{}", nix::unistd::getuid()));
            format!("unix:path={runtime}/bus")
        }),
    }
}

/// The socket of a `unix:path=PATH[,key=value…]` address (with D-Bus `%xx` escapes undone);
/// `None` for any other address, or a list of several.
pub fn unix_path(address: &str) -> Option<PathBuf> {
    if address.contains(';') {
        return None;
    }
    let rest = address.strip_prefix("unix:")?;
    let value = rest.split(',').find_map(|kv| kv.strip_prefix("path="))?;
    let bytes = crate::unit::name::unescape_hex(value, b'%')?;
    let path =
        PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes));
    path.is_absolute().then_some(path)
}

/// What the bus task shares with the objects it serves.
struct Shared {
    address: String,
    /// "system bus" or "session bus", for the log.
    label: &'static str,
    info: Arc<ServerInfo>,
    access: Access,
    manager: ManagerHandle,
}

/// The task serving the API on the bus; dropping it disconnects.
#[derive(Debug)]
pub struct BusServer {
    task: JoinHandle<()>,
}

impl BusServer {
    /// Starts serving on the bus at `address` on the current tokio runtime (see the module
    /// doc); returns at once.
    pub fn spawn(
        address: String,
        info: ServerInfo,
        access: Access,
        manager: ManagerHandle,
    ) -> Self {
        let label = match info.mode {
            Mode::System => "system bus",
            Mode::User => "session bus",
        };
        let shared = Shared {
            address,
            label,
            info: Arc::new(info),
            access,
            manager,
        };
        BusServer {
            task: tokio::spawn(run(shared)),
        }
    }

    /// Disconnects from the bus.
    pub fn shutdown(self) {
        self.task.abort();
    }
}

impl Drop for BusServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(shared: Shared) {
    let Some(path) = unix_path(&shared.address) else {
        // Not a path we can watch: one attempt.
        let attempt = async {
            let builder = Builder::address(shared.address.as_str())?;
            serve(&shared, builder, Units::All).await
        };
        match attempt.await {
            Ok(()) => info!(
                "disconnected from the {} at {}; it is not watched, so corrald does not reconnect",
                shared.label, shared.address
            ),
            Err(e) => warn!(
                "serving on the {} at {}: {e}; serving the private socket only",
                shared.label, shared.address
            ),
        }
        return;
    };
    if let Err(e) = watch_and_serve(&shared, &path).await {
        warn!(
            "can't wait for the {} at {}: {e}; serving the private socket only",
            shared.label,
            path.display()
        );
    }
}

/// Connects whenever the socket at `path` lets us, serves until the bus goes away, and again.
/// Returns only if inotify fails.
async fn watch_and_serve(shared: &Shared, path: &Path) -> std::io::Result<()> {
    // The last failure logged, so a socket that keeps refusing us is reported once.
    let mut reported: Option<String> = None;
    loop {
        let mut watch = PathWatch::new(path)?;
        loop {
            match UnixStream::connect(path).await {
                Ok(stream) => {
                    // Nothing to watch while connected.
                    drop(watch);
                    reported = None;
                    let (builder, units) =
                        on_demand::builder(stream, on_demand::Client::Many, None);
                    match serve(shared, builder, units).await {
                        Ok(()) => {
                            info!(
                                "disconnected from the {}; waiting for it to return",
                                shared.label
                            );
                            break;
                        }
                        // A bus killed just as we connected: the handshake hits its closed
                        // socket. It is the bus going away, as above.
                        Err(e) if bus_gone(&e) => {
                            debug!("the {} went away while connecting: {e}", shared.label);
                            break;
                        }
                        Err(e) => {
                            warn!("serving on the {} at {}: {e}", shared.label, path.display());
                            reported = Some(e.to_string());
                            // Try again at the next change to the socket, not at once.
                            watch = PathWatch::new(path)?;
                        }
                    }
                }
                Err(e) => {
                    use std::io::ErrorKind::{ConnectionRefused, NotFound};
                    // Absent or not listening yet is the normal wait; anything else is worth
                    // a warning, once.
                    if !matches!(e.kind(), NotFound | ConnectionRefused)
                        && reported.as_deref() != Some(&e.to_string())
                    {
                        warn!(
                            "connecting to the {} at {}: {e}; trying again when it changes",
                            shared.label,
                            path.display()
                        );
                        reported = Some(e.to_string());
                    }
                }
            }
            watch.changed().await?;
        }
    }
}

/// One bus session: registers the objects, connects, requests the name and follows the
/// manager until the connection ends (`Ok`: the bus closed it or its socket failed) or
/// something of ours fails.
async fn serve(shared: &Shared, builder: Builder<'static>, units: Units) -> Result<(), ServeError> {
    let gate = Gate::new(shared.manager.clone(), shared.access, Caller::Bus);
    let (builder, objects, notifications) =
        Objects::register(builder, gate.clone(), shared.info.clone(), units).await?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, builder.build())
        .await
        .map_err(|_| ServeError::AuthTimeout(CONNECT_TIMEOUT))??;
    // Property getters ask the bus about their senders through it, for this session only.
    let _attached = gate.attach(&conn);
    let unique = conn
        .unique_name()
        .map_or_else(|| "?".to_string(), ToString::to_string);
    info!(
        "connected to the {} at {} as {unique}",
        shared.label, shared.address
    );
    request_name(&conn, BUS_NAME, &unique).await;
    if shared.info.systemd_compat {
        request_name(&conn, systemd1::BUS_NAME, &unique).await;
    }
    match objects
        .follow(&conn, notifications, &format!("the {}", shared.label))
        .await
    {
        // Writing a signal to a bus that just went away fails before the reader has seen
        // the end of the connection: that is the bus leaving too, not a failure of ours.
        Err(ServeError::Zbus(zbus::Error::InputOutput(e))) => {
            debug!("the {} connection failed: {e}", shared.label);
            Ok(())
        }
        Err(_) if conn.is_closed() => Ok(()),
        other => other,
    }
}

/// Whether a session failed because the bus's end of the socket closed under it (the bus
/// daemon died or restarted), rather than for a reason of ours.
fn bus_gone(e: &ServeError) -> bool {
    use std::io::ErrorKind::{
        BrokenPipe, ConnectionAborted, ConnectionReset, NotConnected, UnexpectedEof,
    };
    match e {
        ServeError::Zbus(zbus::Error::InputOutput(io)) => matches!(
            io.kind(),
            BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | UnexpectedEof
        ),
        _ => false,
    }
}

/// Asks for `name` (`org.corral1`, and `org.freedesktop.systemd1` with the subset); never
/// fails the session. Not queued, and not replaceable: a name held by another connection
/// stays a warning until the next connection to the bus.
async fn request_name(conn: &Connection, name: &'static str, unique: &str) {
    match conn
        .request_name_with_flags(name, RequestNameFlags::DoNotQueue.into())
        .await
    {
        Ok(RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner) => {
            info!("acquired {name}");
        }
        Ok(RequestNameReply::InQueue | RequestNameReply::Exists) | Err(zbus::Error::NameTaken) => {
            warn!(
                "{name} is owned by {}; serving on {unique} only",
                owner(conn, name).await
            );
        }
        Err(e) => warn!("requesting {name}: {e}; serving on {unique} only"),
    }
}

/// Who owns `name`: its unique name and, when the bus tells, its pid and uid.
async fn owner(conn: &Connection, name: &str) -> String {
    let describe = async {
        let bus = DBusProxy::builder(conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await?;
        let name = zbus::names::BusName::try_from(name)?;
        let owner = bus.get_name_owner(name).await?;
        let creds = bus
            .get_connection_credentials(owner.as_ref().into())
            .await
            .ok();
        let mut out = owner.to_string();
        if let Some(pid) = creds.as_ref().and_then(|c| c.process_id()) {
            out.push_str(&format!(" (pid {pid}"));
            if let Some(uid) = creds.as_ref().and_then(|c| c.unix_user_id()) {
                out.push_str(&format!(", uid {uid}"));
            }
            out.push(')');
        }
        Ok::<_, zbus::Error>(out)
    };
    describe
        .await
        .unwrap_or_else(|e| format!("another connection (asking the bus who failed: {e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_paths_are_recognised_and_unescaped() {
        assert_eq!(
            unix_path("unix:path=/run/dbus/system_bus_socket"),
            Some(PathBuf::from("/run/dbus/system_bus_socket"))
        );
        assert_eq!(
            unix_path("unix:path=/tmp/a%20b/bus,guid=0123"),
            Some(PathBuf::from("/tmp/a b/bus"))
        );
        for other in [
            "unix:abstract=/tmp/x",
            "tcp:host=localhost,port=1",
            "unix:path=/a;unix:path=/b",
            "unix:path=relative",
            "unix:path=/bad%zz",
        ] {
            assert_eq!(unix_path(other), None, "{other}");
        }
    }
}
