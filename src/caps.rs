//! Linux capabilities by name and number (`linux/capability.h`), and sets of them as the kernel
//! keeps them: one bit per capability in a 64-bit word. The unit model validates
//! `capabilities`/`ambient-capabilities` names with this table and the process layer hands the
//! sets to the kernel (`prctl(PR_CAPBSET_DROP)`, `capset`, `PR_CAP_AMBIENT_RAISE`); neither
//! knows of the other, so the table lives below both, as [`crate::ns`] does for namespaces.

use std::fmt;

/// Every capability a 6.1 kernel knows, by number (`CAP_LAST_CAP` = 40). A newer kernel's
/// extra capabilities are not nameable in a unit file, and are dropped from a bounding set like
/// every other capability a unit does not keep.
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// One capability: its number (the bit in a set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cap(u8);

impl Cap {
    /// The capability called `name`: `CAP_NET_BIND_SERVICE`, in any case (`cap_chown` too, as
    /// systemd and `capsh` accept).
    pub fn from_name(name: &str) -> Option<Cap> {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| u8::try_from(i).ok())
            .map(Cap)
    }

    pub fn number(self) -> u32 {
        u32::from(self.0)
    }

    pub fn name(self) -> &'static str {
        NAMES.get(usize::from(self.0)).copied().unwrap_or("CAP_?")
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities: bit N is capability N, as in `/proc/PID/status` (`CapBnd` etc.).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapSet(u64);

impl CapSet {
    pub const EMPTY: CapSet = CapSet(0);

    pub const fn from_bits(bits: u64) -> CapSet {
        CapSet(bits)
    }

    pub const fn bits(self) -> u64 {
        self.0
    }

    pub fn insert(&mut self, cap: Cap) {
        self.0 |= 1 << cap.0;
    }

    pub fn contains(self, cap: Cap) -> bool {
        self.0 & (1 << cap.0) != 0
    }

    /// Whether bit `n` (any number, also above the names this build knows) is set.
    pub const fn has_bit(self, n: u32) -> bool {
        n < 64 && self.0 & (1 << n) != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities in the set, lowest number first.
    pub fn iter(self) -> impl Iterator<Item = Cap> {
        (0..NAMES.len())
            .filter_map(|i| u8::try_from(i).ok())
            .map(Cap)
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<Cap> for CapSet {
    fn from_iter<I: IntoIterator<Item = Cap>>(iter: I) -> CapSet {
        let mut set = CapSet::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl fmt::Debug for CapSet {
    /// The names, as a unit file writes them: `["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(Cap::name)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let c = Cap::from_name("CAP_NET_BIND_SERVICE").unwrap();
        assert_eq!(c.number(), 10);
        assert_eq!(Cap::from_name("cap_net_bind_service"), Some(c));
        assert_eq!(Cap::from_name("NET_BIND_SERVICE"), None);
        assert_eq!(
            Cap::from_name("CAP_CHECKPOINT_RESTORE").unwrap().number(),
            40
        );
        let set: CapSet = [c, Cap::from_name("CAP_CHOWN").unwrap()]
            .into_iter()
            .collect();
        assert_eq!(set.bits(), 1 << 10 | 1);
        assert_eq!(
            format!("{set:?}"),
            r#"["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]"#
        );
        assert!(set.has_bit(10) && !set.has_bit(11) && !set.has_bit(64));
    }

    #[test]
    fn the_table_matches_this_kernels_last_capability() {
        // The host may run a newer kernel (more capabilities), never an older one than 6.1.
        let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            last + 1 >= NAMES.len(),
            "kernel knows {} capabilities",
            last + 1
        );
    }
}
