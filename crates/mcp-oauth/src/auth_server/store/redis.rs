//! The Redis store (feature `redis`): one state for several instances of the server, e.g.
//! behind a load balancer.
//!
//! The key layout, what is atomic and how to deploy it are documented on [`RedisStore`], where
//! the public docs show them (this module is private).

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::{AsyncConnectionConfig, Client, RedisError, Script};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    AuthRequestRecord, ClientRecord, CodeRecord, EntryKind, Redeemed, RefreshRecord, Store,
    StoreError, StoreResult,
};
use crate::claims::now_unix;
use crate::verify::BoxFuture;

/// How long connecting (and reconnecting) may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one command may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest wait between two attempts to reconnect.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// The oldest Redis with every command the store sends (`GETDEL`, `SET … EXAT`).
const MIN_VERSION: (u32, u32) = (6, 2);

/// The latest expiry sent to Redis (9999-12-31T23:59:59Z), which refuses absurd ones.
const MAX_EXPIRY: i64 = 253_402_300_799;

/// Redeems a single-use record: reads it and its `used` flag, sets the flag, and returns both
/// (the flag as it was), or nil when the key is absent.
const REDEEM_LUA: &str = r"
local record = redis.call('HMGET', KEYS[1], 'data', 'used')
if not record[1] then
  return false
end
if record[2] ~= '1' then
  redis.call('HSET', KEYS[1], 'used', '1')
end
return {record[1], record[2] or '0'}
";

/// Reads a single-use record and its `used` flag without changing them, or nil when the key
/// is absent.
const PEEK_LUA: &str = r"
local record = redis.call('HMGET', KEYS[1], 'data', 'used')
if not record[1] then
  return false
end
return {record[1], record[2] or '0'}
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

static REDEEM: LazyLock<Script> = LazyLock::new(|| Script::new(REDEEM_LUA));
static PEEK: LazyLock<Script> = LazyLock::new(|| Script::new(PEEK_LUA));
static REVOKE: LazyLock<Script> = LazyLock::new(|| Script::new(REVOKE_LUA));

/// Keeps the authorization server's state in Redis, so that several instances of the server
/// share clients, pending requests, codes, refresh tokens, revocations, consents and proxy
/// records.
///
/// Cloning is cheap and shares the connection. `Debug` shows the server address, database
/// and prefix, never the password.
///
/// # Key layout
///
/// Every key starts with the prefix given to [`RedisStore::connect`] (`mcp-oauth:` say), so
/// that several deployments can share one Redis. Records are JSON text.
///
/// | key | type | value | Redis expires it at |
/// | --- | --- | --- | --- |
/// | `client:<client_id>` | string | [`ClientRecord`] | its `expires_at` (an unused registration), else never |
/// | `request:<id>` | string | [`AuthRequestRecord`] | its `expires_at` |
/// | `code:<hash>` | hash | `data`: [`CodeRecord`], `used`: `0` or `1` | its `expires_at` |
/// | `refresh:<hash>` | hash | `data`: [`RefreshRecord`], `used`: `0` or `1` | its `expires_at` |
/// | `revoked:<family>` | string | `until` (Unix seconds) | `until` |
/// | `entry:<kind>:<key>` | string | `{"expires_at": <Unix seconds>, "value": "<the record>"}` | `expires_at` |
///
/// `<hash>` is the hash the caller passes (the SHA-256 of the code or token), never the value;
/// `<kind>` is [`EntryKind::as_str`]. Each record that lapses is written with its expiry
/// (`SET … EXAT`, or `EXPIREAT` in the same `MULTI` as the `HSET`), so Redis forgets it by
/// itself and nothing needs purging. Reads check `expires_at` against this machine's clock
/// too, so a record is never used past its time when the clocks of Redis and the server
/// disagree.
///
/// # Atomicity
///
/// Redis runs one command, `MULTI` block or Lua script at a time, for every client of the
/// server, so these hold across all instances that share it:
///
/// - Redeeming a code or refresh token is one Lua script: it reads the record and its `used`
///   flag, sets the flag and returns both. Of any number of concurrent redemptions exactly one
///   sees the flag unset ([`Redeemed::Fresh`]); the others get [`Redeemed::Replayed`]. A used
///   record stays until it lapses, so a replay is reported as such and
///   [`Store::refresh`] still finds a rotated-out token's family.
/// - Taking a request or an entry is one `GETDEL`: of two takes, one gets the value.
/// - Revoking a family is one Lua script that keeps the later of the stored and the new
///   `until`, so a revocation is never shortened.
///
/// # Deployment
///
/// - Redis 6.2 or newer (for `GETDEL` and `SET … EXAT`), or Valkey.
/// - Set `maxmemory-policy noeviction`: an evicted revocation lets a revoked grant's tokens
///   work again, and an evicted used code turns a replay into an unknown code.
/// - Durability is Redis's: without persistence (`appendonly yes`), a Redis restart forgets
///   every registered client and signs every user out.
/// - Instances that share a store must also share their signing keys and, in proxy mode, the
///   key that seals upstream tokens.
///
/// The store talks over one multiplexed connection. [`RedisStore::connect`] tries once, so a
/// wrong address or password fails at once (connecting times out after 3 seconds). After a
/// drop, the connection is made again on the next call, with up to 6 retries at most 2
/// seconds apart (exponential backoff) while calls wait; a call in flight when it drops fails
/// with a [`StoreError`]. Each command times out after 3 seconds.
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
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    target: Arc<Target>,
}

/// Where the store points, for keys and `Debug`.
struct Target {
    prefix: String,
    /// `host:port` or the socket path: no credentials.
    addr: String,
    db: i64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("addr", &self.target.addr)
            .field("db", &self.target.db)
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
            .map_err(|e| StoreError(format!("redis: invalid connection url: {e}")))?;
        let info = client.get_connection_info();
        let target = Target {
            prefix: prefix.to_owned(),
            addr: info.addr().to_string(),
            db: info.redis_settings().db(),
        };
        let fail = |err: &dyn fmt::Display| {
            StoreError(format!("redis: cannot connect to {}: {err}", target.addr))
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
        Ok(Self {
            conn,
            target: Arc::new(target),
        })
    }

    /// The full key of a record: the prefix, `kind` (with its colon) and `id`.
    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}{id}", self.target.prefix)
    }

    fn entry_key(&self, kind: EntryKind, key: &str) -> String {
        format!("{}entry:{}:{key}", self.target.prefix, kind.as_str())
    }

    /// Runs `job` with a handle on the shared connection, and names what failed.
    fn run<'a, T, F, Fut>(&self, what: &'static str, job: F) -> BoxFuture<'a, StoreResult<T>>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, Failure>> + Send + 'a,
    {
        let job = job(self.conn.clone());
        Box::pin(async move {
            job.await
                .map_err(|e| StoreError(format!("redis: cannot {what}: {e}")))
        })
    }
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

/// Writes a string record that Redis drops at `expires_at`.
async fn set_until(
    mut conn: ConnectionManager,
    key: String,
    data: String,
    expires_at: i64,
) -> Result<(), Failure> {
    ::redis::cmd("SET")
        .arg(key)
        .arg(data)
        .arg("EXAT")
        .arg(expiry(expires_at))
        .exec_async(&mut conn)
        .await?;
    Ok(())
}

/// Reads (`GET`) or takes (`GETDEL`) a string record, `None` when absent.
async fn get(
    mut conn: ConnectionManager,
    command: &'static str,
    key: String,
) -> Result<Option<String>, Failure> {
    Ok(::redis::cmd(command)
        .arg(key)
        .query_async(&mut conn)
        .await?)
}

/// Reads or takes (`command` as for [`get`]) a record, `None` when absent or lapsed by this
/// machine's clock.
async fn get_live<T: DeserializeOwned>(
    conn: ConnectionManager,
    command: &'static str,
    key: String,
    now: i64,
    expires_at: fn(&T) -> i64,
) -> Result<Option<T>, Failure> {
    let Some(data) = get(conn, command, key).await? else {
        return Ok(None);
    };
    let record: T = decode(&data)?;
    Ok((expires_at(&record) > now).then_some(record))
}

/// Writes a code or refresh token, unused, with its expiry, in one `MULTI`.
async fn put_single_use(
    mut conn: ConnectionManager,
    key: String,
    data: String,
    expires_at: i64,
) -> Result<(), Failure> {
    ::redis::pipe()
        .atomic()
        .cmd("HSET")
        .arg(&key)
        .arg("data")
        .arg(data)
        .arg("used")
        .arg("0")
        .ignore()
        .cmd("EXPIREAT")
        .arg(&key)
        .arg(expiry(expires_at))
        .ignore()
        .exec_async(&mut conn)
        .await?;
    Ok(())
}

/// Redeems a code or refresh token with `script`: [`REDEEM`], or [`PEEK`] to look without
/// using it.
async fn redeem<T: DeserializeOwned>(
    mut conn: ConnectionManager,
    script: &'static LazyLock<Script>,
    key: String,
    now: i64,
    expires_at: fn(&T) -> i64,
) -> Result<Redeemed<T>, Failure> {
    let found: Option<(String, String)> = script.key(key).invoke_async(&mut conn).await?;
    let Some((data, used_before)) = found else {
        return Ok(Redeemed::Missing);
    };
    let record: T = decode(&data)?;
    Ok(if expires_at(&record) <= now {
        Redeemed::Missing
    } else if used_before == "1" {
        Redeemed::Replayed(record)
    } else {
        Redeemed::Fresh(record)
    })
}

/// An [`Store::put_entry`] record as stored: the value with its expiry.
#[derive(Serialize, Deserialize)]
struct Entry {
    expires_at: i64,
    value: String,
}

impl Entry {
    fn live(self, now: i64) -> Option<String> {
        (self.expires_at > now).then_some(self.value)
    }
}

/// What went wrong inside a call; shown after "redis: cannot <what>: ".
enum Failure {
    Redis(RedisError),
    Json(serde_json::Error),
}

impl From<RedisError> for Failure {
    fn from(err: RedisError) -> Self {
        Self::Redis(err)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(err: serde_json::Error) -> Self {
        Self::Json(err)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A reply of an unexpected shape is quoted in the error's detail, and it may be a
            // record: name the category only.
            Self::Redis(err)
                if matches!(
                    err.kind(),
                    ::redis::ErrorKind::Parse | ::redis::ErrorKind::UnexpectedReturnType
                ) =>
            {
                write!(f, "unexpected reply ({})", err.category())
            }
            Self::Redis(err) => err.fmt(f),
            Self::Json(err) => super::damaged_record(err, f),
        }
    }
}

fn encode(record: &impl Serialize) -> Result<String, Failure> {
    Ok(serde_json::to_string(record)?)
}

fn decode<T: DeserializeOwned>(data: &str) -> Result<T, Failure> {
    Ok(serde_json::from_str(data)?)
}

impl Store for RedisStore {
    fn put_client(&self, client: ClientRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = self.key("client:", &client.client_id);
        self.run("save a client", move |mut conn| async move {
            let data = encode(&client)?;
            match client.expires_at {
                Some(expires_at) => set_until(conn, key, data, expires_at).await,
                // A plain SET also drops the expiry an earlier write set.
                None => {
                    ::redis::cmd("SET")
                        .arg(key)
                        .arg(data)
                        .exec_async(&mut conn)
                        .await?;
                    Ok(())
                }
            }
        })
    }

    fn client<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ClientRecord>>> {
        let key = self.key("client:", client_id);
        let now = now_unix();
        self.run("read a client", move |conn| async move {
            Ok(get(conn, "GET", key)
                .await?
                .as_deref()
                .map(decode::<ClientRecord>)
                .transpose()?
                .filter(|c| c.is_live(now)))
        })
    }

    fn put_request<'a>(
        &'a self,
        id: &'a str,
        request: AuthRequestRecord,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let key = self.key("request:", id);
        self.run("save an authorization request", move |conn| async move {
            set_until(conn, key, encode(&request)?, request.expires_at).await
        })
    }

    fn request<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<AuthRequestRecord>>> {
        let key = self.key("request:", id);
        let now = now_unix();
        self.run("read an authorization request", move |conn| {
            get_live(conn, "GET", key, now, |r: &AuthRequestRecord| r.expires_at)
        })
    }

    fn take_request<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<AuthRequestRecord>>> {
        let key = self.key("request:", id);
        let now = now_unix();
        self.run("take an authorization request", move |conn| {
            get_live(conn, "GETDEL", key, now, |r: &AuthRequestRecord| {
                r.expires_at
            })
        })
    }

    fn put_code<'a>(&'a self, hash: &'a str, code: CodeRecord) -> BoxFuture<'a, StoreResult<()>> {
        let key = self.key("code:", hash);
        self.run("save a code", move |conn| async move {
            put_single_use(conn, key, encode(&code)?, code.expires_at).await
        })
    }

    fn redeem_code<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<CodeRecord>>> {
        let key = self.key("code:", hash);
        let now = now_unix();
        self.run("redeem a code", move |conn| {
            redeem(conn, &REDEEM, key, now, |code: &CodeRecord| code.expires_at)
        })
    }

    fn peek_code<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, StoreResult<Redeemed<CodeRecord>>> {
        let key = self.key("code:", hash);
        let now = now_unix();
        self.run("read a code", move |conn| {
            redeem(conn, &PEEK, key, now, |code: &CodeRecord| code.expires_at)
        })
    }

    fn put_refresh<'a>(
        &'a self,
        hash: &'a str,
        token: RefreshRecord,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let key = self.key("refresh:", hash);
        self.run("save a refresh token", move |conn| async move {
            put_single_use(conn, key, encode(&token)?, token.expires_at).await
        })
    }

    fn redeem_refresh<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<RefreshRecord>>> {
        let key = self.key("refresh:", hash);
        let now = now_unix();
        self.run("redeem a refresh token", move |conn| {
            redeem(conn, &REDEEM, key, now, |token: &RefreshRecord| {
                token.expires_at
            })
        })
    }

    fn peek_refresh<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<RefreshRecord>>> {
        let key = self.key("refresh:", hash);
        let now = now_unix();
        self.run("read a refresh token", move |conn| {
            redeem(conn, &PEEK, key, now, |token: &RefreshRecord| {
                token.expires_at
            })
        })
    }

    fn refresh<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, StoreResult<Option<RefreshRecord>>> {
        let key = self.key("refresh:", hash);
        let now = now_unix();
        self.run("read a refresh token", move |mut conn| async move {
            let data: Option<String> = ::redis::cmd("HGET")
                .arg(key)
                .arg("data")
                .query_async(&mut conn)
                .await?;
            let Some(data) = data else {
                return Ok(None);
            };
            let token: RefreshRecord = decode(&data)?;
            Ok((token.expires_at > now).then_some(token))
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>> {
        let key = self.key("revoked:", family);
        self.run("revoke a grant", move |mut conn| async move {
            let _changed: i64 = REVOKE
                .key(key)
                .arg(expiry(until))
                .invoke_async(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn is_family_revoked<'a>(&'a self, family: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        let key = self.key("revoked:", family);
        let now = now_unix();
        self.run("read a revoked grant", move |conn| async move {
            let Some(until) = get(conn, "GET", key).await? else {
                return Ok(false);
            };
            Ok(decode::<i64>(&until)? > now)
        })
    }

    fn put_entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
        value: String,
        expires_at: i64,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let key = self.entry_key(kind, key);
        self.run("save an entry", move |conn| async move {
            let data = encode(&Entry { expires_at, value })?;
            set_until(conn, key, data, expires_at).await
        })
    }

    fn entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<String>>> {
        let key = self.entry_key(kind, key);
        let now = now_unix();
        self.run("read an entry", move |conn| async move {
            let Some(data) = get(conn, "GET", key).await? else {
                return Ok(None);
            };
            Ok(decode::<Entry>(&data)?.live(now))
        })
    }

    fn take_entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<String>>> {
        let key = self.entry_key(kind, key);
        let now = now_unix();
        self.run("take an entry", move |conn| async move {
            let Some(data) = get(conn, "GETDEL", key).await? else {
                return Ok(None);
            };
            Ok(decode::<Entry>(&data)?.live(now))
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
    fn json_errors_do_not_quote_the_record() {
        let err = decode::<Entry>(r#"{"expires_at": 1, "value": 7, "x": "secret-looking"}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("damaged record (data error"), "{err}");
        assert!(!err.contains("secret-looking"), "{err}");
    }

    #[test]
    fn unexpected_replies_are_not_quoted() {
        let err = RedisError::from((
            ::redis::ErrorKind::UnexpectedReturnType,
            "Response was of incompatible type",
            "response was bulk-string(\"secret-looking\")".to_owned(),
        ));
        let message = Failure::Redis(err).to_string();
        assert_eq!(message, "unexpected reply (type error)");
    }

    #[test]
    fn expired_entries_are_not_live() {
        let entry = |expires_at| Entry {
            expires_at,
            value: "v".into(),
        };
        assert_eq!(entry(11).live(10).as_deref(), Some("v"));
        assert_eq!(entry(10).live(10), None);
    }
}
