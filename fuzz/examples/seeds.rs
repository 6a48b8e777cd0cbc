//! Writes the seed inputs of every fuzz target into `corpus/<target>/`, in the input formats
//! `src/lib.rs` describes: the example units and the malformed-unit corpus of the tests, limit
//! values of every key, D-Bus `a{sv}` maps in both byte orders, names, the systemd units of
//! `tests/corpus/systemd` (each also as an instance, and on both hosts). Run once from `fuzz/`
//! (`cargo run --example seeds [TARGET…]`) before a first long run; `cargo fuzz cmin` then
//! keeps what adds coverage.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use zbus::zvariant::serialized::Context;
use zbus::zvariant::{BE, LE, Value, to_bytes};

/// Writes a seed of `target`, if it is one of the targets named on the command line (all when
/// none is: `cargo run --example seeds -- import` seeds a new target only).
fn write(target: &str, data: &[u8]) {
    let named: Vec<String> = std::env::args().skip(1).collect();
    if !named.is_empty() && !named.iter().any(|t| t == target) {
        return;
    }
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    // A stable name: FNV-1a of the content.
    let hash = data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    fs::write(dir.join(format!("seed-{hash:016x}")), data).unwrap();
}

/// Every `*.toml` under `dir` (one level of `*.d` drop-in directories), with its drop-ins.
fn unit_files(dir: &Path) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(unit) = file.strip_suffix(".toml") else {
            continue;
        };
        let main = fs::read_to_string(&path).unwrap();
        let mut dropins = Vec::new();
        if let Ok(d) = fs::read_dir(dir.join(format!("{unit}.d"))) {
            let mut files: Vec<PathBuf> = d.map(|e| e.unwrap().path()).collect();
            files.sort();
            dropins = files
                .iter()
                .map(|f| fs::read_to_string(f).unwrap())
                .collect();
        }
        out.push((
            unit.to_string(),
            std::iter::once(main).chain(dropins).collect(),
        ));
    }
    out
}

/// The `*.conf` drop-ins of `dir/NAME.d/`, in order of file name.
fn dropins(dir: &Path, name: &str) -> Vec<Vec<u8>> {
    let Ok(d) = fs::read_dir(dir.join(format!("{name}.d"))) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = d.map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|f| fs::read(f).unwrap()).collect()
}

/// `import` seeds: every systemd unit of the test corpus under its name, templates also as an
/// instance (their drop-ins and specifiers), with both hosts; and the bad input issue 16
/// lists.
fn import_seeds(repo: &Path) {
    let dir = repo.join("tests/corpus/systemd");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut units: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".service") && !name.ends_with(".slice") {
            continue;
        }
        let texts: Vec<Vec<u8>> = std::iter::once(fs::read(&f).unwrap())
            .chain(dropins(&dir, &name))
            .collect();
        if name.contains("@.") {
            units.push((name.replacen("@.", "@tty1.", 1), texts.clone()));
        }
        units.push((name, texts));
    }
    // user-.slice.d/ applies to every user-UID.slice (a dash prefix), over user.slice's text.
    let user = fs::read(dir.join("user.slice")).unwrap();
    units.push((
        "user-1000.slice".into(),
        std::iter::once(user)
            .chain(dropins(&dir, "user-.slice"))
            .collect(),
    ));
    for (text, name) in [
        ("", "empty.service"),
        ("\x7fELF\x02\x01\x01\x03\x01", "binary.service"),
        (
            "[Service]\nExecStart=/bin/true\n[Timer]\nOnCalendar=daily\n",
            "x.service",
        ),
        ("[Service]\nExecStart /bin/true\n", "x.service"),
        ("[Service\nExecStart=/bin/true\n", "x.service"),
        ("ExecStart=/bin/true\n", "x.service"),
        ("[Service]\nExecStart=/bin/true\n", "x.socket"),
        ("[Service]\nExecStart=/bin/true\n", "a..b.service"),
        (
            "[X-Ours]\nKey=1\n[Service]\nExecStart=/bin/sh -c \"echo %n \\\n  $$HOME\"\n\
             Environment=\"A=1 2\" B=3\nEnvironment=\nCPUQuota=150%\nMemoryMax=1G\n\
             IOWriteBandwidthMax=/dev/sda 10M\nAllowedCPUs=0-3\nTasksMax=10%\n\
             Restart=on-abnormal\n",
            "x.service",
        ),
    ] {
        units.push((name.into(), vec![text.as_bytes().to_vec()]));
    }
    for (name, texts) in &units {
        for host in ["", "+"] {
            let mut data = format!("{host}{name}\n").into_bytes();
            data.extend(texts.join(&0u8));
            write("import", &data);
        }
    }
}

fn main() {
    let repo = Path::new("..");
    import_seeds(repo);
    let mut units = unit_files(&repo.join("units"));
    let mut cases: Vec<PathBuf> = fs::read_dir(repo.join("tests/corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    for case in cases {
        units.extend(unit_files(&case));
    }
    for (unit, texts) in &units {
        // unit_file: the name's index (see NAMES in src/lib.rs), then the texts split by NUL.
        let index: u8 = if unit.ends_with(".slice") { 1 } else { 0 };
        let mut data = vec![index];
        data.extend(texts.join("\0").into_bytes());
        write("unit_file", &data);
        if unit.ends_with(".service") {
            write("transient_unit", format!("{unit}\n{}", texts[0]).as_bytes());
        }
    }
    write("unit_file", b"\x02[resources]\nmemory-max = \"1G\"\n");
    write(
        "transient_unit",
        b"run-1.service\n[service]\nexec = [\"/bin/sleep\", \"1\"]\n",
    );

    let values: &[(&str, &[&str])] = &[
        (
            "cpu-max",
            &["max", "20%", "150%", "12.5%", "0.05%", "0%", "20"],
        ),
        (
            "cpu-period",
            &["100ms", "1s", "1ms", "500us", "2s", "1ms 500us"],
        ),
        ("cpu-weight", &["idle", "1", "100", "10000", "10001", "0"]),
        (
            "cpuset-cpus",
            &["", "0-1", "0-1,3", " 0 - 1 ", "1-0", "0,,1"],
        ),
        ("cpuset-mems", &["0", "0-3"]),
        (
            "memory-max",
            &[
                "max",
                "infinity",
                "512M",
                "1.5G",
                "50%",
                "4096",
                "16777215T",
                "lots",
            ],
        ),
        ("memory-high", &["64M", "100%", "101%", "0.01%"]),
        ("memory-low", &["0", "1K"]),
        ("memory-min", &["0", "2T"]),
        ("memory-swap-max", &["max", "0"]),
        ("pids-max", &["max", "64", "18446744073709551615", "-1"]),
        ("io-weight", &["100", "1", "10000"]),
        (
            "io-max",
            &[
                "/dev/vda rbps=20M wbps=10M riops=2000 wiops=1000",
                "/dev/vdb rbps=max",
                "/dev/vda wiops=18446744073709551615",
                "vda rbps=2M",
                "/dev/vda rbps=1",
            ],
        ),
    ];
    let ints: &[(&str, i128)] = &[
        ("cpu-max", 30),
        ("cpu-period", 50_000),
        ("cpu-weight", 200),
        ("cpuset-cpus", 2),
        ("memory-max", 4096),
        ("pids-max", 64),
        ("io-weight", 500),
        ("memory-high", -5),
    ];
    let mut all = String::new();
    for (key, vs) in values {
        for v in *vs {
            write("limits", format!("{key}={v}\n").as_bytes());
            all.push_str(&format!("{key}={v}\n"));
        }
    }
    for (key, i) in ints {
        write("limits", format!("{key}:={i}\n").as_bytes());
    }
    write("limits", all.as_bytes());

    let maps: Vec<HashMap<&str, Value>> = vec![
        HashMap::from([
            ("memory-max", Value::from("512M")),
            ("cpu-max", Value::from("20%")),
        ]),
        HashMap::from([
            ("pids-max", Value::from(64u32)),
            ("io-weight", Value::from(500u16)),
        ]),
        HashMap::from([
            ("cpu-period", Value::from(50_000i64)),
            ("cpu-max", Value::from(5u8)),
        ]),
        HashMap::from([(
            "io-max",
            Value::from("/dev/vda rbps=20M wbps=10M riops=2000"),
        )]),
        HashMap::from([(
            "io-max",
            Value::from(vec![
                "/dev/vda rbps=18446744073709551615",
                "/dev/vdb wiops=2",
            ]),
        )]),
        HashMap::from([
            ("memory-high", Value::from(u64::MAX)),
            ("cpu-weight", Value::from("idle")),
        ]),
        HashMap::from([
            ("cpuset-cpus", Value::from("0-1")),
            ("memory-low", Value::from(-1i32)),
        ]),
        HashMap::from([("memory-max", Value::Value(Box::new(Value::from("1G"))))]),
        HashMap::from([
            ("memory-max", Value::from(true)),
            ("cpu-max", Value::from(1.5f64)),
        ]),
        HashMap::from([("pids-max", Value::from(vec![1u32, 2]))]),
        HashMap::from([("no-such-key", Value::from("1"))]),
    ];
    for map in &maps {
        for (order, endian) in [(0u8, LE), (1u8, BE)] {
            let bytes = to_bytes(Context::new_dbus(endian, 0), map).unwrap();
            let mut data = vec![order];
            data.extend_from_slice(&bytes);
            write("limit_map", &data);
        }
    }

    for n in [
        "web.service",
        "apps-batch.slice",
        "-.slice",
        "a:b_c@1.service",
        "x.slice",
        "1st.service",
        "web_2eservice",
        "_2d_2eslice",
        "/org/corral1/unit/web_2eservice",
        "a..b.service",
        "a-.slice",
        "a.-b.slice",
        ".web.service",
        "web x.service",
        "x.scope",
        "é.service",
        "a_2fb_2eservice",
    ] {
        write("unit_name", n.as_bytes());
    }
}
