//! Cgroup events without polling: one inotify instance watching `cgroup.events` (a unit's last
//! process is gone: `populated` 1 → 0) and `memory.events` (`oom_kill` went up) of every watched
//! cgroup.
//!
//! The kernel signals a change of these files as a modify event (kernfs_notify); the event says
//! only "changed", so each one is answered by re-reading the file and comparing with the last
//! value seen. The watcher never blocks: its fd is non-blocking and close-on-exec, and the daemon
//! registers it with its event loop (`AsyncFd` under tokio) and calls
//! [`EventWatcher::read_events`] when it is readable. Tokens are the caller's (e.g. a unit's
//! index); the watcher knows nothing of units.
//!
//! Decisions:
//! - [`EventWatcher::add`] returns the state at the time of adding, so a unit whose processes
//!   died before the watch existed is not missed (the caller checks `populated`);
//! - `memory.events` is watched only if it exists when the cgroup is added (the memory
//!   controller is enabled for every unit before it starts);
//! - one cgroup under one token: inotify gives one watch per inode, so a second token for the
//!   same cgroup is refused rather than silently sharing it;
//! - a removed cgroup (rmdir) drops its watches in the kernel (IN_IGNORED); the token stays
//!   until [`EventWatcher::remove`], which then has nothing left to undo;
//! - on queue overflow every watched cgroup is re-read.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use super::{CgroupError, EVENTS, memory, parse_cgroup_events, read_knob};

/// The caller's name for a watched cgroup.
pub type Token = u64;

/// Something that happened to a watched cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupEvent {
    /// `populated` went from 1 to 0: no process is left in the cgroup or below it.
    Empty { token: Token },
    /// `oom_kill` in `memory.events` went up; `count` is the new total.
    OomKill { token: Token, count: u64 },
}

/// The state of a cgroup when it was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchState {
    pub populated: bool,
    /// `None` when `memory.events` doesn't exist (memory controller not enabled).
    pub oom_kills: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum File {
    Events,
    Memory,
}

#[derive(Debug)]
struct Watched {
    dir: PathBuf,
    events_wd: Option<WatchDescriptor>,
    memory_wd: Option<WatchDescriptor>,
    populated: bool,
    oom_kills: u64,
}

/// An inotify instance watching cgroups. See the module doc.
#[derive(Debug)]
pub struct EventWatcher {
    inotify: Inotify,
    by_wd: HashMap<WatchDescriptor, (Token, File)>,
    by_token: HashMap<Token, Watched>,
}

impl EventWatcher {
    pub fn new() -> Result<Self, CgroupError> {
        let inotify =
            Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).map_err(|err| {
                CgroupError::Inotify {
                    path: PathBuf::new(),
                    err,
                }
            })?;
        Ok(EventWatcher {
            inotify,
            by_wd: HashMap::new(),
            by_token: HashMap::new(),
        })
    }

    /// Starts watching the cgroup at `dir` under `token`, and says how it is now.
    pub fn add(&mut self, token: Token, dir: &Path) -> Result<WatchState, CgroupError> {
        if self.by_token.contains_key(&token) {
            return Err(CgroupError::AlreadyWatched {
                token,
                path: dir.to_path_buf(),
            });
        }
        let events_path = dir.join(EVENTS);
        let events_wd = self.watch(&events_path, token)?;
        let memory_path = dir.join(memory::EVENTS);
        let memory_wd = match self.watch(&memory_path, token) {
            Ok(wd) => Some(wd),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                self.unwatch(events_wd);
                return Err(e);
            }
        };
        // Read after the watches exist: a change from here on produces an event.
        let populated = match read_populated(&events_path) {
            Ok(p) => p,
            Err(e) => {
                for wd in [Some(events_wd), memory_wd].into_iter().flatten() {
                    self.unwatch(wd);
                }
                return Err(e);
            }
        };
        let oom_kills = memory_wd.and_then(|_| read_oom_kills(&memory_path));
        self.by_wd.insert(events_wd, (token, File::Events));
        if let Some(wd) = memory_wd {
            self.by_wd.insert(wd, (token, File::Memory));
        }
        self.by_token.insert(
            token,
            Watched {
                dir: dir.to_path_buf(),
                events_wd: Some(events_wd),
                memory_wd,
                populated,
                oom_kills: oom_kills.unwrap_or(0),
            },
        );
        let state = WatchState {
            populated,
            oom_kills,
        };
        Ok(state)
    }

    fn watch(&self, path: &Path, token: Token) -> Result<WatchDescriptor, CgroupError> {
        let wd = self
            .inotify
            .add_watch(path, AddWatchFlags::IN_MODIFY)
            .map_err(|err| CgroupError::Inotify {
                path: path.to_path_buf(),
                err,
            })?;
        // Same inode as a cgroup already watched: the kernel handed back its descriptor.
        if self.by_wd.contains_key(&wd) {
            return Err(CgroupError::AlreadyWatched {
                token,
                path: path.to_path_buf(),
            });
        }
        Ok(wd)
    }

    fn unwatch(&self, wd: WatchDescriptor) {
        // EINVAL: the kernel dropped it already (the cgroup was removed).
        let _ = self.inotify.rm_watch(wd);
    }

    /// Stops watching `token`'s cgroup. Returns false for an unknown token.
    pub fn remove(&mut self, token: Token) -> bool {
        let Some(w) = self.by_token.remove(&token) else {
            return false;
        };
        for wd in [w.events_wd, w.memory_wd].into_iter().flatten() {
            if self.by_wd.remove(&wd).is_some() {
                self.unwatch(wd);
            }
        }
        true
    }

    /// Records that `token`'s cgroup holds a process now — one just born in it with
    /// `CLONE_INTO_CGROUP` — whether or not the watcher has read that change yet: if the
    /// process dies before the watcher reads `cgroup.events`, the `populated 0` it then reads is
    /// still a 1 → 0 change and produces [`CgroupEvent::Empty`] (docs/PERFORMANCE.md finding 1).
    pub fn mark_populated(&mut self, token: Token) {
        if let Some(w) = self.by_token.get_mut(&token) {
            w.populated = true;
        }
    }

    /// The tokens being watched.
    pub fn len(&self) -> usize {
        self.by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_token.is_empty()
    }

    /// Drains the inotify queue and turns what changed into events. Never blocks: returns an
    /// empty list when nothing is pending.
    pub fn read_events(&mut self) -> Result<Vec<CgroupEvent>, CgroupError> {
        let mut changed: Vec<(Token, File)> = Vec::new();
        let mut overflow = false;
        loop {
            let batch = match self.inotify.read_events() {
                Ok(b) if b.is_empty() => break,
                Ok(b) => b,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    return Err(CgroupError::Inotify {
                        path: PathBuf::new(),
                        err,
                    });
                }
            };
            for ev in batch {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    overflow = true;
                    continue;
                }
                let Some(&(token, file)) = self.by_wd.get(&ev.wd) else {
                    continue;
                };
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    self.forget(ev.wd, token, file);
                    continue;
                }
                if !changed.contains(&(token, file)) {
                    changed.push((token, file));
                }
            }
        }
        if overflow {
            changed = self
                .by_token
                .iter()
                .flat_map(|(t, w)| {
                    let mut v = vec![(*t, File::Events)];
                    if w.memory_wd.is_some() {
                        v.push((*t, File::Memory));
                    }
                    v
                })
                .collect();
        }
        let mut out = Vec::new();
        for (token, file) in changed {
            let Some(w) = self.by_token.get_mut(&token) else {
                continue;
            };
            match file {
                File::Events => {
                    // Unreadable: the cgroup went away, which an rmdir only allows when empty.
                    let Ok(populated) = read_populated(&w.dir.join(EVENTS)) else {
                        continue;
                    };
                    if w.populated && !populated {
                        out.push(CgroupEvent::Empty { token });
                    }
                    w.populated = populated;
                }
                File::Memory => {
                    let Some(count) = read_oom_kills(&w.dir.join(memory::EVENTS)) else {
                        continue;
                    };
                    if count > w.oom_kills {
                        out.push(CgroupEvent::OomKill { token, count });
                    }
                    w.oom_kills = count;
                }
            }
        }
        Ok(out)
    }

    fn forget(&mut self, wd: WatchDescriptor, token: Token, file: File) {
        self.by_wd.remove(&wd);
        if let Some(w) = self.by_token.get_mut(&token) {
            match file {
                File::Events => w.events_wd = None,
                File::Memory => w.memory_wd = None,
            }
        }
    }
}

impl AsFd for EventWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}

impl AsRawFd for EventWatcher {
    fn as_raw_fd(&self) -> RawFd {
        self.inotify.as_fd().as_raw_fd()
    }
}

fn read_populated(path: &Path) -> Result<bool, CgroupError> {
    let text = read_knob(path)?;
    parse_cgroup_events(&text)
        .map(|e| e.populated)
        .ok_or_else(|| CgroupError::Parse {
            path: path.to_path_buf(),
            what: "no \"populated\" line".into(),
        })
}

fn read_oom_kills(path: &Path) -> Option<u64> {
    let text = read_knob(path).ok()?;
    memory::parse_events(&text).map(|e| e.oom_kill)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fixture::Fixture;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    fn wait_readable(w: &EventWatcher) -> bool {
        let mut fds = [PollFd::new(w.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(2000u16)).unwrap() > 0
    }

    /// On a regular file a write is a modify event too, so the logic runs on a fixture.
    #[test]
    fn empty_and_oom_kill_from_file_changes() {
        let fx = Fixture::new();
        let a = fx.cgroup("a.service");
        let b = fx.cgroup("b.service");
        fx.write("a.service", "cgroup.events", "populated 1\nfrozen 0\n");
        fx.write("b.service", "cgroup.events", "populated 1\nfrozen 0\n");
        let mut w = EventWatcher::new().unwrap();
        assert_eq!(
            w.add(1, &a).unwrap(),
            WatchState {
                populated: true,
                oom_kills: Some(0)
            }
        );
        w.add(2, &b).unwrap();
        assert!(matches!(
            w.add(3, &a),
            Err(CgroupError::AlreadyWatched { token: 3, .. })
        ));
        assert!(matches!(
            w.add(1, &b),
            Err(CgroupError::AlreadyWatched { token: 1, .. })
        ));
        assert_eq!(w.read_events().unwrap(), vec![]);

        fx.write("a.service", "cgroup.events", "populated 1\nfrozen 1\n");
        fx.write(
            "b.service",
            "memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        assert!(wait_readable(&w));
        assert_eq!(
            w.read_events().unwrap(),
            vec![CgroupEvent::OomKill { token: 2, count: 1 }]
        );
        fx.write("a.service", "cgroup.events", "populated 0\nfrozen 0\n");
        assert!(wait_readable(&w));
        assert_eq!(
            w.read_events().unwrap(),
            vec![CgroupEvent::Empty { token: 1 }]
        );
        // 0 -> 0 is not news; the same oom count is not news.
        fx.write("a.service", "cgroup.events", "populated 0\nfrozen 0\n");
        fx.write(
            "b.service",
            "memory.events",
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        assert!(wait_readable(&w));
        assert_eq!(w.read_events().unwrap(), vec![]);

        assert!(w.remove(2));
        assert!(!w.remove(2));
        fx.write("b.service", "cgroup.events", "populated 0\nfrozen 0\n");
        assert_eq!(w.read_events().unwrap(), vec![]);
        assert_eq!(w.len(), 1);
    }

    /// A process born and dead before the watcher read either change: the file says
    /// `populated 0` both times it is read, and only the birth the spawner reports makes the
    /// second read a 1 → 0 change.
    #[test]
    fn a_birth_and_death_unseen_still_end_in_empty() {
        let fx = Fixture::new();
        let a = fx.cgroup("a.service");
        let mut w = EventWatcher::new().unwrap();
        assert!(!w.add(1, &a).unwrap().populated);
        w.mark_populated(1);
        w.mark_populated(99); // an unknown token is ignored
        fx.write("a.service", "cgroup.events", "populated 0\nfrozen 0\n");
        assert!(wait_readable(&w));
        assert_eq!(
            w.read_events().unwrap(),
            vec![CgroupEvent::Empty { token: 1 }]
        );
    }

    #[test]
    fn cgroup_without_memory_events() {
        let fx = Fixture::new();
        let a = fx.cgroup("a.service");
        std::fs::remove_file(a.join("memory.events")).unwrap();
        let mut w = EventWatcher::new().unwrap();
        assert_eq!(
            w.add(7, &a).unwrap(),
            WatchState {
                populated: false,
                oom_kills: None
            }
        );
        assert!(
            w.add(8, &fx.path().join("nope.service"))
                .unwrap_err()
                .is_not_found()
        );
        assert_eq!(w.len(), 1);
    }
}
