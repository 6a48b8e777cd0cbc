//! `corralctl`: the command line (DESIGN §5). The CLI definition lives here, in the library, so
//! that shell completions and the man page are generated from the same source the binary parses.

pub mod client;
pub mod verify;
pub mod views;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "corralctl",
    version,
    about = "Control the corral resource supervisor"
)]
pub struct Cli {
    /// Talk to the per-user manager.
    #[arg(long, global = true)]
    pub user: bool,
    /// Machine-readable output (keys are the D-Bus property names).
    #[arg(long, global = true)]
    pub json: bool,
    /// The daemon's address (`unix:path=/run/corral/private` by default).
    #[arg(long, global = true, value_name = "ADDR")]
    pub address: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List units with their load and active states.
    List,
    /// Show the state of units.
    Status {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Start units (and what they require), wait until they are up.
    Start {
        #[arg(required = true)]
        names: Vec<String>,
        /// Return once the job is queued.
        #[arg(long)]
        no_block: bool,
    },
    /// Stop units, wait until they are down.
    Stop {
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long)]
        no_block: bool,
    },
    /// Stop then start units.
    Restart {
        #[arg(required = true)]
        names: Vec<String>,
        #[arg(long)]
        no_block: bool,
    },
    /// Check unit files offline, with no daemon: print every problem, exit non-zero on an error.
    Verify {
        /// Also check what depends on this machine: users, groups, programs, paths, devices.
        #[arg(long)]
        host: bool,
        /// Unit files (`NAME.KIND.toml`); drop-ins in `NAME.KIND.d/` beside them are merged.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}
