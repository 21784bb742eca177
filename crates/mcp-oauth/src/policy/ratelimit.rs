//! Per user and tool rate limits: token buckets, in memory or shared through the store.
//!
//! A limit (`[[policy.rate_limit]]`) names tools (names or globs), a rate (`10/minute`) and a
//! burst. Each user (or, with `per = "tool"`, everyone together) has one bucket per limit and
//! tool: it holds `burst` calls and refills one call every `period / count`.
//!
//! The bucket is kept as *slots*: time is cut into intervals of `period / count`, and a call
//! at time `t` may take any free slot among the `burst` slots that start with the current
//! one. That is the token bucket (GCRA) exactly: a full bucket is `burst` free slots, and
//! every interval that passes frees one more. With a store ([`RateLimiter::shared`]) a slot
//! is taken with [`Store::put_if_absent`], so every instance that shares the store shares
//! the bucket, and two instances racing for the last slot cannot both win. Without one
//! ([`RateLimiter::new`]) the slots are counted in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(feature = "auth-server")]
use crate::auth_server::store::{Kind, Store, StoreError};

use super::glob::glob;

/// A rate: `count` calls per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u64,
    period_ms: u64,
}

impl Rate {
    /// `count` calls per `period` (`None` when either is zero, or the period is under a
    /// millisecond).
    pub fn new(count: u32, period: Duration) -> Option<Self> {
        let period_ms = u64::try_from(period.as_millis()).ok()?;
        (count > 0 && period_ms > 0).then_some(Self {
            count: u64::from(count),
            period_ms,
        })
    }

    /// Reads `N/second`, `N/minute`, `N/hour` or `N/day` (also `N/s`, `N/min`, `N/h`, `N/d`).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong and what is expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "the rate `{text}` must read like `10/minute` (N/second, N/minute, N/hour or N/day, N > 0)"
            )
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let seconds = match unit.trim() {
            "second" | "s" | "sec" => 1,
            "minute" | "min" | "m" => 60,
            "hour" | "h" => 3600,
            "day" | "d" => 86_400,
            _ => return Err(bad()),
        };
        Self::new(count, Duration::from_secs(seconds)).ok_or_else(bad)
    }

    /// The slot that holds time `ms`.
    fn slot(self, ms: u64) -> u64 {
        let slot = u128::from(ms) * u128::from(self.count) / u128::from(self.period_ms);
        u64::try_from(slot).unwrap_or(u64::MAX)
    }

    /// When slot `slot` ends (Unix milliseconds, rounded up).
    fn slot_end(self, slot: u64) -> u64 {
        let end = (u128::from(slot) + 1) * u128::from(self.period_ms);
        u64::try_from(end.div_ceil(u128::from(self.count))).unwrap_or(u64::MAX)
    }
}

/// Whose calls share a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Per {
    /// Each user has a bucket for each tool (the default).
    #[default]
    User,
    /// All users share one bucket for each tool.
    Tool,
}

/// One limit: which tools, whose bucket, how fast, how much burst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub(crate) id: String,
    pub(crate) tools: Vec<String>,
    pub(crate) per: Per,
    pub(crate) rate: Rate,
    pub(crate) burst: u32,
}

impl RateLimit {
    /// A limit named `id` on `tools` (names or globs; `*` for all), `rate` per user, with a
    /// burst of as many calls as the rate's count.
    pub fn new<I, S>(id: impl Into<String>, tools: I, rate: Rate) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            id: id.into(),
            tools: tools.into_iter().map(Into::into).collect(),
            per: Per::User,
            rate,
            burst: u32::try_from(rate.count).unwrap_or(u32::MAX),
        }
    }

    /// How many calls may come at once (at least 1).
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// Whose calls share a bucket.
    #[must_use]
    pub fn per(mut self, per: Per) -> Self {
        self.per = per;
        self
    }

    /// The limit's id (for audit lines and errors).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the limit applies to `tool`.
    pub fn covers(&self, tool: &str) -> bool {
        self.tools.iter().any(|pattern| glob(pattern, tool))
    }
}

/// A call refused by a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The id of the limit that refused it.
    pub limit: String,
    /// How long until the bucket holds a call again.
    pub retry_after: Duration,
}

/// Why a call was not admitted.
#[derive(Debug)]
#[non_exhaustive]
pub enum RateLimitError {
    /// Over a limit.
    Limited(Limited),
    /// The store could not be asked (the call is refused: a limit that cannot be checked is
    /// not waived).
    #[cfg(feature = "auth-server")]
    Store(StoreError),
}

impl std::fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Limited(l) => write!(
                f,
                "rate limit `{}` reached: retry in {} s",
                l.limit,
                l.retry_after.as_secs_f64().ceil()
            ),
            #[cfg(feature = "auth-server")]
            Self::Store(e) => write!(f, "the rate limit cannot be checked: {e}"),
        }
    }
}

impl std::error::Error for RateLimitError {}

type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

enum Backend {
    /// Bucket key → the lowest slot not yet taken.
    Memory,
    /// Slots are store records; the map only remembers, per bucket, slots known taken.
    #[cfg(feature = "auth-server")]
    Store(Arc<dyn Store>),
}

/// Checks calls against the [`RateLimit`]s: one token bucket per limit, tool and user (or per
/// limit and tool), in memory or shared through a store (`docs/policy.md`, "Rate limits").
///
/// ```
/// use mcp_oauth::policy::{Rate, RateLimit, RateLimiter};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let limiter = RateLimiter::new(vec![
///     RateLimit::new("writes", ["write_*"], Rate::parse("10/minute").unwrap()).burst(2),
/// ]);
/// assert!(limiter.check("alice", "write_file").await.is_ok());
/// assert!(limiter.check("alice", "write_file").await.is_ok());
/// assert!(limiter.check("alice", "write_file").await.is_err());
/// assert!(limiter.check("bob", "write_file").await.is_ok());
/// assert!(limiter.check("alice", "read_file").await.is_ok());
/// # });
/// ```
pub struct RateLimiter {
    limits: Vec<RateLimit>,
    backend: Backend,
    next: Mutex<HashMap<String, u64>>,
    clock: Clock,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Buckets kept in memory before the ones that are full again are forgotten.
const SWEEP_ABOVE: usize = 10_000;

fn system_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl RateLimiter {
    /// Buckets in this process's memory (one instance).
    pub fn new(limits: Vec<RateLimit>) -> Self {
        Self {
            limits,
            backend: Backend::Memory,
            next: Mutex::new(HashMap::new()),
            clock: Arc::new(system_ms),
        }
    }

    /// Buckets shared by every instance that uses `store`.
    #[cfg(feature = "auth-server")]
    pub fn shared(limits: Vec<RateLimit>, store: Arc<dyn Store>) -> Self {
        Self {
            backend: Backend::Store(store),
            ..Self::new(limits)
        }
    }

    /// Reads the time (Unix milliseconds) from `clock` instead of the system clock (tests).
    /// With a store, keep it at or ahead of the real time: the store lets a slot lapse by its
    /// own clock.
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The limits.
    pub fn limits(&self) -> &[RateLimit] {
        &self.limits
    }

    /// Whether any limit applies to `tool`.
    pub fn covers(&self, tool: &str) -> bool {
        self.limits.iter().any(|l| l.covers(tool))
    }

    /// Counts a call of `tool` by `subject` against every limit that covers it.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::Limited`] when a limit's bucket is empty (the call must not be made),
    /// or the store failed.
    ///
    /// A call refused by one limit is not counted by the others: the slots it took from the
    /// limits checked before are given back.
    pub async fn check(&self, subject: &str, tool: &str) -> Result<(), RateLimitError> {
        let mut taken = Vec::new();
        for limit in self.limits.iter().filter(|l| l.covers(tool)) {
            let who = match limit.per {
                Per::User => subject,
                Per::Tool => "",
            };
            let key = serde_json::json!([limit.id, who, tool]).to_string();
            match self.take(limit, &key).await {
                Ok(slot) => taken.push((key, slot)),
                Err(refused) => {
                    for (key, slot) in taken.iter().rev() {
                        self.give_back(key, *slot).await;
                    }
                    return Err(refused);
                }
            }
        }
        Ok(())
    }

    /// Frees `slot` of the bucket `key`, taken by a call that another limit refused. In
    /// memory a slot can be given back only while it is the last one taken (the bucket is
    /// kept as the next free slot); a later call's slot stays taken, which errs on the side
    /// of counting. A store that fails keeps the slot too.
    async fn give_back(&self, key: &str, slot: u64) {
        {
            let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(entry) = next.get_mut(key)
                && *entry == slot + 1
            {
                *entry = slot;
            }
        }
        match &self.backend {
            Backend::Memory => {}
            #[cfg(feature = "auth-server")]
            Backend::Store(store) => {
                if let Err(error) = store.take(Kind::RateLimit, &format!("{key}#{slot}")).await {
                    tracing::warn!(%error, "a rate-limit slot could not be given back");
                }
            }
        }
    }

    /// The first slot worth trying for `key`, and the window's end.
    fn window(&self, limit: &RateLimit, key: &str, now: u64) -> (u64, u64) {
        let current = limit.rate.slot(now);
        let end = current.saturating_add(u64::from(limit.burst));
        let next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let first = next.get(key).copied().unwrap_or(0).max(current);
        (first, end)
    }

    fn taken_up_to(&self, key: &str, next_free: u64, now_slot: u64) {
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = next.entry(key.to_owned()).or_insert(0);
        *entry = (*entry).max(next_free);
        if next.len() > SWEEP_ABOVE {
            // A bucket whose slots are all in the past is full: forgetting it changes nothing.
            next.retain(|_, slot| *slot > now_slot);
        }
    }

    /// Takes a free slot of the bucket `key`: the slot taken, or why not.
    async fn take(&self, limit: &RateLimit, key: &str) -> Result<u64, RateLimitError> {
        let now = (self.clock)();
        let current = limit.rate.slot(now);
        let (first, end) = self.window(limit, key, now);
        let mut slot = first;
        while slot < end {
            if self.claim(limit, key, slot).await? {
                self.taken_up_to(key, slot + 1, current);
                return Ok(slot);
            }
            slot += 1;
        }
        self.taken_up_to(key, end, current);
        Err(RateLimitError::Limited(Limited {
            limit: limit.id.clone(),
            retry_after: Duration::from_millis(limit.rate.slot_end(current).saturating_sub(now)),
        }))
    }

    /// Takes `slot` of the bucket `key`: `false` when another call took it.
    #[allow(clippy::unused_async)] // without a store nothing is awaited
    async fn claim(&self, limit: &RateLimit, key: &str, slot: u64) -> Result<bool, RateLimitError> {
        match &self.backend {
            // In memory, every slot from `next` on is free.
            Backend::Memory => {
                let _ = limit;
                let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
                let entry = next.entry(key.to_owned()).or_insert(0);
                if *entry > slot {
                    return Ok(false);
                }
                *entry = slot + 1;
                Ok(true)
            }
            #[cfg(feature = "auth-server")]
            Backend::Store(store) => {
                let lapses = limit.rate.slot_end(slot).div_ceil(1000).saturating_add(1);
                store
                    .put_if_absent(
                        Kind::RateLimit,
                        &format!("{key}#{slot}"),
                        Vec::new(),
                        Some(i64::try_from(lapses).unwrap_or(i64::MAX)),
                    )
                    .await
                    .map_err(RateLimitError::Store)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn rate(text: &str) -> Rate {
        Rate::parse(text).expect("rate")
    }

    fn clock() -> (Arc<AtomicU64>, impl Fn() -> u64 + Send + Sync + 'static) {
        // On the next minute boundary: slots lapse by the store's (real) clock, so the test's
        // time must not lag behind it.
        let now = Arc::new(AtomicU64::new(system_ms().div_ceil(60_000) * 60_000));
        let read = now.clone();
        (now, move || read.load(Ordering::SeqCst))
    }

    fn limited(result: Result<(), RateLimitError>) -> Limited {
        match result {
            Err(RateLimitError::Limited(l)) => l,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn rates_read_like_ten_per_minute() {
        assert_eq!(
            rate("10/minute"),
            Rate::new(10, Duration::from_secs(60)).expect("rate")
        );
        assert_eq!(
            rate(" 3 / s "),
            Rate::new(3, Duration::from_secs(1)).expect("rate")
        );
        assert_eq!(rate("100/hour").period_ms, 3_600_000);
        assert_eq!(rate("1/day").period_ms, 86_400_000);
        for bad in [
            "",
            "10",
            "0/minute",
            "-1/minute",
            "ten/minute",
            "10/fortnight",
            "10/",
        ] {
            let err = Rate::parse(bad).expect_err(bad);
            assert!(err.contains("10/minute"), "{err}");
        }
    }

    async fn burst_then_refusal_then_refill(limiter: RateLimiter, now: &AtomicU64) {
        for _ in 0..5 {
            limiter
                .check("alice", "write_file")
                .await
                .expect("within the burst");
        }
        let refused = limited(limiter.check("alice", "write_file").await);
        assert_eq!(refused.limit, "writes");
        assert_eq!(refused.retry_after, Duration::from_secs(6));
        // Another user, another tool, an uncovered tool: their own buckets.
        limiter
            .check("bob", "write_file")
            .await
            .expect("bob's bucket is full");
        limiter
            .check("alice", "write_other")
            .await
            .expect("another tool");
        for _ in 0..20 {
            limiter
                .check("alice", "read_file")
                .await
                .expect("not limited");
        }
        // 4 s later: still nothing, 2 s to wait.
        now.fetch_add(4_000, Ordering::SeqCst);
        let refused = limited(limiter.check("alice", "write_file").await);
        assert_eq!(refused.retry_after, Duration::from_secs(2));
        // 6 s after the burst one call came back, and only one.
        now.fetch_add(2_000, Ordering::SeqCst);
        limiter
            .check("alice", "write_file")
            .await
            .expect("refilled one");
        limited(limiter.check("alice", "write_file").await);
        // A minute later the bucket is full again (5, not 10: the burst caps it).
        now.fetch_add(60_000, Ordering::SeqCst);
        for _ in 0..5 {
            limiter
                .check("alice", "write_file")
                .await
                .expect("full again");
        }
        limited(limiter.check("alice", "write_file").await);
    }

    fn writes() -> Vec<RateLimit> {
        vec![RateLimit::new("writes", ["write_*"], rate("10/minute")).burst(5)]
    }

    #[tokio::test]
    async fn memory_buckets_hold_the_burst_and_refill_at_the_rate() {
        let (now, read) = clock();
        burst_then_refusal_then_refill(RateLimiter::new(writes()).clock(read), &now).await;
    }

    #[cfg(feature = "auth-server")]
    #[tokio::test]
    async fn store_buckets_hold_the_burst_and_refill_at_the_rate() {
        let (now, read) = clock();
        let store: Arc<dyn Store> = Arc::new(crate::auth_server::store::MemoryStore::new());
        let limiter = RateLimiter::shared(writes(), store).clock(read);
        burst_then_refusal_then_refill(limiter, &now).await;
    }

    #[cfg(feature = "auth-server")]
    #[tokio::test]
    async fn instances_on_one_store_share_the_bucket() {
        let (now, read) = clock();
        let read = Arc::new(read);
        let store: Arc<dyn Store> = Arc::new(crate::auth_server::store::MemoryStore::new());
        let (ra, rb) = (read.clone(), read.clone());
        let a = RateLimiter::shared(writes(), store.clone()).clock(move || ra());
        let b = RateLimiter::shared(writes(), store).clock(move || rb());
        for i in 0..5 {
            let limiter = if i % 2 == 0 { &a } else { &b };
            limiter
                .check("alice", "write_file")
                .await
                .expect("within the burst");
        }
        limited(a.check("alice", "write_file").await);
        limited(b.check("alice", "write_file").await);
        now.fetch_add(6_000, Ordering::SeqCst);
        b.check("alice", "write_file").await.expect("refilled one");
        limited(a.check("alice", "write_file").await);
    }

    #[tokio::test]
    async fn per_tool_limits_are_shared_by_all_users() {
        let (_now, read) = clock();
        let limiter = RateLimiter::new(vec![
            RateLimit::new("search", ["search"], rate("2/second")).per(Per::Tool),
        ])
        .clock(read);
        limiter.check("alice", "search").await.expect("one");
        limiter.check("bob", "search").await.expect("two");
        let refused = limited(limiter.check("carol", "search").await);
        assert_eq!(refused.retry_after, Duration::from_millis(500));
    }

    #[tokio::test]
    async fn every_covering_limit_counts() {
        // On the hour.
        let read = || 3_600_000 * 490_000;
        let limiter = RateLimiter::new(vec![
            RateLimit::new("all", ["*"], rate("100/minute")),
            RateLimit::new("deletes", ["delete_*"], rate("1/hour")),
        ])
        .clock(read);
        limiter.check("alice", "delete_file").await.expect("first");
        let refused = limited(limiter.check("alice", "delete_file").await);
        assert_eq!(refused.limit, "deletes");
        assert_eq!(refused.retry_after, Duration::from_secs(3600));
        assert!(limiter.covers("read_file") && !limiter.limits().is_empty());
    }

    /// Two limits on one tool: calls the second refuses must not use up the first.
    async fn a_refused_call_gives_its_slots_back(limiter: RateLimiter, now: &AtomicU64) {
        limiter.check("alice", "delete_file").await.expect("first");
        for _ in 0..3 {
            let refused = limited(limiter.check("alice", "delete_file").await);
            assert_eq!(refused.limit, "once-a-minute");
        }
        // Without the slots given back, the daily bucket (3) would be empty now.
        for _ in 0..2 {
            now.fetch_add(60_000, Ordering::SeqCst);
            limiter
                .check("alice", "delete_file")
                .await
                .expect("the daily bucket still holds it");
        }
        now.fetch_add(60_000, Ordering::SeqCst);
        let refused = limited(limiter.check("alice", "delete_file").await);
        assert_eq!(refused.limit, "three-a-day");
    }

    fn two_limits() -> (Arc<AtomicU64>, RateLimiter) {
        // On the next day boundary, so that no 8-hour slot starts during the test (and the
        // test's time is ahead of the store's clock).
        let now = Arc::new(AtomicU64::new(
            system_ms().div_ceil(86_400_000) * 86_400_000,
        ));
        let read = now.clone();
        let limiter = RateLimiter::new(vec![
            RateLimit::new("three-a-day", ["delete_*"], rate("3/day")),
            RateLimit::new("once-a-minute", ["delete_*"], rate("1/minute")),
        ])
        .clock(move || read.load(Ordering::SeqCst));
        (now, limiter)
    }

    #[tokio::test]
    async fn memory_buckets_give_back_what_a_refused_call_took() {
        let (now, limiter) = two_limits();
        a_refused_call_gives_its_slots_back(limiter, &now).await;
    }

    #[cfg(feature = "auth-server")]
    #[tokio::test]
    async fn store_buckets_give_back_what_a_refused_call_took() {
        let (now, limiter) = two_limits();
        let store: Arc<dyn Store> = Arc::new(crate::auth_server::store::MemoryStore::new());
        let limiter = RateLimiter {
            backend: Backend::Store(store),
            ..limiter
        };
        a_refused_call_gives_its_slots_back(limiter, &now).await;
    }

    #[test]
    fn the_policy_file_holds_rate_limits() {
        let config = crate::policy::PolicyConfig::from_toml(
            r#"
[policy]

[[policy.rate_limit]]
tools = ["write_*", "delete_*"]
per = "user"
rate = "10/minute"
burst = 5

[[policy.rate_limit]]
id = "search"
tools = ["search"]
per = "tool"
rate = "2/second"
"#,
            "policy.toml",
        )
        .expect("policy");
        assert_eq!(
            config.rate_limits(),
            [
                RateLimit::new("rate_limit_1", ["write_*", "delete_*"], rate("10/minute")).burst(5),
                RateLimit::new("search", ["search"], rate("2/second")).per(Per::Tool),
            ]
        );
        for (bad, says) in [
            ("tools = [\"x\"]\nrate = \"10/fortnight\"", "10/minute"),
            (
                "tools = [\"x\"]\nrate = \"1/s\"\nper = \"team\"",
                "per \"user\"",
            ),
            ("tools = []\nrate = \"1/s\"", "needs `tools`"),
            ("tools = [\"x\"]\nrate = \"1/s\"\nburst = 0", "at least 1"),
            (
                "tools = [\"x\"]\nrate = \"1/s\"\nburstt = 1",
                "unknown field",
            ),
        ] {
            let text = format!("[policy]\n\n[[policy.rate_limit]]\n{bad}\n");
            let err = crate::policy::PolicyConfig::from_toml(&text, "p.toml")
                .expect_err(bad)
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
            assert!(err.contains("p.toml"), "{err}");
        }
    }

    #[test]
    fn a_pattern_that_matches_no_tool_is_an_error() {
        use crate::policy::{Catalog, Policy, PolicyConfig, ToolInfo};
        let catalog = || {
            Catalog::new().tool(ToolInfo::new(
                "write_file",
                serde_json::json!({"type": "object"}),
            ))
        };
        let limited = |tools: &[&str]| {
            PolicyConfig::new().rate_limit(RateLimit::new("w", tools.iter().copied(), rate("1/s")))
        };
        assert!(Policy::new(limited(&["write_*"]), catalog()).is_ok());
        let err = Policy::new(limited(&["write_*", "wrte_file"]), catalog())
            .expect_err("a typo")
            .to_string();
        assert!(
            err.contains("`wrte_file` matches no tool") && !err.contains("write_*"),
            "{err}"
        );
    }
}
