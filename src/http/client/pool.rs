//! The keep-alive pool: idle connections by address, bounded per address and in total, dropped
//! after [`IDLE_POOL_TIMEOUT`].
//!
//! A pooled connection keeps its read buffer (the client pools its `Conn`, socket and buffer
//! together), so a round trip on a reused connection allocates neither. The pool is generic over
//! what it holds, so its rules are tested without sockets.

use super::{IDLE_POOL_TIMEOUT, MAX_IDLE_PER_ADDR, MAX_IDLE_TOTAL};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// An idle keep-alive connection and when it became idle.
struct PooledConn<C> {
    conn: C,
    since: Instant,
}

/// Idle connections by address, bounded per address and in total.
pub(crate) struct Pool<C> {
    inner: Mutex<PoolInner<C>>,
    max_idle: usize,
}

struct PoolInner<C> {
    /// Lists stay when they empty (a connection taken is usually put back), and are swept when
    /// they outnumber the pooled connections.
    by_addr: HashMap<String, Vec<PooledConn<C>>>,
    total: usize,
}

impl<C> Pool<C> {
    /// An empty pool of at most `max_idle` connections in all.
    pub(crate) fn new(max_idle: usize) -> Pool<C> {
        Pool {
            inner: Mutex::new(PoolInner {
                by_addr: HashMap::new(),
                total: 0,
            }),
            max_idle,
        }
    }

    /// Locks the pool; a poisoned lock is still usable (the data is plain).
    fn lock(&self) -> MutexGuard<'_, PoolInner<C>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the most recently pooled live connection to `addr`, dropping any that idled past
    /// [`IDLE_POOL_TIMEOUT`].
    pub(crate) fn take(&self, addr: &str, now: Instant) -> Option<C> {
        let mut expired = Vec::new();
        let found = {
            let mut inner = self.lock();
            let found = inner.take(addr, now, &mut expired);
            let removed = expired.len() + usize::from(found.is_some());
            inner.total = inner.total.saturating_sub(removed);
            found
        };
        drop(expired); // closes sockets outside the lock
        found
    }

    /// Pools `conn` for reuse, unless the pool is full.
    pub(crate) fn put(&self, addr: &str, conn: C, now: Instant) {
        let mut dropped = Vec::new();
        {
            let mut inner = self.lock();
            if inner.total >= self.max_idle {
                inner.prune(now, &mut dropped);
            }
            let idle = PooledConn { conn, since: now };
            if inner.total >= self.max_idle {
                dropped.push(idle);
            } else {
                inner.push(addr, idle, &mut dropped);
            }
        }
        drop(dropped);
    }

    /// How many connections to `addr` are pooled now.
    pub(crate) fn idle_count(&self, addr: &str) -> usize {
        self.lock().by_addr.get(addr).map_or(0, Vec::len)
    }
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Pool::new(MAX_IDLE_TOTAL)
    }
}

impl<C> PoolInner<C> {
    /// Pops a live connection; moves expired ones (not counted) to `expired`.
    fn take(&mut self, addr: &str, now: Instant, expired: &mut Vec<PooledConn<C>>) -> Option<C> {
        let list = self.by_addr.get_mut(addr)?;
        drain_expired(list, now, expired);
        list.pop().map(|i| i.conn)
    }

    /// Adds `idle`, evicting the oldest connection of `addr` if it is full.
    fn push(&mut self, addr: &str, idle: PooledConn<C>, dropped: &mut Vec<PooledConn<C>>) {
        if self.by_addr.len() > 2 * self.total + 64 {
            self.by_addr.retain(|_, list| !list.is_empty());
        }
        let list = match self.by_addr.get_mut(addr) {
            Some(list) => list,
            None => self.by_addr.entry(addr.to_string()).or_default(),
        };
        if list.len() >= MAX_IDLE_PER_ADDR {
            dropped.push(list.remove(0));
            self.total = self.total.saturating_sub(1);
        }
        list.push(idle);
        self.total += 1;
    }

    /// Removes expired connections of every address.
    fn prune(&mut self, now: Instant, dropped: &mut Vec<PooledConn<C>>) {
        for list in self.by_addr.values_mut() {
            drain_expired(list, now, dropped);
        }
        self.by_addr.retain(|_, list| !list.is_empty());
        self.total = self.by_addr.values().map(Vec::len).sum();
    }
}

/// Moves connections idle past [`IDLE_POOL_TIMEOUT`] (oldest first in `list`) to `out`.
fn drain_expired<C>(list: &mut Vec<PooledConn<C>>, now: Instant, out: &mut Vec<PooledConn<C>>) {
    let live_from = list
        .iter()
        .position(|i| now.saturating_duration_since(i.since) <= IDLE_POOL_TIMEOUT)
        .unwrap_or(list.len());
    out.extend(list.drain(..live_from));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pool_is_bounded_and_expires() {
        let pool = Pool::default();
        let now = Instant::now();
        for i in 0..MAX_IDLE_PER_ADDR + 3 {
            pool.put("a:1", i, now);
        }
        assert_eq!(pool.idle_count("a:1"), MAX_IDLE_PER_ADDR);
        assert_eq!(pool.lock().total, MAX_IDLE_PER_ADDR);
        // The newest comes back first; the oldest three were evicted.
        assert_eq!(
            pool.take("a:1", now + IDLE_POOL_TIMEOUT),
            Some(MAX_IDLE_PER_ADDR + 2)
        );
        let later = now + IDLE_POOL_TIMEOUT + Duration::from_secs(1);
        assert!(pool.take("a:1", later).is_none());
        assert_eq!(pool.idle_count("a:1"), 0);
        assert_eq!(pool.lock().total, 0);
    }

    #[test]
    fn the_total_is_bounded_and_expired_ones_make_room() {
        let pool = Pool::new(4);
        let now = Instant::now();
        for i in 0..6 {
            pool.put(&format!("h:{i}"), i, now);
        }
        assert_eq!(pool.lock().total, 4);
        assert_eq!(pool.take("h:5", now), None, "refused while full");
        let later = now + IDLE_POOL_TIMEOUT + Duration::from_secs(1);
        pool.put("h:9", 9, later);
        assert_eq!(pool.lock().total, 1);
        assert_eq!(pool.take("h:9", later), Some(9));
    }

    #[test]
    fn empty_lists_are_swept_when_they_outnumber_the_connections() {
        let pool = Pool::default();
        let now = Instant::now();
        for i in 0..1000 {
            let addr = format!("h:{i}");
            pool.put(&addr, i, now);
            assert_eq!(pool.take(&addr, now), Some(i));
        }
        assert!(
            pool.lock().by_addr.len() <= 65,
            "{}",
            pool.lock().by_addr.len()
        );
    }
}
