//! DESIGN §4 "reading contents is root's" and issue 13's "nothing can stall the loop", in the
//! guest with corrald as PID 1 and the system bus, written as an attacker with uid 65534
//! would try (busctl and corralctl through `setpriv --reuid 65534`): a 0600 drop-in holding
//! `environment = { API_TOKEN = … }` is never returned, nor a root service's log, nor its
//! processes' command lines past `hidepid`, nor a dry run of limits (which stats paths as
//! root); the service that runs as uid 65534 gets its own log. Then uid 65534 floods the bus
//! with the largest `GetUnitLog` the bounds allow (10 000 lines of its own log) and the
//! issue's 20 000-entry `DiffUnitLimits`, while root times `corralctl list`: the figures are
//! printed, and the check fails only if a list fails or takes 10 s (it took minutes before).

#[path = "common/bus.rs"]
mod bus;
#[path = "common/skip.rs"]
mod skip;
#[path = "common/vm.rs"]
mod vm;

use std::path::Path;

#[test]
fn an_unprivileged_user_on_the_bus_reads_no_contents_and_stalls_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/vm/bus-access");
    if let Some(why) = bus::missing_guest_tools() {
        skip::skipped(why);
        return;
    }
    let mut overlay = vm::Initramfs::new();
    overlay.system_bus(&bus::GUEST_TOOLS, &bus::guest_system_config());
    overlay
        .dir("/etc/corral/units/chatty.service.d", 0o755)
        .file(
            "/etc/corral/units/chatty.service.d/10-token.toml",
            "[service]\nenvironment = { API_TOKEN = \"tok-3f9a1c7e\" }\n",
            0o600,
        );
    overlay.checks_dir(&dir, "/etc/corral/units");
    let overlay = overlay.build();
    let out = vm::Vm::new(vm::base_image())
        .initrd(overlay.path())
        .timeout(std::time::Duration::from_secs(300))
        .run_reported("bus-access");
    if let Some(c) = out.check("flood-root-list") {
        println!("{}", c.detail);
    }
    out.assert_passed(&[
        "access-files",
        "access-log",
        "access-processes",
        "access-diff",
        "access-own-log",
        "flood-root-list",
    ]);
    out.assert_all_passed();
    assert!(
        matches!(out.exit, vm::Exit::PowerOff),
        "expected a clean power-off, got {}",
        out.exit
    );
}
