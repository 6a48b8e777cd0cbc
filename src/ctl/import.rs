//! `corralctl import [-o DIR] FILE…`: the importer ([`crate::import`]) on the command line.
//! Converted units go to stdout (each with its name in its first comment line), or into DIR as
//! `NAME.KIND.toml`; warnings and errors go to stderr, then a summary. Success means every file
//! converted (warnings allowed).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::import::{self, Host};

/// What an import run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub converted: usize,
    pub failed: usize,
    pub warnings: usize,
}

/// Imports `files`, writing units to `out_dir` (created if missing) or to `out`.
pub fn run(
    files: &[PathBuf],
    out_dir: Option<&Path>,
    host: &Host,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<Summary> {
    if let Some(dir) = out_dir {
        std::fs::create_dir_all(dir)?;
    }
    let mut summary = Summary::default();
    let mut printed = 0;
    for path in files {
        match import::import_file(path, host) {
            Ok(c) => {
                for w in &c.warnings {
                    writeln!(err, "{w}")?;
                }
                summary.warnings += c.warnings.len();
                summary.converted += 1;
                match out_dir {
                    Some(dir) => {
                        let target = dir.join(c.file_name());
                        std::fs::write(&target, &c.toml).map_err(|e| {
                            std::io::Error::new(e.kind(), format!("{}: {e}", target.display()))
                        })?;
                        writeln!(out, "{}", target.display())?;
                    }
                    None => {
                        if printed > 0 {
                            writeln!(out)?;
                        }
                        write!(out, "{}", c.toml)?;
                        printed += 1;
                    }
                }
            }
            Err(f) => {
                for w in &f.warnings {
                    writeln!(err, "{w}")?;
                }
                writeln!(err, "{}", f.error)?;
                summary.warnings += f.warnings.len();
                summary.failed += 1;
            }
        }
    }
    writeln!(
        err,
        "{} of {} file{} converted, {} warning{}",
        summary.converted,
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        summary.warnings,
        if summary.warnings == 1 { "" } else { "s" },
    )?;
    Ok(summary)
}
