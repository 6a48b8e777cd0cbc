//! `corralctl import`: systemd `.service` and `.slice` files, with their drop-ins, converted into
//! corral unit files (DESIGN §9).
//!
//! Rooms: [`syntax`] reads systemd's unit-file syntax into directives with their lines;
//! [`specifier`] resolves `%` specifiers; [`exec`] reads command lines and `Environment=` words
//! and writes commands back as an argv or, when needed, a `/bin/sh -c` script; [`values`] reads
//! systemd's time spans, sizes and percentages; the private `map` turns directives into a corral
//! draft, warning for every key it cannot carry over; `emit` writes the TOML.
//!
//! **The parser is our own.** Of the crates on crates.io that read unit files,
//! `systemd-parser` (0.1.3, 2017, nom 2) is unmaintained, and `systemd-unit-edit` (0.1.4) is a
//! lossless editor built on rowan: its values keep their escapes, it reports problems as
//! strings without lines, and it refuses indented lines that systemd accepts. Neither implements
//! command-line quoting, specifiers or drop-in lookup, which are most of the work; the syntax
//! itself is a page of systemd.syntax(7) and is written here to its rules, with every error on
//! a line of its own and no panic on any input (the fuzz target calls [`convert`]).
//!
//! **Every output is checked by corral itself**: the converted text goes through
//! [`crate::unit::parse_unit`], the validation `corralctl verify` runs. A value corral refuses
//! (say a `CPUQuota=` whose quota is under 1 ms) is dropped with a warning at the systemd line it
//! came from, and the check is run again; what cannot be fixed that way (no `exec`) fails the
//! file. Resource values are also checked one by one with [`crate::limits`] as they are mapped.
//!
//! Files: the drop-ins of `NAME.KIND` are the `*.conf` files in `NAME.KIND.d/` beside it and, as
//! systemd has them, in the directories of its dash prefixes (`a-.service.d/` for `a-b.service`)
//! and of its template (`a@.service.d/` for `a@b.service`), applied in order of file name; a
//! same-named file in a more specific directory replaces the general one. A file that is a
//! symbolic link to `/dev/null` is a masked unit (an error: nothing to import); a link to another
//! unit file is an alias, imported under the name it points to. An instance name with no file of
//! its own (`getty@tty1.service`) is read from its template (`getty@.service`).

pub mod exec;
pub mod specifier;
pub mod syntax;
pub mod values;

mod emit;
mod map;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::unit::{Kind, UnitName, diag::did_you_mean};

/// The biggest file read: a unit file is a few KiB; this bounds what a wrong argument costs.
pub const MAX_FILE: u64 = 64 * 1024 * 1024;

/// What the conversion may ask of the machine it runs on. [`Host::this_machine`] looks; tests
/// and the fuzz target use [`Host::none`] or their own functions.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// Whether a path exists (paths systemd would skip when missing are kept only if so).
    pub path_exists: fn(&Path) -> bool,
    /// A bare program name looked up as systemd does (its fixed `$PATH`).
    pub find_program: fn(&str) -> Option<PathBuf>,
    /// The machine's task limit, that `TasksMax=N%` is a share of.
    pub tasks_max_base: Option<u64>,
}

/// The `$PATH` systemd looks bare program names up in.
const SYSTEMD_PATH: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

impl Host {
    pub fn this_machine() -> Self {
        Host {
            path_exists: |p| p.exists(),
            find_program: |name| {
                SYSTEMD_PATH
                    .iter()
                    .map(|d| Path::new(d).join(name))
                    .find(|p| p.is_file())
            },
            tasks_max_base: tasks_max_base(),
        }
    }

    /// Knows nothing: no path exists, no program is found, no task limit.
    pub fn none() -> Self {
        Host {
            path_exists: |_| false,
            find_program: |_| None,
            tasks_max_base: None,
        }
    }
}

/// systemd's system-wide task limit: the smaller of `kernel.pid_max` and `kernel.threads-max`.
fn tasks_max_base() -> Option<u64> {
    let read = |p: &str| -> Option<u64> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    match (
        read("/proc/sys/kernel/pid_max"),
        read("/proc/sys/kernel/threads-max"),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A key that was not carried over, or whose meaning changed:
/// `FILE:LINE: warning: [Section] Key: why`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub section: String,
    pub key: String,
    pub why: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: warning: [{}] {}: {}",
            self.file.display(),
            self.line,
            self.section,
            self.key,
            self.why
        )
    }
}

/// Why a file was not converted. Each names the file, and the line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: error: cannot read: {err}", path.display())]
    Read { path: PathBuf, err: std::io::Error },
    #[error("{}: error: not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: error: larger than {} MiB: not a unit file", path.display(), MAX_FILE >> 20)]
    TooBig { path: PathBuf },
    #[error("{}: error: masked (a link to /dev/null): there is nothing to import", path.display())]
    Masked { path: PathBuf },
    #[error(
        "{}: error: {name:?} is not a .service or .slice file: corral has services and slices only",
        path.display()
    )]
    Kind { path: PathBuf, name: String },
    #[error("{}: error: {why}", path.display())]
    Name { path: PathBuf, why: String },
    #[error("{}: error: cannot read drop-in directory: {err}", path.display())]
    DropinDir { path: PathBuf, err: std::io::Error },
    #[error("{}:{line}: error: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: error: unknown section [{section}]; {expected}", path.display())]
    Section {
        path: PathBuf,
        line: usize,
        section: String,
        expected: String,
    },
    #[error("{}: error: not a unit file: it has no [Section]", path.display())]
    NotAUnit { path: PathBuf },
    #[error("{}:{line}: error: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// A converted unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The corral unit name, e.g. `web.service`.
    pub name: UnitName,
    /// The unit file's text.
    pub toml: String,
    pub warnings: Vec<Warning>,
}

impl Conversion {
    /// `NAME.KIND.toml`.
    pub fn file_name(&self) -> String {
        format!("{}.toml", self.name)
    }
}

/// A file that was not converted, with the warnings found on the way.
#[derive(Debug)]
pub struct Failure {
    pub error: ImportError,
    pub warnings: Vec<Warning>,
}

impl From<ImportError> for Failure {
    fn from(error: ImportError) -> Self {
        Failure {
            error,
            warnings: Vec::new(),
        }
    }
}

/// One file's path and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

/// Converts a unit named `name` (`web.service`) from its file and drop-ins, in merge order.
/// Pure: reads nothing but `host`. Never panics, whatever the bytes.
pub fn convert(
    name: &str,
    main: &Input,
    dropins: &[Input],
    host: &Host,
) -> Result<Conversion, Failure> {
    let kind = kind_of(name).ok_or_else(|| ImportError::Kind {
        path: main.path.clone(),
        name: name.to_string(),
    })?;
    let unit_name = UnitName::parse(name).map_err(|e| ImportError::Name {
        path: main.path.clone(),
        why: format!("{e}: not a name corral accepts"),
    })?;
    let mut warnings = Vec::new();
    let mut directives = Vec::new();
    for (i, input) in std::iter::once(main).chain(dropins).enumerate() {
        let parsed = syntax::parse(&input.path, &input.bytes).map_err(|e| ImportError::Syntax {
            path: input.path.clone(),
            line: e.line,
            message: e.message,
        })?;
        if i == 0 && parsed.headers.is_empty() {
            return Err(ImportError::NotAUnit {
                path: input.path.clone(),
            }
            .into());
        }
        let known: &[&str] = match kind {
            Kind::Service => &["Unit", "Service", "Install"],
            Kind::Slice => &["Unit", "Slice", "Install"],
            // Never met: kind_of takes .service and .slice files only.
            Kind::Scope => &["Unit", "Scope", "Install"],
        };
        for h in &parsed.headers {
            if known.contains(&h.name.as_str()) {
                continue;
            }
            if h.name.starts_with("X-") {
                warnings.push(Warning {
                    file: input.path.clone(),
                    line: h.line,
                    section: h.name.clone(),
                    key: "*".into(),
                    why: "an extension section (X-): ignored, as systemd does".into(),
                });
                continue;
            }
            let hint = did_you_mean(&h.name, known.iter().copied())
                .map(|s| format!("did you mean [{s}]? "))
                .unwrap_or_default();
            return Err(Failure {
                error: ImportError::Section {
                    path: input.path.clone(),
                    line: h.line,
                    section: h.name.clone(),
                    expected: format!(
                        "{hint}a .{kind} file has {}",
                        known
                            .iter()
                            .map(|s| format!("[{s}]"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
                warnings,
            });
        }
        directives.extend(
            parsed
                .directives
                .into_iter()
                .filter(|d| !d.section.starts_with("X-")),
        );
    }
    let (mut draft, mut found) = map::Mapper::new(name, kind, host, directives).run();
    warnings.append(&mut found);
    if kind == Kind::Service && draft.get("service", "exec").is_none() {
        return Err(Failure {
            error: ImportError::Invalid {
                path: main.path.clone(),
                line: 1,
                message: "no ExecStart= to run: a corral service runs a command".into(),
            },
            warnings,
        });
    }
    let mut sources = vec![main.path.display().to_string()];
    sources.extend(dropins.iter().map(|d| d.path.display().to_string()));
    draft.comments.insert(
        0,
        format!(
            "{unit_name}: imported from {} by corralctl import",
            sources.join(", ")
        ),
    );
    match check(&unit_name, &mut draft, &mut warnings) {
        Ok(toml) => Ok(Conversion {
            name: unit_name,
            toml,
            warnings,
        }),
        Err(message) => Err(Failure {
            error: ImportError::Invalid {
                path: main.path.clone(),
                line: 1,
                message,
            },
            warnings,
        }),
    }
}

/// The kind a systemd file name ends in, if corral has it.
fn kind_of(name: &str) -> Option<Kind> {
    if name.ends_with(".service") {
        Some(Kind::Service)
    } else if name.ends_with(".slice") {
        Some(Kind::Slice)
    } else {
        None
    }
}

/// Validates the draft as `corralctl verify` would; a refused key is dropped (with a warning at
/// its systemd line) and the check repeated. Returns the text, or why it can't be a unit.
fn check(
    name: &UnitName,
    draft: &mut emit::Draft,
    warnings: &mut Vec<Warning>,
) -> Result<String, String> {
    let path = PathBuf::from(format!("{name}.toml"));
    // Each round drops at least one key, so this ends; the bound is the number of keys.
    for _ in 0..=draft.entries.len() {
        let text = draft.to_toml();
        let diags = match crate::unit::parse_unit(name, &path, &text) {
            Ok(_) => return Ok(text),
            Err(d) => d,
        };
        let mut dropped = false;
        let mut first = None;
        for d in diags.iter().filter(|d| d.is_error()) {
            let target = d.key.as_deref().and_then(split_key);
            let removed = target.and_then(|(t, k)| draft.remove(t, k));
            match removed {
                Some(entry) => {
                    dropped = true;
                    let (file, line, section, key) = match entry.origin {
                        Some(o) => (o.file.to_path_buf(), o.line, o.section, o.key),
                        None => (path.clone(), 1, entry.table.into(), entry.key.into()),
                    };
                    warnings.push(Warning {
                        file,
                        line,
                        section,
                        key,
                        why: format!(
                            "corral refused the converted value ({}): {}; left out",
                            d.key.as_deref().unwrap_or(entry.key),
                            d.message
                        ),
                    });
                }
                None => {
                    first.get_or_insert_with(|| d.short());
                }
            }
        }
        if !dropped {
            return Err(first.unwrap_or_else(|| "the converted unit is not valid".into()));
        }
    }
    Err("the converted unit is not valid".into())
}

/// `"[service] exec[0]"` → `("service", "exec")`.
fn split_key(k: &str) -> Option<(&str, &str)> {
    let rest = k.strip_prefix('[')?;
    let (table, key) = rest.split_once("] ")?;
    let end = key.find(['[', '.']).unwrap_or(key.len());
    Some((table, &key[..end]))
}

/// Reads one systemd unit file with its drop-ins from the file system and converts it.
pub fn import_file(path: &Path, host: &Host) -> Result<Conversion, Failure> {
    let mut warnings = Vec::new();
    let given = file_name(path)?;
    let mut name = given.clone();
    let mut source = path.to_path_buf();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(path).map_err(|err| ImportError::Read {
                path: path.to_path_buf(),
                err,
            })?;
            if target == Path::new("/dev/null") {
                return Err(ImportError::Masked {
                    path: path.to_path_buf(),
                }
                .into());
            }
            if let Some(t) = target.file_name().and_then(|t| t.to_str())
                && t != given
                && kind_of(t).is_some()
            {
                warnings.push(Warning {
                    file: path.to_path_buf(),
                    line: 1,
                    section: "Unit".into(),
                    key: "Alias".into(),
                    why: format!("a link to {t}: corral has no aliases, so it is imported as {t}"),
                });
                name = t.to_string();
            }
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // An instance with no file of its own comes from its template.
            if let Some(template) = template_of(&given) {
                let t = path.with_file_name(&template);
                if t.exists() {
                    source = t;
                }
            }
        }
        Err(err) => {
            return Err(ImportError::Read {
                path: path.to_path_buf(),
                err,
            }
            .into());
        }
    }
    let main = Input {
        bytes: read_bounded(&source)?,
        path: source.clone(),
    };
    let dir = source.parent().unwrap_or(Path::new("."));
    let dropins = dropins(dir, &name)?
        .into_iter()
        .map(|p| {
            Ok(Input {
                bytes: read_bounded(&p)?,
                path: p,
            })
        })
        .collect::<Result<Vec<_>, ImportError>>()?;
    match convert(&name, &main, &dropins, host) {
        Ok(mut c) => {
            warnings.append(&mut c.warnings);
            c.warnings = warnings;
            Ok(c)
        }
        Err(mut f) => {
            warnings.append(&mut f.warnings);
            f.warnings = warnings;
            Err(f)
        }
    }
}

fn file_name(path: &Path) -> Result<String, ImportError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(String::from)
        .ok_or_else(|| ImportError::Name {
            path: path.to_path_buf(),
            why: "no UTF-8 file name".into(),
        })
}

/// `a@b.service` → `a@.service`.
fn template_of(name: &str) -> Option<String> {
    let (stem, kind) = name.rsplit_once('.')?;
    let (prefix, instance) = stem.split_once('@')?;
    (!instance.is_empty()).then(|| format!("{prefix}@.{kind}"))
}

/// Reads a regular file of at most [`MAX_FILE`] bytes (never blocks on a FIFO or a device).
fn read_bounded(path: &Path) -> Result<Vec<u8>, ImportError> {
    let read_err = |err| ImportError::Read {
        path: path.to_path_buf(),
        err,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() {
        return Err(ImportError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(ImportError::TooBig {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The drop-in directories of `name`, most general first (see the module docs).
pub fn dropin_dirs(name: &str) -> Vec<String> {
    let Some((stem, kind)) = name.rsplit_once('.') else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    let prefix_part = stem.split_once('@').map_or(stem, |(p, _)| p);
    for (i, _) in prefix_part.match_indices('-') {
        if i > 0 {
            dirs.push(format!("{}-.{kind}.d", &prefix_part[..i]));
        }
    }
    if let Some(t) = template_of(name) {
        dirs.push(format!("{t}.d"));
    }
    dirs.push(format!("{name}.d"));
    dirs
}

/// The `*.conf` drop-ins of `name` beside it in `dir`, in the order they apply.
fn dropins(dir: &Path, name: &str) -> Result<Vec<PathBuf>, ImportError> {
    let mut by_name: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for d in dropin_dirs(name) {
        let path = dir.join(&d);
        // A directory that isn't there is the usual case; one that is there (even as a dangling
        // link) but can't be read is an error.
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let entries = std::fs::read_dir(&path).map_err(|err| ImportError::DropinDir {
            path: path.clone(),
            err,
        })?;
        for e in entries {
            let e = e.map_err(|err| ImportError::DropinDir {
                path: path.clone(),
                err,
            })?;
            let Ok(file) = e.file_name().into_string() else {
                continue;
            };
            if file.ends_with(".conf") && !file.starts_with('.') {
                by_name.insert(file, e.path());
            }
        }
    }
    Ok(by_name.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(name: &str, text: &str) -> Result<Conversion, Failure> {
        let main = Input {
            path: PathBuf::from(format!("/lib/systemd/system/{name}")),
            bytes: text.as_bytes().to_vec(),
        };
        convert(name, &main, &[], &Host::none())
    }

    #[test]
    fn drop_in_directories_in_order() {
        assert_eq!(
            dropin_dirs("a-b-c.service"),
            ["a-.service.d", "a-b-.service.d", "a-b-c.service.d"]
        );
        assert_eq!(
            dropin_dirs("user@1000.service"),
            ["user@.service.d", "user@1000.service.d"]
        );
        assert_eq!(
            dropin_dirs("user-1000.slice"),
            ["user-.slice.d", "user-1000.slice.d"]
        );
        assert_eq!(
            template_of("getty@tty1.service").as_deref(),
            Some("getty@.service")
        );
        assert_eq!(template_of("getty@.service"), None);
    }

    #[test]
    fn split_diagnostic_keys() {
        assert_eq!(split_key("[service] exec[0]"), Some(("service", "exec")));
        assert_eq!(
            split_key("[resources] io-max[1].wbps"),
            Some(("resources", "io-max"))
        );
        assert_eq!(split_key("[unit]"), None);
    }

    #[test]
    fn a_refused_value_is_dropped_with_a_warning_at_its_line() {
        // 0.5% of a 100 ms period is 0.5 ms: under the kernel's 1 ms minimum.
        let c = conv(
            "q.service",
            "[Service]\nExecStart=/bin/true\nCPUQuota=0.5%\nMemoryMax=1G\n",
        )
        .unwrap();
        assert!(!c.toml.contains("cpu-max"), "{}", c.toml);
        assert!(c.toml.contains("memory-max = \"1G\""), "{}", c.toml);
        let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
        assert!(
            w.iter().any(|w| w.starts_with(
                "/lib/systemd/system/q.service:3: warning: [Service] CPUQuota: corral refused"
            )),
            "{w:?}"
        );
    }

    #[test]
    fn files_that_are_not_units() {
        let e = conv("x.service", "just some text\n").unwrap_err();
        assert!(e.error.to_string().contains(":1: error:"), "{}", e.error);
        let e = conv("x.service", "# only a comment\n").unwrap_err();
        assert!(
            matches!(e.error, ImportError::NotAUnit { .. }),
            "{}",
            e.error
        );
        let e = conv("x.socket", "[Socket]\n").unwrap_err();
        assert!(matches!(e.error, ImportError::Kind { .. }), "{}", e.error);
        let e = conv("x.service", "[Unit]\n[Serivce]\nExecStart=/bin/true\n").unwrap_err();
        assert_eq!(
            e.error.to_string(),
            "/lib/systemd/system/x.service:2: error: unknown section [Serivce]; did you mean \
             [Service]? a .service file has [Unit], [Service], [Install]"
        );
        let e = conv("x.service", "[Unit]\nDescription=no exec\n").unwrap_err();
        assert!(e.error.to_string().contains("no ExecStart="), "{}", e.error);
        let e = conv("bad\\x2dname.service", "[Service]\nExecStart=/bin/true\n").unwrap_err();
        assert!(matches!(e.error, ImportError::Name { .. }), "{}", e.error);
        let c = conv(
            "x.service",
            "[X-Custom]\nFoo=bar\n[Service]\nExecStart=/bin/true\n",
        )
        .unwrap();
        assert!(
            c.warnings[0].to_string().contains("[X-Custom]"),
            "{:?}",
            c.warnings
        );
    }
}
