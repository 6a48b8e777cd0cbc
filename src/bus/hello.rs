//! The `org.freedesktop.DBus.Hello` shim for the private peer-to-peer socket.
//!
//! sd-bus (busctl, and systemctl-style clients) sends `Hello` to `/org/freedesktop/DBus` as its
//! first call even when `--address` points at a peer-to-peer socket, and gives up ("Invalid
//! request descriptor") without a reply. Answering it with a bus-like unique name is enough;
//! nothing else of the bus driver is emulated. The name is `:1.N`, N counting connections of
//! this server, so two clients of one daemon never see the same name.

use zbus::interface;

/// Served at `/org/freedesktop/DBus` on every private-socket connection.
#[derive(Debug)]
pub struct Hello {
    unique_name: String,
}

/// Where sd-bus sends `Hello`.
pub const HELLO_PATH: &str = "/org/freedesktop/DBus";

impl Hello {
    /// The shim for the `n`-th connection of a server.
    pub fn new(n: u64) -> Self {
        Hello {
            unique_name: format!(":1.{n}"),
        }
    }

    pub fn unique_name(&self) -> &str {
        &self.unique_name
    }
}

#[interface(name = "org.freedesktop.DBus", introspection_docs = false)]
impl Hello {
    /// Returns the unique name this connection is known by.
    #[zbus(name = "Hello")]
    async fn hello(&self) -> String {
        self.unique_name.clone()
    }
}
