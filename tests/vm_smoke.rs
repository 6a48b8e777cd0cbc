//! Smoke test of the QEMU VM harness (`tests/common/vm.rs`): boots the host kernel with a
//! busybox shell script as PID 1 and checks what every later VM test relies on — init is PID 1,
//! cgroup v2 offers the controllers corral drives, kernel modules load from the image, a virtio
//! disk is visible, and `vm-exit` hands the guest's exit code back to the test.

#[path = "common/vm.rs"]
mod vm;

use std::io::Write;

/// Written at the start of the test disk; the guest reads it back from `/dev/vda`.
const DISK_MARKER: &str = "corral-vm-smoke-disk";

const INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t cgroup2 cgroup2 /sys/fs/cgroup

check() { # check NAME PASS|FAIL [DETAIL…]
    echo "CORRAL-CHECK $*"
}

if [ "$$" = 1 ]; then check pid1 PASS; else check pid1 FAIL "init is pid $$"; fi

controllers=$(cat /sys/fs/cgroup/cgroup.controllers)
missing=
for want in memory cpu pids io cpuset; do
    case " $controllers " in *" $want "*) ;; *) missing="$missing $want" ;; esac
done
if [ -z "$missing" ]; then
    check cgroup2-controllers PASS "$controllers"
else
    check cgroup2-controllers FAIL "missing:$missing (have: $controllers)"
fi

if ! out=$(modprobe virtio_pci 2>&1 && modprobe virtio_blk 2>&1); then
    check virtio-disk FAIL "modprobe: $out"
else
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.2; done
    got=$(dd if=/dev/vda bs=$MARKER_LEN count=1 2>/dev/null)
    if [ "$got" = "$DISK_MARKER" ]; then
        check virtio-disk PASS "$(cat /sys/block/vda/size) sectors"
    else
        check virtio-disk FAIL "read '$got' from /dev/vda; $(ls /sys/block)"
    fi
fi

vm-exit 0
"#;

#[test]
fn vm_boots_busybox_init_and_reports_checks() {
    let kernel = vm::Kernel::host();

    // The shared base (busybox, users, vm-exit) plus a per-test overlay with /init and modules.
    let mut overlay = vm::Initramfs::new();
    overlay
        .file("/init", INIT, 0o755)
        .kernel_modules(kernel, &["virtio_pci", "virtio_blk"]);
    let overlay = overlay.build();

    let mut disk = tempfile::NamedTempFile::new().expect("creating the test disk");
    disk.write_all(DISK_MARKER.as_bytes())
        .expect("writing the test disk");
    disk.as_file()
        .set_len(1 << 20)
        .expect("sizing the test disk");

    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .disk(disk.path())
        .env("DISK_MARKER", DISK_MARKER)
        .env("MARKER_LEN", &DISK_MARKER.len().to_string())
        .run();

    eprintln!(
        "VM smoke boot: {:.2} s wall ({}), {} checks",
        out.wall.as_secs_f64(),
        out.exit,
        out.checks.len()
    );
    if out.timed_out() {
        out.fail("the VM timed out");
    }
    out.assert_passed(&["pid1", "cgroup2-controllers", "virtio-disk"]);
    out.assert_all_passed();
    out.assert_exit(0);
}
