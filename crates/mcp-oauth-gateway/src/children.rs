//! The children of a `per-user` or `per-session` stdio upstream, by key (a user, a session):
//! each stopped after an idle time, even when no request comes (a task sweeps the cache, which
//! otherwise expires entries only when it is used), and all of them when dropped.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use crate::front::Inner;

type Cache = moka::sync::Cache<Arc<str>, Arc<Inner>>;

/// The longest idle time a child is kept (longer ones are cut to it): a year.
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) struct Children {
    cache: Cache,
    sweeper: tokio::task::JoinHandle<()>,
}

impl Children {
    /// Children stopped after `idle` without requests (at most [`MAX_IDLE`]); at most `max` of
    /// them when given (the least recently active goes first: plain LRU, so that a new user is
    /// always let in).
    pub(crate) fn new(idle: Duration, max: Option<u64>) -> Self {
        let idle = idle.min(MAX_IDLE);
        let builder = Cache::builder()
            .time_to_idle(idle)
            .eviction_policy(moka::policy::EvictionPolicy::lru());
        let cache = match max {
            Some(max) => builder.max_capacity(max).build(),
            None => builder.build(),
        };
        let sweeper = sweeper(cache.clone(), idle);
        Self { cache, sweeper }
    }
}

impl Deref for Children {
    type Target = Cache;

    fn deref(&self) -> &Cache {
        &self.cache
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        // The sweeper holds the cache too: stop the children now, not when it is dropped.
        self.sweeper.abort();
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }
}

/// A task that stops idle children on time: every quarter of the idle time, between 50 ms
/// and 30 s.
fn sweeper(children: Cache, idle: Duration) -> tokio::task::JoinHandle<()> {
    let every = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            children.run_pending_tasks();
        }
    })
}
