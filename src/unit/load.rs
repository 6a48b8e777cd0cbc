//! Loading: finding unit files on the search path, merging their drop-ins, validating, adding
//! implicit slices, and checking the set as a whole (missing dependencies, ordering cycles).
//!
//! - The search path is ordered, first wins: a `web.service.toml` in `/etc/corral/units` hides
//!   one in `/usr/lib/corral/units`.
//! - Drop-ins `NAME.KIND.d/*.toml` come from every directory of the path; a same-named drop-in
//!   in an earlier directory masks the later one; they apply in lexical order of file name.
//! - One bad file never stops the others: its unit is kept with [`LoadState::Error`] and the
//!   message, and every diagnostic of every file is returned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::diag::{Diagnostic, Location};
use super::doc;
use super::graph::Graph;
use super::model::{NsMode, Unit};
use super::name::UnitName;
use super::validate::{name_from_path, validate};

/// Where unit files are looked for, first wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath(pub Vec<PathBuf>);

impl SearchPath {
    /// `/etc/corral/units`, `/run/corral/units`, `/usr/lib/corral/units`.
    pub fn system() -> Self {
        SearchPath(vec![
            "/etc/corral/units".into(),
            "/run/corral/units".into(),
            "/usr/lib/corral/units".into(),
        ])
    }

    /// `$XDG_CONFIG_HOME/corral/units`, `$XDG_RUNTIME_DIR/corral/units`,
    /// `$XDG_DATA_HOME/corral/units`, with the XDG defaults under `home`.
    pub fn user(env: impl Fn(&str) -> Option<String>, home: &Path, uid: u32) -> Self {
        let xdg = |var: &str, default: PathBuf| {
            env(var)
                .filter(|v| v.starts_with('/'))
                .map_or(default, PathBuf::from)
        };
        let config = xdg("XDG_CONFIG_HOME", home.join(".config"));
        let runtime = xdg("XDG_RUNTIME_DIR", PathBuf::from(format!("/run/user/{uid}")));
        let data = xdg("XDG_DATA_HOME", home.join(".local/share"));
        SearchPath(vec![
            config.join("corral/units"),
            runtime.join("corral/units"),
            data.join("corral/units"),
        ])
    }
}

/// Whether a unit could be used.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadState {
    Loaded(Box<Unit>),
    /// The unit's files had errors; the message of the first (all are in the diagnostics).
    Error(String),
}

/// One unit known to the loader.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: UnitName,
    /// The unit file and its drop-ins, in merge order.
    pub files: Vec<PathBuf>,
    pub state: LoadState,
}

impl Entry {
    pub fn unit(&self) -> Option<&Unit> {
        match &self.state {
            LoadState::Loaded(u) => Some(u),
            LoadState::Error(_) => None,
        }
    }
}

/// The result of loading: every unit, every diagnostic, and the graph of the loaded units.
#[derive(Debug, Clone, Default)]
pub struct UnitSet {
    pub units: BTreeMap<UnitName, Entry>,
    pub diagnostics: Vec<Diagnostic>,
    pub graph: Graph,
}

impl UnitSet {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn get(&self, name: &UnitName) -> Option<&Unit> {
        self.units.get(name).and_then(Entry::unit)
    }

    pub fn loaded(&self) -> impl Iterator<Item = &Unit> {
        self.units.values().filter_map(Entry::unit)
    }

    /// Adds (or replaces) one loaded unit — a transient one — with the slices it needs, and
    /// updates the graph: new units are added to it (rebuilding it per transient unit made a
    /// burst of them O(n²), docs/PERFORMANCE.md finding 5); a replaced unit rebuilds it.
    /// Returns the names that are new to the set.
    pub fn insert(&mut self, unit: Unit) -> Vec<UnitName> {
        let replaced = self.units.contains_key(&unit.name);
        let mut added = Vec::new();
        let mut cur = unit.slice();
        while let Some(s) = cur {
            cur = s.parent_slice();
            if !self.units.contains_key(&s) {
                added.push(s.clone());
                self.units.insert(
                    s.clone(),
                    Entry {
                        name: s.clone(),
                        files: Vec::new(),
                        state: LoadState::Loaded(Box::new(Unit::implicit_slice(s))),
                    },
                );
            }
        }
        let name = unit.name.clone();
        if !self.units.contains_key(&name) {
            added.push(name.clone());
        }
        self.units.insert(
            name.clone(),
            Entry {
                name,
                files: unit.files.clone(),
                state: LoadState::Loaded(Box::new(unit)),
            },
        );
        if replaced {
            self.graph = Graph::new(self.loaded());
        } else {
            let units = &self.units;
            let loaded = |n: &UnitName| units.get(n).and_then(Entry::unit);
            let new: Vec<&Unit> = added.iter().filter_map(loaded).collect();
            self.graph.add_new(&new, |n| loaded(n).is_some());
        }
        added
    }
}

impl UnitSet {
    /// Unloads one unit — a transient unit collected once it stopped — and takes it out of the
    /// graph without rebuilding it. The slices it brought stay.
    pub fn remove(&mut self, name: &UnitName) -> Option<Entry> {
        let entry = self.units.remove(name)?;
        let units = &self.units;
        self.graph
            .remove(name, units.values().filter_map(Entry::unit));
        Some(entry)
    }
}

/// The files of one unit before parsing: the main file and its drop-ins in merge order.
#[derive(Debug, Default)]
struct Files {
    main: Option<PathBuf>,
    dropins: BTreeMap<String, PathBuf>,
}

/// Loads every unit on a search path (plus, for transient units and runtime drop-ins, whatever
/// directories the caller put on it).
pub fn load_path(path: &SearchPath) -> UnitSet {
    let mut diags = Vec::new();
    let mut found: BTreeMap<UnitName, Files> = BTreeMap::new();
    for dir in &path.0 {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                diags.push(Diagnostic::error(
                    Location::file(dir),
                    None,
                    format!("cannot read unit directory: {e}"),
                ));
                continue;
            }
        };
        let mut names: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
            .collect();
        names.sort();
        for (file, full) in names {
            if let Some(stem) = file.strip_suffix(".d")
                && full.is_dir()
            {
                if let Ok(name) = UnitName::parse(stem) {
                    collect_dropins(&full, found.entry(name).or_default(), &mut diags);
                }
                continue;
            }
            if !file.ends_with(".toml") || file.starts_with('.') || !full.is_file() {
                continue;
            }
            match name_from_path(&full) {
                Ok(name) => {
                    let f = found.entry(name).or_default();
                    if f.main.is_none() {
                        f.main = Some(full);
                    }
                }
                Err(e) => diags.push(Diagnostic::error(Location::file(&full), None, e)),
            }
        }
    }
    let mut set = UnitSet::default();
    for (name, files) in found {
        let Some(main) = files.main else {
            if let Some(first) = files.dropins.values().next() {
                diags.push(Diagnostic::warning(
                    Location::file(first),
                    None,
                    format!("drop-in for {name}, which has no unit file: ignored"),
                ));
            }
            continue;
        };
        let mut all = vec![main];
        all.extend(files.dropins.into_values());
        let entry = load_unit(&name, all, &mut diags);
        set.units.insert(name, entry);
    }
    finish(set, diags)
}

fn collect_dropins(dir: &Path, files: &mut Files, diags: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(Diagnostic::error(
                Location::file(dir),
                None,
                format!("cannot read drop-in directory: {e}"),
            ));
            return;
        }
    };
    for e in entries.filter_map(Result::ok) {
        let Ok(file) = e.file_name().into_string() else {
            continue;
        };
        if file.ends_with(".toml") && !file.starts_with('.') {
            // An earlier directory's drop-in of the same name masks this one.
            files.dropins.entry(file).or_insert_with(|| e.path());
        }
    }
}

/// Loads the given unit files as a set (what `corralctl verify` checks): each file's
/// `NAME.KIND.d/*.toml` drop-ins beside it are merged in.
pub fn load_files(paths: &[PathBuf]) -> UnitSet {
    let mut diags = Vec::new();
    let mut set = UnitSet::default();
    for path in paths {
        let name = match name_from_path(path) {
            Ok(n) => n,
            Err(e) => {
                diags.push(Diagnostic::error(Location::file(path), None, e));
                continue;
            }
        };
        if set.units.contains_key(&name) {
            diags.push(Diagnostic::warning(
                Location::file(path),
                None,
                format!("{name} was already given: this file is ignored"),
            ));
            continue;
        }
        let mut files = Files::default();
        let dropin_dir = path.with_file_name(format!("{name}.d"));
        if dropin_dir.is_dir() {
            collect_dropins(&dropin_dir, &mut files, &mut diags);
        }
        let mut all = vec![path.clone()];
        all.extend(files.dropins.into_values());
        let entry = load_unit(&name, all, &mut diags);
        set.units.insert(name, entry);
    }
    finish(set, diags)
}

/// Parses and validates one unit from text, as `StartTransientUnit` does; `path` names the text
/// in messages.
pub fn parse_unit(name: &UnitName, path: &Path, text: &str) -> Result<Unit, Vec<Diagnostic>> {
    parse_unit_sources(name, vec![(path.to_path_buf(), text.to_string())])
}

/// Parses one unit's sources — its file and drop-ins in merge order, already read — merges
/// them and validates the result, as loading does with the files' contents: the loader's merge
/// path without the file system.
pub fn parse_unit_sources(
    name: &UnitName,
    sources: Vec<(PathBuf, String)>,
) -> Result<Unit, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let files = sources.iter().map(|(p, _)| p.clone()).collect();
    let mut merged = None;
    for (path, text) in sources {
        merge_source(&mut merged, &path, text, &mut diags);
    }
    match validate_merged(name, merged, files, 0, &mut diags) {
        Some(u) if !diags.iter().any(Diagnostic::is_error) => Ok(u),
        _ => Err(diags),
    }
}

/// Parses one source and merges it over the sources before it; syntax errors go to `diags`.
fn merge_source(
    merged: &mut Option<doc::Node>,
    path: &Path,
    text: String,
    diags: &mut Vec<Diagnostic>,
) {
    match doc::parse(path, text) {
        Ok(node) => match merged {
            Some(m) => m.merge(node),
            None => *merged = Some(node),
        },
        Err(d) => diags.extend(d),
    }
}

/// Validates the merged sources, unless there is none or an error was reported since
/// `first_error` (the index in `diags` where this unit's diagnostics begin).
fn validate_merged(
    name: &UnitName,
    merged: Option<doc::Node>,
    files: Vec<PathBuf>,
    first_error: usize,
    diags: &mut Vec<Diagnostic>,
) -> Option<Unit> {
    match merged {
        Some(node) if diags[first_error..].iter().all(|d| !d.is_error()) => {
            validate(name, &node, files, diags)
        }
        _ => None,
    }
}

/// Reads, parses, merges and validates one unit's files.
fn load_unit(name: &UnitName, files: Vec<PathBuf>, diags: &mut Vec<Diagnostic>) -> Entry {
    let first_error = diags.len();
    let mut merged: Option<doc::Node> = None;
    for path in &files {
        match std::fs::read_to_string(path) {
            Ok(text) => merge_source(&mut merged, path, text, diags),
            Err(e) => diags.push(Diagnostic::error(
                Location::file(path),
                None,
                format!("cannot read: {e}"),
            )),
        }
    }
    let unit = validate_merged(name, merged, files.clone(), first_error, diags);
    let state = match unit {
        Some(u) => LoadState::Loaded(Box::new(u)),
        None => LoadState::Error(
            diags[first_error..]
                .iter()
                .find(|d| d.is_error())
                .map_or_else(|| "cannot load".to_string(), |d| d.to_string()),
        ),
    };
    Entry {
        name: name.clone(),
        files,
        state,
    }
}

/// Adds implicit slices, checks references between units, finds ordering cycles.
fn finish(mut set: UnitSet, mut diags: Vec<Diagnostic>) -> UnitSet {
    // Every slice a loaded unit lives in exists, implicitly if it has no file.
    let mut wanted_slices: BTreeSet<UnitName> = BTreeSet::new();
    for u in set.loaded() {
        let mut cur = u.slice();
        while let Some(s) = cur {
            cur = s.parent_slice();
            wanted_slices.insert(s);
        }
    }
    wanted_slices.insert(UnitName::root_slice());
    for s in wanted_slices {
        set.units.entry(s.clone()).or_insert_with(|| Entry {
            name: s.clone(),
            files: Vec::new(),
            state: LoadState::Loaded(Box::new(Unit::implicit_slice(s))),
        });
    }

    // References to units that don't exist: a warning (and, for requires, a failure at start).
    for u in set.loaded() {
        let Some(s) = &u.service else { continue };
        for (key, deps) in [("requires", &s.deps.requires), ("wants", &s.deps.wants)] {
            for d in deps {
                if !set.units.contains_key(&d.name) {
                    let effect = if key == "requires" {
                        format!("starting {} will fail", u.name)
                    } else {
                        "it is ignored".to_string()
                    };
                    diags.push(Diagnostic::warning(
                        d.at.clone(),
                        Some(format!("[unit] {key}")),
                        format!("no unit {} exists; {effect}", d.name),
                    ));
                }
            }
        }
        for kind in super::model::NsKind::ALL {
            let Some(NsMode::Share(other)) = s.namespaces.get(kind) else {
                continue;
            };
            let at = s
                .namespaces
                .share_at
                .get(&kind)
                .cloned()
                .unwrap_or_else(|| {
                    Location::file(u.files.first().map_or(Path::new(""), PathBuf::as_path))
                });
            let key = Some(format!("[namespaces] {kind}"));
            if *other == u.name {
                diags.push(Diagnostic::error(
                    at,
                    key,
                    "a unit can't join its own namespace; use true for a new one",
                ));
            } else if !set.units.contains_key(other) {
                diags.push(Diagnostic::warning(
                    at,
                    key,
                    format!(
                        "no unit {other} exists to share a {kind} namespace with; \
                         starting {} will fail",
                        u.name
                    ),
                ));
            }
        }
    }

    // Ordering cycles are load errors: every unit of the cycle is refused.
    let graph = Graph::new(set.loaded());
    for cycle in graph.cycles() {
        let msg = cycle.describe();
        let (at, key) = match &cycle.edge.origin {
            Some((loc, key)) => (loc.clone(), Some(format!("[unit] {key}"))),
            None => {
                let file = set
                    .units
                    .get(&cycle.edge.then)
                    .and_then(|e| e.files.first().cloned())
                    .unwrap_or_default();
                (Location::file(&file), None)
            }
        };
        let diag = Diagnostic::error(at, key, msg);
        for u in &cycle.units {
            if let Some(e) = set.units.get_mut(u) {
                e.state = LoadState::Error(diag.to_string());
            }
        }
        diags.push(diag);
    }
    set.graph = Graph::new(set.loaded());
    set.diagnostics = diags;
    set
}

#[cfg(test)]
mod insert_tests {
    use super::*;

    fn n(s: &str) -> UnitName {
        UnitName::parse(s).unwrap()
    }

    fn unit(name: &str, toml: &str) -> Unit {
        let name = n(name);
        let path = PathBuf::from(format!("/run/corral/units/{name}.toml"));
        parse_unit(&name, &path, toml).unwrap()
    }

    /// Everything the graph answers, for every name involved.
    fn answers(set: &UnitSet, names: &[&str]) -> Vec<String> {
        let g = &set.graph;
        names
            .iter()
            .map(|s| {
                let u = n(s);
                let waits: Vec<_> = g.waits_on(&u).collect();
                let reqs: Vec<_> = g.requirements(&u).collect();
                let tx: Vec<_> = g
                    .transaction(std::slice::from_ref(&u))
                    .into_iter()
                    .collect();
                format!("{u}: waits {waits:?} requires {reqs:?} pulls {tx:?}")
            })
            .collect()
    }

    #[test]
    fn a_new_unit_joins_the_graph_as_a_rebuild_would_have_it() {
        let mut set = UnitSet::default();
        for u in [
            unit(
                "web.service",
                "[unit]\nafter = [\"job.service\"]\nwants = [\"job.service\"]\n\
                 before = [\"late.service\"]\n[service]\nexec = [\"/bin/true\"]\n",
            ),
            unit(
                "log.service",
                "[unit]\nbefore = [\"job.service\"]\n[service]\nexec = [\"/bin/true\"]\n",
            ),
        ] {
            set.insert(u);
        }
        let added = set.insert(unit(
            "job.service",
            "[unit]\nslice = \"apps-batch.slice\"\nrequires = [\"log.service\"]\n\
             after = [\"log.service\"]\n[service]\nexec = [\"/bin/true\"]\n",
        ));
        assert_eq!(
            added,
            [n("apps-batch.slice"), n("apps.slice"), n("job.service")]
        );
        let names = [
            "web.service",
            "log.service",
            "job.service",
            "apps.slice",
            "apps-batch.slice",
            "system.slice",
            "-.slice",
        ];
        let incremental = answers(&set, &names);
        set.graph = Graph::new(set.loaded());
        assert_eq!(incremental, answers(&set, &names));
        // The edges named before the unit existed are there.
        let waits: Vec<_> = set.graph.waits_on(&n("web.service")).cloned().collect();
        assert!(waits.contains(&n("job.service")), "{waits:?}");
        assert!(set.graph.cycles().is_empty());

        // An edge to a unit still missing waited through the inserts above; it joins when that
        // unit does, as does a namespace owner's edge.
        set.insert(unit(
            "late.service",
            "[service]\nexec = [\"/bin/true\"]\n[namespaces]\nnet = \"owner.service\"\n",
        ));
        set.insert(unit("owner.service", "[service]\nexec = [\"/bin/true\"]\n"));
        let names = [&names[..], &["late.service", "owner.service"]].concat();
        let incremental = answers(&set, &names);
        set.graph = Graph::new(set.loaded());
        assert_eq!(incremental, answers(&set, &names));
        let waits: Vec<_> = set.graph.waits_on(&n("late.service")).cloned().collect();
        assert!(
            waits.contains(&n("web.service")) && waits.contains(&n("owner.service")),
            "{waits:?}"
        );
    }
}
