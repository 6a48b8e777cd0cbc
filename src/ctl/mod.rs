//! `corralctl`: the command line (DESIGN §5). The CLI definition lives here, in the library, so
//! that shell completions and the man page are generated from the same source the binary parses.

pub mod client;
pub mod follow;
pub mod generate;
pub mod import;
pub mod run;
pub mod top;
pub mod tree;
pub mod verify;
pub mod views;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::unit::Kind;

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
    /// The daemon's address (default: its private socket, else the system or session bus).
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
        #[arg(required = true, value_parser = unit_arg)]
        names: Vec<String>,
    },
    /// Start units (and what they require), wait until they are up.
    Start {
        #[arg(required = true, value_parser = unit_arg)]
        names: Vec<String>,
        /// Return once the job is queued.
        #[arg(long)]
        no_block: bool,
    },
    /// Stop units, wait until they are down.
    Stop {
        #[arg(required = true, value_parser = unit_arg)]
        names: Vec<String>,
        #[arg(long)]
        no_block: bool,
    },
    /// Send a signal to every process of a unit.
    Kill {
        #[arg(allow_hyphen_values = true, value_parser = unit_arg)]
        name: String,
        /// Signal name or number.
        #[arg(long, short, default_value = "SIGTERM")]
        signal: String,
    },
    /// Freeze every process of a unit (cgroup.freeze).
    Freeze {
        #[arg(allow_hyphen_values = true, value_parser = unit_arg)]
        name: String,
    },
    /// Thaw a frozen unit.
    Thaw {
        #[arg(allow_hyphen_values = true, value_parser = unit_arg)]
        name: String,
    },
    /// Return a failed unit to inactive (a failed transient unit is then removed).
    ResetFailed {
        #[arg(allow_hyphen_values = true, value_parser = unit_arg)]
        name: String,
    },
    /// Change a unit's limits live (KEY=VALUE as in [resources]), and keep them.
    Limit {
        #[arg(allow_hyphen_values = true, value_parser = unit_arg)]
        name: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        limits: Vec<String>,
        /// Until the next reboot only (a drop-in in the runtime directory).
        #[arg(long)]
        runtime: bool,
        /// Print the cgroup files that would change (old → new) and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the last lines of a unit's log.
    Logs {
        #[arg(allow_hyphen_values = true, value_parser = unit_arg)]
        name: String,
        /// How many of the last lines to show.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Keep printing new lines as they arrive (until interrupted).
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Start a command as a transient service (a unit that exists until reboot).
    Run {
        /// The unit's name (default: run-PID.service).
        #[arg(long, value_parser = unit_arg)]
        name: Option<String>,
        /// The slice to run it in.
        #[arg(long, value_parser = slice_arg)]
        slice: Option<String>,
        /// A [service] or [resources] key, KEY=VALUE (repeatable; --help lists them).
        #[arg(
            short = 'p',
            long = "property",
            value_name = "KEY=VALUE",
            long_help = crate::unit::keys::run_property_help()
        )]
        properties: Vec<String>,
        /// Fresh namespaces, separated by commas.
        #[arg(
            long,
            value_delimiter = ',',
            value_parser = clap::builder::PossibleValuesParser::new(crate::ns::NsKind::names())
        )]
        ns: Vec<String>,
        /// Wait until the service has exited, and exit with its status.
        #[arg(long)]
        wait: bool,
        /// The command and its arguments (the program as an absolute path or found in $PATH).
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
    /// Print a unit's file and drop-ins, in merge order.
    Cat {
        #[arg(allow_hyphen_values = true, value_parser = unit_arg)]
        name: String,
    },
    /// Re-read unit files; print every error; running units get changed limits.
    Reload,
    /// Start a unit at boot (writes its autostart drop-in).
    Enable {
        #[arg(allow_hyphen_values = true, value_parser = unit_arg)]
        name: String,
    },
    /// Stop starting a unit at boot.
    Disable {
        #[arg(allow_hyphen_values = true, value_parser = unit_arg)]
        name: String,
    },
    /// Stop every unit and power the machine off (corrald as PID 1).
    Poweroff,
    /// Stop every unit and reboot (corrald as PID 1).
    Reboot,
    /// Re-execute the daemon in place, keeping its services and their logs.
    DaemonReexec,
    /// Stop then start units.
    Restart {
        #[arg(required = true, value_parser = unit_arg)]
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
    /// Convert systemd .service and .slice files (with their drop-ins) to corral unit files
    ///
    /// Each FILE's NAME.d/*.conf drop-ins beside it are merged in. Every setting with a corral
    /// meaning is carried over; for each one that has none, or whose meaning changes, a
    /// warning `FILE:LINE: warning: [Section] Key: why` goes to stderr. Exits non-zero when a
    /// file could not be converted; every file written passes `corralctl verify`.
    Import {
        /// Write NAME.KIND.toml files into DIR (created if missing) instead of printing them.
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
        /// systemd unit files; an instance (getty@tty1.service) is read from its template.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Check this machine for corral: cgroups, kernel, bus (no daemon needed)
    ///
    /// One finding a line, ok, warn or error: the cgroup layout (unified, hybrid or legacy) and
    /// where each controller is bound, who owns the tree corral would use, kernel features, the
    /// bus and corrald's socket. Every warn and error says how to fix it. Exits non-zero when
    /// there is an error.
    Doctor,
    /// Show the slice tree: units with their state, and their processes (like systemd-cgls).
    Tree {
        /// Show only this unit and what lies below it.
        #[arg(allow_hyphen_values = true, value_parser = unit_arg)]
        name: Option<String>,
    },
    /// Show units ordered by CPU use, refreshed (like systemd-cgtop).
    Top {
        /// Time between refreshes: seconds (0.5) or a duration (500ms).
        #[arg(long, short = 'd', value_name = "TIME", default_value = "1", value_parser = top::parse_delay)]
        delay: std::time::Duration,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(long, short = 'n', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        iterations: Option<u32>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page corralctl(1) as roff (for packagers).
    #[command(hide = true)]
    Man {
        /// Write corralctl.1 and a corralctl-COMMAND.1 page per command into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// A unit name as typed: as with systemctl, a name without a kind suffix means a service
/// (`web` → `web.service`). Anything else is left to the daemon, which names what is wrong.
fn unit_arg(name: &str) -> Result<String, std::convert::Infallible> {
    Ok(with_kind(name, Kind::Service))
}

/// A slice as typed: `apps` → `apps.slice`.
fn slice_arg(name: &str) -> Result<String, std::convert::Infallible> {
    Ok(with_kind(name, Kind::Slice))
}

fn with_kind(name: &str, kind: Kind) -> String {
    let known = Kind::ALL.iter().any(|k| {
        name.strip_suffix(k.as_str())
            .is_some_and(|s| s.ends_with('.'))
    });
    if known || name.is_empty() {
        name.to_owned()
    } else {
        format!("{name}.{kind}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_may_start_with_a_dash_and_flags_still_parse() {
        // Several names: the root slice after `--`, as with any program.
        let cli = Cli::try_parse_from([
            "corralctl",
            "start",
            "--no-block",
            "--",
            "-.slice",
            "a.service",
        ])
        .unwrap();
        match cli.command {
            Command::Start { names, no_block } => {
                assert_eq!(names, ["-.slice", "a.service"]);
                assert!(no_block);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["corralctl", "limit", "-.slice", "pids-max=5", "--dry-run"])
            .unwrap();
        assert!(
            matches!(cli.command, Command::Limit { dry_run: true, ref name, .. } if name == "-.slice")
        );
    }

    #[test]
    fn a_name_without_a_kind_is_a_service_as_with_systemctl() {
        let cli = Cli::try_parse_from(["corralctl", "status", "web", "apps.slice", "a.b"]).unwrap();
        match cli.command {
            Command::Status { names } => {
                assert_eq!(names, ["web.service", "apps.slice", "a.b.service"]);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["corralctl", "logs", "db"]).unwrap();
        assert!(matches!(cli.command, Command::Logs { ref name, .. } if name == "db.service"));
        let cli = Cli::try_parse_from([
            "corralctl",
            "run",
            "--name",
            "job",
            "--slice",
            "batch",
            "--",
            "/bin/true",
        ])
        .unwrap();
        match cli.command {
            Command::Run { name, slice, .. } => {
                assert_eq!(name.as_deref(), Some("job.service"));
                assert_eq!(slice.as_deref(), Some("batch.slice"));
            }
            other => panic!("{other:?}"),
        }
        // ".service" alone has no stem: left for the daemon to refuse by name.
        assert_eq!(with_kind(".service", Kind::Service), ".service");
        // A scope keeps its kind.
        assert_eq!(with_kind("c1.scope", Kind::Service), "c1.scope");
        assert_eq!(with_kind("web", Kind::Service), "web.service");
    }
}
