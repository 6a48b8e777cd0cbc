//! The files and directories corrald creates, each with its mode whatever the umask it
//! inherited (DESIGN §4): runtime, unit, drop-in and log directories 0755 ([`DIR_MODE`]); the
//! state file and transient unit files 0600 ([`PRIVATE_MODE`]); drop-ins 0644
//! ([`DROPIN_MODE`]); log files 0640 ([`LOG_MODE`]).
//!
//! The umask only ever takes bits away: a directory or file is created with its mode (so it is
//! never, even for a moment, more open than that) and then given the whole mode (`chmod`,
//! `fchmod`), so a umask of 077 doesn't make a 0700 runtime directory nobody else can read, and
//! one of 000 doesn't make a world-writable one in which any user adds a drop-in with `exec`.
//! Files are written through a temporary file created exclusively (`O_EXCL`, never through a
//! symlink) and renamed into place. What exists already keeps its mode: corrald only decides
//! the modes of what it creates.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Directories: the runtime directory, `RUNTIME/units`, drop-in directories, the log directory.
pub const DIR_MODE: u32 = 0o755;
/// The state file and transient unit files (a unit's text may hold secrets).
pub const PRIVATE_MODE: u32 = 0o600;
/// Drop-ins corrald writes (`50-limits.toml`, `50-autostart.toml`…).
pub const DROPIN_MODE: u32 = 0o644;
/// Service log files.
pub const LOG_MODE: u32 = 0o640;

/// Creates `dir` and every missing parent, each with `mode` exactly; what exists is left as it
/// is.
pub fn create_dir_all(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent, mode)?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)),
        // Made meanwhile by someone else (a relay and the loop, say): theirs to keep.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` with `text`, with `mode` exactly, through a temporary file beside it and
/// `rename`; makes the directory (with [`DIR_MODE`]) when it is missing. Readers see the old
/// content or the new, never a mix.
pub fn write_file(path: &Path, text: impl AsRef<[u8]>, mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or(path.as_os_str()));
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    // The directory is made when the write finds it missing, and a temporary file left by a
    // write that was cut short (a crash: ours, in a directory of ours) removed when it is in
    // the way — not looked for before every write (per transient start and state file write).
    let mut file = match create_new(&tmp, mode) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dir_all(dir, DIR_MODE)?;
            create_new(&tmp, mode)?
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(&tmp)?;
            create_new(&tmp, mode)?
        }
        other => other?,
    };
    let written = file.write_all(text.as_ref());
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// A new file at `path` (never an existing one, never through a symlink), with `mode` exactly.
fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    create_exclusive(OpenOptions::new().write(true), path, mode)
}

/// A new file at `path` opened as `how` says (for writing or appending), never an existing one
/// and never through a symlink, with `mode` exactly whatever the umask.
fn create_exclusive(how: &mut OpenOptions, path: &Path, mode: u32) -> io::Result<File> {
    let file = how
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Opens `path` for appending; a file it creates gets `mode` exactly (and its directory,
/// when missing, [`DIR_MODE`]), an existing one keeps its own. Never through a symlink.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let existing = || {
        OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    let fresh = || create_exclusive(OpenOptions::new().append(true), path, mode);
    match existing() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    match fresh() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                create_dir_all(dir, DIR_MODE)?;
            }
            fresh()
        }
        // Created meanwhile by another writer.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => existing(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    // The umask is the process's, shared by every test thread: these tests only check modes
    // that a umask of 022 (or any) would otherwise change or leave; tests/files_umask.rs runs
    // corrald itself with a umask of 000.

    #[test]
    fn directories_get_their_mode_and_existing_ones_keep_theirs() {
        let top = tempfile::tempdir().unwrap();
        let old = top.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o700)).unwrap();
        let deep = old.join("a/b/c");
        create_dir_all(&deep, 0o755).unwrap();
        for d in ["old/a", "old/a/b", "old/a/b/c"] {
            assert_eq!(mode(&top.path().join(d)), 0o755, "{d}");
        }
        assert_eq!(mode(&old), 0o700);
        create_dir_all(&deep, 0o700).unwrap();
        assert_eq!(mode(&deep), 0o755, "an existing directory is left alone");
        // Modes the umask would cut are whole.
        let wide = top.path().join("wide");
        create_dir_all(&wide, 0o777).unwrap();
        assert_eq!(mode(&wide), 0o777);
    }

    #[test]
    fn written_files_get_their_mode_through_a_fresh_temporary_file() {
        let top = tempfile::tempdir().unwrap();
        let path = top.path().join("units/x.service.d/50-limits.toml");
        write_file(&path, "one", 0o666).unwrap();
        assert_eq!(mode(&path), 0o666, "bits the umask would take are set");
        assert_eq!(mode(path.parent().unwrap()), DIR_MODE);
        assert_eq!(mode(&top.path().join("units")), DIR_MODE);
        write_file(&path, "two", PRIVATE_MODE).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(mode(&path), PRIVATE_MODE);
        // A leftover temporary file (or a symlink planted as one) is replaced, not written
        // through.
        let victim = top.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let tmp = path.parent().unwrap().join(".50-limits.toml.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_file(&path, "three", DROPIN_MODE).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three");
        assert!(!tmp.exists());
    }

    #[test]
    fn appended_files_get_their_mode_when_created_only() {
        let top = tempfile::tempdir().unwrap();
        let log = top.path().join("log/a.service.log");
        let mut f = open_append(&log, 0o646).unwrap();
        f.write_all(b"a\n").unwrap();
        assert_eq!(mode(&log), 0o646);
        assert_eq!(mode(&top.path().join("log")), DIR_MODE);
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut f = open_append(&log, LOG_MODE).unwrap();
        f.write_all(b"b\n").unwrap();
        assert_eq!(mode(&log), 0o600, "an existing file keeps its mode");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\n");
        // Never through a symlink.
        let link = top.path().join("log/link.log");
        std::os::unix::fs::symlink(top.path().join("elsewhere"), &link).unwrap();
        assert!(open_append(&link, LOG_MODE).is_err());
        assert!(!top.path().join("elsewhere").exists());
    }
}
