//! Removing the cgroups of stopped units and slices, without ever waiting on the loop, nor
//! walking a subtree there: the loop's removals are one `rmdir` each.
//!
//! - A cgroup that still holds processes (kill-mode = process) or whose `rmdir` meets EBUSY
//!   stays, watched, and goes when its `cgroup.events` next says empty; the slices whose
//!   removal it held up are tried again then ([`Removals::unremoved`]).
//! - A delegated unit's subtree is the nested manager's: its size is someone else's (a user
//!   can make thousands of cgroups there), so when it has children it is removed bottom-up on
//!   a blocking thread (at a stop, or for an empty scope found at start-up) and the outcome comes back on a channel, like a launch's. Until then a
//!   start of that unit waits ([`Removals::deferred`]): a launch into a subtree being removed
//!   would race the thread's `rmdir`s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;

use super::Manager;
use crate::cgroup::{CgroupError, tree};
use crate::manager::engine::Input;
use crate::manager::engine::service::ActiveState;
use crate::unit::{Kind, UnitName};

/// The outcome of a subtree removed off the loop.
pub(super) struct Removed {
    unit: UnitName,
    /// The unit's cgroup, relative to the root (the unit may be unloaded meanwhile).
    rel: PathBuf,
    result: Result<(), CgroupError>,
}

/// What waits for a unit's subtree to be gone.
enum Deferred {
    Spawn { unit: UnitName, seq: u64 },
    AttachScope(UnitName),
}

pub(super) struct Removals {
    tx: mpsc::UnboundedSender<Removed>,
    rx: Option<mpsc::UnboundedReceiver<Removed>>,
    /// Units whose delegated subtree a blocking thread is removing, with its path relative to
    /// the root: a slice above one waits for it (its own removal would walk into it).
    pub(super) in_flight: BTreeMap<UnitName, PathBuf>,
    deferred: Vec<Deferred>,
    /// Cgroups of stopped units and slices that could not be removed yet, by path: a unit's
    /// still held processes when it stopped, a slice still held such a unit's cgroup.
    pub(super) unremoved: BTreeMap<UnitName, PathBuf>,
}

impl Removals {
    pub(super) fn new() -> Removals {
        let (tx, rx) = mpsc::unbounded_channel();
        Removals {
            tx,
            rx: Some(rx),
            in_flight: BTreeMap::new(),
            deferred: Vec::new(),
            unremoved: BTreeMap::new(),
        }
    }

    pub(super) fn take_outcomes(&mut self) -> std::io::Result<mpsc::UnboundedReceiver<Removed>> {
        self.rx
            .take()
            .ok_or_else(|| std::io::Error::other("the manager runs once"))
    }

    /// Holds a launch of `unit` back while its subtree is being removed; `false`: go ahead.
    /// Only the unit's latest launch waits (an earlier one is stale by then).
    pub(super) fn defer_spawn(&mut self, unit: &UnitName, seq: u64) -> bool {
        let wait = self.in_flight.contains_key(unit);
        if wait {
            self.deferred
                .retain(|d| !matches!(d, Deferred::Spawn { unit: u, .. } if u == unit));
            self.deferred.push(Deferred::Spawn {
                unit: unit.clone(),
                seq,
            });
        }
        wait
    }

    /// As [`Self::defer_spawn`], for a scope's processes moved in (once).
    pub(super) fn defer_attach(&mut self, unit: &UnitName) -> bool {
        let wait = self.in_flight.contains_key(unit);
        if wait {
            self.deferred
                .retain(|d| !matches!(d, Deferred::AttachScope(u) if u == unit));
            self.deferred.push(Deferred::AttachScope(unit.clone()));
        }
        wait
    }

    /// The cgroup is in use again: it goes when the unit next stops.
    pub(super) fn in_use(&mut self, unit: &UnitName) {
        self.unremoved.remove(unit);
    }

    /// Whether a subtree at or below `rel` is being removed off the loop.
    fn removing_below(&self, rel: &Path) -> bool {
        self.in_flight.values().any(|p| p.starts_with(rel))
    }
}

impl Manager {
    /// Removes a stopped unit's cgroup, keeping what it showed last (the counters a failed
    /// unit is read for). With kill-mode = process, processes may stay behind (a delegated
    /// manager's services): the cgroup and its watch stay with them.
    pub(in crate::manager) fn remove_cgroup(&mut self, name: &UnitName) {
        if self.removals.in_flight.contains_key(name) {
            return;
        }
        let rel = self.cgroup_path(name);
        let Ok(cg) = self.tree.cgroup(&rel) else {
            return;
        };
        if !self.cgroup_empty(name) {
            tracing::info!(unit = %name, "processes remain in the unit's cgroup: it goes when they do");
            self.removals.unremoved.insert(name.clone(), rel);
            return;
        }
        // What it showed is kept to be read while the unit stays loaded: a transient unit
        // that ended cleanly is collected at the end of this turn, unread.
        let collected = self.collectable(name);
        if !collected && cg.exists() {
            self.last_usage
                .insert(name.clone(), super::properties::usage_of(&cg));
        }
        let delegated = self.units.get(name).is_some_and(|u| u.delegated());
        let removed = if delegated {
            // Childless: one rmdir. Otherwise the nested manager's cgroups, as many as it
            // made: off the loop.
            match cg.remove() {
                Err(e) if e.is_busy() && cg.exists() => {
                    self.remove_off_loop(name, rel, cg.path().to_path_buf());
                    return;
                }
                r => r,
            }
        } else {
            // Corrald makes no cgroup below a unit's own: one rmdir.
            self.tree.remove_childless(&rel)
        };
        self.on_removed(name, rel, removed);
    }

    /// Starts the bottom-up removal of a delegated subtree on a blocking thread.
    pub(in crate::manager) fn remove_off_loop(
        &mut self,
        name: &UnitName,
        rel: PathBuf,
        path: PathBuf,
    ) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No loop to keep free (a test without a runtime): here and now.
            self.on_removed(name, rel, tree::remove_subtree(&path));
            return;
        };
        self.removals.in_flight.insert(name.clone(), rel.clone());
        let tx = self.removals.tx.clone();
        let unit = name.clone();
        rt.spawn_blocking(move || {
            let result = tree::remove_subtree(&path);
            let _ = tx.send(Removed { unit, rel, result });
        });
    }

    /// A subtree removed off the loop: its outcome, then what waited for it.
    pub(super) fn on_subtree_removed(&mut self, removed: Removed) {
        let Removed { unit, rel, result } = removed;
        self.removals.in_flight.remove(&unit);
        self.on_removed(&unit, rel, result);
        let (ready, waiting): (Vec<Deferred>, Vec<Deferred>) =
            std::mem::take(&mut self.removals.deferred)
                .into_iter()
                .partition(|d| match d {
                    Deferred::Spawn { unit: u, .. } | Deferred::AttachScope(u) => *u == unit,
                });
        self.removals.deferred = waiting;
        for d in ready {
            match d {
                // Stopped meanwhile: that launch is not wanted any more.
                Deferred::Spawn { unit, seq } if !self.engine.current_launch(&unit, seq) => {}
                Deferred::Spawn { unit, seq } => {
                    self.removals.in_use(&unit);
                    if let Err(e) = self.launch_main(&unit, seq) {
                        tracing::error!(unit = %unit, "{e}");
                        self.feed(Input::SpawnFailed { unit, seq });
                    }
                }
                Deferred::AttachScope(unit)
                    if self.engine.active_sub(&unit).0 != ActiveState::Activating => {}
                Deferred::AttachScope(unit) => {
                    self.removals.in_use(&unit);
                    let ok = self.attach_scope(&unit);
                    self.feed(Input::ScopeAttached { unit, ok });
                }
            }
        }
    }

    fn on_removed(&mut self, name: &UnitName, rel: PathBuf, removed: Result<(), CgroupError>) {
        match removed {
            Ok(()) => {
                self.watches.unwatch(name);
                self.removals.unremoved.remove(name);
                // A slice above it may have waited for it.
                self.remove_unremoved_slices();
            }
            // A process moved in (a delegatee's) or a child cgroup made since the read: the
            // watch stays, the next "empty" tries again.
            Err(e) if e.is_busy() => {
                tracing::info!(unit = %name, "{e}: tried again when it is empty");
                self.removals.unremoved.insert(name.clone(), rel);
            }
            Err(e) => {
                self.watches.unwatch(name);
                self.removals.unremoved.remove(name);
                tracing::warn!(unit = %name, "{e}");
            }
        }
    }

    /// A slice stopped: its cgroup goes, or waits for the units' cgroups it still holds.
    pub(super) fn remove_slice(&mut self, name: &UnitName) {
        let rel = self.cgroup_path(name);
        let busy = if self.removals.removing_below(&rel) {
            String::from("a unit's subtree is being removed")
        } else {
            match self.tree.remove_childless(&rel) {
                Ok(()) => return,
                Err(e) if e.is_busy() => e.to_string(),
                Err(e) => {
                    tracing::warn!(unit = %name, "{e}");
                    return;
                }
            }
        };
        tracing::info!(unit = %name, "the slice's cgroup goes once its units' are removed ({busy})");
        self.removals.unremoved.insert(name.clone(), rel);
    }

    /// A unit's cgroup the manager kept (processes remained) said empty: it goes now, unless
    /// the unit is in use again (then its own stop removes it).
    pub(super) fn remove_if_unremoved(&mut self, name: &UnitName) {
        if self.removals.unremoved.contains_key(name)
            && !self.engine.is_busy(name)
            && matches!(
                self.engine.active_sub(name).0,
                ActiveState::Inactive | ActiveState::Failed
            )
        {
            self.remove_cgroup(name);
            // Outside a turn: what it read about emptiness is not kept for the next one.
            self.empty_this_turn.clear();
        }
    }

    /// Tries again the slices whose cgroup held a unit's, deepest first; a slice started
    /// again meanwhile is not one of them any more.
    fn remove_unremoved_slices(&mut self) {
        let mut slices: Vec<(UnitName, PathBuf)> = self
            .removals
            .unremoved
            .iter()
            .filter(|(n, p)| {
                n.kind() == Kind::Slice
                    && !self.engine.is_live_slice(n)
                    && !self.removals.removing_below(p)
            })
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        slices.sort_by_key(|(_, p)| std::cmp::Reverse(p.components().count()));
        for (name, rel) in slices {
            match self.tree.remove_childless(&rel) {
                Ok(()) => {
                    self.removals.unremoved.remove(&name);
                }
                Err(e) if e.is_busy() => {}
                Err(e) => {
                    self.removals.unremoved.remove(&name);
                    tracing::warn!(unit = %name, "{e}");
                }
            }
        }
    }
}
