//! The manager's inbox: requests wait in a queue of their caller's own, and the manager takes
//! them fairly (DESIGN §4: "no caller can delay another's call by more than its own share").
//!
//! Every request arrives with a [`Lane`]: whether its caller is privileged, the caller's uid,
//! and the client it came from. The manager takes, in this order:
//! 1. **privileged callers first** (uid 0, or the daemon's own uid in user mode, and the bus
//!    layer's own bookkeeping): a flood of reads from anyone else never stands before root;
//! 2. within a class, **round robin over uids**, and within a uid **round robin over its
//!    clients** (private-socket connections, bus senders); within a client, in order.
//!
//! So a request waits behind at most one request of each other client of its class that has
//! one waiting, however deep their backlogs, and a user with a hundred connections gets one
//! uid's share. Taking and adding are O(1).
//!
//! The queue itself is not bounded: the bus layer bounds each client's calls in flight
//! ([`crate::bounds::MAX_CALLS_IN_FLIGHT`]) before a request is sent, so it holds at most that
//! many per client.
//!
//! **Turns.** The manager serves a burst of requests in one turn of its event loop (one state
//! file write for all of them), bounded by [`REQUESTS_PER_TURN`] and by [`TURN_BUDGET`] of
//! time: once either is spent, [`RequestReceiver::try_recv`] ends the turn and the loop's other
//! sources (child exits, cgroup events, timers) go first; a privileged request that arrived
//! meanwhile is the first of the next turn.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Request;

/// How many requests the manager takes in one turn of its event loop, at most.
pub const REQUESTS_PER_TURN: usize = 64;

/// How long one turn may go on taking requests: a turn of costly ones (a `ListUnits` of 10 000
/// units takes milliseconds) ends early, so nothing waits more than about this for its turn.
pub const TURN_BUDGET: Duration = Duration::from_millis(5);

/// Who a request is for: see the module doc.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lane {
    /// The caller has the privileged uid, or the request is the bus layer's own.
    pub privileged: bool,
    /// The caller's uid; `u32::MAX` when the kernel could not tell.
    pub uid: u32,
    pub client: ClientId,
}

/// One client of the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// The bus layer itself (registering objects, re-reading the unit list).
    Internal,
    /// A private-socket connection, by its serial.
    Peer(u64),
    /// A sender on the message bus, by its unique name (never reused while the bus runs).
    Bus(Arc<str>),
}

impl Lane {
    /// The bus layer's own requests: first in line.
    pub fn internal() -> Self {
        Lane {
            privileged: true,
            uid: 0,
            client: ClientId::Internal,
        }
    }
}

/// A new inbox: the bus layer sends, the manager task receives.
pub fn request_queue() -> (RequestSender, RequestReceiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        ready: Notify::new(),
        senders: AtomicUsize::new(1),
    });
    (
        RequestSender {
            shared: shared.clone(),
        },
        RequestReceiver { shared, turn: None },
    )
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the receiver: a request was added, or the last sender went.
    ready: Notify,
    senders: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Per-uid queues of per-client queues.
type Class = RoundRobin<u32, RoundRobin<ClientId, VecDeque<Request>>>;

#[derive(Debug, Default)]
struct Queue {
    privileged: Class,
    others: Class,
    /// The receiver is gone: nothing is accepted any more.
    closed: bool,
}

/// What waits in a queue, taken one at a time.
trait Pending: Default {
    fn take(&mut self) -> Option<Request>;
    fn is_empty(&self) -> bool;
}

impl Pending for VecDeque<Request> {
    fn take(&mut self) -> Option<Request> {
        self.pop_front()
    }
    fn is_empty(&self) -> bool {
        VecDeque::is_empty(self)
    }
}

/// Queues by key, taken from in turn: a key is in `order` exactly while its queue holds
/// something.
#[derive(Debug)]
struct RoundRobin<K, V> {
    queues: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K, V> Default for RoundRobin<K, V> {
    fn default() -> Self {
        RoundRobin {
            queues: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Pending> RoundRobin<K, V> {
    /// The queue of `key`, created (and put last in turn) if it had nothing waiting.
    fn queue(&mut self, key: &K) -> &mut V {
        if !self.queues.contains_key(key) {
            self.order.push_back(key.clone());
        }
        self.queues.entry(key.clone()).or_default()
    }
}

impl<K: Hash + Eq + Clone, V: Pending> Pending for RoundRobin<K, V> {
    /// One request from the queue whose turn it is, which then goes last (or away, if empty).
    fn take(&mut self) -> Option<Request> {
        let key = self.order.pop_front()?;
        let queue = self.queues.get_mut(&key)?;
        let req = queue.take();
        if queue.is_empty() {
            self.queues.remove(&key);
        } else {
            self.order.push_back(key);
        }
        req
    }

    fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The bus layer's end. Cheap to clone.
#[derive(Debug)]
pub struct RequestSender {
    shared: Arc<Shared>,
}

impl Clone for RequestSender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        RequestSender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for RequestSender {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.ready.notify_one();
        }
    }
}

impl RequestSender {
    /// Queues `req` in `lane`; never waits. Gives the request back if the manager is gone.
    pub fn send(&self, lane: &Lane, req: Request) -> Result<(), Request> {
        let mut queue = self.shared.lock();
        if queue.closed {
            return Err(req);
        }
        let class = if lane.privileged {
            &mut queue.privileged
        } else {
            &mut queue.others
        };
        class.queue(&lane.uid).queue(&lane.client).push_back(req);
        drop(queue);
        self.shared.ready.notify_one();
        Ok(())
    }
}

/// Why [`RequestReceiver::try_recv`] gave nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TurnOver;

/// The manager's end.
#[derive(Debug)]
pub struct RequestReceiver {
    shared: Arc<Shared>,
    /// When the current turn began and how many requests it took.
    turn: Option<(Instant, usize)>,
}

impl RequestReceiver {
    /// Waits for the next request and begins a turn with it; `None` once every sender is
    /// gone and nothing waits.
    pub async fn recv(&mut self) -> Option<Request> {
        loop {
            if let Some(req) = self.take() {
                self.turn = Some((Instant::now(), 1));
                return Some(req);
            }
            if self.shared.senders.load(Ordering::Acquire) == 0 {
                return None;
            }
            // A request added since `take` left a permit: this returns at once.
            self.shared.ready.notified().await;
        }
    }

    /// The next request of the current turn, if the turn may go on (see the module doc).
    pub fn try_recv(&mut self) -> Result<Request, TurnOver> {
        let Some((began, taken)) = self.turn else {
            return Err(TurnOver);
        };
        if taken >= REQUESTS_PER_TURN || began.elapsed() >= TURN_BUDGET {
            self.turn = None;
            return Err(TurnOver);
        }
        match self.take() {
            Some(req) => {
                self.turn = Some((began, taken + 1));
                Ok(req)
            }
            None => {
                self.turn = None;
                Err(TurnOver)
            }
        }
    }

    fn take(&mut self) -> Option<Request> {
        let mut queue = self.shared.lock();
        queue.privileged.take().or_else(|| queue.others.take())
    }
}

impl Drop for RequestReceiver {
    fn drop(&mut self) {
        // Whoever waits for an answer learns the manager is gone (their reply senders drop).
        let mut queue = self.shared.lock();
        queue.closed = true;
        queue.privileged = Class::default();
        queue.others = Class::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::UnitName;
    use tokio::sync::oneshot;

    /// A request that names its client and number, to see the order taken.
    fn req(tag: &str) -> Request {
        let (reply, _) = oneshot::channel();
        Request::GetUnit {
            unit: UnitName::parse(&format!("{tag}.service")).expect("valid"),
            reply,
        }
    }

    fn tag(r: &Request) -> String {
        match r {
            Request::GetUnit { unit, .. } => unit.as_str().trim_end_matches(".service").into(),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn lane(privileged: bool, uid: u32, client: u64) -> Lane {
        Lane {
            privileged,
            uid,
            client: ClientId::Peer(client),
        }
    }

    async fn drain(rx: &mut RequestReceiver, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let first = rx.recv().await.expect("a request");
            out.push(tag(&first));
            while let Ok(r) = rx.try_recv() {
                out.push(tag(&r));
            }
        }
        out
    }

    /// A flooding client's backlog does not stand before root, nor before another client of
    /// the same class: round robin over uids, then clients.
    #[tokio::test]
    async fn root_first_then_round_robin_over_uids_and_clients() {
        let (tx, mut rx) = request_queue();
        // uid 1000 floods from two connections, uid 1001 sends one, root one.
        for i in 0..5 {
            tx.send(&lane(false, 1000, 1), req(&format!("a{i}")))
                .unwrap();
        }
        for i in 0..5 {
            tx.send(&lane(false, 1000, 2), req(&format!("b{i}")))
                .unwrap();
        }
        tx.send(&lane(false, 1001, 3), req("c0")).unwrap();
        tx.send(&lane(true, 0, 4), req("root")).unwrap();
        let got = drain(&mut rx, 12).await;
        assert_eq!(
            got,
            [
                "root", "a0", "c0", "b0", "a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4"
            ]
        );
    }

    #[tokio::test]
    async fn a_turn_ends_after_its_share_and_privileged_requests_start_the_next() {
        let (tx, mut rx) = request_queue();
        for i in 0..(REQUESTS_PER_TURN + 10) {
            tx.send(&lane(false, 1000, 1), req(&format!("x{i}")))
                .unwrap();
        }
        assert!(rx.try_recv().is_err(), "no turn has begun");
        let first = rx.recv().await.expect("a request");
        assert_eq!(tag(&first), "x0");
        let mut in_turn = 1;
        while rx.try_recv().is_ok() {
            in_turn += 1;
        }
        assert!(in_turn <= REQUESTS_PER_TURN, "{in_turn}");
        // Root's request, sent between two turns, is the first of the next.
        tx.send(&lane(true, 0, 9), req("root")).unwrap();
        let next = rx.recv().await.expect("a request");
        assert_eq!(tag(&next), "root");
    }

    #[tokio::test]
    async fn the_receiver_learns_when_every_sender_is_gone_and_senders_when_it_is() {
        let (tx, mut rx) = request_queue();
        let tx2 = tx.clone();
        tx2.send(&lane(false, 5, 1), req("last")).unwrap();
        drop(tx);
        drop(tx2);
        assert_eq!(rx.recv().await.as_ref().map(tag).as_deref(), Some("last"));
        assert!(rx.recv().await.is_none());

        // A request still queued when the manager goes is answered "gone" (its reply sender
        // is dropped), and nothing more is taken.
        let (tx, rx) = request_queue();
        let (reply, answered) = oneshot::channel();
        let queued = Request::GetUnit {
            unit: UnitName::parse("queued.service").expect("valid"),
            reply,
        };
        tx.send(&lane(false, 5, 1), queued).unwrap();
        drop(rx);
        assert!(answered.await.is_err());
        assert!(tx.send(&lane(false, 5, 1), req("late")).is_err());
    }

    /// A waiting receiver is woken by a send from another task.
    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_a_send() {
        let (tx, mut rx) = request_queue();
        let waiter = tokio::spawn(async move { rx.recv().await.map(|r| tag(&r)) });
        tokio::task::yield_now().await;
        tx.send(&lane(false, 5, 1), req("woken")).unwrap();
        assert_eq!(waiter.await.unwrap().as_deref(), Some("woken"));
    }
}
