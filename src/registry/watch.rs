//! Watchers: Consul-style blocking queries on one service's change index.
//!
//! A watcher subscribes to a service before it compares indexes, so a change between the two is never
//! missed; a change wakes only that service's watchers (not every watcher, the global-index problem of
//! consul#3890), and only for real changes (added, removed, health flipped: the state's index rules).
//! Subscriptions are one-shot and remove themselves when dropped, so a watcher whose client went away
//! costs nothing once the server notices; their number is capped by [`MAX_WATCHERS`].

use smol::channel::{Receiver, Sender};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Watchers allowed at once; past it a watch answers 503 rather than growing without bound.
pub const MAX_WATCHERS: usize = 10_000;
/// Wait of a watch that names none (Consul's default).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Longest wait a watch may ask for (Consul's maximum).
pub const MAX_WAIT: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
struct Map {
    by_service: HashMap<String, Vec<(u64, Sender<()>)>>,
    count: usize,
    next_id: u64,
}

/// The set of waiting watchers.
#[derive(Debug, Default)]
pub struct Watchers {
    map: Mutex<Map>,
}

/// The limit of [`MAX_WATCHERS`] was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyWatchers;

/// One waiting watcher; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    watchers: Arc<Watchers>,
    service: String,
    id: u64,
    rx: Receiver<()>,
}

impl Subscription {
    /// Resolves at the next change of the service.
    pub async fn changed(&self) {
        let _ = self.rx.recv().await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.watchers.remove(&self.service, self.id);
    }
}

/// The key a watcher of every service subscribes to (`GET /v1/catalog/services?index=`): no service
/// name can be `*`, and every notification wakes it too.
pub const ANY_SERVICE: &str = "*";

impl Watchers {
    fn map(&self) -> std::sync::MutexGuard<'_, Map> {
        crate::rt::lock(&self.map)
    }

    /// Subscribes to the next change of `service`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let watchers = Arc::new(mini::registry::watch::Watchers::default());
    /// let sub = watchers.subscribe("add").unwrap();
    /// assert_eq!(watchers.count(), 1);
    /// watchers.notify("add");
    /// smol::block_on(sub.changed());
    /// drop(sub);
    /// assert_eq!(watchers.count(), 0);
    /// ```
    pub fn subscribe(self: &Arc<Self>, service: &str) -> Result<Subscription, TooManyWatchers> {
        let (tx, rx) = smol::channel::bounded(1);
        let id = {
            let mut map = self.map();
            if map.count >= MAX_WATCHERS {
                return Err(TooManyWatchers);
            }
            map.next_id += 1;
            map.count += 1;
            let id = map.next_id;
            map.by_service
                .entry(service.to_string())
                .or_default()
                .push((id, tx));
            id
        };
        Ok(Subscription {
            watchers: self.clone(),
            service: service.to_string(),
            id,
            rx,
        })
    }

    /// Wakes every watcher of `service` (each wakes once; it re-subscribes if it wants more).
    pub fn notify(&self, service: &str) {
        let (woken, any) = {
            let mut map = self.map();
            let woken = map.by_service.remove(service).unwrap_or_default();
            let any = map.by_service.remove(ANY_SERVICE).unwrap_or_default();
            map.count -= woken.len() + any.len();
            (woken, any)
        };
        for (_, tx) in woken.into_iter().chain(any) {
            let _ = tx.try_send(());
        }
    }

    /// Watchers waiting now.
    pub fn count(&self) -> usize {
        self.map().count
    }

    fn remove(&self, service: &str, id: u64) {
        let mut map = self.map();
        let Some(list) = map.by_service.get_mut(service) else {
            return;
        };
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        let removed = before - list.len();
        if list.is_empty() {
            map.by_service.remove(service);
        }
        map.count -= removed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_wakes_only_that_service() {
        let w = Arc::new(Watchers::default());
        let a = w.subscribe("a").unwrap();
        let b = w.subscribe("b").unwrap();
        w.notify("a");
        assert!(a.rx.try_recv().is_ok());
        assert!(b.rx.try_recv().is_err());
        assert_eq!(w.count(), 1);
    }

    #[test]
    fn dropped_subscriptions_free_their_slot() {
        let w = Arc::new(Watchers::default());
        let subs: Vec<_> = (0..10).map(|_| w.subscribe("a").unwrap()).collect();
        assert_eq!(w.count(), 10);
        drop(subs);
        assert_eq!(w.count(), 0);
        assert!(w.map().by_service.is_empty());
    }

    #[test]
    fn the_cap_refuses_more_watchers() {
        let w = Arc::new(Watchers::default());
        let subs: Vec<_> = (0..MAX_WATCHERS)
            .map(|_| w.subscribe("a").unwrap())
            .collect();
        assert_eq!(w.subscribe("a").unwrap_err(), TooManyWatchers);
        drop(subs);
        assert!(w.subscribe("a").is_ok());
    }
}
