//! Shell completions and man pages come from corralctl's own clap definition: the real binary
//! prints them, and they name every command there is (`corral::ctl::Cli` is the list).

use assert_cmd::Command;
use clap::CommandFactory;
use corral::ctl::Cli;

/// Every command a user can type (clap's own `help` and hidden commands aside).
fn verbs() -> Vec<String> {
    Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect()
}

fn ctl(args: &[&str]) -> String {
    let out = Command::cargo_bin("corralctl")
        .expect("corralctl")
        .args(args)
        .output()
        .expect("running corralctl");
    assert!(
        out.status.success(),
        "corralctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn the_bash_completion_offers_every_command() {
    let script = ctl(&["completions", "bash"]);
    assert!(script.contains("complete -F _corralctl"), "{script}");
    let verbs = verbs();
    assert!(verbs.len() >= 14, "{verbs:?}");
    for verb in verbs {
        // The script's list of words after `corralctl`, and a case per command.
        assert!(
            script.contains(&format!("corralctl,{verb})")),
            "bash completion lacks {verb}"
        );
    }
    // Values come from the definition too: the shells `completions` takes.
    assert!(
        script.contains("bash elvish fish powershell zsh"),
        "{script}"
    );
}

#[test]
fn zsh_and_fish_scripts_are_generated_too() {
    let zsh = ctl(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef corralctl"), "{zsh}");
    let fish = ctl(&["completions", "fish"]);
    assert!(fish.contains("complete -c corralctl"), "{fish}");
    for verb in verbs() {
        assert!(zsh.contains(&format!("'{verb}:")), "zsh lacks {verb}");
        assert!(
            fish.contains(&format!("-a \"{verb}\"")),
            "fish lacks {verb}"
        );
    }
    let out = Command::cargo_bin("corralctl")
        .unwrap()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn the_man_page_has_name_synopsis_and_every_command() {
    let page = ctl(&["man"]);
    for section in [
        ".TH corralctl 1",
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH OPTIONS",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(section), "{section} missing:\n{page}");
    }
    assert!(page.contains("corralctl \\- Control the corral resource supervisor"));
    for verb in verbs() {
        // roff escapes the dash: `corralctl\-status(1)`.
        assert!(
            page.contains(&format!("corralctl\\-{}(1)", verb.replace('-', "\\-"))),
            "the man page lacks {verb}"
        );
    }
    // `man` itself is for packagers: hidden from help, the page and the completions' verbs.
    assert!(!page.contains("corralctl\\-man"), "{page}");
    assert!(!page.contains("corralctl\\-help"), "{page}");
}

#[test]
fn man_dir_writes_a_page_per_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listed = ctl(&["man", "--dir", dir.path().to_str().expect("utf-8 path")]);
    let mut expected: Vec<String> = verbs().iter().map(|v| format!("corralctl-{v}.1")).collect();
    expected.push("corralctl.1".into());
    expected.sort();
    let mut found: Vec<String> = std::fs::read_dir(dir.path())
        .expect("reading the man dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    found.sort();
    assert_eq!(found, expected);
    assert_eq!(listed.lines().count(), expected.len(), "{listed}");
    let top = std::fs::read_to_string(dir.path().join("corralctl-top.1")).unwrap();
    assert!(
        top.contains(".SH SYNOPSIS") && top.contains("\\-\\-delay"),
        "{top}"
    );
}
