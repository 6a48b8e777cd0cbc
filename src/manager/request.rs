//! The boundary between the D-Bus layer and the manager task (STYLE: one task owns all unit
//! state; D-Bus methods only send it messages).
//!
//! - [`Request`]: what a D-Bus method asks of the manager, each with a `oneshot` reply. The
//!   manager task owns the [`RequestReceiver`] and answers every request it receives
//!   (dropping the reply sender makes the caller see `org.freedesktop.DBus.Error.Failed`);
//!   requests wait in a queue of their caller's own and are taken fairly ([`queue`]).
//! - [`Notification`]: what the manager announces (units appearing and disappearing, jobs
//!   ending, state transitions), through a [`Notifier`] that every bus connection subscribes
//!   to; turned into signals and object (un)registrations there.
//!
//! **No job result is ever dropped.** State changes and units coming and going travel on a
//! bounded `broadcast` channel: a subscriber that falls behind (a burst of thousands of
//! transitions in one turn of the manager) is told it lagged and re-reads the unit list, and
//! the state signals it missed are coalesced into the state a client reads next. A job's end
//! can't be re-read (no API lists finished jobs) and `corralctl start` waits for exactly that
//! signal, so `JobRemoved` goes to each subscriber on a queue of its own instead, which holds
//! [`MAX_PENDING_JOB_RESULTS`] — far more than a client that reads ever has waiting. A
//! subscriber that lets it fill has stopped reading: it is told so
//! ([`Received::Overflowed`]) and its connection is dropped, rather than the daemon's memory
//! growing with what it does not read.
//!
//! **Which units exist.** The [`Notifier`] also keeps the names of the units it has announced
//! (once it has been given the whole list: [`Notifier::seed`]), so the bus layer can tell
//! whether a unit exists without asking the manager — the reader of the bus connection, which
//! every client shares, asks that before each call to a unit object it has not served yet. The
//! manager announces every unit that appears or goes.
//!
//! It knows nothing of zbus: the manager sits below the bus layer and must not depend on it.
//! Refusals are a plain [`RequestError`]; `bus::error` maps them to the stable
//! `org.corral1.Error.*` names.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::bounds::{
    MAX_IO_MAX_ENTRIES, MAX_LIMIT_ENTRIES, MAX_LIMIT_KEY_BYTES, MAX_LIMIT_VALUE_BYTES,
    MAX_PENDING_JOB_RESULTS,
};
use crate::manager::state::{ActiveState, JobResult, UnitResult};
use crate::unit::{Ident, UnitName};

pub mod queue;

pub use queue::{
    ClientId, Lane, REQUESTS_PER_TURN, RequestReceiver, RequestSender, TurnOver, request_queue,
};

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

impl LimitValue {
    /// The value as the limits parser takes it.
    pub fn raw(&self) -> crate::limits::RawValue<'_> {
        match self {
            LimitValue::Str(s) => crate::limits::RawValue::Str(s),
            LimitValue::Int(i) => crate::limits::RawValue::Int(*i),
        }
    }
}

/// Checks a limits request against [`crate::bounds`]: at most [`MAX_LIMIT_ENTRIES`] keys
/// besides `io-max`, at most [`MAX_IO_MAX_ENTRIES`] io-max entries, and keys and values of
/// bounded size. Linear in the number of pairs.
pub fn check_limit_pairs(pairs: &[(String, LimitValue)]) -> Result<(), RequestError> {
    let io = pairs.iter().filter(|(k, _)| k == "io-max").count();
    if io > MAX_IO_MAX_ENTRIES {
        return Err(RequestError::InvalidLimit(format!(
            "io-max: {io} entries; at most {MAX_IO_MAX_ENTRIES} in one call"
        )));
    }
    if pairs.len() - io > MAX_LIMIT_ENTRIES {
        return Err(RequestError::InvalidLimit(format!(
            "{} limits in one call; at most {MAX_LIMIT_ENTRIES}",
            pairs.len() - io
        )));
    }
    for (key, value) in pairs {
        if key.len() > MAX_LIMIT_KEY_BYTES {
            return Err(RequestError::InvalidLimit(format!(
                "a key of {} bytes; keys have at most {MAX_LIMIT_KEY_BYTES}",
                key.len()
            )));
        }
        if let LimitValue::Str(s) = value
            && s.len() > MAX_LIMIT_VALUE_BYTES
        {
            return Err(RequestError::InvalidLimit(format!(
                "{key}: a value of {} bytes; at most {MAX_LIMIT_VALUE_BYTES}",
                s.len()
            )));
        }
    }
    Ok(())
}

/// Who asks for a unit's log, when it is not the privileged uid: the caller's uid and, once
/// the bus layer has resolved it, the uid of the user name the unit runs as (the manager
/// never looks a name up itself: NSS may block, DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReader {
    pub uid: u32,
    /// (user name, its uid), as the bus layer resolved it after a [`LogReply::Resolve`].
    pub resolved: Option<(String, u32)>,
}

/// The answer to [`Request::GetLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogReply {
    /// The last lines.
    Lines(Vec<String>),
    /// The unit runs as this user name: resolve it to a uid and ask again.
    Resolve(String),
    /// The reader may not read this log; the message says whose it is.
    Denied(String),
}

/// What [`log_access`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogAccess {
    Allowed,
    /// The unit runs as this user name, not resolved yet.
    Resolve(String),
    /// Not the unit's user: who the unit runs as, for the message.
    Denied(String),
}

/// Whether `reader` may read the log of a unit that runs as `user` (`None`: the daemon's own
/// user, `own_uid`; a slice or a unit with errors has no user either). DESIGN §4: besides the
/// privileged uid, the uid a unit runs as may read that unit's log. A pure function: a user
/// name is compared through the uid the caller resolved, never looked up here.
pub fn log_access(user: Option<&Ident>, own_uid: u32, reader: &LogReader) -> LogAccess {
    let runs_as = |uid: u32| {
        if uid == reader.uid {
            LogAccess::Allowed
        } else {
            LogAccess::Denied(format!("uid {uid}"))
        }
    };
    match user {
        None => runs_as(own_uid),
        Some(Ident::Id(uid)) => runs_as(*uid),
        Some(Ident::Name(name)) => match &reader.resolved {
            Some((resolved, uid)) if resolved == name => match runs_as(*uid) {
                LogAccess::Denied(_) => LogAccess::Denied(format!("user {name} (uid {uid})")),
                allowed => allowed,
            },
            _ => LogAccess::Resolve(name.clone()),
        },
    }
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
/// (`org.corral1.Error.<Variant>`; the last three only arise from `org.freedesktop.systemd1`
/// calls, which name them as systemd does); the message says what was wrong.
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
    /// A unit of that name is live (or failed, or has a file): systemd's `UnitExists`.
    #[error("{0}")]
    UnitExists(String),
    /// A PID that is no process (systemd's `NoSuchProcess`).
    #[error("{0}")]
    NoSuchProcess(String),
    /// The unit is not running (systemd's `UnitInactive`).
    #[error("{0}")]
    UnitInactive(String),
}

/// A unit to make over D-Bus (`org.freedesktop.systemd1` `StartTransientUnit`, DESIGN §9): a
/// scope adopting `pids`, or a slice. The bus layer has parsed the properties; the manager
/// checks what depends on its state (a live duplicate, the processes) and the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusUnitSpec {
    pub name: UnitName,
    pub description: String,
    /// `Slice=`: where a scope goes (default `system.slice`); for a slice, its parent by name
    /// (anything else is refused).
    pub slice: Option<UnitName>,
    pub delegate: bool,
    pub pids: Vec<u32>,
    /// Resource properties as limits keys (`memory-max`, …).
    pub limits: Vec<(String, LimitValue)>,
    pub stop_timeout: Option<std::time::Duration>,
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
    /// The last lines of the unit's log (at most [`crate::bounds::MAX_LOG_LINES`]); for a
    /// `reader` that is not privileged, only if it is the unit's user ([`log_access`]).
    GetLog {
        unit: UnitName,
        lines: u32,
        reader: Option<LogReader>,
        reply: oneshot::Sender<Result<LogReply, RequestError>>,
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
    /// A failed unit back to inactive (a transient one is then unloaded); nothing for any
    /// other.
    ResetFailed {
        unit: UnitName,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// Make a scope or slice over D-Bus and queue its start; replies with the job's id.
    StartBusTransient {
        spec: Box<BusUnitSpec>,
        reply: oneshot::Sender<Result<u32, RequestError>>,
    },
    /// `SetUnitProperties`: limits applied to the live cgroup and kept; persisted as the
    /// unit's drop-in only for a unit that has files (`runtime`: in RUNTIME/units).
    SetProperties {
        unit: UnitName,
        limits: Vec<(String, LimitValue)>,
        runtime: bool,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// `AttachProcessesToUnit`: move `pids` into the unit's cgroup, or into `subcgroup` below
    /// it (a relative path, made if missing).
    AttachProcesses {
        unit: UnitName,
        subcgroup: std::path::PathBuf,
        pids: Vec<u32>,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    /// Signal the unit's main process only (`KillUnit` with whom `main`).
    KillMain {
        unit: UnitName,
        signal: i32,
        reply: oneshot::Sender<Result<(), RequestError>>,
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
/// job results on a bounded queue per subscriber, everything else on a shared bounded
/// broadcast (see the module doc); and the units it has announced. Cheap to clone; every clone
/// announces to the same subscribers.
#[derive(Debug, Clone)]
pub struct Notifier {
    events: broadcast::Sender<Notification>,
    /// The job-result queue of every live subscriber; closed ones are dropped on the next send
    /// or subscription, full ones are dropped and told so.
    jobs: Arc<Mutex<Vec<JobQueue>>>,
    units: Arc<Mutex<Directory>>,
}

/// One subscriber's job-result queue, as the notifier holds it.
#[derive(Debug)]
struct JobQueue {
    tx: mpsc::Sender<Notification>,
    overflow: Arc<Overflow>,
}

/// Set once a subscriber's job queue has overflowed; can be waited for.
#[derive(Debug, Default)]
pub struct Overflow {
    flag: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Overflow {
    fn set(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Returns once the queue has overflowed (at once if it has).
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// The units announced so far: `names` is `None` until [`Notifier::seed`] gave the whole list.
#[derive(Debug, Default)]
struct Directory {
    names: Option<HashSet<UnitName>>,
    /// Counts every unit announced as added or removed, to tell whether a list taken meanwhile
    /// is still whole.
    changes: u64,
}

impl Notifier {
    /// A notifier whose state-change buffer holds `capacity` notifications per subscriber
    /// before the slowest one lags.
    pub fn new(capacity: usize) -> Self {
        Notifier {
            events: broadcast::channel(capacity).0,
            jobs: Arc::new(Mutex::new(Vec::new())),
            units: Arc::new(Mutex::new(Directory::default())),
        }
    }

    /// Announces `n` to every subscriber; returns how many it reached (0 is normal: no client).
    pub fn send(&self, n: Notification) -> usize {
        match n {
            Notification::JobRemoved { .. } => {
                let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
                jobs.retain(|q| match q.tx.try_send(n.clone()) {
                    Ok(()) => true,
                    Err(TrySendError::Closed(_)) => false,
                    Err(TrySendError::Full(_)) => {
                        q.overflow.set();
                        false
                    }
                });
                jobs.len()
            }
            other => {
                if let Notification::UnitAdded(name) | Notification::UnitRemoved(name) = &other {
                    let mut units = self.directory();
                    units.changes += 1;
                    let added = matches!(other, Notification::UnitAdded(_));
                    if let Some(names) = &mut units.names {
                        if added {
                            names.insert(name.clone());
                        } else {
                            names.remove(name);
                        }
                    }
                }
                self.events.send(other).unwrap_or(0)
            }
        }
    }

    /// A new subscriber: it receives everything announced from now on.
    pub fn subscribe(&self) -> Subscription {
        let (tx, jobs) = mpsc::channel(MAX_PENDING_JOB_RESULTS);
        let overflow = Arc::new(Overflow::default());
        let mut senders = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        senders.retain(|q| !q.tx.is_closed());
        senders.push(JobQueue {
            tx,
            overflow: overflow.clone(),
        });
        Subscription {
            events: self.events.subscribe(),
            jobs,
            jobs_open: true,
            overflow,
        }
    }

    /// How many subscribers are live.
    pub fn receiver_count(&self) -> usize {
        self.events.receiver_count()
    }

    /// Whether a unit exists, as far as announcements tell; `None` until [`Notifier::seed`]
    /// gave the whole list.
    pub fn knows(&self, name: &UnitName) -> Option<bool> {
        self.directory().names.as_ref().map(|n| n.contains(name))
    }

    /// How many units have been announced as added or removed so far: take it before asking
    /// the manager for the list given to [`Notifier::seed`].
    pub fn changes(&self) -> u64 {
        self.directory().changes
    }

    /// Takes the whole list of units, as the manager gave it after [`Notifier::changes`]
    /// returned `changes`; ignored (and `false`) if a unit was announced since, since the
    /// list may not hold it.
    pub fn seed(&self, names: impl IntoIterator<Item = UnitName>, changes: u64) -> bool {
        let mut units = self.directory();
        if units.changes != changes {
            return false;
        }
        units.names = Some(names.into_iter().collect());
        true
    }

    fn directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.units.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one subscriber receives next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Notification(Notification),
    /// This many state changes or unit (un)registrations were lost: re-read the unit list.
    /// Job results are never lost.
    Lagged(u64),
    /// The subscriber left [`MAX_PENDING_JOB_RESULTS`] job results unread: it has stopped
    /// reading, and gets nothing more.
    Overflowed,
    /// Every [`Notifier`] is gone: nothing more will come.
    Closed,
}

impl Subscription {
    /// Set when this subscriber's job queue overflows: one who is busy sending a notification
    /// on (to a client that does not read) can wait for it beside.
    pub fn overflow(&self) -> Arc<Overflow> {
        self.overflow.clone()
    }
}

/// One subscriber's end of a [`Notifier`].
#[derive(Debug)]
pub struct Subscription {
    events: broadcast::Receiver<Notification>,
    jobs: mpsc::Receiver<Notification>,
    /// Until the job queue ends (the notifier gone, or this subscriber dropped by it).
    jobs_open: bool,
    overflow: Arc<Overflow>,
}

impl Subscription {
    /// The next announcement. A state change announced before a job result comes first, as
    /// the manager sent them: the broadcast is drained before the job queue (both are filled
    /// by the one manager task, and a receiver sees everything sent before it was woken). A
    /// job result may overtake a state change announced after it; properties are read fresh,
    /// so a client that reads state after `JobRemoved` sees it current either way. Once the
    /// job queue has overflowed, that is all there is to say.
    pub async fn recv(&mut self) -> Received {
        loop {
            if self.overflow.is_set() {
                return Received::Overflowed;
            }
            tokio::select! {
                biased;
                n = self.events.recv() => return match n {
                    Ok(n) => Received::Notification(n),
                    Err(RecvError::Lagged(missed)) => Received::Lagged(missed),
                    // The manager is gone; deliver the job results it left, then end.
                    Err(RecvError::Closed) => match self.jobs.try_recv() {
                        Ok(n) => Received::Notification(n),
                        Err(_) => Received::Closed,
                    },
                },
                n = self.jobs.recv(), if self.jobs_open => match n {
                    Some(n) => return Received::Notification(n),
                    // Dropped by the notifier (overflowed, seen at the loop's top) or the
                    // notifier is gone (the broadcast says Closed next).
                    None => self.jobs_open = false,
                },
            }
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
                Received::Overflowed => panic!("1000 job results fit"),
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

    fn job(id: u32) -> Notification {
        Notification::JobRemoved {
            id,
            unit: unit(id),
            result: JobResult::Done,
        }
    }

    /// A subscriber that reads keeps up; one that lets MAX_PENDING_JOB_RESULTS pile up is
    /// dropped and told so at once, and the others lose nothing.
    #[tokio::test]
    async fn a_subscriber_that_stops_reading_overflows_and_is_dropped() {
        let notifier = Notifier::new(8);
        let mut stalled = notifier.subscribe();
        let mut reader = notifier.subscribe();
        for i in 0..MAX_PENDING_JOB_RESULTS as u32 {
            notifier.send(job(i));
            if i % 1000 == 0 {
                // The reader drains as it goes.
                while let Ok(Some(_)) =
                    tokio::time::timeout(std::time::Duration::ZERO, reader.recv())
                        .await
                        .map(Some)
                {}
            }
        }
        assert_eq!(notifier.send(job(u32::MAX)), 1, "only the reader is left");
        assert_eq!(stalled.recv().await, Received::Overflowed);
        assert_eq!(stalled.recv().await, Received::Overflowed);
        drop(notifier);
        let mut last = None;
        loop {
            match reader.recv().await {
                Received::Notification(Notification::JobRemoved { id, .. }) => last = Some(id),
                Received::Closed => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(last, Some(u32::MAX), "the reader got every job result");
    }

    /// The directory of units: unknown until seeded, kept by announcements after, and a list
    /// taken while a unit was announced is not taken.
    #[test]
    fn the_notifier_knows_which_units_exist_once_seeded() {
        let notifier = Notifier::new(8);
        assert_eq!(notifier.knows(&unit(1)), None);
        let changes = notifier.changes();
        notifier.send(Notification::UnitAdded(unit(2)));
        assert!(!notifier.seed([unit(1)], changes), "a unit came meanwhile");
        assert_eq!(notifier.knows(&unit(1)), None);
        let changes = notifier.changes();
        assert!(notifier.seed([unit(1), unit(2)], changes));
        assert_eq!(notifier.knows(&unit(1)), Some(true));
        assert_eq!(notifier.knows(&unit(3)), Some(false));
        notifier.send(Notification::UnitAdded(unit(3)));
        notifier.send(Notification::UnitRemoved(unit(1)));
        assert_eq!(notifier.knows(&unit(3)), Some(true));
        assert_eq!(notifier.knows(&unit(1)), Some(false));
    }

    #[test]
    fn a_log_is_for_the_units_own_user() {
        let reader = |uid, resolved: Option<(&str, u32)>| LogReader {
            uid,
            resolved: resolved.map(|(n, u)| (n.to_string(), u)),
        };
        let name = |n: &str| Ident::Name(n.to_string());
        // No user: the daemon's own.
        assert_eq!(log_access(None, 0, &reader(0, None)), LogAccess::Allowed);
        assert_eq!(
            log_access(None, 0, &reader(1000, None)),
            LogAccess::Denied("uid 0".into())
        );
        // A number needs no lookup.
        let id = Ident::Id(1000);
        assert_eq!(
            log_access(Some(&id), 0, &reader(1000, None)),
            LogAccess::Allowed
        );
        assert_eq!(
            log_access(Some(&id), 0, &reader(1001, None)),
            LogAccess::Denied("uid 1000".into())
        );
        // A name is resolved by the caller, then compared.
        let svc = name("svc");
        assert_eq!(
            log_access(Some(&svc), 0, &reader(1000, None)),
            LogAccess::Resolve("svc".into())
        );
        assert_eq!(
            log_access(Some(&svc), 0, &reader(1000, Some(("svc", 1000)))),
            LogAccess::Allowed
        );
        assert_eq!(
            log_access(Some(&svc), 0, &reader(65534, Some(("svc", 1000)))),
            LogAccess::Denied("user svc (uid 1000)".into())
        );
        // Resolved for another name (the unit's user changed meanwhile): resolve again.
        assert_eq!(
            log_access(Some(&svc), 0, &reader(1000, Some(("old", 1000)))),
            LogAccess::Resolve("svc".into())
        );
    }

    #[test]
    fn limit_requests_are_bounded() {
        let pair = |k: &str, v: &str| (k.to_string(), LimitValue::Str(v.to_string()));
        assert!(check_limit_pairs(&[pair("memory-max", "1G")]).is_ok());
        let io: Vec<_> = (0..=MAX_IO_MAX_ENTRIES)
            .map(|i| pair("io-max", &format!("/dev/d{i} rbps=2")))
            .collect();
        let e = check_limit_pairs(&io).expect_err("too many io-max entries");
        assert!(e.to_string().contains("at most 256"), "{e}");
        let many: Vec<_> = (0..=MAX_LIMIT_ENTRIES)
            .map(|_| pair("pids-max", "5"))
            .collect();
        assert!(check_limit_pairs(&many).is_err());
        let long = "9".repeat(MAX_LIMIT_VALUE_BYTES + 1);
        let e = check_limit_pairs(&[pair("pids-max", &long)]).expect_err("too long");
        assert!(e.to_string().contains("pids-max: a value of"), "{e}");
        let key = "k".repeat(MAX_LIMIT_KEY_BYTES + 1);
        assert!(check_limit_pairs(&[pair(&key, "1")]).is_err());
    }
}
