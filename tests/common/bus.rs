//! A private `dbus-daemon` for tests, and `busctl` against it: a system-bus-like configuration
//! (the system bus's closed defaults plus `dbus/org.corral1.conf`) or a session-bus-like one,
//! listening on a socket path of the test's choosing; killed on drop. Include with
//! `#[path = "common/bus.rs"] mod bus;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Whether `program` runs at all (`--version`).
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The tools a bus test needs, and root to switch uids; `Some(reason)` when one is missing.
pub fn missing_tools() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("switching uids needs root".into());
    }
    for program in ["dbus-daemon", "busctl", "setpriv"] {
        if !have(program) {
            return Some(format!("{program} is not installed (see scripts/vm-deps)"));
        }
    }
    None
}

/// The system bus's own defaults (as in Debian's /usr/share/dbus-1/system.conf: method calls
/// are closed unless a service's file opens them), listening on `socket`, plus `policy`.
pub fn system_config(socket: &Path, policy: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
        socket = socket.display(),
        policy = policy.display()
    )
}

/// A temporary directory uid 65534 can reach (0755), holding the configuration of a
/// system-like bus (with `dbus/org.corral1.conf`) whose socket is `socket` inside it; the bus
/// is not started.
pub struct SystemBusDir {
    pub dir: tempfile::TempDir,
    pub socket: std::path::PathBuf,
    /// `unix:path=SOCKET`.
    pub address: String,
    pub config: std::path::PathBuf,
}

impl SystemBusDir {
    /// `socket` is relative to the directory (its own directory need not exist yet).
    pub fn new(socket: &str) -> SystemBusDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let socket = dir.path().join(socket);
        let address = format!("unix:path={}", socket.display());
        let config = dir.path().join("system.conf");
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("dbus/org.corral1.conf");
        std::fs::write(&config, system_config(&socket, &policy))
            .expect("writing the bus configuration");
        SystemBusDir {
            dir,
            socket,
            address,
            config,
        }
    }
}

/// The tools a VM test of the system bus copies into the guest, if one is missing.
pub fn missing_guest_tools() -> Option<String> {
    GUEST_TOOLS
        .iter()
        .find(|t| !Path::new(t).is_file())
        .map(|t| format!("no {t} (see scripts/vm-deps)"))
}

/// dbus-daemon, busctl and setpriv, at the same paths in the guest.
pub const GUEST_TOOLS: [&str; 3] = [
    "/usr/bin/dbus-daemon",
    "/usr/bin/busctl",
    "/usr/bin/setpriv",
];

/// The guest's `/etc/dbus-1/system.conf`: the system bus on `/run/dbus/system_bus_socket`,
/// with the corral policy at `/etc/dbus-1/org.corral1.conf`.
pub fn guest_system_config() -> String {
    system_config(
        Path::new("/run/dbus/system_bus_socket"),
        Path::new("/etc/dbus-1/org.corral1.conf"),
    )
}

/// The session bus's policy (as in /usr/share/dbus-1/session.conf: everything allowed), on
/// `socket` — plus `<allow user="*"/>`, so that a uid other than the bus's owner can connect
/// at all and be judged by corrald rather than turned away by the bus.
pub fn session_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        socket = socket.display()
    )
}

/// A command run as `uid` (through setpriv, with that uid as its group too), or as we are.
pub fn command_as(uid: Option<u32>, program: &str) -> Command {
    match uid {
        None => Command::new(program),
        Some(uid) => {
            let uid = uid.to_string();
            let mut c = Command::new("setpriv");
            c.args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "--"])
                .arg(program);
            c
        }
    }
}

/// dbus-daemon, killed on drop.
pub struct Bus {
    pub child: Child,
    /// The address it printed once listening.
    pub address: String,
}

impl Bus {
    /// Starts dbus-daemon with the configuration file `config` (as `uid`, if given) and waits
    /// until it listens: it prints its address once the configuration has parsed and the
    /// socket is bound; a configuration error ends it instead, which panics here.
    pub fn start(config: &Path, uid: Option<u32>) -> Bus {
        let mut child = command_as(uid, "dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--nosyslog", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting dbus-daemon");
        let stdout = child.stdout.take().expect("stdout");
        let mut address = String::new();
        let _ = BufReader::new(stdout).read_line(&mut address);
        let address = address.trim().to_string();
        if address.is_empty() {
            panic!(
                "dbus-daemon refused the configuration: {}",
                ended(&mut child)
            );
        }
        Bus { child, address }
    }

    /// Kills the bus daemon (SIGKILL: its socket file stays behind, as after a crash).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// busctl on the bus at `address` (as `uid` through setpriv, if given).
pub fn busctl_command(address: &str, uid: Option<u32>, args: &[&str]) -> Command {
    let mut cmd = command_as(uid, "busctl");
    cmd.arg(format!("--address={address}"))
        .args(["--timeout=5", "--no-pager"])
        .args(args);
    cmd
}

pub fn busctl(address: &str, uid: Option<u32>, args: &[&str]) -> Output {
    busctl_command(address, uid, args)
        .output()
        .expect("running busctl")
}

/// Who owns `name` on the bus at `address`, if anyone.
pub fn owner(address: &str, name: &str) -> Option<String> {
    let out = busctl(
        address,
        None,
        &[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetNameOwner",
            "s",
            name,
        ],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The call was refused with AccessDenied (busctl shows the error as sd-bus words it).
pub fn rejected(out: &Output) -> bool {
    let err = String::from_utf8_lossy(&out.stderr);
    !out.status.success()
        && ["Access denied", "AccessDenied", "Permission denied"]
            .iter()
            .any(|s| err.contains(s))
}

pub fn show(out: &Output) -> String {
    format!(
        "status {}, stdout {:?}, stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// How a dead child ended and what it wrote on stderr, for a failure message.
pub fn ended(child: &mut Child) -> String {
    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    format!("{status}: {err}")
}
