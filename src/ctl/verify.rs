//! `corralctl verify FILE…`: loads the files as one set, exactly as the daemon would, and prints
//! every diagnostic (errors and warnings) in `FILE:LINE:COL: error: [table] key: message` form.

use std::io::Write;
use std::path::PathBuf;

use crate::unit::{self, Diagnostic};

/// What a verify run found.
#[derive(Debug)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
    pub units: usize,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
}

/// Checks `files`; with `host`, also against this machine.
pub fn verify(files: &[PathBuf], host: bool) -> Report {
    let set = unit::load_files(files);
    let mut diagnostics = set.diagnostics.clone();
    if host {
        for u in set.loaded().filter(|u| !u.files.is_empty()) {
            diagnostics.extend(unit::host::check(u));
        }
    }
    diagnostics.sort_by(|a, b| a.location.cmp(&b.location));
    let units = set.units.values().filter(|e| !e.files.is_empty()).count();
    Report { diagnostics, units }
}

/// Prints the report: each problem on stderr, a summary on stdout.
pub fn print(report: &Report, out: &mut impl Write, err: &mut impl Write) -> std::io::Result<()> {
    for d in &report.diagnostics {
        writeln!(err, "{d}")?;
    }
    let warnings = report.diagnostics.len() - report.errors();
    writeln!(
        out,
        "{} unit{} checked: {} error{}, {} warning{}",
        report.units,
        plural(report.units),
        report.errors(),
        plural(report.errors()),
        warnings,
        plural(warnings)
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
