//! corral's benchmark (issue 8): the real `corrald` on a delegated cgroup of this host, driven
//! over its private D-Bus socket, every figure printed beside a floor measured in the same run.
//!
//! Run as root with `scripts/bench` (or `cargo bench --bench corral`); `-- --help` lists the
//! knobs. It prints a Markdown table (and writes it to `--out FILE`), and leaves nothing behind:
//! every daemon runs in a fresh child of the host's cgroup2 mount (`corral-bench-PID-LABEL`)
//! with its own temporary unit, runtime and log directories, is stopped with SIGTERM (which
//! stops its units), and the cgroup is then killed (`cgroup.kill`) and removed — also when the
//! benchmark fails half-way. Cgroups left by a benchmark that was killed are removed at the next
//! start.
//!
//! What is measured (percentiles are nearest-rank):
//! - **start latency**: `StartUnit` → its `JobRemoved` (`done`, i.e. `active`) for a `simple`
//!   service running `/bin/sleep 1000`, start then stop, repeated; and a whole `corralctl start`
//!   process. Floor: fork + exec + wait of `/bin/true` (`std::process::Command`), and a D-Bus
//!   `Peer.Ping` round trip on the same socket.
//! - **burst**: N services (pre-written unit files, or `StartTransientUnit` when the daemon has
//!   it) started at once until every `JobRemoved` is in, then stopped until every cgroup is gone.
//!   Floor: the benchmark itself making N cgroups and spawning `/bin/sleep` into each, then
//!   SIGTERM, wait and rmdir.
//! - **memory**: RSS and PSS (`/proc/PID/smaps_rollup`) of the daemon idle with 10, 1000 and
//!   10 000 loaded units, and with 100 and 1000 running services. Floor: an idle `/bin/sleep`.
//! - **idle cost**: CPU time (`/proc/PID/stat` utime + stime, in ticks, and the threads'
//!   `schedstat` in ns) and context switches (wakeups) over 30 s with 100 running services and a
//!   client connected.
//! - **D-Bus**: `Properties.Get("ActiveState")` per second (on an inactive and on a running
//!   unit), `ListUnits` with 10 000 units, and a client's connection set-up with 10 000 units.
//! - **reload**: `Reload` with 1000 unit files when the daemon has it; otherwise daemon exec →
//!   socket bound (which includes loading the files), said so in the table.
//!
//! The unit the start loop uses sets `start-limit = { interval = "0s" }` (no start limit):
//! the default (5 starts in 10 s) would fail the sixth start.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use compare::Init;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use zbus::Connection;
use zbus::zvariant::OwnedValue;

/// The binaries measured: this build's, or others given with `--corrald`/`--corralctl` (an
/// earlier commit's, to compare before → after with the same benchmark).
static BINARIES: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();

fn corrald() -> &'static Path {
    &binaries().0
}

fn corralctl() -> &'static Path {
    &binaries().1
}

fn binaries() -> &'static (PathBuf, PathBuf) {
    BINARIES.get_or_init(|| {
        (
            env!("CARGO_BIN_EXE_corrald").into(),
            env!("CARGO_BIN_EXE_corralctl").into(),
        )
    })
}
// The VM comparison with systemd 252 (`--vm`), shared with `tests/vm_compare.rs`.
#[path = "../tests/common/compare.rs"]
mod compare;
// How corrald was linked, shared with `tests/deb.rs`.
#[path = "../tests/common/layout.rs"]
mod layout;
// Its unit tests are compiled here too (cargo bench sets cfg(test)), without a harness to run
// them.
#[allow(unused_imports)]
#[path = "../tests/common/vm.rs"]
mod vm;

const BUS_NAME: &str = "org.corral1";
const MANAGER_PATH: &str = "/org/corral1";
const MANAGER_IFACE: &str = "org.corral1.Manager";
const UNIT_IFACE: &str = "org.corral1.Unit";
/// Daemons that died of a SIGTERM sent right after their socket appeared.
static TERM_BEFORE_HANDLER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Any single wait of the benchmark; past it the run fails (and cleans up).
const WAIT: Duration = Duration::from_secs(60);

// ───────────────────────────── options ─────────────────────────────

struct Opts {
    starts: usize,
    ctl_starts: usize,
    burst: usize,
    idle_secs: u64,
    out: Option<PathBuf>,
    /// Only these parts (start, stuck, idle, burst, big, vm); all but vm when empty.
    only: Vec<String>,
    /// Boots of each PID 1 and `run` calls per boot in the VM comparison.
    boots: usize,
    runs: usize,
}

impl Opts {
    fn wants(&self, part: &str) -> bool {
        if self.only.is_empty() {
            // The VM comparison and profile take minutes of emulation: only when asked for.
            return part != "vm" && part != "vm-profile";
        }
        self.only.iter().any(|p| p == part)
    }

    fn parse() -> Result<Opts> {
        let mut o = Opts {
            starts: 300,
            ctl_starts: 50,
            burst: 1000,
            idle_secs: 30,
            out: None,
            only: Vec::new(),
            boots: 3,
            runs: 50,
        };
        let (mut daemon, mut ctl) = (None::<PathBuf>, None::<PathBuf>);
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut num = |what: &str| -> Result<u64> {
                args.next()
                    .with_context(|| format!("{what} needs a value"))?
                    .parse()
                    .with_context(|| format!("{what}: not a number"))
            };
            match a.as_str() {
                "--starts" => o.starts = num("--starts")? as usize,
                "--ctl-starts" => o.ctl_starts = num("--ctl-starts")? as usize,
                "--burst" => o.burst = num("--burst")? as usize,
                "--idle-secs" => o.idle_secs = num("--idle-secs")?,
                "--only" => o.only.push(args.next().context("--only needs a part")?),
                "--vm" => o.only.push("vm".into()),
                "--vm-profile" => o.only.push("vm-profile".into()),
                "--boots" => o.boots = num("--boots")?.max(1) as usize,
                "--runs" => o.runs = num("--runs")?.max(1) as usize,
                "--corrald" => daemon = Some(args.next().context("--corrald needs a path")?.into()),
                "--corralctl" => {
                    ctl = Some(args.next().context("--corralctl needs a path")?.into())
                }
                "--out" => o.out = Some(args.next().context("--out needs a file")?.into()),
                "--quick" => {
                    o.starts = 200;
                    o.ctl_starts = 20;
                    o.idle_secs = 5;
                }
                "-h" | "--help" => {
                    println!(
                        "corral benchmark (run as root)\n  --starts N      StartUnit cycles (300)\n  \
                         --ctl-starts N  corralctl start cycles (50)\n  --burst N       services \
                         started at once (1000)\n  --idle-secs N   idle-cost window (30)\n  \
                         --quick         200 starts, 20 ctl starts, 5 s idle\n  --out FILE      \
                         also write the table there\n  --only PART     start, stuck, idle, burst, \
                         big or vm (repeatable)\n  --vm            the VM comparison with systemd \
                         252 (only)\n  --vm-profile    PID 1's perf profile over --runs calls in that \
                         VM (only; a corrald with symbols, see docs/PERFORMANCE.md)\n  --boots N       boots of each PID 1 in it (3)\n  \
                         --runs N        `run` calls per boot in it (50)\n  --corrald PATH  \
                         measure another corrald (and --corralctl PATH)"
                    );
                    std::process::exit(0);
                }
                // `cargo bench` passes `--bench`; a filter word is ignored too.
                _ => {}
            }
        }
        if daemon.is_some() || ctl.is_some() {
            let pair = (
                daemon.unwrap_or_else(|| env!("CARGO_BIN_EXE_corrald").into()),
                ctl.unwrap_or_else(|| env!("CARGO_BIN_EXE_corralctl").into()),
            );
            for p in [&pair.0, &pair.1] {
                if !p.is_file() {
                    bail!("{}: no such file", p.display());
                }
            }
            // Nothing has read it yet: binaries() is first called after parsing.
            let _ = BINARIES.set(pair);
        }
        Ok(o)
    }
}

// ───────────────────────────── statistics and the table ─────────────────────────────

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Samples(Vec<Duration>);

impl Samples {
    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.0.clone();
        v.sort();
        v
    }
    fn p50(&self) -> Duration {
        pct(&self.sorted(), 50.0)
    }
    fn p99(&self) -> Duration {
        pct(&self.sorted(), 99.0)
    }
    fn max(&self) -> Duration {
        self.sorted().last().copied().unwrap_or_default()
    }
}

fn dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[derive(Default)]
struct Row {
    what: String,
    p50: String,
    p99: String,
    max: String,
    floor: String,
    target: String,
    verdict: String,
}

#[derive(Default)]
struct Table {
    /// Rows by section, sections in the order they first appear.
    sections: Vec<(String, Vec<Row>)>,
    /// Where rows go now; [`Table::in_section`] moves it.
    current: String,
    notes: Vec<String>,
}

impl Table {
    /// Rows from here on go under `title`.
    fn section(&mut self, title: &str) {
        self.current = title.to_string();
    }

    /// Runs `f` with rows going under `title`, then back to the current section.
    fn in_section(&mut self, title: &str, f: impl FnOnce(&mut Table)) {
        let back = std::mem::replace(&mut self.current, title.to_string());
        f(self);
        self.current = back;
    }

    fn push(&mut self, row: Row) {
        match self.sections.iter_mut().find(|(t, _)| *t == self.current) {
            Some((_, rows)) => rows.push(row),
            None => self.sections.push((self.current.clone(), vec![row])),
        }
    }

    fn timing(&mut self, what: &str, s: &Samples, floor: &str, target: Option<(Duration, &str)>) {
        let p50 = s.p50();
        let (target, verdict) = match target {
            Some((t, text)) => (text.to_string(), verdict(p50 <= t)),
            None => (String::new(), String::new()),
        };
        let row = Row {
            what: format!("{what} (n = {})", s.0.len()),
            p50: dur(p50),
            p99: dur(s.p99()),
            max: dur(s.max()),
            floor: floor.to_string(),
            target,
            verdict,
        };
        println!(
            "  {} p50 {} p99 {} max {}",
            row.what, row.p50, row.p99, row.max
        );
        self.push(row);
    }

    fn single(&mut self, what: &str, value: String, floor: &str, target: &str, verdict: String) {
        println!("  {what}: {value}");
        self.push(Row {
            what: what.to_string(),
            p50: value,
            floor: floor.to_string(),
            target: target.to_string(),
            verdict,
            ..Row::default()
        });
    }

    fn note(&mut self, n: String) {
        println!("  note: {n}");
        self.notes.push(n);
    }

    fn markdown(&self, machine: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{machine}\n");
        let _ = writeln!(
            s,
            "| figure | p50 / value | p99 | max | floor (same run) | target | |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for (title, rows) in &self.sections {
            let _ = writeln!(s, "| **{title}** | | | | | | |");
            for r in rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    r.what, r.p50, r.p99, r.max, r.floor, r.target, r.verdict
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s);
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

fn verdict(ok: bool) -> String {
    if ok {
        "met".into()
    } else {
        "**missed**".into()
    }
}

// ───────────────────────────── /proc readings ─────────────────────────────

/// (Rss, Pss) in KiB.
fn rss_pss(pid: u32) -> Result<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("Rss:"), field("Pss:")))
}

/// utime + stime in clock ticks (the whole process, every thread).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("malformed stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // After "pid (comm)": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// utime + stime of the whole process — every thread, also those that ended meanwhile (tokio's
/// blocking pool) — at the resolution of a clock tick.
fn process_cpu(pid: u32) -> Result<Duration> {
    Ok(Duration::from_nanos(
        cpu_ticks(pid)? * 1_000_000_000 / clock_ticks_per_sec(),
    ))
}

/// Per thread of a process: (CPU ns from schedstat, voluntary + involuntary context
/// switches), by thread id.
fn thread_stats(pid: u32) -> Result<HashMap<String, (u64, u64)>> {
    let mut out = HashMap::new();
    for t in fs::read_dir(format!("/proc/{pid}/task"))? {
        let t = t?;
        let path = t.path();
        let ns = fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        let mut switches = 0;
        if let Ok(s) = fs::read_to_string(path.join("status")) {
            for l in s.lines() {
                if let Some(v) = l
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    switches += v.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
        out.insert(t.file_name().to_string_lossy().into_owned(), (ns, switches));
    }
    Ok(out)
}

/// What the threads of a process did between two [`thread_stats`]: (CPU ns, context
/// switches). A thread that ended meanwhile is missed from its last reading on.
fn thread_delta(
    before: &HashMap<String, (u64, u64)>,
    after: &HashMap<String, (u64, u64)>,
) -> (u64, u64) {
    after.iter().fold((0, 0), |(ns, sw), (tid, (n1, s1))| {
        let (n0, s0) = before.get(tid).copied().unwrap_or((0, 0));
        (ns + n1.saturating_sub(n0), sw + s1.saturating_sub(s0))
    })
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

// ───────────────────────────── cgroups ─────────────────────────────

/// The host's cgroup2 mount point, from /proc/self/mountinfo.
fn cgroup2_mount() -> Result<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2")
            && let Some(mp) = left.split_whitespace().nth(4)
        {
            return Ok(PathBuf::from(mp.replace("\\040", " ")));
        }
    }
    bail!("no cgroup2 mount in /proc/self/mountinfo")
}

/// A fresh cgroup under the mount; on drop everything in it is killed and the tree removed.
struct CgRoot(PathBuf);

impl CgRoot {
    fn new(mount: &Path, label: &str) -> Result<CgRoot> {
        let dir = mount.join(format!("corral-bench-{}-{label}", std::process::id()));
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(CgRoot(dir))
    }
}

impl Drop for CgRoot {
    fn drop(&mut self) {
        kill_and_remove(&self.0);
    }
}

fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// `cgroup.kill` the tree, wait until it is unpopulated, then rmdir it deepest first.
fn kill_and_remove(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let _ = fs::write(dir.join("cgroup.kill"), "1");
    let start = Instant::now();
    while populated(dir) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(5));
    }
    fn rm(dir: &Path) {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        for _ in 0..100 {
            match fs::remove_dir(dir) {
                Ok(()) => return,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        eprintln!("warning: could not remove {}", dir.display());
    }
    rm(dir);
}

/// Removes the cgroups of earlier runs whose process is gone.
fn remove_stale(mount: &Path) {
    let Ok(rd) = fs::read_dir(mount) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("corral-bench-") else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            eprintln!(
                "removing the cgroup of an earlier run: {}",
                e.path().display()
            );
            kill_and_remove(&e.path());
        }
    }
}

// ───────────────────────────── the daemon ─────────────────────────────

/// A unit file: a `simple` service running `/bin/sleep 1000`.
fn sleep_unit(i: usize, no_start_limit: bool) -> String {
    let mut s = format!(
        "[unit]\ndescription = \"benchmark service {i}\"\n\n[service]\n\
         exec = [\"/bin/sleep\", \"1000\"]\n"
    );
    if no_start_limit {
        s.push_str("start-limit = { burst = 5, interval = \"0s\" }\n");
    }
    s
}

fn unit_files(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{prefix}{i}.service.toml"), sleep_unit(i, false)))
        .collect()
}

/// /dev/shm when it is a tmpfs (as /run is on a real system), else the temporary directory.
fn runtime_parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    // SAFETY: statfs on a NUL-terminated path into a zeroed struct we own.
    let tmpfs = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c"/dev/shm".as_ptr(), &mut st) == 0 && st.f_type == libc::TMPFS_MAGIC
    };
    if tmpfs {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

struct Daemon {
    child: Child,
    pid: u32,
    dir: tempfile::TempDir,
    _runtime: tempfile::TempDir,
    socket: PathBuf,
    /// exec → the private socket exists (units are loaded before it is bound).
    bound_after: Duration,
    // Last, so it is dropped (killed and removed) after the daemon is gone.
    root: CgRoot,
}

impl Daemon {
    fn start(mount: &Path, label: &str, units: &[(String, String)]) -> Result<Daemon> {
        let root = CgRoot::new(mount, label)?;
        let dir = tempfile::Builder::new().prefix("corral-bench-").tempdir()?;
        // RUNTIME is a tmpfs in production (/run): the state file and sockets go on one here
        // too where there is one; units and logs stay on the disk, as in /etc and /var/log.
        let runtime = tempfile::Builder::new()
            .prefix("corral-bench-run-")
            .tempdir_in(runtime_parent())?;
        let unit_dir = dir.path().join("units");
        fs::create_dir_all(&unit_dir)?;
        for (file, text) in units {
            fs::write(unit_dir.join(file), text)?;
        }
        let log = fs::File::create(dir.path().join("corrald.log"))?;
        let socket = runtime.path().join("private");
        let t0 = Instant::now();
        let mut cmd = Command::new(corrald());
        cmd.arg("--cgroup-root")
            .arg(&root.0)
            .arg("--unit-path")
            .arg(&unit_dir)
            .arg("--runtime-dir")
            .arg(runtime.path())
            .arg("--log-dir")
            .arg(dir.path().join("log"))
            .arg("--no-bus")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Should the benchmark die, the daemon gets SIGTERM (and stops its services); the
        // next run removes the cgroup.
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().context("starting corrald")?;
        let pid = child.id();
        let mut d = Daemon {
            child,
            pid,
            dir,
            _runtime: runtime,
            socket,
            bound_after: Duration::ZERO,
            root,
        };
        while !d.socket.exists() {
            if let Some(st) = d.child.try_wait()? {
                bail!(
                    "corrald exited ({st}) before binding its socket:\n{}",
                    d.log()
                );
            }
            if t0.elapsed() > WAIT {
                bail!("corrald did not bind its socket in {WAIT:?}");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        d.bound_after = t0.elapsed();
        Ok(d)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("corrald.log")).unwrap_or_default()
    }

    fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }

    fn memory(&self) -> Result<(u64, u64)> {
        rss_pss(self.pid)
    }

    fn cgroup(&self, rel: &str) -> PathBuf {
        self.root.0.join(rel)
    }

    /// SIGTERM (corrald stops every unit, then exits); SIGKILL if it takes more than `WAIT`.
    fn stop(mut self) -> Result<Duration> {
        let t0 = Instant::now();
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        loop {
            if let Some(st) = self.child.try_wait()? {
                if std::os::unix::process::ExitStatusExt::signal(&st) == Some(libc::SIGTERM) {
                    // Killed by the default action: the handler wasn't installed yet.
                    TERM_BEFORE_HANDLER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                } else if !st.success() {
                    eprintln!("corrald exited with {st}:\n{}", self.log());
                }
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > WAIT {
                bail!("corrald did not exit within {WAIT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // For a look at what the daemon said: CORRAL_BENCH_LOGS=DIR keeps every daemon's log.
        if let Some(keep) = std::env::var_os("CORRAL_BENCH_LOGS") {
            let name = self.root.0.file_name().unwrap_or_default().to_os_string();
            let to = Path::new(&keep).join(name).with_extension("log");
            let _ = fs::create_dir_all(&keep);
            let _ = fs::copy(self.dir.path().join("corrald.log"), to);
        }
    }
}

// ───────────────────────────── the D-Bus client ─────────────────────────────

/// A p2p connection to the daemon with every `JobRemoved` forwarded to a channel (the
/// connection's message queue must be drained, or zbus stops reading the socket).
struct Client {
    conn: Connection,
    jobs: mpsc::UnboundedReceiver<(u32, String, Instant)>,
    seen: HashMap<u32, (String, Instant)>,
    /// Reads the signals; it holds the connection, so a dropped client ends it to hang up.
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    async fn connect(socket: &Path) -> Result<Client> {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        let conn = zbus::connection::Builder::unix_stream(stream)
            .p2p()
            .auth_mechanism(zbus::AuthMechanism::External)
            .build()
            .await?;
        let mut stream = zbus::MessageStream::from(&conn);
        let (tx, jobs) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let h = msg.header();
                if h.message_type() == zbus::message::Type::Signal
                    && h.member().is_some_and(|m| m.as_str() == "JobRemoved")
                    && let Ok((id, _unit, result)) =
                        msg.body().deserialize::<(u32, String, String)>()
                {
                    let _ = tx.send((id, result, Instant::now()));
                }
            }
        });
        Ok(Client {
            conn,
            jobs,
            seen: HashMap::new(),
            reader,
        })
    }

    async fn manager<B, R>(&self, method: &str, body: &B) -> zbus::Result<R>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        let reply = self
            .conn
            .call_method(
                Some(BUS_NAME),
                MANAGER_PATH,
                Some(MANAGER_IFACE),
                method,
                body,
            )
            .await?;
        reply.body().deserialize()
    }

    async fn job(&self, method: &str, unit: &str) -> Result<u32> {
        self.manager::<_, u32>(method, &(unit,))
            .await
            .with_context(|| format!("{method} {unit}"))
    }

    /// Waits for the `JobRemoved` of every id; returns when the last one arrived and how many
    /// ended other than `done`.
    async fn wait_jobs(&mut self, ids: &[u32]) -> Result<(Instant, usize)> {
        let want: HashSet<u32> = ids.iter().copied().collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        while !want.iter().all(|id| self.seen.contains_key(id)) {
            match tokio::time::timeout_at(deadline, self.jobs.recv()).await {
                Ok(Some((id, result, at))) => {
                    self.seen.insert(id, (result, at));
                }
                Ok(None) => bail!("the connection to corrald closed"),
                Err(_) => {
                    let missing = want.iter().filter(|i| !self.seen.contains_key(i)).count();
                    bail!("{missing} of {} JobRemoved signals never came", want.len());
                }
            }
        }
        let mut last = None::<Instant>;
        let mut failed = 0;
        for id in &want {
            if let Some((result, at)) = self.seen.remove(id) {
                if result != "done" {
                    failed += 1;
                }
                last = Some(last.map_or(at, |l| l.max(at)));
            }
        }
        // Ids of jobs others started (corralctl) are of no interest once we are past them.
        let top = want.iter().copied().max().unwrap_or(0);
        self.seen.retain(|id, _| *id > top);
        Ok((last.unwrap_or_else(Instant::now), failed))
    }

    /// Like [`Client::wait_jobs`] for a burst, where the daemon may drop signals: after
    /// 100 ms without one, `ListUnits` says whether every unit has settled (`active` for a
    /// start, `inactive`/`failed` for a stop). Then the end is that moment (an upper bound) and
    /// the ids whose signal never came are counted as lost.
    async fn wait_burst(&mut self, ids: &[u32], names: &[String], start: bool) -> Result<Burst> {
        let want: HashSet<u32> = ids.iter().copied().collect();
        let deadline = Instant::now() + WAIT;
        let mut last = None::<Instant>;
        loop {
            if want.iter().all(|id| self.seen.contains_key(id)) {
                break;
            }
            match tokio::time::timeout(Duration::from_millis(100), self.jobs.recv()).await {
                Ok(Some((id, result, at))) => {
                    self.seen.insert(id, (result, at));
                    continue;
                }
                Ok(None) => bail!("the connection to corrald closed"),
                Err(_) => {}
            }
            let states = self.list_states().await?;
            let settled = names.iter().all(|n| {
                let s = states.get(n).map(String::as_str).unwrap_or("");
                if start {
                    s == "active" || s == "failed"
                } else {
                    s == "inactive" || s == "failed"
                }
            });
            if settled {
                last = Some(Instant::now());
                break;
            }
            if Instant::now() > deadline {
                bail!("the burst did not settle within {WAIT:?}");
            }
        }
        let mut b = Burst {
            end: Instant::now(),
            failed: 0,
            lost: 0,
        };
        let mut latest = None::<Instant>;
        for id in &want {
            match self.seen.remove(id) {
                Some((result, at)) => {
                    if result != "done" {
                        b.failed += 1;
                    }
                    latest = Some(latest.map_or(at, |l| l.max(at)));
                }
                None => b.lost += 1,
            }
        }
        b.end = last.or(latest).unwrap_or_else(Instant::now);
        let top = want.iter().copied().max().unwrap_or(0);
        self.seen.retain(|id, _| *id > top);
        Ok(b)
    }

    async fn list_states(&self) -> zbus::Result<HashMap<String, String>> {
        let rows: Vec<(
            String,
            String,
            String,
            String,
            String,
            zbus::zvariant::OwnedObjectPath,
        )> = self.manager("ListUnits", &()).await?;
        Ok(rows.into_iter().map(|r| (r.0, r.3)).collect())
    }

    async fn run_job(&mut self, method: &str, unit: &str) -> Result<()> {
        let id = self.job(method, unit).await?;
        let (_, failed) = self.wait_jobs(&[id]).await?;
        if failed > 0 {
            bail!("{method} {unit} failed");
        }
        Ok(())
    }

    async fn ping(&self) -> zbus::Result<()> {
        self.conn
            .call_method(
                Some(BUS_NAME),
                MANAGER_PATH,
                Some("org.freedesktop.DBus.Peer"),
                "Ping",
                &(),
            )
            .await
            .map(|_| ())
    }

    async fn property(&self, unit: &str, name: &str) -> zbus::Result<OwnedValue> {
        let path = format!("/org/corral1/unit/{}", escape(unit));
        let reply = self
            .conn
            .call_method(
                Some(BUS_NAME),
                path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(UNIT_IFACE, name),
            )
            .await?;
        reply.body().deserialize()
    }

    async fn list_units(&self) -> zbus::Result<usize> {
        let rows: Vec<(
            String,
            String,
            String,
            String,
            String,
            zbus::zvariant::OwnedObjectPath,
        )> = self.manager("ListUnits", &()).await?;
        Ok(rows.len())
    }
}

/// How a burst ended: when, how many jobs did not end `done`, how many `JobRemoved` signals
/// the daemon dropped.
struct Burst {
    end: Instant,
    failed: usize,
    lost: usize,
}

/// systemd's object-path escaping (DESIGN §4).
fn escape(name: &str) -> String {
    let mut s = String::new();
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() && !(i == 0 && b.is_ascii_digit()) {
            s.push(b as char);
        } else {
            let _ = write!(s, "_{b:02x}");
        }
    }
    s
}

fn is_unknown_method(e: &zbus::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("UnknownMethod") || text.contains("Unknown method")
}

// ───────────────────────────── floors ─────────────────────────────

fn floor_true(n: usize) -> Result<Samples> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let st = Command::new("/bin/true").status()?;
        v.push(t.elapsed());
        if !st.success() {
            bail!("/bin/true failed");
        }
    }
    Ok(Samples(v))
}

/// `n` × (mkdir a cgroup, fork + exec `/bin/sleep` moved into it before exec), then
/// `n` × (SIGTERM, wait, rmdir): what starting and stopping `n` services costs at least.
fn floor_burst(mount: &Path, n: usize) -> Result<(Duration, Duration)> {
    let root = CgRoot::new(mount, "floor")?;
    let t0 = Instant::now();
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let dir = root.0.join(format!("s{i}"));
        fs::create_dir(&dir)?;
        let procs = CString::new(
            dir.join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )?;
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("1000").stdin(Stdio::null()).stdout(Stdio::null());
        // SAFETY: only open/write/close (async-signal-safe) between fork and exec; the path
        // was allocated before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            });
        }
        children.push((cmd.spawn()?, dir));
    }
    let started = t0.elapsed();
    let t1 = Instant::now();
    for (c, _) in &children {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    }
    for (mut c, dir) in children {
        let _ = c.wait();
        fs::remove_dir(&dir)?;
    }
    let stopped = t1.elapsed();
    drop(root);
    Ok((started, stopped))
}

/// Busy processes, one per CPU but one (at least one), in a cgroup of their own: load for the
/// burst. Killed and removed on drop.
struct Hogs {
    count: usize,
    children: Vec<Child>,
    _root: CgRoot,
}

impl Hogs {
    fn start(mount: &Path) -> Result<Hogs> {
        let root = CgRoot::new(mount, "hogs")?;
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let count = cpus.saturating_sub(1).max(1);
        let procs = CString::new(
            root.0
                .join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )?;
        let mut children = Vec::new();
        for _ in 0..count {
            let mut cmd = Command::new("/bin/sh");
            cmd.args(["-c", "while :; do :; done"]).stdin(Stdio::null());
            let procs = procs.clone();
            // SAFETY: only open/write/close and prctl (async-signal-safe) between fork and
            // exec; the path was allocated before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(fd);
                    Ok(())
                });
            }
            children.push(cmd.spawn()?);
        }
        // Let them take their CPUs.
        std::thread::sleep(Duration::from_millis(200));
        Ok(Hogs {
            count,
            children,
            _root: root,
        })
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// RSS and PSS of an idle `/bin/sleep`.
fn floor_sleep_memory() -> Result<(u64, u64)> {
    let mut c = Command::new("/bin/sleep").arg("1000").spawn()?;
    std::thread::sleep(Duration::from_millis(50));
    let m = rss_pss(c.id());
    let _ = c.kill();
    let _ = c.wait();
    m
}

// ───────────────────────────── the runs ─────────────────────────────

struct Floors {
    true_samples: Samples,
    /// corrald exec → socket bound with 10 unit files.
    boot10: Samples,
    true_p50: Duration,
    ping_p50: Duration,
    sleep_mem: (u64, u64),
}

impl Floors {
    fn exec(&self) -> String {
        format!("fork+exec+wait /bin/true {}", dur(self.true_p50))
    }
    fn ping(&self) -> String {
        format!("Peer.Ping {}", dur(self.ping_p50))
    }
    fn mem(&self) -> String {
        format!(
            "/bin/sleep RSS {} PSS {}",
            mib(self.sleep_mem.0),
            mib(self.sleep_mem.1)
        )
    }
}

fn mem_row(t: &mut Table, what: &str, d: &Daemon, f: &Floors, target: Option<u64>) -> Result<()> {
    let (rss, pss) = d.memory()?;
    let threads = thread_stats(d.pid)?.len();
    let (target_s, verdict_s) = match target {
        Some(mb) => (
            format!("RSS ≤ {mb} MB"),
            verdict(rss * 1024 <= mb * 1_000_000),
        ),
        None => (String::new(), String::new()),
    };
    t.in_section("memory (RSS and PSS of corrald)", |t| {
        t.single(
            what,
            format!("RSS {} · PSS {} · {threads} threads", mib(rss), mib(pss)),
            &f.mem(),
            &target_s,
            verdict_s,
        );
    });
    Ok(())
}

/// What a burst took.
struct BurstResult {
    /// First call sent → the last unit settled.
    all: Duration,
    /// First call sent → every reply in.
    replied: Duration,
    failed: usize,
    lost: usize,
    /// The daemon's CPU time meanwhile (utime + stime, every thread).
    cpu: Duration,
}

/// Starts every unit of `names` at once (`StartUnit`, or `StartTransientUnit` with a unit
/// file's text) and waits until all are active.
async fn burst_start(
    c: &mut Client,
    d: &Daemon,
    names: &[String],
    transient: bool,
) -> Result<BurstResult> {
    let cpu0 = process_cpu(d.pid)?;
    let t0 = Instant::now();
    let replies = futures_util::future::join_all(names.iter().enumerate().map(|(i, n)| {
        let c = &*c;
        async move {
            if transient {
                let text = sleep_unit(i, false);
                c.manager::<_, u32>("StartTransientUnit", &(n.as_str(), text.as_str()))
                    .await
            } else {
                c.manager::<_, u32>("StartUnit", &(n.as_str(),)).await
            }
        }
    }))
    .await;
    let replied = t0.elapsed();
    let ids = replies
        .into_iter()
        .collect::<zbus::Result<Vec<u32>>>()
        .context("starting the burst")?;
    let b = c.wait_burst(&ids, names, true).await?;
    Ok(BurstResult {
        all: b.end - t0,
        replied,
        failed: b.failed,
        lost: b.lost,
        cpu: process_cpu(d.pid)?.saturating_sub(cpu0),
    })
}

/// Stops every unit of `names` at once and waits until each has settled and no cgroup of
/// theirs exists.
async fn burst_stop(c: &mut Client, d: &Daemon, names: &[String]) -> Result<BurstResult> {
    let cpu0 = process_cpu(d.pid)?;
    let t0 = Instant::now();
    let c0 = &*c;
    let replies = futures_util::future::join_all(
        names
            .iter()
            .map(|n| async move { c0.manager::<_, u32>("StopUnit", &(n.as_str(),)).await }),
    )
    .await;
    let replied = t0.elapsed();
    let ids = replies
        .into_iter()
        .collect::<zbus::Result<Vec<u32>>>()
        .context("stopping the burst")?;
    let b = c.wait_burst(&ids, names, false).await?;
    let dirs: Vec<PathBuf> = names
        .iter()
        .map(|n| d.cgroup(&format!("system.slice/{n}")))
        .collect();
    while dirs.iter().any(|p| p.exists()) {
        if t0.elapsed() > WAIT {
            bail!("cgroups still there {WAIT:?} after the stop");
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    Ok(BurstResult {
        all: t0.elapsed().max(b.end - t0),
        replied,
        failed: b.failed,
        lost: b.lost,
        cpu: process_cpu(d.pid)?.saturating_sub(cpu0),
    })
}

/// The rows of one burst: the time (with the 1 s target for starts), the daemon's CPU time,
/// and what went wrong.
fn burst_rows(t: &mut Table, what: &str, b: &BurstResult, floor: &str, target: bool) {
    let lost = if b.lost > 0 {
        format!(
            " (≤: {} JobRemoved signals dropped by the daemon; settled per ListUnits)",
            b.lost
        )
    } else {
        String::new()
    };
    let (target_s, verdict_s) = if target {
        ("≤ 1 s", verdict(b.all <= Duration::from_secs(1)))
    } else {
        ("", String::new())
    };
    t.single(
        what,
        format!("{}{lost}", dur(b.all)),
        floor,
        target_s,
        verdict_s,
    );
    t.single(
        "… every reply in · corrald CPU time",
        format!("{} · {}", dur(b.replied), dur(b.cpu)),
        "",
        "",
        String::new(),
    );
    if b.failed > 0 {
        t.note(format!("{what}: {} jobs did not end `done`", b.failed));
    }
}

/// Sequential property reads for `window`: (reads per second, latencies).
async fn property_reads(c: &Client, unit: &str, window: Duration) -> Result<(f64, Samples)> {
    let mut v = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < window {
        let t = Instant::now();
        let value = c.property(unit, "ActiveState").await?;
        v.push(t.elapsed());
        std::hint::black_box(value);
    }
    Ok((v.len() as f64 / t0.elapsed().as_secs_f64(), Samples(v)))
}

async fn pings(c: &Client, n: usize) -> Result<Samples> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.ping().await?;
        v.push(t.elapsed());
    }
    Ok(Samples(v))
}

async fn run(opts: &Opts, mount: &Path, t: &mut Table) -> Result<()> {
    // ── floors ──
    println!("floors …");
    let true_samples = floor_true(opts.starts.max(200))?;
    let sleep_mem = floor_sleep_memory()?;
    let mut boot10 = Vec::new();
    for _ in 0..5 {
        let d = Daemon::start(mount, "boot10", &unit_files("b", 10))?;
        boot10.push(d.bound_after);
        d.stop()?;
    }
    let mut f = Floors {
        true_p50: true_samples.p50(),
        true_samples,
        boot10: Samples(boot10),
        ping_p50: Duration::ZERO,
        sleep_mem,
    };

    if opts.wants("start") {
        small(opts, mount, t, &mut f).await?;
    }
    if opts.wants("stuck") {
        stuck(opts, mount, t, &mut f).await?;
    }
    if opts.wants("idle") {
        idle(opts, mount, t, &mut f).await?;
    }
    if opts.wants("burst") {
        burst(opts, mount, t, &mut f).await?;
    }
    if opts.wants("big") {
        big(mount, t, &mut f).await?;
    }
    if opts.wants("vm") {
        vm_compare(opts, t)?;
    }
    if opts.wants("vm-profile") {
        vm_profile(opts)?;
    }
    Ok(())
}

/// PID 1's profile over `runs` calls in the comparison's corral VM, printed as perf gives it
/// (inclusive shares by function); no figure for the table.
fn vm_profile(opts: &Opts) -> Result<()> {
    let Some(image) = compare::profile_image(corrald(), corralctl(), opts.runs) else {
        bail!("the VM profile needs perf (apt-get install linux-perf)");
    };
    let report = std::panic::catch_unwind(|| compare::profile(&image))
        .map_err(|_| anyhow::anyhow!("the profiled boot failed (its console is above)"))?;
    println!(
        "PID 1 in the VM over {} `run --wait /bin/true` calls ({}), inclusive shares:\n{report}",
        opts.runs,
        corrald().display()
    );
    Ok(())
}

/// corral against systemd 252 as PID 1 of the same VM (`tests/common/compare.rs`): boots of
/// each in turn, so that both see the same load, and of the floor (busybox `sh` as PID 1
/// forking the same sleeps); medians, and every boot's figure.
fn vm_compare(opts: &Opts, t: &mut Table) -> Result<()> {
    if !compare::systemd_available() {
        bail!("the VM comparison needs systemd 252 (/lib/systemd/systemd, systemd-run)");
    }
    let load = loadavg();
    // The floor last: the figures' ratios are corral's (first) over systemd's (second).
    let images = [Init::Corral, Init::Systemd, Init::Floor].map(|init| {
        (
            init,
            compare::image(init, corrald(), corralctl(), opts.runs),
        )
    });
    let mut boots: Vec<(Init, Vec<compare::Boot>)> =
        images.iter().map(|(init, _)| (*init, Vec::new())).collect();
    for round in 0..opts.boots {
        for ((init, image), (_, done)) in images.iter().zip(boots.iter_mut()) {
            println!("VM boot {}/{} of {} …", round + 1, opts.boots, init.name());
            let boot = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                compare::boot(*init, image)
            }))
            .map_err(|_| {
                anyhow::anyhow!("the {} boot failed (its console is above)", init.name())
            })?;
            let counted = *init != Init::Floor;
            if (counted && boot.sleeps != compare::SERVICES) || boot.failed > 0 {
                bail!(
                    "{}: {} of {} services ran, {} of {} run calls failed",
                    init.name(),
                    boot.sleeps,
                    compare::SERVICES,
                    boot.failed,
                    boot.runs
                );
            }
            done.push(boot);
        }
    }
    let medians = |pick: fn(&compare::Boot) -> Duration| -> Vec<(Duration, String)> {
        boots
            .iter()
            .map(|(_, b)| {
                let s = Samples(b.iter().map(pick).collect());
                let all: Vec<String> = s.0.iter().map(|d| dur(*d)).collect();
                (s.p50(), all.join(", "))
            })
            .collect()
    };
    let title = format!(
        "VM: corral vs systemd 252, same kernel and VM (QEMU TCG, 2 vCPUs; median of {} boots)",
        opts.boots
    );
    t.section(&title);
    /// A figure of a boot: what it is, how to read it, and the target ratio corral ÷ systemd.
    type Figure = (
        &'static str,
        fn(&compare::Boot) -> Duration,
        Option<(f64, &'static str)>,
    );
    let figures: [Figure; 4] = [
        (
            "`/init` → the unit after 20 `/bin/sleep` services runs",
            |b| b.to_ready,
            Some((1.0 / 3.0, "corral ≤ ⅓ of systemd")),
        ),
        (
            "PID 1 CPU per `run --wait /bin/true` (utime + stime)",
            |b| b.cpu_per_run(),
            Some((0.25, "corral ≤ ¼ of systemd")),
        ),
        (
            "PID 1 CPU at that point (the kernel's own start-up as PID 1 included)",
            |b| b.boot_cpu,
            None,
        ),
        (
            "wall time per `run --wait /bin/true` in the guest",
            |b| b.run_wall / b.runs.max(1) as u32,
            None,
        ),
    ];
    for (i, (what, pick, target)) in figures.into_iter().enumerate() {
        let m = medians(pick);
        for ((init, _), (median, all)) in boots.iter().zip(&m) {
            // The floor makes no `run` calls: only its boot is a figure.
            if *init == Init::Floor && i > 0 {
                continue;
            }
            t.single(
                &format!("{what}: {}", init.name()),
                format!("{} ({all})", dur(*median)),
                "",
                "",
                String::new(),
            );
        }
        let ratio = m[0].0.as_secs_f64() / m[1].0.as_secs_f64().max(1e-9);
        let (target_s, verdict_s) = match target {
            Some((limit, text)) => (text.to_string(), verdict(ratio <= limit)),
            None => (String::new(), String::new()),
        };
        t.single(
            "… corral ÷ systemd",
            format!("{ratio:.2}"),
            "",
            &target_s,
            verdict_s,
        );
    }
    t.note(format!(
        "VM comparison: {} `run` calls per boot; load average {load} before it, {} after",
        opts.runs,
        loadavg()
    ));
    Ok(())
}

/// 10 units: idle memory, start latency, corralctl, property reads.
async fn small(opts: &Opts, mount: &Path, t: &mut Table, f: &mut Floors) -> Result<()> {
    println!("daemon with 10 units …");
    let mut units = unit_files("u", 9);
    units.push(("bench.service.toml".into(), sleep_unit(0, true)));
    let d = Daemon::start(mount, "10", &units)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    mem_row(t, "idle, 10 units loaded, no client yet", &d, f, Some(4))?;
    let mut c = Client::connect(&d.socket).await?;
    let ping = pings(&c, 2000).await?;
    f.ping_p50 = ping.p50();

    t.section("start latency");
    t.timing("floor: fork+exec+wait /bin/true", &f.true_samples, "", None);
    t.timing("floor: D-Bus Peer.Ping round trip", &ping, "", None);
    let (mut starts, mut replies, mut stops) = (Vec::new(), Vec::new(), Vec::new());
    let mut bad_stops = 0;
    let cpu0 = thread_stats(d.pid)?;
    let ticks0 = process_cpu(d.pid)?;
    // CORRAL_BENCH_TRACE=FILE: per start, when it was sent (wall clock, µs since the epoch),
    // and when its reply and its JobRemoved came (µs later) — to lay beside the daemon's log.
    let mut trace = String::new();
    for _ in 0..opts.starts {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let t0 = Instant::now();
        let id = c.job("StartUnit", "bench.service").await?;
        replies.push(t0.elapsed());
        let (at, failed) = c.wait_jobs(&[id]).await?;
        let _ = writeln!(
            trace,
            "{},{},{}",
            wall.as_micros(),
            replies.last().map_or(0, Duration::as_micros),
            (at - t0).as_micros()
        );
        if failed > 0 {
            bail!("a start of bench.service failed:\n{}", d.log());
        }
        starts.push(at - t0);
        let t1 = Instant::now();
        let id = c.job("StopUnit", "bench.service").await?;
        let (at, failed) = c.wait_jobs(&[id]).await?;
        stops.push(at - t1);
        bad_stops += failed;
    }
    if let Some(path) = std::env::var_os("CORRAL_BENCH_TRACE") {
        fs::write(path, &trace)?;
    }
    let cpu_per_cycle = thread_delta(&cpu0, &thread_stats(d.pid)?).0 / opts.starts.max(1) as u64;
    let stat_per_cycle = process_cpu(d.pid)?.saturating_sub(ticks0) / opts.starts.max(1) as u32;
    t.timing(
        "StartUnit → JobRemoved done (active), `simple` /bin/sleep",
        &Samples(starts),
        &f.exec(),
        Some((Duration::from_micros(1500), "p50 ≤ 1.5 ms")),
    );
    t.timing(
        "… of which StartUnit's reply (job queued)",
        &Samples(replies),
        &f.ping(),
        None,
    );
    t.timing(
        "StopUnit → JobRemoved done (cgroup removed)",
        &Samples(stops),
        &f.exec(),
        None,
    );
    t.single(
        "corrald CPU time per start + stop cycle (schedstat of live threads · utime + stime)",
        format!(
            "{} · {}",
            dur(Duration::from_nanos(cpu_per_cycle)),
            dur(stat_per_cycle)
        ),
        "",
        "",
        String::new(),
    );
    let addr = d.address();
    let mut ctl = Vec::new();
    let mut ctl_version = Vec::new();
    for _ in 0..opts.ctl_starts {
        let t0 = Instant::now();
        let st = Command::new(corralctl())
            .args(["--address", &addr, "start", "bench.service"])
            .stdout(Stdio::null())
            .status()?;
        ctl.push(t0.elapsed());
        if !st.success() {
            bail!("corralctl start failed ({st})");
        }
        let id = c.job("StopUnit", "bench.service").await?;
        bad_stops += c.wait_jobs(&[id]).await?.1;
        let t0 = Instant::now();
        Command::new(corralctl())
            .arg("--version")
            .stdout(Stdio::null())
            .status()?;
        ctl_version.push(t0.elapsed());
    }
    t.timing(
        "`corralctl start` process, exec → exit",
        &Samples(ctl),
        &f.exec(),
        None,
    );
    t.timing(
        "floor: `corralctl --version` process",
        &Samples(ctl_version),
        "",
        None,
    );
    if bad_stops > 0 {
        t.note(format!(
            "{bad_stops} of {} stops did not end `done` (they hung until stop-timeout: see \
             docs/PERFORMANCE.md, \"lost cgroup-empty event\")",
            opts.starts + opts.ctl_starts
        ));
    }

    t.section("D-Bus");
    let (rate, lat) = property_reads(&c, "u1.service", Duration::from_secs(1)).await?;
    t.single(
        "Get(ActiveState) of an inactive unit, sequential",
        format!(
            "{rate:.0}/s · p50 {} · p99 {}",
            dur(lat.p50()),
            dur(lat.p99())
        ),
        &format!("{} = {:.0}/s", f.ping(), 1.0 / f.ping_p50.as_secs_f64()),
        "",
        String::new(),
    );
    c.run_job("StartUnit", "bench.service").await?;
    let (rate, lat) = property_reads(&c, "bench.service", Duration::from_secs(1)).await?;
    t.single(
        "Get(ActiveState) of a running unit, sequential",
        format!(
            "{rate:.0}/s · p50 {} · p99 {}",
            dur(lat.p50()),
            dur(lat.p99())
        ),
        &format!("{} = {:.0}/s", f.ping(), 1.0 / f.ping_p50.as_secs_f64()),
        "",
        String::new(),
    );
    c.run_job("StopUnit", "bench.service").await?;

    drop(c);
    d.stop()?;
    Ok(())
}

/// How long a call may take in the stuck-exec part before it counts as stalled.
const STALL: Duration = Duration::from_secs(3);

/// Start + stop cycles of `bench.service`, each step within [`STALL`]: the start latencies,
/// or `None` when a step stalled.
async fn start_cycles(c: &mut Client, n: usize) -> Result<Option<Samples>> {
    let mut starts = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let cycle = async {
            let id = c.job("StartUnit", "bench.service").await?;
            let (at, failed) = c.wait_jobs(&[id]).await?;
            if failed > 0 {
                bail!("a start of bench.service failed");
            }
            let id = c.job("StopUnit", "bench.service").await?;
            c.wait_jobs(&[id]).await?;
            Ok(at - t0)
        };
        match tokio::time::timeout(STALL, cycle).await {
            Ok(r) => starts.push(r?),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(Samples(starts)))
}

/// Starts served while one unit's exec is stuck: `hang.service`'s cgroup is frozen before its
/// start (as `tests/vm/engine/engine.sh` does), so its child can never exec; meanwhile other
/// starts go on. A daemon whose loop waits for the exec stalls: then the cgroup is thawed after
/// [`STALL`] to let it go on, and the row says so.
async fn stuck(opts: &Opts, mount: &Path, t: &mut Table, f: &mut Floors) -> Result<()> {
    println!("starts while an exec is stuck …");
    let hang = "[unit]\ndescription = \"its exec never happens\"\n\n[service]\n\
                exec = [\"/bin/sleep\", \"1000\"]\nstart-timeout = \"5min\"\n";
    let units = vec![
        ("bench.service.toml".to_string(), sleep_unit(0, true)),
        ("hang.service.toml".to_string(), hang.to_string()),
    ];
    let d = Daemon::start(mount, "stuck", &units)?;
    let mut c = Client::connect(&d.socket).await?;
    if f.ping_p50.is_zero() {
        f.ping_p50 = pings(&c, 2000).await?.p50();
    }
    let n = (opts.starts / 4).max(20);
    t.section("starts while one exec is stuck");
    let Some(free) = start_cycles(&mut c, n).await? else {
        bail!("start + stop of bench.service took over {STALL:?} with nothing stuck");
    };
    let frozen = d.cgroup("system.slice/hang.service");
    fs::create_dir_all(&frozen)?;
    fs::write(frozen.join("cgroup.freeze"), "1")?;
    let thaw = || fs::write(frozen.join("cgroup.freeze"), "0");
    let t0 = Instant::now();
    let hang_job = tokio::time::timeout(STALL, c.job("StartUnit", "hang.service")).await;
    let hang_reply = t0.elapsed();
    let mut stalled = hang_job.is_err();
    let stuck_starts = if stalled {
        None
    } else {
        start_cycles(&mut c, n).await?
    };
    stalled |= stuck_starts.is_none();
    let mut pings_stuck = None;
    if !stalled {
        pings_stuck = tokio::time::timeout(STALL, pings(&c, 200)).await.ok();
    }
    let state = if stalled {
        String::new()
    } else {
        format!(
            "; hang.service meanwhile {}",
            c.list_states()
                .await?
                .get("hang.service")
                .map_or("?", String::as_str)
        )
    };
    t.timing("StartUnit → active, nothing stuck", &free, &f.exec(), None);
    t.single(
        "StartUnit of hang.service (cgroup frozen) → its reply",
        if hang_job.is_err() {
            format!("no reply in {}", dur(STALL))
        } else {
            dur(hang_reply)
        },
        &f.ping(),
        "",
        String::new(),
    );
    match (&stuck_starts, stalled) {
        (Some(s), false) => t.timing(
            &format!("StartUnit → active while hang.service's exec is stuck{state}"),
            s,
            &format!("nothing stuck {}", dur(free.p50())),
            None,
        ),
        _ => t.single(
            "StartUnit → active while hang.service's exec is stuck",
            format!(
                "**stalled**: no answer in {} — the event loop waits for the exec",
                dur(STALL)
            ),
            &format!("nothing stuck {}", dur(free.p50())),
            "",
            String::new(),
        ),
    }
    if let Some(Ok(p)) = pings_stuck {
        t.timing("Peer.Ping while it is stuck", &p, &f.ping(), None);
    }
    if stalled {
        // Let the stalled daemon go on, so that it can be stopped.
        thaw()?;
        t.note(format!(
            "the stuck-exec daemon stalled; hang.service's cgroup was thawed after {} to let \
             it go on",
            dur(STALL)
        ));
    } else {
        let t1 = Instant::now();
        c.run_job("StopUnit", "hang.service").await.ok();
        t.single(
            "StopUnit of the stuck hang.service → inactive",
            dur(t1.elapsed()),
            "",
            "",
            String::new(),
        );
    }
    drop(c);
    let _ = thaw();
    d.stop()?;
    Ok(())
}

/// 100 running services: memory, and the idle cost.
async fn idle(opts: &Opts, mount: &Path, t: &mut Table, f: &mut Floors) -> Result<()> {
    println!("daemon with 100 running services …");
    let d = Daemon::start(mount, "100", &unit_files("s", 100))?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let base_threads = thread_stats(d.pid)?.len();
    let mut c = Client::connect(&d.socket).await?;
    let names: Vec<String> = (0..100).map(|i| format!("s{i}.service")).collect();
    let b = burst_start(&mut c, &d, &names, false).await?;
    if b.failed > 0 {
        bail!("{} of 100 services failed to start:\n{}", b.failed, d.log());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    mem_row(
        t,
        "100 services running (100 loaded, 1 client)",
        &d,
        f,
        None,
    )?;
    // Threads that did the burst's work off the loop (tokio's blocking pool) end once they
    // have been idle for a while, each waking once to do so: after that the daemon is idle.
    let settle = Instant::now();
    let stats_s = thread_stats(d.pid)?;
    let ticks_s = cpu_ticks(d.pid)?;
    let mut now = stats_s.clone();
    while now.len() > base_threads && settle.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = thread_stats(d.pid)?;
    }
    let (_, live_switches) = thread_delta(&stats_s, &now);
    let settle_ticks = cpu_ticks(d.pid)?.saturating_sub(ticks_s);
    let settled = format!(
        "{} → {} threads in {:.1} s · {settle_ticks} ticks · {live_switches} wake-ups of the \
         threads left",
        stats_s.len(),
        now.len(),
        settle.elapsed().as_secs_f64(),
    );
    t.in_section("idle cost", |t| {
        t.single(
            "after the 100 starts: the threads of the burst end (each wakes once to end)",
            settled,
            "",
            "",
            String::new(),
        )
    });
    let stats0 = thread_stats(d.pid)?;
    let ticks0 = cpu_ticks(d.pid)?;
    println!("idle for {} s …", opts.idle_secs);
    tokio::time::sleep(Duration::from_secs(opts.idle_secs)).await;
    let ticks = cpu_ticks(d.pid)? - ticks0;
    let stats1 = thread_stats(d.pid)?;
    let (idle_ns, idle_switches) = thread_delta(&stats0, &stats1);
    let threads = format!("{} → {}", stats0.len(), stats1.len());
    t.section("idle cost");
    t.single(
        &format!(
            "CPU time over {} s, 100 services running, 1 client",
            opts.idle_secs
        ),
        format!(
            "{ticks} ticks (1/{} s) · {} µs schedstat",
            clock_ticks_per_sec(),
            idle_ns / 1000
        ),
        "0",
        "0 ticks",
        verdict(ticks == 0),
    );
    t.single(
        &format!(
            "wakeups (context switches, {threads} threads) over {} s",
            opts.idle_secs
        ),
        format!("{idle_switches}"),
        "0",
        "",
        String::new(),
    );
    drop(c);
    d.stop()?;
    Ok(())
}

/// 1000 units: daemon start time (the reload stand-in), idle memory, Reload, the burst.
async fn burst(opts: &Opts, mount: &Path, t: &mut Table, f: &mut Floors) -> Result<()> {
    println!("daemon with {} units …", opts.burst);
    let files = unit_files("b", opts.burst);
    let mut bound_1000 = Vec::new();
    for _ in 0..4 {
        let d = Daemon::start(mount, "boot1000", &files)?;
        bound_1000.push(d.bound_after);
        d.stop()?;
    }
    let d = Daemon::start(mount, "1000", &files)?;
    bound_1000.push(d.bound_after);
    tokio::time::sleep(Duration::from_millis(300)).await;
    mem_row(
        t,
        &format!("idle, {} units loaded, no client yet", opts.burst),
        &d,
        f,
        None,
    )?;
    let mut c = Client::connect(&d.socket).await?;
    if f.ping_p50.is_zero() {
        f.ping_p50 = pings(&c, 2000).await?.p50();
    }

    t.section("reload");
    let mut reloads = Vec::new();
    let mut reload_missing = false;
    for _ in 0..10 {
        let t0 = Instant::now();
        match c.manager::<_, Vec<(String, String)>>("Reload", &()).await {
            Ok(errors) => {
                reloads.push(t0.elapsed());
                if !errors.is_empty() {
                    t.note(format!("Reload reported {} errors", errors.len()));
                }
            }
            Err(e) if is_unknown_method(&e) => {
                reload_missing = true;
                break;
            }
            Err(e) => bail!("Reload: {e}"),
        }
    }
    if !reload_missing {
        t.timing(
            &format!("Reload with {} unit files", opts.burst),
            &Samples(reloads),
            &f.ping(),
            Some((Duration::from_millis(50), "≤ 50 ms")),
        );
    }
    t.timing(
        &format!(
            "daemon exec → socket bound, {} unit files{}",
            opts.burst,
            if reload_missing {
                " (no `Reload` method yet: the closest figure)"
            } else {
                ""
            }
        ),
        &Samples(bound_1000),
        &format!("same with 10 files {}", dur(f.boot10.p50())),
        if reload_missing {
            Some((Duration::from_millis(50), "≤ 50 ms (reload)"))
        } else {
            None
        },
    );

    // Transient units, when the daemon has them.
    let probe = c
        .manager::<_, u32>(
            "StartTransientUnit",
            &("probe-t.service", sleep_unit(0, false)),
        )
        .await;
    let transient = match probe {
        Ok(id) => {
            c.wait_jobs(&[id]).await?;
            c.run_job("StopUnit", "probe-t.service").await?;
            true
        }
        Err(e) if is_unknown_method(&e) => false,
        Err(e) => {
            t.note(format!(
                "StartTransientUnit failed: {e}; burst uses unit files"
            ));
            false
        }
    };
    t.section(&format!("burst of {}", opts.burst));
    println!("burst floor …");
    let (floor_up, floor_down) = floor_burst(mount, opts.burst)?;
    println!("burst …");
    let names: Vec<String> = (0..opts.burst).map(|i| format!("b{i}.service")).collect();
    let up = burst_start(&mut c, &d, &names, false).await?;
    burst_rows(
        t,
        &format!(
            "{} × StartUnit at once → all active (unit files)",
            opts.burst
        ),
        &up,
        &format!(
            "mkdir + fork/exec into cgroup ×{}: {}",
            opts.burst,
            dur(floor_up)
        ),
        true,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    mem_row(
        t,
        &format!("{} services running (1 client)", opts.burst),
        &d,
        f,
        None,
    )?;
    let down = burst_stop(&mut c, &d, &names).await?;
    burst_rows(
        t,
        &format!("{} × StopUnit at once → all cgroups gone", opts.burst),
        &down,
        &format!(
            "SIGTERM + wait + rmdir ×{}: {}",
            opts.burst,
            dur(floor_down)
        ),
        false,
    );
    // The same burst with the other CPUs busy: one spinning process per CPU but one.
    {
        let hogs = Hogs::start(mount)?;
        println!("burst under load ({} busy processes) …", hogs.count);
        let (floor_loaded, _) = floor_burst(mount, opts.burst)?;
        let up = burst_start(&mut c, &d, &names, false).await?;
        burst_rows(
            t,
            &format!(
                "{} × StartUnit at once → all active, {} other CPU(s) busy",
                opts.burst, hogs.count
            ),
            &up,
            &format!("the same floor, loaded: {}", dur(floor_loaded)),
            false,
        );
        drop(hogs);
        let down = burst_stop(&mut c, &d, &names).await?;
        if down.failed > 0 {
            t.note(format!(
                "{} stops after the loaded burst failed",
                down.failed
            ));
        }
    }
    if transient {
        let dt = Daemon::start(mount, "transient", &[])?;
        let mut ct = Client::connect(&dt.socket).await?;
        let names: Vec<String> = (0..opts.burst).map(|i| format!("t{i}.service")).collect();
        let up = burst_start(&mut ct, &dt, &names, true).await?;
        burst_rows(
            t,
            &format!("{} × StartTransientUnit at once → all active", opts.burst),
            &up,
            &dur(floor_up),
            true,
        );
        let down = burst_stop(&mut ct, &dt, &names).await?;
        burst_rows(
            t,
            "… stopped → all cgroups gone",
            &down,
            &dur(floor_down),
            false,
        );
        let lagged = dt.log().matches("missed").count();
        if lagged > 0 {
            t.note(format!(
                "the transient burst's corrald logged {lagged} 'missed notifications' warnings"
            ));
        }
        drop(ct);
        dt.stop()?;
    } else {
        t.note(
            "no `StartTransientUnit` yet: the burst starts pre-written unit files with StartUnit"
                .into(),
        );
    }
    let lagged = d.log().matches("missed").count();
    if lagged > 0 {
        t.note(format!(
            "corrald logged {lagged} 'missed notifications' warnings during the burst"
        ));
    }
    drop(c);
    d.stop()?;
    Ok(())
}

/// 10 000 units: memory, connection cost, ListUnits, property reads.
async fn big(mount: &Path, t: &mut Table, f: &mut Floors) -> Result<()> {
    println!("daemon with 10 000 units …");
    let d = Daemon::start(mount, "10000", &unit_files("m", 10_000))?;
    let bound = d.bound_after;
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.section("D-Bus, 10 000 units");
    mem_row(
        t,
        "idle, 10 000 units loaded, no client yet",
        &d,
        f,
        Some(30),
    )?;
    let mut connects = Vec::new();
    for _ in 0..3 {
        let t0 = Instant::now();
        let c = Client::connect(&d.socket).await?;
        c.ping().await?;
        connects.push(t0.elapsed());
    }
    let c = Client::connect(&d.socket).await?;
    if f.ping_p50.is_zero() {
        f.ping_p50 = pings(&c, 2000).await?.p50();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    mem_row(
        t,
        "10 000 units loaded, 1 client connected",
        &d,
        f,
        Some(30),
    )?;
    let c2 = Client::connect(&d.socket).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    mem_row(t, "10 000 units loaded, 2 clients connected", &d, f, None)?;
    drop(c2);
    t.section("D-Bus, 10 000 units");
    t.single(
        "daemon exec → socket bound, 10 000 unit files",
        dur(bound),
        &format!("same with 10 files {}", dur(f.boot10.p50())),
        "",
        String::new(),
    );
    t.timing(
        "client connect + first Ping, 10 000 units",
        &Samples(connects),
        &f.ping(),
        None,
    );
    let mut lists = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        let n = c.list_units().await?;
        lists.push(t0.elapsed());
        if n < 10_000 {
            bail!("ListUnits returned {n} rows");
        }
    }
    t.timing("ListUnits, 10 000 units", &Samples(lists), &f.ping(), None);
    let mut c = c;
    let addr = d.address();
    let mut ctl = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let st = Command::new(corralctl())
            .args(["--address", &addr, "start", "m1.service"])
            .stdout(Stdio::null())
            .status()?;
        ctl.push(t0.elapsed());
        if !st.success() {
            bail!("corralctl start failed ({st})");
        }
        let id = c.job("StopUnit", "m1.service").await?;
        c.wait_jobs(&[id]).await?;
    }
    t.timing(
        "`corralctl start` process, 10 000 units loaded",
        &Samples(ctl),
        &f.exec(),
        None,
    );
    let (rate, lat) = property_reads(&c, "m5000.service", Duration::from_secs(1)).await?;
    t.single(
        "Get(ActiveState), inactive unit, 10 000 loaded",
        format!(
            "{rate:.0}/s · p50 {} · p99 {}",
            dur(lat.p50()),
            dur(lat.p99())
        ),
        &f.ping(),
        "",
        String::new(),
    );
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    mem_row(
        t,
        "10 000 units loaded, after the clients left",
        &d,
        f,
        None,
    )?;
    d.stop()?;
    Ok(())
}

/// Says whether anything of this run is left: a cgroup of ours, or a child process.
fn leftovers(mount: &Path) -> String {
    let prefix = format!("corral-bench-{}-", std::process::id());
    let cgroups: Vec<String> = fs::read_dir(mount)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    let children: String = fs::read_dir("/proc/self/task")
        .map(|rd| {
            rd.flatten()
                .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
                .collect()
        })
        .unwrap_or_default();
    if cgroups.is_empty() && children.trim().is_empty() {
        "cleanup: no cgroup and no process of this run is left".into()
    } else {
        format!(
            "cleanup: LEFT BEHIND cgroups {cgroups:?}, child processes [{}]",
            children.trim()
        )
    }
}

/// Whether `binary` was linked with the recorded code order (build.rs, `CORRAL_LINK_ORDER`).
fn link_order(binary: &Path) -> String {
    let Ok(out) = Command::new("readelf").arg("-SW").arg(binary).output() else {
        return "link order unknown: no readelf".into();
    };
    let sections = String::from_utf8_lossy(&out.stdout);
    match layout::ordered_code_bytes(&sections) {
        Some(bytes) => format!(
            "linked with the recorded code order, {} KiB placed",
            bytes / 1024
        ),
        None => "linked in the compiler's order (no CORRAL_LINK_ORDER=1)".into(),
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine() -> String {
    let sh = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let mem = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        })
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(String::new(), |k| {
            format!("{:.1} GiB RAM", k as f64 / 1048576.0)
        });
    let repo = env!("CARGO_MANIFEST_DIR");
    let rev = sh("git", &["-C", repo, "rev-parse", "--short", "HEAD"]);
    let dirty = if sh(
        "git",
        &["-C", repo, "status", "--porcelain", "--untracked-files=no"],
    )
    .is_empty()
    {
        ""
    } else {
        " + uncommitted changes"
    };
    format!(
        "Machine: {} CPUs ({cpu}), {mem}, kernel {}; {}; corral {rev}{dirty}",
        sh("nproc", &[]),
        sh("uname", &["-r"]),
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    )
}

fn main() -> std::process::ExitCode {
    // `cargo test --all-targets` runs bench targets too (without `--bench`): a benchmark is
    // not a test, so it only runs under `cargo bench` / `scripts/bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("corral benchmark: run it with scripts/bench (cargo bench --bench corral)");
        return std::process::ExitCode::SUCCESS;
    }
    let opts = match Opts::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the benchmark runs corrald on a cgroup of this host: run it as root");
        return std::process::ExitCode::FAILURE;
    }
    let mount = match cgroup2_mount() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    remove_stale(&mount);
    let load_before = loadavg();
    let started = Instant::now();
    let mut table = Table::default();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Ctrl-C or SIGTERM ends the run early; dropping it stops and removes every daemon.
    let result = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = run(&opts, &mount, &mut table) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated")),
        }
    });
    drop(rt);
    table.note(format!(
        "benchmark wall time {:.0} s; cgroup2 mount {}; load average (1/5/15 min) {} before, \
         {} after — other work on the machine stretches the wall-clock figures, not the CPU \
         times",
        started.elapsed().as_secs_f64(),
        mount.display(),
        load_before,
        loadavg()
    ));
    table.note(leftovers(&mount));
    table.note(format!(
        "corrald measured: {} ({})",
        corrald().display(),
        link_order(corrald())
    ));
    let term = TERM_BEFORE_HANDLER.load(std::sync::atomic::Ordering::Relaxed);
    if term > 0 {
        table.note(format!(
            "{term} daemons stopped right after binding their socket died of the SIGTERM itself \
             (no handler installed yet; see docs/PERFORMANCE.md)"
        ));
    }
    let md = table.markdown(&machine());
    println!("\n{md}");
    if let Some(out) = &opts.out
        && let Err(e) = fs::File::create(out).and_then(|mut f| f.write_all(md.as_bytes()))
    {
        eprintln!("writing {}: {e}", out.display());
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
