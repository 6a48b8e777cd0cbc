//! Validation: from a merged [`Node`] tree to a [`Unit`], collecting every problem.
//!
//! Each table is read by a [`Table`] reader that records which keys were looked at; whatever is
//! left over is an unknown key, reported with the nearest valid key ("did you mean") — also when
//! the key belongs to another table (`memory-max` under `[service]`). Values are checked with the
//! kernel's own rules (see [`crate::limits`]); rules that involve several keys (a hostname needs
//! a uts namespace, a oneshot can't restart always) are checked once the table is read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::diag::{Diagnostic, Location, did_you_mean};
use super::doc::{Node, Value};
use super::keys::{self, Table as KeyTable};
use super::model::*;
use super::name::{Kind, UnitName};
use crate::caps::{self, Cap, CapSet};
use crate::limits::{IO_MAX_FIELDS, IoMax, RESOURCE_KEYS, RawValue, Resources};

pub use super::keys::all_keys;

/// Turns a merged document into a unit. `files` are the sources in merge order. Errors and
/// warnings go to `diags`; the unit is returned only when there was no error.
pub fn validate(
    name: &UnitName,
    doc: &Node,
    files: Vec<PathBuf>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Unit> {
    let errors_before = diags.iter().filter(|d| d.is_error()).count();
    let mut cx = Cx { diags };
    let kind = name.kind();
    let allowed: &[KeyTable] = match kind {
        Kind::Service => &KeyTable::ALL,
        Kind::Slice => &[KeyTable::Unit, KeyTable::Resources],
        // Refused by name before anything is read (`name_from_path`); here for completeness.
        Kind::Scope => {
            cx.diags.push(Diagnostic::error(
                Location::file(&doc.source.path),
                None,
                scope_file(name),
            ));
            return None;
        }
    };
    let allowed = allowed.iter().map(|t| t.name());
    let mut top = Table::top(doc);
    let unit_t = top.table(&mut cx, "unit");
    let service_t = if kind == Kind::Service {
        top.table(&mut cx, "service")
    } else {
        None
    };
    let resources_t = top.table(&mut cx, "resources");
    let ns_t = if kind == Kind::Service {
        top.table(&mut cx, "namespaces")
    } else {
        None
    };
    for (key, node) in top.leftover() {
        let msg = if kind == Kind::Slice && (key == "service" || key == "namespaces") {
            format!(
                "a slice has no [{key}] table; it takes [unit] (description only) and [resources]"
            )
        } else {
            match did_you_mean(key, allowed.clone()) {
                Some(s) => format!("unknown table; did you mean [{s}]?"),
                None => format!(
                    "unknown table; expected {}",
                    allowed
                        .clone()
                        .map(|t| format!("[{t}]"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        };
        cx.error(node.key_location(), format!("[{key}]"), msg);
    }

    let mut unit_table = Table::of(unit_t, KeyTable::Unit);
    let description = unit_table
        .string(&mut cx, "description")
        .unwrap_or_default();

    let resources = resources_t
        .map(|n| resources(&mut cx, name, n))
        .unwrap_or_default();

    let service = match kind {
        Kind::Slice => {
            for (key, node) in unit_table.leftover() {
                let msg = if KeyTable::Unit.get(key).is_some() {
                    "a slice takes only description in [unit]".to_string()
                } else {
                    unknown_key_message(key, KeyTable::Unit)
                };
                cx.error(node.key_location(), format!("[unit] {key}"), msg);
            }
            None
        }
        Kind::Service => {
            let t = &mut unit_table;
            // Only a failed built-in default leaves these unset, and that is reported.
            let slice = t
                .field(&mut cx, "slice", |n| unit_name_value(n, Some(Kind::Slice)))
                .unwrap_or_else(UnitName::default_slice);
            let deps = Deps {
                requires: t.deps(&mut cx, "requires"),
                wants: t.deps(&mut cx, "wants"),
                after: t.deps(&mut cx, "after"),
                before: t.deps(&mut cx, "before"),
            };
            let autostart = t
                .field(&mut cx, "autostart", bool_value)
                .unwrap_or_default();
            t.finish(&mut cx);
            let lists = [
                ("requires", &deps.requires),
                ("wants", &deps.wants),
                ("after", &deps.after),
                ("before", &deps.before),
            ];
            for (key, list) in lists {
                for d in list.iter().filter(|d| d.name == *name) {
                    cx.error(
                        d.at.clone(),
                        format!("[unit] {key}"),
                        format!("{name} names itself"),
                    );
                }
            }
            match service_t {
                Some(n) => service(&mut cx, n, ns_t, slice, deps, autostart),
                None => {
                    cx.error(
                        Location::file(&doc.source.path),
                        "[service] exec".to_string(),
                        "a service needs [service] with exec = [\"/absolute/path\", …]",
                    );
                    None
                }
            }
            .map(Box::new)
        }
        Kind::Scope => None,
    };

    let mut resources = resources;
    if let Some(s) = &service {
        resources.oom_group = s.oom_policy == OomPolicy::Kill;
    }
    if name.is_root_slice() && !resources.is_empty() {
        cx.error(
            resources_t.map_or_else(|| Location::file(&doc.source.path), Node::key_location),
            "[resources]".to_string(),
            "the root slice -.slice is the cgroup root, which has no cpu.max, memory.max, \
             pids.max or io.max: put limits on a child slice",
        );
    }
    let errors_after = cx.diags.iter().filter(|d| d.is_error()).count();
    (errors_after == errors_before).then(|| Unit {
        name: name.clone(),
        description,
        files,
        resources,
        service,
        scope: None,
        transient: false,
    })
}

struct Cx<'d> {
    diags: &'d mut Vec<Diagnostic>,
}

impl Cx<'_> {
    fn error(&mut self, at: Location, key: String, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(at, Some(key), msg));
    }
}

/// Reads the keys of one table, remembering which were taken. A table of the unit-file format
/// ([`KeyTable`]) also knows its keys, and hands out the built-in default of a key the file
/// leaves out ([`keys::defaults`]).
struct Table<'n> {
    node: Option<&'n Node>,
    name: &'static str,
    /// Which table of the format this is (`None` for the document's top level).
    format: Option<KeyTable>,
    defaults: Option<&'static Node>,
    taken: Vec<&'n str>,
}

impl<'n> Table<'n> {
    /// The document's top level, whose keys are tables.
    fn top(node: &'n Node) -> Self {
        Table {
            node: Some(node),
            name: "",
            format: None,
            defaults: None,
            taken: Vec::new(),
        }
    }

    /// A table of the format, as the file has it (`None`: the file has no such table).
    fn of(node: Option<&'n Node>, table: KeyTable) -> Self {
        Table {
            node,
            name: table.name(),
            format: Some(table),
            defaults: keys::defaults(table),
            taken: Vec::new(),
        }
    }

    fn entries(&self) -> &'n [(String, Node)] {
        match self.node.map(|n| &n.value) {
            Some(Value::Table(e)) => e,
            _ => &[],
        }
    }

    fn key_label(&self, key: &str) -> String {
        if self.name.is_empty() {
            format!("[{key}]")
        } else {
            format!("[{}] {key}", self.name)
        }
    }

    fn take(&mut self, key: &str) -> Option<&'n Node> {
        let (k, n) = self.entries().iter().find(|(k, _)| k == key)?;
        self.taken.push(k);
        Some(n)
    }

    /// A sub-table; a non-table value there is an error.
    fn table(&mut self, cx: &mut Cx, key: &str) -> Option<&'n Node> {
        let node = self.take(key)?;
        match node.value {
            Value::Table(_) => Some(node),
            ref v => {
                cx.error(
                    node.location(),
                    self.key_label(key),
                    format!("expected a table, got {}", v.type_name()),
                );
                None
            }
        }
    }

    /// Takes a key and converts it; a conversion error is reported at the value. A key with a
    /// built-in default yields that default when the file leaves it out or its value is wrong
    /// (so that validation goes on and finds every other problem); `None` then means only that
    /// the key has no default.
    fn field<T>(
        &mut self,
        cx: &mut Cx,
        key: &str,
        mut f: impl FnMut(&Node) -> Result<T, Problem>,
    ) -> Option<T> {
        if let Some(node) = self.take(key) {
            match f(node) {
                Ok(v) => return Some(v),
                Err(p) => self.report(cx, key, node, p),
            }
        }
        let default = self.defaults.and_then(|d| d.get(key))?;
        match f(default) {
            Ok(v) => Some(v),
            Err(p) => {
                let p = Problem::new(format!(
                    "internal error: the built-in default does not validate: {}",
                    p.msg
                ));
                self.report(cx, key, default, p);
                None
            }
        }
    }

    fn report(&self, cx: &mut Cx, key: &str, node: &Node, p: Problem) {
        let label = match &p.sub {
            Some(sub) => format!("{}{sub}", self.key_label(key)),
            None => self.key_label(key),
        };
        cx.error(p.at.unwrap_or_else(|| node.location()), label, p.msg);
    }

    fn string(&mut self, cx: &mut Cx, key: &str) -> Option<String> {
        self.field(cx, key, |n| str_value(n).map(str::to_string))
    }

    /// The value the file wrote for `key`, if it did (not a default).
    fn written(&self, key: &str) -> Option<&'n Node> {
        self.entries()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n)
    }

    fn deps(&mut self, cx: &mut Cx, key: &str) -> Vec<Dep> {
        let Some(node) = self.take(key) else {
            return Vec::new();
        };
        let label = self.key_label(key);
        let Value::Array(items) = &node.value else {
            cx.error(
                node.location(),
                label,
                format!(
                    "expected an array of unit names, got {}",
                    node.value.type_name()
                ),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            match unit_name_value(item, None) {
                Ok(name) => out.push(Dep {
                    name,
                    at: item.location(),
                }),
                Err(p) => cx.error(item.location(), label.clone(), p.msg),
            }
        }
        out
    }

    fn leftover(&self) -> impl Iterator<Item = (&'n str, &'n Node)> + '_ {
        self.entries()
            .iter()
            .filter(|(k, _)| !self.taken.contains(&k.as_str()))
            .map(|(k, n)| (k.as_str(), n))
    }

    /// Reports every key that was not taken as unknown.
    fn finish(&self, cx: &mut Cx) {
        let Some(table) = self.format else { return };
        let left: Vec<_> = self.leftover().collect();
        for (key, node) in left {
            cx.error(
                node.key_location(),
                self.key_label(key),
                unknown_key_message(key, table),
            );
        }
    }
}

fn unknown_key_message(key: &str, table: KeyTable) -> String {
    if let Some(s) = did_you_mean(key, table.names()) {
        return format!("unknown key; did you mean \"{s}\"?");
    }
    let others = || KeyTable::ALL.into_iter().filter(move |t| *t != table);
    if let Some(other) = others().find(|t| t.get(key).is_some()) {
        return format!(
            "unknown key in [{}]; \"{key}\" belongs in [{}]",
            table.name(),
            other.name()
        );
    }
    for other in KeyTable::ALL {
        if let Some(s) = did_you_mean(key, other.names()) {
            return format!("unknown key; did you mean \"{s}\" in [{}]?", other.name());
        }
    }
    format!("unknown key in [{}]", table.name())
}

/// A value problem: the message, and optionally a more precise place and a sub-key label.
struct Problem {
    msg: String,
    at: Option<Location>,
    sub: Option<String>,
}

impl Problem {
    fn new(msg: impl Into<String>) -> Self {
        Problem {
            msg: msg.into(),
            at: None,
            sub: None,
        }
    }

    fn at(node: &Node, sub: impl Into<String>, msg: impl Into<String>) -> Self {
        Problem {
            msg: msg.into(),
            at: Some(node.location()),
            sub: Some(sub.into()),
        }
    }
}

fn expected(what: &str, node: &Node) -> Problem {
    let got = match &node.value {
        Value::Str(s) => format!("{s:?}"),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => b.to_string(),
        v => v.type_name().to_string(),
    };
    Problem::new(format!("expected {what}, got {got}"))
}

fn str_value(n: &Node) -> Result<&str, Problem> {
    match &n.value {
        Value::Str(s) => Ok(s),
        v => Err(Problem::new(format!(
            "expected a string, got {}",
            v.type_name()
        ))),
    }
}

fn bool_value(n: &Node) -> Result<bool, Problem> {
    match n.value {
        Value::Bool(b) => Ok(b),
        _ => Err(expected("true or false", n)),
    }
}

fn enum_value<T: Copy>(n: &Node, choices: &[(&str, T)]) -> Result<T, Problem> {
    let names = || {
        choices
            .iter()
            .map(|(s, _)| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let s = str_value(n).map_err(|_| expected(&format!("one of {}", names()), n))?;
    choices
        .iter()
        .find(|(c, _)| *c == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let mut p = expected(&format!("one of {}", names()), n);
            if let Some(m) = did_you_mean(s, choices.iter().map(|(c, _)| *c)) {
                p.msg.push_str(&format!("; did you mean {m:?}?"));
            }
            p
        })
}

fn unit_name_value(n: &Node, kind: Option<Kind>) -> Result<UnitName, Problem> {
    let s = str_value(n).map_err(|_| expected("a unit name", n))?;
    let name = UnitName::parse(s).map_err(|e| Problem::new(e.to_string()))?;
    match kind {
        Some(k) if name.kind() != k => Err(Problem::new(format!("{name} is not a {k}"))),
        _ => Ok(name),
    }
}

fn duration_value(n: &Node) -> Result<Duration, Problem> {
    let s = str_value(n).map_err(|_| expected("a duration such as \"10s\" or \"100ms\"", n))?;
    humantime::parse_duration(s).map_err(|e| {
        expected("a duration such as \"10s\" or \"100ms\"", n).with_detail(&e.to_string())
    })
}

impl Problem {
    fn with_detail(mut self, detail: &str) -> Self {
        self.msg.push_str(&format!(" ({detail})"));
        self
    }
}

/// A signed offset such as `"-10s"` or `"1h"`, in nanoseconds.
fn offset_value(n: &Node) -> Result<i64, Problem> {
    const WHAT: &str = "a duration such as \"10s\" or \"-1h\"";
    let s = str_value(n).map_err(|_| expected(WHAT, n))?;
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let d = humantime::parse_duration(body).map_err(|_| expected(WHAT, n))?;
    let ns = i64::try_from(d.as_nanos()).map_err(|_| expected(WHAT, n))?;
    Ok(if neg { -ns } else { ns })
}

fn abs_path_value(n: &Node) -> Result<PathBuf, Problem> {
    let s = str_value(n).map_err(|_| expected("an absolute path", n))?;
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        return Err(expected("an absolute path", n));
    }
    if p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(Problem::new(format!("path {s:?} contains \"..\"")));
    }
    Ok(p)
}

fn argv_value(n: &Node, allow_empty: bool) -> Result<Vec<String>, Problem> {
    const WHAT: &str = "an array of strings: the absolute program path, then its arguments";
    let Value::Array(items) = &n.value else {
        return Err(expected(WHAT, n));
    };
    let mut argv = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match &item.value {
            Value::Str(s) if s.contains('\0') => {
                return Err(Problem::at(item, format!("[{i}]"), "contains a NUL byte"));
            }
            Value::Str(s) => argv.push(s.clone()),
            v => {
                return Err(Problem::at(
                    item,
                    format!("[{i}]"),
                    format!("expected a string, got {}", v.type_name()),
                ));
            }
        }
    }
    match argv.first() {
        None if allow_empty => Ok(argv),
        None => Err(Problem::new(format!("is empty; expected {WHAT}"))),
        Some(p) if !p.starts_with('/') => Err(Problem::at(
            &items[0],
            "[0]",
            format!("{p:?} is not an absolute path (no shell or $PATH lookup is done)"),
        )),
        Some(_) => Ok(argv),
    }
}

fn ident_value(n: &Node) -> Result<Ident, Problem> {
    const WHAT: &str = "a user or group name, or a numeric id";
    match &n.value {
        Value::Int(i) => u32::try_from(*i)
            .ok()
            .filter(|id| *id != u32::MAX)
            .map(Ident::Id)
            .ok_or_else(|| expected("an id from 0 to 4294967294", n)),
        Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse::<u32>()
            .ok()
            .filter(|id| *id != u32::MAX)
            .map(Ident::Id)
            .ok_or_else(|| expected("an id from 0 to 4294967294", n)),
        Value::Str(s) if valid_ident_name(s) => Ok(Ident::Name(s.clone())),
        _ => Err(expected(WHAT, n)),
    }
}

/// A POSIX-portable user or group name, as useradd accepts: `[a-z_][a-z0-9_-]*[$]?`, ≤ 32.
fn valid_ident_name(s: &str) -> bool {
    let body = s.strip_suffix('$').unwrap_or(s);
    let mut bytes = body.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && s.len() <= 32
}

fn umask_value(n: &Node) -> Result<u32, Problem> {
    const WHAT: &str = "an octal mode such as \"0022\"";
    let m = match &n.value {
        Value::Int(i) => u32::try_from(*i).ok(),
        Value::Str(s) if (1..=4).contains(&s.len()) => u32::from_str_radix(s, 8).ok(),
        _ => None,
    };
    m.filter(|m| *m <= 0o777).ok_or_else(|| expected(WHAT, n))
}

fn signal_value(n: &Node) -> Result<Signal, Problem> {
    const WHAT: &str = "a signal name such as \"SIGTERM\", or its number";
    let sig = match &n.value {
        Value::Int(i) => i32::try_from(*i)
            .ok()
            .and_then(|i| Signal::try_from(i).ok()),
        Value::Str(s) if s.starts_with("SIG") => Signal::from_str(s).ok(),
        Value::Str(s) => Signal::from_str(&format!("SIG{s}")).ok(),
        _ => None,
    };
    sig.ok_or_else(|| expected(WHAT, n))
}

fn output_value(n: &Node) -> Result<Output, Problem> {
    const WHAT: &str = "\"log\", \"inherit\", \"null\" or \"file:/absolute/path\"";
    let s = str_value(n).map_err(|_| expected(WHAT, n))?;
    match s {
        "log" => Ok(Output::Log),
        "inherit" => Ok(Output::Inherit),
        "null" => Ok(Output::Null),
        _ => match s.strip_prefix("file:") {
            Some(p) if p.starts_with('/') && !p.contains("/../") => Ok(Output::File(p.into())),
            _ => Err(expected(WHAT, n)),
        },
    }
}

fn environment_value(n: &Node) -> Result<BTreeMap<String, String>, Problem> {
    let Value::Table(entries) = &n.value else {
        return Err(expected("a table of NAME = \"value\"", n));
    };
    let mut env = BTreeMap::new();
    for (k, v) in entries {
        let valid = k
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(Problem {
                msg: "is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*)".into(),
                at: Some(v.key_location()),
                sub: Some(format!(".{k}")),
            });
        }
        match &v.value {
            Value::Str(s) if !s.contains('\0') => {
                env.insert(k.clone(), s.clone());
            }
            other => {
                return Err(Problem::at(
                    v,
                    format!(".{k}"),
                    format!("expected a string, got {}", other.type_name()),
                ));
            }
        }
    }
    Ok(env)
}

/// `start-limit`: a table of `burst` and `interval`; a key left out keeps the built-in default's.
fn start_limit_value(n: &Node) -> Result<StartLimit, Problem> {
    let base = keys::defaults(KeyTable::Service)
        .and_then(|d| d.get("start-limit"))
        .filter(|d| !std::ptr::eq(*d, n))
        .and_then(|d| start_limit_over(d, None).ok());
    start_limit_over(n, base)
}

/// Reads a `start-limit` table over `base`; without a base both keys must be there.
fn start_limit_over(n: &Node, base: Option<StartLimit>) -> Result<StartLimit, Problem> {
    let Value::Table(entries) = &n.value else {
        return Err(expected("a table { burst = N, interval = \"10s\" }", n));
    };
    let (mut burst, mut interval) = (base.map(|b| b.burst), base.map(|b| b.interval));
    for (k, v) in entries {
        match k.as_str() {
            "burst" => match v.value {
                Value::Int(i) if (1..=i128::from(u32::MAX)).contains(&i) => burst = Some(i as u32),
                _ => {
                    return Err(Problem::at(
                        v,
                        ".burst",
                        expected("a number of starts ≥ 1", v).msg,
                    ));
                }
            },
            "interval" => {
                interval = Some(duration_value(v).map_err(|p| Problem::at(v, ".interval", p.msg))?);
            }
            other => {
                let mut msg = "unknown key; expected burst or interval".to_string();
                if let Some(s) = did_you_mean(other, ["burst", "interval"]) {
                    msg = format!("unknown key; did you mean \"{s}\"?");
                }
                return Err(Problem {
                    msg,
                    at: Some(v.key_location()),
                    sub: Some(format!(".{other}")),
                });
            }
        }
    }
    match (burst, interval) {
        (Some(burst), Some(interval)) => Ok(StartLimit { burst, interval }),
        _ => Err(Problem::new("needs burst and interval")),
    }
}

/// A list of capability names such as `["CAP_NET_BIND_SERVICE"]` (any case).
fn capabilities_value(n: &Node) -> Result<(CapSet, Vec<(Cap, Location)>), Problem> {
    const WHAT: &str = "an array of capability names such as \"CAP_NET_BIND_SERVICE\"";
    let Value::Array(items) = &n.value else {
        return Err(expected(WHAT, n));
    };
    let mut set = CapSet::EMPTY;
    let mut at = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Str(name) = &item.value else {
            return Err(Problem::at(
                item,
                format!("[{i}]"),
                expected(WHAT, item).msg,
            ));
        };
        let Some(cap) = Cap::from_name(name) else {
            let upper = name.to_ascii_uppercase();
            let prefixed = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            let mut msg = format!("unknown capability {name:?}");
            match did_you_mean(&prefixed, caps::NAMES) {
                Some(s) => msg.push_str(&format!("; did you mean {s:?}?")),
                None => {
                    msg.push_str(" (capabilities(7) lists them, e.g. \"CAP_NET_BIND_SERVICE\")")
                }
            }
            return Err(Problem::at(item, format!("[{i}]"), msg));
        };
        set.insert(cap);
        at.push((cap, item.location()));
    }
    Ok((set, at))
}

fn service(
    cx: &mut Cx,
    node: &Node,
    ns_node: Option<&Node>,
    slice: UnitName,
    deps: Deps,
    autostart: bool,
) -> Option<Service> {
    let mut t = Table::of(Some(node), KeyTable::Service);
    #[derive(Clone, Copy, PartialEq)]
    enum Ty {
        Simple,
        Exec,
        Notify,
        Oneshot,
    }
    // Every key with a built-in default (keys::SERVICE) comes back `Some` unless that default
    // failed to validate, which is reported: the `?`s at the end only ever meet an error.
    let ty = t.field(cx, "type", |n| {
        enum_value(
            n,
            &[
                ("simple", Ty::Simple),
                ("exec", Ty::Exec),
                ("notify", Ty::Notify),
                ("oneshot", Ty::Oneshot),
            ],
        )
    });
    let exec_node = t.entries().iter().any(|(k, _)| k == "exec");
    let exec = t.field(cx, "exec", |n| argv_value(n, false));
    if !exec_node {
        cx.error(
            node.key_location(),
            "[service] exec".into(),
            "missing: a service needs exec = [\"/absolute/path\", …]",
        );
    }
    let exec_stop = t.field(cx, "exec-stop", |n| argv_value(n, true));
    let remain_at = t.written("remain-after-exit").map(Node::key_location);
    let remain = t.field(cx, "remain-after-exit", bool_value);
    let user = t.field(cx, "user", ident_value);
    let group = t.field(cx, "group", ident_value);
    let working_directory = t.field(cx, "working-directory", abs_path_value);
    let environment = t.field(cx, "environment", environment_value);
    let umask = t.field(cx, "umask", umask_value);
    let restart_at = t.written("restart").map(Node::location);
    let restart = t.field(cx, "restart", |n| {
        enum_value(
            n,
            &[
                ("no", Restart::No),
                ("on-failure", Restart::OnFailure),
                ("always", Restart::Always),
            ],
        )
    });
    let restart_delay = t.field(cx, "restart-delay", duration_value);
    let delay_max_at = t.written("restart-delay-max").map(Node::location);
    let restart_delay_max = t.field(cx, "restart-delay-max", duration_value);
    let start_limit = t.field(cx, "start-limit", start_limit_value);
    let start_timeout = t.field(cx, "start-timeout", duration_value);
    let stop_timeout = t.field(cx, "stop-timeout", duration_value);
    let stop_signal = t.field(cx, "stop-signal", signal_value);
    let kill_mode = t.field(cx, "kill-mode", |n| {
        enum_value(
            n,
            &[
                ("control-group", KillMode::ControlGroup),
                ("process", KillMode::Process),
            ],
        )
    });
    let notify_access = t.field(cx, "notify-access", |n| {
        enum_value(
            n,
            &[("main", NotifyAccess::Main), ("all", NotifyAccess::All)],
        )
    });
    let stdout = t.field(cx, "stdout", output_value);
    let stderr = t.field(cx, "stderr", output_value);
    let no_new_privileges = t.field(cx, "no-new-privileges", bool_value);
    let capabilities = t.field(cx, "capabilities", capabilities_value);
    let ambient = t.field(cx, "ambient-capabilities", capabilities_value);
    let oom_policy = t.field(cx, "oom-policy", |n| {
        enum_value(
            n,
            &[
                ("stop", OomPolicy::Stop),
                ("continue", OomPolicy::Continue),
                ("kill", OomPolicy::Kill),
            ],
        )
    });
    let delegate = t.field(cx, "delegate", bool_value);
    t.finish(cx);

    if ty != Some(Ty::Oneshot)
        && remain == Some(true)
        && let Some(at) = remain_at
    {
        cx.error(
            at,
            "[service] remain-after-exit".into(),
            "applies to type = \"oneshot\" only",
        );
    }
    if ty == Some(Ty::Oneshot) && restart == Some(Restart::Always) {
        cx.error(
            restart_at.unwrap_or_else(|| node.location()),
            "[service] restart".into(),
            "a oneshot service can't restart always (it is meant to exit); use \"on-failure\"",
        );
    }
    if let (Some(delay), Some(max)) = (restart_delay, restart_delay_max)
        && max < delay
    {
        cx.error(
            delay_max_at.unwrap_or_else(|| node.location()),
            "[service] restart-delay-max".into(),
            format!(
                "{} is shorter than restart-delay ({})",
                humantime::format_duration(max),
                humantime::format_duration(delay)
            ),
        );
    }
    // An ambient capability must stay in the bounding set: the kernel refuses to raise one
    // that is not (PR_CAP_AMBIENT_RAISE: EPERM), so say so here, where it was written.
    if let (Some((bounding, _)), Some((_, ambient_at))) = (&capabilities, &ambient) {
        for (cap, at) in ambient_at.iter().filter(|(c, _)| !bounding.contains(*c)) {
            cx.error(
                at.clone(),
                "[service] ambient-capabilities".into(),
                format!(
                    "{cap} is not in capabilities (the bounding set), so it can't be raised: \
                     add it there too"
                ),
            );
        }
    }

    let namespaces = ns_node.map(|n| namespaces(cx, n)).unwrap_or_default();
    let kind = match ty? {
        Ty::Simple => ServiceType::Simple,
        Ty::Exec => ServiceType::Exec,
        Ty::Notify => ServiceType::Notify,
        Ty::Oneshot => ServiceType::Oneshot {
            remain_after_exit: remain?,
        },
    };
    Some(Service {
        slice,
        deps,
        autostart,
        kind,
        exec: exec?,
        exec_stop: exec_stop?,
        user,
        group,
        working_directory: working_directory?,
        environment: environment?,
        umask: umask?,
        restart: restart?,
        restart_delay: restart_delay?,
        restart_delay_max: restart_delay_max?,
        start_limit: start_limit?,
        start_timeout: start_timeout?,
        stop_timeout: stop_timeout?,
        stop_signal: stop_signal?,
        kill_mode: kill_mode?,
        notify_access: notify_access?,
        stdout: stdout?,
        stderr: stderr?,
        no_new_privileges: no_new_privileges?,
        capabilities: capabilities.map(|(set, _)| set),
        ambient_capabilities: ambient?.0,
        oom_policy: oom_policy?,
        delegate: delegate?,
        namespaces,
    })
}

/// A `[resources]` value as the limits parser takes it.
fn raw(n: &Node) -> Result<RawValue<'_>, Problem> {
    match &n.value {
        Value::Str(s) => Ok(RawValue::Str(s)),
        Value::Int(i) => Ok(RawValue::Int(*i)),
        v => Err(Problem::new(format!(
            "expected a string or an integer, got {}",
            v.type_name()
        ))),
    }
}

fn resources(cx: &mut Cx, unit: &UnitName, node: &Node) -> Resources {
    let mut res = Resources::default();
    let mut t = Table::of(Some(node), KeyTable::Resources);
    for key in RESOURCE_KEYS {
        if key == "io-max" {
            if let Some(entries) = t.field(cx, key, io_max_value) {
                res.io_max = entries;
            }
            continue;
        }
        t.field(cx, key, |n| {
            let v = raw(n)?;
            let mut probe = res.clone();
            probe.set(key, v).map_err(|e| match e {
                crate::limits::SetError::Value { err, .. } => Problem::new(err.to_string()),
                other => Problem::new(other.to_string()),
            })?;
            res = probe;
            Ok(())
        });
    }
    // Checked again with every key in place: cpu-max may come before cpu-period.
    if let Err(e) = res.validate() {
        let at = node
            .get("cpu-max")
            .map_or_else(|| node.location(), Node::location);
        cx.error(at, "[resources] cpu-max".into(), e.to_string());
    }
    let _ = unit;
    t.finish(cx);
    res
}

fn io_max_value(n: &Node) -> Result<Vec<IoMax>, Problem> {
    const WHAT: &str = "an array of tables { device = \"/dev/…\", rbps = \"20M\", wbps = …, riops = N, wiops = N }";
    let Value::Array(items) = &n.value else {
        return Err(expected(WHAT, n));
    };
    let mut out: Vec<IoMax> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Table(fields) = &item.value else {
            return Err(Problem::at(
                item,
                format!("[{i}]"),
                expected(WHAT, item).msg,
            ));
        };
        let device = item.get("device").ok_or_else(|| {
            Problem::at(
                item,
                format!("[{i}].device"),
                "missing: the block device path",
            )
        })?;
        let path = abs_path_value(device)
            .map_err(|p| Problem::at(device, format!("[{i}].device"), p.msg))?;
        let mut entry = IoMax::new(path)
            .map_err(|e| Problem::at(device, format!("[{i}].device"), e.to_string()))?;
        for (k, v) in fields {
            if k == "device" {
                continue;
            }
            if !IO_MAX_FIELDS.contains(&k.as_str()) {
                let msg = match did_you_mean(k, IO_MAX_FIELDS) {
                    Some(s) => format!("unknown key; did you mean \"{s}\"?"),
                    None => "unknown key; expected device, rbps, wbps, riops or wiops".into(),
                };
                return Err(Problem {
                    msg,
                    at: Some(v.key_location()),
                    sub: Some(format!("[{i}].{k}")),
                });
            }
            let rv = raw(v).map_err(|p| Problem::at(v, format!("[{i}].{k}"), p.msg))?;
            entry
                .set_field(k, rv)
                .map_err(|e| Problem::at(v, format!("[{i}].{k}"), e.to_string()))?;
        }
        if out.iter().any(|e| e.device == entry.device) {
            return Err(Problem::at(
                device,
                format!("[{i}].device"),
                format!("{} is listed twice", entry.device.display()),
            ));
        }
        out.push(entry);
    }
    Ok(out)
}

fn ns_mode_value(n: &Node) -> Result<Option<NsMode>, Problem> {
    const WHAT: &str = "true (a new namespace), a service name to share its namespace, or an \
                        absolute path to a namespace file";
    match &n.value {
        Value::Bool(true) => Ok(Some(NsMode::New)),
        Value::Bool(false) => Ok(None),
        Value::Str(s) if s.starts_with('/') => abs_path_value(n).map(|p| Some(NsMode::Path(p))),
        Value::Str(_) => {
            let name = unit_name_value(n, Some(Kind::Service))
                .map_err(|p| Problem::new(format!("expected {WHAT}: {}", p.msg)))?;
            Ok(Some(NsMode::Share(name)))
        }
        _ => Err(expected(WHAT, n)),
    }
}

fn id_map_value(n: &Node) -> Result<Vec<IdMap>, Problem> {
    const WHAT: &str = "an array of tables { inside = N, outside = N, count = N }";
    let Value::Array(items) = &n.value else {
        return Err(expected(WHAT, n));
    };
    let mut out: Vec<IdMap> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Table(fields) = &item.value else {
            return Err(Problem::at(
                item,
                format!("[{i}]"),
                expected(WHAT, item).msg,
            ));
        };
        let mut vals = [None; 3];
        for (k, v) in fields {
            let slot = match k.as_str() {
                "inside" => 0,
                "outside" => 1,
                "count" => 2,
                _ => {
                    return Err(Problem {
                        msg: "unknown key; expected inside, outside or count".into(),
                        at: Some(v.key_location()),
                        sub: Some(format!("[{i}].{k}")),
                    });
                }
            };
            match v.value {
                Value::Int(x) if (0..i128::from(u32::MAX)).contains(&x) => {
                    vals[slot] = Some(x as u32)
                }
                _ => {
                    return Err(Problem::at(
                        v,
                        format!("[{i}].{k}"),
                        expected("an id from 0 to 4294967294", v).msg,
                    ));
                }
            }
        }
        let [Some(inside), Some(outside), Some(count)] = vals else {
            return Err(Problem::at(
                item,
                format!("[{i}]"),
                "needs inside, outside and count",
            ));
        };
        if count == 0
            || u64::from(inside) + u64::from(count) > u64::from(u32::MAX)
            || u64::from(outside) + u64::from(count) > u64::from(u32::MAX)
        {
            return Err(Problem::at(
                item,
                format!("[{i}].count"),
                "count must be ≥ 1 and the range must fit in 32 bits",
            ));
        }
        let overlaps = |a: &IdMap, b: &IdMap, f: fn(&IdMap) -> u32| {
            f(a) < f(b) + b.count && f(b) < f(a) + a.count
        };
        let m = IdMap {
            inside,
            outside,
            count,
        };
        if out
            .iter()
            .any(|o| overlaps(&m, o, |x| x.inside) || overlaps(&m, o, |x| x.outside))
        {
            return Err(Problem::at(
                item,
                format!("[{i}]"),
                "overlaps an earlier range (the kernel refuses overlapping maps)",
            ));
        }
        out.push(m);
    }
    Ok(out)
}

fn bind_value(n: &Node) -> Result<Vec<Bind>, Problem> {
    const WHAT: &str =
        "an array of tables { source = \"/path\", target = \"/path\", read-only = false }";
    let Value::Array(items) = &n.value else {
        return Err(expected(WHAT, n));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Table(fields) = &item.value else {
            return Err(Problem::at(
                item,
                format!("[{i}]"),
                expected(WHAT, item).msg,
            ));
        };
        let (mut source, mut target, mut read_only) = (None, None, false);
        for (k, v) in fields {
            let sub = format!("[{i}].{k}");
            match k.as_str() {
                "source" => {
                    source = Some(abs_path_value(v).map_err(|p| Problem::at(v, sub, p.msg))?)
                }
                "target" => {
                    target = Some(abs_path_value(v).map_err(|p| Problem::at(v, sub, p.msg))?)
                }
                "read-only" => read_only = bool_value(v).map_err(|p| Problem::at(v, sub, p.msg))?,
                _ => {
                    let msg = match did_you_mean(k, ["source", "target", "read-only"]) {
                        Some(s) => format!("unknown key; did you mean \"{s}\"?"),
                        None => "unknown key; expected source, target or read-only".into(),
                    };
                    return Err(Problem {
                        msg,
                        at: Some(v.key_location()),
                        sub: Some(sub),
                    });
                }
            }
        }
        let (Some(source), Some(target)) = (source, target) else {
            return Err(Problem::at(
                item,
                format!("[{i}]"),
                "needs source and target",
            ));
        };
        out.push(Bind {
            source,
            target,
            read_only,
        });
    }
    Ok(out)
}

fn sysctl_value(n: &Node) -> Result<BTreeMap<String, (String, Location)>, Problem> {
    let Value::Table(entries) = &n.value else {
        return Err(expected("a table of \"name\" = \"value\"", n));
    };
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let value = match &v.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            other => {
                return Err(Problem::at(
                    v,
                    format!(".\"{k}\""),
                    format!("expected a string or an integer, got {}", other.type_name()),
                ));
            }
        };
        if k.contains('/') || k.contains("..") || k.is_empty() {
            return Err(Problem {
                msg: "is not a sysctl name such as \"net.ipv4.ip_forward\"".into(),
                at: Some(v.key_location()),
                sub: Some(format!(".\"{k}\"")),
            });
        }
        out.insert(k.clone(), (value, v.key_location()));
    }
    Ok(out)
}

fn namespaces(cx: &mut Cx, node: &Node) -> Namespaces {
    let mut t = Table::of(Some(node), KeyTable::Namespaces);
    let mut ns = Namespaces::default();
    let mut at: BTreeMap<&str, Location> = BTreeMap::new();
    for (k, n) in t.entries() {
        at.insert(k.as_str(), n.key_location());
    }
    for kind in NsKind::ALL {
        *ns.get_mut(kind) = t.field(cx, kind.name(), ns_mode_value).flatten();
    }
    ns.uid_map = t.field(cx, "uid-map", id_map_value).unwrap_or_default();
    ns.gid_map = t.field(cx, "gid-map", id_map_value).unwrap_or_default();
    ns.monotonic_offset = t.field(cx, "monotonic-offset", offset_value).unwrap_or(0);
    ns.boottime_offset = t.field(cx, "boottime-offset", offset_value).unwrap_or(0);
    ns.hostname = t.field(cx, "hostname", hostname_value);
    ns.root = t.field(cx, "root", abs_path_value);
    ns.private_tmp = t.field(cx, "private-tmp", bool_value).unwrap_or(false);
    ns.read_only_paths = t
        .field(cx, "read-only-paths", |n| match &n.value {
            Value::Array(items) => items.iter().map(abs_path_value).collect(),
            _ => Err(expected("an array of absolute paths", n)),
        })
        .unwrap_or_default();
    ns.bind = t.field(cx, "bind", bind_value).unwrap_or_default();
    ns.propagation = t.field(cx, "propagation", |n| {
        enum_value(
            n,
            &[
                ("private", Propagation::Private),
                ("slave", Propagation::Slave),
                ("shared", Propagation::Shared),
            ],
        )
    });
    let sysctl = t.field(cx, "sysctl", sysctl_value).unwrap_or_default();
    for kind in NsKind::ALL {
        if let (Some(NsMode::Share(_)), Some(loc)) = (ns.get(kind), at.get(kind.name())) {
            ns.share_at.insert(kind, loc.clone());
        }
    }
    t.finish(cx);

    // Options that need a namespace of their own.
    let need_new = |cx: &mut Cx, key: &str, kind: NsKind, mode: &Option<NsMode>| {
        let Some(loc) = at.get(key) else { return };
        match mode {
            Some(NsMode::New) => {}
            None => cx.error(
                loc.clone(),
                format!("[namespaces] {key}"),
                format!("needs a new {kind} namespace: set {kind} = true"),
            ),
            Some(_) => cx.error(
                loc.clone(),
                format!("[namespaces] {key}"),
                format!("needs a new {kind} namespace, but {kind} joins an existing one"),
            ),
        }
    };
    if !ns.uid_map.is_empty() {
        need_new(cx, "uid-map", NsKind::User, &ns.user);
    }
    if !ns.gid_map.is_empty() {
        need_new(cx, "gid-map", NsKind::User, &ns.user);
    }
    if ns.monotonic_offset != 0 || at.contains_key("monotonic-offset") {
        need_new(cx, "monotonic-offset", NsKind::Time, &ns.time);
    }
    if ns.boottime_offset != 0 || at.contains_key("boottime-offset") {
        need_new(cx, "boottime-offset", NsKind::Time, &ns.time);
    }
    if ns.hostname.is_some() {
        need_new(cx, "hostname", NsKind::Uts, &ns.uts);
    }
    // A new pid namespace brings a new mount namespace with a fresh /proc; private-tmp,
    // read-only-paths and bind imply one. `root` and `propagation` need one but imply none.
    let implied = [
        (NsKind::Pid.name(), ns.pid == Some(NsMode::New)),
        ("private-tmp", ns.private_tmp),
        ("read-only-paths", !ns.read_only_paths.is_empty()),
        ("bind", !ns.bind.is_empty()),
    ];
    if ns.mount.is_none() {
        if implied.iter().any(|(_, on)| *on) {
            ns.mount = Some(NsMode::New);
        }
    } else if ns.mount != Some(NsMode::New) {
        for (key, on) in implied {
            if on {
                need_new(cx, key, NsKind::Mount, &ns.mount);
            }
        }
    }
    if ns.root.is_some() {
        need_new(cx, "root", NsKind::Mount, &ns.mount);
    }
    if ns.propagation.is_some() {
        need_new(cx, "propagation", NsKind::Mount, &ns.mount);
    }
    for (key, (value, loc)) in sysctl {
        match sysctl_namespace(&key) {
            None => cx.error(
                loc,
                format!("[namespaces] sysctl.\"{key}\""),
                "is not a namespaced sysctl: it would change the whole machine \
                 (allowed: net.*, kernel.hostname, kernel.domainname, IPC keys)",
            ),
            Some(kind) if ns.get(kind).is_none() => cx.error(
                loc,
                format!("[namespaces] sysctl.\"{key}\""),
                format!("needs a {kind} namespace: set {kind} = true (or share one)"),
            ),
            Some(_) => {
                ns.sysctl.insert(key, value);
            }
        }
    }
    ns
}

fn hostname_value(n: &Node) -> Result<String, Problem> {
    let s = str_value(n)?;
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(s.to_string())
    } else {
        Err(expected(
            "a host name of up to 64 letters, digits, dashes and dots",
            n,
        ))
    }
}

/// The unit name a file path declares: `web.service.toml` → `web.service`.
pub fn name_from_path(path: &Path) -> Result<UnitName, String> {
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| format!("{} has no usable file name", path.display()))?;
    let stem = file
        .strip_suffix(".toml")
        .ok_or_else(|| format!("unit files are named NAME.KIND.toml, not {file:?}"))?;
    let name = UnitName::parse(stem).map_err(|e| e.to_string())?;
    if name.kind() == Kind::Scope {
        return Err(scope_file(&name));
    }
    Ok(name)
}

/// Why a scope has no unit file (DESIGN §9).
fn scope_file(name: &UnitName) -> String {
    format!(
        "unit name {:?} is a scope, and scopes have no unit file: they are made over D-Bus \
         only (org.freedesktop.systemd1 StartTransientUnit, with the processes they adopt)",
        name.as_str()
    )
}
