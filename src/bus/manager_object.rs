//! `org.corral1.Manager` at `/org/corral1` (DESIGN §4). One instance per connection, holding the
//! peer's kernel uid so that state-changing methods can be judged without asking the caller.
//! Every method forwards to the manager task; nothing here holds unit state.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{fdo, interface};

use super::server::ServerInfo;
use super::{Access, Error, ManagerHandle, limit_values, parse_unit, unit_path};
use crate::manager::request::{JobKind, Request, ShutdownKind};

/// One row of `ListUnits`: name, description, load state, active state, sub state, object.
pub type UnitRow = (String, String, String, String, String, OwnedObjectPath);

/// The manager object of one connection.
#[derive(Debug)]
pub struct ManagerObject {
    manager: ManagerHandle,
    access: Access,
    /// The peer's uid from `SO_PEERCRED`; `None` if the kernel could not tell.
    peer_uid: Option<u32>,
    info: Arc<ServerInfo>,
}

impl ManagerObject {
    pub fn new(
        manager: ManagerHandle,
        access: Access,
        peer_uid: Option<u32>,
        info: Arc<ServerInfo>,
    ) -> Self {
        ManagerObject {
            manager,
            access,
            peer_uid,
            info,
        }
    }

    async fn enable(&self, method: &str, name: &str, enable: bool) -> Result<(), Error> {
        self.access.check(self.peer_uid, method)?;
        let unit = parse_unit(name)?;
        Ok(self
            .manager
            .ask(|reply| Request::Enable {
                unit,
                enable,
                reply,
            })
            .await??)
    }

    async fn shutdown(&self, method: &str, how: ShutdownKind) -> Result<(), Error> {
        self.access.check(self.peer_uid, method)?;
        Ok(self
            .manager
            .ask(|reply| Request::Shutdown { how, reply })
            .await??)
    }

    async fn freeze(&self, method: &str, name: &str, freeze: bool) -> Result<(), Error> {
        self.access.check(self.peer_uid, method)?;
        let unit = parse_unit(name)?;
        Ok(self
            .manager
            .ask(|reply| Request::Freeze {
                unit,
                freeze,
                reply,
            })
            .await??)
    }

    async fn job(&self, method: &str, name: &str, kind: JobKind) -> Result<u32, Error> {
        self.access.check(self.peer_uid, method)?;
        let unit = parse_unit(name)?;
        self.manager.queue_job(unit, kind).await
    }
}

#[interface(name = "org.corral1.Manager", introspection_docs = false)]
impl ManagerObject {
    /// Every unit: name, description, load state, active state, sub state, object path.
    #[zbus(out_args("units"))]
    async fn list_units(&self) -> Result<Vec<UnitRow>, Error> {
        let mut units = self.manager.list_units().await?;
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
        self.manager
            .ask(|reply| Request::GetUnit { unit, reply })
            .await??;
        Ok(path)
    }

    /// Queue a start job; returns its id at once, `JobRemoved` tells how it ended.
    #[zbus(out_args("job"))]
    async fn start_unit(&self, name: &str) -> Result<u32, Error> {
        self.job("StartUnit", name, JobKind::Start).await
    }

    #[zbus(out_args("job"))]
    async fn stop_unit(&self, name: &str) -> Result<u32, Error> {
        self.job("StopUnit", name, JobKind::Stop).await
    }

    #[zbus(out_args("job"))]
    async fn restart_unit(&self, name: &str) -> Result<u32, Error> {
        self.job("RestartUnit", name, JobKind::Restart).await
    }

    /// Signals every process of the unit.
    async fn kill_unit(&self, name: &str, signal: i32) -> Result<(), Error> {
        self.access.check(self.peer_uid, "KillUnit")?;
        let unit = parse_unit(name)?;
        Ok(self
            .manager
            .ask(|reply| Request::KillUnit {
                unit,
                signal,
                reply,
            })
            .await??)
    }

    /// Freezes every process of the unit (`cgroup.freeze`).
    async fn freeze_unit(&self, name: &str) -> Result<(), Error> {
        self.freeze("FreezeUnit", name, true).await
    }

    async fn thaw_unit(&self, name: &str) -> Result<(), Error> {
        self.freeze("ThawUnit", name, false).await
    }

    /// Changes limits live; unless `runtime`, also persists them for the next boot.
    async fn set_unit_limits(
        &self,
        name: &str,
        limits: HashMap<String, OwnedValue>,
        runtime: bool,
    ) -> Result<(), Error> {
        self.access.check(self.peer_uid, "SetUnitLimits")?;
        let unit = parse_unit(name)?;
        let limits = limit_values(&limits)?;
        Ok(self
            .manager
            .ask(|reply| Request::SetLimits {
                unit,
                limits,
                runtime,
                reply,
            })
            .await??)
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
            .manager
            .ask(|reply| Request::GetLog { unit, lines, reply })
            .await??)
    }

    /// A unit from TOML text, validated like a file, kept until reboot, and started.
    #[zbus(out_args("job"))]
    async fn start_transient_unit(&self, name: &str, toml: &str) -> Result<u32, Error> {
        self.access.check(self.peer_uid, "StartTransientUnit")?;
        let unit = parse_unit(name)?;
        let toml = toml.to_string();
        Ok(self
            .manager
            .ask(|reply| Request::StartTransient { unit, toml, reply })
            .await??)
    }

    /// Start the unit at boot (the autostart drop-in).
    async fn enable_unit(&self, name: &str) -> Result<(), Error> {
        self.enable("EnableUnit", name, true).await
    }

    async fn disable_unit(&self, name: &str) -> Result<(), Error> {
        self.enable("DisableUnit", name, false).await
    }

    /// Path and text of the unit file and every drop-in, in merge order.
    #[zbus(out_args("files"))]
    async fn get_unit_files(&self, name: &str) -> Result<Vec<(String, String)>, Error> {
        let unit = parse_unit(name)?;
        Ok(self
            .manager
            .ask(|reply| Request::GetUnitFiles { unit, reply })
            .await??)
    }

    /// Re-read the unit files: (file, error) for every problem; running units get changed
    /// limits.
    #[zbus(out_args("errors"))]
    async fn reload(&self) -> Result<Vec<(String, String)>, Error> {
        self.access.check(self.peer_uid, "Reload")?;
        self.manager.ask(|reply| Request::Reload { reply }).await
    }

    /// Save the state and execute the daemon's binary again in place (an upgrade): every
    /// running service is adopted by the new one with the same PID. The reply comes before the
    /// exec; the connection then closes.
    async fn reexec(&self) -> Result<(), Error> {
        self.shutdown("Reexec", ShutdownKind::Reexec).await
    }

    /// Stop every unit and power the machine off (PID 1 only).
    async fn power_off(&self) -> Result<(), Error> {
        self.shutdown("PowerOff", ShutdownKind::PowerOff).await
    }

    async fn reboot(&self) -> Result<(), Error> {
        self.shutdown("Reboot", ShutdownKind::Reboot).await
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
