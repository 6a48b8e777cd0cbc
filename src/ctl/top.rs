//! `corralctl top [--delay SECS] [-n ITERATIONS]`: units ordered by CPU use, refreshed, like
//! `systemd-cgtop`: tasks, CPU % (of one CPU, so a busy unit on four CPUs shows 400), memory,
//! and IO read and written per second.
//!
//! The daemon never polls: the client reads `CPUUsageNSec`, `MemoryCurrent`, `TasksCurrent`,
//! `IOReadBytes` and `IOWriteBytes` of every live unit each round (the daemon reads the cgroup
//! files when asked), and the rates are differences between two rounds. So the first frame comes
//! one delay after the start, and every frame has rates (cgtop shows `-` in its first frame
//! instead; scripts and `-n 1` want figures).
//!
//! On a terminal each frame replaces the last (cursor home, clear screen); otherwise frames
//! follow each other separated by a blank line, as `systemd-cgtop --batch` prints them.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::client::{Client, ClientError, UnitObject};
use super::tree::vanished;
use super::views::human_bytes;

/// 2^64-1: the kernel can't give this figure.
const UNKNOWN: u64 = u64::MAX;

/// Why `top` stopped.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("writing the output: {0}")]
    Write(#[from] io::Error),
}

/// One unit's counters at one moment (2^64-1 where unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub name: String,
    pub cpu_usage_nsec: u64,
    pub memory_current: u64,
    pub tasks_current: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
}

/// Units whose cgroup exists: everything but inactive and failed ones.
fn live(state: &str) -> bool {
    !matches!(state, "inactive" | "failed")
}

async fn read_sample(unit: &UnitObject) -> zbus::Result<Sample> {
    let p = &unit.proxy;
    Ok(Sample {
        name: unit.row.name.clone(),
        cpu_usage_nsec: p.get_property("CPUUsageNSec").await?,
        memory_current: p.get_property("MemoryCurrent").await?,
        tasks_current: p.get_property("TasksCurrent").await?,
        io_read_bytes: p.get_property("IOReadBytes").await?,
        io_write_bytes: p.get_property("IOWriteBytes").await?,
    })
}

/// Every live unit's counters, read concurrently; units that vanish meanwhile are left out.
pub async fn sample(client: &Client) -> Result<Vec<Sample>, ClientError> {
    let objects: Vec<UnitObject> = client
        .unit_objects()
        .await?
        .into_iter()
        .filter(|u| live(&u.row.active_state))
        .collect();
    let mut out = Vec::with_capacity(objects.len());
    let reads: Vec<_> = futures_util::stream::iter(objects.iter().map(read_sample))
        .buffered(super::client::CONCURRENT_CALLS)
        .collect()
        .await;
    for read in reads {
        match read {
            Ok(s) => out.push(s),
            Err(e) if vanished(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Per second, from two readings `elapsed` apart; `None` when either is unknown, the unit is
/// new, or the counter went backwards (the unit restarted and its cgroup is new).
fn rate(before: Option<u64>, now: u64, elapsed: Duration) -> Option<f64> {
    let before = before?;
    if before == UNKNOWN || now == UNKNOWN || now < before || elapsed.is_zero() {
        return None;
    }
    Some((now - before) as f64 / elapsed.as_secs_f64())
}

fn figure(v: u64) -> String {
    if v == UNKNOWN {
        "-".into()
    } else {
        v.to_string()
    }
}

fn bytes(v: u64) -> String {
    if v == UNKNOWN {
        "-".into()
    } else {
        human_bytes(v)
    }
}

/// One frame: the units of `now`, CPU-heaviest first, with rates against `before` (taken
/// `elapsed` earlier).
pub fn frame(before: &[Sample], now: &[Sample], elapsed: Duration) -> String {
    let before: HashMap<&str, &Sample> = before.iter().map(|s| (s.name.as_str(), s)).collect();
    struct Row<'a> {
        s: &'a Sample,
        cpu: Option<f64>,
        read: Option<f64>,
        write: Option<f64>,
    }
    let mut rows: Vec<Row<'_>> = now
        .iter()
        .map(|s| {
            let b = before.get(s.name.as_str());
            Row {
                s,
                // ns of CPU per s of wall time, as a percentage of one CPU.
                cpu: rate(b.map(|b| b.cpu_usage_nsec), s.cpu_usage_nsec, elapsed)
                    .map(|ns_per_s| ns_per_s / 1e7),
                read: rate(b.map(|b| b.io_read_bytes), s.io_read_bytes, elapsed),
                write: rate(b.map(|b| b.io_write_bytes), s.io_write_bytes, elapsed),
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        let key = |r: &Row<'_>| r.cpu.unwrap_or(-1.0);
        key(b)
            .total_cmp(&key(a))
            .then_with(|| a.s.name.cmp(&b.s.name))
    });
    let w = now.iter().map(|s| s.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<w$} {:>6} {:>6} {:>8} {:>8} {:>8}\n",
        "UNIT", "TASKS", "%CPU", "MEMORY", "INPUT/s", "OUTPUT/s"
    );
    let per_second = |r: Option<f64>| r.map_or("-".into(), |v| human_bytes(v.round() as u64));
    for r in rows {
        let _ = writeln!(
            out,
            "{:<w$} {:>6} {:>6} {:>8} {:>8} {:>8}",
            r.s.name,
            figure(r.s.tasks_current),
            r.cpu.map_or("-".into(), |c| format!("{c:.1}")),
            bytes(r.s.memory_current),
            per_second(r.read),
            per_second(r.write),
        );
    }
    out
}

/// Samples, waits `delay`, and prints a frame, `iterations` times (forever with `None`).
pub async fn run(
    client: &Client,
    delay: Duration,
    iterations: Option<u32>,
    out: &mut impl Write,
) -> Result<(), TopError> {
    let terminal = io::stdout().is_terminal();
    let mut before = sample(client).await?;
    let mut then = Instant::now();
    let mut shown: u32 = 0;
    while iterations.is_none_or(|n| shown < n) {
        tokio::time::sleep(delay).await;
        let now = sample(client).await?;
        let at = Instant::now();
        let text = frame(&before, &now, at - then);
        if terminal {
            write!(out, "\x1b[H\x1b[2J{text}")?;
        } else {
            if shown > 0 {
                writeln!(out)?;
            }
            write!(out, "{text}")?;
        }
        out.flush()?;
        before = now;
        then = at;
        shown += 1;
    }
    Ok(())
}

/// `--delay`: seconds (`0.5`, `2`) or a duration with a unit (`500ms`, `1s`).
pub fn parse_delay(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("{s:?} is not a positive number of seconds")),
        Err(_) => humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?,
    };
    if d.is_zero() {
        return Err("the delay must be more than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str, cpu: u64, mem: u64, tasks: u64, r: u64, w: u64) -> Sample {
        Sample {
            name: name.into(),
            cpu_usage_nsec: cpu,
            memory_current: mem,
            tasks_current: tasks,
            io_read_bytes: r,
            io_write_bytes: w,
        }
    }

    #[test]
    fn units_are_sorted_by_cpu_with_rates_per_second() {
        let before = [
            s("idle.service", 1_000, 4096, 1, 0, 0),
            s("busy.service", 0, 1 << 20, 2, 0, 0),
            s("half.service", 0, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN),
        ];
        let now = [
            s("idle.service", 1_000, 4096, 1, 0, 0),
            s("busy.service", 2_000_000_000, 1 << 20, 2, 2 << 20, 4096),
            s(
                "half.service",
                1_000_000_000,
                UNKNOWN,
                UNKNOWN,
                UNKNOWN,
                UNKNOWN,
            ),
            s("new.service", 5, 0, 1, 0, 0),
        ];
        let text = frame(&before, &now, Duration::from_secs(2));
        let expected = "\
UNIT          TASKS   %CPU   MEMORY  INPUT/s OUTPUT/s
busy.service      2  100.0       1M       1M       2K
half.service      -   50.0        -        -        -
idle.service      1    0.0       4K       0B       0B
new.service       1      -       0B        -        -
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn a_counter_that_went_backwards_has_no_rate() {
        assert_eq!(rate(Some(10), 5, Duration::from_secs(1)), None);
        assert_eq!(rate(Some(UNKNOWN), 5, Duration::from_secs(1)), None);
        assert_eq!(rate(Some(5), 15, Duration::from_secs(2)), Some(5.0));
    }

    #[test]
    fn delays_parse_as_seconds_or_durations() {
        assert_eq!(parse_delay("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_delay("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_delay("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_delay("0").is_err());
        assert!(parse_delay("-1").is_err());
        assert!(parse_delay("soon").is_err());
    }
}
