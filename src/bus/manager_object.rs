//! `org.corral1.Manager` at `/org/corral1` (DESIGN §4). One instance per connection, holding a
//! [`Gate`] that finds the caller of every method from the kernel's word (never the caller's
//! own), judges it for state-changing methods and reads of contents, and asks the manager in
//! the caller's lane. Arguments are checked against [`crate::bounds`] first.
//! Every method forwards to the manager task; nothing here holds unit state.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{Connection, fdo, interface};

use super::access::{Gate, Privilege, Who, uid_of_user};
use super::server::ServerInfo;
use super::{Error, limit_values, parse_unit, unit_path};
use crate::bounds::{MAX_LOG_LINES, MAX_TRANSIENT_UNIT_BYTES};
use crate::manager::request::{JobKind, LogReader, LogReply, Request, RequestError, ShutdownKind};
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

/// A signal number `kill(2)` takes.
pub(crate) fn check_signal(method: &str, signal: i32) -> Result<(), Error> {
    nix::sys::signal::Signal::try_from(signal)
        .map(|_| ())
        .map_err(|_| {
            Error::Fdo(fdo::Error::InvalidArgs(format!(
                "{method}: {signal} is not a signal number"
            )))
        })
}

/// `GetUnitLog` for `who`: the privileged uid reads any log; anyone else only the log of a
/// unit that runs as them, which the manager decides ([`crate::manager::request::log_access`])
/// once a user name the unit runs as has been resolved here, off the manager's loop.
async fn read_log(
    gate: &Gate,
    who: &Who,
    unit: UnitName,
    lines: u32,
) -> Result<Vec<String>, Error> {
    let mut reader = if gate.privileged(who) {
        None
    } else {
        let Some(uid) = who.uid else {
            return Err(Error::access_denied(
                "GetUnitLog: the caller's credentials are unknown",
            ));
        };
        Some(LogReader {
            uid,
            resolved: None,
        })
    };
    // Twice at most: once to learn the user name, once with it resolved.
    for _ in 0..2 {
        let ask = |reply| Request::GetLog {
            unit: unit.clone(),
            lines,
            reader: reader.clone(),
            reply,
        };
        match gate.ask(who, ask).await?? {
            LogReply::Lines(lines) => return Ok(lines),
            LogReply::Denied(why) => {
                return Err(Error::access_denied(format!("GetUnitLog: {why}")));
            }
            LogReply::Resolve(user) => {
                let uid = uid_of_user(&unit, &user).await?;
                if let Some(r) = &mut reader {
                    r.resolved = Some((user, uid));
                }
            }
        }
    }
    Err(Error::Fdo(fdo::Error::Failed(format!(
        "GetUnitLog: the user {unit} runs as changed while it was looked up; try again"
    ))))
}

#[interface(name = "org.corral1.Manager", introspection_docs = false)]
impl ManagerObject {
    /// Every unit: name, description, load state, active state, sub state, object path.
    #[zbus(out_args("units"))]
    async fn list_units(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<UnitRow>, Error> {
        let who = self.gate.who(Some(conn), Some(&header)).await;
        let mut units = self
            .gate
            .ask(&who, |reply| Request::ListUnits { reply })
            .await?;
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
    async fn get_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        let unit = parse_unit(name)?;
        let path = unit_path(&unit);
        let who = self.gate.who(Some(conn), Some(&header)).await;
        self.gate
            .ask(&who, |reply| Request::GetUnit { unit, reply })
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
        self.gate
            .change(
                conn,
                &header,
                "KillUnit",
                || {
                    check_signal("KillUnit", signal)?;
                    parse_unit(name)
                },
                |unit, reply| Request::KillUnit {
                    unit,
                    signal,
                    reply,
                },
            )
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
    /// For the privileged uid only: it reads the cgroup and resolves device paths as root.
    #[zbus(out_args("changes"))]
    async fn diff_unit_limits(
        &self,
        name: &str,
        limits: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<(String, String, String)>, Error> {
        self.gate
            .privileged_call(
                conn,
                &header,
                ("DiffUnitLimits", Privilege::ReadsContents),
                || Ok((parse_unit(name)?, limit_values(&limits)?)),
                |(unit, limits), reply| Request::DiffLimits {
                    unit,
                    limits,
                    reply,
                },
            )
            .await
    }

    /// The last `lines` lines of the unit's log: for the privileged uid, and for the uid the
    /// unit runs as.
    #[zbus(out_args("lines"))]
    async fn get_unit_log(
        &self,
        name: &str,
        lines: u32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<String>, Error> {
        if lines > MAX_LOG_LINES {
            return Err(Error::Fdo(fdo::Error::InvalidArgs(format!(
                "GetUnitLog: {lines} lines asked; at most {MAX_LOG_LINES}"
            ))));
        }
        let unit = parse_unit(name)?;
        let who = self.gate.who(Some(conn), Some(&header)).await;
        read_log(&self.gate, &who, unit, lines).await
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
        self.gate
            .change(
                conn,
                &header,
                "StartTransientUnit",
                || {
                    if toml.len() > MAX_TRANSIENT_UNIT_BYTES {
                        return Err(Error::Fdo(fdo::Error::InvalidArgs(format!(
                            "StartTransientUnit: a unit text of {} bytes; at most \
                             {MAX_TRANSIENT_UNIT_BYTES}",
                            toml.len()
                        ))));
                    }
                    Ok((parse_unit(name)?, toml.to_string()))
                },
                |(unit, toml), reply| Request::StartTransient { unit, toml, reply },
            )
            .await
    }

    /// A failed unit back to inactive; a failed transient unit is then collected.
    async fn reset_failed_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.on_unit(conn, &header, "ResetFailedUnit", name, |unit, reply| {
            Request::ResetFailed { unit, reply }
        })
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

    /// Path and text of the unit file and every drop-in, in merge order. For the privileged
    /// uid only: a drop-in may hold secrets (`environment`).
    #[zbus(out_args("files"))]
    async fn get_unit_files(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<(String, String)>, Error> {
        self.gate
            .privileged_call(
                conn,
                &header,
                ("GetUnitFiles", Privilege::ReadsContents),
                || parse_unit(name),
                |unit, reply| Request::GetUnitFiles { unit, reply },
            )
            .await
    }

    /// Re-read the unit files: (file, error) for every problem; running units get changed
    /// limits.
    #[zbus(out_args("errors"))]
    async fn reload(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<(String, String)>, Error> {
        let who = self
            .gate
            .allow(conn, &header, "Reload", Privilege::ChangesState)
            .await?;
        self.gate.ask(&who, |reply| Request::Reload { reply }).await
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
