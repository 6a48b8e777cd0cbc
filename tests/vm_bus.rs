//! corrald as PID 1 and the system bus, in a VM: no bus exists when corrald starts; it starts
//! `dbus-daemon` as a unit, joins the bus as `org.corral1` once the socket appears (inotify, no
//! timer), answers root's calls through the bus, lets uid 65534 read and refuses it every change
//! (judged from the bus daemon's credentials of the sender), and joins again when the bus is
//! restarted. `corralctl` as uid 65534 falls back to the bus.

#[path = "common/bus.rs"]
mod bus;
#[path = "common/skip.rs"]
mod skip;
#[path = "common/vm.rs"]
mod vm;

use std::path::Path;

#[test]
fn corrald_joins_the_system_bus_in_the_guest() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/vm/bus");
    if let Some(why) = bus::missing_guest_tools() {
        skip::skipped(why);
        return;
    }
    let mut overlay = vm::Initramfs::new();
    overlay.system_bus(&bus::GUEST_TOOLS, &bus::guest_system_config());
    overlay.checks_dir(&dir, "/etc/corral/units");
    let overlay = overlay.build();
    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .timeout(std::time::Duration::from_secs(180))
        .run_reported("bus");
    out.assert_passed(&[
        "bus-joined",
        "bus-root-starts",
        "bus-nobody",
        "bus-rejoined",
    ]);
    out.assert_all_passed();
    assert!(
        matches!(out.exit, vm::Exit::PowerOff),
        "expected a clean power-off, got {}",
        out.exit
    );
}
