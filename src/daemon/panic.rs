//! What a panic does in corrald (DESIGN §6), and a test-only way to cause one.
//!
//! **Logged.** [`install_hook`] replaces std's panic hook with one that logs through `tracing`
//! (the console as PID 1, the journal under systemd), naming the thread, the place and the
//! message. Without it a panic in a spawned task — the private socket's accept loop, the bus
//! connection, a log relay — went to a bare stderr line at best, while tokio caught the unwind
//! and the daemon went on without the task: a socket no longer answering, and nothing said why.
//!
//! **Ends the run; no task is restarted.** A panic is a bug: an invariant broke, and the task's
//! state — and what it shares with the others (the manager's inbox, a connection's objects, the
//! relays' registry) — may be half-updated. Restarting the task in place would run the same
//! code on the input that broke it, again and again, and hide the fault behind a daemon that
//! looks alive. So a panic in any thread or task ends [`super::run`] as a fatal error does
//! ([`super::DaemonError::Panicked`]; a panic of the event loop itself unwinds out of it):
//! - outside PID 1 corrald exits with a failure and leaves every service running, as a crash
//!   does; its supervisor restarts it and the new daemon adopts them (DESIGN §1) — the recovery
//!   that every crash already takes, proven by the fault tests;
//! - as PID 1 it keeps the promises it still can: it reaps every orphan, powers off on SIGTERM
//!   and reboots on ctrl-alt-del ([`crate::boot::pid1::fallback`]).
//!
//! **Test-only trigger.** [`TEST_PANIC_VAR`] (`CORRAL_TEST_PANIC=SITE` in corrald's
//! environment; for PID 1, a word of the kernel command line, which the kernel passes to init
//! as its environment) makes corrald panic at one [`Site`]: `accept` — the private socket's
//! accept loop, at the next connection; `reload` — the manager's event loop, at the next reload.
//! It exists for tests/daemon_host.rs and tests/vm_panic.rs, and only ever makes corrald fail:
//! whoever sets corrald's environment controls corrald already.

use std::any::Any;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// The environment variable that arms a test panic (see the module doc). Test-only.
pub const TEST_PANIC_VAR: &str = "CORRAL_TEST_PANIC";

/// Set once any thread has panicked (by the hook).
static PANICKED: AtomicBool = AtomicBool::new(false);
/// Wakes [`panicked`].
static WAKE: Notify = Notify::const_new();

/// Installs the panic hook: every panic is logged, and [`panicked`] resolves. Call it once
/// logging is set up.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let at = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        tracing::error!("panic in thread {name}{at}: {}", message(info.payload()));
        let trace = std::backtrace::Backtrace::capture();
        if trace.status() == std::backtrace::BacktraceStatus::Captured {
            tracing::error!("backtrace of the panic:\n{trace}");
        }
        PANICKED.store(true, Ordering::SeqCst);
        WAKE.notify_waiters();
    }));
}

/// A panic's message (its payload is a `&str` or a `String` unless someone panicked with
/// something else).
fn message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(a payload that is not text)"
    }
}

/// Whether a thread of this process has panicked since the hook was installed.
pub fn has_panicked() -> bool {
    PANICKED.load(Ordering::SeqCst)
}

/// Resolves once a thread of this process has panicked (at once if one has); never without
/// [`install_hook`].
pub async fn panicked() {
    loop {
        let woken = WAKE.notified();
        tokio::pin!(woken);
        // Registered before the flag is read: a panic between the two still wakes us.
        woken.as_mut().enable();
        if has_panicked() {
            return;
        }
        woken.await;
    }
}

/// Where a test panic can be injected ([`TEST_PANIC_VAR`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The private socket's accept loop (a spawned task), at the next connection.
    Accept,
    /// The manager's event loop (the daemon's main future), at the next reload.
    Reload,
}

impl Site {
    fn parse(word: &str) -> Option<Site> {
        match word {
            "accept" => Some(Site::Accept),
            "reload" => Some(Site::Reload),
            _ => None,
        }
    }
}

/// The site armed by [`TEST_PANIC_VAR`], read once.
fn armed() -> Option<Site> {
    static ARMED: OnceLock<Option<Site>> = OnceLock::new();
    *ARMED.get_or_init(|| {
        let word = std::env::var(TEST_PANIC_VAR).ok()?;
        let site = Site::parse(&word);
        match site {
            Some(_) => {
                tracing::warn!("{TEST_PANIC_VAR}={word}: corrald will panic there (tests only)")
            }
            None => tracing::warn!("{TEST_PANIC_VAR}={word}: not a site (accept, reload); ignored"),
        }
        site
    })
}

/// Panics if a test armed `site` (see the module doc); nothing otherwise. The panic names the
/// caller's place.
#[track_caller]
pub fn test_point(site: Site) {
    if armed() == Some(site) {
        panic!("{TEST_PANIC_VAR}: a panic injected at {site:?} for a test");
    }
}

/// Reads the trigger now, so that its warning comes at start-up rather than at the site.
pub fn arm_test_trigger() {
    let _ = armed();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_named_as_documented() {
        assert_eq!(Site::parse("accept"), Some(Site::Accept));
        assert_eq!(Site::parse("reload"), Some(Site::Reload));
        assert_eq!(Site::parse("Accept"), None);
        assert_eq!(Site::parse(""), None);
    }

    #[test]
    fn a_message_is_read_from_either_kind_of_text() {
        let s: Box<dyn Any + Send> = Box::new("plain");
        assert_eq!(message(s.as_ref()), "plain");
        let s: Box<dyn Any + Send> = Box::new(String::from("formatted 1"));
        assert_eq!(message(s.as_ref()), "formatted 1");
        let s: Box<dyn Any + Send> = Box::new(7u8);
        assert_eq!(message(s.as_ref()), "(a payload that is not text)");
    }
}
