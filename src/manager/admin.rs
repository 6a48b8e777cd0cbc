//! The manager's answers to administrative requests: transient units, enable/disable, unit
//! files, reload, and the machine's end.
//!
//! Decisions:
//! - a transient unit is validated exactly like a file (`RUNTIME/units/NAME.toml` names it in
//!   messages) and written there, so it survives `Reload` but not a reboot; a name that a
//!   unit file already uses is refused; it is 0600 (its text may hold secrets), drop-ins
//!   0644, whatever the umask ([`crate::files`]);
//! - `EnableUnit` writes `NAME.KIND.d/50-autostart.toml` (`autostart = true`) in the first
//!   unit directory; `DisableUnit` removes it, and writes `autostart = false` there when the
//!   unit's own file still says true;
//! - `Reload` keeps the state of every unit that exists after it; a running unit whose file
//!   is gone keeps running with its old definition until it stops; a running unit whose
//!   limits changed gets the difference written to its cgroup.

use std::path::PathBuf;

use super::executor::Manager;
use super::request::{JobKind, Notification, RequestError, ShutdownKind};
use super::state::ActiveState;
use crate::files::{self, write_file};
use crate::unit::{Kind, LoadState, UnitName, load_path, parse_unit};

/// The drop-in `EnableUnit` writes.
pub const AUTOSTART_DROPIN: &str = "50-autostart.toml";

impl Manager {
    pub(super) fn start_transient(
        &mut self,
        name: UnitName,
        toml: &str,
    ) -> Result<u32, RequestError> {
        let dir = self.paths.runtime_dir.join("units");
        let path = dir.join(format!("{name}.toml"));
        if let Some(e) = self.units.units.get(&name) {
            let transient = e.files.first().is_some_and(|f| f.starts_with(&dir));
            let running = !matches!(
                self.engine.active_sub(&name).0,
                ActiveState::Inactive | ActiveState::Failed
            );
            if !transient || running {
                return Err(RequestError::InvalidUnit(format!(
                    "{name} already exists{}",
                    if running { " and is running" } else { "" }
                )));
            }
        }
        if name.kind() != Kind::Service {
            return Err(RequestError::InvalidUnit(format!(
                "{name}: only services can be transient"
            )));
        }
        let unit = parse_unit(&name, &path, toml).map_err(|diags| {
            RequestError::InvalidUnit(
                diags
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        write_file(&path, toml, files::PRIVATE_MODE)
            .map_err(|e| RequestError::JobFailed(format!("writing {}: {e}", path.display())))?;
        let added = self.units.insert(unit);
        // A failed transient unit started again gets a fresh state.
        self.engine.forget(&name);
        self.engine.sync_units(&self.units);
        for added in added {
            let _ = self.notify.send(Notification::UnitAdded(added));
        }
        self.queue_job(name, JobKind::Start)
    }

    pub(super) fn enable(&mut self, name: &UnitName, enable: bool) -> Result<(), RequestError> {
        let entry = self
            .units
            .units
            .get(name)
            .ok_or_else(|| RequestError::NoSuchUnit(name.clone()))?;
        if name.kind() != Kind::Service {
            return Err(RequestError::InvalidUnit(format!(
                "{name} is a slice: slices start with the units inside them"
            )));
        }
        let LoadState::Loaded(unit) = &entry.state else {
            return Err(RequestError::InvalidUnit(format!(
                "{name} has errors in its unit files"
            )));
        };
        let dir = self
            .paths
            .unit_dirs
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from("/etc/corral/units"));
        let file = dir.join(format!("{name}.d")).join(AUTOSTART_DROPIN);
        let ours = unit.files.contains(&file);
        let from_files = unit.service.as_ref().is_some_and(|s| s.autostart);
        let result = if enable {
            write_file(
                &file,
                "# Written by corrald for EnableUnit / corralctl enable.\n[unit]\nautostart = true\n",
                files::DROPIN_MODE,
            )
        } else if from_files && !ours {
            // The unit's own file asks for autostart: only an overriding drop-in disables it.
            write_file(
                &file,
                "# Written by corrald for DisableUnit / corralctl disable.\n[unit]\nautostart = false\n",
                files::DROPIN_MODE,
            )
        } else {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        };
        result.map_err(|e| RequestError::JobFailed(format!("{}: {e}", file.display())))?;
        let exists = file.exists();
        if let Some(entry) = self.units.units.get_mut(name) {
            entry.files.retain(|f| *f != file);
            if exists {
                entry.files.push(file.clone());
            }
            if let LoadState::Loaded(u) = &mut entry.state {
                u.files = entry.files.clone();
                if let Some(s) = u.service.as_mut() {
                    s.autostart = enable;
                }
            }
        }
        Ok(())
    }

    pub(super) fn unit_files(
        &self,
        name: &UnitName,
    ) -> Result<Vec<(String, String)>, RequestError> {
        let entry = self
            .units
            .units
            .get(name)
            .ok_or_else(|| RequestError::NoSuchUnit(name.clone()))?;
        Ok(entry
            .files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f)
                    .unwrap_or_else(|e| format!("# cannot read {}: {e}\n", f.display()));
                (f.display().to_string(), text)
            })
            .collect())
    }

    /// Re-reads every unit file. Returns every error as (file, message).
    pub(super) fn reload(&mut self) -> Vec<(String, String)> {
        let mut fresh = load_path(&crate::unit::SearchPath(self.paths.unit_dirs.clone()));
        // A reload re-reads what the tree remembers of the cgroups too.
        self.tree.forget();
        let errors: Vec<(String, String)> = fresh
            .errors()
            .map(|d| (d.location.file.display().to_string(), d.to_string()))
            .collect();
        // Running units whose files are gone keep their old definition until they stop.
        let old = std::mem::take(&mut self.units);
        let before: std::collections::HashSet<UnitName> = old.units.keys().cloned().collect();
        for (name, entry) in old.units {
            let running = !matches!(
                self.engine.active_sub(&name).0,
                ActiveState::Inactive | ActiveState::Failed
            );
            if let std::collections::btree_map::Entry::Vacant(gone) =
                fresh.units.entry(name.clone())
            {
                if running {
                    gone.insert(entry);
                } else {
                    self.engine.forget(&name);
                    let _ = self.notify.send(Notification::UnitRemoved(name));
                }
                continue;
            }
            // Limits changed on a live cgroup: write the difference now.
            let (Some(before), Some(after)) = (entry.unit(), fresh.get(&name)) else {
                continue;
            };
            if before.resources != after.resources && self.live_cgroup(&name).is_some() {
                let rel = after.cgroup_path();
                match self
                    .tree
                    .update(&rel, &before.resources, &after.resources, &self.host)
                {
                    Ok(diff) => {
                        for c in &diff.changes {
                            tracing::info!(unit = %name, "reload: {c}");
                        }
                    }
                    Err(e) => tracing::warn!(unit = %name, "reload: {e}"),
                }
            }
        }
        fresh.graph = crate::unit::Graph::new(fresh.loaded());
        for name in fresh.units.keys() {
            // Every unit that appeared, of any kind or load state: the bus serves its object,
            // and tells callers it exists, from this announcement.
            if !before.contains(name) {
                let _ = self.notify.send(Notification::UnitAdded(name.clone()));
            }
        }
        self.units = fresh;
        self.engine.sync_units(&self.units);
        for (file, err) in &errors {
            tracing::warn!("reload: {file}: {err}");
        }
        release_freed_memory();
        errors
    }

    pub(super) fn request_shutdown(&mut self, how: ShutdownKind) -> Result<(), RequestError> {
        if std::process::id() != 1 && matches!(how, ShutdownKind::PowerOff | ShutdownKind::Reboot) {
            return Err(RequestError::NotSupported(
                "PowerOff and Reboot are for corrald as PID 1".into(),
            ));
        }
        if how == ShutdownKind::Reexec {
            super::reexec::check().map_err(RequestError::NotSupported)?;
        }
        self.shutdown = Some(how);
        Ok(())
    }
}

/// Gives the heap's free memory back to the kernel. Loading unit files leaves megabytes of
/// freed temporaries (parse trees, diagnostics, the old unit set of a reload) that glibc keeps
/// in its arenas: with 10 000 units about 7 MB stayed resident; a client connection's unit
/// objects left as much again once it closed (docs/PERFORMANCE.md finding 7). Called after
/// loading, after a reload and when a private-socket client leaves; elsewhere glibc's own
/// trimming is enough.
pub(crate) fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it is safe to call at
    // any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
