//! `org.corral1.Unit` at `/org/corral1/unit/ESCAPED` (DESIGN §4): the state properties of one
//! unit and its job methods. The object holds only the unit's name and the links it needs;
//! every property read asks the manager for a fresh [`UnitProperties`], so there
//! is no cached state to go stale.
//!
//! Usage figures (`MemoryCurrent`, `CPUUsageNSec`, …) are read from the cgroup when asked;
//! nothing polls. A figure the kernel can't give reads 2^64-1.

use std::collections::HashMap;

use tokio::sync::oneshot;
use zbus::message::Header;
use zbus::zvariant::OwnedValue;
use zbus::{Connection, fdo, interface};

use super::access::Gate;
use super::{Error, limit_values};
use crate::manager::request::{JobKind, Request, RequestError, UnitProperties};
use crate::unit::UnitName;

/// One unit's object on one connection.
#[derive(Debug)]
pub struct UnitObject {
    name: UnitName,
    /// The manager, and who may change state through this connection.
    gate: Gate,
}

impl UnitObject {
    pub fn new(name: UnitName, gate: Gate) -> Self {
        UnitObject { name, gate }
    }

    async fn props(&self) -> fdo::Result<UnitProperties> {
        Ok(self.gate.manager.properties(&self.name).await?)
    }

    /// A state-changing request about this unit, for a caller who may make it.
    async fn change<T>(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        method: &str,
        make: impl FnOnce(UnitName, oneshot::Sender<Result<T, RequestError>>) -> Request,
    ) -> Result<T, Error> {
        let unit = self.name.clone();
        self.gate
            .change(conn, header, method, || Ok(unit), make)
            .await
    }

    async fn job(
        &self,
        conn: &Connection,
        header: &Header<'_>,
        method: &str,
        kind: JobKind,
    ) -> Result<u32, Error> {
        self.change(conn, header, method, |unit, reply| Request::QueueJob {
            unit,
            kind,
            reply,
        })
        .await
    }
}

#[interface(name = "org.corral1.Unit", introspection_docs = false)]
impl UnitObject {
    #[zbus(out_args("job"))]
    async fn start(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<u32, Error> {
        self.job(conn, &header, "Start", JobKind::Start).await
    }

    #[zbus(out_args("job"))]
    async fn stop(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<u32, Error> {
        self.job(conn, &header, "Stop", JobKind::Stop).await
    }

    #[zbus(out_args("job"))]
    async fn restart(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<u32, Error> {
        self.job(conn, &header, "Restart", JobKind::Restart).await
    }

    /// Signals every process of the unit.
    async fn kill(
        &self,
        signal: i32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.change(conn, &header, "Kill", |unit, reply| Request::KillUnit {
            unit,
            signal,
            reply,
        })
        .await
    }

    async fn set_limits(
        &self,
        limits: HashMap<String, OwnedValue>,
        runtime: bool,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        let unit = self.name.clone();
        self.gate
            .change(
                conn,
                &header,
                "SetLimits",
                || Ok((unit, limit_values(&limits)?)),
                |(unit, limits), reply| Request::SetLimits {
                    unit,
                    limits,
                    runtime,
                    reply,
                },
            )
            .await
    }

    async fn freeze(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.change(conn, &header, "Freeze", |unit, reply| Request::Freeze {
            unit,
            freeze: true,
            reply,
        })
        .await
    }

    async fn thaw(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), Error> {
        self.change(conn, &header, "Thaw", |unit, reply| Request::Freeze {
            unit,
            freeze: false,
            reply,
        })
        .await
    }

    /// The processes of the unit's cgroup: pid and command line.
    #[zbus(out_args("processes"))]
    async fn get_processes(&self) -> Result<Vec<(u32, String)>, Error> {
        let unit = self.name.clone();
        Ok(self
            .gate
            .manager
            .ask(|reply| Request::GetProcesses { unit, reply })
            .await??)
    }

    /// The configured limits: canonical strings; `io-max` as one string per device.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn limits(&self) -> fdo::Result<HashMap<String, OwnedValue>> {
        let mut out: HashMap<String, OwnedValue> = HashMap::new();
        let mut io: Vec<String> = Vec::new();
        for (k, v) in self.props().await?.limits {
            if k == "io-max" {
                io.push(v);
            } else {
                out.insert(k, OwnedValue::from(zbus::zvariant::Str::from(v)));
            }
        }
        if !io.is_empty() {
            let value = OwnedValue::try_from(zbus::zvariant::Value::from(io))
                .map_err(|e| fdo::Error::Failed(e.to_string()))?;
            out.insert("io-max".into(), value);
        }
        Ok(out)
    }

    /// For each max-type key: the tightest value over the unit and its slices, and the unit
    /// that binds it.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn effective_limits(&self) -> fdo::Result<HashMap<String, (String, String)>> {
        Ok(self
            .props()
            .await?
            .effective_limits
            .into_iter()
            .map(|(k, v, u)| (k, (v, u)))
            .collect())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn memory_current(&self) -> fdo::Result<u64> {
        Ok(self.props().await?.usage.memory_current)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn memory_peak(&self) -> fdo::Result<u64> {
        Ok(self.props().await?.usage.memory_peak)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "CPUUsageNSec")]
    async fn cpu_usage_nsec(&self) -> fdo::Result<u64> {
        Ok(self.props().await?.usage.cpu_usage_nsec)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn tasks_current(&self) -> fdo::Result<u64> {
        Ok(self.props().await?.usage.tasks_current)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "IOReadBytes")]
    async fn io_read_bytes(&self) -> fdo::Result<u64> {
        Ok(self.props().await?.usage.io_read_bytes)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "IOWriteBytes")]
    async fn io_write_bytes(&self) -> fdo::Result<u64> {
        Ok(self.props().await?.usage.io_write_bytes)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "OOMKills")]
    async fn oom_kills(&self) -> fdo::Result<u64> {
        Ok(self.props().await?.usage.oom_kills)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "CPUPressure")]
    async fn cpu_pressure(&self) -> fdo::Result<(f64, f64, f64)> {
        Ok(self.props().await?.usage.cpu_pressure)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn memory_pressure(&self) -> fdo::Result<(f64, f64, f64)> {
        Ok(self.props().await?.usage.memory_pressure)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "IOPressure")]
    async fn io_pressure(&self) -> fdo::Result<(f64, f64, f64)> {
        Ok(self.props().await?.usage.io_pressure)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn active_enter_timestamp(&self) -> fdo::Result<u64> {
        Ok(self.props().await?.active_enter_timestamp)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn freezer_state(&self) -> fdo::Result<String> {
        Ok(self.props().await?.freezer_state)
    }

    #[zbus(property(emits_changed_signal = "const"))]
    async fn name(&self) -> fdo::Result<String> {
        Ok(self.name.to_string())
    }

    #[zbus(property(emits_changed_signal = "const"))]
    async fn kind(&self) -> fdo::Result<String> {
        Ok(self.name.kind().as_str().to_string())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn description(&self) -> fdo::Result<String> {
        Ok(self.props().await?.description)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn load_state(&self) -> fdo::Result<String> {
        Ok(self.props().await?.load_state.as_str().to_string())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn load_error(&self) -> fdo::Result<String> {
        Ok(self.props().await?.load_error)
    }

    #[zbus(property)]
    async fn active_state(&self) -> fdo::Result<String> {
        Ok(self.props().await?.active_state.as_str().to_string())
    }

    #[zbus(property)]
    async fn sub_state(&self) -> fdo::Result<String> {
        Ok(self.props().await?.sub_state.to_string())
    }

    #[zbus(property(emits_changed_signal = "invalidates"))]
    async fn result(&self) -> fdo::Result<String> {
        Ok(self.props().await?.result.as_str().to_string())
    }

    #[zbus(property(emits_changed_signal = "invalidates"), name = "MainPID")]
    async fn main_pid(&self) -> fdo::Result<u32> {
        Ok(self.props().await?.main_pid)
    }

    #[zbus(property(emits_changed_signal = "invalidates"))]
    async fn exit_status(&self) -> fdo::Result<i32> {
        Ok(self.props().await?.exit_status)
    }

    #[zbus(property(emits_changed_signal = "invalidates"), name = "NRestarts")]
    async fn n_restarts(&self) -> fdo::Result<u32> {
        Ok(self.props().await?.n_restarts)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn control_group(&self) -> fdo::Result<String> {
        Ok(self.props().await?.control_group)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn slice(&self) -> fdo::Result<String> {
        Ok(self.props().await?.slice)
    }
}
