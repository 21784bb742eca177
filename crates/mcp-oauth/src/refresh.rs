//! A value fetched from the network and kept fresh: TTL, single-flight refresh,
//! stale-if-error and a back-off after failures. Shared by the JWKS cache and the
//! authorization-server metadata mirror.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::FetchError;

/// Timing rules for a [`Refreshing`] value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefreshRules {
    /// How long past its TTL the last good value is served while fetches fail.
    pub(crate) stale_if_error: Duration,
    /// Least time between a failed fetch and the next attempt.
    pub(crate) retry_after_error: Duration,
}

struct Slot<T> {
    value: Option<Arc<T>>,
    fetched_at: Option<Instant>,
    ttl: Duration,
    /// Incremented by every attempt, successful or not: the single-flight token.
    attempts: u64,
    last_attempt: Option<Instant>,
    last_error: Option<FetchError>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self {
            value: None,
            fetched_at: None,
            ttl: Duration::ZERO,
            attempts: 0,
            last_attempt: None,
            last_error: None,
        }
    }
}

/// What [`Refreshing::get`] does for a caller.
enum Next {
    /// Nothing usable and fetches are backing off.
    Fail,
    /// Fetch unless an attempt happened since `seen`; without `wait`, skip the fetch (and
    /// serve the stale value) when another one is in flight.
    Fetch { seen: u64, wait: bool },
    /// Serve the current value.
    Serve,
}

/// What a caller learns when it cannot get a value.
#[derive(Debug, Clone)]
pub(crate) struct Unavailable(pub(crate) Option<FetchError>);

pub(crate) struct Refreshing<T> {
    slot: RwLock<Slot<T>>,
    flight: tokio::sync::Mutex<()>,
    rules: RefreshRules,
    fetches: AtomicU64,
}

impl<T> std::fmt::Debug for Refreshing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refreshing")
            .field("fetches", &self.fetch_count())
            .finish_non_exhaustive()
    }
}

impl<T> Refreshing<T> {
    pub(crate) fn new(rules: RefreshRules) -> Self {
        Self {
            slot: RwLock::new(Slot::default()),
            flight: tokio::sync::Mutex::new(()),
            rules,
            fetches: AtomicU64::new(0),
        }
    }

    /// Network fetches so far.
    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn read<R>(&self, f: impl FnOnce(&Slot<T>) -> R) -> R {
        match self.slot.read() {
            Ok(slot) => f(&slot),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn write<R>(&self, f: impl FnOnce(&mut Slot<T>) -> R) -> R {
        match self.slot.write() {
            Ok(mut slot) => f(&mut slot),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The current value, fetched first when it is missing or expired, or when `wants_more`
    /// says the fresh value is not enough (an unknown `kid`) and `cooldown` has passed since
    /// the last attempt.
    pub(crate) async fn get<F, Fut>(
        &self,
        fetch: F,
        wants_more: impl FnOnce(&T) -> bool,
        cooldown: Duration,
    ) -> Result<Arc<T>, Unavailable>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Duration), FetchError>>,
    {
        let now = Instant::now();
        let decision = self.read(|s| {
            let backing_off = s.last_error.is_some()
                && s.last_attempt
                    .is_some_and(|t| now.duration_since(t) < self.rules.retry_after_error);
            let (Some(value), Some(fetched_at)) = (&s.value, s.fetched_at) else {
                return if backing_off {
                    Next::Fail
                } else {
                    Next::Fetch {
                        seen: s.attempts,
                        wait: true,
                    }
                };
            };
            if backing_off {
                return Next::Serve;
            }
            let age = now.duration_since(fetched_at);
            if age >= s.ttl {
                // Expired. When the value still answers this caller (stale-if-error), a
                // refresh already in flight is not waited for: the stale value is served.
                let covered =
                    age < s.ttl.saturating_add(self.rules.stale_if_error) && !wants_more(value);
                return Next::Fetch {
                    seen: s.attempts,
                    wait: !covered,
                };
            }
            let cooled = s
                .last_attempt
                .is_none_or(|t| now.duration_since(t) >= cooldown);
            if cooled && wants_more(value) {
                Next::Fetch {
                    seen: s.attempts,
                    wait: true,
                }
            } else {
                Next::Serve
            }
        });
        match decision {
            Next::Fail => return Err(Unavailable(self.read(|s| s.last_error.clone()))),
            Next::Fetch { seen, wait: true } => self.fetch(seen, false, fetch).await,
            Next::Fetch { seen, wait: false } => {
                if let Ok(flight) = self.flight.try_lock() {
                    self.fetch_locked(flight, seen, false, fetch).await;
                }
            }
            Next::Serve => {}
        }
        self.read(|s| self.usable(s, Instant::now()))
    }

    /// Fetches now unless another attempt happened since `seen` (single flight). With
    /// `force`, the failure back-off is ignored.
    pub(crate) async fn fetch<F, Fut>(&self, seen: u64, force: bool, fetch: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Duration), FetchError>>,
    {
        let flight = self.flight.lock().await;
        self.fetch_locked(flight, seen, force, fetch).await;
    }

    /// [`Self::fetch`] with the single-flight lock held.
    async fn fetch_locked<F, Fut>(
        &self,
        _flight: tokio::sync::MutexGuard<'_, ()>,
        seen: u64,
        force: bool,
        fetch: F,
    ) where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Duration), FetchError>>,
    {
        let now = Instant::now();
        let skip = self.read(|s| {
            s.attempts != seen
                || (!force
                    && s.last_error.is_some()
                    && s.last_attempt
                        .is_some_and(|t| now.duration_since(t) < self.rules.retry_after_error))
        });
        if skip {
            return;
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = fetch().await;
        self.write(|s| {
            s.attempts += 1;
            s.last_attempt = Some(Instant::now());
            match result {
                Ok((value, ttl)) => {
                    s.value = Some(Arc::new(value));
                    s.fetched_at = s.last_attempt;
                    s.ttl = ttl;
                    s.last_error = None;
                }
                Err(err) => {
                    tracing::warn!(target: "mcp_oauth::fetch", error = %err, "refresh failed");
                    s.last_error = Some(err);
                }
            }
        });
    }

    /// Fetches now (ignoring TTL and back-off) and reports the outcome.
    pub(crate) async fn refresh_now<F, Fut>(&self, fetch: F) -> Result<Arc<T>, Unavailable>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(T, Duration), FetchError>>,
    {
        let seen = self.read(|s| s.attempts);
        self.fetch(seen, true, fetch).await;
        self.read(|s| match (&s.last_error, &s.value) {
            (None, Some(value)) => Ok(value.clone()),
            (err, _) => Err(Unavailable(err.clone())),
        })
    }

    fn usable(&self, s: &Slot<T>, now: Instant) -> Result<Arc<T>, Unavailable> {
        if let (Some(value), Some(fetched_at)) = (&s.value, s.fetched_at) {
            let age = now.duration_since(fetched_at);
            if age < s.ttl.saturating_add(self.rules.stale_if_error) {
                if age >= s.ttl {
                    tracing::warn!(target: "mcp_oauth::fetch", age_secs = age.as_secs(), "serving a stale copy: refresh is failing");
                }
                return Ok(value.clone());
            }
        }
        Err(Unavailable(s.last_error.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FetchErrorKind;

    fn rules() -> RefreshRules {
        RefreshRules {
            stale_if_error: Duration::from_secs(3600),
            retry_after_error: Duration::from_secs(5),
        }
    }

    fn down() -> FetchError {
        FetchError {
            url: "http://127.0.0.1/x".into(),
            kind: FetchErrorKind::Status(500),
        }
    }

    #[tokio::test]
    async fn concurrent_misses_fetch_once() {
        let r = Arc::new(Refreshing::<u32>::new(rules()));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move {
                    r.get(
                        || async {
                            tokio::task::yield_now().await;
                            Ok((7, Duration::from_secs(60)))
                        },
                        |_| false,
                        Duration::ZERO,
                    )
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(*t.await.expect("task").expect("value"), 7);
        }
        assert_eq!(r.fetch_count(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_value_is_served_while_down_then_expires() {
        let r = Refreshing::<u32>::new(rules());
        r.refresh_now(|| async { Ok((1, Duration::from_secs(60))) })
            .await
            .expect("first fetch");
        tokio::time::advance(Duration::from_secs(61)).await;
        let got = r
            .get(|| async { Err(down()) }, |_| false, Duration::ZERO)
            .await;
        assert_eq!(*got.expect("stale copy"), 1);
        // Within the back-off no new attempt is made.
        let before = r.fetch_count();
        let _ = r
            .get(|| async { Err(down()) }, |_| false, Duration::ZERO)
            .await;
        assert_eq!(r.fetch_count(), before);
        tokio::time::advance(Duration::from_secs(3600)).await;
        let got = r
            .get(|| async { Err(down()) }, |_| false, Duration::ZERO)
            .await;
        assert!(got.is_err(), "beyond stale-if-error the value is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_value_is_served_while_another_caller_refreshes() {
        let r = Arc::new(Refreshing::<u32>::new(rules()));
        r.refresh_now(|| async { Ok((1, Duration::from_secs(60))) })
            .await
            .expect("first fetch");
        tokio::time::advance(Duration::from_secs(61)).await;
        let (entered, started) = tokio::sync::oneshot::channel::<()>();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let refreshing = {
            let r = r.clone();
            tokio::spawn(async move {
                r.get(
                    || async move {
                        let _ = entered.send(());
                        let _ = released.await;
                        Ok((2, Duration::from_secs(60)))
                    },
                    |_| false,
                    Duration::ZERO,
                )
                .await
            })
        };
        started.await.expect("the refresh started");
        let got = r
            .get(
                || async { Ok((3, Duration::from_secs(60))) },
                |_| false,
                Duration::ZERO,
            )
            .await;
        assert_eq!(
            *got.expect("stale copy"),
            1,
            "served at once, not after the refresh"
        );
        let _ = release.send(());
        assert_eq!(*refreshing.await.expect("task").expect("fresh"), 2);
        assert_eq!(r.fetch_count(), 2, "still one fetch at a time");
    }

    #[tokio::test(start_paused = true)]
    async fn wants_more_respects_the_cooldown() {
        let r = Refreshing::<u32>::new(rules());
        r.refresh_now(|| async { Ok((1, Duration::from_secs(600))) })
            .await
            .expect("fetch");
        let _ = r
            .get(
                || async { Ok((2, Duration::from_secs(600))) },
                |_| true,
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(r.fetch_count(), 1, "cooldown not passed");
        tokio::time::advance(Duration::from_secs(31)).await;
        let got = r
            .get(
                || async { Ok((2, Duration::from_secs(600))) },
                |_| true,
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(*got.expect("value"), 2);
        assert_eq!(r.fetch_count(), 2);
    }
}
