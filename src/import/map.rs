//! From systemd directives to a corral [`Draft`]: every key that has a corral meaning, and a
//! warning for every one that has none or whose meaning changes on the way.
//!
//! Directives are read in file order (the main file, then its drop-ins), so the rules of
//! systemd's merging hold: for a list key an empty assignment resets what came before, for a
//! single-valued key the last assignment wins. Every directive is either consumed by a mapping
//! or reported once per key by [`Mapper::leftovers`], so nothing is dropped silently.
//!
//! Decisions where systemd and corral differ (each one reported where it applies):
//! - `RestartSec=X` gives `restart-delay = X` and `restart-delay-max = X`: systemd waits the same
//!   time before every restart, where corral would double it;
//! - `Restart=on-abnormal`, `on-abort`, `on-watchdog` become `on-failure` (which also restarts
//!   after an unclean exit code), `on-success` becomes `always`;
//! - `Type=forking`, `dbus`, `idle` become `simple`; `notify-reload` becomes `notify`;
//! - `TimeoutStartSec=infinity` (or 0) becomes 100 years: corral has no unlimited timeout;
//! - `KillMode=mixed` becomes `control-group`, `none` becomes `process`;
//! - dependencies on units corral does not have (targets, sockets, mounts, devices, …) are left
//!   out; `BindsTo=` and `Requisite=` become `requires`;
//! - `ProtectSystem=yes|full` and `ProtectHome=read-only` become `read-only-paths`, as do
//!   `ReadOnlyPaths=` — paths that systemd would skip when missing (its own lists, `-` prefixed
//!   ones) only if they exist on the machine importing them, since corral fails on a missing one;
//! - `TasksMax=N%` is resolved against this machine's task limit (corral takes a number);
//! - `IO*BandwidthMax=` and `IO*IOPSMax=` suffixes are 1000-based in systemd: the value is
//!   written in bytes (IOPS) so that nothing is rescaled by corral's 1024-based suffixes;
//! - `CPUShares=` and `BlockIOWeight=` (cgroup v1) are converted to weights as systemd does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::emit::{Draft, Origin, Val};
use super::exec::{self, Arg, Command};
use super::specifier::{self, Names};
use super::syntax::Directive;
use super::values::{self, Span};
use super::{Host, Warning};
use crate::limits::{IoMax, RawValue, Resources};
use crate::unit::{Kind, UnitName};

/// What `TimeoutStartSec=infinity` becomes.
const NO_TIMEOUT: &str = "100years";

// The capability names of Linux 6.1, by number: corral's own table.
use crate::caps::NAMES as CAPABILITIES;

/// One command of an `Exec*=` directive.
struct Cmd {
    c: Command,
    d: Directive,
}

/// What a command's environment is made of.
struct Env {
    vars: BTreeMap<String, String>,
    /// `EnvironmentFile=` paths, with whether a missing one is fine (`-`).
    files: Vec<(String, bool)>,
}

pub(super) struct Mapper<'a> {
    names: Names,
    kind: Kind,
    host: &'a Host,
    ds: Vec<Directive>,
    used: Vec<bool>,
    pub draft: Draft,
    pub warnings: Vec<Warning>,
}

fn origin(d: &Directive) -> Option<Origin> {
    Some(Origin {
        file: d.file.clone(),
        line: d.line,
        section: d.section.clone(),
        key: d.key.clone(),
    })
}

impl<'a> Mapper<'a> {
    pub fn new(name: &str, kind: Kind, host: &'a Host, ds: Vec<Directive>) -> Self {
        let used = vec![false; ds.len()];
        Mapper {
            names: Names::new(name),
            kind,
            host,
            ds,
            used,
            draft: Draft::default(),
            warnings: Vec::new(),
        }
    }

    /// Maps everything; returns the draft and the warnings.
    pub fn run(mut self) -> (Draft, Vec<Warning>) {
        self.unit_section();
        let section = match self.kind {
            Kind::Service => {
                self.service_section();
                self.namespaces();
                "Service"
            }
            Kind::Slice => "Slice",
            // Never read: import takes .service and .slice files only.
            Kind::Scope => "Scope",
        };
        self.resources(section);
        self.leftovers();
        (self.draft, self.warnings)
    }

    // ── reading directives ──

    /// Every occurrence of `[section] key`, in order, marked as used.
    fn take(&mut self, section: &str, key: &str) -> Vec<Directive> {
        let mut out = Vec::new();
        for (i, d) in self.ds.iter().enumerate() {
            if d.section == section && d.key == key {
                self.used[i] = true;
                out.push(d.clone());
            }
        }
        out
    }

    /// The last assignment, or `None` when there is none or it resets to the default (empty).
    fn last(&mut self, section: &str, key: &str) -> Option<Directive> {
        self.take(section, key)
            .pop()
            .filter(|d| !d.value.is_empty())
    }

    /// A list key: every word of every assignment since the last empty one (specifiers
    /// resolved), and the last directive.
    fn list(&mut self, section: &str, key: &str) -> Option<(Vec<String>, Directive)> {
        let all = self.take(section, key);
        let last = all.last()?.clone();
        let mut items = Vec::new();
        for d in &all {
            if d.value.is_empty() {
                items.clear();
                continue;
            }
            let v = self.spec(d);
            match exec::split_words(&v) {
                Ok(words) => items.extend(words.into_iter().map(|w| w.text)),
                Err(e) => self.warn(d, format!("{e}; this line is left out")),
            }
        }
        Some((items, last))
    }

    fn warn(&mut self, d: &Directive, why: impl Into<String>) {
        self.warnings.push(Warning {
            file: d.file.to_path_buf(),
            line: d.line,
            section: d.section.clone(),
            key: d.key.clone(),
            why: why.into(),
        });
    }

    /// The value with its specifiers resolved; those that can't be are reported.
    fn spec(&mut self, d: &Directive) -> String {
        let (v, problems) = specifier::resolve(&d.value, &self.names);
        if !problems.is_empty() {
            self.warn(
                d,
                format!("specifier left as written: {}", problems.join(", ")),
            );
        }
        v
    }

    fn set(&mut self, table: &'static str, key: &'static str, val: Val, d: &Directive) {
        self.draft.set(table, key, val, origin(d));
    }

    fn boolean(&mut self, d: &Directive) -> Option<bool> {
        let b = values::boolean(&d.value);
        if b.is_none() {
            self.warn(d, format!("{:?} is not a boolean; left out", d.value));
        }
        b
    }

    // ── [Unit] ──

    fn unit_section(&mut self) {
        if let Some(d) = self.last("Unit", "Description") {
            let v = self.spec(&d);
            self.set("unit", "description", Val::Str(v), &d);
        }
        if let Some((docs, _)) = self.list("Unit", "Documentation")
            && !docs.is_empty()
        {
            self.draft
                .comments
                .push(format!("Documentation: {}", docs.join(" ")));
        }
        // No implicit dependencies in corral: DefaultDependencies=no is what it always does,
        // and the default ones are on targets, which corral does not have.
        self.take("Unit", "DefaultDependencies");
        if self.kind == Kind::Service {
            for (key, to) in [
                ("Requires", "requires"),
                ("Wants", "wants"),
                ("After", "after"),
                ("Before", "before"),
            ] {
                self.deps(key, to);
            }
            for key in ["BindsTo", "Requisite"] {
                if let Some((names, d)) = self.list("Unit", key) {
                    let kept = self.unit_names(&names, &d);
                    if !kept.is_empty() {
                        let why = if key == "BindsTo" {
                            "became requires, which also stops this unit when that one stops"
                        } else {
                            "became requires: corral starts the unit instead of failing when it is not active"
                        };
                        self.warn(&d, why);
                        self.add_deps("requires", kept, &d);
                    }
                }
            }
            self.start_limit();
        }
    }

    fn deps(&mut self, key: &str, to: &'static str) {
        if let Some((names, d)) = self.list("Unit", key) {
            let kept = self.unit_names(&names, &d);
            self.add_deps(to, kept, &d);
        }
    }

    fn add_deps(&mut self, to: &'static str, names: Vec<String>, d: &Directive) {
        if names.is_empty() {
            return;
        }
        let mut all: Vec<String> = match self.draft.get("unit", to) {
            Some(Val::List(v)) => v
                .iter()
                .filter_map(|x| match x {
                    Val::Str(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for n in names {
            if !all.contains(&n) {
                all.push(n);
            }
        }
        self.set("unit", to, Val::strings(all), d);
    }

    /// The names corral has units for (services and slices); the others are reported.
    fn unit_names(&mut self, names: &[String], d: &Directive) -> Vec<String> {
        let mut kept = Vec::new();
        let mut dropped = Vec::new();
        for n in names {
            match UnitName::parse(n) {
                Ok(u) if u.as_str() != self.names.full => kept.push(u.to_string()),
                Ok(_) => {}
                Err(_) => dropped.push(n.as_str()),
            }
        }
        if !dropped.is_empty() {
            let (what, them) = if dropped.len() == 1 {
                ("it is", "it")
            } else {
                ("they are", "them")
            };
            let msg = format!(
                "left out {}: {what} not a service or slice, and corral has no other units \
                 (nothing orders on {them})",
                dropped.join(", ")
            );
            self.warn(d, msg);
        }
        kept
    }

    fn start_limit(&mut self) {
        let interval = [
            ("Unit", "StartLimitIntervalSec"),
            ("Service", "StartLimitInterval"),
            ("Service", "StartLimitIntervalSec"),
        ]
        .iter()
        .filter_map(|(s, k)| self.last(s, k))
        .max_by_key(|d| (d.file.clone(), d.line));
        let burst = [("Unit", "StartLimitBurst"), ("Service", "StartLimitBurst")]
            .iter()
            .filter_map(|(s, k)| self.last(s, k))
            .max_by_key(|d| (d.file.clone(), d.line));
        if interval.is_none() && burst.is_none() {
            return;
        }
        let mut entries = Vec::new();
        let mut at = None;
        if let Some(d) = &burst {
            match d.value.parse::<i64>() {
                Ok(0) => {
                    // systemd: a burst of 0 disables the limit; corral: an interval of 0 does.
                    entries.push(("interval".to_string(), Val::str("0s")));
                    at = Some(d.clone());
                }
                Ok(n) if n > 0 && n <= i64::from(u32::MAX) => {
                    entries.push(("burst".to_string(), Val::Int(n)));
                    at = Some(d.clone());
                }
                _ => self.warn(
                    d,
                    format!("{:?} is not a number of starts; left out", d.value),
                ),
            }
        }
        if let Some(d) = &interval
            && !entries.iter().any(|(k, _)| k == "interval")
        {
            match values::timespan(&d.value) {
                Some(Span::Finite(t)) => {
                    entries.push(("interval".to_string(), Val::Str(values::format_duration(t))));
                    at = Some(d.clone());
                }
                _ => self.warn(d, format!("{:?} is not a time span; left out", d.value)),
            }
        }
        if let Some(d) = at {
            self.set("service", "start-limit", Val::Inline(entries), &d);
        }
    }

    // ── [Service] ──

    fn service_section(&mut self) {
        let ty = self.service_type();
        let oneshot = ty == "oneshot";
        self.exec(oneshot);
        if let Some(d) = self.last("Service", "RemainAfterExit")
            && let Some(b) = self.boolean(&d)
            && b
        {
            if oneshot {
                self.set("service", "remain-after-exit", Val::Bool(true), &d);
            } else {
                self.warn(
                    &d,
                    "corral keeps only a oneshot service active after its process exits; left out",
                );
            }
        }
        for (key, to) in [("User", "user"), ("Group", "group")] {
            if let Some(d) = self.last("Service", key) {
                let v = self.spec(&d);
                self.set("service", to, Val::Str(v), &d);
            }
        }
        self.working_directory();
        if let Some(d) = self.last("Service", "UMask") {
            let ok = (1..=4).contains(&d.value.len())
                && u32::from_str_radix(&d.value, 8).is_ok_and(|m| m <= 0o777);
            if ok {
                let v = format!("{:0>4}", d.value);
                self.set("service", "umask", Val::Str(v), &d);
            } else {
                self.warn(&d, format!("{:?} is not an octal mask; left out", d.value));
            }
        }
        self.restart(oneshot);
        self.timeouts();
        self.kill();
        if let Some(d) = self.last("Service", "NotifyAccess") {
            match d.value.as_str() {
                "main" | "all" => {
                    let v = d.value.clone();
                    self.set("service", "notify-access", Val::Str(v), &d);
                }
                "exec" => {
                    self.warn(&d, "became all: corral can't tell exec'd processes apart");
                    self.set("service", "notify-access", Val::str("all"), &d);
                }
                other => self.warn(&d, format!("{other:?} has no corral equivalent; left out")),
            }
        }
        self.output();
        if let Some(d) = self.last("Service", "OOMPolicy") {
            match d.value.as_str() {
                "stop" | "continue" | "kill" => {
                    let v = d.value.clone();
                    self.set("service", "oom-policy", Val::Str(v), &d);
                }
                other => self.warn(&d, format!("{other:?} is not an OOM policy; left out")),
            }
        }
        if let Some(d) = self.last("Service", "Delegate") {
            match values::boolean(&d.value) {
                Some(b) => self.set("service", "delegate", Val::Bool(b), &d),
                None => {
                    self.warn(
                        &d,
                        "became delegate = true: corral delegates every controller it has",
                    );
                    self.set("service", "delegate", Val::Bool(true), &d);
                }
            }
        }
        if let Some(d) = self.last("Service", "Slice") {
            let v = self.spec(&d);
            match UnitName::parse(&v) {
                Ok(n) if n.kind() == Kind::Slice => {
                    self.set("unit", "slice", Val::Str(n.to_string()), &d)
                }
                _ => self.warn(
                    &d,
                    format!("{v:?} is not a slice name corral accepts; left out"),
                ),
            }
        }
        self.security();
    }

    /// `Type=`, mapped; returns the corral type.
    fn service_type(&mut self) -> &'static str {
        let Some(d) = self.last("Service", "Type") else {
            return "simple";
        };
        let (ty, why) = match d.value.as_str() {
            "simple" => ("simple", None),
            "exec" => ("exec", None),
            "notify" => ("notify", None),
            "oneshot" => ("oneshot", None),
            "notify-reload" => (
                "notify",
                Some("became notify: corral has no reload (ExecReload= and the reload signal)"),
            ),
            "forking" => (
                "simple",
                Some(
                    "became simple: corral supervises the process it starts, and stops the unit \
                     when it exits; run the daemon in the foreground (its no-fork option) in exec",
                ),
            ),
            "dbus" => (
                "simple",
                Some("became simple: corral does not wait for the bus name (BusName=)"),
            ),
            "idle" => (
                "simple",
                Some("became simple: corral does not delay idle services"),
            ),
            other => {
                self.warn(
                    &d,
                    format!("{other:?} is not a service type; simple is used"),
                );
                return "simple";
            }
        };
        if let Some(why) = why {
            self.warn(&d, why);
        }
        if ty != "simple" {
            self.set("service", "type", Val::str(ty), &d);
        }
        ty
    }

    fn working_directory(&mut self) {
        let Some(d) = self.last("Service", "WorkingDirectory") else {
            return;
        };
        let v = self.spec(&d);
        let (optional, path) = match v.strip_prefix('-') {
            Some(p) => (true, p.to_string()),
            None => (false, v),
        };
        let path = if path == "~" {
            let user = self.draft.get("service", "user").cloned();
            match user {
                None => "/root".to_string(),
                Some(Val::Str(u)) if u == "root" || u == "0" => "/root".to_string(),
                Some(_) => {
                    self.warn(
                        &d,
                        "~ is the home of User=, which corral does not look up here; left out",
                    );
                    return;
                }
            }
        } else {
            path
        };
        if !path.starts_with('/') {
            self.warn(&d, format!("{path:?} is not an absolute path; left out"));
            return;
        }
        if optional && !(self.host.path_exists)(Path::new(&path)) {
            self.warn(
                &d,
                format!("{path} does not exist here, and corral fails the start when it is missing; left out"),
            );
            return;
        }
        self.set("service", "working-directory", Val::Str(path), &d);
    }

    /// `Environment=` into a table (also what commands expand with).
    fn environment(&mut self) -> (BTreeMap<String, String>, Option<Directive>) {
        let all = self.take("Service", "Environment");
        let mut env = BTreeMap::new();
        for d in &all {
            if d.value.is_empty() {
                env.clear();
                continue;
            }
            let v = self.spec(d);
            let words = match exec::split_words(&v) {
                Ok(w) => w,
                Err(e) => {
                    self.warn(d, format!("{e}; this line is left out"));
                    continue;
                }
            };
            for w in words {
                match w.text.split_once('=') {
                    Some((k, val)) if exec::is_var_name(k) => {
                        env.insert(k.to_string(), val.to_string());
                    }
                    _ => self.warn(
                        d,
                        format!("{:?} is not NAME=VALUE with a valid name; left out", w.text),
                    ),
                }
            }
        }
        (env, all.last().cloned())
    }

    fn environment_files(&mut self) -> Vec<(String, bool)> {
        let mut files = Vec::new();
        let all = self.take("Service", "EnvironmentFile");
        for d in &all {
            if d.value.is_empty() {
                files.clear();
                continue;
            }
            let v = self.spec(d);
            let (optional, path) = match v.strip_prefix('-') {
                Some(p) => (true, p.trim().to_string()),
                None => (false, v),
            };
            if !path.starts_with('/') {
                self.warn(d, format!("{path:?} is not an absolute path; left out"));
                continue;
            }
            files.push((path, optional));
        }
        if let Some(d) = all.last()
            && !files.is_empty()
        {
            self.warn(
                d,
                "read by /bin/sh before the command (`set -a; . FILE`): systemd's KEY=VALUE lines \
                 read the same unless a value has unquoted spaces or shell syntax",
            );
        }
        files
    }

    /// Every command of an `Exec*=` key (list semantics).
    fn commands(&mut self, key: &str) -> Vec<Cmd> {
        let mut out = Vec::new();
        for d in self.take("Service", key) {
            if d.value.is_empty() {
                out.clear();
                continue;
            }
            let v = self.spec(&d);
            match exec::parse_commands(&v) {
                Ok(cs) => out.extend(cs.into_iter().map(|c| Cmd { c, d: d.clone() })),
                Err(e) => self.warn(&d, format!("{e}; this command is left out")),
            }
        }
        out
    }

    fn exec(&mut self, oneshot: bool) {
        let (vars, env_at) = self.environment();
        if let Some(d) = &env_at
            && !vars.is_empty()
        {
            let table = vars
                .iter()
                .map(|(k, v)| (k.clone(), Val::Str(v.clone())))
                .collect();
            self.set("service", "environment", Val::Inline(table), d);
        }
        let env = Env {
            vars,
            files: self.environment_files(),
        };
        let pre = self.commands("ExecStartPre");
        let start = self.commands("ExecStart");
        let type_at = self
            .ds
            .iter()
            .rev()
            .find(|d| d.section == "Service" && d.key == "Type")
            .cloned();
        if start.is_empty() {
            if oneshot && let Some(d) = type_at.as_ref() {
                self.warn(
                    d,
                    "a oneshot with no ExecStart=: exec = [\"/bin/true\"], so that it runs only \
                     its ExecStop= (corral needs an exec)",
                );
                let mut all = pre;
                all.push(Cmd {
                    c: Command {
                        prefixes: Default::default(),
                        program: "/bin/true".into(),
                        args: Vec::new(),
                    },
                    d: d.clone(),
                });
                if let Some(argv) = self.argv(&all, &env, oneshot) {
                    self.set("service", "exec", Val::strings(argv), d);
                }
            } else if let Some(p) = pre.first() {
                self.warn(&p.d, "no ExecStart= to run before; left out");
            }
        } else {
            if start.len() > 1 && !oneshot {
                self.warn(
                    &start[1].d,
                    "only a oneshot may have several ExecStart= commands; they run in turn",
                );
            }
            let at = start[start.len() - 1].d.clone();
            let mut all = pre;
            all.extend(start);
            if let Some(argv) = self.argv(&all, &env, oneshot) {
                self.set("service", "exec", Val::strings(argv), &at);
            }
        }
        let stop = self.commands("ExecStop");
        if let Some(last) = stop.last() {
            let at = last.d.clone();
            if let Some(argv) = self.argv(&stop, &env, true) {
                self.set("service", "exec-stop", Val::strings(argv), &at);
            }
        }
    }

    /// The absolute program of a command: as written, or found as systemd would find a bare name.
    fn program(&mut self, cmd: &Cmd) -> String {
        let p = &cmd.c.program;
        if p.starts_with('/') {
            return p.clone();
        }
        match (self.host.find_program)(p) {
            Some(found) => found.display().to_string(),
            None => {
                let guess = format!("/usr/bin/{p}");
                self.warn(
                    &cmd.d,
                    format!("{p} is not found in systemd's $PATH here; {guess} is assumed"),
                );
                guess
            }
        }
    }

    /// The argv for commands run in turn, the last one being the service's process: a plain
    /// argv when that is enough, else a `/bin/sh -c` script. `None` when nothing can run.
    fn argv(&mut self, cmds: &[Cmd], env: &Env, ignore_ok: bool) -> Option<Vec<String>> {
        let mut kept: Vec<(&Cmd, String)> = Vec::new();
        for cmd in cmds {
            let p = cmd.c.prefixes;
            if let Some(pr) = p.privileged {
                self.warn(
                    &cmd.d,
                    format!("the {pr} prefix (more privileges) is dropped: the command runs as the unit's user"),
                );
            }
            if p.argv0 {
                self.warn(
                    &cmd.d,
                    "the @ prefix (a separate argv[0]) is dropped: argv[0] is the program",
                );
            }
            if p.ignore_failure && !ignore_ok && std::ptr::eq(cmd, &cmds[cmds.len() - 1]) {
                self.warn(
                    &cmd.d,
                    "the - prefix is dropped: corral counts a failed exit as a failure",
                );
            }
            if cmd.c.args.iter().any(|a| a.vars().contains(&"MAINPID")) {
                self.warn(
                    &cmd.d,
                    "corral does not set $MAINPID for commands; this command is left out \
                     (stop-signal signals the main process)",
                );
                continue;
            }
            let program = self.program(cmd);
            kept.push((cmd, program));
        }
        let (last, _) = kept.last()?;
        let last_ignored = last.c.prefixes.ignore_failure && ignore_ok;
        let static_args: Option<Vec<Vec<String>>> = kept
            .iter()
            .map(|(c, _)| exec::expand_static(&c.c.args, &env.vars))
            .collect();
        let needs_shell =
            kept.len() > 1 || !env.files.is_empty() || last_ignored || static_args.is_none();
        if !needs_shell && let Some(mut args) = static_args {
            let (_, program) = &kept[0];
            let mut argv = vec![program.clone()];
            argv.append(&mut args[0]);
            return Some(argv);
        }
        let mut parts = Vec::new();
        let splits = kept
            .iter()
            .any(|(c, _)| c.c.args.iter().any(|a| matches!(a, Arg::Split(_))));
        if splits {
            parts.push("set -f".to_string());
        }
        if !env.files.is_empty() {
            parts.push("set -a".to_string());
            for (f, optional) in &env.files {
                let q = exec::sh_quote(f);
                if *optional {
                    parts.push(format!("if [ -r {q} ]; then . {q}; fi"));
                } else {
                    parts.push(format!(". {q}"));
                }
            }
            parts.push("set +a".to_string());
        }
        let n = kept.len();
        for (i, (c, program)) in kept.iter().enumerate() {
            let mut line = exec::sh_quote(program);
            for a in &c.c.args {
                line.push(' ');
                line.push_str(&exec::sh_arg(a));
            }
            let is_last = i + 1 == n;
            let ignored = c.c.prefixes.ignore_failure;
            parts.push(match (is_last, ignored) {
                (true, true) if ignore_ok => format!("{line} || :"),
                (true, _) => format!("exec {line}"),
                (false, true) => format!("{line} || :"),
                (false, false) => format!("{line} || exit"),
            });
        }
        Some(vec!["/bin/sh".into(), "-c".into(), parts.join("; ")])
    }

    fn restart(&mut self, oneshot: bool) {
        if let Some(d) = self.last("Service", "Restart") {
            let (to, why) = match d.value.as_str() {
                "no" => ("no", None),
                "always" if oneshot => (
                    "on-failure",
                    Some("became on-failure: a oneshot service can't restart always"),
                ),
                "always" => ("always", None),
                "on-failure" => ("on-failure", None),
                "on-abnormal" => (
                    "on-failure",
                    Some("became on-failure, which also restarts after an unclean exit code"),
                ),
                "on-abort" => (
                    "on-failure",
                    Some("became on-failure, which also restarts after an exit code or a timeout"),
                ),
                "on-watchdog" => (
                    "on-failure",
                    Some("became on-failure: corral has no watchdog, and restarts on any failure"),
                ),
                "on-success" if oneshot => (
                    "no",
                    Some(
                        "became no: corral restarts on failure or always, and a oneshot can't restart always",
                    ),
                ),
                "on-success" => (
                    "always",
                    Some("became always, which also restarts after a failure"),
                ),
                other => {
                    self.warn(&d, format!("{other:?} is not a restart policy; left out"));
                    ("", None)
                }
            };
            if let Some(why) = why {
                self.warn(&d, why);
            }
            if !to.is_empty() && to != "no" {
                self.set("service", "restart", Val::str(to), &d);
            }
        }
        if let Some(d) = self.last("Service", "RestartSec") {
            match values::timespan(&d.value) {
                Some(Span::Finite(t)) => {
                    let v = values::format_duration(t);
                    self.set("service", "restart-delay", Val::Str(v.clone()), &d);
                    self.set("service", "restart-delay-max", Val::Str(v), &d);
                }
                _ => self.warn(&d, format!("{:?} is not a time span; left out", d.value)),
            }
        }
        if let Some(d) = self.last("Service", "RestartMaxDelaySec") {
            match values::timespan(&d.value) {
                Some(Span::Finite(t)) => {
                    let v = values::format_duration(t);
                    self.set("service", "restart-delay-max", Val::Str(v), &d);
                }
                Some(Span::Infinity) => {
                    self.set("service", "restart-delay-max", Val::str(NO_TIMEOUT), &d)
                }
                None => self.warn(&d, format!("{:?} is not a time span; left out", d.value)),
            }
        }
    }

    fn timeouts(&mut self) {
        let both = self.last("Service", "TimeoutSec");
        let start = self.last("Service", "TimeoutStartSec");
        let stop = self.last("Service", "TimeoutStopSec");
        let later = |a: Option<Directive>, b: &Option<Directive>| match (a, b) {
            (Some(a), Some(b)) if (b.file.as_ref(), b.line) > (a.file.as_ref(), a.line) => {
                Some(b.clone())
            }
            (Some(a), _) => Some(a),
            (None, b) => b.clone(),
        };
        for (key, d) in [
            ("start-timeout", later(start, &both)),
            ("stop-timeout", later(stop, &both)),
        ] {
            let Some(d) = d else { continue };
            let v = match values::timespan(&d.value) {
                Some(Span::Finite(t)) if t.is_zero() => NO_TIMEOUT.to_string(),
                Some(Span::Finite(t)) => values::format_duration(t),
                Some(Span::Infinity) => NO_TIMEOUT.to_string(),
                None => {
                    self.warn(&d, format!("{:?} is not a time span; left out", d.value));
                    continue;
                }
            };
            self.set("service", key, Val::Str(v), &d);
        }
    }

    fn kill(&mut self) {
        if let Some(d) = self.last("Service", "KillMode") {
            let (to, why) = match d.value.as_str() {
                "control-group" => ("control-group", None),
                "process" => ("process", None),
                "mixed" => (
                    "control-group",
                    Some(
                        "became control-group: every process gets the stop signal, not only the main one",
                    ),
                ),
                "none" => (
                    "process",
                    Some("became process: corral signals the main process at least"),
                ),
                other => {
                    self.warn(&d, format!("{other:?} is not a kill mode; left out"));
                    return;
                }
            };
            if let Some(why) = why {
                self.warn(&d, why);
            }
            if to != "control-group" || why.is_some() {
                self.set("service", "kill-mode", Val::str(to), &d);
            }
        }
        if let Some(d) = self.last("Service", "KillSignal") {
            let v = self.spec(&d);
            let name = if v.starts_with("SIG") {
                v.clone()
            } else if v.bytes().all(|b| b.is_ascii_digit()) {
                v.parse::<i32>()
                    .ok()
                    .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
                    .map_or(v.clone(), |s| s.as_str().to_string())
            } else {
                format!("SIG{v}")
            };
            match name.parse::<nix::sys::signal::Signal>() {
                Ok(s) => self.set("service", "stop-signal", Val::str(s.as_str()), &d),
                Err(_) => self.warn(&d, format!("{v:?} is not a signal corral knows; left out")),
            }
        }
    }

    fn output(&mut self) {
        let input_null = match self.last("Service", "StandardInput") {
            None => true,
            Some(d) if d.value == "null" => true,
            Some(d) => {
                self.warn(
                    &d,
                    "corral gives services no standard input (it is /dev/null)",
                );
                false
            }
        };
        let stdout = self
            .last("Service", "StandardOutput")
            .and_then(|d| self.output_value(&d, None, input_null).map(|v| (v, d)));
        if let Some((v, d)) = &stdout {
            self.set("service", "stdout", Val::Str(v.clone()), d);
        }
        if let Some(d) = self.last("Service", "StandardError") {
            let same = stdout.as_ref().map(|(v, _)| v.clone());
            if let Some(v) = self.output_value(&d, same, input_null) {
                self.set("service", "stderr", Val::Str(v), &d);
            }
        }
    }

    /// A `StandardOutput=`/`StandardError=` value in corral's terms; `stdout` is what
    /// `inherit` means for stderr.
    fn output_value(
        &mut self,
        d: &Directive,
        stdout: Option<String>,
        input_null: bool,
    ) -> Option<String> {
        let v = self.spec(d);
        let (kind, path) = v.split_once(':').unwrap_or((v.as_str(), ""));
        let out = match (kind, path) {
            ("journal" | "journal+console", _) => {
                if kind.ends_with("+console") {
                    self.warn(
                        d,
                        "became log: corral does not copy a service's output to the console",
                    );
                }
                "log".to_string()
            }
            ("syslog" | "syslog+console" | "kmsg" | "kmsg+console", _) => {
                self.warn(
                    d,
                    "became log: the unit's log file (and journald when it runs)",
                );
                "log".to_string()
            }
            ("null", _) => "null".to_string(),
            ("inherit", _) if d.key == "StandardError" => stdout.unwrap_or_else(|| "log".into()),
            ("inherit", _) if input_null => "null".to_string(),
            ("append" | "file" | "truncate", p) if p.starts_with('/') => {
                match kind {
                    "file" => self.warn(d, "became file: (appended to): systemd writes from the start without truncating"),
                    "truncate" => self.warn(d, "became file: (appended to): corral does not truncate it"),
                    _ => {}
                }
                format!("file:{p}")
            }
            _ => {
                self.warn(
                    d,
                    format!("{v:?} has no corral equivalent; the unit's log is used"),
                );
                return None;
            }
        };
        Some(out)
    }

    fn security(&mut self) {
        if let Some(d) = self.last("Service", "NoNewPrivileges")
            && let Some(b) = self.boolean(&d)
        {
            self.set("service", "no-new-privileges", Val::Bool(b), &d);
        }
        for (key, to) in [
            ("CapabilityBoundingSet", "capabilities"),
            ("AmbientCapabilities", "ambient-capabilities"),
        ] {
            let all = self.take("Service", key);
            let Some(last) = all.last().cloned() else {
                continue;
            };
            let mut set: Option<u64> = None;
            for d in &all {
                if d.value.is_empty() {
                    set = Some(0);
                    continue;
                }
                let (invert, list) = match d.value.strip_prefix('~') {
                    Some(l) => (true, l),
                    None => (false, d.value.as_str()),
                };
                let mut bits = 0u64;
                for name in list.split_ascii_whitespace() {
                    let upper = name.to_ascii_uppercase();
                    match CAPABILITIES.iter().position(|c| *c == upper) {
                        Some(i) => bits |= 1 << i,
                        None => self.warn(
                            d,
                            format!("{name} is not a capability corral knows; left out"),
                        ),
                    }
                }
                let all_bits = (1u64 << CAPABILITIES.len()) - 1;
                set = Some(match (set, invert) {
                    (None, false) => bits,
                    (None, true) => all_bits & !bits,
                    (Some(s), false) => s | bits,
                    (Some(s), true) => s & !bits,
                });
            }
            let Some(bits) = set else { continue };
            if bits == 0 {
                self.warn(
                    &last,
                    "an empty set: corral reads an empty list as no restriction; left out",
                );
                continue;
            }
            let names: Vec<&str> = CAPABILITIES
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, c)| *c)
                .collect();
            self.set("service", to, Val::strings(names), &last);
        }
    }

    // ── namespaces ──

    fn namespaces(&mut self) {
        let joins = self
            .list("Unit", "JoinsNamespaceOf")
            .map(|(names, d)| (self.unit_names(&names, &d), d));
        let join = joins.as_ref().and_then(|(n, _)| n.first().cloned());
        let mut joined = false;
        for (key, ns, path_key) in [
            ("PrivateNetwork", "net", "NetworkNamespacePath"),
            ("PrivateIPC", "ipc", "IPCNamespacePath"),
        ] {
            if let Some(d) = self.last("Service", path_key) {
                let v = self.spec(&d);
                if v.starts_with('/') {
                    self.set("namespaces", ns, Val::Str(v), &d);
                } else {
                    self.warn(&d, format!("{v:?} is not an absolute path; left out"));
                }
            }
            if let Some(d) = self.last("Service", key)
                && self.boolean(&d) == Some(true)
                && self.draft.get("namespaces", ns).is_none()
            {
                match &join {
                    Some(other) => {
                        joined = true;
                        self.set("namespaces", ns, Val::Str(other.clone()), &d);
                    }
                    None => self.set("namespaces", ns, Val::Bool(true), &d),
                }
            }
        }
        if let Some((names, d)) = &joins {
            if !joined {
                self.warn(
                    d,
                    "corral shares a namespace only where this unit asks for one (PrivateNetwork=, \
                     PrivateIPC=); left out",
                );
            } else if names.len() > 1 {
                self.warn(d, format!("only the first unit, {}, is joined", names[0]));
            }
        }
        for (key, ns) in [
            ("PrivateMounts", "mount"),
            ("ProtectHostname", "uts"),
            ("PrivateUsers", "user"),
        ] {
            if let Some(d) = self.last("Service", key)
                && self.boolean(&d) == Some(true)
            {
                if ns == "user" {
                    self.warn(
                        &d,
                        "became user = true: corral maps root inside to the service's user, where \
                         systemd maps root and the user to themselves",
                    );
                }
                self.set("namespaces", ns, Val::Bool(true), &d);
            }
        }
        if let Some(d) = self.last("Service", "PrivateTmp")
            && self.boolean(&d) == Some(true)
        {
            if joined {
                self.warn(&d, "a private /tmp of this unit's own: corral does not share /tmp with JoinsNamespaceOf=");
            }
            self.set("namespaces", "private-tmp", Val::Bool(true), &d);
        }
        if let Some(d) = self.last("Service", "RootDirectory") {
            let v = self.spec(&d);
            if v.starts_with('/') {
                self.set("namespaces", "mount", Val::Bool(true), &d);
                self.set("namespaces", "root", Val::Str(v), &d);
            } else {
                self.warn(&d, format!("{v:?} is not an absolute path; left out"));
            }
        }
        if let Some(d) = self.last("Service", "MountFlags") {
            match d.value.as_str() {
                "shared" | "slave" | "private" => {
                    let v = d.value.clone();
                    self.set("namespaces", "propagation", Val::Str(v), &d);
                }
                other => self.warn(&d, format!("{other:?} is not a propagation; left out")),
            }
        }
        self.read_only_paths();
        self.binds();
    }

    fn read_only_paths(&mut self) {
        let mut paths: Vec<String> = Vec::new();
        let mut at: Option<Directive> = None;
        if let Some(d) = self.last("Service", "ProtectSystem") {
            let list: &[&str] = match d.value.as_str() {
                v if values::boolean(v) == Some(false) => &[],
                v if values::boolean(v) == Some(true) => &["/usr", "/boot", "/efi"],
                "full" => &["/usr", "/boot", "/efi", "/etc"],
                "strict" => {
                    self.warn(
                        &d,
                        "strict (all but the API file systems read-only) has no corral \
                         equivalent; left out",
                    );
                    &[]
                }
                other => {
                    self.warn(
                        &d,
                        format!("{other:?} is not a ProtectSystem= value; left out"),
                    );
                    &[]
                }
            };
            self.optional_paths(list, &d, &mut paths);
            if !list.is_empty() {
                at = Some(d);
            }
        }
        if let Some(d) = self.last("Service", "ProtectHome") {
            match d.value.as_str() {
                "read-only" => {
                    self.optional_paths(&["/home", "/root", "/run/user"], &d, &mut paths);
                    at = Some(d);
                }
                v if values::boolean(v) == Some(false) => {}
                _ => self.warn(
                    &d,
                    "corral can't hide directories (only make them read-only: \
                     ProtectHome=read-only); left out",
                ),
            }
        }
        if let Some((items, d)) = self.list("Service", "ReadOnlyPaths") {
            let mut optional = Vec::new();
            for item in items {
                let item = item.trim_start_matches('+');
                match item.strip_prefix('-') {
                    Some(p) => optional.push(p.to_string()),
                    None if item.starts_with('/') => {
                        if !paths.contains(&item.to_string()) {
                            paths.push(item.to_string());
                        }
                    }
                    None => self.warn(&d, format!("{item:?} is not an absolute path; left out")),
                }
            }
            let optional: Vec<&str> = optional.iter().map(String::as_str).collect();
            self.optional_paths(&optional, &d, &mut paths);
            at = Some(d);
        }
        if let Some(d) = at
            && !paths.is_empty()
        {
            self.set("namespaces", "read-only-paths", Val::strings(paths), &d);
        }
    }

    /// Adds the paths that exist here, and reports the others.
    fn optional_paths(&mut self, list: &[&str], d: &Directive, out: &mut Vec<String>) {
        let mut missing = Vec::new();
        for p in list {
            if !p.starts_with('/') {
                self.warn(d, format!("{p:?} is not an absolute path; left out"));
            } else if (self.host.path_exists)(Path::new(p)) {
                if !out.iter().any(|x| x == p) {
                    out.push(p.to_string());
                }
            } else {
                missing.push(*p);
            }
        }
        if !missing.is_empty() {
            self.warn(
                d,
                format!(
                    "left out {}: missing here, and corral fails on a missing path where systemd skips it",
                    missing.join(", ")
                ),
            );
        }
    }

    fn binds(&mut self) {
        let mut binds = Vec::new();
        let mut at = None;
        for (key, read_only) in [("BindPaths", false), ("BindReadOnlyPaths", true)] {
            let Some((items, d)) = self.list("Service", key) else {
                continue;
            };
            for item in items {
                let (optional, item) = match item.strip_prefix('-') {
                    Some(i) => (true, i.to_string()),
                    None => (false, item),
                };
                let mut parts = item.splitn(3, ':');
                let source = parts.next().unwrap_or("").to_string();
                let target = parts.next().map_or(source.clone(), String::from);
                if let Some(opts) = parts.next()
                    && opts != "rbind"
                {
                    self.warn(
                        &d,
                        format!(
                            "the {opts} option of {source} is dropped: corral binds recursively"
                        ),
                    );
                }
                if !source.starts_with('/') || !target.starts_with('/') {
                    self.warn(
                        &d,
                        format!("{item:?} is not SOURCE[:TARGET] with absolute paths; left out"),
                    );
                    continue;
                }
                if optional && !(self.host.path_exists)(Path::new(&source)) {
                    self.warn(
                        &d,
                        format!(
                            "left out {source}: missing here, and corral fails on a missing source"
                        ),
                    );
                    continue;
                }
                let mut e = vec![
                    ("source".to_string(), Val::Str(source)),
                    ("target".to_string(), Val::Str(target)),
                ];
                if read_only {
                    e.push(("read-only".to_string(), Val::Bool(true)));
                }
                binds.push(Val::Inline(e));
            }
            at = Some(d);
        }
        if let Some(d) = at
            && !binds.is_empty()
        {
            self.set("namespaces", "bind", Val::List(binds), &d);
        }
    }

    // ── resources ──

    /// Checks a value with corral's own parser, then sets it; reports a refusal.
    fn resource(&mut self, key: &'static str, val: Val, d: &Directive) {
        let checked = match &val {
            Val::Str(s) => Resources::default().set(key, RawValue::Str(s)),
            Val::Int(i) => Resources::default().set(key, RawValue::Int(i128::from(*i))),
            _ => Ok(()),
        };
        match checked {
            Ok(()) => self.set("resources", key, val, d),
            Err(e) => self.warn(d, format!("corral can't take {:?}: {e}; left out", d.value)),
        }
    }

    fn resources(&mut self, s: &str) {
        if let Some(d) = self.last(s, "CPUQuota") {
            match values::percent(&d.value) {
                Some(h) => self.resource("cpu-max", Val::Str(values::format_percent(h)), &d),
                None => self.warn(&d, format!("{:?} is not a percentage; left out", d.value)),
            }
        }
        if let Some(d) = self.last(s, "CPUQuotaPeriodSec") {
            match values::timespan(&d.value) {
                Some(Span::Finite(t)) => {
                    let us = i64::try_from(t.as_micros()).unwrap_or(i64::MAX);
                    self.resource("cpu-period", Val::Int(us), &d);
                }
                _ => self.warn(&d, format!("{:?} is not a time span; left out", d.value)),
            }
        }
        // The cgroup v1 forms first: the v2 key, when also given, wins, as in systemd.
        self.v1_weight(s, "CPUShares", "cpu-weight", 2..=262_144, 1024);
        if let Some(d) = self.last(s, "CPUWeight") {
            match d.value.parse::<i64>() {
                Ok(w) => self.resource("cpu-weight", Val::Int(w), &d),
                Err(_) if d.value == "idle" => self.resource("cpu-weight", Val::str("idle"), &d),
                Err(_) => self.warn(&d, format!("{:?} is not a weight; left out", d.value)),
            }
        }
        for (key, to) in [
            ("AllowedCPUs", "cpuset-cpus"),
            ("AllowedMemoryNodes", "cpuset-mems"),
        ] {
            if let Some(d) = self.last(s, key) {
                self.resource(to, Val::Str(values::cpu_list(&d.value)), &d);
            }
        }
        for (key, to) in [
            ("MemoryLimit", "memory-max"),
            ("MemoryMax", "memory-max"),
            ("MemoryHigh", "memory-high"),
            ("MemoryLow", "memory-low"),
            ("MemoryMin", "memory-min"),
            ("MemorySwapMax", "memory-swap-max"),
        ] {
            if let Some(d) = self.last(s, key) {
                if key == "MemoryLimit" {
                    self.warn(&d, "cgroup v1's MemoryLimit=: became memory-max");
                }
                let v = if d.value == "infinity" {
                    Some("max".to_string())
                } else if let Some(h) = values::percent(&d.value) {
                    Some(values::format_percent(h))
                } else {
                    values::size_1024(&d.value).map(crate::limits::format_bytes)
                };
                match v {
                    Some(v) => self.resource(to, Val::Str(v), &d),
                    None => self.warn(&d, format!("{:?} is not a size; left out", d.value)),
                }
            }
        }
        if let Some(d) = self.last(s, "TasksMax") {
            if d.value == "infinity" {
                self.resource("pids-max", Val::str("max"), &d);
            } else if let Some(h) = values::percent(&d.value) {
                match self.host.tasks_max_base {
                    Some(base) => {
                        let n = (u128::from(base) * u128::from(h) / 10_000).max(1);
                        let n = i64::try_from(n).unwrap_or(i64::MAX);
                        self.warn(
                            &d,
                            format!(
                                "corral takes a number: {n}, {} of this machine's {base} tasks",
                                values::format_percent(h)
                            ),
                        );
                        self.resource("pids-max", Val::Int(n), &d);
                    }
                    None => self.warn(
                        &d,
                        "corral takes a number, and this machine's task limit is unknown; left out",
                    ),
                }
            } else {
                match d.value.parse::<i64>() {
                    Ok(n) => self.resource("pids-max", Val::Int(n), &d),
                    Err(_) => self.warn(
                        &d,
                        format!("{:?} is not a number of tasks; left out", d.value),
                    ),
                }
            }
        }
        self.v1_weight(s, "BlockIOWeight", "io-weight", 10..=1000, 500);
        if let Some(d) = self.last(s, "IOWeight") {
            match d.value.parse::<i64>() {
                Ok(w) => self.resource("io-weight", Val::Int(w), &d),
                Err(_) => self.warn(&d, format!("{:?} is not a weight; left out", d.value)),
            }
        }
        self.io_max(s);
        for key in [
            "CPUAccounting",
            "MemoryAccounting",
            "TasksAccounting",
            "IOAccounting",
            "BlockIOAccounting",
        ] {
            if let Some(d) = self.last(s, key)
                && values::boolean(&d.value) == Some(false)
            {
                self.warn(&d, "corral always accounts usage; accounting stays on");
            }
        }
    }

    /// A cgroup v1 weight (`CPUShares=`, `BlockIOWeight=`) as the v2 weight systemd makes of
    /// it: scaled so that v1's default is v2's 100.
    fn v1_weight(
        &mut self,
        s: &str,
        key: &str,
        to: &'static str,
        range: std::ops::RangeInclusive<i64>,
        v1_default: i64,
    ) {
        let Some(d) = self.last(s, key) else { return };
        match d.value.parse::<i64>() {
            Ok(v) if range.contains(&v) => {
                let w = (v * 100 / v1_default).clamp(1, 10_000);
                self.warn(
                    &d,
                    format!("a cgroup v1 weight: became {to} = {w}, as systemd converts it"),
                );
                self.resource(to, Val::Int(w), &d);
            }
            _ => self.warn(
                &d,
                format!(
                    "{:?} is not a weight ({}–{}); left out",
                    d.value,
                    range.start(),
                    range.end()
                ),
            ),
        }
    }

    fn io_max(&mut self, s: &str) {
        // Per device, in the order devices first appear: the io-max fields and the directive.
        let mut devices: Vec<(String, BTreeMap<&'static str, u64>, Directive)> = Vec::new();
        for (key, field) in [
            ("IOReadBandwidthMax", "rbps"),
            ("BlockIOReadBandwidth", "rbps"),
            ("IOWriteBandwidthMax", "wbps"),
            ("BlockIOWriteBandwidth", "wbps"),
            ("IOReadIOPSMax", "riops"),
            ("IOWriteIOPSMax", "wiops"),
        ] {
            let all = self.take(s, key);
            let mut per: Vec<(String, Option<u64>, Directive)> = Vec::new();
            for d in &all {
                if d.value.is_empty() {
                    per.clear();
                    continue;
                }
                let v = self.spec(d);
                let Some((dev, rate)) = v.rsplit_once(|c: char| c.is_ascii_whitespace()) else {
                    self.warn(d, format!("{v:?} is not \"DEVICE RATE\"; left out"));
                    continue;
                };
                let dev = dev.trim().to_string();
                let rate = if rate == "infinity" {
                    None
                } else {
                    match values::number_1000(rate) {
                        Some(r) => Some(r),
                        None => {
                            self.warn(d, format!("{rate:?} is not a rate; left out"));
                            continue;
                        }
                    }
                };
                per.retain(|(x, _, _)| *x != dev);
                per.push((dev, rate, d.clone()));
            }
            for (dev, rate, d) in per {
                let i = match devices.iter().position(|(x, _, _)| *x == dev) {
                    Some(i) => i,
                    None => {
                        devices.push((dev.clone(), BTreeMap::new(), d.clone()));
                        devices.len() - 1
                    }
                };
                if let Some(r) = rate {
                    devices[i].1.insert(field, r);
                }
                devices[i].2 = d;
            }
        }
        let mut entries = Vec::new();
        let mut at = None;
        for (dev, fields, d) in devices {
            if fields.is_empty() {
                continue;
            }
            let mut check = match IoMax::new(PathBuf::from(&dev)) {
                Ok(c) => c,
                Err(e) => {
                    self.warn(
                        &d,
                        format!("corral can't take device {dev:?}: {e}; left out"),
                    );
                    continue;
                }
            };
            let mut table = vec![("device".to_string(), Val::Str(dev.clone()))];
            for field in crate::limits::IO_MAX_FIELDS {
                let Some(v) = fields.get(field) else { continue };
                let v = i64::try_from(*v).unwrap_or(i64::MAX);
                match check.set_field(field, RawValue::Int(i128::from(v))) {
                    Ok(()) => table.push((field.to_string(), Val::Int(v))),
                    Err(e) => self.warn(
                        &d,
                        format!("corral can't take {field} of {dev}: {e}; left out"),
                    ),
                }
            }
            if table.len() > 1 {
                entries.push(Val::Inline(table));
                at = Some(d);
            }
        }
        if let Some(d) = at {
            self.set("resources", "io-max", Val::List(entries), &d);
        }
    }

    // ── what is left ──

    /// One warning per key nothing consumed, at its last line.
    fn leftovers(&mut self) {
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut last: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (i, d) in self.ds.iter().enumerate() {
            if !self.used[i] {
                let k = (d.section.clone(), d.key.clone());
                if !last.contains_key(&k) {
                    seen.push(k.clone());
                }
                last.insert(k, i);
            }
        }
        for k in seen {
            let i = last[&k];
            let d = self.ds[i].clone();
            let why = why_not(&d.section, &d.key, self.kind);
            self.warn(&d, why);
        }
    }
}

/// Why a directive has no corral meaning.
fn why_not(section: &str, key: &str, kind: Kind) -> String {
    let sandbox = [
        "SystemCallFilter",
        "SystemCallArchitectures",
        "SystemCallErrorNumber",
        "SystemCallLog",
        "RestrictAddressFamilies",
        "RestrictNamespaces",
        "RestrictRealtime",
        "RestrictSUIDSGID",
        "RestrictFileSystems",
        "MemoryDenyWriteExecute",
        "LockPersonality",
        "ProtectKernelModules",
        "ProtectKernelTunables",
        "ProtectKernelLogs",
        "ProtectClock",
        "ProtectControlGroups",
        "ProtectProc",
        "ProcSubset",
        "PrivateDevices",
        "DevicePolicy",
        "DeviceAllow",
        "IPAddressAllow",
        "IPAddressDeny",
        "ReadWritePaths",
        "InaccessiblePaths",
        "TemporaryFileSystem",
        "KeyringMode",
        "RemoveIPC",
    ];
    if section == "Install" {
        return match key {
            "WantedBy" | "RequiredBy" | "UpheldBy" => {
                "corral starts a unit at boot when it is enabled (`corralctl enable NAME` sets \
                 autostart), not when a target wants it"
                    .into()
            }
            _ => "corral has no unit aliases or install-time relations".into(),
        };
    }
    if key.starts_with("Condition") || key.starts_with("Assert") {
        return "corral has no start conditions: the unit starts whatever it says".into();
    }
    if sandbox.contains(&key) {
        return "corral has no such sandboxing option: the service runs without it".into();
    }
    if key.starts_with("Limit") {
        return "corral sets no resource limits (rlimits) on services".into();
    }
    let what = match key {
        "Description" | "Documentation" if kind == Kind::Slice && section != "Unit" => {
            "belongs in [Unit]"
        }
        "Requires" | "Wants" | "After" | "Before" | "BindsTo" | "Requisite" => {
            "a slice has no dependencies in corral"
        }
        "ExecReload" => "corral has no reload: restart the unit instead",
        "ExecStartPost" | "ExecStopPost" | "ExecCondition" => {
            "corral runs only exec (after its ExecStartPre=) and exec-stop"
        }
        "PIDFile" | "GuessMainPID" => "corral follows the process it started",
        "BusName" => "corral does not watch bus names",
        "WatchdogSec" => "corral has no watchdog",
        "DynamicUser" => "corral has no dynamic users: set User= to an existing user",
        "SupplementaryGroups" => "corral sets only the user's group",
        "StateDirectory"
        | "RuntimeDirectory"
        | "CacheDirectory"
        | "LogsDirectory"
        | "ConfigurationDirectory" => {
            "corral creates no directories for a service: create it beforehand"
        }
        "OOMScoreAdjust"
        | "Nice"
        | "CPUSchedulingPolicy"
        | "CPUSchedulingPriority"
        | "IOSchedulingClass"
        | "IOSchedulingPriority"
        | "CPUAffinity" => "corral does not set scheduling or OOM-score options",
        "TTYPath" | "TTYReset" | "TTYVHangup" | "TTYVTDisallocate" | "UtmpIdentifier"
        | "UtmpMode" | "PAMName" => "corral does not set up terminals, utmp or PAM sessions",
        "SuccessExitStatus" | "RestartPreventExitStatus" | "RestartForceExitStatus" => {
            "corral counts exit status 0 as success, anything else as failure"
        }
        "LoadCredential"
        | "LoadCredentialEncrypted"
        | "SetCredential"
        | "SetCredentialEncrypted"
        | "ImportCredential" => "corral has no credentials",
        "Conflicts" => "corral has no conflicts: a unit stops when asked to, or at shutdown",
        "PartOf"
        | "OnFailure"
        | "OnSuccess"
        | "PropagatesReloadTo"
        | "ReloadPropagatedFrom"
        | "StopWhenUnneeded"
        | "RefuseManualStart"
        | "RefuseManualStop"
        | "AllowIsolate"
        | "IgnoreOnIsolate"
        | "CollectMode"
        | "OnFailureJobMode"
        | "JobTimeoutSec"
        | "RequiresMountsFor"
        | "Upholds" => "corral has no such relation or job option",
        "StartLimitAction"
        | "FailureAction"
        | "SuccessAction"
        | "FailureActionExitStatus"
        | "SuccessActionExitStatus"
        | "RebootArgument" => "corral takes no machine-wide action when a unit fails or succeeds",
        _ => "no corral equivalent",
    };
    what.to_string()
}
