//! Load diagnostics: every problem found in a unit file, with its file, line, column and key.
//!
//! Loading never stops at the first problem: each step pushes [`Diagnostic`]s into a list and
//! carries on, so `corralctl verify` and `Reload` can report every error of every file at once.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a problem is: an error keeps the unit from loading, a warning does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// A place in a unit file. Line and column count from 1; column counts characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text`.
    pub fn at(file: &Path, text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            file: file.to_path_buf(),
            line,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// A location for a whole file (line 1, column 1).
    pub fn file(file: &Path) -> Self {
        Location {
            file: file.to_path_buf(),
            line: 1,
            column: 1,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One problem, printed as `FILE:LINE:COL: error: [table] key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    /// The key as `[table] key` (or just `[table]`), when the problem has one.
    pub key: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn error(location: Location, key: Option<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location,
            key,
            message: message.into(),
        }
    }

    pub fn warning(location: Location, key: Option<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(location, key, message)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The message without the location: what a unit's `LoadError` shows.
    pub fn short(&self) -> String {
        match &self.key {
            Some(k) => format!("{k}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}: {sev}: {}", self.location, self.short())
    }
}

/// The nearest of `candidates` to a misspelt `word`, if one is near enough to suggest.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters() {
        let text = "[unit]\ndescription = \"é\"\nslice = 3\n";
        let p = Path::new("x.service.toml");
        assert_eq!(Location::at(p, text, 0).to_string(), "x.service.toml:1:1");
        let off = text.find("slice").unwrap();
        assert_eq!(Location::at(p, text, off).to_string(), "x.service.toml:3:1");
        let off = text.find('3').unwrap();
        assert_eq!(Location::at(p, text, off).column, 9);
        let off = text.find("\"\n").unwrap();
        assert_eq!(Location::at(p, text, off).column, 17);
    }

    #[test]
    fn suggestions() {
        let keys = ["restart", "restart-delay", "exec", "environment"];
        assert_eq!(did_you_mean("restrat", keys), Some("restart"));
        assert_eq!(did_you_mean("enviroment", keys), Some("environment"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }
}
