//! Surviving a restart of the daemon (DESIGN §1): the manager keeps `RUNTIME/state` — each
//! running service's main PID and counters — and a daemon that starts and finds services of
//! its units still running in its tree adopts them: same PIDs, no restart.
//!
//! After a crash the services are no longer our children (they were reparented to whoever
//! reaps above us), so their exit can't be reaped: each adopted main process is watched with a
//! pidfd, and its exit status can't be known — it counts as a failure for `restart =
//! "on-failure"`, as the design says. A unit whose main process is gone but whose cgroup still
//! has processes is adopted without one (the cgroup's emptying is still seen).
//!
//! After a re-exec ([`super::reexec`]) the services are still our children: their exits are
//! reaped as usual, and their log relays are resumed on the pipes the old daemon handed on.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::executor::Manager;
use super::state::{ActiveState, SubState};
use crate::unit::UnitName;

/// What is remembered of one running service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub main_pid: Option<u32>,
    pub n_restarts: u32,
    /// Microseconds since the epoch.
    pub active_enter: u64,
}

/// The state file's content: unit name → what to remember.
pub type SavedState = BTreeMap<String, Saved>;

/// The JSON of a [`SavedState`] holding `entries`, which come sorted by name (the manager's
/// tables are), serialised as they come: no map of copied names is built first. The file is
/// written once per turn of the event loop while services start, and holds every running one:
/// building the map made each write cost ~2000 instructions per running service.
fn saved_json<'a>(entries: impl Iterator<Item = (&'a str, Saved)>, hint: usize) -> Vec<u8> {
    struct Entries<I>(std::cell::Cell<Option<I>>);
    impl<'a, I: Iterator<Item = (&'a str, Saved)>> Serialize for Entries<I> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.take().into_iter().flatten())
        }
    }
    let mut out = Vec::with_capacity(64 * hint.min(1 << 16));
    // Writing JSON of strings and numbers into a Vec can't fail.
    let _ = serde_json::to_writer(&mut out, &Entries(std::cell::Cell::new(Some(entries))));
    out
}

impl Manager {
    /// The state file's path.
    fn state_path(&self) -> std::path::PathBuf {
        self.paths.runtime_dir.join("state")
    }

    /// Writes `RUNTIME/state` if something it holds changed during this turn of the event
    /// loop ([`Manager::state_dirty`]): a service started or stopped running, its main process
    /// or restart count changed, it became active. Not on every transition: the file holds
    /// every running service, and writing it twice per start and twice per stop made a burst
    /// of starts O(n²) (docs/PERFORMANCE.md finding 5).
    pub(super) fn flush_state(&mut self) {
        if std::mem::take(&mut self.state_dirty) {
            self.save_state();
        }
    }

    /// Writes `RUNTIME/state` now.
    pub(super) fn save_state(&self) {
        let running = self.states.iter().filter_map(|(n, s)| {
            let (main_pid, n_restarts) = s.saved_part()?;
            let active_enter = self
                .active_enter
                .get(n)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as u64);
            Some((
                n.as_str(),
                Saved {
                    main_pid,
                    n_restarts,
                    active_enter,
                },
            ))
        });
        let text = saved_json(running, self.states.len());
        if let Err(e) = super::admin::write_file(&self.state_path(), &text) {
            tracing::warn!("saving {}: {e}", self.state_path().display());
        }
    }

    /// Adopts every service of ours still running in our tree. Returns the adopted units.
    pub fn adopt(&mut self) -> Vec<UnitName> {
        let saved: SavedState = std::fs::read_to_string(self.state_path())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let names: Vec<UnitName> = self.states.keys().cloned().collect();
        let mut adopted = Vec::new();
        for name in names {
            let Some(cg) = self.live_cgroup(&name) else {
                continue;
            };
            let procs = cg.procs().unwrap_or_default();
            // A delegated unit's processes live below it; populated covers the subtree.
            if procs.is_empty() && !cg.is_populated().unwrap_or(false) {
                continue;
            }
            let remembered = saved.get(name.as_str()).cloned().unwrap_or_default();
            let main = remembered
                .main_pid
                .filter(|p| procs.contains(p) || self.in_subtree_of(&name, *p));
            if let Err(e) = self.watch(&name) {
                tracing::warn!(unit = %name, "watching the adopted cgroup: {e}");
            }
            match main {
                // After a re-exec the services are still our children: their exits are reaped
                // with the real status, as before.
                Some(pid) if is_our_child(pid) => {
                    self.pids.insert(pid, name.clone());
                }
                Some(pid) => {
                    match crate::process::pidfd_open(nix::unistd::Pid::from_raw(pid as i32)) {
                        Ok(fd) => {
                            self.pids.insert(pid, name.clone());
                            self.watch_pidfd(pid, fd);
                        }
                        Err(e) => tracing::warn!(unit = %name, "pidfd of {pid}: {e}"),
                    }
                }
                None => {}
            }
            if let Some(read) = self.inherited_relays.remove(name.as_str())
                && let Err(e) = super::logs::resume_relay(
                    &self.paths.log_dir,
                    name.as_str(),
                    read,
                    &self.relays,
                )
            {
                tracing::warn!(unit = %name, "resuming its log: {e}");
            }
            if let Some(st) = self.states.get_mut(&name) {
                st.adopt(main, remembered.n_restarts);
            }
            let since =
                std::time::UNIX_EPOCH + std::time::Duration::from_micros(remembered.active_enter);
            self.active_enter.insert(name.clone(), since);
            // Its slices exist, with it in them.
            let mut cur = self.units.get(&name).and_then(|u| u.slice());
            while let Some(s) = cur {
                cur = s.parent_slice();
                self.live_slices.insert(s);
            }
            tracing::info!(
                unit = %name,
                "adopted: still running{}",
                main.map_or_else(|| " (main process unknown)".to_string(), |p| format!(" as {p}"))
            );
            adopted.push(name);
        }
        // Pipes of services that are gone: closed.
        self.inherited_relays.clear();
        self.save_state();
        adopted
    }

    /// Whether `pid` is in the unit's cgroup or below it (a delegated unit's main process
    /// lives in its init.scope).
    fn in_subtree_of(&self, name: &UnitName, pid: u32) -> bool {
        let Some(unit) = self.units.get(name) else {
            return false;
        };
        let ours = self.control_group(&unit.cgroup_path());
        std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
            .is_some_and(|theirs| theirs == ours || theirs.starts_with(&format!("{ours}/")))
    }

    /// A task that reports when an adopted (not our child) process exits.
    fn watch_pidfd(&self, pid: u32, fd: OwnedFd) {
        let tx: mpsc::UnboundedSender<u32> = self.adopted_exits.clone();
        tokio::spawn(async move {
            // SAFETY: the AsyncFd owns the pidfd for its whole life.
            let afd = match unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            } {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("watching pid {pid}: {}", std::io::Error::from(e));
                    return;
                }
            };
            // A pidfd polls readable once its process has exited.
            let _ = afd.readable().await;
            let _ = tx.send(pid);
        });
    }
}

/// Whether `pid`'s parent is this process (`/proc/PID/stat`, field 4, after the command name
/// in parentheses, which may itself hold any character).
fn is_our_child(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = &stat[stat.rfind(')')? + 1..];
            after.split_whitespace().nth(1)?.parse::<u32>().ok()
        })
        == Some(std::process::id())
}

impl super::state::ServiceState {
    /// What the state file holds of this service: nothing while it is not running, else its
    /// main process and restart count.
    pub(super) fn saved_part(&self) -> Option<(Option<u32>, u32)> {
        (!matches!(self.active, ActiveState::Inactive | ActiveState::Failed))
            .then_some((self.main_pid, self.n_restarts))
    }

    /// The state of a service found running at start: active, with that main process.
    pub fn adopt(&mut self, main_pid: Option<u32>, n_restarts: u32) {
        self.active = ActiveState::Active;
        self.sub = SubState::Running;
        self.main_pid = main_pid;
        self.n_restarts = n_restarts;
        self.active_since = Some(std::time::Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_reads_as_the_map_it_stands_for() {
        let saved = |pid, n, at| Saved {
            main_pid: pid,
            n_restarts: n,
            active_enter: at,
        };
        let entries = [
            ("a\"quoted\".service", saved(Some(7), 0, 1)),
            ("b.service", saved(None, 3, 0)),
            (
                "web@1.service",
                saved(Some(4_000_000), 1, 1_700_000_000_000_000),
            ),
        ];
        let map: SavedState = entries
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect();
        let text = saved_json(entries.iter().cloned(), 1);
        assert_eq!(text, serde_json::to_vec(&map).unwrap());
        assert_eq!(serde_json::from_slice::<SavedState>(&text).unwrap(), map);
        assert_eq!(saved_json(std::iter::empty(), 0), b"{}");
    }
}
