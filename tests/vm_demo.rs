//! The README's main job: a VM with corrald as PID 1 running the example units of `units/`,
//! where `demo.service` shows them with `corralctl list` and `status`, prints the limits the
//! kernel holds and measures one (a CPU hog capped by its slice). `scripts/demo` runs this test
//! with its output shown; `scripts/demo --shell` boots the same image and leaves a shell.
//!
//! The image it boots is kept in `target/vm-demo/` (`initrd.img`, `vmlinux.path`) for
//! `scripts/demo --shell`.

#[path = "common/vm.rs"]
mod vm;

use std::io::Write;
use std::path::Path;

#[test]
fn demo_boots_the_example_units() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kernel = vm::Kernel::host();
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(env!("CARGO_BIN_EXE_corrald"), "/init")
        .binary(env!("CARGO_BIN_EXE_corralctl"), "/usr/bin/corralctl")
        .binary("/usr/bin/systemd-notify", "/usr/bin/systemd-notify")
        .kernel_modules(kernel, &["virtio_pci", "virtio_blk"])
        .file(
            "/etc/modules-load.d/virtio.conf",
            "virtio_pci\nvirtio_blk\n",
            0o644,
        )
        .file("/etc/hostname", "corral-demo\n", 0o644)
        .file("/srv/www/index.html", "<h1>corral demo</h1>\n", 0o644)
        .dir("/var/log/corral", 0o755)
        .copy(root.join("tests/vm/demo/demo.sh"), "/demo/demo.sh")
        .copy(
            root.join("tests/vm/demo/demo.service.toml"),
            "/etc/corral/units/demo.service.toml",
        );
    for entry in walk(&root.join("units")) {
        let rel = entry
            .strip_prefix(root.join("units"))
            .expect("under units/");
        overlay.copy(&entry, Path::new("/etc/corral/units").join(rel));
    }
    let demo_dir = root.join("target/vm-demo");
    std::fs::create_dir_all(&demo_dir).expect("target/vm-demo");
    overlay.build_to(demo_dir.join("overlay.img"));
    // For `scripts/demo --shell`: one initrd (images concatenate) and the kernel's path.
    let mut initrd = std::fs::read(vm::base_image()).expect("base image");
    initrd.extend(std::fs::read(demo_dir.join("overlay.img")).expect("overlay image"));
    std::fs::write(demo_dir.join("initrd.img"), initrd).expect("target/vm-demo/initrd.img");
    let _ = std::fs::write(
        demo_dir.join("vmlinux.path"),
        kernel.vmlinux().display().to_string(),
    );

    let mut disk = tempfile::NamedTempFile::new().expect("demo disk");
    disk.as_file()
        .set_len(64 << 20)
        .expect("sizing the demo disk");
    disk.flush().expect("demo disk");
    let out = vm::Vm::new(vm::base_image())
        .initrd(demo_dir.join("overlay.img"))
        .disk(disk.path())
        .timeout(std::time::Duration::from_secs(180))
        .run_reported("demo");
    out.assert_passed(&[
        "slice-cpu-cap",
        "active-web.service",
        "active-metrics.service",
        "active-batch-crunch.service",
        "active-logrotate.service",
        "web-serves",
    ]);
    out.assert_all_passed();
    for want in [
        "corralctl list",
        "web.service",
        "apps-batch.slice",
        "Main PID:",
    ] {
        if !out.console.contains(want) {
            out.fail(&format!("the demo did not show {want:?}"));
        }
    }
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("readable dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}
