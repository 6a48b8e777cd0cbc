//! Who may change state (DESIGN §4): uid 0 in system mode, the daemon's own uid in user mode;
//! reading is open. The uid is the kernel's, never the caller's word ([`Caller`]): on the
//! private socket it is the peer's `SO_PEERCRED`, taken when the connection is accepted (the
//! credentials of the process that called `connect(2)`, fixed for the socket's life; EXTERNAL
//! authentication is not trusted for this). On the bus it is the bus daemon's
//! `GetConnectionCredentials` of the message's sender (from the header the bus daemon filled
//! in), asked per call, because there the socket's peer is the bus daemon itself. A lookup
//! that fails is unknown credentials, which are denied.
//!
//! [`Gate`] is the one place a state-changing method goes through: judge the caller, then (and
//! only then) parse the arguments and ask the manager.

use std::fmt;

use tokio::sync::oneshot;
use zbus::Connection;
use zbus::message::Header;
use zbus::proxy::CacheProperties;

use super::unit_object::Snapshot;
use super::{Error, ManagerHandle};
use crate::manager::request::{Request, RequestError};

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

    /// `Ok` if a caller with kernel-reported uid `peer_uid` may call `method`, else
    /// `org.freedesktop.DBus.Error.AccessDenied`. `None` (credentials unavailable) is denied.
    pub fn check(self, peer_uid: Option<u32>, method: &str) -> Result<(), Error> {
        match peer_uid {
            Some(uid) if uid == self.privileged_uid => Ok(()),
            Some(uid) => Err(Error::access_denied(format!(
                "{method} changes state and is allowed to uid {} only; the caller is uid {uid}",
                self.privileged_uid
            ))),
            None => Err(Error::access_denied(format!(
                "{method} changes state; the caller's credentials are unknown"
            ))),
        }
    }
}

/// How a connection tells who sent a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A peer-to-peer connection has one peer: its uid from `SO_PEERCRED` (`None`: the kernel
    /// could not tell).
    Peer(Option<u32>),
    /// A message bus connection carries many senders: ask the bus daemon about each.
    Bus,
}

impl Caller {
    /// The kernel uid of whoever sent the call with `header` on `conn`, if it can be known.
    pub async fn uid(self, conn: &Connection, header: &Header<'_>) -> Option<u32> {
        match self {
            Caller::Peer(uid) => uid,
            Caller::Bus => {
                let sender = header.sender()?;
                match bus_uid(conn, sender).await {
                    Ok(uid) => uid,
                    Err(e) => {
                        tracing::warn!("asking the bus for the credentials of {sender}: {e}");
                        None
                    }
                }
            }
        }
    }
}

/// `org.freedesktop.DBus.GetConnectionCredentials(sender)["UnixUserID"]`.
async fn bus_uid(
    conn: &Connection,
    sender: &zbus::names::UniqueName<'_>,
) -> zbus::Result<Option<u32>> {
    let bus = zbus::fdo::DBusProxy::builder(conn)
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let creds = bus
        .get_connection_credentials(sender.as_ref().into())
        .await?;
    Ok(creds.unix_user_id())
}

/// What the objects of one connection need to judge and forward a call.
#[derive(Debug, Clone)]
pub struct Gate {
    pub(crate) manager: ManagerHandle,
    access: Access,
    caller: Caller,
    /// The connection's last property snapshot (see [`Snapshot`]).
    pub(crate) snapshot: Snapshot,
}

impl Gate {
    pub fn new(manager: ManagerHandle, access: Access, caller: Caller) -> Self {
        Gate {
            manager,
            access,
            caller,
            snapshot: Snapshot::default(),
        }
    }

    /// `Ok` if the sender of the call with `header` may call `method` (which changes state).
    pub(crate) async fn allow(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        method: &str,
    ) -> Result<(), Error> {
        let uid = self.caller.uid(conn, header).await;
        self.access.check(uid, method)
    }

    /// A state-changing call: judge the caller, then build the request's arguments with
    /// `args` (a bad argument is reported only to a caller who may call), ask the manager with
    /// `make` and return its answer.
    pub(crate) async fn change<A, T>(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        method: &str,
        args: impl FnOnce() -> Result<A, Error>,
        make: impl FnOnce(A, oneshot::Sender<Result<T, RequestError>>) -> Request,
    ) -> Result<T, Error> {
        self.allow(conn, header, method).await?;
        let args = args()?;
        Ok(self.manager.ask(|reply| make(args, reply)).await??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn only_the_privileged_uid_passes() {
        let a = Access::for_uid(0);
        assert!(a.check(Some(0), "StartUnit").is_ok());
        for peer in [Some(1000), Some(65534), None] {
            let e = a.check(peer, "StartUnit").expect_err("denied");
            assert_eq!(e.name().as_str(), "org.freedesktop.DBus.Error.AccessDenied");
        }
        assert_eq!(Access::for_mode(Mode::System).privileged_uid(), 0);
        assert_eq!(
            Access::for_mode(Mode::User).privileged_uid(),
            nix::unistd::geteuid().as_raw()
        );
    }
}
