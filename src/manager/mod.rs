//! The manager: owns every unit's state.
//!
//! - [`engine`]: the pure job engine — jobs, transactions, stop propagation, restarts and every
//!   service's lifecycle as `(tables, input) → (tables, effects)`, tested with tables;
//! - [`executor`]: the thin side that carries the effects out (launching, killing, cgroup
//!   writes, watches) and feeds back what it observes, on one event loop;
//! - the answers to requests beside it: [`control`] (signals, freezing, live limits, usage),
//!   [`admin`] (transient units, enable, unit files, reload, the machine's end), [`scopes`]
//!   (scopes and slices made over `org.freedesktop.systemd1`, reset-failed), [`adopt`]
//!   (the state file and re-adoption); [`request`] is the boundary with the bus;
//! - what services use: [`logs`], [`notify`], [`namespaces`]; and [`reexec`].

pub mod admin;
pub mod adopt;
pub mod control;
pub mod engine;
pub mod executor;
pub mod logs;
pub mod namespaces;
pub mod notify;
pub mod reexec;
pub mod request;
pub mod scopes;

/// The vocabulary of unit states (`ActiveState`, `SubState`, `Result`, job results), as the
/// service state machine defines it.
pub use engine::service as state;
