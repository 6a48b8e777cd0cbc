//! The checks behind corral's fuzz targets, one public function per target (the files in
//! `fuzz_targets/` only hand libFuzzer's bytes to them).
//!
//! Each drives corral's own code the way corrald does with what a unit file or a D-Bus caller
//! sends, and asserts what must hold for any input: nothing panics, every error renders, and
//! the cheap invariants — a validated value prints in a canonical form that parses back to the
//! same value, a persisted drop-in loads back to the limits that were set, a unit name
//! survives object-path escaping, a name's parent slices are names, a converted systemd unit
//! is one corral loads.
//!
//! Input formats (the seeds in `corpus/` follow them):
//! - `unit_file`: one byte choosing the unit's name, then the unit file and up to three
//!   drop-ins separated by NUL bytes;
//! - `limits`: lines `key=value` (a string) or `key:=123` (an integer);
//! - `limit_map`: one byte choosing the byte order (even: little-endian), then the D-Bus
//!   serialisation of an `a{sv}`, as `SetUnitLimits` receives it;
//! - `unit_name`: the bytes as a name, and as an object-path component;
//! - `transient_unit`: the unit's name, a newline, its TOML text;
//! - `import`: a systemd unit's name (a leading `+` asks for a host where every path and
//!   program exists), a newline, its file and up to three drop-ins separated by NUL bytes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use corral::bus::limit_values;
use corral::cgroup::effective_limits;
use corral::import::{Failure, Host, ImportError, Input, Warning, convert};
use corral::limits::{IoMax, RawValue, Resources, parse_bytes};
use corral::unit::{
    Diagnostic, Graph, Kind, Unit, UnitName, UnitSet, parse_unit, parse_unit_sources,
};
use zbus::zvariant::serialized::{Context, Data};
use zbus::zvariant::{BE, LE, ObjectPath, OwnedValue};

/// The names a `unit_file` input can be loaded as: a service, a nested slice, the root slice
/// (which refuses resources), a service with `@`.
const NAMES: [&str; 4] = [
    "web.service",
    "apps-batch.slice",
    "-.slice",
    "job@1.service",
];

/// Machine sizes effective limits are computed for (memory percentages resolve against RAM).
const RAM: [u64; 3] = [0, 8 << 30, u64::MAX];

fn name(s: &str) -> UnitName {
    UnitName::parse(s).expect("a fixed valid name")
}

/// The unit file and drop-ins of one unit, parsed, merged and validated as loading does.
pub fn unit_file(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let unit = name(NAMES[first as usize % NAMES.len()]);
    let dir = Path::new("/etc/corral/units");
    let sources: Vec<(PathBuf, String)> = rest
        .split(|b| *b == 0)
        .take(4)
        .enumerate()
        .map(|(i, part)| {
            let path = match i {
                0 => dir.join(format!("{unit}.toml")),
                i => dir.join(format!("{unit}.d/{i}0-part.toml")),
            };
            (path, String::from_utf8_lossy(part).into_owned())
        })
        .collect();
    let result = parse_unit_sources(&unit, sources.clone());
    check_result(&unit, &sources, result);
}

/// Limit values, each alone and all together, as `SetUnitLimits` applies them.
pub fn limits(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut changes = Vec::new();
    // Every line that applies over the lines before it.
    let mut accepted = Resources::default();
    for line in text.lines().take(64) {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let change = match key.strip_suffix(':') {
            Some(key) => match value.parse::<i128>() {
                Ok(i) => (key, RawValue::Int(i)),
                Err(_) => continue,
            },
            None => (key, RawValue::Str(value)),
        };
        if let RawValue::Str(s) = change.1 {
            check_bytes(s);
            if let Ok(io) = s.parse::<IoMax>() {
                let again = io.to_string().parse::<IoMax>();
                assert_eq!(again.as_ref(), Ok(&io), "io-max {s:?} printed as {io}");
            }
        }
        match Resources::default().with_changes([change]) {
            Ok(r) => {
                check_canonical(&r);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        if let Ok(r) = accepted.with_changes([change]) {
            accepted = r;
        }
        changes.push(change);
    }
    // Persisting and effective limits once per input, not per line: they cost a TOML round
    // trip each, which made this target the slowest for no more coverage.
    match Resources::default().with_changes(changes.iter().copied()) {
        Ok(r) => {
            check_resources(&r);
            if r == accepted {
                return;
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    check_resources(&accepted);
}

/// The resources of a slice file that `limit_map` changes, as a live unit would have them.
const BASE_SLICE: &str = "[resources]\ncpu-max = \"50%\"\nmemory-max = \"1G\"\n\
                          io-max = [{ device = \"/dev/vda\", rbps = \"2M\", riops = 100 }]\n";

/// A D-Bus `a{sv}` of limits, decoded as zbus does, converted as the bus layer does, applied
/// and persisted as the manager does.
pub fn limit_map(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let endian = if first % 2 == 0 { LE } else { BE };
    let data = Data::new(body, Context::new_dbus(endian, 0));
    let Ok((map, _)) = data.deserialize::<HashMap<String, OwnedValue>>() else {
        return;
    };
    let values = match limit_values(&map) {
        Ok(v) => v,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let slice = name("fuzz.slice");
    let base_path = PathBuf::from("fuzz.slice.toml");
    let base = parse_unit_sources(&slice, vec![(base_path.clone(), BASE_SLICE.into())])
        .expect("the base slice loads")
        .resources;
    for old in [Resources::default(), base] {
        let changes = values.iter().map(|(k, v)| (k.as_str(), v.raw()));
        let new = match old.with_changes(changes) {
            Ok(new) => new,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                continue;
            }
        };
        check_resources(&new);
        // Persisted as the 50-limits.toml drop-in over the unit's file, it loads back.
        let mut table = toml::Table::new();
        new.write_toml(values.iter().map(|(k, _)| k.as_str()), &mut table);
        let dropin = toml_text(table);
        let main = if old.is_empty() { "" } else { BASE_SLICE };
        let sources = vec![
            (base_path.clone(), main.to_string()),
            ("fuzz.slice.d/50-limits.toml".into(), dropin.clone()),
        ];
        match parse_unit_sources(&slice, sources) {
            Ok(u) => assert_eq!(u.resources, new, "persisted as\n{dropin}"),
            Err(d) => panic!("persisted as\n{dropin}\ndoes not load: {}", render(&d)),
        }
    }
}

/// A unit name from a caller, and an object path's last component.
pub fn unit_name(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    match UnitName::parse(&s) {
        Ok(n) => check_name(&n, &s),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Some(n) = UnitName::from_object_path_component(&s) {
        check_name(&n, n.as_str());
    }
    if let Some(n) = corral::bus::unit_from_path(&s) {
        check_name(&n, n.as_str());
    }
}

/// The units a transient unit joins, already loaded: a slice with limits, services ordered
/// around each other and sharing a namespace.
fn loaded_set() -> &'static UnitSet {
    static SET: OnceLock<UnitSet> = OnceLock::new();
    SET.get_or_init(|| {
        let units = [
            (
                "apps.slice",
                "[resources]\nmemory-max = \"1G\"\ncpu-max = \"150%\"\npids-max = 100\n",
            ),
            (
                "db.service",
                "[unit]\nslice = \"apps.slice\"\nafter = [\"web.service\"]\n\
                 [service]\nexec = [\"/bin/db\"]\n[resources]\nmemory-max = \"10%\"\n\
                 io-max = [{ device = \"/dev/vda\", wbps = \"1M\" }]\n",
            ),
            (
                "pod.service",
                "[unit]\nbefore = [\"db.service\"]\nwants = [\"db.service\"]\n\
                 [service]\nexec = [\"/bin/pod\"]\n[namespaces]\nnet = true\n",
            ),
        ];
        let mut set = UnitSet::default();
        for (n, text) in units {
            let n = name(n);
            let path = PathBuf::from(format!("/etc/corral/units/{n}.toml"));
            set.insert(parse_unit(&n, &path, text).expect("a fixed unit loads"));
        }
        set
    })
}

/// A transient unit's name and text, checked as `StartTransientUnit` checks them, then added
/// to a loaded set as the manager adds it.
pub fn transient_unit(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (unit, toml) = text.split_once('\n').unwrap_or((&text, ""));
    let unit = match UnitName::parse(unit) {
        Ok(n) => n,
        Err(e) => return assert!(!e.to_string().is_empty()),
    };
    if unit.kind() != Kind::Service {
        return;
    }
    let path = Path::new("/run/corral/units").join(format!("{unit}.toml"));
    let sources = [(path.clone(), toml.to_string())];
    let result = parse_unit(&unit, &path, toml);
    let Some(u) = check_result(&unit, &sources, result) else {
        return;
    };
    let mut set = loaded_set().clone();
    if set.units.contains_key(&unit) {
        return;
    }
    set.insert(u);
    // The graph grown by one unit answers as one built over every unit.
    let rebuilt = Graph::new(set.loaded());
    for n in set.units.keys() {
        let grown: Vec<_> = set.graph.waits_on(n).collect();
        let built: Vec<_> = rebuilt.waits_on(n).collect();
        assert_eq!(grown, built, "{n} waits on");
        let grown: Vec<_> = set.graph.requirements(n).collect();
        let built: Vec<_> = rebuilt.requirements(n).collect();
        assert_eq!(grown, built, "{n} requires");
    }
    for c in set.graph.cycles() {
        assert!(c.units.len() >= 3 && c.units.first() == c.units.last());
        assert!(!c.describe().is_empty());
    }
    let tx = set.graph.transaction(std::slice::from_ref(&unit));
    let members = tx.keys().cloned().collect();
    let layers = set.graph.start_layers(&members);
    assert_eq!(layers.iter().map(Vec::len).sum::<usize>(), tx.len());
    // Effective limits over the unit's slice chain.
    let mut chain = Vec::new();
    let mut cur = Some(unit.clone());
    while let Some(n) = cur {
        let Some(u) = set.get(&n) else { break };
        chain.push((n.to_string(), u.resources.clone()));
        cur = u.slice();
        assert!(chain.len() <= 256, "a slice chain longer than a name");
    }
    let refs: Vec<(&str, &Resources)> = chain.iter().map(|(n, r)| (n.as_str(), r)).collect();
    for ram in RAM {
        let _ = effective_limits(&refs, ram).to_pairs();
    }
}

/// A host where every path exists, every bare program name is found in `/usr/bin` and the
/// machine's task limit is known: the importer's other branches.
fn host_with_everything() -> Host {
    Host {
        path_exists: |_| true,
        find_program: |name| Some(Path::new("/usr/bin").join(name)),
        tasks_max_base: Some(4_194_304),
    }
}

/// A systemd unit file and its drop-ins, converted as `corralctl import` converts them; what
/// it converts must load as a corral unit, and every error and warning must name one of the
/// files and a line in it.
pub fn import(data: &[u8]) {
    let (name, files) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let name = String::from_utf8_lossy(name);
    let (name, host) = match name.strip_prefix('+') {
        Some(name) => (name, host_with_everything()),
        None => (&*name, Host::none()),
    };
    let mut parts = files.split(|b| *b == 0).take(4);
    let main = Input {
        path: Path::new("/lib/systemd/system").join(name),
        bytes: parts.next().unwrap_or_default().to_vec(),
    };
    let dropins: Vec<Input> = parts
        .enumerate()
        .map(|(i, bytes)| Input {
            path: Path::new("/etc/systemd/system")
                .join(format!("{name}.d"))
                .join(format!("{i}0-part.conf")),
            bytes: bytes.to_vec(),
        })
        .collect();
    let inputs: Vec<&Input> = std::iter::once(&main).chain(&dropins).collect();
    match convert(name, &main, &dropins, &host) {
        Ok(c) => {
            assert_eq!(c.name.as_str(), name);
            let path = PathBuf::from(c.file_name());
            for w in &c.warnings {
                check_warning(w, &inputs, &path);
            }
            // What `corralctl verify` checks of the file written.
            let sources = [(path.clone(), c.toml.clone())];
            let result = parse_unit(&c.name, &path, &c.toml);
            if let Err(d) = &result {
                panic!(
                    "{name} converted to\n{}\ndoes not load: {}",
                    c.toml,
                    render(d)
                );
            }
            check_result(&c.name, &sources, result);
        }
        Err(Failure { error, warnings }) => {
            let (file, line) = match &error {
                ImportError::Syntax { path, line, .. }
                | ImportError::Section { path, line, .. }
                | ImportError::Invalid { path, line, .. } => (path, Some(*line)),
                ImportError::Kind { path, .. }
                | ImportError::Name { path, .. }
                | ImportError::NotAUnit { path } => (path, None),
                other => panic!("convert reads no file, yet: {other}"),
            };
            let shown = error.to_string();
            assert!(shown.starts_with(&file.display().to_string()), "{shown}");
            assert!(shown.contains("error: "), "{shown}");
            check_line(file, line.unwrap_or(1), &inputs, &shown);
            let path = PathBuf::from(format!("{name}.toml"));
            for w in &warnings {
                check_warning(w, &inputs, &path);
            }
        }
    }
}

/// A warning names one of the inputs and a line in it, or the converted file (a key corral
/// refused that came from no systemd line), and renders with its key.
fn check_warning(w: &Warning, inputs: &[&Input], converted: &Path) {
    let shown = w.to_string();
    assert!(
        shown.contains(": warning: ") && !w.why.is_empty(),
        "{shown}"
    );
    if w.file != converted {
        check_line(&w.file, w.line, inputs, &shown);
    }
}

/// `line` of `file` exists: `file` is one of the inputs, and has that many lines.
fn check_line(file: &Path, line: usize, inputs: &[&Input], shown: &str) {
    let input = inputs
        .iter()
        .find(|i| i.path == file)
        .unwrap_or_else(|| panic!("{shown}: not one of the files"));
    let lines = input.bytes.split(|b| *b == b'\n').count();
    assert!((1..=lines).contains(&line), "{shown}: {lines} lines");
}

/// What a parse gave: errors that render and point into the sources, or a unit that holds
/// what a unit must. Returns the unit.
fn check_result(
    unit: &UnitName,
    sources: &[(PathBuf, String)],
    result: Result<Unit, Vec<Diagnostic>>,
) -> Option<Unit> {
    let u = match result {
        Ok(u) => u,
        Err(diags) => {
            assert!(
                diags.iter().any(Diagnostic::is_error),
                "refused without an error"
            );
            for d in &diags {
                let loc = &d.location;
                let text = sources
                    .iter()
                    .find(|(p, _)| *p == loc.file)
                    .map(|(_, t)| t)
                    .unwrap_or_else(|| panic!("{d}: not one of the sources"));
                assert!(loc.line >= 1 && loc.column >= 1, "{d}");
                assert!(loc.line <= text.split('\n').count(), "{d}: past the end");
            }
            let shown = render(&diags);
            assert!(shown.lines().count() >= diags.len());
            return None;
        }
    };
    assert_eq!(&u.name, unit);
    let files: Vec<&PathBuf> = sources.iter().map(|(p, _)| p).collect();
    assert_eq!(u.files.iter().collect::<Vec<_>>(), files);
    match (&u.service, unit.kind()) {
        (Some(s), Kind::Service) => {
            assert!(s.exec.first().is_some_and(|p| p.starts_with('/')));
            assert_eq!(s.slice.kind(), Kind::Slice);
        }
        (None, Kind::Slice) => {}
        (s, k) => panic!("a {k} loaded with service {s:?}"),
    }
    if unit.is_root_slice() {
        assert!(u.resources.is_empty(), "the root slice took limits");
    }
    check_resources(&u.resources);
    Some(u)
}

/// Diagnostics as `StartTransientUnit` returns them (and `verify` prints them).
fn render(diags: &[Diagnostic]) -> String {
    let lines: Vec<String> = diags.iter().map(ToString::to_string).collect();
    for d in diags {
        assert!(!d.short().is_empty());
    }
    lines.join("\n")
}

/// A `[resources]` table as the text of a drop-in.
fn toml_text(resources: toml::Table) -> String {
    let mut doc = toml::Table::new();
    doc.insert("resources".into(), toml::Value::Table(resources));
    toml::to_string(&doc).expect("a table of strings and arrays serialises")
}

/// Resources that were accepted: they validate, print in canonical strings that parse back to
/// them, persist as a drop-in that loads back to them, and give effective limits.
pub fn check_resources(r: &Resources) {
    let pairs = check_canonical(r);
    let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    keys.dedup();
    let mut table = toml::Table::new();
    r.write_toml(keys, &mut table);
    let text = toml_text(table);
    let slice = name("fuzz.slice");
    match parse_unit_sources(&slice, vec![("fuzz.slice.toml".into(), text.clone())]) {
        Ok(u) => assert_eq!(
            u.resources,
            Resources {
                oom_group: false,
                ..r.clone()
            },
            "written as\n{text}"
        ),
        Err(d) => panic!("written as\n{text}\ndoes not load: {}", render(&d)),
    }
    for ram in RAM {
        let _ = effective_limits(&[("a.service", r), ("a.slice", r)], ram).to_pairs();
    }
}

/// Valid resources print as canonical strings that set the same resources; returns them.
fn check_canonical(r: &Resources) -> Vec<(&'static str, String)> {
    assert_eq!(r.validate(), Ok(()));
    let pairs = r.to_pairs();
    let again = Resources::default()
        .with_changes(pairs.iter().map(|(k, v)| (*k, RawValue::Str(v))))
        .map(|again| Resources {
            oom_group: r.oom_group,
            ..again
        });
    assert_eq!(again.as_ref(), Ok(r), "canonical strings {pairs:?}");
    pairs
}

/// `parse_bytes` against a reference computed in u128 from the digits: a number that fits is
/// its exact value, one that doesn't is refused (it wrapped before).
fn check_bytes(s: &str) {
    let got = parse_bytes(s);
    let (num, shift) = match s.as_bytes().last() {
        Some(b'K') => (&s[..s.len() - 1], 10),
        Some(b'M') => (&s[..s.len() - 1], 20),
        Some(b'G') => (&s[..s.len() - 1], 30),
        Some(b'T') => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    // The syntax: digits, and a fraction of at most 9 digits only before a suffix.
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) if shift > 0 && !f.is_empty() => (w, f),
        Some(_) => ("", ""),
        None => (num, ""),
    };
    let want = if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 9 {
        None
    } else {
        // The value, from the significant digits: more than 20 can't fit in u64.
        let significant = whole.trim_start_matches('0');
        if significant.len() > 20 {
            None
        } else {
            let whole = significant.parse::<u128>().unwrap_or(0);
            let frac_part = match frac {
                "" => 0,
                f => (f.parse::<u128>().expect("digits") << shift) / 10u128.pow(f.len() as u32),
            };
            u64::try_from((whole << shift) + frac_part).ok()
        }
    };
    assert_eq!(got, want, "parse_bytes({s:?})");
}

/// A valid name: as given, escapable into an object path and back, with parent slices and a
/// cgroup path made of valid names.
fn check_name(n: &UnitName, given: &str) {
    assert_eq!(n.as_str(), given);
    assert!((1..=255).contains(&given.len()));
    assert!(!given.contains('/') && !given.contains(".."));
    assert_eq!(n.kind() == Kind::Slice, given.ends_with(".slice"));
    assert!(!n.stem().is_empty());
    let esc = n.object_path_component();
    assert!(
        esc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "{esc}"
    );
    assert!(!esc.starts_with(|c: char| c.is_ascii_digit()), "{esc}");
    assert_eq!(UnitName::from_object_path_component(&esc).as_ref(), Some(n));
    let path = corral::bus::unit_path(n);
    assert!(ObjectPath::try_from(path.as_str()).is_ok(), "{path}");
    assert_eq!(corral::bus::unit_from_path(path.as_str()).as_ref(), Some(n));
    let path = corral::bus::systemd1::unit_path(n);
    assert!(ObjectPath::try_from(path.as_str()).is_ok(), "{path}");
    assert_eq!(
        corral::bus::systemd1::unit_from_path(path.as_str()).as_ref(),
        Some(n)
    );
    // Up the slices, every parent is a valid name, ending at the root slice.
    let mut cur = match n.kind() {
        Kind::Slice => n.parent_slice(),
        Kind::Service | Kind::Scope => None,
    };
    let mut steps = 0;
    while let Some(p) = cur {
        assert_eq!(
            UnitName::parse(p.as_str()).as_ref(),
            Ok(&p),
            "parent of {n}"
        );
        assert_eq!(p.kind(), Kind::Slice);
        steps += 1;
        assert!(steps <= 128, "{n}: no end to its parents");
        cur = p.parent_slice();
    }
    let cg = n.cgroup_path(None);
    for c in cg.components() {
        let c = c.as_os_str().to_str().expect("UTF-8");
        assert!(
            UnitName::parse(c).is_ok(),
            "{n}: cgroup path {}",
            cg.display()
        );
    }
}
