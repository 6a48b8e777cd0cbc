//! Table-driven tests of every unit-file key: valid values with the exact value they validate
//! to, and invalid values with the message they produce. A final test checks that every key of
//! the format has at least one valid and one invalid case here.

use std::collections::BTreeSet;
use std::path::Path;

use corral::unit::keys::{KeyDefault, Table};
use corral::unit::validate::all_keys;
use corral::unit::{Unit, UnitName, parse_unit};

/// The model field a key lands in, printed with `{:?}`.
fn field(u: &Unit, table: &str, key: &str) -> String {
    let s = u.service.as_deref().expect("a service");
    let r = &u.resources;
    let ns = &s.namespaces;
    let names =
        |deps: &[corral::unit::Dep]| deps.iter().map(|d| d.name.to_string()).collect::<Vec<_>>();
    match (table, key) {
        ("unit", "description") => format!("{:?}", u.description),
        ("unit", "slice") => s.slice.to_string(),
        ("unit", "requires") => format!("{:?}", names(&s.deps.requires)),
        ("unit", "wants") => format!("{:?}", names(&s.deps.wants)),
        ("unit", "after") => format!("{:?}", names(&s.deps.after)),
        ("unit", "before") => format!("{:?}", names(&s.deps.before)),
        ("unit", "autostart") => format!("{:?}", s.autostart),
        ("service", "type") | ("service", "remain-after-exit") => format!("{:?}", s.kind),
        ("service", "exec") => format!("{:?}", s.exec),
        ("service", "exec-stop") => format!("{:?}", s.exec_stop),
        ("service", "user") => format!("{:?}", s.user),
        ("service", "group") => format!("{:?}", s.group),
        ("service", "working-directory") => format!("{:?}", s.working_directory),
        ("service", "environment") => format!("{:?}", s.environment),
        ("service", "umask") => format!("{:o}", s.umask),
        ("service", "restart") => format!("{:?}", s.restart),
        ("service", "restart-delay") => format!("{:?}", s.restart_delay),
        ("service", "restart-delay-max") => format!("{:?}", s.restart_delay_max),
        ("service", "start-limit") => format!("{:?}", s.start_limit),
        ("service", "start-timeout") => format!("{:?}", s.start_timeout),
        ("service", "stop-timeout") => format!("{:?}", s.stop_timeout),
        ("service", "stop-signal") => format!("{:?}", s.stop_signal),
        ("service", "kill-mode") => format!("{:?}", s.kill_mode),
        ("service", "notify-access") => format!("{:?}", s.notify_access),
        ("service", "stdout") => format!("{:?}", s.stdout),
        ("service", "stderr") => format!("{:?}", s.stderr),
        ("service", "no-new-privileges") => format!("{:?}", s.no_new_privileges),
        ("service", "capabilities") => format!("{:?}", s.capabilities),
        ("service", "ambient-capabilities") => format!("{:?}", s.ambient_capabilities),
        ("service", "oom-policy") => format!("{:?} oom_group={}", s.oom_policy, r.oom_group),
        ("service", "delegate") => format!("{:?}", s.delegate),
        ("resources", k) => r
            .to_pairs()
            .into_iter()
            .filter(|(rk, _)| *rk == k)
            .map(|(_, v)| v)
            .collect::<Vec<_>>()
            .join("; "),
        ("namespaces", "pid") => format!("{:?}", ns.pid),
        ("namespaces", "net") => format!("{:?}", ns.net),
        ("namespaces", "mount") => format!("{:?}", ns.mount),
        ("namespaces", "uts") => format!("{:?}", ns.uts),
        ("namespaces", "ipc") => format!("{:?}", ns.ipc),
        ("namespaces", "user") => format!("{:?}", ns.user),
        ("namespaces", "cgroup") => format!("{:?}", ns.cgroup),
        ("namespaces", "time") => format!("{:?}", ns.time),
        ("namespaces", "uid-map") => format!("{:?}", ns.uid_map),
        ("namespaces", "gid-map") => format!("{:?}", ns.gid_map),
        ("namespaces", "monotonic-offset") => format!("{}", ns.monotonic_offset),
        ("namespaces", "boottime-offset") => format!("{}", ns.boottime_offset),
        ("namespaces", "hostname") => format!("{:?}", ns.hostname),
        ("namespaces", "root") => format!("{:?} mount={:?}", ns.root, ns.mount),
        ("namespaces", "private-tmp") => format!("{} mount={:?}", ns.private_tmp, ns.mount),
        ("namespaces", "read-only-paths") => format!("{:?}", ns.read_only_paths),
        ("namespaces", "bind") => format!("{:?}", ns.bind),
        ("namespaces", "propagation") => format!("{:?}", ns.propagation),
        ("namespaces", "sysctl") => format!("{:?}", ns.sysctl),
        _ => panic!("no field mapping for [{table}] {key}"),
    }
}

/// Extra lines a key needs to be valid (e.g. `hostname` needs `uts = true`).
fn companions(table: &str, key: &str) -> &'static str {
    match (table, key) {
        ("namespaces", "uid-map" | "gid-map") => "user = true\n",
        ("namespaces", "monotonic-offset" | "boottime-offset") => "time = true\n",
        ("namespaces", "hostname") => "uts = true\n",
        ("namespaces", "root" | "propagation") => "mount = true\n",
        ("namespaces", "sysctl") => "net = true\nuts = true\nipc = true\n",
        ("service", "remain-after-exit") => "type = \"oneshot\"\n",
        _ => "",
    }
}

fn unit_text(table: &str, key: &str, value: &str) -> String {
    let extra = companions(table, key);
    let line = format!("{key} = {value}\n");
    let mut text = String::new();
    for t in ["unit", "service", "resources", "namespaces"] {
        text.push_str(&format!("[{t}]\n"));
        if t == "service" && !(table == "service" && key == "exec") {
            text.push_str("exec = [\"/bin/true\"]\n");
        }
        if t == table {
            text.push_str(extra);
            text.push_str(&line);
        }
    }
    text
}

fn load(table: &str, key: &str, value: &str) -> Result<Unit, String> {
    load_text(&unit_text(table, key, value))
}

fn load_text(text: &str) -> Result<Unit, String> {
    let name = UnitName::parse("t.service").unwrap();
    parse_unit(&name, Path::new("t.service.toml"), text).map_err(|d| {
        d.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

const VALID: &[(&str, &str, &str, &str)] = &[
    ("unit", "description", r#""Web server""#, r#""Web server""#),
    ("unit", "slice", r#""apps-batch.slice""#, "apps-batch.slice"),
    (
        "unit",
        "requires",
        r#"["db.service", "x.slice"]"#,
        r#"["db.service", "x.slice"]"#,
    ),
    (
        "unit",
        "wants",
        r#"["cache.service"]"#,
        r#"["cache.service"]"#,
    ),
    ("unit", "after", r#"["db.service"]"#, r#"["db.service"]"#),
    ("unit", "before", r#"["web.service"]"#, r#"["web.service"]"#),
    ("unit", "autostart", "true", "true"),
    ("service", "type", r#""notify""#, "Notify"),
    ("service", "type", r#""exec""#, "Exec"),
    (
        "service",
        "type",
        r#""oneshot""#,
        "Oneshot { remain_after_exit: false }",
    ),
    (
        "service",
        "remain-after-exit",
        "true",
        "Oneshot { remain_after_exit: true }",
    ),
    (
        "service",
        "exec",
        r#"["/usr/bin/python3", "-m", "http.server"]"#,
        r#"["/usr/bin/python3", "-m", "http.server"]"#,
    ),
    (
        "service",
        "exec-stop",
        r#"["/bin/kill", "-TERM", "1"]"#,
        r#"["/bin/kill", "-TERM", "1"]"#,
    ),
    ("service", "exec-stop", "[]", "[]"),
    (
        "service",
        "user",
        r#""www-data""#,
        r#"Some(Name("www-data"))"#,
    ),
    ("service", "user", "1000", "Some(Id(1000))"),
    ("service", "user", r#""1000""#, "Some(Id(1000))"),
    ("service", "group", r#""adm""#, r#"Some(Name("adm"))"#),
    (
        "service",
        "working-directory",
        r#""/srv/www""#,
        r#""/srv/www""#,
    ),
    (
        "service",
        "environment",
        r#"{ LANG = "C", _X1 = "" }"#,
        r#"{"LANG": "C", "_X1": ""}"#,
    ),
    ("service", "umask", r#""0027""#, "27"),
    ("service", "umask", "0o077", "77"),
    ("service", "restart", r#""on-failure""#, "OnFailure"),
    ("service", "restart", r#""always""#, "Always"),
    ("service", "restart-delay", r#""250ms""#, "250ms"),
    ("service", "restart-delay-max", r#""1m""#, "60s"),
    (
        "service",
        "start-limit",
        r#"{ burst = 3, interval = "1m" }"#,
        "StartLimit { burst: 3, interval: 60s }",
    ),
    (
        "service",
        "start-limit",
        r#"{ burst = 2 }"#,
        "StartLimit { burst: 2, interval: 10s }",
    ),
    ("service", "start-timeout", r#""2min""#, "120s"),
    ("service", "stop-timeout", r#""0""#, "0ns"),
    ("service", "stop-signal", r#""SIGINT""#, "SIGINT"),
    ("service", "stop-signal", r#""HUP""#, "SIGHUP"),
    ("service", "stop-signal", "9", "SIGKILL"),
    ("service", "kill-mode", r#""process""#, "Process"),
    ("service", "notify-access", r#""all""#, "All"),
    ("service", "stdout", r#""null""#, "Null"),
    (
        "service",
        "stdout",
        r#""file:/var/log/x.log""#,
        r#"File("/var/log/x.log")"#,
    ),
    ("service", "stderr", r#""inherit""#, "Inherit"),
    ("service", "no-new-privileges", "true", "true"),
    (
        "service",
        "capabilities",
        r#"["CAP_NET_BIND_SERVICE", "cap_chown", "CAP_NET_BIND_SERVICE"]"#,
        r#"Some(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])"#,
    ),
    ("service", "capabilities", "[]", "Some([])"),
    (
        "service",
        "ambient-capabilities",
        r#"["CAP_NET_BIND_SERVICE"]"#,
        r#"["CAP_NET_BIND_SERVICE"]"#,
    ),
    ("service", "oom-policy", r#""kill""#, "Kill oom_group=true"),
    (
        "service",
        "oom-policy",
        r#""continue""#,
        "Continue oom_group=false",
    ),
    ("service", "delegate", "true", "true"),
    ("resources", "cpu-max", r#""150%""#, "150%"),
    ("resources", "cpu-max", r#""12.5%""#, "12.5%"),
    ("resources", "cpu-max", r#""max""#, "max"),
    ("resources", "cpu-period", r#""50ms""#, "50ms"),
    ("resources", "cpu-period", "20000", "20ms"),
    ("resources", "cpu-weight", "200", "200"),
    ("resources", "cpu-weight", r#""idle""#, "idle"),
    ("resources", "cpuset-cpus", r#""0-1,3""#, "0-1,3"),
    ("resources", "cpuset-mems", r#""0""#, "0"),
    ("resources", "memory-max", r#""512M""#, "512M"),
    ("resources", "memory-max", "1048576", "1M"),
    ("resources", "memory-max", r#""1.5G""#, "1536M"),
    ("resources", "memory-max", r#""25%""#, "25%"),
    ("resources", "memory-high", r#""max""#, "max"),
    ("resources", "memory-low", r#""64M""#, "64M"),
    ("resources", "memory-min", r#""0""#, "0"),
    ("resources", "memory-swap-max", r#""1T""#, "1T"),
    ("resources", "pids-max", "100", "100"),
    ("resources", "pids-max", r#""max""#, "max"),
    ("resources", "io-weight", "500", "500"),
    (
        "resources",
        "io-max",
        r#"[{ device = "/dev/vda", rbps = "20M", wbps = 10485760, riops = 2000, wiops = "1000" }, { device = "/dev/vdb", rbps = "max" }]"#,
        "/dev/vda rbps=20M wbps=10M riops=2000 wiops=1000; /dev/vdb",
    ),
    ("namespaces", "pid", "true", "Some(New)"),
    (
        "namespaces",
        "net",
        r#""pod.service""#,
        r#"Some(Share(UnitName("pod.service")))"#,
    ),
    (
        "namespaces",
        "net",
        r#""/run/netns/blue""#,
        r#"Some(Path("/run/netns/blue"))"#,
    ),
    ("namespaces", "net", "false", "None"),
    ("namespaces", "mount", "true", "Some(New)"),
    ("namespaces", "uts", "true", "Some(New)"),
    ("namespaces", "ipc", "true", "Some(New)"),
    ("namespaces", "user", "true", "Some(New)"),
    ("namespaces", "cgroup", "true", "Some(New)"),
    ("namespaces", "time", "true", "Some(New)"),
    (
        "namespaces",
        "uid-map",
        "[{ inside = 0, outside = 100000, count = 65536 }]",
        "[IdMap { inside: 0, outside: 100000, count: 65536 }]",
    ),
    (
        "namespaces",
        "gid-map",
        "[{ inside = 0, outside = 100000, count = 1 }, { inside = 1, outside = 200000, count = 10 }]",
        "[IdMap { inside: 0, outside: 100000, count: 1 }, IdMap { inside: 1, outside: 200000, count: 10 }]",
    ),
    (
        "namespaces",
        "monotonic-offset",
        r#""-10s""#,
        "-10000000000",
    ),
    ("namespaces", "boottime-offset", r#""1h""#, "3600000000000"),
    (
        "namespaces",
        "hostname",
        r#""web-1.example""#,
        r#"Some("web-1.example")"#,
    ),
    (
        "namespaces",
        "root",
        r#""/srv/rootfs""#,
        r#"Some("/srv/rootfs") mount=Some(New)"#,
    ),
    ("namespaces", "private-tmp", "true", "true mount=Some(New)"),
    (
        "namespaces",
        "read-only-paths",
        r#"["/etc", "/usr"]"#,
        r#"["/etc", "/usr"]"#,
    ),
    (
        "namespaces",
        "bind",
        r#"[{ source = "/data", target = "/srv/data", read-only = true }]"#,
        r#"[Bind { source: "/data", target: "/srv/data", read_only: true }]"#,
    ),
    ("namespaces", "propagation", r#""slave""#, "Some(Slave)"),
    (
        "namespaces",
        "sysctl",
        r#"{ "net.ipv4.ip_unprivileged_port_start" = "0", "kernel.domainname" = "x", "kernel.shmmax" = 1024 }"#,
        r#"{"kernel.domainname": "x", "kernel.shmmax": "1024", "net.ipv4.ip_unprivileged_port_start": "0"}"#,
    ),
];

const INVALID: &[(&str, &str, &str, &str)] = &[
    (
        "unit",
        "description",
        "5",
        "expected a string, got an integer",
    ),
    (
        "unit",
        "slice",
        r#""web.service""#,
        "web.service is not a slice",
    ),
    ("unit", "requires", r#"["a/b.service"]"#, r#"contains "/""#),
    ("unit", "wants", r#"["cache"]"#, "has no known kind"),
    (
        "unit",
        "after",
        r#""db.service""#,
        "expected an array of unit names",
    ),
    ("unit", "before", "[1]", "expected a unit name, got 1"),
    ("unit", "autostart", r#""yes""#, "expected true or false"),
    (
        "service",
        "type",
        r#""forking""#,
        r#"expected one of "simple", "exec", "notify", "oneshot""#,
    ),
    (
        "service",
        "remain-after-exit",
        "1",
        "expected true or false",
    ),
    ("service", "exec", "[]", "is empty"),
    (
        "service",
        "exec",
        r#"["sleep", "1"]"#,
        "is not an absolute path",
    ),
    (
        "service",
        "exec",
        r#"["/bin/sleep", 1]"#,
        "[service] exec[1]: expected a string, got an integer",
    ),
    (
        "service",
        "exec-stop",
        r#"["kill"]"#,
        "is not an absolute path",
    ),
    (
        "service",
        "user",
        r#""Bad User""#,
        "expected a user or group name, or a numeric id",
    ),
    (
        "service",
        "user",
        "-1",
        "expected an id from 0 to 4294967294",
    ),
    (
        "service",
        "group",
        "4294967295",
        "expected an id from 0 to 4294967294",
    ),
    (
        "service",
        "working-directory",
        r#""srv""#,
        "expected an absolute path",
    ),
    (
        "service",
        "working-directory",
        r#""/srv/../etc""#,
        r#"contains "..""#,
    ),
    (
        "service",
        "environment",
        r#"{ "A-B" = "1" }"#,
        "is not a valid variable name",
    ),
    ("service", "environment", r#""A=1""#, "expected a table"),
    ("service", "umask", r#""0999""#, "expected an octal mode"),
    ("service", "umask", "512", "expected an octal mode"),
    (
        "service",
        "restart",
        r#""sometimes""#,
        r#"expected one of "no", "on-failure", "always""#,
    ),
    (
        "service",
        "restart-delay",
        r#""soon""#,
        "expected a duration",
    ),
    ("service", "restart-delay-max", "30", "expected a duration"),
    ("service", "start-limit", "5", "expected a table"),
    (
        "service",
        "start-limit",
        r#"{ burst = -1 }"#,
        "start-limit.burst: expected a number of starts",
    ),
    (
        "service",
        "start-timeout",
        r#""-1s""#,
        "expected a duration",
    ),
    ("service", "stop-timeout", "true", "expected a duration"),
    (
        "service",
        "stop-signal",
        r#""SIGNOPE""#,
        "expected a signal name",
    ),
    ("service", "stop-signal", "99", "expected a signal name"),
    (
        "service",
        "kill-mode",
        r#""mixed""#,
        r#"expected one of "control-group", "process""#,
    ),
    (
        "service",
        "notify-access",
        r#""none""#,
        r#"expected one of "main", "all""#,
    ),
    (
        "service",
        "stdout",
        r#""journal""#,
        "expected \"log\", \"inherit\", \"null\" or \"file:/absolute/path\"",
    ),
    (
        "service",
        "stderr",
        r#""file:rel.log""#,
        "file:/absolute/path",
    ),
    (
        "service",
        "oom-policy",
        r#""ignore""#,
        r#"expected one of "stop", "continue", "kill""#,
    ),
    ("service", "delegate", r#""true""#, "expected true or false"),
    (
        "service",
        "no-new-privileges",
        "1",
        "expected true or false",
    ),
    (
        "service",
        "capabilities",
        r#"["CAP_NET_BIND_SERVCE"]"#,
        r#"[service] capabilities[0]: unknown capability "CAP_NET_BIND_SERVCE"; did you mean "CAP_NET_BIND_SERVICE"?"#,
    ),
    (
        "service",
        "capabilities",
        r#""CAP_CHOWN""#,
        "expected an array of capability names",
    ),
    (
        "service",
        "ambient-capabilities",
        r#"["sys_time"]"#,
        r#"unknown capability "sys_time"; did you mean "CAP_SYS_TIME"?"#,
    ),
    ("resources", "cpu-max", r#""0%""#, "expected a CPU share"),
    ("resources", "cpu-max", r#""20""#, "expected a CPU share"),
    ("resources", "cpu-max", r#""0.5%""#, "quota is at least 1ms"),
    (
        "resources",
        "cpu-period",
        r#""2s""#,
        "expected a period from 1ms to 1s, got 2s",
    ),
    (
        "resources",
        "cpu-period",
        r#""500us""#,
        "expected a period from 1ms to 1s",
    ),
    (
        "resources",
        "cpu-weight",
        "0",
        "expected a weight from 1 to 10000, or \"idle\"",
    ),
    (
        "resources",
        "cpu-weight",
        "10001",
        "expected a weight from 1 to 10000",
    ),
    (
        "resources",
        "cpuset-cpus",
        r#""1-0""#,
        "expected a list of CPUs or nodes",
    ),
    (
        "resources",
        "cpuset-mems",
        r#""x""#,
        "expected a list of CPUs or nodes",
    ),
    ("resources", "memory-max", r#""12Q""#, "expected a size"),
    (
        "resources",
        "memory-max",
        r#""150%""#,
        "expected a percentage of RAM from 0.01% to 100%",
    ),
    ("resources", "memory-high", "-1", "expected a size"),
    ("resources", "memory-low", r#""1.5""#, "expected a size"),
    (
        "resources",
        "memory-min",
        "true",
        "expected a string or an integer, got a boolean",
    ),
    (
        "resources",
        "memory-swap-max",
        r#""lots""#,
        "expected a size",
    ),
    (
        "resources",
        "pids-max",
        r#""many""#,
        "expected a number of tasks",
    ),
    (
        "resources",
        "io-weight",
        "0",
        "expected a weight from 1 to 10000",
    ),
    (
        "resources",
        "io-max",
        r#"[{ device = "/dev/vda", rbps = 1 }]"#,
        "io-max[0].rbps: expected bytes per second of at least 2",
    ),
    (
        "resources",
        "io-max",
        r#"[{ device = "/dev/vda", wiops = 0 }]"#,
        "io-max[0].wiops: expected operations per second of at least 2",
    ),
    (
        "resources",
        "io-max",
        r#"[{ rbps = "1M" }]"#,
        "io-max[0].device: missing",
    ),
    (
        "resources",
        "io-max",
        r#"[{ device = "vda" }]"#,
        "io-max[0].device: expected an absolute path",
    ),
    ("namespaces", "pid", r#""yes""#, "has no known kind"),
    (
        "namespaces",
        "net",
        r#""pod.slice""#,
        "pod.slice is not a service",
    ),
    (
        "namespaces",
        "mount",
        "1",
        "expected true (a new namespace)",
    ),
    ("namespaces", "uts", r#""relative/ns""#, r#"contains "/""#),
    ("namespaces", "ipc", "[]", "expected true (a new namespace)"),
    ("namespaces", "user", "2", "expected true (a new namespace)"),
    (
        "namespaces",
        "cgroup",
        "1.0",
        "expected true (a new namespace)",
    ),
    ("namespaces", "time", r#""time""#, "has no known kind"),
    (
        "namespaces",
        "uid-map",
        r#"[{ inside = 0, outside = 1 }]"#,
        "needs inside, outside and count",
    ),
    (
        "namespaces",
        "gid-map",
        "[{ inside = 0, outside = 10, count = 5 }, { inside = 2, outside = 100, count = 1 }]",
        "overlaps an earlier range",
    ),
    (
        "namespaces",
        "monotonic-offset",
        r#""later""#,
        "expected a duration",
    ),
    ("namespaces", "boottime-offset", "5", "expected a duration"),
    (
        "namespaces",
        "hostname",
        r#""-bad""#,
        "expected a host name",
    ),
    (
        "namespaces",
        "root",
        r#""rootfs""#,
        "expected an absolute path",
    ),
    (
        "namespaces",
        "private-tmp",
        r#""yes""#,
        "expected true or false",
    ),
    (
        "namespaces",
        "read-only-paths",
        r#"["etc"]"#,
        "expected an absolute path",
    ),
    (
        "namespaces",
        "bind",
        r#"[{ source = "/data" }]"#,
        "needs source and target",
    ),
    (
        "namespaces",
        "bind",
        r#"[{ source = "/a", target = "/b", ro = true }]"#,
        "bind[0].ro: unknown key",
    ),
    (
        "namespaces",
        "propagation",
        r#""rslave""#,
        "did you mean \"slave\"?",
    ),
    (
        "namespaces",
        "sysctl",
        r#"{ "kernel.pid_max" = "10" }"#,
        "is not a namespaced sysctl",
    ),
];

#[test]
fn valid_values_validate_to_exact_values() {
    let mut failures = Vec::new();
    for (table, key, value, want) in VALID {
        match load(table, key, value) {
            Ok(u) => {
                let got = field(&u, table, key);
                if got != *want {
                    failures.push(format!("[{table}] {key} = {value}: got {got}, want {want}"));
                }
            }
            Err(e) => failures.push(format!("[{table}] {key} = {value}: refused: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_values_are_refused_with_their_message() {
    let mut failures = Vec::new();
    for (table, key, value, want) in INVALID {
        match load(table, key, value) {
            Ok(_) => failures.push(format!("[{table}] {key} = {value}: accepted")),
            Err(e) if !e.contains(want) => failures.push(format!(
                "[{table}] {key} = {value}: {e}\n   does not contain {want:?}"
            )),
            Err(e)
                if !e.contains(&format!("[{table}] {key}"))
                    || !e.starts_with("t.service.toml:") =>
            {
                failures.push(format!(
                    "[{table}] {key} = {value}: {e}\n   does not name the file and key"
                ))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_key_has_valid_and_invalid_cases() {
    let valid: BTreeSet<_> = VALID.iter().map(|(t, k, _, _)| (*t, *k)).collect();
    let invalid: BTreeSet<_> = INVALID.iter().map(|(t, k, _, _)| (*t, *k)).collect();
    for (t, k) in all_keys() {
        assert!(valid.contains(&(t, k)), "no valid case for [{t}] {k}");
        assert!(invalid.contains(&(t, k)), "no invalid case for [{t}] {k}");
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let u = load("unit", "description", r#""""#).unwrap();
    let s = u.service.as_deref().unwrap();
    assert_eq!(s.slice.as_str(), "system.slice");
    assert_eq!(format!("{:?}", s.kind), "Simple");
    assert_eq!(s.user, None);
    assert_eq!(s.working_directory, Path::new("/"));
    assert_eq!(s.umask, 0o022);
    assert_eq!(format!("{:?}", s.restart), "No");
    assert_eq!(s.restart_delay, std::time::Duration::from_millis(100));
    assert_eq!(s.restart_delay_max, std::time::Duration::from_secs(30));
    assert_eq!(
        format!("{:?}", s.start_limit),
        "StartLimit { burst: 5, interval: 10s }"
    );
    assert_eq!(s.start_timeout, std::time::Duration::from_secs(90));
    assert_eq!(s.stop_timeout, std::time::Duration::from_secs(10));
    assert_eq!(format!("{:?}", s.stop_signal), "SIGTERM");
    assert_eq!(
        format!("{:?} {:?}", s.kill_mode, s.notify_access),
        "ControlGroup Main"
    );
    assert_eq!(format!("{:?} {:?}", s.stdout, s.stderr), "Log Log");
    assert_eq!(format!("{:?}", s.oom_policy), "Stop");
    assert!(!s.delegate && !s.autostart);
    assert!(!s.no_new_privileges && s.capabilities.is_none() && s.ambient_capabilities.is_empty());
    assert!(u.resources.is_empty(), "unset resource keys write nothing");
    assert_eq!(s.namespaces, Default::default());
}

/// The defaults come from one table (`corral::unit::keys`): writing each one out must give the
/// very unit that leaving it out gives.
#[test]
fn writing_a_default_out_changes_nothing() {
    let mut checked = 0;
    for table in [Table::Unit, Table::Service] {
        for k in table.keys() {
            let KeyDefault::Value(value) = k.default else {
                continue;
            };
            let explicit = unit_text(table.name(), k.name, value);
            let implicit = explicit.replace(&format!("{} = {value}\n", k.name), "");
            assert_ne!(explicit, implicit, "{}", k.name);
            let (a, b) = (load_text(&explicit), load_text(&implicit));
            assert!(a.is_ok(), "[{}] {} = {value}: {a:?}", table.name(), k.name);
            assert_eq!(a, b, "[{}] {} = {value}", table.name(), k.name);
            checked += 1;
        }
    }
    assert!(checked > 25, "{checked}");
}

#[test]
fn ambient_capabilities_must_be_in_the_bounding_set() {
    let text = "[service]\nexec = [\"/bin/true\"]\ncapabilities = [\"CAP_CHOWN\"]\n\
                ambient-capabilities = [\"CAP_CHOWN\", \"CAP_NET_BIND_SERVICE\"]\n";
    let err = load_text(text).unwrap_err();
    assert_eq!(
        err,
        "t.service.toml:4:38: error: [service] ambient-capabilities: CAP_NET_BIND_SERVICE is not \
         in capabilities (the bounding set), so it can't be raised: add it there too"
    );
    // Without a bounding set, any capability may be raised.
    let text = "[service]\nexec = [\"/bin/true\"]\nambient-capabilities = [\"CAP_SYS_TIME\"]\n";
    assert!(load_text(text).is_ok());
}
