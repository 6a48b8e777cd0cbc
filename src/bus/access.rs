//! Who may change state (DESIGN §4): uid 0 in system mode, the daemon's own uid in user mode;
//! reading is open. The uid is the kernel's, never the caller's word: on the private socket it
//! is the peer's `SO_PEERCRED`, taken when the connection is accepted (the credentials of the
//! process that called `connect(2)`, fixed for the socket's life; EXTERNAL authentication is
//! not trusted for this). On the bus it will be the bus daemon's `GetConnectionCredentials` of
//! the sender, because there the socket's peer is the bus daemon itself.

use std::fmt;

use super::Error;

/// Whether the daemon manages the system or one user's units (`Mode` on D-Bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    System,
    User,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::User => "user",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The access policy: the one uid allowed to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    privileged_uid: u32,
}

impl Access {
    /// The policy for a daemon in `mode`: uid 0, or (user mode) the daemon's effective uid.
    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::System => Access { privileged_uid: 0 },
            Mode::User => Access {
                privileged_uid: nix::unistd::geteuid().as_raw(),
            },
        }
    }

    /// A policy for an explicit uid (tests, or a daemon told whom to serve).
    pub fn for_uid(uid: u32) -> Self {
        Access {
            privileged_uid: uid,
        }
    }

    pub fn privileged_uid(self) -> u32 {
        self.privileged_uid
    }

    /// `Ok` if a caller with kernel-reported uid `peer_uid` may call `method`, else
    /// `org.freedesktop.DBus.Error.AccessDenied`. `None` (credentials unavailable) is denied.
    pub fn check(self, peer_uid: Option<u32>, method: &str) -> Result<(), Error> {
        match peer_uid {
            Some(uid) if uid == self.privileged_uid => Ok(()),
            Some(uid) => Err(Error::access_denied(format!(
                "{method} changes state and is allowed to uid {} only; the caller is uid {uid}",
                self.privileged_uid
            ))),
            None => Err(Error::access_denied(format!(
                "{method} changes state; the caller's credentials are unknown"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn only_the_privileged_uid_passes() {
        let a = Access::for_uid(0);
        assert!(a.check(Some(0), "StartUnit").is_ok());
        for peer in [Some(1000), Some(65534), None] {
            let e = a.check(peer, "StartUnit").expect_err("denied");
            assert_eq!(e.name().as_str(), "org.freedesktop.DBus.Error.AccessDenied");
        }
        assert_eq!(Access::for_mode(Mode::System).privileged_uid(), 0);
        assert_eq!(
            Access::for_mode(Mode::User).privileged_uid(),
            nix::unistd::geteuid().as_raw()
        );
    }
}
