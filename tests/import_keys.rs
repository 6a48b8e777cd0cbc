//! `corral::import::convert`, key by key: each systemd form and the corral value it becomes,
//! the warnings where the meaning changes, and corral's own loader accepting every output.
//!
//! The `[service]` keys `no-new-privileges`, `capabilities` and `ambient-capabilities` (DESIGN
//! §2) are being added on another branch: until they are merged, corral's validation refuses
//! them as unknown and the importer drops them with a warning. The assertions on them accept
//! both outcomes (see `security_keys`).

use std::path::{Path, PathBuf};

use corral::import::{Conversion, Host, Input, convert};
use corral::unit::{UnitName, parse_unit};

fn host() -> Host {
    Host {
        path_exists: |p| {
            ["/usr", "/boot", "/etc", "/home", "/root", "/srv/data"]
                .iter()
                .any(|x| Path::new(x) == p)
        },
        find_program: |name| (name == "sh").then(|| PathBuf::from("/bin/sh")),
        tasks_max_base: Some(4_194_304),
    }
}

fn input(name: &str, text: &str) -> Input {
    Input {
        path: PathBuf::from(format!("/etc/systemd/system/{name}")),
        bytes: text.as_bytes().to_vec(),
    }
}

fn conv(name: &str, text: &str) -> Conversion {
    let c = convert(name, &input(name, text), &[], &host())
        .unwrap_or_else(|f| panic!("{}\n{:?}", f.error, f.warnings));
    // What `corralctl verify` checks.
    let unit_name = UnitName::parse(name).unwrap();
    parse_unit(&unit_name, Path::new(&c.file_name()), &c.toml)
        .unwrap_or_else(|d| panic!("{}\n{d:?}", c.toml));
    c
}

fn svc(body: &str) -> Conversion {
    conv(
        "x.service",
        &format!("[Service]\nExecStart=/bin/true\n{body}"),
    )
}

fn toml(c: &Conversion) -> toml::Table {
    toml::from_str(&c.toml).unwrap()
}

fn get<'a>(t: &'a toml::Table, table: &str, key: &str) -> Option<&'a toml::Value> {
    t.get(table)?.get(key)
}

fn warnings(c: &Conversion) -> Vec<String> {
    c.warnings.iter().map(|w| w.to_string()).collect()
}

fn has_warning(c: &Conversion, start: &str) -> bool {
    warnings(c).iter().any(|w| w.contains(start))
}

/// Every one of `expected` is (part of) a warning.
fn assert_warnings(c: &Conversion, expected: &[&str]) {
    for w in expected {
        assert!(has_warning(c, w), "{w}: {:?}", warnings(c));
    }
}

#[test]
fn resource_control_keys_in_systemd_units() {
    let c = svc(
        "CPUQuota=150%\nCPUQuotaPeriodSec=50ms\nCPUWeight=200\nMemoryMax=1G\n\
                 MemoryHigh=infinity\nMemoryLow=64M\nMemoryMin=1.5K\nMemorySwapMax=0\n\
                 AllowedCPUs=0-3 5\nAllowedMemoryNodes=0\nTasksMax=10%\nIOWeight=300\n\
                 IOWriteBandwidthMax=/dev/sda 10M\nIOReadBandwidthMax=/dev/sda 1G\n\
                 IOReadIOPSMax=/dev/sdb 2K\n",
    );
    let t = toml(&c);
    let r = |k: &str| get(&t, "resources", k).cloned();
    assert_eq!(r("cpu-max").unwrap().as_str(), Some("150%"));
    assert_eq!(r("cpu-period").unwrap().as_integer(), Some(50_000));
    assert_eq!(r("cpu-weight").unwrap().as_integer(), Some(200));
    assert_eq!(r("memory-max").unwrap().as_str(), Some("1G"));
    assert_eq!(r("memory-high").unwrap().as_str(), Some("max"));
    assert_eq!(r("memory-low").unwrap().as_str(), Some("64M"));
    assert_eq!(r("memory-min").unwrap().as_str(), Some("1536"));
    assert_eq!(r("memory-swap-max").unwrap().as_str(), Some("0"));
    assert_eq!(r("cpuset-cpus").unwrap().as_str(), Some("0-3,5"));
    assert_eq!(r("cpuset-mems").unwrap().as_str(), Some("0"));
    // 10 % of 4194304 tasks, computed here, with a warning saying so.
    assert_eq!(r("pids-max").unwrap().as_integer(), Some(419_430));
    assert!(has_warning(
        &c,
        "[Service] TasksMax: corral takes a number: 419430"
    ));
    assert_eq!(r("io-weight").unwrap().as_integer(), Some(300));
    // systemd's bandwidth suffixes are 1000-based: written in bytes.
    let io = r("io-max").unwrap();
    let io = io.as_array().unwrap();
    assert_eq!(io.len(), 2, "{io:?}");
    assert_eq!(io[0]["device"].as_str(), Some("/dev/sda"));
    assert_eq!(io[0]["rbps"].as_integer(), Some(1_000_000_000));
    assert_eq!(io[0]["wbps"].as_integer(), Some(10_000_000));
    assert_eq!(io[1]["device"].as_str(), Some("/dev/sdb"));
    assert_eq!(io[1]["riops"].as_integer(), Some(2000));
    assert!(c.warnings.len() == 1, "{:?}", warnings(&c));
}

#[test]
fn resource_keys_in_a_slice_and_legacy_forms() {
    let c = conv(
        "apps.slice",
        "[Unit]\nDescription=Apps\n[Slice]\nMemoryLimit=512M\nCPUShares=2048\n\
         BlockIOWeight=1000\nTasksMax=infinity\nCPUWeight=idle\nMemoryAccounting=no\n",
    );
    let t = toml(&c);
    assert_eq!(
        get(&t, "unit", "description").unwrap().as_str(),
        Some("Apps")
    );
    // CPUWeight= comes after CPUShares= in the mapping order: the v2 key wins.
    assert_eq!(
        get(&t, "resources", "cpu-weight").unwrap().as_str(),
        Some("idle")
    );
    assert_eq!(
        get(&t, "resources", "memory-max").unwrap().as_str(),
        Some("512M")
    );
    assert_eq!(
        get(&t, "resources", "io-weight").unwrap().as_integer(),
        Some(200)
    );
    assert_eq!(
        get(&t, "resources", "pids-max").unwrap().as_str(),
        Some("max")
    );
    assert!(t.get("service").is_none());
    assert_warnings(
        &c,
        &[
            "[Slice] MemoryLimit: cgroup v1",
            "[Slice] CPUShares: a cgroup v1 weight: became cpu-weight = 200",
            "[Slice] BlockIOWeight: a cgroup v1 weight: became io-weight = 200",
            "[Slice] MemoryAccounting: corral always accounts",
        ],
    );
}

#[test]
fn values_corral_refuses_are_left_out_with_the_reason() {
    let c = svc("CPUWeight=0\nMemoryMax=lots\nIOWriteBandwidthMax=/dev/sda 1\nAllowedCPUs=a-b\n");
    let t = toml(&c);
    assert!(t.get("resources").is_none(), "{}", c.toml);
    for (key, line) in [
        ("CPUWeight", 3),
        ("MemoryMax", 4),
        ("IOWriteBandwidthMax", 5),
        ("AllowedCPUs", 6),
    ] {
        let prefix = format!("/etc/systemd/system/x.service:{line}: warning: [Service] {key}: ");
        assert!(
            warnings(&c).iter().any(|w| w.starts_with(&prefix)),
            "{prefix}: {:?}",
            warnings(&c)
        );
    }
}

#[test]
fn command_lines_with_systemd_quoting_become_an_argv() {
    let c = conv(
        "x.service",
        "[Service]\nExecStart=/usr/bin/printf \"%%s\\n\" 'a b' c\\x20d \"it's\" $$HOME\n",
    );
    let t = toml(&c);
    let exec: Vec<&str> = get(&t, "service", "exec")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        exec,
        ["/usr/bin/printf", "%s\n", "a b", "c d", "it's", "$HOME"]
    );
    assert!(c.warnings.is_empty(), "{:?}", warnings(&c));
}

#[test]
fn variables_set_by_environment_are_expanded_here_others_by_a_shell() {
    let c = svc(
        "Environment=\"OPTS=-a -b\" ONE=x\\sy\nExecStart=\nExecStart=/usr/sbin/d $OPTS ${ONE} --k=${ONE}\n",
    );
    let t = toml(&c);
    let exec = get(&t, "service", "exec")
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    let exec: Vec<&str> = exec.iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(exec, ["/usr/sbin/d", "-a", "-b", "x y", "--k=x y"]);
    let env = get(&t, "service", "environment").unwrap();
    assert_eq!(env["OPTS"].as_str(), Some("-a -b"));
    assert_eq!(env["ONE"].as_str(), Some("x y"));

    // A variable from a file: only the shell can expand it when the service starts.
    let c = conv(
        "ssh.service",
        "[Service]\nEnvironmentFile=-/etc/default/ssh\nExecStartPre=/usr/sbin/sshd -t\n\
         ExecStart=/usr/sbin/sshd -D $SSHD_OPTS \"${X}\"\n",
    );
    let t = toml(&c);
    let exec = get(&t, "service", "exec")
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(exec[0].as_str(), Some("/bin/sh"));
    assert_eq!(exec[1].as_str(), Some("-c"));
    assert_eq!(
        exec[2].as_str(),
        Some(
            "set -f; set -a; if [ -r /etc/default/ssh ]; then . /etc/default/ssh; fi; set +a; \
             /usr/sbin/sshd -t || exit; exec /usr/sbin/sshd -D $SSHD_OPTS \"${X}\""
        )
    );
    assert!(has_warning(
        &c,
        "[Service] EnvironmentFile: read by /bin/sh"
    ));
}

#[test]
fn prefixes_and_oneshots() {
    // A oneshot: several commands run in turn, "-" ignores a failure, no exec needed at the end.
    let c = conv(
        "x.service",
        "[Service]\nType=oneshot\nExecStart=-/bin/false\nExecStart=/bin/echo a ; /bin/echo b\n\
         ExecStop=/bin/echo stop\nRemainAfterExit=yes\n",
    );
    let t = toml(&c);
    assert_eq!(
        get(&t, "service", "type").unwrap().as_str(),
        Some("oneshot")
    );
    assert_eq!(
        get(&t, "service", "exec").unwrap().as_array().unwrap()[2].as_str(),
        Some("/bin/false || :; /bin/echo a || exit; exec /bin/echo b")
    );
    assert_eq!(
        get(&t, "service", "exec-stop").unwrap().as_array().unwrap()[0].as_str(),
        Some("/bin/echo")
    );
    assert_eq!(
        get(&t, "service", "remain-after-exit").unwrap().as_bool(),
        Some(true)
    );
    assert!(c.warnings.is_empty(), "{:?}", warnings(&c));

    // "+", "!", "@" and "-" on a long-running service: dropped, each with a warning.
    let c = conv(
        "x.service",
        "[Service]\nExecStartPre=+/bin/mkdir -p /run/x\nExecStart=-@/usr/bin/x x-daemon --fg\n\
         ExecStop=/bin/kill -HUP $MAINPID\n",
    );
    let t = toml(&c);
    assert_eq!(
        get(&t, "service", "exec").unwrap().as_array().unwrap()[2].as_str(),
        Some("/bin/mkdir -p /run/x || exit; exec /usr/bin/x --fg")
    );
    assert!(get(&t, "service", "exec-stop").is_none());
    assert_warnings(
        &c,
        &[
            ":2: warning: [Service] ExecStartPre: the + prefix",
            ":3: warning: [Service] ExecStart: the @ prefix",
            ":3: warning: [Service] ExecStart: the - prefix",
            ":4: warning: [Service] ExecStop: corral does not set $MAINPID",
        ],
    );

    // A bare program name is looked up as systemd would; a oneshot with only ExecStop= runs
    // /bin/true.
    let c = conv(
        "x.service",
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStop=sh -c 'echo bye'\n",
    );
    let t = toml(&c);
    assert_eq!(
        get(&t, "service", "exec").unwrap().as_array().unwrap()[0].as_str(),
        Some("/bin/true")
    );
    assert_eq!(
        get(&t, "service", "exec-stop")
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn restart_start_limit_and_timeouts() {
    for (value, to, warned) in [
        ("no", None, false),
        ("always", Some("always"), false),
        ("on-failure", Some("on-failure"), false),
        ("on-abnormal", Some("on-failure"), true),
        ("on-abort", Some("on-failure"), true),
        ("on-watchdog", Some("on-failure"), true),
        ("on-success", Some("always"), true),
    ] {
        let c = svc(&format!("Restart={value}\n"));
        let t = toml(&c);
        assert_eq!(
            get(&t, "service", "restart").and_then(|v| v.as_str()),
            to,
            "{value}"
        );
        assert_eq!(has_warning(&c, "[Service] Restart:"), warned, "{value}");
    }
    let c = svc(
        "Restart=always\nRestartSec=5s\nTimeoutStartSec=2min 30s\nTimeoutStopSec=infinity\n\
         [Unit]\nStartLimitIntervalSec=60\nStartLimitBurst=3\n",
    );
    let t = toml(&c);
    let s = |k: &str| get(&t, "service", k).unwrap().clone();
    assert_eq!(s("restart-delay").as_str(), Some("5s"));
    assert_eq!(s("restart-delay-max").as_str(), Some("5s"));
    assert_eq!(s("start-timeout").as_str(), Some("2m 30s"));
    assert_eq!(s("stop-timeout").as_str(), Some("100years"));
    assert_eq!(s("start-limit")["burst"].as_integer(), Some(3));
    assert_eq!(s("start-limit")["interval"].as_str(), Some("1m"));
    // TimeoutSec= sets both; a later TimeoutStopSec= overrides one. A oneshot never restarts
    // always.
    let c = conv(
        "x.service",
        "[Service]\nType=oneshot\nExecStart=/bin/true\nRestart=always\nTimeoutSec=30\nTimeoutStopSec=5\n",
    );
    let t = toml(&c);
    assert_eq!(
        get(&t, "service", "restart").unwrap().as_str(),
        Some("on-failure")
    );
    assert_eq!(
        get(&t, "service", "start-timeout").unwrap().as_str(),
        Some("30s")
    );
    assert_eq!(
        get(&t, "service", "stop-timeout").unwrap().as_str(),
        Some("5s")
    );
}

#[test]
fn kill_output_user_and_friends() {
    let c = svc(
        "KillMode=mixed\nKillSignal=SIGINT\nUser=www-data\nGroup=www-data\nWorkingDirectory=-/srv/data\n\
         UMask=027\nNotifyAccess=all\nStandardOutput=append:/var/log/x.log\nStandardError=inherit\n\
         OOMPolicy=kill\nDelegate=yes\nType=notify\nSlice=apps-batch.slice\n",
    );
    let t = toml(&c);
    let s = |k: &str| get(&t, "service", k).unwrap().clone();
    assert_eq!(s("kill-mode").as_str(), Some("control-group"));
    assert!(has_warning(&c, "[Service] KillMode: became control-group"));
    assert_eq!(s("stop-signal").as_str(), Some("SIGINT"));
    assert_eq!(s("user").as_str(), Some("www-data"));
    assert_eq!(s("group").as_str(), Some("www-data"));
    assert_eq!(s("working-directory").as_str(), Some("/srv/data"));
    assert_eq!(s("umask").as_str(), Some("0027"));
    assert_eq!(s("notify-access").as_str(), Some("all"));
    assert_eq!(s("stdout").as_str(), Some("file:/var/log/x.log"));
    assert_eq!(s("stderr").as_str(), Some("file:/var/log/x.log"));
    assert_eq!(s("oom-policy").as_str(), Some("kill"));
    assert_eq!(s("delegate").as_bool(), Some(true));
    assert_eq!(s("type").as_str(), Some("notify"));
    assert_eq!(
        get(&t, "unit", "slice").unwrap().as_str(),
        Some("apps-batch.slice")
    );

    let c = svc("Type=forking\nPIDFile=/run/x.pid\nKillMode=process\nKillSignal=HUP\n");
    let t = toml(&c);
    assert!(get(&t, "service", "type").is_none(), "{}", c.toml);
    assert!(has_warning(&c, "[Service] Type: became simple"));
    assert!(has_warning(
        &c,
        "[Service] PIDFile: corral follows the process"
    ));
    assert_eq!(
        get(&t, "service", "kill-mode").unwrap().as_str(),
        Some("process")
    );
    assert_eq!(
        get(&t, "service", "stop-signal").unwrap().as_str(),
        Some("SIGHUP")
    );
}

#[test]
fn dependencies_keep_services_and_slices() {
    let c = svc(
        "[Unit]\nRequires=db.service network-online.target\nWants=log.service\n\
         After=db.service network.target\nAfter=cache.service\nBefore=web.service\n\
         BindsTo=bound.service\n",
    );
    let t = toml(&c);
    let list = |k: &str| -> Vec<String> {
        get(&t, "unit", k)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(list("requires"), ["db.service", "bound.service"]);
    assert_eq!(list("wants"), ["log.service"]);
    assert_eq!(list("after"), ["db.service", "cache.service"]);
    assert_eq!(list("before"), ["web.service"]);
    assert!(has_warning(
        &c,
        "[Unit] Requires: left out network-online.target"
    ));
    assert!(has_warning(&c, "[Unit] BindsTo: became requires"));
    // One warning per key, at its last line.
    let after: Vec<String> = warnings(&c)
        .into_iter()
        .filter(|w| w.contains("[Unit] After"))
        .collect();
    assert_eq!(after.len(), 1, "{after:?}");
}

#[test]
fn namespaces_where_corral_has_a_key() {
    let c = svc(
        "PrivateTmp=yes\nPrivateNetwork=true\nProtectHostname=yes\nPrivateMounts=yes\n\
         ProtectSystem=full\nProtectHome=read-only\nReadOnlyPaths=/srv/data -/nonexistent\n\
         BindPaths=/srv/data:/data -/missing\nBindReadOnlyPaths=/etc/ssl\nMountFlags=slave\n\
         [Unit]\nJoinsNamespaceOf=pod.service\n",
    );
    let t = toml(&c);
    let n = |k: &str| get(&t, "namespaces", k).cloned();
    assert_eq!(n("private-tmp").unwrap().as_bool(), Some(true));
    assert_eq!(n("net").unwrap().as_str(), Some("pod.service"));
    assert_eq!(n("uts").unwrap().as_bool(), Some(true));
    assert_eq!(n("mount").unwrap().as_bool(), Some(true));
    assert_eq!(n("propagation").unwrap().as_str(), Some("slave"));
    let ro: Vec<String> = n("read-only-paths")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ro, ["/usr", "/boot", "/etc", "/home", "/root", "/srv/data"]);
    let bind = n("bind").unwrap();
    let bind = bind.as_array().unwrap();
    assert_eq!(bind.len(), 2);
    assert_eq!(bind[0]["source"].as_str(), Some("/srv/data"));
    assert_eq!(bind[0]["target"].as_str(), Some("/data"));
    assert_eq!(bind[1]["read-only"].as_bool(), Some(true));
    assert_warnings(
        &c,
        &[
            "[Service] ProtectSystem: left out /efi",
            "[Service] ProtectHome: left out /run/user",
            "[Service] ReadOnlyPaths: left out /nonexistent",
            "[Service] BindPaths: left out /missing",
            "[Service] PrivateTmp: a private /tmp of this unit's own",
        ],
    );
    let c = svc("ProtectSystem=strict\nProtectHome=yes\nNetworkNamespacePath=/run/netns/x\n");
    let t = toml(&c);
    assert!(get(&t, "namespaces", "read-only-paths").is_none());
    assert_eq!(
        get(&t, "namespaces", "net").unwrap().as_str(),
        Some("/run/netns/x")
    );
    assert!(has_warning(&c, "[Service] ProtectSystem: strict"));
    assert!(has_warning(&c, "[Service] ProtectHome: corral can't hide"));
}

#[test]
fn security_keys() {
    let c = svc(
        "NoNewPrivileges=yes\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE cap_chown\n\
         CapabilityBoundingSet=~CAP_CHOWN\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n",
    );
    let t = toml(&c);
    for (corral, want) in [
        ("no-new-privileges", toml::Value::Boolean(true)),
        (
            "capabilities",
            toml::Value::Array(vec!["CAP_NET_BIND_SERVICE".into()]),
        ),
        (
            "ambient-capabilities",
            toml::Value::Array(vec!["CAP_NET_BIND_SERVICE".into()]),
        ),
    ] {
        assert_eq!(
            get(&t, "service", corral),
            Some(&want),
            "{corral}: {:?}",
            warnings(&c)
        );
    }
}

#[test]
fn specifiers_and_drop_ins() {
    let main = input(
        "web@blue.service",
        "[Unit]\nDescription=Web %i on %H\n[Service]\nExecStart=/usr/bin/web --name %n --dir %S/%p\n\
         Environment=A=1 B=2\nMemoryMax=1G\n",
    );
    let dropin = Input {
        path: PathBuf::from("/etc/systemd/system/web@.service.d/10-limits.conf"),
        bytes: b"[Service]\nEnvironment=\nEnvironment=C=3\nMemoryMax=\nCPUQuota=50%\n".to_vec(),
    };
    let c = convert("web@blue.service", &main, &[dropin], &host()).unwrap();
    let t = toml(&c);
    assert_eq!(
        get(&t, "unit", "description").unwrap().as_str(),
        Some("Web blue on %H")
    );
    assert!(
        has_warning(
            &c,
            "web@blue.service:2: warning: [Unit] Description: specifier left as written: %H"
        ),
        "{:?}",
        warnings(&c)
    );
    let exec: Vec<&str> = get(&t, "service", "exec")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        exec,
        [
            "/usr/bin/web",
            "--name",
            "web@blue.service",
            "--dir",
            "/var/lib/web"
        ]
    );
    // The drop-in's empty assignments reset the list and the value.
    let env = get(&t, "service", "environment")
        .unwrap()
        .as_table()
        .unwrap();
    assert_eq!(env.keys().collect::<Vec<_>>(), ["C"]);
    assert!(get(&t, "resources", "memory-max").is_none());
    assert_eq!(
        get(&t, "resources", "cpu-max").unwrap().as_str(),
        Some("50%")
    );
    assert!(c.toml.contains("10-limits.conf"), "{}", c.toml);
}

#[test]
fn unmapped_keys_get_one_located_warning_each() {
    let c = conv(
        "x.service",
        "[Unit]\nConditionPathExists=/a\nConditionPathExists=/b\n[Service]\nExecStart=/bin/true\n\
         SystemCallFilter=@system-service\nLimitNOFILE=1024\nWatchdogSec=5\nFrobnicate=1\n\
         [Install]\nWantedBy=multi-user.target\n",
    );
    assert_eq!(
        warnings(&c),
        [
            "/etc/systemd/system/x.service:3: warning: [Unit] ConditionPathExists: corral has no start conditions: the unit starts whatever it says",
            "/etc/systemd/system/x.service:6: warning: [Service] SystemCallFilter: corral has no such sandboxing option: the service runs without it",
            "/etc/systemd/system/x.service:7: warning: [Service] LimitNOFILE: corral sets no resource limits (rlimits) on services",
            "/etc/systemd/system/x.service:8: warning: [Service] WatchdogSec: corral has no watchdog",
            "/etc/systemd/system/x.service:9: warning: [Service] Frobnicate: no corral equivalent",
            "/etc/systemd/system/x.service:11: warning: [Install] WantedBy: corral starts a unit at boot when it is enabled (`corralctl enable NAME` sets autostart), not when a target wants it",
        ]
    );
}

/// A deterministic stand-in for fuzzing: corpus files cut, spliced and flipped byte by byte
/// never make the importer panic, and whatever it converts, corral's loader accepts.
#[test]
fn mangled_units_never_panic_and_every_output_verifies() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/systemd");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "service").then(|| std::fs::read(p).ok())?
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() > 20);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let specials: &[&[u8]] = &[
        b"\\", b"\n", b"%", b"$", b"\"", b"'", b"=", b"[", b"]", b";", b"\0", b"\xff", b"${", b"@",
        b"-",
    ];
    let (mut converted, mut total) = (0, 0);
    for round in 0..3000 {
        let mut bytes = seeds[round % seeds.len()].clone();
        for _ in 0..(1 + next() % 6) {
            let at = (next() as usize) % (bytes.len() + 1);
            match next() % 3 {
                0 => {
                    let s = specials[(next() as usize) % specials.len()];
                    bytes.splice(at..at, s.iter().copied());
                }
                1 => {
                    let end = (at + (next() as usize) % 40).min(bytes.len());
                    bytes.drain(at..end);
                }
                _ => {
                    let other = &seeds[(next() as usize) % seeds.len()];
                    let from = (next() as usize) % other.len();
                    let end = (from + (next() as usize) % 200).min(other.len());
                    bytes.splice(at..at, other[from..end].iter().copied());
                }
            }
        }
        let name = if round % 7 == 0 {
            "m@i.service"
        } else {
            "m.service"
        };
        total += 1;
        let main = Input {
            path: PathBuf::from(name),
            bytes,
        };
        if let Ok(c) = convert(name, &main, &[], &host()) {
            converted += 1;
            let n = UnitName::parse(name).unwrap();
            parse_unit(&n, Path::new("m.toml"), &c.toml)
                .unwrap_or_else(|d| panic!("round {round}: {}\n{d:?}", c.toml));
        }
    }
    println!("{converted} of {total} mangled units converted, every one verified");
    assert!(converted > 0);
}
