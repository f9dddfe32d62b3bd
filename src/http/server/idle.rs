//! Kept-alive connections waiting for their next request, oldest first, so that a server at its
//! connection cap closes one of them to admit a new connection instead of refusing it (what nginx does
//! when its worker connections run out).
//!
//! Every adder holds a kept-alive connection to its registry between beats; without this, a fleet
//! larger than the cap would see its newest members refused while idle connections sat unused.
//!
//! A connection joins once ([`IdleConns::member`]) and then enters and leaves the idle set between
//! every two requests without allocating: the set is a queue in the order connections became idle,
//! where a connection that left is skipped (and swept out once such entries outnumber the idle ones).
//! There is one queue per server lane, so a lane's connections enter and leave without touching a
//! lock another lane takes per request; the cap compares the queues' oldest entries by the time they
//! became idle, so the longest-idle connection of the whole server is the one reclaimed.

use crate::rt::lock;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Marks a member that is not idle.
const BUSY: u64 = u64::MAX;

/// The idle connections of one server (the client's pool is [`crate::http::client`]'s own).
#[derive(Debug)]
pub struct IdleConns {
    /// One queue per lane (one for a server off the lanes).
    shards: Box<[Mutex<Queue>]>,
}

impl Default for IdleConns {
    fn default() -> Self {
        IdleConns::with_shards(1)
    }
}

#[derive(Debug, Default)]
struct Queue {
    /// `(turn, since, member)` in the order members became idle; an entry whose member's turn
    /// moved on is stale.
    order: VecDeque<(u64, Instant, Arc<Shared>)>,
    /// How many members are idle now.
    idle: usize,
    next_turn: u64,
}

#[derive(Debug, Default)]
struct Shared {
    /// The turn of the member's current idle wait, or [`BUSY`].
    turn: AtomicU64,
    /// Set once the server reclaimed the member; it stays set (the connection closes).
    told: AtomicBool,
    /// The task waiting for `told`, while one waits.
    waker: Mutex<Option<Waker>>,
}

impl Shared {
    fn waker(&self) -> MutexGuard<'_, Option<Waker>> {
        lock(&self.waker)
    }

    fn tell(&self) {
        self.told.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waker().take() {
            waker.wake();
        }
    }
}

/// Resolves once the member was told (no allocation per wait, unlike a channel's listener).
struct Reclaimed<'a> {
    shared: &'a Shared,
}

impl Future for Reclaimed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.told.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        {
            let mut waker = self.shared.waker();
            match &*waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        // Told between the first check and storing the waker: the teller found no waker.
        if self.shared.told.load(Ordering::SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// One connection's membership of the idle set.
#[derive(Debug)]
pub struct IdleMember {
    conns: Arc<IdleConns>,
    shard: usize,
    shared: Arc<Shared>,
}

/// One idle wait of a member; dropping it leaves the idle set.
#[derive(Debug)]
pub struct Ticket<'a> {
    member: &'a IdleMember,
}

impl IdleConns {
    /// An idle set with `shards` queues (at least one): one per lane of the server.
    pub fn with_shards(shards: usize) -> IdleConns {
        IdleConns {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
        }
    }

    /// A membership for one connection (it allocates here, once, not per wait), in the queue of
    /// the lane running this thread.
    pub fn member(self: &Arc<Self>) -> IdleMember {
        self.member_in(super::lane::current().unwrap_or(0))
    }

    fn member_in(self: &Arc<Self>, shard: usize) -> IdleMember {
        IdleMember {
            conns: self.clone(),
            shard: shard % self.shards.len(),
            shared: Arc::new(Shared {
                turn: AtomicU64::new(BUSY),
                ..Shared::default()
            }),
        }
    }

    /// Tells the longest-idle connection to close; false when none is idle.
    pub fn reclaim_oldest(&self) -> bool {
        loop {
            // The queue whose first live entry became idle first.
            let mut oldest: Option<(Instant, usize)> = None;
            for (i, shard) in self.shards.iter().enumerate() {
                let mut queue = lock(shard);
                while let Some((turn, _, shared)) = queue.order.front() {
                    if shared.turn.load(Ordering::Relaxed) == *turn {
                        break;
                    }
                    queue.order.pop_front();
                }
                if let Some((_, since, _)) = queue.order.front() {
                    if oldest.is_none_or(|(t, _)| *since < t) {
                        oldest = Some((*since, i));
                    }
                }
            }
            let Some((_, i)) = oldest else {
                return false;
            };
            let mut queue = lock(&self.shards[i]);
            while let Some((turn, _, shared)) = queue.order.pop_front() {
                if shared.turn.load(Ordering::Relaxed) == turn {
                    shared.turn.store(BUSY, Ordering::Relaxed);
                    queue.idle -= 1;
                    drop(queue);
                    shared.tell();
                    return true;
                }
            }
            // It left in the meantime: look again.
        }
    }
}

impl IdleMember {
    /// Enters the idle set (the connection now waits for its next request).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mini::http::server::idle::IdleConns;
    /// let idle = Arc::new(IdleConns::default());
    /// let (old, new) = (idle.member(), idle.member());
    /// let waiting = old.enter();
    /// let _also = new.enter();
    /// assert!(idle.reclaim_oldest());
    /// smol::block_on(waiting.reclaimed());
    /// ```
    pub fn enter(&self) -> Ticket<'_> {
        let since = super::lane::now();
        let mut queue = lock(&self.conns.shards[self.shard]);
        let turn = queue.next_turn;
        queue.next_turn += 1;
        self.shared.turn.store(turn, Ordering::Relaxed);
        queue.idle += 1;
        // Entries of members that left outnumber the idle ones: sweep them out (amortized O(1)).
        if queue.order.len() >= 2 * queue.idle + 16 {
            queue
                .order
                .retain(|(t, _, s)| s.turn.load(Ordering::Relaxed) == *t);
        }
        queue.order.push_back((turn, since, self.shared.clone()));
        Ticket { member: self }
    }
}

impl Ticket<'_> {
    /// Resolves when the server reclaims this connection.
    pub async fn reclaimed(&self) {
        Reclaimed {
            shared: &self.member.shared,
        }
        .await
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        {
            let mut queue = lock(&self.member.conns.shards[self.member.shard]);
            if self.member.shared.turn.swap(BUSY, Ordering::Relaxed) != BUSY {
                queue.idle -= 1;
            }
        }
        // A stale queue entry may keep `shared` a while: it must not keep the task alive too.
        self.member.shared.waker().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_idle_member_is_reclaimed_and_members_that_left_are_skipped() {
        let conns = Arc::new(IdleConns::default());
        let members: Vec<IdleMember> = (0..3).map(|_| conns.member()).collect();
        let first = members[0].enter();
        let second = members[1].enter();
        drop(first); // busy again: not reclaimable
        let _third = members[2].enter();
        assert!(conns.reclaim_oldest());
        assert!(second.member.shared.told.load(Ordering::SeqCst));
        smol::block_on(second.reclaimed());
        assert!(conns.reclaim_oldest());
        assert!(!conns.reclaim_oldest());
        assert_eq!(lock(&conns.shards[0]).idle, 0);
    }

    #[test]
    fn waits_that_come_and_go_do_not_grow_the_queue() {
        let conns = Arc::new(IdleConns::default());
        let long = conns.member();
        let _held = long.enter();
        let busy = conns.member();
        for _ in 0..10_000 {
            drop(busy.enter());
        }
        let queue = lock(&conns.shards[0]);
        assert!(
            queue.order.len() <= 2 * queue.idle + 16,
            "{}",
            queue.order.len()
        );
        assert_eq!(queue.idle, 1);
    }

    #[test]
    fn the_oldest_across_lanes_is_reclaimed_first() {
        let conns = Arc::new(IdleConns::with_shards(2));
        let (a, b, c) = (conns.member_in(1), conns.member_in(0), conns.member_in(1));
        let first = a.enter();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = b.enter();
        let third = c.enter();
        assert!(conns.reclaim_oldest());
        assert!(first.member.shared.told.load(Ordering::SeqCst));
        drop(second); // left before the cap came to it
        assert!(conns.reclaim_oldest());
        assert!(third.member.shared.told.load(Ordering::SeqCst));
        assert!(!conns.reclaim_oldest());
    }
}
