//! `file:` outputs are created with mode 0640 whatever the umask the daemon inherited
//! (DESIGN §4). In a test binary of its own: the umask is process-wide.

use std::os::unix::fs::PermissionsExt;

use corral::process::open_output;

#[test]
fn new_files_are_0640_whatever_the_umask() {
    let dir = std::env::temp_dir().join(format!("corral-output-umask-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for umask in [0o000, 0o077, 0o022, 0o777] {
        let path = dir.join(format!("out-{umask:03o}.log"));
        // SAFETY: the only test in this binary; umask has no failure mode.
        let old = unsafe { libc::umask(umask) };
        let fd = open_output(&path);
        unsafe { libc::umask(old) };
        drop(fd.unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o640, "umask {umask:03o}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
