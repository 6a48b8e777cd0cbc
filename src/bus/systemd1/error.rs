//! The errors of the `org.freedesktop.systemd1` subset, named as systemd names them: its own
//! (`org.freedesktop.systemd1.NoSuchUnit`, `.UnitExists`, `.NoSuchProcess`, `.UnitInactive`)
//! and the standard ones (`org.freedesktop.DBus.Error.InvalidArgs`, `.AccessDenied`,
//! `.NotSupported`, `.Failed`). Container runtimes match on these names (runc's `UnitExists`
//! check), so none is folded into another.

use zbus::fdo;
use zbus::message::{Header, Message};
use zbus::names::ErrorName;

use crate::bus::{CorralError, Error as BusError};
use crate::manager::request::RequestError;

/// The names under `org.freedesktop.systemd1`.
#[derive(Debug, Clone, PartialEq, Eq, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop.systemd1")]
pub enum Named {
    NoSuchUnit(String),
    UnitExists(String),
    NoSuchProcess(String),
    UnitInactive(String),
}

/// What a method of the subset fails with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Named(#[from] Named),
    #[error(transparent)]
    Fdo(#[from] fdo::Error),
}

impl Error {
    pub fn invalid_args(msg: impl Into<String>) -> Self {
        Error::Fdo(fdo::Error::InvalidArgs(msg.into()))
    }
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        let msg = e.to_string();
        match e {
            RequestError::NoSuchUnit(_) => Named::NoSuchUnit(msg).into(),
            RequestError::UnitExists(_) => Named::UnitExists(msg).into(),
            RequestError::NoSuchProcess(_) => Named::NoSuchProcess(msg).into(),
            RequestError::UnitInactive(_) => Named::UnitInactive(msg).into(),
            RequestError::InvalidUnit(_) | RequestError::InvalidLimit(_) => {
                Error::invalid_args(msg)
            }
            RequestError::NotSupported(_) => fdo::Error::NotSupported(msg).into(),
            RequestError::JobFailed(_) => fdo::Error::Failed(msg).into(),
        }
    }
}

/// From the shared bus layer (the caller's access, the manager gone, a bound exceeded).
impl From<BusError> for Error {
    fn from(e: BusError) -> Self {
        match e {
            BusError::Fdo(e) => Error::Fdo(e),
            BusError::Corral(CorralError::NoSuchUnit(m)) => Named::NoSuchUnit(m).into(),
            BusError::Corral(CorralError::InvalidUnit(m) | CorralError::InvalidLimit(m)) => {
                Error::invalid_args(m)
            }
            BusError::Corral(CorralError::NotSupported(m)) => fdo::Error::NotSupported(m).into(),
            BusError::Corral(CorralError::JobFailed(m)) => fdo::Error::Failed(m).into(),
        }
    }
}

/// Property getters can only fail with an `fdo::Error` (zbus's rule).
impl From<Error> for fdo::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Fdo(e) => e,
            Error::Named(Named::NoSuchUnit(m)) => fdo::Error::UnknownObject(m),
            Error::Named(e) => fdo::Error::Failed(e.to_string()),
        }
    }
}

impl zbus::DBusError for Error {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        match self {
            Error::Named(e) => e.create_reply(call),
            Error::Fdo(e) => e.create_reply(call),
        }
    }

    fn name(&self) -> ErrorName<'_> {
        match self {
            Error::Named(e) => e.name(),
            Error::Fdo(e) => e.name(),
        }
    }

    fn description(&self) -> Option<&str> {
        match self {
            Error::Named(e) => e.description(),
            Error::Fdo(e) => e.description(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::UnitName;
    use zbus::DBusError;

    #[test]
    fn names_are_systemds() {
        let unit = UnitName::parse("c.scope").unwrap();
        let cases = [
            (
                RequestError::NoSuchUnit(unit),
                "org.freedesktop.systemd1.NoSuchUnit",
            ),
            (
                RequestError::UnitExists("x".into()),
                "org.freedesktop.systemd1.UnitExists",
            ),
            (
                RequestError::NoSuchProcess("x".into()),
                "org.freedesktop.systemd1.NoSuchProcess",
            ),
            (
                RequestError::UnitInactive("x".into()),
                "org.freedesktop.systemd1.UnitInactive",
            ),
            (
                RequestError::InvalidLimit("x".into()),
                "org.freedesktop.DBus.Error.InvalidArgs",
            ),
            (
                RequestError::NotSupported("x".into()),
                "org.freedesktop.DBus.Error.NotSupported",
            ),
        ];
        for (e, name) in cases {
            assert_eq!(Error::from(e).name().as_str(), name);
        }
    }
}
