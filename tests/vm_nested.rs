//! corrald under corrald in a VM: a `delegate = true` service is a second corrald in
//! delegated mode with its own slices and services; the nested limits hold; SIGKILL of the
//! nested daemon and its restart by the outer one re-adopt every nested service with the
//! same PIDs; limit and stop keep working on them; nothing leaks.

#[path = "common/vm.rs"]
mod vm;

use std::path::Path;

#[test]
fn nested_corrald_in_the_guest_kernel() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/nested");
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(env!("CARGO_BIN_EXE_corrald"), "/init")
        .binary(env!("CARGO_BIN_EXE_corrald"), "/usr/bin/corrald")
        .binary(env!("CARGO_BIN_EXE_corralctl"), "/usr/bin/corralctl")
        .dir("/var/log/corral", 0o755);
    overlay.checks_dir(&dir, "/etc/corral/units");
    overlay.checks_dir(dir.join("inner"), "/etc/corral/inner");
    let overlay = overlay.build();
    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .timeout(std::time::Duration::from_secs(180))
        .run_reported("nested");
    out.assert_passed(&[
        "nested-tree",
        "nested-limit",
        "nested-readopt",
        "nested-limit-after",
        "nested-stop",
        "nothing-leaks",
    ]);
    out.assert_all_passed();
    assert!(matches!(out.exit, vm::Exit::PowerOff), "{}", out.exit);
}
