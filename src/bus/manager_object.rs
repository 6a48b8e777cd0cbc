//! `org.corral1.Manager` at `/org/corral1` (DESIGN §4). One instance per connection, holding a
//! [`Gate`] that judges state-changing methods from the kernel's word about the caller (never
//! the caller's own).
//! Every method forwards to the manager task; nothing here holds unit state.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{Connection, fdo, interface};

use super::access::Gate;
use super::server::ServerInfo;
use super::{Error, limit_values, parse_unit, unit_path};
use crate::manager::request::{JobKind, Request, RequestError, ShutdownKind};
use crate::unit::UnitName;

/// One row of `ListUnits`: name, description, load state, active state, sub state, object.
pub type UnitRow = (String, String, String, String, String, OwnedObjectPath);

/// The manager object of one connection.
#[derive(Debug)]
pub struct ManagerObject {
    /// The manager, and who may change state through this connection.
    gate: Gate,
    info: Arc<ServerInfo>,
}

impl ManagerObject {
    pub fn new(gate: Gate, info: Arc<ServerInfo>) -> Self {
        ManagerObject { gate, info }
    }

    async fn job(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        method: &str,
        name: &str,
        kind: JobKind,
    ) -> Result<u32, Error> {
        self.on_unit(conn, header, method, name, |unit, reply| {
            Request::QueueJob { unit, kind, reply }
        })
        .await
    }

    /// A state-changing request about the unit `name`, for a caller who may make it.
    async fn on_unit<T>(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        method: &str,
        name: &str,
        make: impl FnOnce(UnitName, oneshot::Sender<Result<T, RequestError>>) -> Request,
    ) -> Result<T, Error> {
        self.gate
            .change(conn, header, method, || parse_unit(name), make)
            .await
    }

    async fn shutdown(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        method: &str,
        how: ShutdownKind,
    ) -> Result<(), Error> {
        self.gate
            .change(
                conn,
                header,
                method,
                || Ok(()),
                |(), reply| Request::Shutdown { how, reply },
            )
            .await
    }
}

#[interface(name = "org.corral1.Manager", introspection_docs = false)]
impl ManagerObject {
    /// Every unit: name, description, load state, active state, sub state, object path.
    #[zbus(out_args("units"))]
    async fn list_units(&self) -> Result<Vec<UnitRow>, Error> {
        let mut units = self.gate.manager.list_units().await?;
        units.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(units
            .into_iter()
            .map(|u| {
                let path = unit_path(&u.name);
                (
                    u.name.to_string(),
                    u.description,
                    u.load_state.as_str().to_string(),
                    u.active_state.as_str().to_string(),
                    u.sub_state.to_string(),
                    path,
                )
            })
            .collect())
    }

    /// The object path of a known unit.
    #[zbus(out_args("unit"))]
    async fn get_unit(&self, name: &str) -> Result<OwnedObjectPath, Error> {
        let unit = parse_unit(name)?;
        let path = unit_path(&unit);
        self.gate
            .manager
            .ask(|reply| Request::GetUnit { unit, reply })
            .await??;
        Ok(path)
    }

    /// Queue a start job; returns its id at once, `JobRemoved` tells how it ended.
    #[zbus(out_args("job"))]
    async fn start_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<u32, Error> {
        self.job(conn, &header, "StartUnit", name, JobKind::Start)
            .await
    }

    #[zbus(out_args("job"))]
    async fn stop_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<u32, Error> {
        self.job(conn, &header, "StopUnit", name, JobKind::Stop)
            .await
    }

    #[zbus(out_args("job"))]
    async fn restart_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<u32, Error> {
        self.job(conn, &header, "RestartUnit", name, JobKind::Restart)
            .await
    }

    /// Signals every process of the unit.
    async fn kill_unit(
        &self,
        name: &str,
        signal: i32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.on_unit(conn, &header, "KillUnit", name, |unit, reply| {
            Request::KillUnit {
                unit,
                signal,
                reply,
            }
        })
        .await
    }

    /// Freezes every process of the unit (`cgroup.freeze`).
    async fn freeze_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.on_unit(conn, &header, "FreezeUnit", name, |unit, reply| {
            Request::Freeze {
                unit,
                freeze: true,
                reply,
            }
        })
        .await
    }

    async fn thaw_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.on_unit(conn, &header, "ThawUnit", name, |unit, reply| {
            Request::Freeze {
                unit,
                freeze: false,
                reply,
            }
        })
        .await
    }

    /// Changes limits live; unless `runtime`, also persists them for the next boot.
    async fn set_unit_limits(
        &self,
        name: &str,
        limits: HashMap<String, OwnedValue>,
        runtime: bool,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.gate
            .change(
                conn,
                &header,
                "SetUnitLimits",
                || Ok((parse_unit(name)?, limit_values(&limits)?)),
                |(unit, limits), reply| Request::SetLimits {
                    unit,
                    limits,
                    runtime,
                    reply,
                },
            )
            .await
    }

    /// Dry run of `SetUnitLimits`: each cgroup file that would change, its value now and after.
    #[zbus(out_args("changes"))]
    async fn diff_unit_limits(
        &self,
        name: &str,
        limits: HashMap<String, OwnedValue>,
    ) -> Result<Vec<(String, String, String)>, Error> {
        let unit = parse_unit(name)?;
        let limits = limit_values(&limits)?;
        Ok(self
            .gate
            .manager
            .ask(|reply| Request::DiffLimits {
                unit,
                limits,
                reply,
            })
            .await??)
    }

    /// The last `lines` lines of the unit's log.
    #[zbus(out_args("lines"))]
    async fn get_unit_log(&self, name: &str, lines: u32) -> Result<Vec<String>, Error> {
        let unit = parse_unit(name)?;
        Ok(self
            .gate
            .manager
            .ask(|reply| Request::GetLog { unit, lines, reply })
            .await??)
    }

    /// A unit from TOML text, validated like a file, kept until reboot, and started.
    #[zbus(out_args("job"))]
    async fn start_transient_unit(
        &self,
        name: &str,
        toml: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<u32, Error> {
        let toml = toml.to_string();
        self.gate
            .change(
                conn,
                &header,
                "StartTransientUnit",
                || parse_unit(name),
                |unit, reply| Request::StartTransient { unit, toml, reply },
            )
            .await
    }

    /// Start the unit at boot (the autostart drop-in).
    async fn enable_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.on_unit(conn, &header, "EnableUnit", name, |unit, reply| {
            Request::Enable {
                unit,
                enable: true,
                reply,
            }
        })
        .await
    }

    async fn disable_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.on_unit(conn, &header, "DisableUnit", name, |unit, reply| {
            Request::Enable {
                unit,
                enable: false,
                reply,
            }
        })
        .await
    }

    /// Path and text of the unit file and every drop-in, in merge order.
    #[zbus(out_args("files"))]
    async fn get_unit_files(&self, name: &str) -> Result<Vec<(String, String)>, Error> {
        let unit = parse_unit(name)?;
        Ok(self
            .gate
            .manager
            .ask(|reply| Request::GetUnitFiles { unit, reply })
            .await??)
    }

    /// Re-read the unit files: (file, error) for every problem; running units get changed
    /// limits.
    #[zbus(out_args("errors"))]
    async fn reload(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<(String, String)>, Error> {
        self.gate.allow(conn, &header, "Reload").await?;
        self.gate
            .manager
            .ask(|reply| Request::Reload { reply })
            .await
    }

    /// Save the state and execute the daemon's binary again in place (an upgrade): every
    /// running service is adopted by the new one with the same PID. The reply comes before the
    /// exec; the connection then closes.
    async fn reexec(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.shutdown(conn, &header, "Reexec", ShutdownKind::Reexec)
            .await
    }

    /// Stop every unit and power the machine off (PID 1 only).
    async fn power_off(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.shutdown(conn, &header, "PowerOff", ShutdownKind::PowerOff)
            .await
    }

    async fn reboot(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.shutdown(conn, &header, "Reboot", ShutdownKind::Reboot)
            .await
    }

    /// A job ended: its id, its unit, and `done`, `failed`, `timeout`, `dependency` or
    /// `canceled`.
    #[zbus(signal)]
    pub async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;

    /// A unit changed state.
    #[zbus(signal)]
    pub async fn unit_state_changed(
        emitter: &SignalEmitter<'_>,
        unit: &str,
        active_state: &str,
        sub_state: &str,
    ) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"))]
    async fn version(&self) -> fdo::Result<String> {
        Ok(self.info.version.clone())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    async fn mode(&self) -> fdo::Result<String> {
        Ok(self.info.mode.as_str().to_string())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    async fn cgroup_root(&self) -> fdo::Result<String> {
        Ok(self.info.cgroup_root.clone())
    }
}
