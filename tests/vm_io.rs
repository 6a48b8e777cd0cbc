//! io-max proven in a real kernel, with corrald as PID 1 of a QEMU VM and two raw virtio disks
//! (virtio_pci and virtio_blk loaded through `/etc/modules-load.d`):
//!
//! - `/dev/vda` (64 MiB, one MBR partition `/dev/vda1` written here): `throttled.service` has
//!   `io-max = [{ device = "/dev/vda", wbps = "2M" }]` and writes the disk with `dd
//!   oflag=direct`; its rate, from its cgroup's `io.stat` over guest uptime, is at most the limit
//!   + 10 % (and at least half of it); its `io.max` reads `MAJ:MIN rbps=max wbps=2097152
//!   riops=max wiops=max` with vda's number;
//! - `part.service` names the partition (`/dev/vda1`, 3M): io.max carries vda's number (the
//!   kernel takes no partitions there) and direct writes to the partition are held at 3 MiB/s;
//! - `control.service` runs the same writer with no limit on `/dev/vdb`: it is much faster,
//!   so the limit is what holds the other two.
//!
//! Units and the check script: `tests/vm/io/`; `tests/vm/io/root/` is copied to the guest's `/`.

#[path = "common/vm.rs"]
mod vm;

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

const DISK_SIZE: u64 = 64 << 20;

/// Where `/dev/vda1` starts, in 512-byte sectors (1 MiB, as partitioning tools align).
const PARTITION_START: u64 = 2048;

#[test]
fn io_max_holds_in_the_guest_kernel() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vm/io");
    let kernel = vm::Kernel::host();
    let mut overlay = vm::Initramfs::new();
    overlay
        .binary(env!("CARGO_BIN_EXE_corrald"), "/init")
        .dir("/etc/corral/units", 0o755)
        .dir("/var/log/corral", 0o755)
        .kernel_modules(kernel, &["virtio_pci", "virtio_blk"]);
    overlay.copy_tree(dir.join("root"), "/");
    overlay.checks_dir(&dir, "/etc/corral/units");
    let overlay = overlay.build();

    let vda = partitioned_disk();
    let vdb = tempfile::NamedTempFile::new().expect("creating the control disk");
    vdb.as_file()
        .set_len(DISK_SIZE)
        .expect("sizing the control disk");

    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .disk(vda.path())
        .disk(vdb.path())
        .timeout(Duration::from_secs(90))
        .run_reported("io");
    out.assert_passed(&[
        "io-max-file",
        "io-max-partition",
        "io-max-wbps",
        "io-max-partition-wbps",
        "io-unthrottled",
    ]);
    out.assert_all_passed();
    if !out.console.contains("every unit stopped") {
        out.fail("corrald did not stop every unit before powering off");
    }
    // The writers started 1 MiB in: the partition table they did not touch is still there.
    let mut sector = [0u8; 512];
    vda.as_file()
        .read_exact_at(&mut sector, 0)
        .expect("reading the disk back");
    assert_eq!(sector[510..], [0x55, 0xAA], "the MBR was overwritten");
    assert_eq!(
        out.exit,
        vm::Exit::PowerOff,
        "expected a clean power-off, got {}",
        out.exit
    );
}

/// A raw disk of [`DISK_SIZE`] with an MBR holding one Linux partition from 1 MiB to the end.
fn partitioned_disk() -> tempfile::NamedTempFile {
    let disk = tempfile::NamedTempFile::new().expect("creating the disk image");
    disk.as_file()
        .set_len(DISK_SIZE)
        .expect("sizing the disk image");
    let sectors = u32::try_from(DISK_SIZE / 512 - PARTITION_START).expect("a small disk");
    let start = u32::try_from(PARTITION_START).expect("a small offset");
    let mut mbr = [0u8; 512];
    // Partition entry 1 (16 bytes at 446): not bootable, CHS fields "use LBA", type 0x83
    // (Linux), first sector and sector count as little-endian LBAs; the kernel reads the LBAs.
    let entry = &mut mbr[446..462];
    entry[0] = 0x00;
    entry[1..4].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    entry[4] = 0x83;
    entry[5..8].copy_from_slice(&[0xFE, 0xFF, 0xFF]);
    entry[8..12].copy_from_slice(&start.to_le_bytes());
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;
    disk.as_file()
        .write_all_at(&mbr, 0)
        .expect("writing the partition table");
    disk
}
