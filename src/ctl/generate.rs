//! Shell completions and man pages, generated from the same clap definition ([`super::Cli`])
//! that the binary parses, so they can't drift from the real command line.
//!
//! - `corralctl completions bash|zsh|fish` (also `elvish`, `powershell`) prints a completion
//!   script: packagers install it as e.g.
//!   `/usr/share/bash-completion/completions/corralctl`.
//! - `corralctl man` (hidden: it is for packagers, not users) prints `corralctl(1)` as roff;
//!   `corralctl man --dir DIR` writes `corralctl.1` and one `corralctl-VERB.1` per command
//!   (the pages the SUBCOMMANDS section of `corralctl(1)` refers to).
//!
//! Both are rendered into memory first: clap's generators panic on a failed write (a closed
//! pipe), and a broken pipe should be an error, not a panic.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// The name the scripts and pages use.
const BIN: &str = "corralctl";

/// The command as documentation sees it: the built-in `help` verb is not a command of ours.
fn command() -> clap::Command {
    Cli::command().bin_name(BIN).disable_help_subcommand(true)
}

/// The completion script for `shell`.
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut buf);
    buf
}

/// `corralctl(1)`, as roff.
pub fn man_page() -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(command())
        .manual("corral")
        .render(&mut buf)?;
    Ok(buf)
}

/// Writes `corralctl.1` and `corralctl-VERB.1` for every visible command into `dir` (created
/// if missing); returns the files written.
pub fn man_pages_to(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = command();
    cmd.build();
    let mut written = Vec::new();
    let pages = std::iter::once(cmd.clone()).chain(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect::<Vec<_>>(),
    );
    for page in pages {
        let man = clap_mangen::Man::new(page).manual("corral");
        let path = dir.join(man.get_filename());
        let mut text = Vec::new();
        man.render(&mut text)?;
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes generated text to `out`.
pub fn emit(out: &mut impl Write, text: &[u8]) -> io::Result<()> {
    out.write_all(text)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_verb_is_in_the_completions_and_the_man_page() {
        let bash = String::from_utf8(completions(Shell::Bash)).expect("utf-8");
        let man = String::from_utf8(man_page().expect("man page")).expect("utf-8");
        for sub in Cli::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
        {
            let name = sub.get_name();
            assert!(bash.contains(name), "{name} missing from the bash script");
            assert!(
                man.contains(&format!("corralctl\\-{}", name.replace('-', "\\-"))),
                "{name} not in man"
            );
        }
    }

    #[test]
    fn subcommand_pages_are_named_after_their_parent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = man_pages_to(dir.path()).expect("pages");
        let names: Vec<String> = files
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        assert!(names.contains(&"corralctl.1".to_string()), "{names:?}");
        assert!(
            names.contains(&"corralctl-status.1".to_string()),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let status = std::fs::read_to_string(dir.path().join("corralctl-status.1")).unwrap();
        assert!(status.contains(".SH SYNOPSIS"), "{status}");
    }
}
