//! The objects of one connection, whatever its transport (the private socket's
//! [`server`](super::server) or the message bus's [`message_bus`](super::message_bus)): the
//! manager object and one object per unit, registered before the connection is handed out, and
//! kept in step with the manager's [`Notification`]s — units added and removed, and the signals
//! `JobRemoved`, `UnitStateChanged` and `PropertiesChanged` emitted on the connection.
//!
//! **Unit objects and zbus.** zbus 5's `ObjectServer` belongs to one connection and dispatches
//! only paths registered on it, node by node: there is no fallback or subtree handler (an
//! unregistered path is answered `UnknownObject` by the object server before any user code
//! sees it, and the `Interface` trait is looked up per node). Intercepting calls with a
//! `MessageStream` races with the object server's own `UnknownObject` reply, so it is no way out
//! either. Hence every unit object is registered on every connection: each costs a tree node
//! with zbus's three standard interfaces plus our small [`UnitObject`] (a name and a
//! [`Gate`]), and a new connection registers all units before it finishes authentication (so a
//! client never sees a unit path as unknown). The cost grows as connections × units; the bus is
//! one connection however many clients it carries. If the benchmark shows the private socket's
//! share matters, the alternative is a connection without an `ObjectServer` and a hand-written
//! dispatcher on its `MessageStream` (Properties, Introspectable and Peer for the unit subtree
//! by hand).
//!
//! **Lost notifications.** A connection that falls behind the manager's state changes
//! ([`Received::Lagged`]) re-reads the unit list and makes its objects match it; the state
//! signals it missed are not replayed (clients re-read properties, as when a bus drops a slow
//! client's messages). Job results are never lost (see [`crate::manager::request`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;
use zbus::connection::Builder;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Value;
use zbus::{Connection, fdo, names::InterfaceName};

use super::access::Gate;
use super::manager_object::ManagerObject;
use super::server::ServerInfo;
use super::unit_object::UnitObject;
use super::{Error, MANAGER_PATH, Notification, Received, Subscription, UNIT_INTERFACE, unit_path};
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
}

/// The unit objects registered on one connection, and what a new one needs.
pub struct Objects {
    gate: Gate,
    units: HashSet<UnitName>,
}

impl Objects {
    /// Subscribes to the manager's notifications, then registers the manager object and an
    /// object for every unit on `builder` — subscribed before listing, so no unit can appear
    /// between the list and the subscription.
    pub(crate) async fn register(
        builder: Builder<'static>,
        gate: Gate,
        info: Arc<ServerInfo>,
    ) -> Result<(Builder<'static>, Objects, Subscription), ServeError> {
        let notifications = gate.manager.subscribe();
        let units = gate.manager.list_units().await?;
        let mut builder = builder.serve_at(MANAGER_PATH, ManagerObject::new(gate.clone(), info))?;
        let mut registered = HashSet::with_capacity(units.len());
        for unit in units {
            builder = builder.serve_at(
                unit_path(&unit.name),
                UnitObject::new(unit.name.clone(), gate.clone()),
            )?;
            registered.insert(unit.name);
        }
        let objects = Objects {
            gate,
            units: registered,
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
        loop {
            tokio::select! {
                () = conn.closed() => return Ok(()),
                n = notifications.recv() => match n {
                    Received::Notification(n) => self.apply(conn, n).await?,
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

    async fn add_unit(&mut self, conn: &Connection, name: UnitName) -> zbus::Result<()> {
        if self.units.contains(&name) {
            return Ok(());
        }
        let object = UnitObject::new(name.clone(), self.gate.clone());
        conn.object_server().at(unit_path(&name), object).await?;
        self.units.insert(name);
        Ok(())
    }

    async fn remove_unit(&mut self, conn: &Connection, name: &UnitName) -> zbus::Result<()> {
        if self.units.remove(name) {
            conn.object_server()
                .remove::<UnitObject, _>(unit_path(name))
                .await?;
        }
        Ok(())
    }

    async fn apply(&mut self, conn: &Connection, n: Notification) -> Result<(), ServeError> {
        match n {
            Notification::UnitAdded(name) => self.add_unit(conn, name).await?,
            Notification::UnitRemoved(name) => self.remove_unit(conn, &name).await?,
            Notification::JobRemoved { id, unit, result } => {
                let emitter = SignalEmitter::new(conn, MANAGER_PATH)?;
                ManagerObject::job_removed(&emitter, id, unit.as_str(), result.as_str()).await?;
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
                if self.units.contains(&unit) {
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
        let gone: Vec<UnitName> = self.units.difference(&now).cloned().collect();
        for name in gone {
            self.remove_unit(conn, &name).await?;
        }
        for name in now {
            self.add_unit(conn, name).await?;
        }
        Ok(())
    }
}
