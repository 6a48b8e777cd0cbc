//! corral: a systemd-style resource supervisor for Linux.
//!
//! The library holds everything worth testing; the binaries `corrald` and `corralctl` parse
//! arguments, set up logging and call into it. Layers, lowest first:
//! - [`limits`]: resource values (sizes, CPU percentages, io-max entries) and their parsing;
//! - [`cgroup`]: the cgroup v2 tree, one file per controller; knows nothing of units;
//! - [`unit`]: unit names, the unit-file model, loading with located errors, the dependency graph.

pub mod boot;
pub mod cgroup;
pub mod ctl;
pub mod limits;
pub mod manager;
pub mod unit;
