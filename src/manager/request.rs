//! The boundary between the D-Bus layer and the manager task (STYLE: one task owns all unit
//! state; D-Bus methods only send it messages).
//!
//! - [`Request`]: what a D-Bus method asks of the manager, each with a `oneshot` reply. The
//!   manager task owns the `mpsc::Receiver<Request>` and answers every request it receives
//!   (dropping the reply sender makes the caller see `org.freedesktop.DBus.Error.Failed`).
//! - [`Notification`]: what the manager announces (units appearing and disappearing, jobs
//!   ending, state transitions), through a [`Notifier`] that every bus connection subscribes
//!   to; turned into signals and object (un)registrations there.
//!
//! **No job result is ever dropped.** State changes and units coming and going travel on a
//! bounded `broadcast` channel: a subscriber that falls behind (a burst of thousands of
//! transitions in one turn of the manager) is told it lagged and re-reads the unit list, and
//! the state signals it missed are coalesced into the state a client reads next. A job's end
//! can't be re-read (no API lists finished jobs) and `corralctl start` waits for exactly that
//! signal, so `JobRemoved` goes to each subscriber on an unbounded queue of its own instead.
//! Its size is bounded by the jobs callers queued and the subscriber hasn't yet turned into
//! signals, each a few dozen bytes, so idle memory stays the bounded broadcast buffer.
//!
//! It knows nothing of zbus: the manager sits below the bus layer and must not depend on it.
//! Refusals are a plain [`RequestError`]; `bus::error` maps them to the stable
//! `org.corral1.Error.*` names.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::manager::state::{ActiveState, JobResult, UnitResult};
use crate::unit::UnitName;

/// Whether a unit's files could be used (`LoadState` on D-Bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadState {
    Loaded,
    /// The unit's files had errors ([`UnitProperties::load_error`] says which).
    Error,
    /// Referenced (e.g. by `wants`) but no file exists.
    NotFound,
}

impl LoadState {
    pub fn as_str(self) -> &'static str {
        match self {
            LoadState::Loaded => "loaded",
            LoadState::Error => "error",
            LoadState::NotFound => "not-found",
        }
    }
}

/// One row of `ListUnits`; the bus adds the object path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSummary {
    pub name: UnitName,
    pub description: String,
    pub load_state: LoadState,
    pub active_state: ActiveState,
    /// A service's [`SubState`](crate::manager::state::SubState) as a string, or a slice's
    /// `active`/`dead` (slices have no service state machine).
    pub sub_state: &'static str,
}

/// Live usage read from the unit's cgroup when asked (nothing polls). A figure the kernel
/// can't give is `u64::MAX` (systemd's convention); pressures are `(avg10, avg60, avg300)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    pub memory_current: u64,
    pub memory_peak: u64,
    pub cpu_usage_nsec: u64,
    pub tasks_current: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub oom_kills: u64,
    pub cpu_pressure: (f64, f64, f64),
    pub memory_pressure: (f64, f64, f64),
    pub io_pressure: (f64, f64, f64),
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            memory_current: u64::MAX,
            memory_peak: u64::MAX,
            cpu_usage_nsec: u64::MAX,
            tasks_current: u64::MAX,
            io_read_bytes: u64::MAX,
            io_write_bytes: u64::MAX,
            oom_kills: u64::MAX,
            cpu_pressure: (0.0, 0.0, 0.0),
            memory_pressure: (0.0, 0.0, 0.0),
            io_pressure: (0.0, 0.0, 0.0),
        }
    }
}

/// A snapshot of one unit's properties (`org.corral1.Unit`), usage read from the cgroup now.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitProperties {
    pub name: UnitName,
    pub description: String,
    pub load_state: LoadState,
    /// Empty unless `load_state` is [`LoadState::Error`].
    pub load_error: String,
    pub active_state: ActiveState,
    /// As in [`UnitSummary::sub_state`].
    pub sub_state: &'static str,
    pub result: UnitResult,
    /// 0 when there is no main process (systemd's convention).
    pub main_pid: u32,
    pub exit_status: i32,
    pub n_restarts: u32,
    /// Relative to the cgroup2 mount, e.g. `/system.slice/web.service`.
    pub control_group: String,
    /// The slice the unit lives in; empty for the root slice.
    pub slice: String,
    /// The configured limits, canonical strings, in `[resources]` order (`io-max` once per
    /// device).
    pub limits: Vec<(String, String)>,
    /// For each max-type key: the effective value and the unit that binds it.
    pub effective_limits: Vec<(String, String, String)>,
    pub usage: Usage,
    /// Microseconds since the epoch when the unit last became active; 0 if never.
    pub active_enter_timestamp: u64,
    /// `running` or `frozen`.
    pub freezer_state: String,
}

/// One file a limit change writes: (cgroup file, value now, value after).
pub type FileChange = (String, String, String);

/// A limit as a caller gave it: the unit-file syntax (`"512M"`, `"20%"`, `"max"`,
/// `"/dev/vda wbps=1M"`) or an integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitValue {
    Str(String),
    Int(i128),
}

/// How the machine ends once every unit is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownKind {
    PowerOff,
    Reboot,
    /// Not PID 1: stop every unit, then exit.
    Exit,
    /// Stop nothing: save the state and execute the daemon's binary again in this process,
    /// which adopts every running service (`Reexec`, an upgrade).
    Reexec,
}

/// What a job does to its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Start,
    Stop,
    Restart,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
        }
    }
}

/// Why the manager refused a request. Every variant becomes a stable D-Bus error name
/// (`org.corral1.Error.<Variant>`); the message says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unit {0} is not loaded")]
    NoSuchUnit(UnitName),
    #[error("{0}")]
    InvalidUnit(String),
    #[error("{0}")]
    InvalidLimit(String),
    #[error("{0}")]
    JobFailed(String),
    #[error("{0}")]
    NotSupported(String),
}

/// One request to the manager task. The bus has already checked the caller's privilege and
/// parsed the unit name; the manager checks everything that depends on its state.
#[derive(Debug)]
pub enum Request {
    /// Every unit the manager knows, loaded or not.
    ListUnits {
        reply: oneshot::Sender<Vec<UnitSummary>>,
    },
    /// Whether the unit is known (`GetUnit`); `NoSuchUnit` if not.
    GetUnit {
        unit: UnitName,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// The unit's properties; with `usage`, its usage and freezer state read from the cgroup
    /// now (otherwise they read as unknown: 2^64-1, "running").
    GetProperties {
        unit: UnitName,
        usage: bool,
        reply: oneshot::Sender<Result<UnitProperties, RequestError>>,
    },
    /// Signal every process of the unit.
    KillUnit {
        unit: UnitName,
        signal: i32,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// `cgroup.freeze` (true) or thaw (false); replies once the kernel reports it done.
    Freeze {
        unit: UnitName,
        freeze: bool,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// Change limits live and persist them (`runtime`: in RUNTIME/units only).
    SetLimits {
        unit: UnitName,
        limits: Vec<(String, LimitValue)>,
        runtime: bool,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// What `SetLimits` would write: (cgroup file, old value, new value).
    DiffLimits {
        unit: UnitName,
        limits: Vec<(String, LimitValue)>,
        reply: oneshot::Sender<Result<Vec<FileChange>, RequestError>>,
    },
    /// The last lines of the unit's log.
    GetLog {
        unit: UnitName,
        lines: u32,
        reply: oneshot::Sender<Result<Vec<String>, RequestError>>,
    },
    /// The processes of the unit's cgroup: pid and command line.
    GetProcesses {
        unit: UnitName,
        reply: oneshot::Sender<Result<Vec<(u32, String)>, RequestError>>,
    },
    /// Validate a transient unit's TOML like a file, keep it in RUNTIME/units, and start it.
    StartTransient {
        unit: UnitName,
        toml: String,
        reply: oneshot::Sender<Result<u32, RequestError>>,
    },
    /// Write (true) or remove (false) the autostart drop-in in the first unit directory.
    Enable {
        unit: UnitName,
        enable: bool,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// Path and text of the unit file and every drop-in, in merge order.
    GetUnitFiles {
        unit: UnitName,
        reply: oneshot::Sender<Result<Vec<(String, String)>, RequestError>>,
    },
    /// Re-read the unit files; reply with every (file, error); running units get changed
    /// limits.
    Reload {
        reply: oneshot::Sender<Vec<(String, String)>>,
    },
    /// Power off or reboot the machine (PID 1 only).
    Shutdown {
        how: ShutdownKind,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// Queue a job (with its dependencies) and reply with its id at once; the job's end is
    /// announced later as [`Notification::JobRemoved`] with the same id.
    QueueJob {
        unit: UnitName,
        kind: JobKind,
        reply: oneshot::Sender<Result<u32, RequestError>>,
    },
}

/// What the manager announces to every bus connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A unit appeared (loaded, transient, or referenced): its object is served from now on.
    UnitAdded(UnitName),
    /// A unit is gone (after `Reload`, a transient unit that stopped): its object is removed.
    UnitRemoved(UnitName),
    /// `JobRemoved(uss)`: job id, unit, result.
    JobRemoved {
        id: u32,
        unit: UnitName,
        result: JobResult,
    },
    /// `UnitStateChanged(sss)` on the manager, and `PropertiesChanged` on the unit's object.
    UnitStateChanged {
        unit: UnitName,
        active_state: ActiveState,
        sub_state: &'static str,
    },
}

/// How the manager announces [`Notification`]s to every subscriber (one per bus connection):
/// job results on an unbounded queue per subscriber, everything else on a shared bounded
/// broadcast (see the module doc). Cheap to clone; every clone announces to the same
/// subscribers.
#[derive(Debug, Clone)]
pub struct Notifier {
    events: broadcast::Sender<Notification>,
    /// The job-result queue of every live subscriber; closed ones are dropped on the next send
    /// or subscription.
    jobs: Arc<Mutex<Vec<mpsc::UnboundedSender<Notification>>>>,
}

impl Notifier {
    /// A notifier whose state-change buffer holds `capacity` notifications per subscriber
    /// before the slowest one lags.
    pub fn new(capacity: usize) -> Self {
        Notifier {
            events: broadcast::channel(capacity).0,
            jobs: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Announces `n` to every subscriber; returns how many it reached (0 is normal: no client).
    pub fn send(&self, n: Notification) -> usize {
        match n {
            Notification::JobRemoved { .. } => {
                let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
                jobs.retain(|tx| tx.send(n.clone()).is_ok());
                jobs.len()
            }
            other => self.events.send(other).unwrap_or(0),
        }
    }

    /// A new subscriber: it receives everything announced from now on.
    pub fn subscribe(&self) -> Subscription {
        let (tx, jobs) = mpsc::unbounded_channel();
        let mut senders = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        senders.retain(|tx| !tx.is_closed());
        senders.push(tx);
        Subscription {
            events: self.events.subscribe(),
            jobs,
        }
    }

    /// How many subscribers are live.
    pub fn receiver_count(&self) -> usize {
        self.events.receiver_count()
    }
}

/// What one subscriber receives next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Notification(Notification),
    /// This many state changes or unit (un)registrations were lost: re-read the unit list.
    /// Job results are never lost.
    Lagged(u64),
    /// Every [`Notifier`] is gone: nothing more will come.
    Closed,
}

/// One subscriber's end of a [`Notifier`].
#[derive(Debug)]
pub struct Subscription {
    events: broadcast::Receiver<Notification>,
    jobs: mpsc::UnboundedReceiver<Notification>,
}

impl Subscription {
    /// The next announcement. A state change announced before a job result comes first, as
    /// the manager sent them: the broadcast is drained before the job queue (both are filled
    /// by the one manager task, and a receiver sees everything sent before it was woken). A
    /// job result may overtake a state change announced after it; properties are read fresh,
    /// so a client that reads state after `JobRemoved` sees it current either way.
    pub async fn recv(&mut self) -> Received {
        tokio::select! {
            biased;
            n = self.events.recv() => match n {
                Ok(n) => Received::Notification(n),
                Err(RecvError::Lagged(missed)) => Received::Lagged(missed),
                // The manager is gone; deliver the job results it left, then end.
                Err(RecvError::Closed) => match self.jobs.try_recv() {
                    Ok(n) => Received::Notification(n),
                    Err(_) => Received::Closed,
                },
            },
            Some(n) = self.jobs.recv() => Received::Notification(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: u32) -> UnitName {
        UnitName::parse(&format!("u{i}.service")).expect("valid")
    }

    /// A burst far larger than the broadcast buffer, sent in one turn of the manager (as a
    /// start of thousands of units is): the subscriber lags on state changes, but gets every
    /// job result, in order, after the state changes it still holds.
    #[tokio::test]
    async fn a_burst_loses_state_changes_but_never_a_job_result() {
        let notifier = Notifier::new(8);
        let mut sub = notifier.subscribe();
        for i in 0..1000 {
            notifier.send(Notification::UnitStateChanged {
                unit: unit(i),
                active_state: ActiveState::Active,
                sub_state: "running",
            });
            assert_eq!(
                notifier.send(Notification::JobRemoved {
                    id: i,
                    unit: unit(i),
                    result: JobResult::Done,
                }),
                1
            );
        }
        drop(notifier);
        let (mut lagged, mut states, mut jobs) = (0, 0, Vec::new());
        loop {
            match sub.recv().await {
                Received::Lagged(n) => lagged += n,
                Received::Notification(Notification::JobRemoved { id, .. }) => jobs.push(id),
                Received::Notification(Notification::UnitStateChanged { .. }) => {
                    assert!(jobs.is_empty(), "state changes are drained first");
                    states += 1;
                }
                Received::Notification(other) => panic!("unexpected {other:?}"),
                Received::Closed => break,
            }
        }
        assert_eq!(
            lagged + states,
            1000,
            "every state change is received or counted"
        );
        assert!(lagged > 0, "the buffer of 8 must have overflowed");
        assert_eq!(jobs, (0..1000).collect::<Vec<u32>>());
    }

    #[tokio::test]
    async fn closed_subscribers_are_forgotten() {
        let notifier = Notifier::new(8);
        let sub = notifier.subscribe();
        let _kept = notifier.subscribe();
        drop(sub);
        let job = Notification::JobRemoved {
            id: 1,
            unit: unit(1),
            result: JobResult::Done,
        };
        assert_eq!(notifier.send(job), 1);
        assert_eq!(notifier.receiver_count(), 1);
    }
}
