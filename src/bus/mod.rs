//! The D-Bus API (DESIGN §4): `org.corral1.Manager` at `/org/corral1`, one `org.corral1.Unit`
//! object per unit at `/org/corral1/unit/ESCAPED`, served on two transports: the private
//! peer-to-peer socket ([`server`]), and the system or session bus ([`message_bus`]), which
//! corrald joins whenever its socket is there (waited for with inotify, [`watch`]).
//!
//! The bus layer owns no unit state. Interface methods go through a [`Gate`] ([`access`]):
//! state-changing ones have the caller judged by kernel credentials first, then names are
//! parsed and a [`Request`] is sent to the manager task, whose `oneshot` reply is awaited. What
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
//! [`message_bus`] (the bus connection's life) and [`watch`] (waiting for a path).

pub mod access;
pub mod error;
pub mod hello;
pub mod manager_object;
pub mod message_bus;
pub mod objects;
pub mod on_demand;
pub mod server;
pub mod unit_object;
pub mod watch;

use tokio::sync::{mpsc, oneshot};
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::unit::UnitName;

pub use crate::manager::request::{
    JobKind, LimitValue, LoadState, Notification, Notifier, Received, Request, RequestError,
    Subscription, UnitProperties, UnitSummary,
};
pub use access::{Access, Caller, Gate, Mode};
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
    // The escaped component is non-empty `[A-Za-z0-9_]+` by construction (a `UnitName` is never
    // empty), which is exactly what an object path element may hold.
    ObjectPath::from_string_unchecked(format!(
        "{UNIT_PATH_PREFIX}/{}",
        name.object_path_component()
    ))
    .into()
}

/// The unit an object path names, if it is a unit path at all.
pub fn unit_from_path(path: &str) -> Option<UnitName> {
    let component = path.strip_prefix(UNIT_PATH_PREFIX)?.strip_prefix('/')?;
    UnitName::from_object_path_component(component)
}

/// The bus layer's link to the manager task: requests go in through an `mpsc`, announcements
/// come out through a [`Notifier`] that every connection subscribes to.
#[derive(Debug, Clone)]
pub struct ManagerHandle {
    requests: mpsc::Sender<Request>,
    notifications: Notifier,
}

impl ManagerHandle {
    /// The manager keeps the `mpsc::Receiver` and a clone of the [`Notifier`] (to announce on).
    pub fn new(requests: mpsc::Sender<Request>, notifications: Notifier) -> Self {
        ManagerHandle {
            requests,
            notifications,
        }
    }

    pub fn subscribe(&self) -> Subscription {
        self.notifications.subscribe()
    }

    /// Sends one request and waits for its reply.
    pub(crate) async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(make(tx))
            .await
            .map_err(|_| Error::manager_gone())?;
        rx.await.map_err(|_| Error::manager_gone())
    }

    pub(crate) async fn list_units(&self) -> Result<Vec<UnitSummary>, Error> {
        self.ask(|reply| Request::ListUnits { reply }).await
    }

    /// A unit's properties; with `usage`, also what is read from its cgroup now.
    pub(crate) async fn properties(
        &self,
        unit: &UnitName,
        usage: bool,
    ) -> Result<UnitProperties, Error> {
        let unit = unit.clone();
        Ok(self
            .ask(|reply| Request::GetProperties { unit, usage, reply })
            .await??)
    }
}

/// `a{sv}` limits as a caller sends them: strings in the unit-file syntax or integers of any
/// type; `io-max` as `"DEVICE rbps=…"` or an array of such strings (one per device).
pub(crate) fn limit_values(
    map: &std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
) -> Result<Vec<(String, LimitValue)>, Error> {
    use zbus::zvariant::Value;
    let bad = |key: &str, v: &Value<'_>| {
        Error::Corral(CorralError::InvalidLimit(format!(
            "{key}: expected a string or an integer, got {}",
            v.value_signature()
        )))
    };
    let mut out = Vec::new();
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        let v: &Value<'_> = &map[key];
        let v = match v {
            Value::Value(inner) => inner.as_ref(),
            other => other,
        };
        let value = match v {
            Value::Str(s) => LimitValue::Str(s.to_string()),
            Value::U8(n) => LimitValue::Int((*n).into()),
            Value::I16(n) => LimitValue::Int((*n).into()),
            Value::U16(n) => LimitValue::Int((*n).into()),
            Value::I32(n) => LimitValue::Int((*n).into()),
            Value::U32(n) => LimitValue::Int((*n).into()),
            Value::I64(n) => LimitValue::Int((*n).into()),
            Value::U64(n) => LimitValue::Int((*n).into()),
            Value::Array(a) => {
                for item in a.iter() {
                    match item {
                        Value::Str(s) => out.push((key.clone(), LimitValue::Str(s.to_string()))),
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
