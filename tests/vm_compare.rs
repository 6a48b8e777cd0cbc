//! A smoke run of the corral-or-systemd comparison (`tests/common/compare.rs`): one boot with
//! each as PID 1, 20 autostarted `/bin/sleep` services and a unit ordered after them, then 20
//! `run --wait /bin/true` calls; the figures are printed, and only what must hold whatever the
//! machine's load is asserted: all 20 services run when the unit after them does, and every call
//! succeeds. The measuring run is `scripts/bench --vm` (release
//! binaries, three boots each, 50 calls): its figures are in docs/PERFORMANCE.md.

#[path = "common/compare.rs"]
mod compare;
#[path = "common/skip.rs"]
mod skip;
#[path = "common/vm.rs"]
mod vm;

use std::path::Path;

use compare::Init;

/// `run` calls per boot: enough for a figure, few enough for CI's budget under TCG.
const RUNS: usize = 20;

#[test]
fn corral_and_systemd_boot_the_same_services() {
    if !compare::systemd_available() {
        skip::skipped("systemd 252 is not installed (/lib/systemd/systemd, systemd-run)");
        return;
    }
    let (corrald, corralctl) = (
        Path::new(env!("CARGO_BIN_EXE_corrald")),
        Path::new(env!("CARGO_BIN_EXE_corralctl")),
    );
    let mut boots = Vec::new();
    for init in [Init::Corral, Init::Systemd] {
        let image = compare::image(init, corrald, corralctl, RUNS);
        let boot = compare::boot(init, &image);
        assert_eq!(
            boot.sleeps,
            compare::SERVICES,
            "{}: the unit ordered after the services ran before all of them had exec'ed",
            init.name()
        );
        assert_eq!(boot.runs, RUNS);
        assert_eq!(boot.failed, 0, "{}: run calls failed", init.name());
        // Sanity only: the guest is emulated and the host shared.
        assert!(
            boot.to_ready < std::time::Duration::from_secs(120),
            "{}: {boot:?}",
            init.name()
        );
        boots.push((init, boot));
    }
    println!("corral vs systemd 252 in the same VM (debug corrald; one boot each):");
    for (init, b) in &boots {
        println!(
            "  {:12} /init → {} services up {:>6.0} ms · PID 1 CPU per `run` {:>5.1} ms",
            init.name(),
            compare::SERVICES,
            b.to_ready.as_secs_f64() * 1000.0,
            b.cpu_per_run().as_secs_f64() * 1000.0
        );
    }
}
