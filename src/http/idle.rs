//! Kept-alive connections waiting for their next request, oldest first, so that a server at its
//! connection cap closes one of them to admit a new connection instead of refusing it (what nginx does
//! when its worker connections run out).
//!
//! Every adder holds a kept-alive connection to its registry between beats; without this, a fleet
//! larger than the cap would see its newest members refused while idle connections sat unused.

use smol::channel::{Receiver, Sender};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The idle connections of one server.
#[derive(Debug, Default)]
pub struct Idle {
    next: AtomicU64,
    waiting: Mutex<BTreeMap<u64, Sender<()>>>,
}

/// One connection's place in the idle set; dropping it leaves the set.
#[derive(Debug)]
pub struct Ticket {
    idle: Arc<Idle>,
    id: u64,
    reclaimed: Receiver<()>,
}

impl Ticket {
    /// Resolves when the server reclaims this connection.
    pub async fn reclaimed(&self) {
        let _ = self.reclaimed.recv().await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.idle.lock().remove(&self.id);
    }
}

impl Idle {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Sender<()>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enters the idle set (a connection now waiting for its next request).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mini::http::idle::Idle;
    /// let idle = Arc::new(Idle::default());
    /// let old = idle.enter();
    /// let _new = idle.enter();
    /// assert!(idle.reclaim_oldest());
    /// smol::block_on(old.reclaimed());
    /// ```
    pub fn enter(self: &Arc<Self>) -> Ticket {
        let (tx, reclaimed) = smol::channel::bounded(1);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, tx);
        Ticket {
            idle: self.clone(),
            id,
            reclaimed,
        }
    }

    /// Tells the longest-idle connection to close; false when none is idle.
    pub fn reclaim_oldest(&self) -> bool {
        let oldest = self.lock().pop_first();
        match oldest {
            Some((_, tx)) => {
                let _ = tx.try_send(());
                true
            }
            None => false,
        }
    }

    /// How many connections are idle now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
