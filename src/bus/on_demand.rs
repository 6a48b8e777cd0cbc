//! Unit objects registered when a client first calls them (DESIGN §4: many connections × many
//! units must stay cheap), on the private socket and on a bus reached at a socket path.
//!
//! zbus 5's object server dispatches only registered paths and answers any other one
//! `UnknownObject` itself, so a unit's object must exist on a connection before a call to it is
//! dispatched. Registering every unit on every connection cost ~1.2 KB per unit per connection
//! (12 MB per client with 10 000 units, docs/PERFORMANCE.md finding 7). Instead, the
//! connection's socket is read through `OnDemand`: it looks at each message as it arrives,
//! before zbus dispatches it, and when a method call is addressed to a unit not registered yet,
//! it asks the connection's [`Objects`](super::objects::Objects) to register it and waits until
//! that is done. A unit that does not exist is not registered, so the call is answered
//! `UnknownObject` as before. An `Introspect` of `/`, `/org`, `/org/corral1` or
//! `/org/corral1/unit` registers every unit first, so tools that walk the tree (`busctl tree`)
//! see them all. Whether a unit exists is known without asking the manager (the
//! [`Notifier`](crate::manager::request::Notifier) keeps the list), so the reader of the bus
//! connection, which every client shares, never waits behind the manager's other work.
//!
//! **A client's backlog waits in its own socket.** On a private-socket connection (one
//! client) the reader counts the method calls that expect a reply, the writer
//! ([`Replies`]) the replies: once [`MAX_CALLS_IN_FLIGHT`] calls are unanswered, the reader
//! reads nothing more until one is, so a client that pipelines thousands of calls holds one
//! connection's worth of the daemon's memory, not thousands of tasks. One that sends calls
//! but takes no reply off its socket for [`STALLED_CLIENT_TIMEOUT`] has stopped reading, and
//! the connection ends. A bus connection carries every client, so its reader never waits:
//! there each sender is held to the same count by its [`Gate`](super::access::Gate).

use std::collections::HashSet;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use std::os::fd::BorrowedFd;

use tokio::net::UnixStream;
use tokio::net::unix::{OwnedWriteHalf, UCred};
use tokio::sync::{Semaphore, mpsc, oneshot};
use zbus::connection::Builder;
use zbus::connection::socket::{BoxedSplit, ReadHalf, Split, WriteHalf};
use zbus::fdo::ConnectionCredentials;
use zbus::message::{Flags, Type};
use zbus::{AuthMechanism, Message};

use super::objects::Units;
use super::{UNIT_PATH_PREFIX, systemd1, unit_from_path};
use crate::bounds::{MAX_CALLS_IN_FLIGHT, STALLED_CLIENT_TIMEOUT};
use crate::unit::UnitName;

/// Whether a connection's reader holds its client to [`MAX_CALLS_IN_FLIGHT`] (see the module
/// doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Client {
    /// A private-socket connection: one client, whose backlog waits in its socket.
    One,
    /// A bus connection: many clients, never held up together.
    Many,
}

/// A connection builder for `stream` whose reader registers unit objects on demand, and what
/// the connection's [`Objects`](super::objects::Objects) are to serve with. `peer`: the
/// `SO_PEERCRED` the server already read, for zbus's `EXTERNAL` check (see [`Peer`]).
pub(crate) fn builder(
    stream: UnixStream,
    client: Client,
    peer: Option<UCred>,
) -> (Builder<'static>, Units) {
    let peer = peer.map(Peer::from);
    let (read, write) = stream.into_split();
    let unanswered = (client == Client::One).then(|| Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT)));
    let (mut read, registered, wanted) = OnDemand::new(read, unanswered.clone());
    read.peer = peer;
    let write = Replies {
        inner: write,
        unanswered,
        peer,
    };
    let socket: BoxedSplit = Split::new(Box::new(read), Box::new(write));
    (Builder::socket(socket), Units::OnDemand(registered, wanted))
}

/// The peer's `SO_PEERCRED`, read once when the connection is accepted: what zbus asks for to
/// check an `EXTERNAL` authentication. zbus's own answer also looks the uid up in the user and
/// group databases (NSS: `/etc/passwd`, `/etc/group`, maybe a network service) on a blocking
/// thread, for every connection; nothing here uses the groups, and the D-Bus specification
/// allows them to be absent. Without it (a bus connection, where corrald is the client and
/// zbus never asks) zbus asks the socket.
#[derive(Debug, Clone, Copy)]
struct Peer {
    uid: u32,
    pid: Option<u32>,
}

impl From<UCred> for Peer {
    fn from(cred: UCred) -> Peer {
        Peer {
            uid: cred.uid(),
            pid: cred.pid().and_then(|p| u32::try_from(p).ok()),
        }
    }
}

impl Peer {
    fn credentials(self) -> ConnectionCredentials {
        let creds = ConnectionCredentials::default().set_unix_user_id(self.uid);
        match self.pid {
            Some(pid) => creds.set_process_id(pid),
            None => creds,
        }
    }
}

/// The error name zbus replies with, and no message, when a call's body can't be read as the
/// method's arguments (a string holding a NUL byte, which D-Bus forbids, or a value the
/// signature check let through).
const ZBUS_ERROR: &str = "org.freedesktop.zbus.Error";

/// The same reply as `InvalidArgs` with a message saying what was wrong, for an error `msg`
/// that zbus sent nameless (see [`ZBUS_ERROR`]): every bad call gets a clear answer.
fn word_unread_arguments(msg: &Message) -> Option<Message> {
    // Every message written passes here: its header is parsed only for an error.
    if msg.message_type() != Type::Error {
        return None;
    }
    let header = msg.header();
    if header.error_name().is_none_or(|n| n.as_str() != ZBUS_ERROR) {
        return None;
    }
    let mut reply = Message::error(&header, "org.freedesktop.DBus.Error.InvalidArgs")
        .ok()?
        .reply_serial(header.reply_serial());
    if let Some(to) = header.destination() {
        reply = reply.destination(to.to_owned()).ok()?;
    }
    reply
        .build(&(
            "the call's arguments could not be read: they do not match the method's \
                 signature, or a string holds a NUL byte",
        ))
        .ok()
}

/// Whether `msg` is a method call its sender waits for a reply to.
fn expects_reply(msg: &Message) -> bool {
    msg.message_type() == Type::MethodCall
        && !msg
            .primary_header()
            .flags()
            .contains(Flags::NoReplyExpected)
}

/// The write half of a connection: on a private-socket connection every reply written lets
/// the reader read one more call; and an error zbus sends without words is worded.
#[derive(Debug)]
struct Replies {
    inner: OwnedWriteHalf,
    unanswered: Option<Arc<Semaphore>>,
    peer: Option<Peer>,
}

#[zbus::export::async_trait::async_trait]
impl WriteHalf for Replies {
    async fn send_message(&mut self, msg: &Message) -> zbus::Result<()> {
        let worded = word_unread_arguments(msg);
        let sent = self
            .inner
            .send_message(worded.as_ref().unwrap_or(msg))
            .await;
        if let Some(slots) = &self.unanswered
            && matches!(msg.message_type(), Type::MethodReturn | Type::Error)
            && slots.available_permits() < MAX_CALLS_IN_FLIGHT
        {
            slots.add_permits(1);
        }
        sent
    }

    async fn sendmsg(&mut self, buffer: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        self.inner.sendmsg(buffer, fds).await
    }

    async fn close(&mut self) -> io::Result<()> {
        WriteHalf::close(&mut self.inner).await
    }

    fn can_pass_unix_fd(&self) -> bool {
        WriteHalf::can_pass_unix_fd(&self.inner)
    }

    async fn peer_credentials(&mut self) -> io::Result<ConnectionCredentials> {
        match self.peer {
            Some(peer) => Ok(peer.credentials()),
            None => WriteHalf::peer_credentials(&mut self.inner).await,
        }
    }
}

/// Paths whose introspection lists units below them.
const ABOVE_UNITS: &[&str] = &[
    "/",
    "/org",
    "/org/corral1",
    "/org/corral1/unit",
    "/org/freedesktop",
    "/org/freedesktop/systemd1",
    "/org/freedesktop/systemd1/unit",
];

/// The unit objects registered on one connection, shared by its reader and its
/// [`Objects`](super::objects::Objects).
#[derive(Debug, Clone, Default)]
pub(crate) struct Registered(Arc<Mutex<HashSet<UnitName>>>);

impl Registered {
    pub(crate) fn contains(&self, name: &UnitName) -> bool {
        self.lock().contains(name)
    }

    pub(crate) fn insert(&self, name: UnitName) -> bool {
        self.lock().insert(name)
    }

    pub(crate) fn remove(&self, name: &UnitName) -> bool {
        self.lock().remove(name)
    }

    pub(crate) fn names(&self) -> Vec<UnitName> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<UnitName>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the reader needs registered before it hands a message on; answered once done.
#[derive(Debug)]
pub(crate) enum Wanted {
    Unit(UnitName, oneshot::Sender<()>),
    Every(oneshot::Sender<()>),
}

/// The read half of a private-socket connection: every message is handed on as it was
/// received, after the unit object it calls is registered.
#[derive(Debug)]
pub(crate) struct OnDemand<R> {
    inner: R,
    registered: Registered,
    wanted: mpsc::UnboundedSender<Wanted>,
    /// Every unit was registered for an `Introspect` (and units added since are registered as
    /// the manager announces them): a later `Introspect` needs nothing more.
    all: bool,
    /// With [`Client::One`]: one permit per call that may still be read before one is
    /// answered ([`Replies`] gives them back).
    unanswered: Option<Arc<Semaphore>>,
    /// The peer's credentials, when read at connect (else zbus asks the socket).
    peer: Option<Peer>,
}

impl<R: ReadHalf> OnDemand<R> {
    /// The reader, and the receiving end its [`Objects`](super::objects::Objects) answers.
    pub(crate) fn new(
        inner: R,
        unanswered: Option<Arc<Semaphore>>,
    ) -> (Self, Registered, mpsc::UnboundedReceiver<Wanted>) {
        let registered = Registered::default();
        let (wanted, requests) = mpsc::unbounded_channel();
        let reader = OnDemand {
            inner,
            registered: registered.clone(),
            wanted,
            all: false,
            unanswered,
            peer: None,
        };
        (reader, registered, requests)
    }

    /// What `msg` needs registered before it is dispatched, if anything.
    fn needs(&self, msg: &Message) -> Option<Need> {
        if msg.message_type() != Type::MethodCall {
            return None;
        }
        let header = msg.header();
        let path = header.path()?.as_str();
        // A unit's objects (org.corral1's and, where served, org.freedesktop.systemd1's) are
        // registered together.
        for prefix in [UNIT_PATH_PREFIX, systemd1::UNIT_PATH_PREFIX] {
            if path.starts_with(prefix) && path != prefix {
                let name = unit_from_path(path).or_else(|| systemd1::unit_from_path(path))?;
                return (!self.registered.contains(&name)).then_some(Need::Unit(name));
            }
        }
        let introspect = header.member().is_some_and(|m| m.as_str() == "Introspect");
        (introspect && !self.all && ABOVE_UNITS.contains(&path)).then_some(Need::Every)
    }
}

enum Need {
    Unit(UnitName),
    Every,
}

#[zbus::export::async_trait::async_trait]
impl<R: ReadHalf> ReadHalf for OnDemand<R> {
    async fn receive_message(
        &mut self,
        seq: u64,
        already_received_bytes: &mut Vec<u8>,
        already_received_fds: &mut Vec<OwnedFd>,
    ) -> zbus::Result<Message> {
        let msg = self
            .inner
            .receive_message(seq, already_received_bytes, already_received_fds)
            .await?;
        if let Some(slots) = &self.unanswered
            && expects_reply(&msg)
        {
            match tokio::time::timeout(STALLED_CLIENT_TIMEOUT, slots.acquire()).await {
                // Given back by the writer with the reply.
                Ok(Ok(slot)) => slot.forget(),
                Ok(Err(_)) => {}
                Err(_) => {
                    return Err(zbus::Error::InputOutput(Arc::new(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{MAX_CALLS_IN_FLIGHT} calls unanswered for \
                             {STALLED_CLIENT_TIMEOUT:?}: the client stopped taking replies"
                        ),
                    ))));
                }
            }
        }
        if let Some(need) = self.needs(&msg) {
            let (ack, done) = oneshot::channel();
            let every = matches!(need, Need::Every);
            let wanted = match need {
                Need::Unit(name) => Wanted::Unit(name, ack),
                Need::Every => Wanted::Every(ack),
            };
            // Once the connection's objects are gone, so is the connection: nothing to wait for.
            if self.wanted.send(wanted).is_ok() && done.await.is_ok() && every {
                self.all = true;
            }
        }
        Ok(msg)
    }

    async fn recvmsg(&mut self, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
        self.inner.recvmsg(buf).await
    }

    fn can_pass_unix_fd(&self) -> bool {
        self.inner.can_pass_unix_fd()
    }

    async fn peer_credentials(&mut self) -> io::Result<ConnectionCredentials> {
        match self.peer {
            Some(peer) => Ok(peer.credentials()),
            None => self.inner.peer_credentials().await,
        }
    }

    fn auth_mechanism(&self) -> AuthMechanism {
        self.inner.auth_mechanism()
    }
}
