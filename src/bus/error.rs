//! D-Bus errors with stable names (DESIGN §4): `org.corral1.Error.{NoSuchUnit, InvalidUnit,
//! InvalidLimit, JobFailed, NotSupported}` and `org.freedesktop.DBus.Error.AccessDenied`.
//!
//! zbus's `DBusError` derive puts every variant under one prefix, so the corral names are one
//! derived enum ([`CorralError`]) and the method error ([`Error`]) wraps it beside the standard
//! `org.freedesktop.DBus.Error.*` ones (AccessDenied, and Failed for a manager that has gone),
//! forwarding the `DBusError` trait by hand. Nothing is ever flattened into `Failed` that has a
//! name of its own.

use std::io;
use std::path::PathBuf;

use zbus::fdo;
use zbus::message::{Header, Message};
use zbus::names::ErrorName;

use crate::manager::request::RequestError;

/// The errors named `org.corral1.Error.*`.
#[derive(Debug, Clone, PartialEq, Eq, zbus::DBusError)]
#[zbus(prefix = "org.corral1.Error")]
pub enum CorralError {
    NoSuchUnit(String),
    InvalidUnit(String),
    InvalidLimit(String),
    JobFailed(String),
    NotSupported(String),
}

/// What a D-Bus method of corral can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Corral(#[from] CorralError),
    /// A standard error: `AccessDenied`, or `Failed` when the manager can't answer.
    #[error(transparent)]
    Fdo(#[from] fdo::Error),
}

impl Error {
    pub fn access_denied(msg: impl Into<String>) -> Self {
        Error::Fdo(fdo::Error::AccessDenied(msg.into()))
    }

    /// The manager task is gone or dropped the request.
    pub(crate) fn manager_gone() -> Self {
        Error::Fdo(fdo::Error::Failed("the manager is not running".into()))
    }
}

impl From<RequestError> for CorralError {
    fn from(e: RequestError) -> Self {
        let msg = e.to_string();
        match e {
            RequestError::NoSuchUnit(_) => CorralError::NoSuchUnit(msg),
            RequestError::InvalidUnit(_) => CorralError::InvalidUnit(msg),
            RequestError::InvalidLimit(_) => CorralError::InvalidLimit(msg),
            RequestError::JobFailed(_) | RequestError::UnitInactive(_) => {
                CorralError::JobFailed(msg)
            }
            RequestError::NotSupported(_) => CorralError::NotSupported(msg),
            // Only `org.freedesktop.systemd1` calls meet these, which name them as systemd
            // does; any other caller would have sent a bad unit.
            RequestError::UnitExists(_) | RequestError::NoSuchProcess(_) => {
                CorralError::InvalidUnit(msg)
            }
        }
    }
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        Error::Corral(e.into())
    }
}

/// Property getters can only fail with an `fdo::Error` (zbus's rule). A unit that vanished
/// between registration and the read is `UnknownObject`, as for any missing object.
impl From<Error> for fdo::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Fdo(e) => e,
            Error::Corral(CorralError::NoSuchUnit(m)) => fdo::Error::UnknownObject(m),
            Error::Corral(e) => fdo::Error::Failed(e.to_string()),
        }
    }
}

impl zbus::DBusError for Error {
    fn create_reply(&self, call: &Header<'_>) -> zbus::Result<Message> {
        match self {
            Error::Corral(e) => e.create_reply(call),
            Error::Fdo(e) => e.create_reply(call),
        }
    }

    fn name(&self) -> ErrorName<'_> {
        match self {
            Error::Corral(e) => e.name(),
            Error::Fdo(e) => e.name(),
        }
    }

    fn description(&self) -> Option<&str> {
        match self {
            Error::Corral(e) => e.description(),
            Error::Fdo(e) => e.description(),
        }
    }
}

/// Why the private socket could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("creating runtime directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("{path} is served by another live process (another corrald?)")]
    InUse { path: PathBuf },
    #[error("inspecting {path}: {source}")]
    Stat { path: PathBuf, source: io::Error },
    #[error("binding {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("setting mode {mode:o} on {path}: {source}")]
    Chmod {
        path: PathBuf,
        mode: u32,
        source: io::Error,
    },
    #[error("moving {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("socket path {path} has no parent directory")]
    NoParent { path: PathBuf },
}
