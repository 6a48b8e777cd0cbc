//! What the executor watches and how it reaches processes: each running unit's cgroup
//! (`cgroup.events` for emptiness, `memory.events` for OOM kills) on one inotify fd; the exits
//! of adopted main processes (not our children: seen through pidfds); sd_notify datagrams; and
//! signals, which only ever go through a pidfd.
//!
//! **Signals by pidfd** (never by a bare PID, which may have been reused by the time the signal
//! goes out): a main process is held by the pidfd `clone3` returned, or one opened when it was
//! adopted or named by `MAINPID=` (after checking it is in the unit's cgroup). "Every process of
//! the unit" is read from the cgroup — the whole subtree, so a delegated unit's `init.scope` and
//! what its manager built below are reached too — and each is opened as a pidfd and checked to
//! still be in that subtree before it is signalled (SIGKILL to all of them is `cgroup.kill`).
//!
//! **Bounded work**: notify datagrams are read at most [`NOTIFY_PER_TURN`] per turn and for at
//! most [`NOTIFY_TURN_TIME`] (a refused sender costs a read of its `/proc/PID/cgroup`), and the
//! lines a process of a unit can cause (a notify message refused) are rate-limited and
//! collapsed ([`Throttle`]), so a flood from a service can neither stall the loop nor fill the
//! console.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::super::engine::Input;
use super::super::engine::service::Exit;
use super::Manager;
use crate::cgroup::{self, CgroupEvent, EventWatcher};
use crate::process::{self, ExitStatus};
use crate::unit::{Kind, NotifyAccess, UnitName};

/// Notify datagrams handled in one turn of the event loop.
pub(super) const NOTIFY_PER_TURN: usize = 256;
/// How long one turn may spend on notify datagrams, however few.
pub(super) const NOTIFY_TURN_TIME: Duration = Duration::from_millis(5);
/// Datagrams read between two looks at the clock.
const NOTIFY_CHUNK: usize = 16;
/// Cgroups visited when signalling a unit's processes (a delegated unit's tree is its
/// manager's to grow; beyond this the rest is reached only by `cgroup.kill`).
const MAX_CGROUPS_SIGNALLED: usize = 4096;

/// At most `burst` lines per `window`; what is held back is counted and said with the next
/// line let through ("… 4123 more like this suppressed").
#[derive(Debug)]
pub(crate) struct Throttle {
    burst: u32,
    window: Duration,
    start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

impl Throttle {
    pub(crate) const fn new(burst: u32, window: Duration) -> Self {
        Throttle {
            burst,
            window,
            start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may go out now; `Some(n)`: yes, and `n` were held back before it.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.start {
            Some(t) if now.duration_since(t) < self.window => {}
            _ => {
                self.start = Some(now);
                self.used = 0;
            }
        }
        if self.used < self.burst {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// Appends the count of held-back lines to a message let through.
pub(crate) fn with_suppressed(msg: String, suppressed: u64) -> String {
    if suppressed == 0 {
        msg
    } else {
        format!("{msg} (… {suppressed} more like this suppressed)")
    }
}

pub(super) struct Watches {
    watcher: EventWatcher,
    tokens: HashMap<cgroup::Token, UnitName>,
    /// The same, by unit: a start and a stop look a unit's token up (a walk over `tokens` was
    /// O(running units) per start, O(n²) over a burst).
    token_by_unit: HashMap<UnitName, cgroup::Token>,
    next_token: u64,
    /// The pidfd of each main process we know.
    pidfds: HashMap<u32, OwnedFd>,
    /// Exits of adopted main processes (not our children: seen through pidfds).
    adopted_exits: mpsc::UnboundedSender<u32>,
    adopted_exits_rx: Option<mpsc::UnboundedReceiver<u32>>,
    /// Lines about notify messages refused.
    refused: Throttle,
    /// Lines repeating what services say in `STATUS=`.
    status: Throttle,
}

impl Watches {
    pub(super) fn new() -> std::io::Result<Watches> {
        let (adopted_exits, adopted_exits_rx) = mpsc::unbounded_channel();
        Ok(Watches {
            watcher: EventWatcher::new().map_err(std::io::Error::other)?,
            tokens: HashMap::new(),
            token_by_unit: HashMap::new(),
            next_token: 0,
            pidfds: HashMap::new(),
            adopted_exits,
            adopted_exits_rx: Some(adopted_exits_rx),
            refused: Throttle::new(10, Duration::from_secs(1)),
            status: Throttle::new(10, Duration::from_secs(1)),
        })
    }

    pub(super) fn fd(&self) -> std::io::Result<OwnedFd> {
        self.watcher.as_fd().try_clone_to_owned()
    }

    pub(super) fn take_adopted_exits(&mut self) -> std::io::Result<mpsc::UnboundedReceiver<u32>> {
        self.adopted_exits_rx
            .take()
            .ok_or_else(|| std::io::Error::other("the manager runs once"))
    }

    /// Stops watching a unit's cgroup.
    pub(super) fn unwatch(&mut self, name: &UnitName) {
        if let Some(t) = self.token_by_unit.remove(name) {
            let _ = self.watcher.remove(t);
            self.tokens.remove(&t);
        }
    }

    pub(super) fn mark_populated(&mut self, name: &UnitName) {
        if let Some(t) = self.token_by_unit.get(name) {
            self.watcher.mark_populated(*t);
        }
    }

    /// Keeps the pidfd of a main process (to signal it, never by its number).
    pub(super) fn hold(&mut self, pid: u32, fd: OwnedFd) {
        self.pidfds.insert(pid, fd);
    }
}

impl Manager {
    /// Watches the unit's cgroup for emptiness and OOM kills (once).
    pub(crate) fn watch(&mut self, name: &UnitName) -> Result<(), String> {
        if self.watches.token_by_unit.contains_key(name) {
            return Ok(());
        }
        let dir = self.tree.root().join(self.cgroup_path(name));
        let w = &mut self.watches;
        let token: cgroup::Token = w.next_token;
        w.next_token += 1;
        w.watcher.add(token, &dir).map_err(|e| e.to_string())?;
        w.tokens.insert(token, name.clone());
        w.token_by_unit.insert(name.clone(), token);
        Ok(())
    }

    pub(super) fn on_cgroup_events(&mut self) {
        let events = match self.watches.watcher.read_events() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("reading cgroup events: {e}");
                return;
            }
        };
        for ev in events {
            let (token, oom) = match ev {
                CgroupEvent::Empty { token } => (token, false),
                CgroupEvent::OomKill { token, .. } => (token, true),
            };
            if let Some(name) = self.watches.tokens.get(&token).cloned() {
                if oom {
                    self.feed(Input::OomKill(name));
                } else {
                    self.feed(Input::CgroupEmpty(name.clone()));
                    self.remove_if_unremoved(&name);
                }
            }
        }
    }

    /// A child ended. An OOM kill is counted in memory.events before its victim dies: the
    /// cgroup events already queued are taken first, so the unit learns the cause before the
    /// exit. A pid no unit knows may be the child of a launch whose outcome has not arrived
    /// yet: kept for it (see [`super::launch`]).
    pub(super) fn on_exit(&mut self, pid: u32, status: ExitStatus) {
        self.watches.pidfds.remove(&pid);
        if self.engine.unit_of_pid(pid).is_none() {
            self.launches.early_exit(pid, status);
            return;
        }
        self.on_cgroup_events();
        let exit = match status {
            ExitStatus::Exited(c) => Exit::Code(c),
            ExitStatus::Signaled(s, _) => Exit::Signal(s),
        };
        self.feed(Input::Exited { pid, exit });
    }

    /// An adopted main process exited; not our child, so its status is unknown.
    pub(super) fn on_adopted_exit(&mut self, pid: u32) {
        self.watches.pidfds.remove(&pid);
        self.on_cgroup_events();
        self.feed(Input::Exited {
            pid,
            exit: Exit::Unknown,
        });
    }

    /// Processes were moved into the unit's cgroup: its emptying from now on is news.
    pub(crate) fn mark_populated(&mut self, name: &UnitName) {
        self.watches.mark_populated(name);
    }

    /// Holds a main process by a pidfd (to signal it through).
    pub(crate) fn hold_pidfd(&mut self, pid: u32, fd: OwnedFd) {
        self.watches.hold(pid, fd);
    }

    /// Holds an adopted (not our child) main process by a pidfd, and reports its exit.
    pub(crate) fn watch_adopted(&mut self, pid: u32, fd: OwnedFd) {
        match fd.try_clone() {
            Ok(dup) => self.watches.hold(pid, dup),
            Err(e) => tracing::warn!("holding pid {pid}: {e}"),
        }
        let tx = self.watches.adopted_exits.clone();
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

    /// sd_notify messages, at most [`NOTIFY_PER_TURN`] and for at most [`NOTIFY_TURN_TIME`];
    /// true when more may be waiting.
    pub(super) fn on_notify(&mut self) -> bool {
        let start = Instant::now();
        let mut read = 0;
        loop {
            let (msgs, more) = self.notify_socket.read_up_to(NOTIFY_CHUNK);
            read += msgs.len();
            self.on_notify_messages(msgs);
            if !more {
                return false;
            }
            if read >= NOTIFY_PER_TURN || start.elapsed() >= NOTIFY_TURN_TIME {
                return true;
            }
        }
    }

    /// The sender's unit is found from its pid (a main process) or, with `notify-access =
    /// "all"`, from its cgroup.
    fn on_notify_messages(&mut self, msgs: Vec<super::super::notify::Message>) {
        for msg in msgs {
            let Some((name, is_main)) = self.notify_sender(msg.pid) else {
                continue;
            };
            let access = self
                .units
                .get(&name)
                .and_then(|u| u.service.as_ref())
                .map(|s| s.notify_access);
            if !is_main && access != Some(NotifyAccess::All) {
                if let Some(n) = self.watches.refused.allow(Instant::now()) {
                    tracing::warn!(
                        unit = %name,
                        "{}",
                        with_suppressed(
                            format!(
                                "notify message from pid {}, not the main process: ignored \
                                 (notify-access = \"all\" allows it)",
                                msg.pid
                            ),
                            n
                        )
                    );
                }
                continue;
            }
            // Only a process of the unit may become its main process, and it is held by a
            // pidfd from the moment it is checked.
            let main_pid = msg.main_pid.filter(|pid| {
                let Ok(fd) = process::pidfd_open(nix::unistd::Pid::from_raw(*pid as i32)) else {
                    return false;
                };
                let ours = self.notify_sender(*pid).is_some_and(|(n, _)| n == name);
                if ours {
                    self.watches.hold(*pid, fd);
                }
                ours
            });
            if let Some(status) = &msg.status
                && let Some(n) = self.watches.status.allow(Instant::now())
            {
                tracing::info!(unit = %name, "{}", with_suppressed(format!("status: {status}"), n));
            }
            self.feed(Input::Notify {
                unit: name,
                ready: msg.ready,
                status: msg.status,
                main_pid,
            });
        }
    }

    /// The unit a process belongs to, and whether it is that unit's main process.
    fn notify_sender(&self, pid: u32) -> Option<(UnitName, bool)> {
        if let Some(name) = self.engine.unit_of_pid(pid) {
            let is_main = self.engine.main_pid(name) == Some(pid);
            return Some((name.clone(), is_main));
        }
        let cg = super::super::notify::cgroup_of(pid)?;
        self.unit_of_cgroup(&cg).map(|n| (n, false))
    }

    /// The service whose cgroup (or a cgroup below it) is `cg`, relative to the mount.
    fn unit_of_cgroup(&self, cg: &str) -> Option<UnitName> {
        let root = self.control_group(Path::new(""));
        let rel = cg
            .strip_prefix(root.trim_end_matches('/'))?
            .trim_start_matches('/');
        // `<slices…>/<unit>.service[/…]`: the first component that names a service.
        let mut path = std::path::PathBuf::new();
        for c in rel.split('/') {
            path.push(c);
            if let Ok(name) = UnitName::parse(c)
                && name.kind() == Kind::Service
            {
                let u = self.units.get(&name)?;
                return (u.cgroup_path() == path).then_some(name);
            }
        }
        None
    }

    /// Sends `signal` to the unit's main process, through its pidfd.
    pub(crate) fn signal_main(&self, name: &UnitName, pid: u32, signal: i32) {
        if let Some(fd) = self.watches.pidfds.get(&pid) {
            // ESRCH: it exited meanwhile; its exit arrives through the reaper.
            let _ = process::pidfd_send_signal(fd.as_fd(), signal);
            return;
        }
        // No pidfd kept (a kernel without CLONE_PIDFD): open one and check it is still ours.
        let ours = self.control_group(&self.cgroup_path(name));
        if let Some(fd) = pidfd_in(&ours, pid) {
            let _ = process::pidfd_send_signal(fd.as_fd(), signal);
        }
    }

    /// Sends `signal` to every process of the unit — its whole cgroup subtree — each held by
    /// a pidfd and checked to be in the subtree first. Returns how many were signalled.
    /// An empty subtree (`cgroup.events` says so for all of it: one read) is not walked: the
    /// usual case once a service's main process has exited.
    pub(crate) fn signal_unit(&self, name: &UnitName, signal: i32) -> usize {
        let dir = self.tree.root().join(self.cgroup_path(name));
        if cgroup::Cgroup::new(&dir).is_populated().ok() == Some(false) {
            return 0;
        }
        self.signal_populated(name, signal)
    }

    /// [`Self::signal_unit`] for a unit whose subtree was just read as populated: walked
    /// without reading `cgroup.events` again.
    pub(crate) fn signal_populated(&self, name: &UnitName, signal: i32) -> usize {
        let rel = self.cgroup_path(name);
        let dir = self.tree.root().join(&rel);
        let ours = self.control_group(&rel);
        let mut sent = 0;
        let mut todo = vec![dir.clone()];
        let mut visited = 0;
        while let Some(cg_dir) = todo.pop() {
            visited += 1;
            if visited > MAX_CGROUPS_SIGNALLED {
                tracing::warn!(unit = %name, "more than {MAX_CGROUPS_SIGNALLED} cgroups: the rest is not signalled");
                break;
            }
            for pid in cgroup::Cgroup::new(&cg_dir).procs().unwrap_or_default() {
                if let Some(fd) = pidfd_in(&ours, pid)
                    && process::pidfd_send_signal(fd.as_fd(), signal).is_ok()
                {
                    sent += 1;
                }
            }
            if let Ok(entries) = std::fs::read_dir(&cg_dir) {
                todo.extend(
                    entries
                        .flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
        sent
    }
}

/// A pidfd for `pid` if that process is in the cgroup `ours` (relative to the mount, as
/// `/proc/PID/cgroup` shows it) or below it — checked after the pidfd is opened, so the
/// process signalled through it is the one that was checked (a pid reused meanwhile fails the
/// check, or the signal).
pub(crate) fn pidfd_in(ours: &str, pid: u32) -> Option<OwnedFd> {
    let fd = process::pidfd_open(nix::unistd::Pid::from_raw(pid as i32)).ok()?;
    let theirs = super::super::notify::cgroup_of(pid)?;
    let ours = ours.trim_end_matches('/');
    let inside = theirs == ours
        || theirs
            .strip_prefix(ours)
            .is_some_and(|rest| rest.starts_with('/'));
    inside.then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_a_burst_through_then_counts() {
        let mut t = Throttle::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0), Some(0));
        for _ in 0..4123 {
            assert_eq!(t.allow(t0 + Duration::from_millis(500)), None);
        }
        assert_eq!(t.allow(t0 + Duration::from_millis(1000)), Some(4123));
        assert_eq!(t.allow(t0 + Duration::from_millis(1001)), Some(0));
        assert_eq!(
            with_suppressed("x".into(), 4123),
            "x (… 4123 more like this suppressed)"
        );
        assert_eq!(with_suppressed("x".into(), 0), "x");
    }
}
