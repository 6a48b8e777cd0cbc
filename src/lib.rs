//! corral: a systemd-style resource supervisor for Linux.
//!
//! The library holds everything worth testing; the binaries `corrald` and `corralctl` parse
//! arguments, set up logging and call into it. Layers, lowest first:
//! - [`files`]: what corrald creates on disk, each with its mode whatever the umask;
//!   [`limits`]: resource values (sizes, CPU percentages, io-max entries) and their parsing;
//!   [`ns`] and [`caps`]: the namespace kinds and the capabilities, by name and number;
//! - [`cgroup`]: the cgroup v2 tree, one file per controller; knows nothing of units;
//! - [`process`]: spawning into cgroups and namespaces (clone3), reaping; knows nothing of units;
//! - [`unit`]: unit names, the unit-file model, loading with located errors, the dependency graph;
//! - [`manager`]: unit state machines and the task that owns all unit state;
//! - [`bus`]: the D-Bus API; it only forwards requests to the manager;
//! - [`boot`]: PID 1 duties; [`daemon`]: the daemon's life, from its settings to its end;
//!   [`console`]: the bound on PID 1's console lines; [`ctl`]: `corralctl`'s views;
//! - [`import`]: systemd unit files converted to corral's (`corralctl import`);
//!   [`doctor`]: what this machine's cgroups and kernel offer corral (`corralctl doctor`).

pub mod boot;
pub mod bounds;
pub mod bus;
pub mod caps;
pub mod cgroup;
pub mod console;
pub mod ctl;
pub mod daemon;
pub mod doctor;
pub mod files;
pub mod import;
pub mod limits;
pub mod manager;
pub mod ns;
pub mod process;
pub mod unit;
