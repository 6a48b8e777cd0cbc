//! Raw system calls the libc crate has no wrappers for: `openat2` (5.6), the mount API
//! (`open_tree`, `move_mount`, `fsopen`, `fsconfig`, `fsmount`: 5.2; `mount_setattr`: 5.12) and
//! `capget`/`capset`, with their constants from the kernel's uapi headers. Every function is
//! one `syscall(2)` on caller-provided memory: async-signal-safe, usable between clone and exec.
//! Each returns what the kernel returns (a descriptor or 0, or -1 with `errno` set).

use std::mem::size_of;

use libc::{c_char, c_int, c_uint, c_void};

/// `struct open_how` (`linux/openat2.h`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct OpenHow {
    pub flags: u64,
    pub mode: u64,
    pub resolve: u64,
}

/// Fail on any symlink in the path, the last component included (`ELOOP`).
pub(super) const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// Resolve as if the directory fd were `/`: `..` and absolute paths stay inside it.
pub(super) const RESOLVE_IN_ROOT: u64 = 0x10;

pub(super) const AT_EMPTY_PATH: c_uint = 0x1000;
pub(super) const AT_RECURSIVE: c_uint = 0x8000;
pub(super) const OPEN_TREE_CLONE: c_uint = 1;
pub(super) const OPEN_TREE_CLOEXEC: c_uint = libc::O_CLOEXEC as c_uint;
pub(super) const MOVE_MOUNT_F_EMPTY_PATH: c_uint = 0x04;
pub(super) const MOVE_MOUNT_T_EMPTY_PATH: c_uint = 0x40;
pub(super) const FSOPEN_CLOEXEC: c_uint = 1;
pub(super) const FSCONFIG_SET_STRING: c_uint = 1;
pub(super) const FSCONFIG_CMD_CREATE: c_uint = 6;
pub(super) const FSMOUNT_CLOEXEC: c_uint = 1;
pub(super) const MOUNT_ATTR_RDONLY: u64 = 0x01;
pub(super) const MOUNT_ATTR_NOSUID: u64 = 0x02;
pub(super) const MOUNT_ATTR_NODEV: u64 = 0x04;
pub(super) const MOUNT_ATTR_NOEXEC: u64 = 0x08;

/// `struct mount_attr` (5.12+).
#[repr(C)]
#[derive(Debug, Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `openat2(dirfd, path, how)`.
///
/// # Safety
/// `path` is a NUL-terminated string.
pub(super) unsafe fn openat2(dirfd: c_int, path: *const c_char, how: &OpenHow) -> c_int {
    // SAFETY: the kernel reads `size_of::<OpenHow>()` bytes of `how` and the string.
    unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path,
            how as *const OpenHow,
            size_of::<OpenHow>(),
        ) as c_int
    }
}

/// `open_tree(dirfd, path, flags)`: with `OPEN_TREE_CLONE`, a detached copy of the mount tree
/// at the path (a bind mount not yet attached anywhere).
///
/// # Safety
/// `path` is a NUL-terminated string.
pub(super) unsafe fn open_tree(dirfd: c_int, path: *const c_char, flags: c_uint) -> c_int {
    // SAFETY: plain arguments and a string.
    unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path, flags) as c_int }
}

/// `move_mount(from, "", to, "", F_EMPTY_PATH | T_EMPTY_PATH)`: attaches the mount `from` (an
/// `open_tree`/`fsmount` descriptor) onto the directory or file `to` refers to.
pub(super) fn move_mount_fd(from: c_int, to: c_int) -> c_int {
    // SAFETY: empty C strings and descriptors; the kernel reads nothing else.
    unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            to,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        ) as c_int
    }
}

/// `fsopen(fstype, FSOPEN_CLOEXEC)`.
///
/// # Safety
/// `fstype` is a NUL-terminated string.
pub(super) unsafe fn fsopen(fstype: *const c_char) -> c_int {
    // SAFETY: a string and a flag.
    unsafe { libc::syscall(libc::SYS_fsopen, fstype, FSOPEN_CLOEXEC) as c_int }
}

/// `fsconfig(fd, cmd, key, value, 0)`.
///
/// # Safety
/// `key` and `value` are NUL-terminated strings or null, as `cmd` wants.
pub(super) unsafe fn fsconfig(
    fd: c_int,
    cmd: c_uint,
    key: *const c_char,
    value: *const c_void,
) -> c_int {
    // SAFETY: the kernel reads the strings the command takes.
    unsafe { libc::syscall(libc::SYS_fsconfig, fd, cmd, key, value, 0) as c_int }
}

/// `fsmount(fd, FSMOUNT_CLOEXEC, attrs)`: a detached mount of the created file system.
pub(super) fn fsmount(fd: c_int, attrs: u64) -> c_int {
    // SAFETY: plain arguments.
    unsafe { libc::syscall(libc::SYS_fsmount, fd, FSMOUNT_CLOEXEC, attrs) as c_int }
}

/// Sets `attrs` on the mount `fd` refers to and every mount below it
/// (`mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE)`); works on a detached tree too.
pub(super) fn mount_setattr_fd(fd: c_int, attrs: u64) -> c_int {
    let attr = MountAttr {
        attr_set: attrs,
        ..MountAttr::default()
    };
    // SAFETY: the kernel reads `attr` (size given) and an empty string.
    unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            AT_EMPTY_PATH | AT_RECURSIVE,
            &attr as *const MountAttr,
            size_of::<MountAttr>(),
        ) as c_int
    }
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets as two 32-bit words.
const CAP_V3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets the calling thread's inheritable set to `inheritable`, keeping its permitted and
/// effective sets (`capget` then `capset`). Raising an ambient capability needs it in both the
/// permitted and the inheritable set.
pub(super) fn set_inheritable(inheritable: u64) -> c_int {
    let mut header = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and two data words, as version 3 demands.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc < 0 {
        return -1;
    }
    data[0].inheritable = inheritable as u32;
    data[1].inheritable = (inheritable >> 32) as u32;
    // SAFETY: as above; the kernel only reads.
    unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as c_int }
}
