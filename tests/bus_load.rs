//! Load (issue 14): many clients on the system bus call corrald at once, as an unprivileged
//! user, while root starts and stops units; then root starts and stops units many more times.
//! Asserted: no call is lost (every one is answered, none refused), no `JobRemoved` is lost
//! for a client that reads them (each flooding client receives every job result of root's
//! starts and stops), and corrald's RSS after all the start/stop cycles is within 5 % of what
//! it was after the first tenth of them. Printed, not asserted (the machine is shared): the
//! flood's rate, and the latency of root's own calls through the same bus before and during
//! the flood — they are served first ([`corral::manager::request::queue`]), so the flood
//! should barely show in them.
//!
//! Sizes come from the environment: `CORRAL_LOAD_CLIENTS` (default 20), `CORRAL_LOAD_CALLS`
//! per client (100) and `CORRAL_LOAD_CYCLES` (500). `scripts/load` runs the full size
//! (200 clients × 1000 calls, 10 000 cycles) on a release build.
//!
//! A flooding client is uid 65534: its socket is connected with that effective uid (the bus
//! daemon reads the credentials the kernel recorded at `connect`), then the test is root
//! again. Needs root, a cgroup2 mount, `dbus-daemon`; without them it says why and skips.

#[path = "common/bus.rs"]
mod bus;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use daemon::{Daemon, wait_for};
use futures_util::StreamExt;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

const NAME: &str = "org.corral1";
const MANAGER: &str = "org.corral1.Manager";
const UNIT: &str = "org.corral1.Unit";
const ROOT: &str = "/org/corral1";
const IDLE: &str = "/org/corral1/unit/idle_2eservice";
const NOBODY: u32 = 65534;
/// Units root starts and stops in turn.
const CYCLE_UNITS: usize = 8;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cycle_unit(i: usize) -> String {
    format!("cycle-{}.service", i % CYCLE_UNITS)
}

/// p50, p99 and the maximum of some durations, in milliseconds.
fn percentiles(mut d: Vec<Duration>) -> String {
    if d.is_empty() {
        return "no samples".into();
    }
    d.sort();
    let at = |q: f64| d[((d.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} calls)",
        at(0.5),
        at(0.99),
        at(1.0),
        d.len()
    )
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// corrald's resident memory now, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// The job results of root's cycle units arriving on `conn`.
async fn job_results(conn: &Connection) -> MessageStream {
    let rule = MatchRule::builder()
        .msg_type(Type::Signal)
        .interface(MANAGER)
        .expect("interface")
        .member("JobRemoved")
        .expect("member")
        .build();
    MessageStream::for_match_rule(rule, conn, Some(1 << 16))
        .await
        .expect("subscribing to JobRemoved")
}

/// Starts or stops `unit` and waits for its job's end on `results` (subscribed first).
async fn job(conn: &Connection, results: &mut MessageStream, method: &str, unit: &str) {
    let reply = conn
        .call_method(None::<&str>, ROOT, Some(MANAGER), method, &(unit,))
        .await
        .unwrap_or_else(|e| panic!("{method} {unit}: {e}"));
    let id: u32 = reply.body().deserialize().expect("a job id");
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), results.next())
            .await
            .unwrap_or_else(|_| panic!("no JobRemoved for {method} {unit} in 30 s"))
            .expect("signal stream")
            .expect("a signal");
        let (job, _, result): (u32, String, String) = msg.body().deserialize().expect("(uss)");
        if job == id {
            assert_eq!(result, "done", "{method} {unit}");
            return;
        }
    }
}

/// One flooding client's calls, in turn: every one must be answered without error.
async fn flood(conn: Connection, calls: usize, latencies: Arc<std::sync::Mutex<Vec<Duration>>>) {
    let mut mine = Vec::with_capacity(calls);
    for i in 0..calls {
        let t = Instant::now();
        let unit_path = format!("/org/corral1/unit/cycle_2d{}_2eservice", i % CYCLE_UNITS);
        let reply = match i % 4 {
            0 => {
                conn.call_method(Some(NAME), ROOT, Some(MANAGER), "ListUnits", &())
                    .await
            }
            1 => {
                conn.call_method(
                    Some(NAME),
                    ROOT,
                    Some(MANAGER),
                    "GetUnit",
                    &("idle.service",),
                )
                .await
            }
            2 => {
                conn.call_method(
                    Some(NAME),
                    IDLE,
                    Some("org.freedesktop.DBus.Properties"),
                    "Get",
                    &(UNIT, "ActiveState"),
                )
                .await
            }
            _ => {
                conn.call_method(
                    Some(NAME),
                    unit_path.as_str(),
                    Some("org.freedesktop.DBus.Properties"),
                    "GetAll",
                    &(UNIT,),
                )
                .await
            }
        };
        reply.unwrap_or_else(|e| panic!("a flooding client's call {i} was refused: {e}"));
        mine.push(t.elapsed());
    }
    latencies.lock().expect("latencies").extend(mine);
}

/// Root's calls (through the bus, or the private socket when `conn` is a peer's), one every
/// few milliseconds until `stop`: their latencies.
async fn probe(conn: Connection, stop: Arc<AtomicBool>, at_least: usize) -> Vec<Duration> {
    let mut out = Vec::new();
    let to = conn.unique_name().map(|_| NAME);
    while !stop.load(Ordering::Relaxed) || out.len() < at_least {
        let t = Instant::now();
        conn.call_method(to, ROOT, Some(MANAGER), "ListUnits", &())
            .await
            .expect("root's ListUnits");
        out.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out
}

/// Prints the end of corrald's log if the test fails, before its directory goes.
struct ShowLogOnPanic(std::path::PathBuf);

impl Drop for ShowLogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("corrald's log, last lines:");
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
        }
    }
}

async fn bus_client(address: &str) -> Connection {
    zbus::connection::Builder::address(address)
        .expect("address")
        .build()
        .await
        .expect("root connects to the bus")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_clients_lose_nothing_root_keeps_its_share_and_memory_stays_flat() {
    if let Some(why) = bus::missing_tools() {
        skip::skipped(why);
        return;
    }
    let clients = size("CORRAL_LOAD_CLIENTS", 20);
    let calls = size("CORRAL_LOAD_CALLS", 100);
    let cycles = size("CORRAL_LOAD_CYCLES", 500);

    let system = bus::SystemBusDir::new("system_bus_socket");
    let (socket, address) = (system.socket.clone(), system.address.clone());
    let bus_daemon = bus::Bus::start(&system.config, None);
    let bus_pid = bus_daemon.child.id();
    // Started and stopped thousands of times: no start limit.
    let sleeper = "[service]\nexec = [\"/bin/sleep\", \"100000\"]\n\
                   start-limit = { burst = 5, interval = \"0s\" }\n";
    let mut units = vec![(
        "idle.service.toml".to_string(),
        format!("[unit]\nautostart = true\n{sleeper}"),
    )];
    for i in 0..CYCLE_UNITS {
        units.push((format!("cycle-{i}.service.toml"), sleeper.to_string()));
    }
    let units: Vec<(&str, String)> = units.iter().map(|(f, t)| (f.as_str(), t.clone())).collect();
    let Some(d) = Daemon::start_logging_to_file(
        "load",
        &units,
        &[("DBUS_SYSTEM_BUS_ADDRESS", Path::new(&address))],
        true,
    ) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    wait_for("corrald on the bus", Duration::from_secs(10), || {
        bus::owner(&address, NAME).is_some()
    });
    let pid = d.child.id();
    let _show = ShowLogOnPanic(d.out_dir().join("corrald.log"));

    // Root: one connection on the bus (the probe), one on the private socket (the cycler).
    let root_bus = bus_client(&address).await;
    let root_p2p = d.client().await;
    let mut root_results = job_results(&root_p2p).await;

    // The flooding clients: sockets connected as uid 65534.
    nix::unistd::seteuid(nix::unistd::Uid::from_raw(NOBODY)).expect("seteuid 65534");
    let sockets: Vec<std::io::Result<std::os::unix::net::UnixStream>> = (0..clients)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket))
        .collect();
    nix::unistd::seteuid(nix::unistd::Uid::from_raw(0)).expect("seteuid 0");
    let mut flooders = Vec::new();
    for s in sockets {
        let s = s.expect("uid 65534 connects to the bus");
        s.set_nonblocking(true).expect("nonblocking");
        let conn = zbus::connection::Builder::unix_stream(
            tokio::net::UnixStream::from_std(s).expect("tokio stream"),
        )
        .user_id(NOBODY)
        .build()
        .await
        .expect("a flooding client says Hello");
        let results = job_results(&conn).await;
        flooders.push((conn, results));
    }

    // Root's calls through the bus, and on its private socket, with nobody else calling.
    let idle = probe(root_bus.clone(), Arc::new(AtomicBool::new(true)), 50).await;
    let idle_p2p = probe(root_p2p.clone(), Arc::new(AtomicBool::new(true)), 50).await;

    // The flood, while root starts and stops units and keeps probing.
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let flooding = Arc::new(AtomicBool::new(true));
    let received: Vec<Arc<AtomicUsize>> = (0..clients).map(|_| Arc::default()).collect();
    let mut counters = Vec::new();
    let mut floods = Vec::new();
    for ((conn, mut results), got) in flooders.into_iter().zip(&received) {
        let got = got.clone();
        counters.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = results.next().await {
                let (_, unit, _): (u32, String, String) = msg.body().deserialize().expect("(uss)");
                if unit.starts_with("cycle-") {
                    got.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        floods.push(tokio::spawn(flood(conn, calls, latencies.clone())));
    }
    let stop_probe = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn(probe(root_bus.clone(), stop_probe.clone(), 10));
    let prober_p2p = tokio::spawn(probe(root_p2p.clone(), stop_probe.clone(), 10));
    let cpu_before = (cpu_time(pid), cpu_time(bus_pid));
    let started = Instant::now();
    let cycler = {
        let flooding = flooding.clone();
        let conn = root_p2p.clone();
        tokio::spawn(async move {
            let mut done = 0;
            while flooding.load(Ordering::Relaxed) || done < 10 {
                let unit = cycle_unit(done);
                job(&conn, &mut root_results, "StartUnit", &unit).await;
                job(&conn, &mut root_results, "StopUnit", &unit).await;
                done += 1;
            }
            (done, root_results)
        })
    };
    for f in floods {
        f.await.expect("a flooding client");
    }
    let flood_time = started.elapsed();
    let cpu = (
        cpu_time(pid) - cpu_before.0,
        cpu_time(bus_pid) - cpu_before.1,
    );
    flooding.store(false, Ordering::Relaxed);
    stop_probe.store(true, Ordering::Relaxed);
    let (flood_cycles, mut root_results) = cycler.await.expect("the cycler");
    let under_flood = prober.await.expect("the probe");
    let under_flood_p2p = prober_p2p.await.expect("the probe");

    // No call lost: each flooding client had every call answered (it panics otherwise).
    let answered = latencies.lock().expect("latencies").len();
    assert_eq!(answered, clients * calls);
    // No signal lost: every client that reads got every job result of the cycles.
    let want = 2 * flood_cycles;
    wait_for(
        "every client's job results",
        Duration::from_secs(60),
        || received.iter().all(|g| g.load(Ordering::Relaxed) >= want),
    );
    for (i, got) in received.iter().enumerate() {
        assert_eq!(got.load(Ordering::Relaxed), want, "client {i}");
    }
    for c in counters {
        c.abort();
    }
    println!(
        "load: {clients} clients × {calls} calls as uid {NOBODY} on the bus in {:.2} s \
         ({:.0} calls/s), {flood_cycles} start/stop cycles by root meanwhile, every call \
         answered and every client got all {want} job results",
        flood_time.as_secs_f64(),
        answered as f64 / flood_time.as_secs_f64()
    );
    println!(
        "load: a flooding client's call: {}",
        percentiles(latencies.lock().expect("latencies").clone())
    );
    println!(
        "load: CPU during the flood: corrald {:.1} s, dbus-daemon {:.1} s, in {:.1} s",
        cpu.0.as_secs_f64(),
        cpu.1.as_secs_f64(),
        flood_time.as_secs_f64()
    );
    for (what, samples) in [
        ("on the bus, idle", idle),
        ("on the bus, under the flood", under_flood),
        ("on the private socket, idle", idle_p2p),
        ("on the private socket, under the flood", under_flood_p2p),
    ] {
        println!("load: root's ListUnits {what}: {}", percentiles(samples));
    }

    // Memory: many more start/stop cycles.
    let checkpoint = (cycles / 10).max(100).min(cycles);
    let mut rss_at_checkpoint = 0;
    let t = Instant::now();
    for i in 0..cycles {
        let unit = cycle_unit(i);
        job(&root_p2p, &mut root_results, "StartUnit", &unit).await;
        job(&root_p2p, &mut root_results, "StopUnit", &unit).await;
        if i + 1 == checkpoint {
            rss_at_checkpoint = rss_kib(pid);
        }
    }
    let rss_end = rss_kib(pid);
    println!(
        "load: corrald RSS {rss_at_checkpoint} KiB after {checkpoint} start/stop cycles, \
         {rss_end} KiB after {cycles} ({:+.1} %); {:.2} ms per cycle",
        (rss_end as f64 / rss_at_checkpoint as f64 - 1.0) * 100.0,
        t.elapsed().as_secs_f64() * 1e3 / cycles as f64
    );
    assert!(
        rss_end * 100 <= rss_at_checkpoint * 105,
        "RSS grew from {rss_at_checkpoint} KiB to {rss_end} KiB"
    );

    drop(root_p2p);
    drop(root_bus);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
