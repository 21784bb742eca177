//! Who may sign in at the authorization server, and how often a password may be guessed.

use std::time::Duration;

use aws_lc_rs::digest;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq as _;
use tokio::time::Instant;

use crate::secret::Secret;
use crate::verify::BoxFuture;

/// A signed-in user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserIdentity {
    /// The stable subject (`sub`).
    pub subject: String,
    /// Identity claims put into access tokens (`email`, `name`, `preferred_username`, …).
    pub claims: Map<String, Value>,
}

/// Checks credentials typed into the login page.
pub trait LoginBackend: Send + Sync + 'static {
    /// The user for this user name and password, if they match.
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Option<UserIdentity>>;

    /// The user an auto-approving server signs in as.
    fn auto_login(&self) -> Option<UserIdentity>;
}

struct DevUser {
    username: String,
    password: Secret,
    identity: UserIdentity,
}

/// Development users from flags or a file. The default has one user, `dev` with password
/// `dev`.
pub struct DevUsers {
    users: Vec<DevUser>,
}

impl std::fmt::Debug for DevUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.users.iter().map(|u| &u.username))
            .finish()
    }
}

impl Default for DevUsers {
    fn default() -> Self {
        Self::new().user("dev", "dev")
    }
}

impl DevUsers {
    /// No users.
    pub fn new() -> Self {
        Self { users: Vec::new() }
    }

    /// Adds a user whose subject is its name, with `preferred_username`, `name` and an
    /// `email` of `<name>@example.com`.
    #[must_use]
    pub fn user(mut self, username: &str, password: &str) -> Self {
        let mut claims = Map::new();
        claims.insert("preferred_username".into(), username.into());
        claims.insert("name".into(), username.into());
        claims.insert("email".into(), format!("{username}@example.com").into());
        self.users.push(DevUser {
            username: username.to_owned(),
            password: Secret::from(password),
            identity: UserIdentity {
                subject: username.to_owned(),
                claims,
            },
        });
        self
    }

    /// The user names.
    pub fn usernames(&self) -> Vec<&str> {
        self.users.iter().map(|u| u.username.as_str()).collect()
    }
}

impl LoginBackend for DevUsers {
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Option<UserIdentity>> {
        // Compare every user's name and password in constant time (as SHA-256 digests, so
        // that not even their lengths show), so timing tells nothing.
        let sha = |bytes: &[u8]| digest::digest(&digest::SHA256, bytes);
        let (name, pass) = (sha(username.as_bytes()), sha(password.as_bytes()));
        let mut found = None;
        for user in &self.users {
            let name_ok = sha(user.username.as_bytes()).as_ref().ct_eq(name.as_ref());
            let pass_ok = sha(user.password.expose()).as_ref().ct_eq(pass.as_ref());
            if bool::from(name_ok & pass_ok) {
                found = Some(user.identity.clone());
            }
        }
        Box::pin(std::future::ready(found))
    }

    fn auto_login(&self) -> Option<UserIdentity> {
        self.users.first().map(|u| u.identity.clone())
    }
}

/// Failed sign-ins at the login form that lock a pending request.
pub(crate) const LOCK_AFTER: u32 = 5;
/// Failures that cost no wait (a typo, then the right password, goes through at once).
const FREE_FAILURES: u32 = 2;
/// The longest wait between two tries of one account.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// The wait after the `count`-th failure: none for the first [`FREE_FAILURES`], then 1 s,
/// 2 s, 4 s, … up to [`MAX_DELAY`].
fn delay(count: u32) -> Duration {
    match count.checked_sub(FREE_FAILURES + 1) {
        None => Duration::ZERO,
        Some(doublings) => Duration::from_secs(1u64 << doublings.min(16)).min(MAX_DELAY),
    }
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    next_allowed_at: Instant,
}

/// Backs off password guessing at the login form (F5): after the n-th failure for an account
/// (the user name as typed, known or not, so the answer never tells whether it exists) or for
/// a pending request, the next try waits [`delay`]`(n)` (none for the first two, then 1 s
/// doubling up to 5 minutes); the [`LOCK_AFTER`]-th failure of a request ends it. A success
/// clears the account's count.
///
/// Kept in memory, per instance: instances sharing a store each count on their own.
pub(crate) struct Throttle {
    failures: moka::sync::Cache<String, Failures>,
}

impl Throttle {
    pub(crate) fn new() -> Self {
        Self {
            failures: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    fn account_key(username: &str) -> String {
        format!("account\u{0}{}", username.trim().to_lowercase())
    }

    fn request_key(request_id: &str) -> String {
        format!("request\u{0}{request_id}")
    }

    /// How long until this account and this request may try again (zero: now).
    pub(crate) fn wait(&self, username: &str, request_id: &str) -> Duration {
        let now = Instant::now();
        [Self::account_key(username), Self::request_key(request_id)]
            .iter()
            .filter_map(|key| self.failures.get(key))
            .map(|f| f.next_allowed_at.saturating_duration_since(now))
            .max()
            .unwrap_or_default()
    }

    /// Counts a failure for the account and the request; `true` when the request is now
    /// locked.
    pub(crate) fn fail(&self, username: &str, request_id: &str) -> bool {
        let now = Instant::now();
        let mut request_failures = 0;
        for key in [Self::account_key(username), Self::request_key(request_id)] {
            let is_request = key.starts_with("request");
            let entry = self.failures.entry(key).and_upsert_with(|previous| {
                let count = previous.map_or(0, |e| e.into_value().count) + 1;
                Failures {
                    count,
                    next_allowed_at: now + delay(count),
                }
            });
            if is_request {
                request_failures = entry.into_value().count;
            }
        }
        request_failures >= LOCK_AFTER
    }

    /// A success: the account starts afresh.
    pub(crate) fn succeed(&self, username: &str) {
        self.failures.invalidate(&Self::account_key(username));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_per_account_and_lock_the_request() {
        let throttle = Throttle::new();
        assert_eq!(throttle.wait("alice", "r1"), Duration::ZERO);
        for _ in 0..FREE_FAILURES {
            assert!(!throttle.fail("alice", "r1"));
            assert_eq!(throttle.wait("alice", "r1"), Duration::ZERO);
        }
        assert!(!throttle.fail("alice", "r1"));
        assert_eq!(throttle.wait("alice", "r1"), Duration::from_secs(1));
        assert_eq!(
            throttle.wait("ALICE ", "r2"),
            Duration::from_secs(1),
            "per account"
        );
        assert_eq!(
            throttle.wait("bob", "r1"),
            Duration::from_secs(1),
            "per request"
        );
        assert_eq!(throttle.wait("bob", "r2"), Duration::ZERO);
        for n in FREE_FAILURES + 2..LOCK_AFTER {
            tokio::time::advance(throttle.wait("alice", "r1")).await;
            assert!(!throttle.fail("alice", "r1"));
            assert_eq!(throttle.wait("alice", "r1"), delay(n));
        }
        tokio::time::advance(throttle.wait("alice", "r1")).await;
        assert!(throttle.fail("alice", "r1"), "locked");
        throttle.succeed("alice");
        assert_eq!(throttle.wait("alice", "r3"), Duration::ZERO);
        assert_eq!(
            (1..=9).map(|n| delay(n).as_secs()).collect::<Vec<_>>(),
            [0, 0, 1, 2, 4, 8, 16, 32, 64]
        );
        assert_eq!(delay(40), MAX_DELAY);
    }

    #[tokio::test]
    async fn dev_users_match_name_and_password_exactly() {
        let users = DevUsers::new().user("alice", "secret").user("bob", "other");
        assert_eq!(
            users
                .authenticate("alice", "secret")
                .await
                .map(|u| u.subject),
            Some("alice".to_owned())
        );
        for (name, password) in [
            ("alice", "other"),
            ("alice", "secret "),
            ("alice", ""),
            ("bob", "secret"),
            ("mallory", "secret"),
        ] {
            assert!(users.authenticate(name, password).await.is_none());
        }
    }
}
