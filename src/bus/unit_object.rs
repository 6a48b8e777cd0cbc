//! `org.corral1.Unit` at `/org/corral1/unit/ESCAPED` (DESIGN §4): the state properties of one
//! unit and its job methods. The object holds only the unit's name and the links it needs;
//! every property read asks the manager for a fresh [`UnitProperties`], so there
//! is no cached state to go stale.
//!
//! Usage figures (`MemoryCurrent`, `CPUUsageNSec`, …) are read from the cgroup when asked;
//! nothing polls. A figure the kernel can't give reads 2^64-1.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;
use zbus::message::Header;
use zbus::zvariant::OwnedValue;
use zbus::{Connection, fdo, interface};

use super::access::{Gate, Privilege};
use super::{Error, limit_values};
use crate::manager::request::{JobKind, Request, RequestError, UnitProperties};
use crate::unit::UnitName;

/// Which call a [`Snapshot`] was taken for: the sender and its serial.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    sender: Option<String>,
    serial: u32,
}

/// The properties one connection was last given (one slot per connection, whatever its number
/// of unit objects), reused by the other getters of the same call.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(Arc<Mutex<Option<Taken>>>);

#[derive(Debug)]
struct Taken {
    unit: UnitName,
    call: Call,
    usage: bool,
    props: Arc<UnitProperties>,
}

impl Snapshot {
    fn get(&self, unit: &UnitName, call: &Call, usage: bool) -> Option<Arc<UnitProperties>> {
        let slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_ref()
            .filter(|t| t.unit == *unit && t.call == *call && (t.usage || !usage))
            .map(|t| t.props.clone())
    }

    fn put(&self, unit: UnitName, call: Call, usage: bool, props: Arc<UnitProperties>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Taken {
            unit,
            call,
            usage,
            props,
        });
    }
}

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

    /// The unit's properties for the call with `header` (with `usage`: also its cgroup's
    /// figures). zbus answers `GetAll` by calling every getter with the same call's header:
    /// the connection's [`Snapshot`] makes that one question to the manager (two with usage)
    /// instead of thirty. Without a header (a `PropertiesChanged` being built), always fresh.
    async fn props(
        &self,
        header: Option<&Header<'_>>,
        usage: bool,
    ) -> fdo::Result<Arc<UnitProperties>> {
        let call = header.map(|h| Call {
            sender: h.sender().map(|s| s.to_string()),
            serial: h.primary().serial_num().get(),
        });
        if let Some(props) = call
            .as_ref()
            .and_then(|call| self.gate.snapshot.get(&self.name, call, usage))
        {
            return Ok(props);
        }
        let who = self.gate.who(None, header).await;
        let unit = self.name.clone();
        let props = Arc::new(
            self.gate
                .ask(&who, |reply| Request::GetProperties { unit, usage, reply })
                .await?
                .map_err(Error::from)?,
        );
        if let Some(call) = call {
            self.gate
                .snapshot
                .put(self.name.clone(), call, usage, props.clone());
        }
        Ok(props)
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
        let unit = self.name.clone();
        self.gate
            .change(
                conn,
                &header,
                "Kill",
                || {
                    super::manager_object::check_signal("Kill", signal)?;
                    Ok(unit)
                },
                |unit, reply| Request::KillUnit {
                    unit,
                    signal,
                    reply,
                },
            )
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

    /// The processes of the unit's cgroup: pid and command line. For the privileged uid only:
    /// command lines may hold secrets, and `hidepid` hides them from other users.
    #[zbus(out_args("processes"))]
    async fn get_processes(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<(u32, String)>, Error> {
        let unit = self.name.clone();
        self.gate
            .privileged_call(
                conn,
                &header,
                ("GetProcesses", Privilege::ReadsContents),
                || Ok(unit),
                |unit, reply| Request::GetProcesses { unit, reply },
            )
            .await
    }

    /// The configured limits: canonical strings; `io-max` as one string per device.
    #[zbus(property(emits_changed_signal = "false"))]
    async fn limits(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<HashMap<String, OwnedValue>> {
        let mut out: HashMap<String, OwnedValue> = HashMap::new();
        let mut io: Vec<String> = Vec::new();
        for (k, v) in &self.props(header.as_ref(), false).await?.limits {
            if k == "io-max" {
                io.push(v.clone());
            } else {
                out.insert(
                    k.clone(),
                    OwnedValue::from(zbus::zvariant::Str::from(v.clone())),
                );
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
    async fn effective_limits(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<HashMap<String, (String, String)>> {
        Ok(self
            .props(header.as_ref(), false)
            .await?
            .effective_limits
            .iter()
            .map(|(k, v, u)| (k.clone(), (v.clone(), u.clone())))
            .collect())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn memory_current(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<u64> {
        Ok(self
            .props(header.as_ref(), true)
            .await?
            .usage
            .memory_current)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn memory_peak(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<u64> {
        Ok(self.props(header.as_ref(), true).await?.usage.memory_peak)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "CPUUsageNSec")]
    async fn cpu_usage_nsec(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<u64> {
        Ok(self
            .props(header.as_ref(), true)
            .await?
            .usage
            .cpu_usage_nsec)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn tasks_current(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<u64> {
        Ok(self.props(header.as_ref(), true).await?.usage.tasks_current)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "IOReadBytes")]
    async fn io_read_bytes(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<u64> {
        Ok(self.props(header.as_ref(), true).await?.usage.io_read_bytes)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "IOWriteBytes")]
    async fn io_write_bytes(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<u64> {
        Ok(self
            .props(header.as_ref(), true)
            .await?
            .usage
            .io_write_bytes)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "OOMKills")]
    async fn oom_kills(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<u64> {
        Ok(self.props(header.as_ref(), true).await?.usage.oom_kills)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "CPUPressure")]
    async fn cpu_pressure(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<(f64, f64, f64)> {
        Ok(self.props(header.as_ref(), true).await?.usage.cpu_pressure)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn memory_pressure(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<(f64, f64, f64)> {
        Ok(self
            .props(header.as_ref(), true)
            .await?
            .usage
            .memory_pressure)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "IOPressure")]
    async fn io_pressure(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<(f64, f64, f64)> {
        Ok(self.props(header.as_ref(), true).await?.usage.io_pressure)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn active_enter_timestamp(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<u64> {
        Ok(self
            .props(header.as_ref(), false)
            .await?
            .active_enter_timestamp)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn freezer_state(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        Ok(self
            .props(header.as_ref(), true)
            .await?
            .freezer_state
            .clone())
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
    async fn description(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<String> {
        Ok(self
            .props(header.as_ref(), false)
            .await?
            .description
            .clone())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn load_state(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<String> {
        Ok(self
            .props(header.as_ref(), false)
            .await?
            .load_state
            .as_str()
            .to_string())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn load_error(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<String> {
        Ok(self.props(header.as_ref(), false).await?.load_error.clone())
    }

    #[zbus(property)]
    async fn active_state(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        Ok(self
            .props(header.as_ref(), false)
            .await?
            .active_state
            .as_str()
            .to_string())
    }

    #[zbus(property)]
    async fn sub_state(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<String> {
        Ok(self
            .props(header.as_ref(), false)
            .await?
            .sub_state
            .to_string())
    }

    #[zbus(property(emits_changed_signal = "invalidates"))]
    async fn result(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<String> {
        Ok(self
            .props(header.as_ref(), false)
            .await?
            .result
            .as_str()
            .to_string())
    }

    #[zbus(property(emits_changed_signal = "invalidates"), name = "MainPID")]
    async fn main_pid(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<u32> {
        Ok(self.props(header.as_ref(), false).await?.main_pid)
    }

    #[zbus(property(emits_changed_signal = "invalidates"))]
    async fn exit_status(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<i32> {
        Ok(self.props(header.as_ref(), false).await?.exit_status)
    }

    #[zbus(property(emits_changed_signal = "invalidates"), name = "NRestarts")]
    async fn n_restarts(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<u32> {
        Ok(self.props(header.as_ref(), false).await?.n_restarts)
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn control_group(
        &self,
        #[zbus(header)] header: Option<Header<'_>>,
    ) -> fdo::Result<String> {
        Ok(self
            .props(header.as_ref(), false)
            .await?
            .control_group
            .clone())
    }

    #[zbus(property(emits_changed_signal = "false"))]
    async fn slice(&self, #[zbus(header)] header: Option<Header<'_>>) -> fdo::Result<String> {
        Ok(self.props(header.as_ref(), false).await?.slice.clone())
    }
}
