//! A flood of sd_notify datagrams, for the VM test of the manager's bounded work
//! (`tests/vm_engine.rs`): run as a `notify` service, it says `READY=1`, then for the given
//! number of seconds sends `STATUS=` lines to `$NOTIFY_SOCKET` as fast as the daemon takes
//! them, from its main process (accepted) and from a child it starts (refused: not the main
//! process). Each process writes how many datagrams it sent to `/tmp/flood.<pid>`.
//!
//! `notify_flood [SECONDS]`; `notify_flood --child SECONDS` is the child.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

fn flood(socket: &str, seconds: u64) -> u64 {
    let Ok(sock) = UnixDatagram::unbound() else {
        return 0;
    };
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut sent = 0u64;
    while Instant::now() < end {
        // Blocking: a full socket queue holds the sender, as the daemon reads at its pace.
        if sock
            .send_to(format!("STATUS=flood {sent}").as_bytes(), socket)
            .is_ok()
        {
            sent += 1;
        }
    }
    sent
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Ok(socket) = std::env::var("NOTIFY_SOCKET") else {
        eprintln!("notify_flood: no NOTIFY_SOCKET");
        std::process::exit(2);
    };
    let (child, seconds) = match args.get(1).map(String::as_str) {
        Some("--child") => (true, args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10)),
        Some(s) => (false, s.parse().unwrap_or(10)),
        None => (false, 10),
    };
    let mut helper = None;
    if !child {
        if let Ok(sock) = UnixDatagram::unbound() {
            let _ = sock.send_to(b"READY=1", &socket);
        }
        helper = std::process::Command::new(&args[0])
            .args(["--child", &seconds.to_string()])
            .spawn()
            .ok();
    }
    let sent = flood(&socket, seconds);
    let _ = std::fs::write(
        format!("/tmp/flood.{}", std::process::id()),
        format!("{sent}\n"),
    );
    if let Some(mut h) = helper {
        let _ = h.wait();
    }
    // Stay up, as a service that is done talking.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
