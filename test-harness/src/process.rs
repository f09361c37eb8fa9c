//! The state Envoy keeps process-wide, shared by every VM of a runtime:
//! shared data by vm_id, shared queues, metrics by name.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A metric's value, shared by every VM of a runtime (Envoy's stats are
/// process-wide by name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Metric {
    /// A counter's total.
    Counter(u64),
    /// A gauge's current value.
    Gauge(u64),
    /// Every value recorded in a histogram, in order.
    Histogram(Vec<u64>),
}

/// Shared key-value data of one vm_id: key → (value, cas).
pub(crate) type SharedData = HashMap<Vec<u8>, (Vec<u8>, u32)>;

/// Shared queues of a runtime: by (vm_id, name), tokens never 0.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    by_name: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
    next_token: u32,
    /// Tokens with new items, by the VM (uid) to tell.
    ready: HashMap<u64, Vec<u32>>,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Vec<u8>>,
    /// The VM that registered the queue last.
    owner: u64,
}

impl Queues {
    pub(crate) fn register(&mut self, vm_id: &str, name: &str, owner: u64) -> u32 {
        let key = (vm_id.to_owned(), name.to_owned());
        if let Some(token) = self.by_name.get(&key) {
            if let Some(queue) = self.queues.get_mut(token) {
                queue.owner = owner;
            }
            return *token;
        }
        self.next_token += 1;
        let token = self.next_token;
        self.by_name.insert(key, token);
        self.queues.insert(
            token,
            Queue {
                items: VecDeque::new(),
                owner,
            },
        );
        token
    }

    pub(crate) fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.by_name
            .get(&(vm_id.to_owned(), name.to_owned()))
            .copied()
    }

    /// Adds an item; returns the VM to tell, or `None` for an unknown token.
    pub(crate) fn enqueue(&mut self, token: u32, item: Vec<u8>) -> Option<u64> {
        let queue = self.queues.get_mut(&token)?;
        queue.items.push_back(item);
        Some(queue.owner)
    }

    /// `None` for an unknown token, `Some(None)` when empty.
    pub(crate) fn dequeue(&mut self, token: u32) -> Option<Option<Vec<u8>>> {
        self.queues.get_mut(&token).map(|q| q.items.pop_front())
    }

    /// The bytes of every item waiting in a queue.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queues
            .values()
            .flat_map(|q| q.items.iter())
            .map(Vec::len)
            .sum()
    }

    pub(crate) fn notify(&mut self, owner: u64, token: u32) {
        self.ready.entry(owner).or_default().push(token);
    }

    pub(crate) fn take_ready(&mut self, owner: u64) -> Vec<u32> {
        self.ready.remove(&owner).unwrap_or_default()
    }
}

/// Shared data by vm_id, metrics by name, shared queues.
#[derive(Debug)]
pub(crate) struct SharedState {
    data: Mutex<HashMap<String, SharedData>>,
    pub(crate) next_cas: AtomicU32,
    metrics: Mutex<HashMap<String, Metric>>,
    queues: Mutex<Queues>,
    next_vm_uid: AtomicU64,
}

impl SharedState {
    pub(crate) fn new() -> Self {
        Self {
            data: Mutex::new(HashMap::new()),
            next_cas: AtomicU32::new(1),
            metrics: Mutex::new(HashMap::new()),
            queues: Mutex::new(Queues::default()),
            next_vm_uid: AtomicU64::new(1),
        }
    }

    pub(crate) fn lock_queues(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn new_vm_uid(&self) -> u64 {
        self.next_vm_uid.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn lock_data(&self) -> MutexGuard<'_, HashMap<String, SharedData>> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn lock_metrics(&self) -> MutexGuard<'_, HashMap<String, Metric>> {
        self.metrics.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
