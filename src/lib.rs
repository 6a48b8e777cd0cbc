//! corral: a systemd-style resource supervisor for Linux.
//!
//! The library holds everything worth testing; the binaries `corrald` and `corralctl` parse
//! arguments, set up logging and call into it. Layers, lowest first:
//! - [`limits`]: resource values (sizes, CPU percentages, io-max entries) and their parsing;
//! - [`cgroup`]: the cgroup v2 tree, one file per controller; knows nothing of units;
//! - [`process`]: spawning into cgroups and namespaces (clone3), reaping; knows nothing of units;
//! - [`unit`]: unit names, the unit-file model, loading with located errors, the dependency graph;
//! - [`manager`]: unit state machines and the task that owns all unit state;
//! - [`bus`]: the D-Bus API; it only forwards requests to the manager;
//! - [`boot`]: PID 1 duties; [`ctl`]: `corralctl`'s views.

pub mod boot;
pub mod bus;
pub mod cgroup;
pub mod ctl;
pub mod limits;
pub mod manager;
pub mod process;
pub mod unit;
