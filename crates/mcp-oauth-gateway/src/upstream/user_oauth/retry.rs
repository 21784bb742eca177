//! Waiting out an upstream authorization server that is down, so that every request of every
//! user does not ask it again:
//!
//! - a **failed discovery** (metadata unreachable, refused, unusable) is remembered for
//!   [`DISCOVERY_RETRY`]: requests meanwhile fail at once with the same reason, then the next
//!   one discovers again;
//! - a **refresh that failed** with a 5xx or a network error backs that user off for
//!   [`REFRESH_BACKOFF`]: their requests meanwhile use the access token while it has not
//!   expired, or fail at once saying when the gateway tries again. A 4xx is not a failure
//!   of the server (the grant is dropped, as before), and a new grant (the user connected
//!   again) is not backed off.
//!
//! Both are kept in this process's memory: each instance asks at most once per period.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How long a failed discovery is remembered before the server is asked again.
pub(crate) const DISCOVERY_RETRY: Duration = Duration::from_secs(30);
/// How long a user's refresh waits after the token endpoint failed (5xx, network).
pub(crate) const REFRESH_BACKOFF: Duration = Duration::from_secs(30);

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The last failed discovery: why, and until when it stands (Unix seconds).
#[derive(Default)]
pub(crate) struct FailedDiscovery(Mutex<Option<(i64, String)>>);

impl FailedDiscovery {
    /// Why discovery failed lately, with when it is tried again, if it did.
    pub(crate) fn recent(&self, now: i64) -> Option<String> {
        let last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref()
            .filter(|(until, _)| *until > now)
            .map(|(until, why)| {
                format!(
                    "{why} (the gateway asks it again in {} s)",
                    until.saturating_sub(now)
                )
            })
    }

    pub(crate) fn record(&self, now: i64, why: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((now.saturating_add(seconds(DISCOVERY_RETRY)), why));
    }
}

/// Per user, the refresh token whose refresh failed (its SHA-256) and until when (Unix
/// seconds) it is not tried again.
pub(crate) struct Backoff(moka::sync::Cache<Arc<str>, (Arc<[u8]>, i64)>);

impl Default for Backoff {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REFRESH_BACKOFF)
                .build(),
        )
    }
}

impl Backoff {
    /// Seconds left before `user`'s grant with `refresh_token` may be refreshed again, if it
    /// is backed off.
    pub(crate) fn wait(&self, user: &str, refresh_token: Option<&str>, now: i64) -> Option<i64> {
        let (failed, until) = self.0.get(user)?;
        let same = refresh_token.is_some_and(|r| *super::digest(r) == *failed);
        (same && until > now).then(|| until.saturating_sub(now))
    }

    pub(crate) fn failed(&self, user: &str, refresh_token: &str, now: i64) {
        self.0.insert(
            Arc::from(user),
            (
                super::digest(refresh_token),
                now.saturating_add(seconds(REFRESH_BACKOFF)),
            ),
        );
    }

    pub(crate) fn succeeded(&self, user: &str) {
        self.0.invalidate(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_discovery_stands_for_its_period_only() {
        let failed = FailedDiscovery::default();
        assert_eq!(failed.recent(100), None);
        failed.record(100, "down".into());
        let why = failed.recent(110).expect("remembered");
        assert!(
            why.starts_with("down (") && why.contains("again in 20 s"),
            "{why}"
        );
        assert_eq!(failed.recent(130), None);
    }

    #[test]
    fn a_backoff_is_per_user_and_refresh_token() {
        let backoff = Backoff::default();
        backoff.failed("alice", "r1", 100);
        assert_eq!(backoff.wait("alice", Some("r1"), 100), Some(30));
        assert_eq!(backoff.wait("alice", Some("r2"), 100), None, "a new grant");
        assert_eq!(backoff.wait("alice", None, 100), None);
        assert_eq!(backoff.wait("bob", Some("r1"), 100), None);
        assert_eq!(backoff.wait("alice", Some("r1"), 130), None);
        backoff.succeeded("alice");
        assert_eq!(backoff.wait("alice", Some("r1"), 101), None);
    }
}
