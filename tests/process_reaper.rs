//! The reaper on the real kernel: SIGCHLD through a signalfd, the `waitpid(-1)` drain, exit
//! codes, signals, coalesced signals and orphans reparented to a subreaper.
//!
//! A signalfd only sees SIGCHLD if *every* thread blocks it, and `waitpid(-1)` takes any child:
//! both are process-wide, and the test harness's own threads don't block SIGCHLD. So the scenario
//! runs in a forked, single-threaded copy of this test process (glibc's fork leaves malloc
//! usable in the child), which reports back through a pipe and its exit status. Keep this
//! binary to one test.

use std::collections::HashMap;
use std::io::Read as _;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use corral::process::{
    ExitStatus, Reaper, SpawnSpec, Stdio, block_sigchld, set_child_subreaper, spawn,
};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::Pid;

fn pipe() -> (std::fs::File, OwnedFd) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    (std::fs::File::from(r), w)
}

/// Polls the reaper's fd and reaps until every pid in `want` has been reported.
fn collect(
    reaper: &mut Reaper,
    want: &[Pid],
    seen: &mut HashMap<Pid, ExitStatus>,
) -> Result<u32, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut wakeups = 0;
    while !want.iter().all(|p| seen.contains_key(p)) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out; seen {seen:?}, want {want:?}"));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(reaper.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(ms)).map_err(|e| format!("poll: {e}"))?;
        if n == 0 {
            continue;
        }
        wakeups += 1;
        for (pid, status) in reaper.reap() {
            if seen.insert(pid, status).is_some() {
                return Err(format!("{pid} reported twice"));
            }
        }
    }
    Ok(wakeups)
}

fn scenario() -> Result<(), String> {
    block_sigchld().map_err(|e| format!("block_sigchld: {e}"))?;
    set_child_subreaper().map_err(|e| format!("subreaper: {e}"))?;
    let mut reaper = Reaper::new().map_err(|e| format!("Reaper::new: {e}"))?;
    if !reaper.reap().is_empty() {
        return Err("reaped something before spawning".into());
    }
    let run = |argv: &[&str]| spawn(&SpawnSpec::new(argv)).map_err(|e| e.to_string());

    let exit3 = run(&["/bin/sh", "-c", "exit 3"])?;
    let term = run(&["/bin/sh", "-c", "kill -TERM $$"])?;
    let sleeper = run(&["/bin/sleep", "100"])?;
    sleeper
        .signal(libc::SIGKILL)
        .map_err(|e| format!("kill: {e}"))?;
    // An orphan: the shell exits at once, its background sleep is reparented to us (subreaper).
    let (mut r, w) = pipe();
    let mut spec = SpawnSpec::new(["/bin/sh", "-c", "/bin/sleep 0.3 & echo $!"]);
    spec.stdout = Stdio::Fd(w);
    let parent = spawn(&spec).map_err(|e| e.to_string())?;
    drop(spec);
    let mut out = String::new();
    r.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let orphan = Pid::from_raw(
        out.trim()
            .parse()
            .map_err(|_| format!("orphan pid {out:?}"))?,
    );

    let mut seen = HashMap::new();
    let want = [exit3.pid, term.pid, sleeper.pid, parent.pid, orphan];
    collect(&mut reaper, &want, &mut seen)?;
    let expect = [
        (exit3.pid, ExitStatus::Exited(3)),
        (term.pid, ExitStatus::Signaled(libc::SIGTERM, false)),
        (sleeper.pid, ExitStatus::Signaled(libc::SIGKILL, false)),
        (parent.pid, ExitStatus::Exited(0)),
        (orphan, ExitStatus::Exited(0)),
    ];
    for (pid, status) in expect {
        if seen.get(&pid) != Some(&status) {
            return Err(format!("{pid}: got {:?}, want {status:?}", seen.get(&pid)));
        }
    }

    // Many exits, fewer signals (they coalesce): the drain still finds every one.
    let many = (0..30)
        .map(|_| run(&["/bin/true"]).map(|c| c.pid))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = HashMap::new();
    let wakeups = collect(&mut reaper, &many, &mut seen)?;
    if seen.len() != many.len() || !seen.values().all(|s| s.success()) {
        return Err(format!("coalesced: {seen:?}"));
    }
    if wakeups > many.len() as u32 {
        return Err(format!("{wakeups} wakeups for {} exits", many.len()));
    }
    // Drained: nothing left, and the fd is quiet.
    if !reaper.reap().is_empty() {
        return Err("leftovers after drain".into());
    }
    let mut fds = [PollFd::new(reaper.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::from(50u16)).map_err(|e| e.to_string())? != 0 {
        return Err("signalfd readable with nothing to reap".into());
    }
    Ok(())
}

#[test]
fn reaper_reports_exit_codes_signals_and_orphans() {
    let (mut r, w) = pipe();
    // SAFETY: glibc's fork; the child runs only this thread's scenario and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(r);
        let code = match scenario() {
            Ok(()) => 0,
            Err(msg) => {
                // SAFETY: writing a valid buffer to our pipe.
                unsafe {
                    libc::write(
                        std::os::fd::AsRawFd::as_raw_fd(&w),
                        msg.as_ptr().cast(),
                        msg.len(),
                    )
                };
                1
            }
        };
        // SAFETY: leave without running the harness's atexit/destructors.
        unsafe { libc::_exit(code) };
    }
    drop(w);
    let mut msg = String::new();
    r.read_to_string(&mut msg).unwrap();
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(
        ExitStatus::from_raw(status),
        Some(ExitStatus::Exited(0)),
        "{msg}"
    );
}
