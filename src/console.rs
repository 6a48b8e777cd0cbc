//! PID 1's console, guarded (DESIGN §6): at most a bounded number of lines a second, whatever
//! causes them.
//!
//! As PID 1 corrald logs to the console — a serial line of a few hundred lines a second at best,
//! whose writes block when it is behind. Much of what corrald logs can be caused by a service or
//! an unprivileged user: a restart loop's spawn failures and state changes, a log relay's write
//! errors on a full disk, refused notify messages, a flood of bus clients. Bounding each such
//! site is easy to forget at the next one; so the one writer every line goes through, the
//! console, is guarded instead: [`Guard`] wraps the `tracing` writer and lets each event through
//! only while its level's token bucket ([`RateLimit`]) has a token. Nothing is queued; what is
//! held back is counted and said with the next line let through, at most every [`NOTE_EVERY`]. Warnings and errors have a
//! bucket of their own, so a flood of informational lines never hides them (nor they it).
//!
//! The figures: [`INFO_BURST`] lines at once and [`INFO_PER_SECOND`] a second after that for
//! informational lines (a boot with many units says a few lines for each at once), [`WARN_BURST`]
//! and [`WARN_PER_SECOND`] for warnings and errors: together less than a 115200-baud serial line
//! carries, so PID 1 is never held up writing to its console. Sites that a service floods on
//! their own are still collapsed where they are (`Throttle` in the executor's watches), so the
//! budget is not spent on one repeated line.
//!
//! Outside PID 1 the daemon's log goes to the journal or to whoever reads its stderr, both of
//! which take their own measures; the guard is for the console only.

use std::io::{self, Write};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Informational (and debug) lines let through at once.
pub const INFO_BURST: u32 = 500;
/// … and a second after that.
pub const INFO_PER_SECOND: u32 = 20;
/// Warnings and errors let through at once.
pub const WARN_BURST: u32 = 100;
/// … and a second after that.
pub const WARN_PER_SECOND: u32 = 10;
/// The count of lines held back is said at most this often (with the next line let through).
pub const NOTE_EVERY: Duration = Duration::from_secs(10);

/// A token bucket: `burst` tokens at most, `per_second` added each second; each line let through
/// takes one. Pure: the caller says what time it is.
#[derive(Debug, Clone)]
pub struct RateLimit {
    burst: u32,
    per_second: u32,
    /// Tokens, in millionths, so that a fraction of a second adds its share.
    micro_tokens: u64,
    last: Option<Instant>,
}

impl RateLimit {
    pub const fn new(burst: u32, per_second: u32) -> Self {
        RateLimit {
            burst,
            per_second,
            micro_tokens: burst as u64 * 1_000_000,
            last: None,
        }
    }

    /// Whether a line may go out at `now` (it takes a token if so).
    pub fn allow(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last);
            // Microseconds × tokens a second = millionths of a token.
            let added = elapsed
                .as_micros()
                .saturating_mul(u128::from(self.per_second));
            let full = u128::from(self.burst) * 1_000_000;
            self.micro_tokens = (u128::from(self.micro_tokens) + added).min(full) as u64;
        }
        self.last = Some(now);
        if self.micro_tokens >= 1_000_000 {
            self.micro_tokens -= 1_000_000;
            true
        } else {
            false
        }
    }
}

/// The lines of one kind (informational, or warnings and errors): their bucket, and what was
/// held back and not yet said.
#[derive(Debug)]
struct Class {
    limit: RateLimit,
    held_back: u64,
    last_note: Option<Instant>,
}

impl Class {
    fn new(limit: RateLimit) -> Self {
        Class {
            limit,
            held_back: 0,
            last_note: None,
        }
    }

    /// Whether a line goes out at `now`; `Some(n)`: yes, after a note that `n` were held back
    /// (0: no note). Notes come at most every [`NOTE_EVERY`], so they add little to the bound.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if !self.limit.allow(now) {
            self.held_back += 1;
            return None;
        }
        let due = self
            .last_note
            .is_none_or(|t| now.saturating_duration_since(t) >= NOTE_EVERY);
        if self.held_back > 0 && due {
            self.last_note = Some(now);
            return Some(std::mem::take(&mut self.held_back));
        }
        Some(0)
    }
}

/// The two classes, by level.
#[derive(Debug)]
struct Buckets {
    info: Class,
    warn: Class,
}

/// A `tracing` writer maker that lets lines through [`RateLimit`]s (see the module doc).
#[derive(Debug)]
pub struct Guard<M> {
    inner: M,
    buckets: Mutex<Buckets>,
    clock: fn() -> Instant,
}

impl<M> Guard<M> {
    /// The console's guard, with the module's figures, around `inner`.
    pub fn new(inner: M) -> Self {
        Guard::with_limits(
            inner,
            RateLimit::new(INFO_BURST, INFO_PER_SECOND),
            RateLimit::new(WARN_BURST, WARN_PER_SECOND),
            Instant::now,
        )
    }

    /// A guard with other figures and another clock (tests).
    pub fn with_limits(inner: M, info: RateLimit, warn: RateLimit, clock: fn() -> Instant) -> Self {
        Guard {
            inner,
            buckets: Mutex::new(Buckets {
                info: Class::new(info),
                warn: Class::new(warn),
            }),
            clock,
        }
    }

    /// Whether a line of `level` goes out now, and how many of its kind were held back.
    fn allow(&self, level: Level) -> Option<u64> {
        let now = (self.clock)();
        // A panic while the lock was held (in this function, which doesn't panic) would leave
        // the buckets as they were: still usable.
        let mut b = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if level <= Level::WARN {
            b.warn.allow(now)
        } else {
            b.info.allow(now)
        }
    }
}

/// One event's writer: the real one (after a note of what was held back), or nothing.
pub enum Gated<W> {
    Open { writer: W, note: Option<String> },
    Shut,
}

impl<W: Write> Write for Gated<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Gated::Open { writer, note } => {
                if let Some(note) = note.take() {
                    writer.write_all(note.as_bytes())?;
                }
                writer.write(buf)
            }
            Gated::Shut => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Gated::Open { writer, .. } => writer.flush(),
            Gated::Shut => Ok(()),
        }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Guard<M> {
    type Writer = Gated<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        self.gate(Level::INFO, None)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.gate(*meta.level(), Some(meta))
    }
}

impl<'a, M: MakeWriter<'a>> Guard<M> {
    fn gate(&'a self, level: Level, meta: Option<&Metadata<'_>>) -> Gated<M::Writer> {
        let Some(held_back) = self.allow(level) else {
            return Gated::Shut;
        };
        let writer = match meta {
            Some(meta) => self.inner.make_writer_for(meta),
            None => self.inner.make_writer(),
        };
        let note = (held_back > 0).then(|| {
            let (kind, burst, rate) = if level <= Level::WARN {
                ("warnings and errors", WARN_BURST, WARN_PER_SECOND)
            } else {
                ("lines", INFO_BURST, INFO_PER_SECOND)
            };
            format!(
                "corrald: {held_back} console {kind} held back (at most {burst} at once, then \
                 {rate} a second)\n"
            )
        });
        Gated::Open { writer, note }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_bucket_lets_its_burst_through_then_its_rate() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(5, 2);
        let passed = (0..100).filter(|_| r.allow(t0)).count();
        assert_eq!(passed, 5, "the burst, at one instant");
        // Half a second: one more token.
        let t1 = t0 + Duration::from_millis(500);
        assert!(r.allow(t1));
        assert!(!r.allow(t1));
        // Ten seconds of nothing refill the bucket, no further than its burst.
        let t2 = t1 + Duration::from_secs(10);
        let passed = (0..100).filter(|_| r.allow(t2)).count();
        assert_eq!(passed, 5);
        // A steady flood for a minute, a line every millisecond: burst + rate × time at most.
        let mut r = RateLimit::new(5, 2);
        let passed = (0..60_000u64)
            .filter(|ms| r.allow(t0 + Duration::from_millis(*ms)))
            .count();
        assert!((5 + 2 * 59..=5 + 2 * 60).contains(&passed), "{passed}");
        // A clock that goes backwards adds nothing.
        let mut r = RateLimit::new(1, 1);
        assert!(r.allow(t2));
        assert!(!r.allow(t0));
    }

    #[test]
    fn what_is_held_back_is_said_at_most_every_ten_seconds() {
        let t0 = Instant::now();
        let mut c = Class::new(RateLimit::new(1, 1));
        assert_eq!(c.allow(t0), Some(0));
        assert_eq!(c.allow(t0), None);
        assert_eq!(c.allow(t0), None);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(c.allow(at(1)), Some(2), "the first note comes at once");
        assert_eq!(c.allow(at(1)), None);
        assert_eq!(c.allow(at(2)), Some(0), "the next, not before ten seconds");
        assert_eq!(c.allow(at(2)), None);
        assert_eq!(c.allow(at(11)), Some(2));
        assert_eq!(c.allow(at(30)), Some(0), "nothing held back: no note");
    }

    /// The guard in a real `tracing` subscriber: a flood of events writes at most the burst,
    /// with the count of what was held back said by the next line through, and warnings keep a
    /// budget of their own.
    #[test]
    fn the_guard_bounds_what_a_subscriber_writes() {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        static OFFSET_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        fn clock() -> Instant {
            *START.get_or_init(Instant::now)
                + Duration::from_millis(OFFSET_MS.load(std::sync::atomic::Ordering::SeqCst))
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let guard = Guard::with_limits(
            move || writer.clone(),
            RateLimit::new(10, 1),
            RateLimit::new(3, 1),
            clock,
        );
        let subscriber = tracing_subscriber::fmt()
            .with_writer(guard)
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..10_000 {
                tracing::info!("flood {i}");
            }
            for i in 0..100 {
                tracing::warn!("warned {i}");
            }
            OFFSET_MS.store(2000, std::sync::atomic::Ordering::SeqCst);
            tracing::info!("after the flood");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.iter().filter(|l| l.contains("flood ")).count(),
            10,
            "{text}"
        );
        assert_eq!(lines.iter().filter(|l| l.contains("warned ")).count(), 3);
        assert!(
            text.contains("corrald: 9990 console lines held back"),
            "{text}"
        );
        assert!(text.ends_with("after the flood\n"), "{text}");
    }
}
