//! Every key of a unit file, once (issue 13: "one source of truth"): per table, each key's
//! name, its default as a unit file would write it, and one line saying what it does. DESIGN §2
//! is the prose; these tables are what the code derives from:
//! - the validator ([`super::validate`]) takes its lists of known keys (unknown keys, "did you
//!   mean", "belongs in [other]") from [`Table::keys`], and fills in a key that a file leaves
//!   out from [`defaults`] — the same TOML text as the tables' [`KeyDefault::Value`]s, parsed once
//!   and validated like a file, so a default can't differ from what writing it out would give;
//! - `corralctl run -p KEY=VALUE` knows which table a key goes to and lists them in its help
//!   ([`run_property_help`]);
//! - `tests/unit_keys.rs` checks that every key has valid and invalid cases, and that writing
//!   each documented default gives the same unit as leaving it out.
//!
//! The namespace kinds come from [`crate::ns::NsKind`] and the resource keys from
//! [`crate::limits::RESOURCES`]: both lower layers own their lists, this module only adds them
//! to the tables.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::LazyLock;

use super::doc::{self, Node, Value};
use crate::limits::RESOURCES;
use crate::ns::NsKind;

/// What a key is when a unit file leaves it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDefault {
    /// This value, as TOML (`"100ms"` with its quotes, `false`, `[]`); the validator fills it in.
    Value(&'static str),
    /// Nothing is set; the text says what that amounts to (`root`, `the host's`).
    Unset(&'static str),
    /// The key must be given.
    Required,
}

/// One key of a unit-file table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub default: KeyDefault,
    pub doc: &'static str,
}

const fn key(name: &'static str, default: KeyDefault, doc: &'static str) -> Key {
    Key { name, default, doc }
}

use KeyDefault::{Required, Unset, Value as V};

/// `[unit]`. A slice takes `description` only.
pub const UNIT: &[Key] = &[
    key("description", V("\"\""), "shown by list and status"),
    key(
        "slice",
        V("\"system.slice\""),
        "the slice the service lives in",
    ),
    key(
        "requires",
        V("[]"),
        "started with this unit; if one fails to start, or stops, this unit stops too",
    ),
    key(
        "wants",
        V("[]"),
        "started with this unit; its failure is ignored",
    ),
    key("after", V("[]"), "ordering only: start after these"),
    key("before", V("[]"), "ordering only: start before these"),
    key(
        "autostart",
        V("false"),
        "start when the daemon starts (boot); `corralctl enable` sets it",
    ),
];

/// `[service]`.
pub const SERVICE: &[Key] = &[
    key("type", V("\"simple\""), "simple | exec | notify | oneshot"),
    key(
        "exec",
        Required,
        "argv, no shell parsing: an absolute program path, then its arguments",
    ),
    key("exec-stop", V("[]"), "argv run to stop the service"),
    key(
        "remain-after-exit",
        V("false"),
        "oneshot: stay active (sub-state exited) after success",
    ),
    key("user", Unset("root"), "a user name or number to run as"),
    key(
        "group",
        Unset("the user's primary group"),
        "a group name or number",
    ),
    key("working-directory", V("\"/\""), "an absolute path"),
    key(
        "environment",
        V("{}"),
        "NAME = \"value\"; nothing else is inherited (PATH is set unless given)",
    ),
    key("umask", V("\"0022\""), "octal"),
    key("restart", V("\"no\""), "no | on-failure | always"),
    key(
        "restart-delay",
        V("\"100ms\""),
        "doubles on each consecutive restart, up to restart-delay-max",
    ),
    key(
        "restart-delay-max",
        V("\"30s\""),
        "the longest restart delay; reset after the unit stays up this long",
    ),
    key(
        "start-limit",
        V("{ burst = 5, interval = \"10s\" }"),
        "more starts in the interval: failed, start-limit-hit",
    ),
    key(
        "start-timeout",
        V("\"90s\""),
        "notify: until READY=1; oneshot: until exit",
    ),
    key(
        "stop-timeout",
        V("\"10s\""),
        "then every process left gets SIGKILL",
    ),
    key("stop-signal", V("\"SIGTERM\""), "a name or number"),
    key(
        "kill-mode",
        V("\"control-group\""),
        "control-group: stopping signals every process of the unit; process: the main one",
    ),
    key(
        "notify-access",
        V("\"main\""),
        "main | all: who may send READY=1",
    ),
    key(
        "stdout",
        V("\"log\""),
        "log | inherit | null | \"file:/path\" (appended to; no symlink in the path is \
         followed; a regular file only; created 0640)",
    ),
    key("stderr", V("\"log\""), "as stdout"),
    key(
        "no-new-privileges",
        V("false"),
        "PR_SET_NO_NEW_PRIVS before exec: setuid bits and file capabilities grant nothing",
    ),
    key(
        "capabilities",
        Unset("every capability the daemon has"),
        "the bounding set is exactly these, e.g. [\"CAP_NET_BIND_SERVICE\"]; [] keeps none",
    ),
    key(
        "ambient-capabilities",
        V("[]"),
        "raised in the ambient set, so that a non-root user has them after exec (each must \
         be in capabilities)",
    ),
    key("oom-policy", V("\"stop\""), "stop | continue | kill"),
    key(
        "delegate",
        V("false"),
        "the unit's cgroup belongs to its processes (for a nested manager)",
    ),
];

/// `[resources]`, from [`crate::limits::RESOURCES`]. Unset resource keys write nothing.
pub const RESOURCE_KEYS: [Key; RESOURCES.len()] = {
    let mut keys = [key("", Required, ""); RESOURCES.len()];
    let mut i = 0;
    while i < keys.len() {
        let r = RESOURCES[i];
        keys[i] = key(r.name, Unset(r.unset), r.doc);
        i += 1;
    }
    keys
};

/// The `[namespaces]` options besides the kinds.
const NAMESPACE_OPTIONS: [Key; 11] = [
    key(
        "uid-map",
        Unset("root inside = the service's user outside"),
        "[{ inside = 0, outside = 100000, count = 65536 }]; needs user",
    ),
    key(
        "gid-map",
        Unset("root inside = the service's group outside"),
        "as uid-map",
    ),
    key(
        "monotonic-offset",
        Unset("\"0s\""),
        "CLOCK_MONOTONIC offset, may be negative; needs time",
    ),
    key(
        "boottime-offset",
        Unset("\"0s\""),
        "CLOCK_BOOTTIME offset, may be negative; needs time",
    ),
    key("hostname", Unset("the host's"), "needs uts"),
    key(
        "root",
        Unset("the host's /"),
        "a directory entered with pivot_root; needs mount",
    ),
    key(
        "private-tmp",
        Unset("false"),
        "a fresh tmpfs on /tmp (implies mount)",
    ),
    key(
        "read-only-paths",
        Unset("[]"),
        "paths made read-only, recursively (implies mount)",
    ),
    key(
        "bind",
        Unset("[]"),
        "[{ source = \"/data\", target = \"/data\", read-only = false }]; the target is \
         created if missing (implies mount)",
    ),
    key(
        "propagation",
        Unset("\"private\""),
        "private | slave | shared; never lets the service's setup mounts reach the host",
    ),
    key(
        "sysctl",
        Unset("{}"),
        "namespaced sysctls only: net.* needs net, kernel.hostname/domainname uts, IPC keys ipc",
    ),
];

/// `[namespaces]`: the eight kinds (from [`NsKind`]), then their options.
pub const NAMESPACE_KEYS: [Key; NsKind::ALL.len() + NAMESPACE_OPTIONS.len()] = {
    let mut keys = [key("", Required, ""); NsKind::ALL.len() + NAMESPACE_OPTIONS.len()];
    let mut i = 0;
    while i < NsKind::ALL.len() {
        let k = NsKind::ALL[i];
        keys[i] = key(
            k.name(),
            Unset("the host's"),
            "true = new; \"other.service\" = share that running unit's; \"/path\" = setns",
        );
        i += 1;
    }
    while i < keys.len() {
        keys[i] = NAMESPACE_OPTIONS[i - NsKind::ALL.len()];
        i += 1;
    }
    keys
};

/// A table of a unit file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Unit,
    Service,
    Resources,
    Namespaces,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Unit,
        Table::Service,
        Table::Resources,
        Table::Namespaces,
    ];

    /// The name in brackets: `unit`, `service`, `resources`, `namespaces`.
    pub const fn name(self) -> &'static str {
        match self {
            Table::Unit => "unit",
            Table::Service => "service",
            Table::Resources => "resources",
            Table::Namespaces => "namespaces",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    pub const fn keys(self) -> &'static [Key] {
        match self {
            Table::Unit => UNIT,
            Table::Service => SERVICE,
            Table::Resources => &RESOURCE_KEYS,
            Table::Namespaces => &NAMESPACE_KEYS,
        }
    }

    /// The names of its keys, in order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        self.keys().iter().map(|k| k.name)
    }

    pub fn get(self, name: &str) -> Option<&'static Key> {
        self.keys().iter().find(|k| k.name == name)
    }
}

/// Every key, as `(table, key)`.
pub fn all_keys() -> impl Iterator<Item = (&'static str, &'static str)> {
    Table::ALL
        .into_iter()
        .flat_map(|t| t.names().map(move |k| (t.name(), k)))
}

/// The text of a unit file that writes out every [`KeyDefault::Value`] of every table.
pub fn defaults_text() -> String {
    let mut text = String::new();
    for table in Table::ALL {
        let _ = writeln!(text, "[{}]", table.name());
        for k in table.keys() {
            if let V(value) = k.default {
                let _ = writeln!(text, "{} = {value}", k.name);
            }
        }
    }
    text
}

/// The defaults as parsed nodes, by table (parsed once). A key with a [`KeyDefault::Value`] is in
/// its table; others are not. The validator reads a missing key from here.
pub fn defaults(table: Table) -> Option<&'static Node> {
    static DEFAULTS: LazyLock<Option<Node>> =
        LazyLock::new(|| doc::parse(Path::new("(built-in defaults)"), defaults_text()).ok());
    let node = DEFAULTS.as_ref()?.get(table.name())?;
    matches!(node.value, Value::Table(_)).then_some(node)
}

/// The tables `corralctl run -p KEY=VALUE` takes keys from; `exec` is the command itself.
pub const RUN_PROPERTY_TABLES: [Table; 2] = [Table::Service, Table::Resources];

/// The table of a `run -p` key, or `None` (then [`run_property_suggestion`] helps).
pub fn run_property_table(name: &str) -> Option<Table> {
    RUN_PROPERTY_TABLES
        .into_iter()
        .find(|t| name != "exec" && t.get(name).is_some())
}

/// The nearest key `run -p` takes, for a misspelt one.
pub fn run_property_suggestion(name: &str) -> Option<&'static str> {
    super::diag::did_you_mean(
        name,
        RUN_PROPERTY_TABLES
            .into_iter()
            .flat_map(Table::names)
            .filter(|k| *k != "exec"),
    )
}

/// The long help of `corralctl run -p`: every key it takes, with its default and meaning.
pub fn run_property_help() -> String {
    let mut out = String::from(
        "A [service] or [resources] key of the unit, KEY=VALUE (repeatable). A value that is \
         TOML (true, 5, [\"CAP_CHOWN\"], { … }) is taken as it is, anything else as a string; \
         a list key also takes words separated by commas.\n",
    );
    for table in RUN_PROPERTY_TABLES {
        let _ = write!(out, "\n[{}]", table.name());
        for k in table.keys().iter().filter(|k| k.name != "exec") {
            let default = match k.default {
                V(v) => format!("default {v}"),
                Unset(v) => format!("unset: {v}"),
                Required => "required".into(),
            };
            let _ = write!(out, "\n  {} ({default}): {}", k.name, k.doc);
        }
        out.push('\n');
    }
    out
}

/// Whether a key's values are lists (`run -p` splits a bare `a,b` into `["a", "b"]`): those
/// whose default is one, and `capabilities`, whose unset state is not.
pub fn is_list(table: Table, name: &str) -> bool {
    let list_default = matches!(
        table.get(name).map(|k| k.default),
        Some(V(v) | Unset(v)) if v.starts_with('[')
    );
    list_default || (table == Table::Service && name == "capabilities")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_into_every_table_with_a_default() {
        for table in [Table::Unit, Table::Service] {
            let node = defaults(table).unwrap_or_else(|| panic!("{}", defaults_text()));
            for k in table.keys() {
                assert_eq!(
                    node.get(k.name).is_some(),
                    matches!(k.default, V(_)),
                    "[{}] {}",
                    table.name(),
                    k.name
                );
            }
        }
        assert!(defaults(Table::Resources).is_some_and(|n| n.get("cpu-max").is_none()));
    }

    #[test]
    fn names_are_unique_across_a_table() {
        for table in Table::ALL {
            let mut names: Vec<_> = table.names().collect();
            names.sort_unstable();
            let n = names.len();
            names.dedup();
            assert_eq!(names.len(), n, "[{}]", table.name());
        }
        assert_eq!(
            NAMESPACE_KEYS
                .iter()
                .take(8)
                .map(|k| k.name)
                .collect::<Vec<_>>(),
            NsKind::names().collect::<Vec<_>>()
        );
    }

    #[test]
    fn run_properties_route_to_their_table() {
        assert_eq!(run_property_table("memory-max"), Some(Table::Resources));
        assert_eq!(
            run_property_table("no-new-privileges"),
            Some(Table::Service)
        );
        assert_eq!(run_property_table("exec"), None);
        assert_eq!(run_property_table("slice"), None);
        assert_eq!(run_property_suggestion("memory-mx"), Some("memory-max"));
        assert!(is_list(Table::Service, "capabilities"));
        assert!(is_list(Table::Service, "ambient-capabilities"));
        assert!(!is_list(Table::Service, "user"));
        let help = run_property_help();
        assert!(
            help.contains("\n  restart-delay (default \"100ms\"): "),
            "{help}"
        );
        assert!(help.contains("\n  io-max (unset: []): "), "{help}");
        assert!(help.contains("\n  user (unset: root): "), "{help}");
        assert!(!help.contains("\n  exec "), "{help}");
    }
}
