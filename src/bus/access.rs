//! Who may do what (DESIGN §4), who is calling, and how many of a caller's calls may be in
//! flight.
//!
//! **Privilege.** Changing state, and reading *contents* (`GetUnitFiles`, `GetUnitLog`,
//! `DiffUnitLimits`, `GetProcesses`), are for uid 0 in system mode, the daemon's own uid in
//! user mode ([`Access`]); `GetUnitLog` also for the uid a unit runs as, for that unit (decided
//! by the manager, [`crate::manager::request::log_access`]). Reading *states* is open. The uid
//! is the kernel's, never the caller's word ([`Caller`]): on the private socket it is the
//! peer's `SO_PEERCRED`, taken when the connection is accepted (the credentials of the process
//! that called `connect(2)`, fixed for the socket's life; EXTERNAL authentication is not
//! trusted for this). On the bus it is the bus daemon's `GetConnectionCredentials` of the
//! message's sender (from the header the bus daemon filled in), because there the socket's
//! peer is the bus daemon itself; it is asked once per sender and kept, since a unique name is
//! never reused while the bus runs and a connection's uid never changes. A lookup that fails
//! is unknown credentials, which are denied.
//!
//! **Fairness.** Every call knows its caller ([`Who`]) before it asks the manager: the
//! caller's client (a private-socket connection, or one sender on the bus), uid and privilege
//! make the [`Lane`] its requests wait in (privileged callers first, then round robin over
//! uids and clients: [`crate::manager::request::queue`]). A client has at most
//! [`MAX_CALLS_IN_FLIGHT`] calls at the manager; one more is refused with
//! `org.freedesktop.DBus.Error.LimitsExceeded` at once, without waiting (on the private socket
//! the reader stops reading before that: [`on_demand`](super::on_demand)).
//!
//! [`Gate`] is the one place a method goes through: find the caller, judge it where the method
//! needs privilege, then (and only then) parse the arguments and ask the manager in the
//! caller's lane.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use zbus::Connection;
use zbus::fdo;
use zbus::message::Header;
use zbus::proxy::CacheProperties;

use super::unit_object::Snapshot;
use super::{Error, ManagerHandle};
use crate::bounds::MAX_CALLS_IN_FLIGHT;
use crate::manager::request::{ClientId, Lane, Request, RequestError};
use crate::unit::UnitName;

/// Whether the daemon manages the system or one user's units (`Mode` on D-Bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    System,
    User,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::User => "user",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The access policy: the one uid allowed to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    privileged_uid: u32,
}

impl Access {
    /// The policy for a daemon in `mode`: uid 0, or (user mode) the daemon's effective uid.
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::System => Access { privileged_uid: 0 },
            Mode::User => Access {
                privileged_uid: nix::unistd::geteuid().as_raw(),
            },
        }
    }

    /// A policy for an explicit uid (tests, or a daemon told whom to serve).
    pub fn for_uid(uid: u32) -> Self {
        Access {
            privileged_uid: uid,
        }
    }

    pub fn privileged_uid(self) -> u32 {
        self.privileged_uid
    }

    /// Whether `uid` (the kernel's word, `None` if it could not tell) is the privileged one.
    pub fn is_privileged(self, uid: Option<u32>) -> bool {
        uid == Some(self.privileged_uid)
    }

    /// `Ok` if a caller with kernel-reported uid `peer_uid` may call `method`, which needs
    /// `privilege`, else `org.freedesktop.DBus.Error.AccessDenied` saying why. `None`
    /// (credentials unavailable) is denied.
    pub fn check(
        self,
        peer_uid: Option<u32>,
        method: &str,
        privilege: Privilege,
    ) -> Result<(), Error> {
        let what = privilege.as_str();
        match peer_uid {
            Some(uid) if uid == self.privileged_uid => Ok(()),
            Some(uid) => Err(Error::access_denied(format!(
                "{method} {what} and is allowed to uid {} only; the caller is uid {uid}",
                self.privileged_uid
            ))),
            None => Err(Error::access_denied(format!(
                "{method} {what}; the caller's credentials are unknown"
            ))),
        }
    }
}

/// Why a method needs the privileged uid (DESIGN §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// It changes state.
    ChangesState,
    /// It reads contents: unit files, logs, processes' command lines, or stats paths as the
    /// daemon (`DiffUnitLimits` resolves devices).
    ReadsContents,
}

impl Privilege {
    fn as_str(self) -> &'static str {
        match self {
            Privilege::ChangesState => "changes state",
            Privilege::ReadsContents => "reads what units contain",
        }
    }
}

/// How a connection tells who sent a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A peer-to-peer connection has one peer: its uid from `SO_PEERCRED` (`None`: the kernel
    /// could not tell), and the connection's serial, which names the client.
    Peer { uid: Option<u32>, serial: u64 },
    /// A message bus connection carries many senders: ask the bus daemon about each.
    Bus,
}

/// Senders' uids kept on a bus connection before the table is emptied (an eviction only
/// costs the next call of an evicted sender one question to the bus).
const UIDS_KEPT: usize = 4096;

/// Who sent one call: the lane its requests wait in, and its uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Who {
    pub(crate) lane: Lane,
    pub(crate) uid: Option<u32>,
}

/// What every object of one connection shares about its callers.
#[derive(Debug)]
struct Callers {
    caller: Caller,
    /// On the bus: each sender's uid, as the bus daemon reported it.
    uids: Mutex<HashMap<Arc<str>, u32>>,
    /// On the bus: the connection, to ask the bus daemon with when a method has no connection
    /// at hand (property getters). Set while connected ([`Gate::attach`]).
    conn: Mutex<Option<Connection>>,
    /// Each client's calls at the manager now.
    in_flight: Mutex<HashMap<ClientId, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `org.freedesktop.DBus.GetConnectionCredentials(sender)["UnixUserID"]`.
async fn bus_uid(conn: &Connection, sender: &str) -> zbus::Result<Option<u32>> {
    let bus = zbus::fdo::DBusProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let name = zbus::names::BusName::try_from(sender)?;
    let creds = bus.get_connection_credentials(name).await?;
    Ok(creds.unix_user_id())
}

/// User-name lookups running at once, at most: each holds a thread of the blocking pool while
/// NSS answers (which may be a directory server that hangs), so a flood of calls can't pile up
/// threads.
static USER_LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// How long a caller waits for a user-name lookup.
const USER_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The uid of `user`, the user name `unit` runs as, looked up through NSS on a thread of the
/// blocking pool — never on the event loop, and never more than [`USER_LOOKUPS`] at once (a
/// lookup that hangs keeps its slot until it returns, so hung lookups can't multiply).
pub(crate) async fn uid_of_user(unit: &UnitName, user: &str) -> Result<u32, Error> {
    let failed = |why: String| Error::Fdo(fdo::Error::Failed(why));
    let slow = || {
        failed(format!(
            "looking up user {user} (whom {unit} runs as) took longer than {USER_LOOKUP_TIMEOUT:?}"
        ))
    };
    let permit = tokio::time::timeout(USER_LOOKUP_TIMEOUT, USER_LOOKUPS.acquire())
        .await
        .map_err(|_| slow())?
        .map_err(|e| failed(e.to_string()))?;
    let name = user.to_string();
    let lookup = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        nix::unistd::User::from_name(&name)
    });
    match tokio::time::timeout(USER_LOOKUP_TIMEOUT, lookup).await {
        Err(_) => Err(slow()),
        Ok(Err(e)) => Err(failed(format!("looking up user {user}: {e}"))),
        Ok(Ok(Err(errno))) => Err(failed(format!("looking up user {user}: {errno}"))),
        Ok(Ok(Ok(None))) => Err(Error::access_denied(format!(
            "{unit} runs as user {user}, which does not exist"
        ))),
        Ok(Ok(Ok(Some(u)))) => Ok(u.uid.as_raw()),
    }
}

/// What the objects of one connection need to judge and forward a call.
#[derive(Debug, Clone)]
pub struct Gate {
    pub(crate) manager: ManagerHandle,
    access: Access,
    callers: Arc<Callers>,
    /// The connection's last property snapshot (see [`Snapshot`]).
    pub(crate) snapshot: Snapshot,
}

/// One call at the manager; dropping it lets the client make another.
#[derive(Debug)]
pub(crate) struct Ticket {
    callers: Option<Arc<Callers>>,
    client: ClientId,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(callers) = &self.callers else { return };
        let mut in_flight = lock(&callers.in_flight);
        if let Some(n) = in_flight.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.client);
            }
        }
    }
}

/// Clears a bus connection from its [`Gate`] when the session ends, so the connection's
/// objects (which hold the gate) no longer hold the connection.
#[derive(Debug)]
pub(crate) struct Attached(Arc<Callers>);

impl Drop for Attached {
    fn drop(&mut self) {
        lock(&self.0.conn).take();
    }
}

impl Gate {
    pub fn new(manager: ManagerHandle, access: Access, caller: Caller) -> Self {
        Gate {
            manager,
            access,
            callers: Arc::new(Callers {
                caller,
                uids: Mutex::new(HashMap::new()),
                conn: Mutex::new(None),
                in_flight: Mutex::new(HashMap::new()),
            }),
            snapshot: Snapshot::default(),
        }
    }

    /// Lets the gate ask the bus daemon about senders through `conn` until the guard drops.
    pub(crate) fn attach(&self, conn: &Connection) -> Attached {
        *lock(&self.callers.conn) = Some(conn.clone());
        Attached(self.callers.clone())
    }

    /// Who sent the call with `header` (`None`: the bus layer's own read, e.g. a signal being
    /// built). `conn` is the connection it came on, when the method has it.
    pub(crate) async fn who(&self, conn: Option<&Connection>, header: Option<&Header<'_>>) -> Who {
        let Some(header) = header else {
            return Who {
                lane: Lane::internal(),
                uid: Some(self.access.privileged_uid()),
            };
        };
        let (client, uid) = match self.callers.caller {
            Caller::Peer { uid, serial } => (ClientId::Peer(serial), uid),
            Caller::Bus => match header.sender() {
                Some(sender) => {
                    let sender: Arc<str> = Arc::from(sender.as_str());
                    let uid = self.bus_uid(conn, &sender).await;
                    (ClientId::Bus(sender), uid)
                }
                None => (ClientId::Bus(Arc::from("")), None),
            },
        };
        Who {
            lane: Lane {
                privileged: self.access.is_privileged(uid),
                uid: uid.unwrap_or(u32::MAX),
                client,
            },
            uid,
        }
    }

    /// The uid of a bus sender: kept, or asked of the bus daemon (and kept).
    async fn bus_uid(&self, conn: Option<&Connection>, sender: &Arc<str>) -> Option<u32> {
        if let Some(uid) = lock(&self.callers.uids).get(sender) {
            return Some(*uid);
        }
        let conn = match conn {
            Some(c) => c.clone(),
            None => lock(&self.callers.conn).clone()?,
        };
        match bus_uid(&conn, sender).await {
            Ok(Some(uid)) => {
                let mut uids = lock(&self.callers.uids);
                if uids.len() >= UIDS_KEPT {
                    uids.clear();
                }
                uids.insert(sender.clone(), uid);
                Some(uid)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!("asking the bus for the credentials of {sender}: {e}");
                None
            }
        }
    }

    /// Whether the caller is the privileged uid.
    pub(crate) fn privileged(&self, who: &Who) -> bool {
        self.access.is_privileged(who.uid)
    }

    /// Counts one more call of `who` at the manager, or refuses it when its client has
    /// [`MAX_CALLS_IN_FLIGHT`] already.
    pub(crate) fn enter(&self, who: &Who) -> Result<Ticket, Error> {
        if who.lane.client == ClientId::Internal {
            return Ok(Ticket {
                callers: None,
                client: ClientId::Internal,
            });
        }
        let mut in_flight = lock(&self.callers.in_flight);
        let n = in_flight.entry(who.lane.client.clone()).or_insert(0);
        if *n >= MAX_CALLS_IN_FLIGHT {
            let client = match &who.lane.client {
                ClientId::Bus(name) => format!("sender {name}"),
                ClientId::Peer(serial) => format!("connection :1.{serial}"),
                ClientId::Internal => "corrald".into(),
            };
            return Err(Error::Fdo(fdo::Error::LimitsExceeded(format!(
                "{client} has {MAX_CALLS_IN_FLIGHT} calls waiting for an answer, the most a \
                 client may have: wait for their replies"
            ))));
        }
        *n += 1;
        Ok(Ticket {
            callers: Some(self.callers.clone()),
            client: who.lane.client.clone(),
        })
    }

    /// Asks the manager on behalf of `who`, in its lane, counted as one of its calls.
    pub(crate) async fn ask<T>(
        &self,
        who: &Who,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, Error> {
        let _ticket = self.enter(who)?;
        self.manager.ask(&who.lane, make).await
    }

    /// `Ok` if the sender of the call with `header` may call `method`, which needs
    /// `privilege`; the caller either way.
    pub(crate) async fn allow(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        method: &str,
        privilege: Privilege,
    ) -> Result<Who, Error> {
        let who = self.who(Some(conn), Some(header)).await;
        self.access.check(who.uid, method, privilege)?;
        Ok(who)
    }

    /// A call for the privileged uid only: judge the caller, then build the request's
    /// arguments with `args` (a bad argument is reported only to a caller who may call), ask
    /// the manager with `make` and return its answer.
    pub(crate) async fn privileged_call<A, T>(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        (method, privilege): (&str, Privilege),
        args: impl FnOnce() -> Result<A, Error>,
        make: impl FnOnce(A, oneshot::Sender<Result<T, RequestError>>) -> Request,
    ) -> Result<T, Error> {
        let who = self.allow(conn, header, method, privilege).await?;
        let args = args()?;
        Ok(self.ask(&who, |reply| make(args, reply)).await??)
    }

    /// A state-changing call ([`Gate::privileged_call`]).
    pub(crate) async fn change<A, T>(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        method: &str,
        args: impl FnOnce() -> Result<A, Error>,
        make: impl FnOnce(A, oneshot::Sender<Result<T, RequestError>>) -> Request,
    ) -> Result<T, Error> {
        self.privileged_call(conn, header, (method, Privilege::ChangesState), args, make)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn only_the_privileged_uid_passes() {
        let a = Access::for_uid(0);
        assert!(
            a.check(Some(0), "StartUnit", Privilege::ChangesState)
                .is_ok()
        );
        for peer in [Some(1000), Some(65534), None] {
            let e = a
                .check(peer, "StartUnit", Privilege::ChangesState)
                .expect_err("denied");
            assert_eq!(e.name().as_str(), "org.freedesktop.DBus.Error.AccessDenied");
        }
        let e = a
            .check(Some(65534), "GetUnitFiles", Privilege::ReadsContents)
            .expect_err("denied");
        assert!(
            e.to_string()
                .contains("GetUnitFiles reads what units contain and is allowed to uid 0 only"),
            "{e}"
        );
        assert_eq!(Access::for_mode(Mode::System).privileged_uid(), 0);
        assert_eq!(
            Access::for_mode(Mode::User).privileged_uid(),
            nix::unistd::geteuid().as_raw()
        );
    }
}
