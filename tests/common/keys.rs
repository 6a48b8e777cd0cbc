//! Ctrl-alt-del pressed in a test VM when the guest asks for it (tests/vm_boot.rs,
//! tests/vm_panic.rs): the guest writes a line `ctrl-alt-del` to its second serial port, and
//! [`KeyPresser`] sends `sendkey ctrl-alt-delete` to QEMU's monitor. Include with
//! `#[path = "common/keys.rs"] mod keys;` beside `common/vm.rs` (as `vm`).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::vm;

/// Presses ctrl-alt-del in the guest when it asks: the guest writes a line `ctrl-alt-del` to
/// its second serial port (`/dev/ttyS1`, a socket here), and this sends `sendkey
/// ctrl-alt-delete` to QEMU's human monitor (another socket). QEMU connects to both sockets as
/// a client when it starts.
pub struct KeyPresser {
    dir: tempfile::TempDir,
    thread: JoinHandle<io::Result<usize>>,
    /// Set once QEMU has exited: a QEMU that never connected never will.
    done: Arc<AtomicBool>,
}

impl KeyPresser {
    /// Listens on the two sockets, for as long as it takes the VM to get its turn (other VMs
    /// may hold the boot lock for minutes) and to run.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("creating a directory for QEMU's sockets");
        let serial = UnixListener::bind(dir.path().join("ttyS1.sock")).expect("binding ttyS1");
        let monitor =
            UnixListener::bind(dir.path().join("monitor.sock")).expect("binding the monitor");
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let done = done.clone();
            thread::spawn(move || press_on_request(&serial, &monitor, &done))
        };
        KeyPresser { dir, thread, done }
    }

    /// `vm` with its second serial port and its monitor on the sockets.
    pub fn attach(&self, vm: vm::Vm) -> vm::Vm {
        let socket = |name: &str| {
            let path = self.dir.path().join(name);
            let path = path
                .to_str()
                .expect("UTF-8 temporary paths")
                .replace(',', ",,");
            format!("socket,id={},path={path}", name.trim_end_matches(".sock"))
        };
        vm.qemu_arg("-chardev")
            .qemu_arg(socket("ttyS1.sock"))
            .qemu_arg("-serial")
            .qemu_arg("chardev:ttyS1")
            .qemu_arg("-chardev")
            .qemu_arg(socket("monitor.sock"))
            .qemu_arg("-mon")
            .qemu_arg("chardev=monitor,mode=readline")
    }

    /// How many times ctrl-alt-del was pressed, once QEMU has exited.
    pub fn presses(self) -> io::Result<usize> {
        self.done.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the key-pressing thread panicked")))
    }
}

fn press_on_request(
    serial: &UnixListener,
    monitor: &UnixListener,
    done: &AtomicBool,
) -> io::Result<usize> {
    let serial = accept_until(serial, done)?;
    let mut monitor = accept_until(monitor, done)?;
    let mut presses = 0;
    // Ends when QEMU exits (or is killed) and closes the socket.
    for line in BufReader::new(serial).lines() {
        if line?.trim() == "ctrl-alt-del" {
            monitor.write_all(b"sendkey ctrl-alt-delete\n")?;
            presses += 1;
        }
    }
    Ok(presses)
}

/// Accepts one connection, or fails once `done` is set (QEMU exited without connecting).
fn accept_until(listener: &UnixListener, done: &AtomicBool) -> io::Result<UnixStream> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !done.load(Ordering::SeqCst) => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "QEMU never connected to its sockets",
                ));
            }
            Err(e) => return Err(e),
        }
    }
}
