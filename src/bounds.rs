//! Every bound on what a caller may send or ask for (DESIGN §4: "every input has a bound …
//! that yields `InvalidLimit`/`InvalidArgs`"), in one place, so a reader sees the whole
//! envelope at once and the bus and the manager check the same numbers.
//!
//! The bus layer checks these before a request reaches the manager (a refused call costs the
//! manager nothing); the manager checks the ones it relies on again, so a request built by
//! other code can't get past them. Each bound is generous for real use and small enough that
//! the work behind it is a few milliseconds at most: a message of the largest size the bus
//! carries is refused by counting, never by walking it.
//!
//! Bounds on how many calls a client may have in flight, and on the queues behind them, are
//! part of the same contract and live here too.

use std::time::Duration;

/// Entries in the `a{sv}` of `SetUnitLimits`/`DiffUnitLimits`/`SetLimits`: there are 13
/// resource keys, so more is never needed.
pub const MAX_LIMIT_ENTRIES: usize = 64;

/// `io-max` entries (devices) in one limits call, or kept for one unit. Real machines have a
/// few disks; the issue that set this bound sent 20 000.
pub const MAX_IO_MAX_ENTRIES: usize = 256;

/// Bytes of one limit value string: a device path of `PATH_MAX` (4096) and its four fields.
pub const MAX_LIMIT_VALUE_BYTES: usize = 4096 + 256;

/// Bytes of one key of a limits `a{sv}` (the longest real key, `memory-swap-max`, has 15).
pub const MAX_LIMIT_KEY_BYTES: usize = 64;

/// Bytes of the TOML text of `StartTransientUnit`.
pub const MAX_TRANSIENT_UNIT_BYTES: usize = 64 << 10;

/// Processes one scope adopts at its start, or one `AttachProcessesToUnit` moves (a container
/// runtime sends one).
pub const MAX_SCOPE_PIDS: usize = 1024;

/// Properties in one `a(sv)` of `org.freedesktop.systemd1` (runc sends about 20).
pub const MAX_UNIT_PROPERTIES: usize = 256;

/// Bytes of a unit's `Description` given over D-Bus.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// Bytes of an `AllowedCPUs`/`AllowedMemoryNodes` mask: 8192 CPUs or nodes.
pub const MAX_CPU_MASK_BYTES: usize = 1024;

/// Entries of a list property that is accepted and ignored (`Wants`, `DeviceAllow`, …).
pub const MAX_IGNORED_ENTRIES: usize = 4096;

/// Bytes of the sub-cgroup path of `AttachProcessesToUnit`.
pub const MAX_SUBCGROUP_BYTES: usize = 1024;

/// Lines `GetUnitLog` returns at most (`corralctl logs -n`).
pub const MAX_LOG_LINES: u32 = 10_000;

/// Bytes `GetUnitLog` reads from the end of a log at most: the reply's size is bounded
/// whatever the lines' lengths. A line longer than this is shown cut, from `…`.
pub const MAX_LOG_TAIL_BYTES: u64 = 1 << 20;

/// Calls one client (a private-socket connection, or one sender on the bus) may have waiting
/// for an answer. On the private socket the next call is not read until one is answered (the
/// client's backlog waits in its own socket); on the bus, where one connection carries every
/// client, a call beyond it is answered `org.freedesktop.DBus.Error.LimitsExceeded` at once.
/// dbus-daemon's own default (`max_replies_per_connection`) is 128 on the system bus.
pub const MAX_CALLS_IN_FLIGHT: usize = 64;

/// Job results (`JobRemoved`) queued for one connection that has not sent them on yet. A
/// client that reads keeps this near zero; one that stops reading is dropped when it is
/// exceeded, rather than growing the daemon's memory.
pub const MAX_PENDING_JOB_RESULTS: usize = 65_536;

/// A private-socket client that has not taken a reply or a signal off its socket for this
/// long, while the daemon has one to give it, has stopped reading and is disconnected.
pub const STALLED_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
