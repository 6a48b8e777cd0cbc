//! Bringing the loopback interface up: a new network namespace, and a machine booted by corrald
//! as PID 1, start with `lo` down (systemd does the same at boot).

use std::mem::MaybeUninit;

use nix::errno::Errno;

/// Sets `IFF_UP` on `lo` of the calling process's network namespace. Returns 0, or -1 with
/// `errno` set. Async-signal-safe (raw syscalls, no allocation): the spawn child uses it.
///
/// # Safety
/// Plain syscalls on a stack buffer; safe to call anywhere, `unsafe` only for the child's
/// benefit of being explicit about what it runs.
pub(crate) unsafe fn set_loopback_up() -> libc::c_int {
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return -1;
        }
        let mut ifr: libc::ifreq = MaybeUninit::zeroed().assume_init();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut rc = libc::ioctl(s, libc::SIOCGIFFLAGS as _, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(s, libc::SIOCSIFFLAGS as _, &ifr);
        }
        let errno = *libc::__errno_location();
        libc::close(s);
        *libc::__errno_location() = errno;
        if rc < 0 { -1 } else { 0 }
    }
}

/// Brings `lo` up in the caller's network namespace.
pub fn loopback_up() -> Result<(), Errno> {
    // SAFETY: see set_loopback_up; plain syscalls on a local buffer.
    match unsafe { set_loopback_up() } {
        0 => Ok(()),
        _ => Err(Errno::last()),
    }
}
