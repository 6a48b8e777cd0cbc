//! The objects of one connection, whatever its transport (the private socket's
//! [`server`](super::server) or the message bus's [`message_bus`](super::message_bus)): the
//! manager object and the unit objects, kept in step with the manager's [`Notification`]s —
//! units added and removed, and the signals `JobRemoved`, `UnitStateChanged` and
//! `PropertiesChanged` emitted on the connection.
//!
//! **Unit objects and zbus.** zbus 5's `ObjectServer` belongs to one connection and dispatches
//! only paths registered on it, node by node: there is no fallback or subtree handler (an
//! unregistered path is answered `UnknownObject` by the object server before any user code
//! sees it). Each registered unit costs a tree node with zbus's three standard interfaces plus
//! our small [`UnitObject`] (a name and a [`Gate`]), ~1.2 KB. So a connection registers a unit
//! when a client first calls it ([`on_demand`](super::on_demand)): a client costs what it uses
//! rather than connections × units. Only a bus reached at an address that is not a socket path
//! (zbus connects it, so its messages can't be seen first) registers them all up front
//! (`Units`).
//!
//! **Lost notifications.** A connection that falls behind the manager's state changes
//! ([`Received::Lagged`]) re-reads the unit list and makes its objects match it; the state
//! signals it missed are not replayed (clients re-read properties, as when a bus drops a slow
//! client's messages). Job results are never lost (see [`crate::manager::request`]) to a
//! client that reads them.
//!
//! **A client that stops reading** is dropped, not buffered for: when writing one
//! notification's signals to it takes longer than [`STALLED_CLIENT_TIMEOUT`] (its socket is
//! full), or when it leaves [`crate::bounds::MAX_PENDING_JOB_RESULTS`] job results unsent
//! ([`Received::Overflowed`]), following ends with an error and the connection is closed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;
use zbus::connection::Builder;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Value;
use zbus::{Connection, fdo, names::InterfaceName};

use super::access::Gate;
use super::manager_object::ManagerObject;
use super::on_demand::{Registered, Wanted};
use super::server::ServerInfo;
use super::unit_object::UnitObject;
use super::{
    Error, MANAGER_PATH, Notification, Received, Subscription, UNIT_INTERFACE, systemd1, unit_path,
};
use crate::bounds::{MAX_PENDING_JOB_RESULTS, STALLED_CLIENT_TIMEOUT};
use crate::unit::UnitName;

/// Properties re-read by clients after a state change (`emits_changed_signal = "invalidates"`).
const INVALIDATED_ON_STATE_CHANGE: &[&str] = &["Result", "MainPID", "ExitStatus", "NRestarts"];

/// Why serving one connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Zbus(#[from] zbus::Error),
    #[error(transparent)]
    Bus(#[from] Error),
    #[error("no authentication within {0:?}")]
    AuthTimeout(Duration),
    #[error("the client took no signal off its socket for {0:?}: it stopped reading")]
    Stalled(Duration),
    #[error("the client left {MAX_PENDING_JOB_RESULTS} job results unread: it stopped reading")]
    Overflowed,
}

/// Which unit objects a connection gets.
pub(crate) enum Units {
    /// Every unit, registered before the connection is handed out, and every unit added later
    /// (a bus whose socket zbus opens itself).
    All,
    /// The units its reader asks for, before a call to them is dispatched
    /// ([`OnDemand`](super::on_demand::OnDemand)).
    OnDemand(Registered, mpsc::UnboundedReceiver<Wanted>),
}

/// The unit objects registered on one connection, and what a new one needs.
pub struct Objects {
    gate: Gate,
    /// Each unit also has its `org.freedesktop.systemd1` objects ([`super::systemd1`]).
    compat: bool,
    units: Registered,
    /// Every unit is registered, and so is every unit added from now on.
    every: bool,
    /// The reader's requests, with [`Units::OnDemand`].
    wanted: Option<mpsc::UnboundedReceiver<Wanted>>,
}

impl Objects {
    /// Subscribes to the manager's notifications, then registers the manager object and, with
    /// [`Units::All`], an object for every unit on `builder` — subscribed before listing, so no
    /// unit can appear between the list and the subscription.
    pub(crate) async fn register(
        builder: Builder<'static>,
        gate: Gate,
        info: Arc<ServerInfo>,
        units: Units,
    ) -> Result<(Builder<'static>, Objects, Subscription), ServeError> {
        let notifications = gate.manager.subscribe();
        let compat = info.systemd_compat;
        let mut builder = builder.serve_at(MANAGER_PATH, ManagerObject::new(gate.clone(), info))?;
        if compat {
            builder = builder.serve_at(
                systemd1::MANAGER_PATH,
                systemd1::manager::ManagerObject::new(gate.clone()),
            )?;
        }
        let objects = match units {
            Units::All => {
                let registered = Registered::default();
                for unit in gate.manager.list_units().await? {
                    builder = builder.serve_at(
                        unit_path(&unit.name),
                        UnitObject::new(unit.name.clone(), gate.clone()),
                    )?;
                    if compat {
                        builder = systemd1::unit::serve_at(builder, &unit.name, &gate)?;
                    }
                    registered.insert(unit.name);
                }
                Objects {
                    gate,
                    compat,
                    units: registered,
                    every: true,
                    wanted: None,
                }
            }
            Units::OnDemand(registered, wanted) => Objects {
                gate,
                compat,
                units: registered,
                every: false,
                wanted: Some(wanted),
            },
        };
        Ok((builder, objects, notifications))
    }

    /// Turns the manager's notifications into objects and signals on `conn` until it closes.
    /// `who` names the connection in the log.
    pub(crate) async fn follow(
        mut self,
        conn: &Connection,
        mut notifications: Subscription,
        who: &str,
    ) -> Result<(), ServeError> {
        let mut wanted = self.wanted.take();
        let overflow = notifications.overflow();
        loop {
            tokio::select! {
                () = conn.closed() => return Ok(()),
                w = next_wanted(&mut wanted) => match w {
                    Some(w) => self.provide(conn, w).await?,
                    // The reader is gone, and with it the connection.
                    None => wanted = None,
                },
                n = notifications.recv() => match n {
                    Received::Notification(n) => tokio::select! {
                        // Writing to a client that reads takes no time; one whose socket is
                        // full is waited for so long, or until its job results overflow.
                        done = tokio::time::timeout(STALLED_CLIENT_TIMEOUT, self.apply(conn, n)) => {
                            done.map_err(|_| ServeError::Stalled(STALLED_CLIENT_TIMEOUT))??;
                        }
                        () = overflow.wait() => return Err(ServeError::Overflowed),
                    },
                    Received::Overflowed => return Err(ServeError::Overflowed),
                    Received::Lagged(missed) => {
                        warn!("{who} missed {missed} state changes; re-reading the unit list");
                        self.resync(conn).await?;
                    }
                    Received::Closed => {
                        // The manager is gone: nothing more to announce; calls will fail.
                        conn.closed().await;
                        return Ok(());
                    }
                },
            }
        }
    }

    /// Registers what the connection's reader waits for, then lets it go on.
    async fn provide(&mut self, conn: &Connection, wanted: Wanted) -> Result<(), ServeError> {
        match wanted {
            Wanted::Unit(name, done) => {
                // Answered without asking the manager (see `ManagerHandle::unit_exists`): the
                // bus connection's reader, which every client shares, waits for this.
                // An unknown unit gets no object: the call is answered `UnknownObject`.
                if !self.units.contains(&name) && self.gate.manager.unit_exists(&name).await? {
                    self.add_unit(conn, name).await?;
                }
                let _ = done.send(());
            }
            Wanted::Every(done) => {
                self.every = true;
                for unit in self.gate.manager.list_units().await? {
                    self.add_unit(conn, unit.name).await?;
                }
                let _ = done.send(());
            }
        }
        Ok(())
    }

    async fn add_unit(&mut self, conn: &Connection, name: UnitName) -> zbus::Result<()> {
        if self.units.contains(&name) {
            return Ok(());
        }
        let object = UnitObject::new(name.clone(), self.gate.clone());
        conn.object_server().at(unit_path(&name), object).await?;
        if self.compat {
            systemd1::unit::register(conn, &name, &self.gate).await?;
        }
        self.units.insert(name);
        Ok(())
    }

    async fn remove_unit(&mut self, conn: &Connection, name: &UnitName) -> zbus::Result<()> {
        if self.units.remove(name) {
            conn.object_server()
                .remove::<UnitObject, _>(unit_path(name))
                .await?;
            if self.compat {
                systemd1::unit::unregister(conn, name).await?;
            }
        }
        Ok(())
    }

    async fn apply(&mut self, conn: &Connection, n: Notification) -> Result<(), ServeError> {
        match n {
            Notification::UnitAdded(name) if self.every => self.add_unit(conn, name).await?,
            Notification::UnitAdded(_) => {}
            Notification::UnitRemoved(name) => self.remove_unit(conn, &name).await?,
            Notification::JobRemoved { id, unit, result } => {
                let emitter = SignalEmitter::new(conn, MANAGER_PATH)?;
                ManagerObject::job_removed(&emitter, id, unit.as_str(), result.as_str()).await?;
                if self.compat {
                    // Broadcast from the connection that owns org.freedesktop.systemd1 on the
                    // bus (crun matches on that sender), to every private-socket client.
                    let emitter = SignalEmitter::new(conn, systemd1::MANAGER_PATH)?;
                    systemd1::manager::ManagerObject::job_removed(
                        &emitter,
                        id,
                        systemd1::job_path(id),
                        unit.as_str(),
                        result.as_str(),
                    )
                    .await?;
                }
            }
            Notification::UnitStateChanged {
                unit,
                active_state,
                sub_state,
            } => {
                let emitter = SignalEmitter::new(conn, MANAGER_PATH)?;
                ManagerObject::unit_state_changed(
                    &emitter,
                    unit.as_str(),
                    active_state.as_str(),
                    sub_state,
                )
                .await?;
                // Whether or not this client has called the unit yet: its object is there
                // for it the moment it does.
                let emitter = SignalEmitter::new(conn, unit_path(&unit))?;
                let changed = [
                    ("ActiveState", Value::from(active_state.as_str())),
                    ("SubState", Value::from(sub_state)),
                ]
                .into_iter()
                .collect();
                fdo::Properties::properties_changed(
                    &emitter,
                    InterfaceName::from_static_str_unchecked(UNIT_INTERFACE),
                    changed,
                    INVALIDATED_ON_STATE_CHANGE.into(),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Makes the registered objects match the manager's units again.
    async fn resync(&mut self, conn: &Connection) -> Result<(), ServeError> {
        let now: HashSet<UnitName> = self
            .gate
            .manager
            .list_units()
            .await?
            .into_iter()
            .map(|u| u.name)
            .collect();
        for name in self.units.names() {
            if !now.contains(&name) {
                self.remove_unit(conn, &name).await?;
            }
        }
        if self.every {
            for name in now {
                self.add_unit(conn, name).await?;
            }
        }
        Ok(())
    }
}

/// The next request of a connection's reader; never, for a connection without one.
async fn next_wanted(wanted: &mut Option<mpsc::UnboundedReceiver<Wanted>>) -> Option<Wanted> {
    match wanted {
        Some(requests) => requests.recv().await,
        None => std::future::pending().await,
    }
}
