//! Surviving a restart of the daemon (DESIGN §1): the manager keeps `RUNTIME/state` — each
//! running service's main PID and counters — and a daemon that starts and finds services of
//! its units still running in its tree adopts them: same PIDs, no restart.
//!
//! After a crash the services are no longer our children (they were reparented to whoever
//! reaps above us), so their exit can't be reaped: each adopted main process is watched with a
//! pidfd, and its exit status can't be known — it counts as a failure for `restart =
//! "on-failure"`, as the design says. A unit the state file doesn't name a main process for
//! (started in the turn a crash cut short) whose cgroup holds exactly one process is adopted
//! with that one as its main process. A unit whose main process is gone but whose cgroup still
//! has processes is adopted without one (the cgroup's emptying is still seen). A unit's cgroup
//! found empty is removed: a start the crash cut short made it.
//!
//! After a re-exec ([`super::reexec`]) the services are still our children: their exits are
//! reaped as usual, and their log relays are resumed on the pipes the old daemon handed on.
//!
//! Scopes and slices made over D-Bus (DESIGN §9) have no file to be loaded from again: the state
//! file also holds their definitions ([`Made`]) while they live, and they are made again first —
//! a scope only if its cgroup still holds processes (then adopted, running), a slice only if
//! its cgroup is still there — so that a re-exec (the upgrade path, the only one as PID 1) keeps
//! every container's scope and pod slice, as it keeps services.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::engine::Input;
use super::executor::Manager;
use super::request::Notification;
use super::state::ActiveState;
use crate::limits::{RawValue, Resources};
use crate::unit::{Kind, Scope, Unit, UnitName};

/// What is remembered of one running service (or live unit made over D-Bus).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub main_pid: Option<u32>,
    pub n_restarts: u32,
    /// Microseconds since the epoch.
    pub active_enter: u64,
    /// A scope's or slice's definition, for a unit made over D-Bus (absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made: Option<Made>,
}

/// The definition of a scope or slice made over D-Bus, as the state file keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Made {
    pub description: String,
    /// A scope's slice; empty for a slice.
    #[serde(default)]
    pub slice: String,
    #[serde(default)]
    pub delegate: bool,
    #[serde(default)]
    pub stop_timeout_us: u64,
    /// `[resources]` keys and values in the unit-file syntax.
    #[serde(default)]
    pub limits: Vec<(String, String)>,
}

impl Made {
    fn of(unit: &Unit) -> Made {
        Made {
            description: unit.description.clone(),
            slice: unit
                .scope
                .as_ref()
                .map(|s| s.slice.to_string())
                .unwrap_or_default(),
            delegate: unit.delegated(),
            stop_timeout_us: unit.scope.as_ref().map_or(0, |s| {
                s.stop_timeout.as_micros().min(u64::MAX as u128) as u64
            }),
            limits: unit
                .resources
                .to_pairs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    /// The unit again, for `name`; `None` if the file's record makes no such unit.
    fn unit(&self, name: &UnitName) -> Option<Unit> {
        let mut resources = Resources::default();
        resources
            .set_all(
                self.limits
                    .iter()
                    .map(|(k, v)| (k.as_str(), RawValue::Str(v.as_str()))),
            )
            .ok()?;
        let scope = match name.kind() {
            Kind::Scope => Some(Box::new(Scope {
                slice: UnitName::parse(&self.slice)
                    .ok()
                    .filter(|s| s.kind() == Kind::Slice)?,
                pids: Vec::new(),
                delegate: self.delegate,
                stop_timeout: std::time::Duration::from_micros(self.stop_timeout_us),
            })),
            Kind::Slice => None,
            Kind::Service => return None,
        };
        Some(Unit {
            name: name.clone(),
            description: self.description.clone(),
            files: Vec::new(),
            resources,
            service: None,
            scope,
            transient: true,
        })
    }
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

/// The state file as start-up reads it. One that is not a whole JSON map of the right shape
/// (truncated, corrupted, not UTF-8) is an empty state: every service still running is then
/// adopted without a main process, from its cgroup alone.
pub fn parse_state(bytes: &[u8]) -> SavedState {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

impl Manager {
    /// The state file's path.
    fn state_path(&self) -> std::path::PathBuf {
        self.paths.runtime_dir.join("state")
    }

    /// Writes `RUNTIME/state` if something it holds changed during this turn of the event
    /// loop (the engine says so): a service started or stopped running, its main process
    /// or restart count changed, it became active. Not on every transition: the file holds
    /// every running service, and writing it twice per start and twice per stop made a burst
    /// of starts O(n²) (docs/PERFORMANCE.md finding 5).
    pub(super) fn flush_state(&mut self) {
        if self.engine.take_dirty() {
            self.save_state();
        }
    }

    /// Writes `RUNTIME/state` now.
    pub(super) fn save_state(&self) {
        let since = |n: &UnitName| {
            self.engine
                .active_enter(n)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_micros() as u64)
        };
        let running = self.engine.services().filter_map(|(n, s)| {
            let (main_pid, n_restarts) = s.saved_part()?;
            Some((
                n.as_str(),
                Saved {
                    main_pid,
                    n_restarts,
                    active_enter: since(n),
                    made: None,
                },
            ))
        });
        // Scopes that are up and live slices made over D-Bus, with their definitions.
        let up_scopes = self
            .engine
            .scopes()
            .filter(|(_, s)| !matches!(s.active, ActiveState::Inactive | ActiveState::Failed))
            .map(|(n, _)| n);
        let made_slices = self
            .engine
            .live_slices()
            .filter(|n| self.units.get(n).is_some_and(|u| u.transient));
        let made = up_scopes.chain(made_slices).filter_map(|n| {
            let unit = self.units.get(n)?;
            Some((
                n.as_str(),
                Saved {
                    active_enter: since(n),
                    made: Some(Made::of(unit)),
                    ..Saved::default()
                },
            ))
        });
        let text = saved_json(running.chain(made), 64);
        // The same text as the last one written (a turn whose changes cancel out, a start
        // still launching): the file already says it.
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            h.finish()
        };
        if self.saved_digest.get() == Some(digest) {
            return;
        }
        match crate::files::write_file(&self.state_path(), &text, crate::files::PRIVATE_MODE) {
            Ok(()) => self.saved_digest.set(Some(digest)),
            Err(e) => {
                self.saved_digest.set(None);
                tracing::warn!("saving {}: {e}", self.state_path().display());
            }
        }
    }

    /// Adopts every service of ours still running in our tree, and the scopes and slices made
    /// over D-Bus that the state file holds and the tree still has. Returns the adopted units.
    pub fn adopt(&mut self) -> Vec<UnitName> {
        let saved = std::fs::read(self.state_path())
            .map(|bytes| parse_state(&bytes))
            .unwrap_or_default();
        let mut adopted = self.adopt_made(&saved);
        let names: Vec<UnitName> = self.engine.services().map(|(n, _)| n.clone()).collect();
        for name in names {
            let Some(cg) = self.live_cgroup(&name) else {
                continue;
            };
            // A delegated unit's processes live below it; populated covers the subtree.
            if !cg.is_populated().unwrap_or(false) {
                // A start the end of the last daemon cut short (between making the cgroup and
                // cloning into it): nothing would remove it until the unit ran again.
                self.remove_cgroup(&name);
                continue;
            }
            let remembered = saved.get(name.as_str()).cloned().unwrap_or_default();
            // The remembered main process, if it is still in the unit's subtree — held by a
            // pidfd from the moment that is checked.
            let ours = self.control_group(&self.cgroup_path(&name));
            let delegated = self
                .units
                .get(&name)
                .and_then(|u| u.service.as_ref())
                .is_some_and(|s| s.delegate);
            let main = remembered
                .main_pid
                .or_else(|| sole_process(&cg, delegated))
                .and_then(|pid| Some((pid, super::executor::pidfd_in(&ours, pid)?)));
            if let Err(e) = self.watch(&name) {
                tracing::warn!(unit = %name, "watching the adopted cgroup: {e}");
            }
            let main_pid = main.as_ref().map(|(pid, _)| *pid);
            match main {
                // After a re-exec the services are still our children: their exits are reaped
                // with the real status, as before.
                Some((pid, fd)) if is_our_child(pid) => self.hold_pidfd(pid, fd),
                Some((pid, fd)) => self.watch_adopted(pid, fd),
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
            let since =
                std::time::UNIX_EPOCH + std::time::Duration::from_micros(remembered.active_enter);
            self.feed(Input::Adopt {
                unit: name.clone(),
                main_pid,
                n_restarts: remembered.n_restarts,
                active_enter: since,
            });
            tracing::info!(
                unit = %name,
                "adopted: still running{}",
                main_pid.map_or_else(|| " (main process unknown)".to_string(), |p| format!(" as {p}"))
            );
            adopted.push(name);
        }
        // Pipes of services that are gone: closed.
        self.inherited_relays.clear();
        self.save_state();
        adopted
    }

    /// Makes again the scopes and slices made over D-Bus that `saved` holds: slices first
    /// (parents before children), each only if its cgroup is still there; a scope only if its
    /// cgroup still holds processes (an empty one is removed).
    fn adopt_made(&mut self, saved: &SavedState) -> Vec<UnitName> {
        let mut made: Vec<(UnitName, &Saved, Unit)> = saved
            .iter()
            .filter_map(|(n, s)| {
                let name = UnitName::parse(n).ok()?;
                let unit = s.made.as_ref()?.unit(&name)?;
                Some((name, s, unit))
            })
            .collect();
        // Slices before scopes, and a parent slice before its children.
        made.sort_by_key(|(n, _, _)| (n.kind() == Kind::Scope, n.as_str().matches('-').count()));
        let mut adopted = Vec::new();
        for (name, saved, unit) in made {
            if self.units.units.contains_key(&name) && !self.units.units[&name].files.is_empty() {
                // A file of that name appeared meanwhile: the file's unit wins.
                continue;
            }
            let rel = unit.cgroup_path();
            let Ok(cg) = self.tree.cgroup(&rel) else {
                continue;
            };
            if !cg.exists() {
                continue;
            }
            if name.kind() == Kind::Scope && !cg.is_populated().unwrap_or(false) {
                // A delegated scope's subtree is its manager's, as many cgroups as it made:
                // removed off the loop, as at a stop.
                match self.tree.remove_childless(&rel) {
                    Err(e) if e.is_busy() && cg.exists() => {
                        self.remove_off_loop(&name, rel, cg.path().to_path_buf());
                    }
                    Err(e) => tracing::warn!(unit = %name, "{e}"),
                    Ok(()) => {}
                }
                continue;
            }
            let added = self.units.insert(unit);
            if let Some(u) = self.units.get(&name) {
                self.engine.track(u);
            }
            for a in added {
                let _ = self.notify.send(Notification::UnitAdded(a));
            }
            if name.kind() == Kind::Scope
                && let Err(e) = self.watch(&name)
            {
                tracing::warn!(unit = %name, "watching the adopted scope: {e}");
            }
            let since =
                std::time::UNIX_EPOCH + std::time::Duration::from_micros(saved.active_enter);
            self.feed(Input::AdoptMade {
                unit: name.clone(),
                active_enter: since,
            });
            tracing::info!(unit = %name, "adopted: made over D-Bus, still there");
            adopted.push(name);
        }
        adopted
    }
}

/// The main process of a unit the state file doesn't name one for: the only process in its
/// cgroup, if there is exactly one (a delegated unit's processes are its manager's business).
/// The state file is written once per turn of the loop, so a service started in the turn a
/// crash cut short is running but not in it; with one process, that process is what was
/// started. (systemd guesses the same way, from the process whose parent is the manager.)
fn sole_process(cg: &crate::cgroup::Cgroup, delegated: bool) -> Option<u32> {
    if delegated {
        return None;
    }
    match cg.procs().ok()?.as_slice() {
        [only] => Some(*only),
        _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sole_process_is_the_main_one_unless_delegated() {
        let fx = crate::cgroup::fixture::Fixture::new();
        let cg = crate::cgroup::Cgroup::new(fx.cgroup("system.slice/a.service"));
        assert_eq!(sole_process(&cg, false), None, "no process");
        fx.write("system.slice/a.service", "cgroup.procs", "4242\n");
        assert_eq!(sole_process(&cg, false), Some(4242));
        assert_eq!(
            sole_process(&cg, true),
            None,
            "a delegated unit's manager decides"
        );
        fx.write("system.slice/a.service", "cgroup.procs", "4242\n4343\n");
        assert_eq!(
            sole_process(&cg, false),
            None,
            "two: which one is not known"
        );
    }

    #[test]
    fn the_state_file_reads_as_the_map_it_stands_for() {
        let saved = |pid, n, at| Saved {
            main_pid: pid,
            n_restarts: n,
            active_enter: at,
            made: None,
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

    /// A scope's and a slice's definitions survive the state file; an older file (no `made`)
    /// still reads, and a record that makes no unit is none.
    #[test]
    fn made_units_come_back_from_the_state_file() {
        let name = UnitName::parse("cri-containerd-c1.scope").unwrap();
        let mut resources = Resources::default();
        resources.set("memory-max", RawValue::Str("64M")).unwrap();
        resources.set("cpu-weight", RawValue::Int(39)).unwrap();
        let unit = Unit {
            name: name.clone(),
            description: "libcontainer container c1".into(),
            files: Vec::new(),
            resources,
            service: None,
            scope: Some(Box::new(Scope {
                slice: UnitName::parse("kubepods-pod1.slice").unwrap(),
                pids: Vec::new(),
                delegate: true,
                stop_timeout: std::time::Duration::from_secs(7),
            })),
            transient: true,
        };
        let saved = Saved {
            made: Some(Made::of(&unit)),
            ..Saved::default()
        };
        let text = serde_json::to_string(&saved).unwrap();
        let back: Saved = serde_json::from_str(&text).unwrap();
        assert_eq!(back.made.unwrap().unit(&name), Some(unit));

        let old: Saved =
            serde_json::from_str(r#"{"main_pid":7,"n_restarts":0,"active_enter":1}"#).unwrap();
        assert_eq!(old.made, None);
        let slice = UnitName::parse("kubepods.slice").unwrap();
        let made = Made::default();
        assert!(
            made.unit(&slice)
                .is_some_and(|u| u.transient && u.scope.is_none())
        );
        // A scope with no slice, or a bad limit, is no unit.
        assert_eq!(made.unit(&name), None);
        let bad = Made {
            slice: "kubepods.slice".into(),
            limits: vec![("memory-max".into(), "lots".into())],
            ..Made::default()
        };
        assert_eq!(bad.unit(&name), None);
    }

    /// What adoption does with an entry read back: a time since the epoch, a main process to
    /// look for. Nothing in it may panic, whatever the numbers.
    fn use_entry(saved: &Saved) {
        let since = std::time::UNIX_EPOCH + std::time::Duration::from_micros(saved.active_enter);
        let _ = since.duration_since(std::time::UNIX_EPOCH);
        let _ = saved.main_pid.map(|p| nix::unistd::Pid::from_raw(p as i32));
    }

    #[test]
    fn a_truncated_or_corrupted_state_file_reads_as_a_usable_state() {
        let entries = [
            (
                "a\"quoted\".service",
                Saved {
                    main_pid: Some(7),
                    n_restarts: 0,
                    active_enter: 1,
                    made: None,
                },
            ),
            (
                "b.service",
                Saved {
                    main_pid: None,
                    n_restarts: 3,
                    active_enter: 0,
                    made: None,
                },
            ),
            (
                "web@1.service",
                Saved {
                    main_pid: Some(4_000_000),
                    n_restarts: 1,
                    active_enter: 1_700_000_000_000_000,
                    made: None,
                },
            ),
            (
                "é€😀.service",
                Saved {
                    main_pid: Some(u32::MAX),
                    n_restarts: u32::MAX,
                    active_enter: u64::MAX,
                    made: None,
                },
            ),
        ];
        let sample = saved_json(entries.iter().cloned(), entries.len());
        let whole: SavedState = entries
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect();
        assert_eq!(parse_state(&sample), whole);
        let check = |bytes: &[u8], what: &str| {
            let state = parse_state(bytes);
            // Either nothing, or every entry but one as written: one byte changes at most one
            // name or one number (two names made equal leave one entry fewer).
            let kept = state
                .iter()
                .filter(|(n, s)| whole.get(*n) == Some(s))
                .count();
            assert!(
                state.is_empty() || (kept + 1 >= whole.len() && state.len() <= whole.len()),
                "{what}: {state:?}"
            );
            state.values().for_each(use_entry);
        };
        for end in 0..sample.len() {
            check(&sample[..end], &format!("truncated at {end}"));
            assert!(parse_state(&sample[..end]).is_empty(), "truncated at {end}");
        }
        let replacements = [
            0x00, 0x01, b' ', b'"', b'\\', b',', b':', b'{', b'}', b'[', b'-', b'+', b'.', b'e',
            b'0', b'9', b'n', b'u', 0x7f, 0xc3, 0xe2, 0xf0, 0xff,
        ];
        let mut corrupted = 0;
        for at in 0..sample.len() {
            for (i, b) in replacements.iter().chain(&[sample[at] ^ 0x20]).enumerate() {
                let mut bytes = sample.clone();
                bytes[at] = *b;
                check(&bytes, &format!("byte {at} set to {b:#04x} (#{i})"));
                corrupted += 1;
            }
            // A byte lost, and one doubled.
            let mut bytes = sample.clone();
            bytes.remove(at);
            check(&bytes, &format!("byte {at} removed"));
            bytes.insert(at, sample[at]);
            bytes.insert(at, sample[at]);
            check(&bytes, &format!("byte {at} doubled"));
        }
        assert!(corrupted > 20 * sample.len());
    }
}
