//! Bad input over D-Bus (issue 14): a client calls every method of `org.corral1.Manager` and
//! `org.corral1.Unit` on a real corrald's private socket with oversized, empty, wrong-typed and
//! hostile values — names with `/`, `..`, NUL, 10 KB names, an `a{sv}` of 100 000 entries,
//! 20 000 io-max entries, wrong variant types, negative and overflowing integers, signals out
//! of range, TOML nested 30 000 deep, unknown objects and members. Each call gets a D-Bus error
//! of the expected name whose message says what was wrong, and the daemon keeps answering: a
//! `ListUnits` after each call, and a clean exit at the end with nothing changed.
//!
//! Needs root and a cgroup2 mount (a delegated test cgroup); without them it says why and skips.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/skip.rs"]
mod skip;

use std::collections::HashMap;
use std::time::Duration;

use daemon::Daemon;
use serde::Serialize;
use zbus::Connection;
use zbus::zvariant::{DynamicType, Value};

const MANAGER: &str = "org.corral1.Manager";
const UNIT: &str = "org.corral1.Unit";
const ROOT: &str = "/org/corral1";
const WEB: &str = "/org/corral1/unit/web_2eservice";

const INVALID_UNIT: &str = "org.corral1.Error.InvalidUnit";
const INVALID_LIMIT: &str = "org.corral1.Error.InvalidLimit";
const NO_SUCH_UNIT: &str = "org.corral1.Error.NoSuchUnit";
const JOB_FAILED: &str = "org.corral1.Error.JobFailed";
const NOT_SUPPORTED: &str = "org.corral1.Error.NotSupported";
const INVALID_ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
const UNKNOWN_OBJECT: &str = "org.freedesktop.DBus.Error.UnknownObject";
const UNKNOWN_METHOD: &str = "org.freedesktop.DBus.Error.UnknownMethod";

/// The client and what it has checked.
struct Probe {
    conn: Connection,
    calls: usize,
}

impl Probe {
    /// Calls `method` with `body` and checks the answer is an error named one of `names` with a
    /// message (that contains `says`, when given); then that the daemon still answers.
    async fn refused<B: Serialize + DynamicType>(
        &mut self,
        (path, iface, method): (&str, &str, &str),
        body: &B,
        names: &[&str],
        says: Option<&str>,
    ) {
        let what = format!(
            "{iface}.{method} at {path} with {} {:.80?}",
            B::signature(body),
            zbus::zvariant::to_bytes(
                zbus::zvariant::serialized::Context::new_dbus(zbus::zvariant::LE, 0),
                body
            )
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .unwrap_or_default()
        );
        let reply = tokio::time::timeout(
            Duration::from_secs(30),
            self.conn
                .call_method(None::<&str>, path, Some(iface), method, body),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within 30 s"));
        match reply {
            Ok(_) => panic!("{what}: accepted"),
            Err(zbus::Error::MethodError(name, msg, _)) => {
                let msg = msg.unwrap_or_default();
                assert!(
                    names.contains(&name.as_str()),
                    "{what}: {name}: {msg} (expected one of {names:?})"
                );
                assert!(!msg.is_empty(), "{what}: {name} without a message");
                if let Some(says) = says {
                    assert!(msg.contains(says), "{what}: {msg:?} does not say {says:?}");
                }
            }
            Err(e) => panic!("{what}: not a D-Bus error reply: {e}"),
        }
        self.still_answers(&what).await;
    }

    async fn still_answers(&mut self, after: &str) {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            zbus::zvariant::OwnedObjectPath,
        );
        let rows: Vec<Row> = tokio::time::timeout(
            Duration::from_secs(30),
            self.conn
                .call_method(None::<&str>, ROOT, Some(MANAGER), "ListUnits", &()),
        )
        .await
        .unwrap_or_else(|_| panic!("no ListUnits answer after {after}"))
        .unwrap_or_else(|e| panic!("ListUnits after {after}: {e}"))
        .body()
        .deserialize()
        .expect("a(ssssso)");
        assert!(
            rows.iter().any(|r| r.0 == "web.service"),
            "after {after}: {rows:?}"
        );
        self.calls += 1;
    }
}

fn m(method: &str) -> (&str, &str, &str) {
    (ROOT, MANAGER, method)
}

fn u(method: &str) -> (&str, &str, &str) {
    (WEB, UNIT, method)
}

/// An `a{sv}` of limits from (key, value) pairs.
fn limits<'a>(pairs: impl IntoIterator<Item = (String, Value<'a>)>) -> HashMap<String, Value<'a>> {
    pairs.into_iter().collect()
}

/// Names a caller might send, each refused as a name (never used as a path).
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "",
        "/",
        "..",
        "../../etc/passwd",
        "../etc.service",
        "a/b.service",
        "/etc/shadow",
        ".hidden.service",
        "-x.service",
        "web",
        "web.service/",
        "web.service\n",
        "wéb.service",
        "web service.service",
        "web.socket",
        "x\u{0}y.service",
        "%2e%2e.service",
    ]
    .map(String::from)
    .to_vec();
    names.push(format!("{}.service", "a".repeat(10_000)));
    names.push(format!(
        "{}.service",
        "a".repeat(256 - ".service".len() + 1)
    ));
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_refuses_hostile_input_and_the_daemon_keeps_answering() {
    if !nix::unistd::geteuid().is_root() {
        skip::skipped("a delegated cgroup needs root");
        return;
    }
    let units = [
        (
            "web.service.toml",
            "[unit]\nautostart = true\n[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
        ),
        (
            "db.service.toml",
            "[service]\nexec = [\"/bin/sleep\", \"1000\"]\n".to_string(),
        ),
        (
            "apps.slice.toml",
            "[resources]\ncpu-weight = 50\n".to_string(),
        ),
    ];
    let Some(d) = Daemon::start("hostile", &units) else {
        skip::skipped("no cgroup2 mount on this host");
        return;
    };
    let mut p = Probe {
        conn: d.client().await,
        calls: 0,
    };
    p.still_answers("connecting").await;

    // Unit names, in every method that takes one.
    for name in hostile_names() {
        let n = name.as_str();
        for method in [
            "GetUnit",
            "StartUnit",
            "StopUnit",
            "RestartUnit",
            "FreezeUnit",
            "ThawUnit",
            "EnableUnit",
            "DisableUnit",
            "GetUnitFiles",
        ] {
            p.refused(m(method), &(n,), &[INVALID_UNIT, INVALID_ARGS], None)
                .await;
        }
        p.refused(m("KillUnit"), &(n, 15), &[INVALID_UNIT, INVALID_ARGS], None)
            .await;
        p.refused(
            m("GetUnitLog"),
            &(n, 5u32),
            &[INVALID_UNIT, INVALID_ARGS],
            None,
        )
        .await;
        let one = limits([("memory-max".to_string(), Value::from("64M"))]);
        p.refused(
            m("SetUnitLimits"),
            &(n, &one, true),
            &[INVALID_UNIT, INVALID_ARGS],
            None,
        )
        .await;
        p.refused(
            m("DiffUnitLimits"),
            &(n, &one),
            &[INVALID_UNIT, INVALID_ARGS],
            None,
        )
        .await;
        p.refused(
            m("StartTransientUnit"),
            &(n, "[service]\nexec = [\"/bin/true\"]\n"),
            &[INVALID_UNIT, INVALID_ARGS],
            None,
        )
        .await;
    }
    // A valid name of 255 bytes that is no unit; a name of 256.
    let longest = format!("{}.service", "a".repeat(255 - ".service".len()));
    p.refused(m("GetUnit"), &(longest.as_str(),), &[NO_SUCH_UNIT], None)
        .await;
    p.refused(
        m("GetUnitLog"),
        &(longest.as_str(), 1u32),
        &[NO_SUCH_UNIT],
        None,
    )
    .await;
    p.refused(
        m("GetUnit"),
        &(format!("a{longest}").as_str(),),
        &[INVALID_UNIT],
        Some("longer than 255 bytes"),
    )
    .await;

    // Wrong types and shapes.
    p.refused(m("GetUnit"), &(42u32,), &[INVALID_ARGS], None)
        .await;
    p.refused(m("GetUnit"), &(), &[INVALID_ARGS], None).await;
    p.refused(m("KillUnit"), &("web.service", "9"), &[INVALID_ARGS], None)
        .await;
    p.refused(
        m("GetUnitLog"),
        &("web.service", -1i32),
        &[INVALID_ARGS],
        None,
    )
    .await;
    p.refused(
        m("SetUnitLimits"),
        &("web.service", "not a map", true),
        &[INVALID_ARGS],
        None,
    )
    .await;
    p.refused(
        m("StartTransientUnit"),
        &("t.service", 7u64),
        &[INVALID_ARGS],
        None,
    )
    .await;
    p.refused(m("Frobnicate"), &(), &[UNKNOWN_METHOD], None)
        .await;
    p.refused(u("Kill"), &("9",), &[INVALID_ARGS], None).await;

    // Signals out of range.
    for signal in [-1, 0, 65, 1000, i32::MAX, i32::MIN] {
        p.refused(
            m("KillUnit"),
            &("web.service", signal),
            &[INVALID_ARGS],
            Some("is not a signal number"),
        )
        .await;
        p.refused(
            u("Kill"),
            &(signal,),
            &[INVALID_ARGS],
            Some("is not a signal number"),
        )
        .await;
    }

    // Limits: counts, sizes, types, values.
    let huge = limits((0..100_000).map(|i| (format!("k{i}"), Value::from("1"))));
    let io: Vec<String> = (0..20_000)
        .map(|i| format!("/dev/null rbps={}", i + 2))
        .collect();
    let io_many = limits([("io-max".to_string(), Value::from(io.clone()))]);
    let cases: Vec<(HashMap<String, Value<'_>>, &str)> = vec![
        (huge, "at most 64"),
        (io_many, "at most 256"),
        (limits([]), "no limit given"),
        (
            limits([("x".repeat(100), Value::from("1"))]),
            "keys have at most",
        ),
        (
            limits([("memory-maxx".into(), Value::from("1G"))]),
            "unknown resource key",
        ),
        (
            limits([("pids-max".into(), Value::from("9".repeat(5000)))]),
            "a value of 5000 bytes",
        ),
        (
            limits([("memory-max".into(), Value::from(true))]),
            "expected a string",
        ),
        (
            limits([("memory-max".into(), Value::from(1.5f64))]),
            "expected a string",
        ),
        (
            limits([("memory-max".into(), Value::from(vec!["1G", "2G"]))]),
            "only for io-max",
        ),
        (
            limits([(
                "memory-max".into(),
                // v(v(v(s))): one level of wrapping is taken, not more.
                Value::Value(Box::new(Value::Value(Box::new(Value::from("1G"))))),
            )]),
            "expected a string",
        ),
        (
            limits([("memory-max".into(), Value::from(("1G", 2u32)))]),
            "expected a string",
        ),
        (
            limits([("memory-max".into(), Value::from(-1i64))]),
            "memory-max",
        ),
        (
            limits([("memory-min".into(), Value::from(i64::MIN))]),
            "memory-min",
        ),
        (
            limits([("pids-max".into(), Value::from(-5i32))]),
            "pids-max",
        ),
        (
            limits([("cpu-weight".into(), Value::from(0u32))]),
            "cpu-weight",
        ),
        (
            limits([("cpu-weight".into(), Value::from(100_000u32))]),
            "cpu-weight",
        ),
        (limits([("cpu-max".into(), Value::from("1e9%"))]), "cpu-max"),
        (limits([("cpu-max".into(), Value::from("-5%"))]), "cpu-max"),
        (
            limits([("cpu-period".into(), Value::from(0u64))]),
            "cpu-period",
        ),
        (
            limits([("memory-max".into(), Value::from("99999999999999999999T"))]),
            "memory-max",
        ),
        (
            limits([(
                "io-max".into(),
                Value::from("/dev/null rbps=18446744073709551616"),
            )]),
            "io-max",
        ),
        (
            limits([("io-max".into(), Value::from("/dev/null rbps=-1"))]),
            "io-max",
        ),
        (
            limits([("io-max".into(), Value::from("/dev/null rbps=1"))]),
            "io-max",
        ),
        (
            limits([("io-max".into(), Value::from(vec![7u32, 8]))]),
            "io-max",
        ),
        (
            limits([("cpuset-cpus".into(), Value::from("0-99999999999"))]),
            "cpuset-cpus",
        ),
    ];
    for (map, says) in &cases {
        p.refused(
            m("SetUnitLimits"),
            &("web.service", map, true),
            &[INVALID_LIMIT],
            Some(says),
        )
        .await;
        p.refused(
            m("DiffUnitLimits"),
            &("web.service", map),
            &[INVALID_LIMIT],
            Some(says),
        )
        .await;
        p.refused(u("SetLimits"), &(map, false), &[INVALID_LIMIT], Some(says))
            .await;
    }
    // The root slice takes no limits.
    let one = limits([("memory-max".to_string(), Value::from("64M"))]);
    p.refused(
        m("SetUnitLimits"),
        &("-.slice", &one, true),
        &[INVALID_LIMIT],
        Some("root slice"),
    )
    .await;

    // Transient unit text: too big, broken, nested deeper than any parser's stack, wrong kind.
    let big = format!(
        "# {}\n[service]\nexec = [\"/bin/true\"]\n",
        "x".repeat(1 << 20)
    );
    let deep = format!("a = {}{}\n", "[".repeat(30_000), "]".repeat(30_000));
    let tables = (0..3000)
        .map(|i| format!("[t{i}]\nk = 1\n"))
        .collect::<String>();
    for (name, text, names, says) in [
        (
            "t1.service",
            big.as_str(),
            &[INVALID_ARGS][..],
            Some("at most 65536"),
        ),
        ("t2.service", "[[[", &[INVALID_UNIT][..], None),
        ("t3.service", deep.as_str(), &[INVALID_UNIT][..], None),
        ("t4.service", tables.as_str(), &[INVALID_UNIT][..], None),
        ("t5.service", "", &[INVALID_UNIT][..], None),
        (
            "t6.service",
            "[service]\nexec = [\"relative/path\"]\n",
            &[INVALID_UNIT][..],
            None,
        ),
        (
            "t7.slice",
            "[resources]\ncpu-weight = 5\n",
            &[INVALID_UNIT][..],
            Some("only services"),
        ),
        (
            "web.service",
            "[service]\nexec = [\"/bin/true\"]\n",
            &[INVALID_UNIT][..],
            Some("already exists"),
        ),
    ] {
        p.refused(m("StartTransientUnit"), &(name, text), names, says)
            .await;
    }

    // Logs: more lines than the bound.
    p.refused(
        m("GetUnitLog"),
        &("web.service", u32::MAX),
        &[INVALID_ARGS],
        Some("at most 10000"),
    )
    .await;

    // State that does not allow the call: an inactive unit, a slice, not PID 1.
    p.refused(
        m("FreezeUnit"),
        &("db.service",),
        &[JOB_FAILED],
        Some("not running"),
    )
    .await;
    p.refused(m("KillUnit"), &("db.service", 15), &[JOB_FAILED], None)
        .await;
    p.refused(m("RestartUnit"), &("apps.slice",), &[NOT_SUPPORTED], None)
        .await;
    p.refused(m("StopUnit"), &("-.slice",), &[NOT_SUPPORTED], None)
        .await;
    p.refused(m("EnableUnit"), &("apps.slice",), &[INVALID_UNIT], None)
        .await;
    p.refused(m("PowerOff"), &(), &[NOT_SUPPORTED], None).await;
    p.refused(m("Reboot"), &(), &[NOT_SUPPORTED], None).await;

    // Objects that are no unit: a bad escape, a name that decodes to a path, a long path.
    let long = format!("/org/corral1/unit/{}", "a".repeat(10_000));
    for path in [
        "/org/corral1/unit/_2e_2e_2fetc_2eservice",
        "/org/corral1/unit/web_2fservice",
        "/org/corral1/unit/nope_2eservice",
        "/org/corral1/unit/_zz",
        long.as_str(),
    ] {
        p.refused((path, UNIT, "GetProcesses"), &(), &[UNKNOWN_OBJECT], None)
            .await;
        p.refused((path, UNIT, "Start"), &(), &[UNKNOWN_OBJECT], None)
            .await;
    }

    // Still serving, and nothing changed: web.service runs with no limit set.
    let limits_now: HashMap<String, zbus::zvariant::OwnedValue> =
        zbus::Proxy::new(&p.conn, "org.corral1", WEB, UNIT)
            .await
            .expect("proxy")
            .get_property("Limits")
            .await
            .expect("Limits");
    assert!(limits_now.is_empty(), "{limits_now:?}");
    println!(
        "{} hostile calls refused; the daemon answered after each",
        p.calls
    );
    drop(p);
    let (status, log) = d.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
