//! The PostgreSQL store (feature `postgres`): one state for several instances of the server,
//! on a database that is backed up, replicated and monitored like the rest.
//!
//! The schema, what is atomic and how to deploy it are documented on [`PostgresStore`], where
//! the public docs show them (this module is private).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::config::{Host, SslMode};

use super::postgres_tls::{self, Tls};

use super::{Kind, Redeemed, Store, StoreError, StoreResult, Stored};
use crate::claims::now_unix;
use crate::verify::BoxFuture;

/// The schema version this build writes, kept in `mcp_oauth_schema`.
const SCHEMA_VERSION: i32 = 1;

/// Serializes schema set-up between instances that start at once (an arbitrary constant:
/// "mcp-oauth" in ASCII).
const SCHEMA_LOCK: i64 = 0x6d63_702d_6f61_7574;

const SCHEMA: &str = "
CREATE TABLE mcp_oauth_records (
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    data       BYTEA NOT NULL,
    expires_at BIGINT,
    used       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (kind, key)
);
CREATE INDEX mcp_oauth_records_expires_at ON mcp_oauth_records (expires_at);
CREATE TABLE mcp_oauth_revoked_families (
    family TEXT PRIMARY KEY,
    until  BIGINT NOT NULL
);
CREATE INDEX mcp_oauth_revoked_families_until ON mcp_oauth_revoked_families (until);
INSERT INTO mcp_oauth_schema (version) VALUES (1);
";

const PUT: &str = "INSERT INTO mcp_oauth_records (kind, key, data, expires_at, used) VALUES ($1, $2, $3, $4, FALSE) \
    ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at, used = FALSE";

/// Inserts a record unless a live one has its kind and key; a lapsed one is replaced. A
/// concurrent insert of the same key waits on the primary key for the first to commit, then
/// takes the conflict path, where the `WHERE` sees the committed row live and updates nothing.
/// A row comes back only when the record was saved.
const PUT_IF_ABSENT: &str = "INSERT INTO mcp_oauth_records AS r (kind, key, data, expires_at, used) \
    VALUES ($1, $2, $3, $4, FALSE) \
    ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at, used = FALSE \
    WHERE r.expires_at IS NOT NULL AND r.expires_at <= $5 \
    RETURNING TRUE";

const GET: &str = "SELECT data, used FROM mcp_oauth_records \
    WHERE kind = $1 AND key = $2 AND (expires_at IS NULL OR expires_at > $3)";

const TAKE: &str =
    "DELETE FROM mcp_oauth_records WHERE kind = $1 AND key = $2 RETURNING data, expires_at";

/// Marks an unused live record used. Row locks serialize concurrent redemptions: the second
/// waits for the first to commit, then finds `used` set and updates nothing.
const MARK_USED: &str = "UPDATE mcp_oauth_records SET used = TRUE \
    WHERE kind = $1 AND key = $2 AND NOT used AND (expires_at IS NULL OR expires_at > $3) RETURNING data";

const REVOKE: &str = "INSERT INTO mcp_oauth_revoked_families (family, until) VALUES ($1, $2) \
    ON CONFLICT (family) DO UPDATE SET until = GREATEST(mcp_oauth_revoked_families.until, excluded.until)";

const IS_REVOKED: &str =
    "SELECT EXISTS (SELECT 1 FROM mcp_oauth_revoked_families WHERE family = $1 AND until > $2)";

const PURGE: [&str; 2] = [
    "DELETE FROM mcp_oauth_records WHERE expires_at <= $1",
    "DELETE FROM mcp_oauth_revoked_families WHERE until <= $1",
];

/// Expired rows are deleted every this many writes (of this instance).
const PURGE_EVERY: u64 = 256;

/// How long connecting, and waiting for a free connection of the pool, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The most connections one instance opens.
const POOL_SIZE: usize = 16;

/// Keeps the authorization server's state in PostgreSQL, so that several instances of the
/// server share clients, pending requests, codes, refresh tokens, revocations, consents and
/// proxy records.
///
/// Cloning is cheap and shares the connection pool (at most 16 connections per instance).
/// `Debug` shows the hosts, database and user, never the password.
///
/// # Schema
///
/// Created on the first [`connect`](PostgresStore::connect) (by whichever instance comes
/// first: set-up holds an advisory lock), in the connection's schema (`search_path`; pass
/// `options=-csearch_path%3Dmy_schema` in the URL for another), version 1:
///
/// ```sql
/// CREATE TABLE mcp_oauth_schema (version INTEGER NOT NULL);
/// CREATE TABLE mcp_oauth_records (
///     kind       TEXT NOT NULL,              -- client, request, code, refresh, transaction,
///                                            -- upstream_tokens, consent, dpop_proof
///     key        TEXT NOT NULL,              -- for codes and refresh tokens: the hash;
///                                            -- a key with a NUL: "\x01b64:" + base64url
///     data       BYTEA NOT NULL,             -- the record (JSON)
///     expires_at BIGINT,                     -- Unix seconds; NULL: kept
///     used       BOOLEAN NOT NULL DEFAULT FALSE,
///     PRIMARY KEY (kind, key)
/// );
/// CREATE TABLE mcp_oauth_revoked_families (
///     family TEXT PRIMARY KEY,
///     until  BIGINT NOT NULL                 -- revoked while until > now
/// );
/// -- and an index on expires_at (until) of each
/// ```
///
/// Rows past their expiry are ignored on read (by this machine's clock) and deleted every 256
/// writes of each instance.
///
/// # Atomicity
///
/// - Redeeming is one `UPDATE … SET used = TRUE WHERE NOT used … RETURNING`: PostgreSQL's row
///   lock makes a concurrent redemption wait for the first to commit and then find the row
///   used, so exactly one is [`Redeemed::Fresh`], across every instance.
/// - Taking is one `DELETE … RETURNING`: of two takes, one gets the row.
/// - Saving only when absent is one `INSERT … ON CONFLICT DO UPDATE … WHERE` the existing row
///   lapsed: a concurrent insert of the same key waits for the first to commit and then finds
///   the row live, so exactly one saves it.
/// - Revoking is one `INSERT … ON CONFLICT DO UPDATE SET until = GREATEST(…)`: a revocation
///   is never shortened.
///
/// # Deployment
///
/// - PostgreSQL 11 or newer. The user needs `CREATE` on the schema the first time (or create
///   the tables above yourself), then `SELECT, INSERT, UPDATE, DELETE` on them.
/// - TLS: add `sslmode=verify-full` (or `require`, which verifies too) to the URL, and
///   `sslrootcert=/path/ca.pem` for a private CA (only its certificates are then trusted;
///   else the platform's roots). The certificate must chain to a trusted root and name the
///   host. Without `sslmode`, or with `disable` / `prefer`, the connection is plain TCP: then
///   run the database on the same host or a private network.
/// - Durability is the database's: with synchronous replication, a used code stays used and a
///   revocation stays after a failover.
/// - Instances that share a store must also share their signing keys and, in proxy mode, the
///   key that seals upstream tokens.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), mcp_oauth::auth_server::store::StoreError> {
/// use std::sync::Arc;
/// use mcp_oauth::auth_server::{Store, store::PostgresStore};
///
/// let store: Arc<dyn Store> =
///     Arc::new(PostgresStore::connect("postgres://mcp:secret@127.0.0.1:5432/mcp").await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    inner: Arc<Inner>,
}

struct Inner {
    /// `host:port` of each host, the database and the user: no password.
    target: String,
    writes: AtomicU64,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.inner.target)
            .finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://[user[:password]@]host[:port]/dbname`,
    /// or the `key=value` form; TLS with `sslmode=verify-full`, see above), creates the schema
    /// when the database has none, and keeps a pool of connections.
    ///
    /// # Errors
    ///
    /// The URL does not parse, the server cannot be reached within 3 seconds or refuses the
    /// credentials, or the schema is newer than this build knows. The message names the host
    /// and database, never the password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let (url, tls) = postgres_tls::from_url(url)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| {
            // The parser's message may quote the URL, and so the password.
            StoreError::unavailable("postgres: invalid connection url")
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let target = describe_target(&config);
        // With the causes: "error performing TLS handshake" alone does not say what to fix.
        let fail = |err: &dyn std::error::Error| {
            let mut text = err.to_string();
            let mut source = err.source();
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text = format!("{text}: {cause_text}");
                }
                source = cause.source();
            }
            StoreError::unavailable(format!("postgres: cannot connect to {target}: {text}"))
        };
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Tls::Off => Manager::from_config(config, NoTls, manager_config),
            Tls::Verified(tls) => {
                config.ssl_mode(SslMode::Require);
                Manager::from_config(config, tls, manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| fail(&e))?;
        let mut client = pool.get().await.map_err(|e| fail(&e))?;
        set_up(&mut client).await.map_err(|e| {
            StoreError::unavailable(format!("postgres: cannot connect to {target}: {e}"))
        })?;
        drop(client);
        Ok(Self {
            pool,
            inner: Arc::new(Inner {
                target,
                writes: AtomicU64::new(0),
            }),
        })
    }

    /// A pooled connection, or the failure named: "postgres: cannot <what> <noun>: ...".
    async fn client(&self, what: &str, kind: Option<Kind>) -> StoreResult<Object> {
        self.pool.get().await.map_err(|e| failed(what, kind, &e))
    }

    /// Counts a write, and purges expired rows every [`PURGE_EVERY`] of them. A failed purge
    /// is logged, not reported: the write it follows did succeed.
    async fn wrote(&self, client: &Object) {
        let writes = self.inner.writes.fetch_add(1, Ordering::Relaxed) + 1;
        if !writes.is_multiple_of(PURGE_EVERY) {
            return;
        }
        let now = now_unix();
        for statement in PURGE {
            if let Err(err) = client.execute(statement, &[&now]).await {
                tracing::warn!(target: "mcp_oauth::auth_server", error = %err, "postgres store: cannot purge expired rows");
                return;
            }
        }
    }
}

/// The hosts, database and user of a connection configuration: no password.
fn describe_target(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    format!(
        "{}/{} as {}",
        hosts.join(","),
        config.get_dbname().unwrap_or("(default database)"),
        config.get_user().unwrap_or("(default user)")
    )
}

/// Creates the schema when absent (holding an advisory lock, so that two instances starting
/// at once do not both create it), or checks its version.
async fn set_up(client: &mut Object) -> Result<(), String> {
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(|e| e.to_string())?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS mcp_oauth_schema (version INTEGER NOT NULL)")
        .await
        .map_err(|e| e.to_string())?;
    let version: Option<i32> = tx
        .query_one("SELECT max(version) FROM mcp_oauth_schema", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    match version {
        None => tx
            .batch_execute(SCHEMA)
            .await
            .map_err(|e| format!("cannot create the schema: {e}"))?,
        Some(SCHEMA_VERSION) => {}
        Some(newer) => {
            return Err(format!(
                "database schema version {newer} is newer than this build supports ({SCHEMA_VERSION})"
            ));
        }
    }
    tx.commit().await.map_err(|e| e.to_string())
}

/// Names a failure: "postgres: cannot <what> <a record of kind>: <why>".
fn failed(what: &str, kind: Option<Kind>, err: &dyn fmt::Display) -> StoreError {
    let noun = kind.map_or("a revoked grant", Kind::noun);
    StoreError::unavailable(format!("postgres: cannot {what} {noun}: {err}"))
}

/// The `key` column of a record: the key itself, except that PostgreSQL's `TEXT` cannot hold a
/// NUL (the proxy's consent keys and client assertions' records join two names with one), so
/// a key holding one, or starting with the marker, is stored as the marker and the key in
/// base64url. Injective: two keys never share a row, and every existing key that holds no NUL
/// (all of them) stays as it was.
fn column_key(key: &str) -> std::borrow::Cow<'_, str> {
    const MARKER: &str = "\u{1}b64:";
    if key.contains('\0') || key.starts_with(MARKER) {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes());
        std::borrow::Cow::Owned(format!("{MARKER}{encoded}"))
    } else {
        std::borrow::Cow::Borrowed(key)
    }
}

impl Store for PostgresStore {
    fn put<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let key = column_key(key);
            let key: &str = &key;
            let client = self.client("save", Some(kind)).await?;
            let statement = client
                .prepare_cached(PUT)
                .await
                .map_err(|e| failed("save", Some(kind), &e))?;
            client
                .execute(&statement, &[&kind.as_str(), &key, &data, &expires_at])
                .await
                .map_err(|e| failed("save", Some(kind), &e))?;
            self.wrote(&client).await;
            Ok(())
        })
    }

    fn put_if_absent<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let key = column_key(key);
            let key: &str = &key;
            let now = now_unix();
            let fail = |e: &dyn fmt::Display| failed("save", Some(kind), e);
            let client = self.client("save", Some(kind)).await?;
            let statement = client
                .prepare_cached(PUT_IF_ABSENT)
                .await
                .map_err(|e| fail(&e))?;
            let saved = client
                .query_opt(
                    &statement,
                    &[&kind.as_str(), &key, &data, &expires_at, &now],
                )
                .await
                .map_err(|e| fail(&e))?
                .is_some();
            if saved {
                self.wrote(&client).await;
            }
            Ok(saved)
        })
    }

    fn get<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Stored>>> {
        Box::pin(async move {
            let key = column_key(key);
            let key: &str = &key;
            let now = now_unix();
            let client = self.client("read", Some(kind)).await?;
            let statement = client
                .prepare_cached(GET)
                .await
                .map_err(|e| failed("read", Some(kind), &e))?;
            let row = client
                .query_opt(&statement, &[&kind.as_str(), &key, &now])
                .await
                .map_err(|e| failed("read", Some(kind), &e))?;
            row.map(|row| {
                Ok(Stored {
                    data: row.try_get(0)?,
                    used: row.try_get(1)?,
                })
            })
            .transpose()
            .map_err(|e: tokio_postgres::Error| failed("read", Some(kind), &e))
        })
    }

    fn take<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        Box::pin(async move {
            let key = column_key(key);
            let key: &str = &key;
            let now = now_unix();
            let client = self.client("take", Some(kind)).await?;
            let statement = client
                .prepare_cached(TAKE)
                .await
                .map_err(|e| failed("take", Some(kind), &e))?;
            let row = client
                .query_opt(&statement, &[&kind.as_str(), &key])
                .await
                .map_err(|e| failed("take", Some(kind), &e))?;
            let Some(row) = row else {
                return Ok(None);
            };
            let (data, expires_at): (Vec<u8>, Option<i64>) =
                (|| Ok((row.try_get(0)?, row.try_get(1)?)))()
                    .map_err(|e: tokio_postgres::Error| failed("take", Some(kind), &e))?;
            Ok(expires_at.is_none_or(|at| at > now).then_some(data))
        })
    }

    fn redeem<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<Vec<u8>>>> {
        Box::pin(async move {
            let key = column_key(key);
            let key: &str = &key;
            let now = now_unix();
            let fail = |e: &dyn fmt::Display| failed("redeem", Some(kind), e);
            let client = self.client("redeem", Some(kind)).await?;
            let mark = client
                .prepare_cached(MARK_USED)
                .await
                .map_err(|e| fail(&e))?;
            if let Some(row) = client
                .query_opt(&mark, &[&kind.as_str(), &key, &now])
                .await
                .map_err(|e| fail(&e))?
            {
                return Ok(Redeemed::Fresh(row.try_get(0).map_err(|e| fail(&e))?));
            }
            // Not marked: used before, or not there. A used record never becomes unused
            // again (except when replaced by a put), so this read tells which.
            let get = client.prepare_cached(GET).await.map_err(|e| fail(&e))?;
            let row = client
                .query_opt(&get, &[&kind.as_str(), &key, &now])
                .await
                .map_err(|e| fail(&e))?;
            Ok(match row {
                Some(row) => Redeemed::Replayed(row.try_get(0).map_err(|e| fail(&e))?),
                None => Redeemed::Missing,
            })
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let client = self.client("save", None).await?;
            let statement = client
                .prepare_cached(REVOKE)
                .await
                .map_err(|e| failed("save", None, &e))?;
            client
                .execute(&statement, &[&family, &until])
                .await
                .map_err(|e| failed("save", None, &e))?;
            self.wrote(&client).await;
            Ok(())
        })
    }

    fn is_family_revoked<'a>(&'a self, family: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let now = now_unix();
            let client = self.client("read", None).await?;
            let statement = client
                .prepare_cached(IS_REVOKED)
                .await
                .map_err(|e| failed("read", None, &e))?;
            let row = client
                .query_one(&statement, &[&family, &now])
                .await
                .map_err(|e| failed("read", None, &e))?;
            row.try_get(0).map_err(|e| failed("read", None, &e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_names_no_password() {
        let config: tokio_postgres::Config = "postgres://mcp:hunter2@db.internal:6543/auth"
            .parse()
            .expect("url");
        let target = describe_target(&config);
        assert_eq!(target, "db.internal:6543/auth as mcp");
        assert!(!target.contains("hunter2"));
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_without_quoting_it() {
        let err = PostgresStore::connect("postgres://u:hunter2@[bad")
            .await
            .expect_err("a bad url");
        assert_eq!(err.to_string(), "store: postgres: invalid connection url");
    }
}
