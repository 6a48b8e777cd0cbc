//! corralctl's connection to the daemon, and thin typed calls over it. Views
//! ([`super::views`]) turn the answers into text.
//!
//! **Which connection** (DESIGN §5): `--address unix:path=…` is that socket and nothing else.
//! Without it, the private socket (`RUNTIME/private`, spoken peer to peer with EXTERNAL
//! authentication) when it can be opened; when it is absent, or not ours to open (it is 0600:
//! an unprivileged user on the system manager), the bus — the system bus, with `--user` the
//! session bus — and `org.corral1` on it. Reading works for everyone there; a state change by
//! anyone but root (or the user, for a user manager) comes back `AccessDenied` from corrald.
//!
//! **Waiting for a job** is waiting for its `JobRemoved`, subscribed before the call so its
//! end can't be missed. The daemon never drops one, but a client must not hang forever if it
//! ever did: after [`JOB_QUIET`] without it, corralctl reads the unit's state, and a unit that
//! has reached what the job wanted (`active` for a start, `inactive` or `failed` for a stop)
//! ends the wait as `done`, and so does a unit no longer loaded (a transient unit is unloaded
//! once it has stopped without failing); otherwise it goes on waiting, up to [`JOB_LIMIT`] in
//! all, then fails saying where the unit stands. (A unit already in the wanted state while its
//! job still waits for a slow dependency would be read as done too early; rare, and only when
//! the signal is late.)

use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use zbus::proxy::Proxy;
use zbus::zvariant::OwnedObjectPath;
use zbus::{Connection, Message, MessageStream};

use crate::bus::{BUS_NAME, MANAGER_INTERFACE, MANAGER_PATH, Mode, UNIT_INTERFACE, bus_address};

/// How long a job may go without its `JobRemoved` before corralctl reads its unit's state.
pub const JOB_QUIET: Duration = Duration::from_secs(10);
/// How long corralctl waits for a job at the most.
pub const JOB_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The manager's signals of one kind, as they arrive.
type Signals = Pin<Box<dyn Stream<Item = Message> + Send>>;

/// Whether `msg`, a `UnitStateChanged`, says that `unit` ended (or can't be read: look then).
fn ended(msg: &Message, unit: &str) -> bool {
    match msg.body().deserialize::<(&str, &str, &str)>() {
        Ok((name, state, _)) => name == unit && (state == "inactive" || state == "failed"),
        Err(_) => true,
    }
}

/// The default private socket of the system manager.
pub const DEFAULT_SOCKET: &str = "/run/corral/private";

/// Why corralctl could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("unsupported address {0:?}: expected unix:path=/path/to/socket")]
    Address(String),
    #[error("connecting to {}: {err} (is corrald running?)", path.display())]
    Connect { path: PathBuf, err: std::io::Error },
    #[error(
        "connecting to {}: {err}; and to the bus at {bus}: {bus_err} (is corrald running?)",
        path.display()
    )]
    Fallback {
        path: PathBuf,
        err: std::io::Error,
        bus: String,
        bus_err: String,
    },
    /// A D-Bus error reply, shown as the daemon worded it.
    #[error("{0}")]
    Call(String),
}

impl From<zbus::Error> for ClientError {
    fn from(e: zbus::Error) -> Self {
        match e {
            zbus::Error::MethodError(name, Some(msg), _) => {
                ClientError::Call(format!("{msg} ({name})"))
            }
            zbus::Error::MethodError(name, None, _) => ClientError::Call(name.to_string()),
            zbus::Error::FDO(e) => ClientError::Call(e.to_string()),
            other => ClientError::Call(other.to_string()),
        }
    }
}

/// How many calls corralctl keeps in flight at once when it reads many units (`tree`, `top`):
/// well below what the daemon lets one client have ([`crate::bounds::MAX_CALLS_IN_FLIGHT`]),
/// so the bus never refuses them.
pub const CONCURRENT_CALLS: usize = crate::bounds::MAX_CALLS_IN_FLIGHT / 2;

/// Whether a call was refused `AccessDenied`: reading processes and logs is root's (and a
/// log its unit's user's), DESIGN §4.
pub fn denied(e: &zbus::Error) -> bool {
    const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
    match e {
        zbus::Error::MethodError(name, _, _) => name.as_str() == ACCESS_DENIED,
        zbus::Error::FDO(e) => zbus::DBusError::name(&**e).as_str() == ACCESS_DENIED,
        _ => false,
    }
}

/// The socket an `--address` names, or the default one: the system manager's, or with
/// `user` the per-user manager's (`$XDG_RUNTIME_DIR/corral/private`).
pub fn socket_path(address: Option<&str>, user: bool) -> Result<PathBuf, ClientError> {
    match address {
        None if user => {
            let runtime = std::env::var("XDG_RUNTIME_DIR")
                .ok()
                .filter(|d| d.starts_with('/'))
                .unwrap_or_else(|| format!("/run/user/{}", nix::unistd::getuid()));
            Ok(PathBuf::from(runtime).join("corral/private"))
        }
        None => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(a) => a
            .strip_prefix("unix:path=")
            .map(PathBuf::from)
            .ok_or_else(|| ClientError::Address(a.to_string())),
    }
}

/// One row of `ListUnits`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnitRow {
    pub name: String,
    pub description: String,
    pub load_state: String,
    pub active_state: String,
    pub sub_state: String,
}

/// A connected client.
pub struct Client {
    conn: Connection,
    /// [`JOB_QUIET`], unless a test wants it shorter.
    job_quiet: Duration,
}

impl Client {
    /// The connection DESIGN §5 asks for (see the module doc): `address` if given, else the
    /// private socket, else the bus.
    pub async fn open(address: Option<&str>, user: bool) -> Result<Client, ClientError> {
        let path = socket_path(address, user)?;
        if address.is_some() {
            return Client::connect(path).await;
        }
        match Client::connect(path).await {
            Err(ClientError::Connect { path, err })
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                let bus = bus_address(if user { Mode::User } else { Mode::System });
                Client::connect_bus(&bus)
                    .await
                    .map_err(|e| ClientError::Fallback {
                        path,
                        err,
                        bus,
                        bus_err: e.to_string(),
                    })
            }
            other => other,
        }
    }

    /// A connection to the message bus at `address`; calls go to `org.corral1` there.
    pub async fn connect_bus(address: &str) -> Result<Client, ClientError> {
        let build = zbus::connection::Builder::address(address)?.build();
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, build)
            .await
            .map_err(|_| ClientError::Call(format!("no answer within {CONNECT_TIMEOUT:?}")))??;
        Ok(Client {
            conn,
            job_quiet: JOB_QUIET,
        })
    }

    pub async fn connect(path: PathBuf) -> Result<Client, ClientError> {
        let stream = tokio::net::UnixStream::connect(&path)
            .await
            .map_err(|err| ClientError::Connect {
                path: path.clone(),
                err,
            })?;
        let conn = zbus::connection::Builder::unix_stream(stream)
            .p2p()
            .auth_mechanism(zbus::AuthMechanism::External)
            .build()
            .await?;
        Ok(Client {
            conn,
            job_quiet: JOB_QUIET,
        })
    }

    /// Reads a job's unit after `quiet` without its `JobRemoved`, instead of [`JOB_QUIET`].
    pub fn with_job_quiet(mut self, quiet: Duration) -> Self {
        self.job_quiet = quiet;
        self
    }

    async fn manager(&self) -> Result<Proxy<'static>, ClientError> {
        Ok(Proxy::new(&self.conn, BUS_NAME, MANAGER_PATH, MANAGER_INTERFACE).await?)
    }

    /// The manager's `member` signals from now on. On the bus through the proxy, which
    /// follows who owns `org.corral1`; peer to peer the daemon is the only sender, and the
    /// proxy would still ask it `GetNameOwner` (a bus method it does not serve: a failed
    /// round trip per subscription), so the connection's messages are matched directly.
    async fn manager_signals(
        &self,
        manager: &Proxy<'static>,
        member: &'static str,
    ) -> Result<Signals, ClientError> {
        if self.conn.is_bus() {
            return Ok(Box::pin(manager.receive_signal(member).await?));
        }
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .path(MANAGER_PATH)?
            .interface(MANAGER_INTERFACE)?
            .member(member)?
            .build();
        let stream = MessageStream::for_match_rule(rule, &self.conn, None).await?;
        Ok(Box::pin(stream.filter_map(|m| async move { m.ok() })))
    }

    pub async fn unit(&self, name: &str) -> Result<Proxy<'static>, ClientError> {
        let path: OwnedObjectPath = self.manager().await?.call("GetUnit", &(name,)).await?;
        Ok(self.unit_at(path).await?)
    }

    /// The unit object at `path`, with no property cache: every read is the daemon's answer now.
    async fn unit_at(&self, path: OwnedObjectPath) -> zbus::Result<Proxy<'static>> {
        zbus::proxy::Builder::new(&self.conn)
            .destination(BUS_NAME)?
            .path(path)?
            .interface(UNIT_INTERFACE)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
    }

    pub async fn list_units(&self) -> Result<Vec<UnitRow>, ClientError> {
        let rows: Vec<(String, String, String, String, String, OwnedObjectPath)> =
            self.manager().await?.call("ListUnits", &()).await?;
        Ok(rows
            .into_iter()
            .map(
                |(name, description, load_state, active_state, sub_state, _)| UnitRow {
                    name,
                    description,
                    load_state,
                    active_state,
                    sub_state,
                },
            )
            .collect())
    }

    /// Runs a job (`StartUnit`, `StopUnit`, `RestartUnit`) and, unless `no_block`, waits for
    /// its `JobRemoved`: subscribed before the call, so the end can't be missed. Returns the
    /// job's result (`done`, `failed`, …).
    pub async fn job(
        &self,
        method: &str,
        unit: &str,
        no_block: bool,
    ) -> Result<String, ClientError> {
        let manager = self.manager().await?;
        let mut removed = self.manager_signals(&manager, "JobRemoved").await?;
        let id: u32 = manager.call(method, &(unit,)).await?;
        if no_block {
            return Ok("queued".to_string());
        }
        self.wait_job(&mut removed, id, unit, method != "StopUnit")
            .await
    }

    /// Waits for job `id` of `unit` to end (see the module doc); returns its result.
    /// `start`: the job wants the unit active (else inactive).
    async fn wait_job(
        &self,
        removed: &mut Signals,
        id: u32,
        unit: &str,
        start: bool,
    ) -> Result<String, ClientError> {
        let began = Instant::now();
        loop {
            match tokio::time::timeout(self.job_quiet, removed.next()).await {
                Ok(Some(msg)) => {
                    let (job, _unit, result): (u32, String, String) = msg.body().deserialize()?;
                    if job == id {
                        return Ok(result);
                    }
                }
                Ok(None) => {
                    return Err(ClientError::Call("the daemon closed the connection".into()));
                }
                Err(_) => {
                    // Quiet for a while: a slow job, or (it should not happen) a lost signal.
                    let Some(state) = self.active_state(unit).await? else {
                        // Gone: a transient unit is unloaded once it has stopped, possibly in
                        // the instant between its JobRemoved and this read — and only when it
                        // did not fail, for a failed one stays loaded (DESIGN §9). So its job,
                        // a stop or a start that ran its course, is done.
                        return Ok("done".to_string());
                    };
                    let reached = if start {
                        state == "active"
                    } else {
                        state == "inactive" || state == "failed"
                    };
                    if reached {
                        return Ok("done".to_string());
                    }
                    if began.elapsed() >= JOB_LIMIT {
                        return Err(ClientError::Call(format!(
                            "job {id} of {unit} did not end within {} min; the unit is {state}. \
                             See \"corralctl status {unit}\".",
                            JOB_LIMIT.as_secs() / 60
                        )));
                    }
                }
            }
        }
    }

    /// A unit's `ActiveState` now, or `None` when it is not loaded (or its object went
    /// between the lookup and the read).
    async fn active_state(&self, unit: &str) -> Result<Option<String>, ClientError> {
        let path: OwnedObjectPath = match self.manager().await?.call("GetUnit", &(unit,)).await {
            Ok(path) => path,
            Err(e) if super::tree::vanished(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match self
            .unit_at(path)
            .await?
            .get_property::<String>("ActiveState")
            .await
        {
            Ok(state) => Ok(Some(state)),
            Err(e) if super::tree::vanished(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `Reexec`, then waits until the re-executed daemon answers: on the private socket the
    /// old daemon closes this connection as it executes and the new one serves the socket again
    /// once it has adopted every service; on the bus, `org.corral1` passes from the old
    /// daemon's connection to the new one's.
    pub async fn reexec(&self, address: Option<&str>, user: bool) -> Result<(), ClientError> {
        const LIMIT: Duration = Duration::from_secs(30);
        let on_bus = self.conn.unique_name().is_some();
        let mut owners = if on_bus {
            let dbus = zbus::fdo::DBusProxy::new(&self.conn).await?;
            Some(
                dbus.receive_name_owner_changed_with_args(&[(0, BUS_NAME)])
                    .await?,
            )
        } else {
            None
        };
        self.call_unit_method("Reexec", &()).await?;
        let answered = async {
            match owners.as_mut() {
                Some(owners) => {
                    while let Some(change) = owners.next().await {
                        if change.args().is_ok_and(|a| a.new_owner().is_some()) {
                            return self.ping().await;
                        }
                    }
                    Err(ClientError::Call("the bus closed the connection".into()))
                }
                None => {
                    // The new daemon binds its socket anew (a rename into place): watched with
                    // inotify from before the first try, so its appearance is never missed.
                    let path = socket_path(address, user)?;
                    let mut watch = crate::bus::watch::PathWatch::new(&path).map_err(|e| {
                        ClientError::Call(format!("watching {}: {e}", path.display()))
                    })?;
                    self.conn.closed().await;
                    loop {
                        if let Ok(new) = Client::open(address, user).await
                            && new.ping().await.is_ok()
                        {
                            return Ok(());
                        }
                        watch.changed().await.map_err(|e| {
                            ClientError::Call(format!("watching {}: {e}", path.display()))
                        })?;
                    }
                }
            }
        };
        tokio::time::timeout(LIMIT, answered).await.map_err(|_| {
            ClientError::Call(format!(
                "corrald did not answer within {LIMIT:?} of re-executing"
            ))
        })?
    }

    /// Whether the daemon answers (`org.freedesktop.DBus.Peer.Ping` of the manager object).
    pub async fn ping(&self) -> Result<(), ClientError> {
        let peer = Proxy::new(
            &self.conn,
            BUS_NAME,
            MANAGER_PATH,
            "org.freedesktop.DBus.Peer",
        )
        .await?;
        let _: () = peer.call("Ping", &()).await?;
        Ok(())
    }

    /// Calls a manager method that returns nothing.
    pub async fn call_unit_method<B>(&self, method: &str, body: &B) -> Result<(), ClientError>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let _: () = self.manager().await?.call(method, body).await?;
        Ok(())
    }

    /// `SetUnitLimits` (or, with `dry_run`, `DiffUnitLimits`) from `KEY=VALUE` words; returns
    /// the files that would change for a dry run.
    pub async fn limits(
        &self,
        unit: &str,
        pairs: &[(String, String)],
        runtime: bool,
        dry_run: bool,
    ) -> Result<Vec<(String, String, String)>, ClientError> {
        let map: std::collections::HashMap<&str, zbus::zvariant::Value<'_>> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), zbus::zvariant::Value::from(v.as_str())))
            .collect();
        let manager = self.manager().await?;
        if dry_run {
            Ok(manager.call("DiffUnitLimits", &(unit, map)).await?)
        } else {
            let _: () = manager.call("SetUnitLimits", &(unit, map, runtime)).await?;
            Ok(Vec::new())
        }
    }

    /// `StartTransientUnit`; waits for the start job, and with `wait` until the unit is no
    /// longer active, returning its `ExitStatus`.
    pub async fn transient(
        &self,
        name: &str,
        toml: &str,
        wait: bool,
    ) -> Result<Option<i32>, ClientError> {
        let manager = self.manager().await?;
        let mut removed = self.manager_signals(&manager, "JobRemoved").await?;
        let mut changed = self.manager_signals(&manager, "UnitStateChanged").await?;
        let id: u32 = manager.call("StartTransientUnit", &(name, toml)).await?;
        let result = self.wait_job(&mut removed, id, name, true).await?;
        if result != "done" {
            return Err(ClientError::Call(format!(
                "{name} did not start: {result}. See \"corralctl status {name}\"."
            )));
        }
        if !wait {
            return Ok(None);
        }
        loop {
            // Woken when this unit's state change says it ended; a client too slow for a
            // burst may be spared some state changes (they are not replayed, unlike job
            // results), so after a quiet spell it looks anyway.
            loop {
                match tokio::time::timeout(self.job_quiet, changed.next()).await {
                    Ok(Some(msg)) => {
                        if ended(&msg, name) {
                            break;
                        }
                    }
                    Err(_) => break,
                    Ok(None) => {
                        return Err(ClientError::Call("the daemon closed the connection".into()));
                    }
                }
            }
            match self.exit_status_once_ended(name).await {
                Ok(Some(code)) => return Ok(Some(code)),
                Ok(None) => {}
                // A transient unit is unloaded once it ends inactive (DESIGN §9), which only a
                // clean end does: a failed one stays to be read.
                Err(e) if super::tree::vanished(&e) => return Ok(Some(0)),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A unit's exit status if it has ended (inactive or failed), `None` while it runs.
    async fn exit_status_once_ended(&self, name: &str) -> zbus::Result<Option<i32>> {
        let manager = Proxy::new(&self.conn, BUS_NAME, MANAGER_PATH, MANAGER_INTERFACE).await?;
        let path: OwnedObjectPath = manager.call("GetUnit", &(name,)).await?;
        let unit = self.unit_at(path).await?;
        let state: String = unit.get_property("ActiveState").await?;
        if state == "inactive" || state == "failed" {
            return Ok(Some(unit.get_property("ExitStatus").await?));
        }
        Ok(None)
    }

    pub async fn unit_files(&self, unit: &str) -> Result<Vec<(String, String)>, ClientError> {
        Ok(self.manager().await?.call("GetUnitFiles", &(unit,)).await?)
    }

    pub async fn reload(&self) -> Result<Vec<(String, String)>, ClientError> {
        Ok(self.manager().await?.call("Reload", &()).await?)
    }

    pub async fn log(&self, unit: &str, lines: u32) -> Result<Vec<String>, ClientError> {
        Ok(self
            .manager()
            .await?
            .call("GetUnitLog", &(unit, lines))
            .await?)
    }

    /// The unit's processes; `None` when they are not shown to this caller ([`denied`]).
    pub async fn processes(
        &self,
        unit: &Proxy<'_>,
    ) -> Result<Option<Vec<(u32, String)>>, ClientError> {
        match unit.call("GetProcesses", &()).await {
            Ok(procs) => Ok(Some(procs)),
            Err(e) if denied(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The last log lines of a unit for a view beside others (`status`); `None` when they are
    /// not shown to this caller ([`denied`]).
    pub async fn log_if_shown(
        &self,
        unit: &str,
        lines: u32,
    ) -> Result<Option<Vec<String>>, ClientError> {
        match self
            .manager()
            .await?
            .call("GetUnitLog", &(unit, lines))
            .await
        {
            Ok(lines) => Ok(Some(lines)),
            Err(e) if denied(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A property of a unit, as any D-Bus value.
    /// Every property of the unit behind `unit` at once (`Properties.GetAll`).
    pub async fn properties(&self, unit: &Proxy<'_>) -> Result<Properties, ClientError> {
        let all = zbus::fdo::PropertiesProxy::builder(&self.conn)
            .destination(BUS_NAME)?
            .path(unit.path().to_owned())?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?
            .get_all(zbus::names::InterfaceName::from_static_str_unchecked(
                UNIT_INTERFACE,
            ))
            .await
            .map_err(zbus::Error::from)?;
        Ok(Properties(all))
    }

    pub async fn property<T>(&self, unit: &Proxy<'_>, name: &str) -> Result<T, ClientError>
    where
        T: TryFrom<zbus::zvariant::OwnedValue>,
        T::Error: Into<zbus::Error>,
    {
        Ok(unit.get_property(name).await?)
    }
}

/// Every property of one unit, from one `GetAll`: one round trip and one consistent snapshot.
#[derive(Debug)]
pub struct Properties(std::collections::HashMap<String, zbus::zvariant::OwnedValue>);

impl Properties {
    pub fn get<T>(&self, name: &str) -> Result<T, ClientError>
    where
        T: TryFrom<zbus::zvariant::OwnedValue>,
        T::Error: Into<zbus::Error>,
    {
        let value = self
            .0
            .get(name)
            .ok_or_else(|| ClientError::Call(format!("the unit has no property {name}")))?
            .try_clone()
            .map_err(zbus::Error::from)?;
        T::try_from(value).map_err(|e| ClientError::from(e.into()))
    }
}

/// How long a client waits for the daemon to answer at all.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A unit as `ListUnits` names it, with a proxy for its object.
pub struct UnitObject {
    pub row: UnitRow,
    pub proxy: Proxy<'static>,
}

impl Client {
    /// Every unit with a proxy that never caches: each property read asks the daemon again, so
    /// the usage figures are fresh every time (`top` reads them again and again). One
    /// `ListUnits` call; no `GetUnit` per unit.
    pub async fn unit_objects(&self) -> Result<Vec<UnitObject>, ClientError> {
        let rows: Vec<(String, String, String, String, String, OwnedObjectPath)> =
            self.manager().await?.call("ListUnits", &()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (name, description, load_state, active_state, sub_state, path) in rows {
            let proxy = self.unit_at(path).await?;
            out.push(UnitObject {
                row: UnitRow {
                    name,
                    description,
                    load_state,
                    active_state,
                    sub_state,
                },
                proxy,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_changed(unit: &str, state: &str) -> Message {
        Message::signal(MANAGER_PATH, MANAGER_INTERFACE, "UnitStateChanged")
            .unwrap()
            .build(&(unit, state, "dead"))
            .unwrap()
    }

    #[test]
    fn only_the_units_own_end_wakes_a_run_wait() {
        assert!(ended(
            &state_changed("run-1.service", "inactive"),
            "run-1.service"
        ));
        assert!(ended(
            &state_changed("run-1.service", "failed"),
            "run-1.service"
        ));
        assert!(!ended(
            &state_changed("run-1.service", "active"),
            "run-1.service"
        ));
        assert!(!ended(
            &state_changed("run-1.service", "deactivating"),
            "run-1.service"
        ));
        assert!(!ended(
            &state_changed("other.service", "inactive"),
            "run-1.service"
        ));
        // A signal that can't be read as one: look at the unit rather than miss its end.
        let odd = Message::signal(MANAGER_PATH, MANAGER_INTERFACE, "UnitStateChanged")
            .unwrap()
            .build(&(7u32,))
            .unwrap();
        assert!(ended(&odd, "run-1.service"));
    }
}
