//! The D-Bus API (DESIGN §4): `org.corral1.Manager` at `/org/corral1`, one `org.corral1.Unit`
//! object per unit at `/org/corral1/unit/ESCAPED`, served on two transports: the private
//! peer-to-peer socket ([`server`]), and the system or session bus ([`message_bus`]), which
//! corrald joins whenever its socket is there (waited for with inotify, [`watch`]).
//!
//! The bus layer owns no unit state. Interface methods go through a [`Gate`] ([`access`]):
//! the caller is found from kernel credentials and, for state-changing calls and reads of
//! contents, judged first; then arguments are parsed and checked against
//! [`crate::bounds`], and a [`Request`] is sent to the manager task in the caller's own lane
//! (fair between callers: [`crate::manager::request::queue`]), whose `oneshot` reply is
//! awaited. What
//! the manager announces ([`Notification`], through a [`Notifier`]) is turned into signals and
//! object (un)registrations on every connection of either transport by one piece of code
//! ([`objects`]). [`ManagerHandle`] is the pair of channels.
//!
//! Layout: the manager boundary is [`crate::manager::request`] (zbus-free); [`error`] (stable
//! error names), [`access`] (who may change state, and who is calling), [`hello`] (the
//! `org.freedesktop.DBus.Hello` shim busctl needs on a peer-to-peer socket), [`manager_object`]
//! and [`unit_object`] (the interfaces), [`objects`] (what a connection serves and how it
//! follows the manager), [`on_demand`] (unit objects registered at a client's first call),
//! [`server`] (private socket, accept loop, per-connection task),
//! [`message_bus`] (the bus connection's life) and [`watch`] (waiting for a path); and
//! [`systemd1`], the `org.freedesktop.systemd1` subset for container runtimes (DESIGN §9),
//! served on the same connections when the daemon runs with it.

pub mod access;
pub mod error;
pub mod hello;
pub mod manager_object;
pub mod message_bus;
pub mod objects;
pub mod on_demand;
pub mod server;
pub mod systemd1;
pub mod unit_object;
pub mod watch;

use tokio::sync::oneshot;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::bounds::{
    MAX_IO_MAX_ENTRIES, MAX_LIMIT_ENTRIES, MAX_LIMIT_KEY_BYTES, MAX_LIMIT_VALUE_BYTES,
};
use crate::unit::UnitName;

pub use crate::manager::request::{
    ClientId, JobKind, Lane, LimitValue, LoadState, LogReader, LogReply, Notification, Notifier,
    Received, Request, RequestError, RequestReceiver, RequestSender, Subscription, UnitProperties,
    UnitSummary, request_queue,
};
pub use access::{Access, Caller, Gate, Mode, Privilege};
pub use error::{CorralError, Error, ServerError};
pub use message_bus::{BusServer, bus_address};
pub use server::{PrivateServer, ServerInfo};

/// The well-known bus name.
pub const BUS_NAME: &str = "org.corral1";
/// The manager object.
pub const MANAGER_PATH: &str = "/org/corral1";
pub const MANAGER_INTERFACE: &str = "org.corral1.Manager";
/// Parent of every unit object.
pub const UNIT_PATH_PREFIX: &str = "/org/corral1/unit";
pub const UNIT_INTERFACE: &str = "org.corral1.Unit";

/// The object path of a unit: `/org/corral1/unit/web_2eservice`.
pub fn unit_path(name: &UnitName) -> OwnedObjectPath {
    unit_path_under(UNIT_PATH_PREFIX, name)
}

/// The unit an object path names, if it is a unit path at all.
pub fn unit_from_path(path: &str) -> Option<UnitName> {
    unit_from_path_under(UNIT_PATH_PREFIX, path)
}

/// A unit's object below `prefix` (this API's, or [`systemd1`]'s).
pub(crate) fn unit_path_under(prefix: &str, name: &UnitName) -> OwnedObjectPath {
    // The escaped component is non-empty `[A-Za-z0-9_]+` by construction (a `UnitName` is never
    // empty), which is exactly what an object path element may hold.
    ObjectPath::from_string_unchecked(format!("{prefix}/{}", name.object_path_component())).into()
}

/// The unit a path directly below `prefix` names.
pub(crate) fn unit_from_path_under(prefix: &str, path: &str) -> Option<UnitName> {
    let component = path.strip_prefix(prefix)?.strip_prefix('/')?;
    UnitName::from_object_path_component(component)
}

/// The bus layer's link to the manager task: requests go in through its inbox, each in its
/// caller's lane; announcements come out through a [`Notifier`] that every connection
/// subscribes to, which also tells which units exist.
#[derive(Debug, Clone)]
pub struct ManagerHandle {
    requests: RequestSender,
    notifications: Notifier,
}

impl ManagerHandle {
    /// The manager keeps the [`RequestReceiver`] and a clone of the [`Notifier`] (to announce
    /// on).
    pub fn new(requests: RequestSender, notifications: Notifier) -> Self {
        ManagerHandle {
            requests,
            notifications,
        }
    }

    pub fn subscribe(&self) -> Subscription {
        self.notifications.subscribe()
    }

    /// Sends one request in `lane` and waits for its reply.
    pub(crate) async fn ask<T>(
        &self,
        lane: &Lane,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(lane, make(tx))
            .map_err(|_| Error::manager_gone())?;
        rx.await.map_err(|_| Error::manager_gone())
    }

    /// Every unit, for the bus layer's own bookkeeping (first in line).
    pub(crate) async fn list_units(&self) -> Result<Vec<UnitSummary>, Error> {
        self.ask(&Lane::internal(), |reply| Request::ListUnits { reply })
            .await
    }

    /// Whether `name` is a unit, without asking the manager once the [`Notifier`] knows the
    /// list (it is asked for the whole list once, and again only if a unit appeared or went
    /// while it was being taken).
    pub(crate) async fn unit_exists(&self, name: &UnitName) -> Result<bool, Error> {
        if let Some(known) = self.notifications.knows(name) {
            return Ok(known);
        }
        let changes = self.notifications.changes();
        let units = self.list_units().await?;
        let found = units.iter().any(|u| u.name == *name);
        self.notifications
            .seed(units.into_iter().map(|u| u.name), changes);
        Ok(found)
    }
}

/// `a{sv}` limits as a caller sends them: strings in the unit-file syntax or integers of any
/// type; `io-max` as `"DEVICE rbps=…"` or an array of such strings (one per device). Checked
/// against [`crate::bounds`] by counting before anything is converted, so a message with a
/// million entries costs no more than one with too many by one.
pub fn limit_values(
    map: &std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
) -> Result<Vec<(String, LimitValue)>, Error> {
    use zbus::zvariant::Value;
    let invalid = |msg: String| Error::Corral(CorralError::InvalidLimit(msg));
    let bad = |key: &str, v: &Value<'_>| {
        invalid(format!(
            "{key}: expected a string or an integer, got {}",
            v.value_signature()
        ))
    };
    if map.len() > MAX_LIMIT_ENTRIES {
        return Err(invalid(format!(
            "{} limits in one call; at most {MAX_LIMIT_ENTRIES}",
            map.len()
        )));
    }
    let mut out = Vec::new();
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        if key.len() > MAX_LIMIT_KEY_BYTES {
            return Err(invalid(format!(
                "a key of {} bytes; keys have at most {MAX_LIMIT_KEY_BYTES}",
                key.len()
            )));
        }
        let v: &Value<'_> = &map[key];
        let v = match v {
            Value::Value(inner) => inner.as_ref(),
            other => other,
        };
        let string = |s: &str| {
            if s.len() > MAX_LIMIT_VALUE_BYTES {
                Err(invalid(format!(
                    "{key}: a value of {} bytes; at most {MAX_LIMIT_VALUE_BYTES}",
                    s.len()
                )))
            } else {
                Ok(LimitValue::Str(s.to_string()))
            }
        };
        let value = match v {
            Value::Str(s) => string(s)?,
            Value::U8(n) => LimitValue::Int((*n).into()),
            Value::I16(n) => LimitValue::Int((*n).into()),
            Value::U16(n) => LimitValue::Int((*n).into()),
            Value::I32(n) => LimitValue::Int((*n).into()),
            Value::U32(n) => LimitValue::Int((*n).into()),
            Value::I64(n) => LimitValue::Int((*n).into()),
            Value::U64(n) => LimitValue::Int((*n).into()),
            Value::Array(_) if key != "io-max" => {
                return Err(invalid(format!(
                    "{key}: an array is only for io-max (one string per device)"
                )));
            }
            Value::Array(a) => {
                if a.len() > MAX_IO_MAX_ENTRIES {
                    return Err(invalid(format!(
                        "{key}: {} entries; at most {MAX_IO_MAX_ENTRIES} in one call",
                        a.len()
                    )));
                }
                for item in a.iter() {
                    match item {
                        Value::Str(s) => out.push((key.clone(), string(s)?)),
                        other => return Err(bad(key, other)),
                    }
                }
                continue;
            }
            other => return Err(bad(key, other)),
        };
        out.push((key.clone(), value));
    }
    Ok(out)
}

/// Parses a unit name given by a caller; a bad name is `InvalidUnit`, never a path.
pub(crate) fn parse_unit(name: &str) -> Result<UnitName, Error> {
    UnitName::parse(name).map_err(|e| Error::Corral(CorralError::InvalidUnit(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_round_trip() {
        for s in [
            "web.service",
            "-.slice",
            "apps-batch.slice",
            "1x@y:z.service",
        ] {
            let name = UnitName::parse(s).expect("valid");
            let path = unit_path(&name);
            assert!(path.as_str().starts_with("/org/corral1/unit/"), "{path}");
            assert_eq!(unit_from_path(path.as_str()), Some(name));
        }
        assert_eq!(
            unit_path(&UnitName::parse("web.service").expect("valid")).as_str(),
            "/org/corral1/unit/web_2eservice"
        );
        assert_eq!(unit_from_path("/org/corral1"), None);
        assert_eq!(unit_from_path("/org/corral1/unitx/web_2eservice"), None);
        assert_eq!(unit_from_path("/org/corral1/unit/web_2fservice"), None);
    }
}
