//! `org.freedesktop.systemd1.Manager` at `/org/freedesktop/systemd1`: the subset of DESIGN §9,
//! with the argument shapes runc 1.1, crun 1.8 and kubelet send (go-systemd and sd-bus):
//!
//! | member | signature | |
//! |---|---|---|
//! | `StartTransientUnit` | `(ssa(sv)a(sa(sv))) → o` | a `.scope` (with `PIDs`) or `.slice`; `UnitExists` for a live one |
//! | `StopUnit` | `(ss) → o` | `NoSuchUnit` for a unit that is gone |
//! | `KillUnit` | `(ssi)` | whom: `all` (or empty), `main`; `-fail` forms alike |
//! | `ResetFailedUnit` | `(s)` | |
//! | `GetUnit` | `(s) → o` | |
//! | `SetUnitProperties` | `(sba(sv))` | the resource properties, written to the cgroup |
//! | `AttachProcessesToUnit` | `(ssau)` | into the unit's cgroup, or a sub-cgroup of a delegated one |
//! | `JobRemoved` | signal `(uoss)` | id, job path, unit, result |
//! | `Version` | property `s` | `"252"` |
//!
//! The job mode is checked for being one of systemd's and otherwise not used: jobs here are
//! corral's (a new job replaces a unit's pending one). Auxiliary units (the last argument of
//! `StartTransientUnit`) are not supported. Every member is for uid 0 only.

use std::path::PathBuf;

use tokio::sync::oneshot;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{Connection, fdo, interface};

use super::error::Error;
use super::properties::{self, Call};
use super::{VERSION, job_path, log_ignored, unit_path};
use crate::bounds::{MAX_SCOPE_PIDS, MAX_SUBCGROUP_BYTES};
use crate::bus::access::{Gate, Privilege};
use crate::manager::request::{BusUnitSpec, JobKind, Request, RequestError};
use crate::unit::UnitName;

/// The job modes systemd knows (`systemctl --job-mode`).
const JOB_MODES: [&str; 8] = [
    "fail",
    "replace",
    "replace-irreversibly",
    "isolate",
    "ignore-dependencies",
    "ignore-requirements",
    "flush",
    "triggering",
];

/// The manager object of one connection.
#[derive(Debug)]
pub struct ManagerObject {
    gate: Gate,
}

impl ManagerObject {
    pub fn new(gate: Gate) -> Self {
        ManagerObject { gate }
    }

    /// Judges the caller of `method` (uid 0 only), then reads the arguments with `args`, then
    /// asks the manager with `make`.
    async fn call<A, T>(
        &self,
        (conn, header): (&Connection, &Header<'_>),
        method: &str,
        args: impl FnOnce() -> Result<A, Error>,
        make: impl FnOnce(A, oneshot::Sender<Result<T, RequestError>>) -> Request,
    ) -> Result<T, Error> {
        let who = self
            .gate
            .allow(conn, header, method, Privilege::ChangesState)
            .await?;
        let args = args()?;
        Ok(self.gate.ask(&who, |reply| make(args, reply)).await??)
    }
}

/// A unit name as systemd reads one: a bad name is `InvalidArgs`.
fn unit_name(method: &str, name: &str) -> Result<UnitName, Error> {
    UnitName::parse(name).map_err(|e| Error::invalid_args(format!("{method}: {e}")))
}

fn check_mode(method: &str, mode: &str) -> Result<(), Error> {
    if JOB_MODES.contains(&mode) {
        Ok(())
    } else {
        Err(Error::invalid_args(format!(
            "{method}: job mode {mode:?} is not one of {}",
            JOB_MODES.join(", ")
        )))
    }
}

#[interface(name = "org.freedesktop.systemd1.Manager", introspection_docs = false)]
impl ManagerObject {
    /// Makes a scope (adopting `PIDs`) or a slice and queues its start; returns the job.
    #[zbus(out_args("job"))]
    async fn start_transient_unit(
        &self,
        name: &str,
        mode: &str,
        properties: Vec<(String, OwnedValue)>,
        aux: Vec<(String, Vec<(String, OwnedValue)>)>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        const METHOD: &str = "StartTransientUnit";
        let mut ignored = Vec::new();
        let id = self
            .call(
                (conn, &header),
                METHOD,
                || {
                    let name = unit_name(METHOD, name)?;
                    check_mode(METHOD, mode)?;
                    if !aux.is_empty() {
                        return Err(fdo::Error::NotSupported(format!(
                            "{METHOD}: auxiliary units ({} given) are not supported",
                            aux.len()
                        ))
                        .into());
                    }
                    let p = properties::parse(&properties, Call::Make)
                        .map_err(|e| Error::invalid_args(format!("{METHOD} {name}: {e}")))?;
                    ignored = p.ignored;
                    Ok(BusUnitSpec {
                        name,
                        description: p.description.unwrap_or_default(),
                        slice: p.slice,
                        delegate: p.delegate,
                        pids: p.pids,
                        limits: p.limits,
                        stop_timeout: p.stop_timeout,
                    })
                },
                |spec, reply| Request::StartBusTransient {
                    spec: Box::new(spec),
                    reply,
                },
            )
            .await?;
        log_ignored(METHOD, &ignored);
        Ok(job_path(id))
    }

    /// Queues a stop job; `NoSuchUnit` for a unit that is gone.
    #[zbus(out_args("job"))]
    async fn stop_unit(
        &self,
        name: &str,
        mode: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        let id = self
            .call(
                (conn, &header),
                "StopUnit",
                || {
                    check_mode("StopUnit", mode)?;
                    unit_name("StopUnit", name)
                },
                |unit, reply| Request::QueueJob {
                    unit,
                    kind: JobKind::Stop,
                    reply,
                },
            )
            .await?;
        Ok(job_path(id))
    }

    /// Signals the unit's processes: `whom` is `all` (or empty) or `main`.
    async fn kill_unit(
        &self,
        name: &str,
        whom: &str,
        signal: i32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        const METHOD: &str = "KillUnit";
        let whom = whom.strip_suffix("-fail").unwrap_or(whom);
        let result = self
            .call(
                (conn, &header),
                METHOD,
                || {
                    let unit = unit_name(METHOD, name)?;
                    crate::bus::manager_object::check_signal(METHOD, signal)?;
                    match whom {
                        "" | "all" | "main" => Ok(unit),
                        "control" => Err(super::error::Named::NoSuchProcess(format!(
                            "{METHOD}: {unit} has no control process to signal"
                        ))
                        .into()),
                        other => Err(Error::invalid_args(format!(
                            "{METHOD}: whom {other:?} is not all, main or control"
                        ))),
                    }
                },
                |unit, reply| match whom {
                    "main" => Request::KillMain {
                        unit,
                        signal,
                        reply,
                    },
                    _ => Request::KillUnit {
                        unit,
                        signal,
                        reply,
                    },
                },
            )
            .await;
        match result {
            // A unit with no process to signal (corral's "not running").
            Err(Error::Fdo(fdo::Error::Failed(m))) => {
                Err(super::error::Named::NoSuchProcess(m).into())
            }
            other => other,
        }
    }

    /// A failed unit back to inactive (a transient one is then unloaded).
    async fn reset_failed_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.call(
            (conn, &header),
            "ResetFailedUnit",
            || unit_name("ResetFailedUnit", name),
            |unit, reply| Request::ResetFailed { unit, reply },
        )
        .await
    }

    /// The object path of a loaded unit.
    #[zbus(out_args("unit"))]
    async fn get_unit(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<OwnedObjectPath, Error> {
        let who = self
            .gate
            .allow(conn, &header, "GetUnit", Privilege::ChangesState)
            .await?;
        let unit = unit_name("GetUnit", name)?;
        let path = unit_path(&unit);
        self.gate
            .ask(&who, |reply| Request::GetUnit { unit, reply })
            .await??;
        Ok(path)
    }

    /// Changes the unit's resource properties at once, in its cgroup.
    async fn set_unit_properties(
        &self,
        name: &str,
        runtime: bool,
        properties: Vec<(String, OwnedValue)>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        const METHOD: &str = "SetUnitProperties";
        let mut ignored = Vec::new();
        self.call(
            (conn, &header),
            METHOD,
            || {
                let unit = unit_name(METHOD, name)?;
                let p = properties::parse(&properties, Call::Set)
                    .map_err(|e| Error::invalid_args(format!("{METHOD} {unit}: {e}")))?;
                ignored = p.ignored;
                Ok((unit, p.limits))
            },
            |(unit, limits), reply| Request::SetProperties {
                unit,
                limits,
                runtime,
                reply,
            },
        )
        .await?;
        log_ignored(METHOD, &ignored);
        Ok(())
    }

    /// Moves processes into a running unit's cgroup (or `subcgroup` below a delegated one).
    async fn attach_processes_to_unit(
        &self,
        name: &str,
        subcgroup: &str,
        pids: Vec<u32>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        const METHOD: &str = "AttachProcessesToUnit";
        self.call(
            (conn, &header),
            METHOD,
            || {
                let unit = unit_name(METHOD, name)?;
                if pids.is_empty() || pids.len() > MAX_SCOPE_PIDS {
                    return Err(Error::invalid_args(format!(
                        "{METHOD}: {} processes; from 1 to {MAX_SCOPE_PIDS}",
                        pids.len()
                    )));
                }
                if subcgroup.len() > MAX_SUBCGROUP_BYTES {
                    return Err(Error::invalid_args(format!(
                        "{METHOD}: a sub-cgroup of {} bytes; at most {MAX_SUBCGROUP_BYTES}",
                        subcgroup.len()
                    )));
                }
                // systemd takes it with or without a leading slash.
                let sub = PathBuf::from(subcgroup.trim_start_matches('/'));
                Ok((unit, sub, pids))
            },
            |(unit, subcgroup, pids), reply| Request::AttachProcesses {
                unit,
                subcgroup,
                pids,
                reply,
            },
        )
        .await
    }

    /// A job ended: id, job path, unit, `done`/`failed`/`timeout`/`dependency`/`canceled`.
    #[zbus(signal)]
    pub async fn job_removed(
        emitter: &SignalEmitter<'_>,
        id: u32,
        job: OwnedObjectPath,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;

    /// `"252"`: the systemd this subset is modelled on.
    #[zbus(property(emits_changed_signal = "const"))]
    async fn version(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<String> {
        super::require_root(&self.gate, header.as_ref()).await?;
        Ok(VERSION.to_string())
    }
}
