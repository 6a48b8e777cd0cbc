//! `verify --host`: the checks that depend on the machine — users and groups exist, programs
//! and directories exist, io-max devices are block devices. Plain `verify` skips these so a unit
//! can be checked on a machine other than the one it will run on.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{Group, User};

use super::diag::{Diagnostic, Location};
use super::model::{Ident, Output, Unit};

/// Problems with `unit` on this machine.
pub fn check(unit: &Unit) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let at = Location::file(unit.files.first().map_or(Path::new(""), |p| p.as_path()));
    let mut err = |key: &str, msg: String| {
        out.push(Diagnostic::error(at.clone(), Some(key.to_string()), msg));
    };
    for io in &unit.resources.io_max {
        match std::fs::metadata(&io.device) {
            Ok(m) if m.file_type().is_block_device() => {}
            Ok(_) => err(
                "[resources] io-max",
                format!("{} is not a block device", io.device.display()),
            ),
            Err(e) => err(
                "[resources] io-max",
                format!("{}: {e}", io.device.display()),
            ),
        }
    }
    let Some(s) = &unit.service else { return out };
    let exe = Path::new(&s.exec[0]);
    match std::fs::metadata(exe) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
        Ok(_) => err(
            "[service] exec",
            format!("{} is not an executable file", exe.display()),
        ),
        Err(e) => err("[service] exec", format!("{}: {e}", exe.display())),
    }
    if let Some(Ident::Name(n)) = &s.user
        && !matches!(User::from_name(n), Ok(Some(_)))
    {
        err("[service] user", format!("no user {n:?} on this machine"));
    }
    if let Some(Ident::Name(n)) = &s.group
        && !matches!(Group::from_name(n), Ok(Some(_)))
    {
        err("[service] group", format!("no group {n:?} on this machine"));
    }
    if !s.working_directory.is_dir() {
        err(
            "[service] working-directory",
            format!("{} is not a directory", s.working_directory.display()),
        );
    }
    for (key, o) in [
        ("[service] stdout", &s.stdout),
        ("[service] stderr", &s.stderr),
    ] {
        if let Output::File(p) = o
            && !p.parent().is_some_and(Path::is_dir)
        {
            err(
                key,
                format!("the directory of {} does not exist", p.display()),
            );
        }
    }
    let ns = &s.namespaces;
    if let Some(root) = &ns.root
        && !root.is_dir()
    {
        err(
            "[namespaces] root",
            format!("{} is not a directory", root.display()),
        );
    }
    for b in &ns.bind {
        if !b.source.exists() {
            err(
                "[namespaces] bind",
                format!("source {} does not exist", b.source.display()),
            );
        }
    }
    out
}
