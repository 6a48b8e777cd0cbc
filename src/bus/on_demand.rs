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
//! see them all.

use std::collections::HashSet;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use zbus::connection::Builder;
use zbus::connection::socket::{BoxedSplit, ReadHalf, Split};
use zbus::fdo::ConnectionCredentials;
use zbus::message::Type;
use zbus::{AuthMechanism, Message};

use super::objects::Units;
use super::{UNIT_PATH_PREFIX, unit_from_path};
use crate::unit::UnitName;

/// A connection builder for `stream` whose reader registers unit objects on demand, and what
/// the connection's [`Objects`](super::objects::Objects) are to serve with.
pub(crate) fn builder(stream: UnixStream) -> (Builder<'static>, Units) {
    let (read, write) = stream.into_split();
    let (read, registered, wanted) = OnDemand::new(read);
    let socket: BoxedSplit = Split::new(Box::new(read), Box::new(write));
    (Builder::socket(socket), Units::OnDemand(registered, wanted))
}

/// Paths whose introspection lists units below them.
const ABOVE_UNITS: &[&str] = &["/", "/org", "/org/corral1", "/org/corral1/unit"];

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
}

impl<R: ReadHalf> OnDemand<R> {
    /// The reader, and the receiving end its [`Objects`](super::objects::Objects) answers.
    pub(crate) fn new(inner: R) -> (Self, Registered, mpsc::UnboundedReceiver<Wanted>) {
        let registered = Registered::default();
        let (wanted, requests) = mpsc::unbounded_channel();
        let reader = OnDemand {
            inner,
            registered: registered.clone(),
            wanted,
            all: false,
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
        if path.starts_with(UNIT_PATH_PREFIX) && path != UNIT_PATH_PREFIX {
            let name = unit_from_path(path)?;
            return (!self.registered.contains(&name)).then_some(Need::Unit(name));
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
        self.inner.peer_credentials().await
    }

    fn auth_mechanism(&self) -> AuthMechanism {
        self.inner.auth_mechanism()
    }
}
