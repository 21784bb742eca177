//! The Redis store (feature `redis`): one state for several instances of the server, e.g.
//! behind a load balancer, on one Redis server or a Redis Cluster.
//!
//! The key layout, what is atomic and how to deploy it are documented on [`RedisStore`], where
//! the public docs show them (this module is private).

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use ::redis::cluster::ClusterClient;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisError, RedisFuture, Script};

use super::{Kind, Redeemed, Store, StoreError, StoreResult, Stored};
use crate::claims::now_unix;
use crate::verify::BoxFuture;

/// How long connecting (and reconnecting) may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one command may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest wait between two attempts to reconnect.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// The oldest Redis with every command the store sends (`HSET` of several fields, `EXPIREAT`
/// in scripts, `SET … EXAT`).
const MIN_VERSION: (u32, u32) = (6, 2);

/// The latest expiry sent to Redis (9999-12-31T23:59:59Z), which refuses absurd ones.
const MAX_EXPIRY: i64 = 253_402_300_799;

/// Saves a record: replaces the hash (dropping an old expiry) with `data`, `used` = 0 and, when
/// `ARGV[2]` is not empty, `exp` = `ARGV[2]` and the key's expiry `ARGV[3]`.
const PUT_LUA: &str = r"
redis.call('DEL', KEYS[1])
if ARGV[2] == '' then
  redis.call('HSET', KEYS[1], 'data', ARGV[1], 'used', '0')
else
  redis.call('HSET', KEYS[1], 'data', ARGV[1], 'used', '0', 'exp', ARGV[2])
  redis.call('EXPIREAT', KEYS[1], ARGV[3])
end
return 1
";

/// Saves a record as [`PUT_LUA`] does (`ARGV[1..3]`), unless a live one is there: one whose
/// `exp` is absent, empty, or a number after `ARGV[4]` (now, by the caller's clock). Returns 1
/// when it saved the record, 0 when a live one was there.
const PUT_IF_ABSENT_LUA: &str = r"
local record = redis.call('HMGET', KEYS[1], 'data', 'exp')
if record[1] then
  local exp = record[2]
  if not exp or exp == '' then
    return 0
  end
  local at = tonumber(exp)
  if at and at > tonumber(ARGV[4]) then
    return 0
  end
end
redis.call('DEL', KEYS[1])
if ARGV[2] == '' then
  redis.call('HSET', KEYS[1], 'data', ARGV[1], 'used', '0')
else
  redis.call('HSET', KEYS[1], 'data', ARGV[1], 'used', '0', 'exp', ARGV[2])
  redis.call('EXPIREAT', KEYS[1], ARGV[3])
end
return 1
";

/// Takes a record: returns `data` and `exp` (or '') and deletes the key, or nil when absent.
const TAKE_LUA: &str = r"
local record = redis.call('HMGET', KEYS[1], 'data', 'exp')
if not record[1] then
  return false
end
redis.call('DEL', KEYS[1])
return {record[1], record[2] or ''}
";

/// Redeems a record: reads `data`, `used` and `exp`, sets `used`, and returns all three (the
/// flag as it was), or nil when the key is absent.
const REDEEM_LUA: &str = r"
local record = redis.call('HMGET', KEYS[1], 'data', 'used', 'exp')
if not record[1] then
  return false
end
if record[2] ~= '1' then
  redis.call('HSET', KEYS[1], 'used', '1')
end
return {record[1], record[2] or '0', record[3] or ''}
";

/// Revokes a family until `ARGV[1]` (Unix seconds), unless it already is until then or later;
/// the key expires when the revocation ends.
const REVOKE_LUA: &str = r"
local current = tonumber(redis.call('GET', KEYS[1]))
local new = tonumber(ARGV[1])
if current and current >= new then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[1])
return 1
";

static PUT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_LUA));
static PUT_IF_ABSENT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT_IF_ABSENT_LUA));
static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(TAKE_LUA));
static REDEEM: LazyLock<Script> = LazyLock::new(|| Script::new(REDEEM_LUA));
static REVOKE: LazyLock<Script> = LazyLock::new(|| Script::new(REVOKE_LUA));

/// Keeps the authorization server's state in Redis (one server, or a Redis Cluster), so that
/// several instances of the server share clients, pending requests, codes, refresh tokens,
/// revocations, consents and proxy records.
///
/// Cloning is cheap and shares the connection. `Debug` shows the server addresses, database
/// and prefix, never the password.
///
/// # Key layout
///
/// Every key starts with the prefix given to [`RedisStore::connect`] (`mcp-oauth:` say), so
/// that several deployments can share one Redis, and ends with its own key in a hash tag
/// (`{…}`), so that on a Redis Cluster each record lives in one slot and the keys of one grant
/// family (`revoked:{<family>}`, `upstream_tokens:{<family>}`) share a slot.
///
/// | key | type | fields | Redis expires it at |
/// | --- | --- | --- | --- |
/// | `<kind>:{<key>}` | hash | `data`: the record (JSON), `used`: `0` or `1`, `exp`: its expiry (Unix seconds), absent when kept | `exp`, else never |
/// | `revoked:{<family>}` | string | `until` (Unix seconds) | `until` |
///
/// `<kind>` is [`Kind::as_str`] (`client`, `request`, `code`, `refresh`, `transaction`,
/// `upstream_tokens`, `consent`, `dpop_proof`); for codes and refresh tokens `<key>` is the
/// hash the caller passes (the SHA-256 of the value), never the value; for a DPoP proof it is
/// its [`ReplayKey`](crate::dpop::ReplayKey), so each proof has a slot of its own. Each record that lapses is written with
/// its expiry, so Redis forgets it by itself and nothing needs purging. Reads check `exp`
/// against this machine's clock too, so a record is never used past its time when the clocks
/// of Redis and the server disagree.
///
/// Keys written by releases before this layout (`client:<id>`, `code:<hash>`,
/// `entry:<kind>:<key>`, no hash tag) are not read: after such an upgrade clients register
/// again and users sign in again.
///
/// # Atomicity
///
/// Redis runs one command or Lua script at a time, for every client of the server (of the
/// slot's primary, on a cluster), and every script here touches one key, so these hold across
/// all instances that share it:
///
/// - Saving is one script (delete, write, set the expiry): a reader never sees half a record.
/// - Redeeming a code or refresh token is one script: it reads the record and its `used`
///   flag, sets the flag and returns both. Of any number of concurrent redemptions exactly one
///   sees the flag unset ([`Redeemed::Fresh`]); the others get [`Redeemed::Replayed`]. A used
///   record stays until it lapses, so a replay is reported as such and a rotated-out refresh
///   token still names its family.
/// - Taking a request or an entry is one script (read, delete): of two takes, one gets it.
/// - Saving a record only when absent (a DPoP proof's replay record) is one script: it reads
///   the record's `exp` and writes only when there is none or it lapsed, so of any number of
///   concurrent saves of one key exactly one writes.
/// - Revoking a family is one script that keeps the later of the stored and the new `until`,
///   so a revocation is never shortened.
///
/// # Deployment
///
/// - Redis 6.2 or newer, or Valkey; one server ([`RedisStore::connect`]) or a cluster
///   ([`RedisStore::cluster`]).
/// - Set `maxmemory-policy noeviction`: an evicted revocation lets a revoked grant's tokens
///   work again, and an evicted used code turns a replay into an unknown code.
/// - Durability is Redis's: without persistence (`appendonly yes`), a Redis restart forgets
///   every registered client and signs every user out. On a cluster, a write acknowledged by a
///   primary that fails before its replica has it is lost (Redis Cluster replicates
///   asynchronously): a used code may become unused again, a revocation may be forgotten.
/// - Instances that share a store must also share their signing keys and, in proxy mode, the
///   key that seals upstream tokens.
///
/// On one server the store talks over one multiplexed connection. [`RedisStore::connect`]
/// tries once, so a wrong address or password fails at once (connecting times out after 3
/// seconds). After a drop, the connection is made again on the next call, with up to 6
/// retries at most 2 seconds apart (exponential backoff) while calls wait; a call in flight
/// when it drops fails with a [`StoreError`]. Each command times out after 3 seconds. On a
/// cluster, the client follows `MOVED`/`ASK` redirections and reconnects by itself.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), mcp_oauth::auth_server::store::StoreError> {
/// use std::sync::Arc;
/// use mcp_oauth::auth_server::{Store, store::RedisStore};
///
/// let store: Arc<dyn Store> =
///     Arc::new(RedisStore::connect("redis://127.0.0.1:6379/0", "mcp-oauth:").await?);
/// let cluster: Arc<dyn Store> = Arc::new(
///     RedisStore::cluster(&["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"], "mcp-oauth:")
///         .await?,
/// );
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    target: Arc<Target>,
}

/// One server (reconnecting by itself) or a cluster.
#[derive(Clone)]
enum Conn {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, ::redis::Value> {
        match self {
            Self::One(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<::redis::Value>> {
        match self {
            Self::One(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::One(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Where the store points, for keys and `Debug`.
struct Target {
    prefix: String,
    /// `host:port` or the socket path of each node: no credentials.
    addrs: Vec<String>,
    db: i64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("RedisStore");
        match self.target.addrs.as_slice() {
            [one] => s.field("addr", one),
            many => s.field("cluster", &many),
        };
        s.field("db", &self.target.db)
            .field("prefix", &self.target.prefix)
            .finish()
    }
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[[user]:password@]host[:port][/db]`, or
    /// `redis+unix:///path`), and puts every key under `prefix` (e.g. `mcp-oauth:`; may be
    /// empty for a Redis of its own).
    ///
    /// The connection is made (and authenticated) before this returns, and is made again
    /// whenever it drops.
    ///
    /// # Errors
    ///
    /// The URL does not parse, or the server cannot be reached or refuses the credentials
    /// within 3 seconds. The message names the address, never the password.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = Client::open(url)
            .map_err(|e| StoreError::unavailable(format!("redis: invalid connection url: {e}")))?;
        let info = client.get_connection_info();
        let addr = info.addr().to_string();
        let db = info.redis_settings().db();
        let fail = |err: &dyn fmt::Display| {
            StoreError::unavailable(format!("redis: cannot connect to {addr}: {err}"))
        };
        // One plain attempt first: the connection manager retries every failure with backoff,
        // which would make a wrong address or password slow to report.
        let first = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut first = client
            .get_multiplexed_async_connection_with_config(&first)
            .await
            .map_err(|e| fail(&e))?;
        check_version(&mut first).await.map_err(|e| fail(&e))?;
        drop(first);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(MAX_RECONNECT_DELAY);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| fail(&e))?;
        let target = Target {
            prefix: prefix.to_owned(),
            addrs: vec![addr],
            db,
        };
        Ok(Self {
            conn: Conn::One(conn),
            target: Arc::new(target),
        })
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://[[user]:password@]host:port`
    /// each; every node must take the same credentials), and puts every key under `prefix`.
    ///
    /// The client reads the cluster's slot map from the first node that answers, connects to
    /// every primary, and follows the cluster as slots move.
    ///
    /// # Errors
    ///
    /// No URL is given, a URL does not parse, or no node can be reached (or they refuse the
    /// credentials) within 3 seconds. The message names the addresses, never the password.
    pub async fn cluster(urls: &[impl AsRef<str>], prefix: &str) -> Result<Self, StoreError> {
        let urls: Vec<&str> = urls.iter().map(AsRef::as_ref).collect();
        if urls.is_empty() {
            return Err(StoreError::unavailable(
                "redis: a cluster needs at least one node url",
            ));
        }
        let mut addrs = Vec::with_capacity(urls.len());
        for url in &urls {
            let client = Client::open(*url).map_err(|e| {
                StoreError::unavailable(format!("redis: invalid connection url: {e}"))
            })?;
            addrs.push(client.get_connection_info().addr().to_string());
        }
        let fail = |err: &dyn fmt::Display| {
            StoreError::unavailable(format!(
                "redis: cannot connect to the cluster at {}: {err}",
                addrs.join(", ")
            ))
        };
        let client = ClusterClient::builder(urls)
            .connection_timeout(CONNECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()
            .map_err(|e| fail(&e))?;
        let conn = client.get_async_connection().await.map_err(|e| fail(&e))?;
        let target = Target {
            prefix: prefix.to_owned(),
            addrs,
            db: 0,
        };
        Ok(Self {
            conn: Conn::Cluster(conn),
            target: Arc::new(target),
        })
    }

    /// Names a failure: "redis: cannot <what> <a record of kind>: <why>".
    fn fail(what: &str, kind: Option<Kind>, err: &RedisError) -> StoreError {
        let noun = kind.map_or("a revoked grant", Kind::noun);
        StoreError::unavailable(format!("redis: cannot {what} {noun}: {}", describe(err)))
    }
}

/// The full key of a record: the prefix, its kind and its key as the hash tag.
fn key(prefix: &str, kind: &str, key: &str) -> String {
    format!("{prefix}{kind}:{{{key}}}")
}

/// Refuses a server older than [`MIN_VERSION`]. A server that does not say (`INFO` denied by
/// an ACL, say) is let through: its first unknown command will tell.
async fn check_version(conn: &mut MultiplexedConnection) -> Result<(), String> {
    let Ok(info) = ::redis::cmd("INFO")
        .arg("server")
        .query_async::<String>(conn)
        .await
    else {
        return Ok(());
    };
    match server_version(&info) {
        Some(version) if version < MIN_VERSION => Err(format!(
            "redis {}.{} is too old: the store needs {}.{} or newer",
            version.0, version.1, MIN_VERSION.0, MIN_VERSION.1
        )),
        _ => Ok(()),
    }
}

/// The major and minor version in an `INFO server` reply.
fn server_version(info: &str) -> Option<(u32, u32)> {
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))?;
    let mut parts = version.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// A Unix time as a Redis expiry: at least 1 (Redis refuses 0 and below; any time in the past
/// drops the key at once) and at most [`MAX_EXPIRY`].
fn expiry(unix: i64) -> i64 {
    unix.clamp(1, MAX_EXPIRY)
}

/// Whether a stored `exp` field ('' or absent: kept) is after `now`. A field that is not a
/// number counts as lapsed.
fn live(exp: Option<&str>, now: i64) -> bool {
    match exp {
        None | Some("") => true,
        Some(exp) => exp.parse::<i64>().is_ok_and(|exp| exp > now),
    }
}

/// A Redis error, described without quoting a reply of an unexpected shape (it may be a
/// record): the category only.
fn describe(err: &RedisError) -> String {
    if matches!(
        err.kind(),
        ::redis::ErrorKind::Parse | ::redis::ErrorKind::UnexpectedReturnType
    ) {
        format!("unexpected reply ({})", err.category())
    } else {
        err.to_string()
    }
}

impl Store for RedisStore {
    fn put<'a>(
        &'a self,
        kind: Kind,
        id: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let key = key(&self.target.prefix, kind.as_str(), id);
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let mut call = PUT.key(key);
            call.arg(data);
            match expires_at {
                Some(at) => call.arg(at.to_string()).arg(expiry(at)),
                None => call.arg("").arg(0),
            };
            let _: i64 = call
                .invoke_async(&mut conn)
                .await
                .map_err(|e| Self::fail("save", Some(kind), &e))?;
            Ok(())
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        kind: Kind,
        id: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        let key = key(&self.target.prefix, kind.as_str(), id);
        let mut conn = self.conn.clone();
        let now = now_unix();
        Box::pin(async move {
            let mut call = PUT_IF_ABSENT.key(key);
            call.arg(data);
            match expires_at {
                Some(at) => call.arg(at.to_string()).arg(expiry(at)),
                None => call.arg("").arg(0),
            };
            call.arg(now);
            let saved: i64 = call
                .invoke_async(&mut conn)
                .await
                .map_err(|e| Self::fail("save", Some(kind), &e))?;
            Ok(saved == 1)
        })
    }

    fn get<'a>(&'a self, kind: Kind, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Stored>>> {
        let key = key(&self.target.prefix, kind.as_str(), id);
        let mut conn = self.conn.clone();
        let now = now_unix();
        Box::pin(async move {
            let (data, used, exp): (Option<Vec<u8>>, Option<String>, Option<String>) =
                ::redis::cmd("HMGET")
                    .arg(key)
                    .arg("data")
                    .arg("used")
                    .arg("exp")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| Self::fail("read", Some(kind), &e))?;
            Ok(data
                .filter(|_| live(exp.as_deref(), now))
                .map(|data| Stored {
                    data,
                    used: used.as_deref() == Some("1"),
                }))
        })
    }

    fn take<'a>(&'a self, kind: Kind, id: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        let key = key(&self.target.prefix, kind.as_str(), id);
        let mut conn = self.conn.clone();
        let now = now_unix();
        Box::pin(async move {
            let taken: Option<(Vec<u8>, String)> = TAKE
                .key(key)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| Self::fail("take", Some(kind), &e))?;
            Ok(taken
                .filter(|(_, exp)| live(Some(exp), now))
                .map(|(data, _)| data))
        })
    }

    fn redeem<'a>(
        &'a self,
        kind: Kind,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<Vec<u8>>>> {
        let key = key(&self.target.prefix, kind.as_str(), id);
        let mut conn = self.conn.clone();
        let now = now_unix();
        Box::pin(async move {
            let found: Option<(Vec<u8>, String, String)> = REDEEM
                .key(key)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| Self::fail("redeem", Some(kind), &e))?;
            Ok(match found {
                Some((_, _, exp)) if !live(Some(&exp), now) => Redeemed::Missing,
                Some((data, used_before, _)) if used_before == "1" => Redeemed::Replayed(data),
                Some((data, _, _)) => Redeemed::Fresh(data),
                None => Redeemed::Missing,
            })
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>> {
        let key = key(&self.target.prefix, "revoked", family);
        let mut conn = self.conn.clone();
        Box::pin(async move {
            let _changed: i64 = REVOKE
                .key(key)
                .arg(expiry(until))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| Self::fail("save", None, &e))?;
            Ok(())
        })
    }

    fn is_family_revoked<'a>(&'a self, family: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        let key = key(&self.target.prefix, "revoked", family);
        let mut conn = self.conn.clone();
        let now = now_unix();
        Box::pin(async move {
            let until: Option<String> = ::redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .map_err(|e| Self::fail("read", None, &e))?;
            let Some(until) = until else {
                return Ok(false);
            };
            let until: i64 = until.parse().map_err(|_| {
                StoreError::damaged(
                    "redis: cannot read a revoked grant: damaged record (not a number)",
                )
            })?;
            Ok(until > now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_stay_within_what_redis_accepts() {
        assert_eq!(expiry(i64::MIN), 1);
        assert_eq!(expiry(0), 1);
        assert_eq!(expiry(1_700_000_000), 1_700_000_000);
        assert_eq!(expiry(i64::MAX), MAX_EXPIRY);
    }

    #[test]
    fn server_versions_are_read_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(server_version(info), Some((7, 0)));
        assert_eq!(server_version("redis_version:6.0.9\n"), Some((6, 0)));
        assert!(server_version("redis_version:6.0.9\n") < Some(MIN_VERSION));
        assert_eq!(server_version("# Server\r\n"), None);
        assert_eq!(server_version("redis_version:x\n"), None);
    }

    #[test]
    fn unexpected_replies_are_not_quoted() {
        let err = RedisError::from((
            ::redis::ErrorKind::UnexpectedReturnType,
            "Response was of incompatible type",
            "response was bulk-string(\"secret-looking\")".to_owned(),
        ));
        assert_eq!(describe(&err), "unexpected reply (type error)");
    }

    #[test]
    fn every_key_carries_its_hash_tag() {
        assert_eq!(key("p:", "code", "abc"), "p:code:{abc}");
        assert_eq!(key("", "revoked", "f1"), "revoked:{f1}");
        // The keys of one grant family share a slot.
        assert_eq!(
            hash_tag(&key("p:", "revoked", "f1")),
            hash_tag(&key("p:", "upstream_tokens", "f1"))
        );
    }

    /// The part of a key Redis Cluster hashes (the first non-empty `{...}`).
    fn hash_tag(key: &str) -> &str {
        let Some(open) = key.find('{') else {
            return key;
        };
        match key[open + 1..].find('}') {
            Some(0) | None => key,
            Some(len) => &key[open + 1..open + 1 + len],
        }
    }
}
