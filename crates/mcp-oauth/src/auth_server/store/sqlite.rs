//! The SQLite store (feature `sqlite`): one file that survives restarts.
//!
//! Every record is kept as JSON in a `data` column, next to its key and, where the record has
//! one, an indexed `expires_at` (Unix seconds). Codes and refresh tokens are keyed by the hash
//! the caller passes, never by their value. The schema (version 3, kept in
//! `PRAGMA user_version` so later versions can migrate it):
//!
//! ```sql
//! CREATE TABLE clients (
//!     client_id  TEXT PRIMARY KEY NOT NULL,
//!     data       TEXT NOT NULL,               -- ClientRecord
//!     expires_at INTEGER                      -- version 3: an unused registration lapses;
//!                                             -- NULL: kept
//! ) STRICT;
//! CREATE TABLE requests (
//!     id         TEXT PRIMARY KEY NOT NULL,
//!     expires_at INTEGER NOT NULL,
//!     data       TEXT NOT NULL                -- AuthRequestRecord
//! ) STRICT;
//! CREATE TABLE codes (
//!     hash       TEXT PRIMARY KEY NOT NULL,   -- SHA-256 of the code
//!     expires_at INTEGER NOT NULL,
//!     used       INTEGER NOT NULL DEFAULT 0,
//!     data       TEXT NOT NULL                -- CodeRecord
//! ) STRICT;
//! CREATE TABLE refresh_tokens (
//!     hash       TEXT PRIMARY KEY NOT NULL,   -- SHA-256 of the refresh token
//!     expires_at INTEGER NOT NULL,
//!     used       INTEGER NOT NULL DEFAULT 0,
//!     data       TEXT NOT NULL                -- RefreshRecord
//! ) STRICT;
//! CREATE TABLE revoked_families (
//!     family     TEXT PRIMARY KEY NOT NULL,
//!     until      INTEGER NOT NULL             -- revoked while until > now
//! ) STRICT;
//! CREATE TABLE entries (                      -- version 2
//!     kind       TEXT NOT NULL,               -- transaction, upstream_tokens, consent
//!     key        TEXT NOT NULL,
//!     expires_at INTEGER NOT NULL,
//!     data       TEXT NOT NULL,
//!     PRIMARY KEY (kind, key)
//! ) STRICT;
//! -- and an index on expires_at (until) of every table
//! ```
//!
//! An older file is migrated to version 3 when it is opened (clients registered before
//! version 3 never lapse).
//!
//! Rows past their expiry are ignored on read and deleted when the store opens and every
//! 256 writes after that.
//!
//! Redeeming a code or a refresh token reads and marks the row in one `BEGIN IMMEDIATE`
//! transaction, so of two redemptions of one value exactly one is fresh, even across
//! processes that share the file.
//!
//! The connection sits behind a mutex and every call runs on Tokio's blocking pool, so the
//! store never blocks the async runtime (outside a Tokio runtime it runs inline).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    AuthRequestRecord, ClientRecord, CodeRecord, EntryKind, Redeemed, RefreshRecord, Store,
    StoreError, StoreResult,
};
use crate::claims::now_unix;
use crate::verify::BoxFuture;

/// The schema version this build writes, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 3;

const SCHEMA_V1: &str = "
CREATE TABLE clients (
    client_id TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL
) STRICT;
CREATE TABLE requests (
    id TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL,
    data TEXT NOT NULL
) STRICT;
CREATE INDEX requests_expires_at ON requests (expires_at);
CREATE TABLE codes (
    hash TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
) STRICT;
CREATE INDEX codes_expires_at ON codes (expires_at);
CREATE TABLE refresh_tokens (
    hash TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
) STRICT;
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);
CREATE TABLE revoked_families (
    family TEXT PRIMARY KEY NOT NULL,
    until INTEGER NOT NULL
) STRICT;
CREATE INDEX revoked_families_until ON revoked_families (until);
";

/// Version 2: small records of the OAuth proxy (transactions, sealed upstream tokens,
/// consents).
const SCHEMA_V2: &str = "
CREATE TABLE entries (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) STRICT;
CREATE INDEX entries_expires_at ON entries (expires_at);
";

/// Version 3: unused dynamic registrations lapse.
const SCHEMA_V3: &str = "
ALTER TABLE clients ADD COLUMN expires_at INTEGER;
CREATE INDEX clients_expires_at ON clients (expires_at);
";

/// Deletes the rows that lapsed before `?1` (a `NULL` expiry never compares true).
const PURGE: [&str; 6] = [
    "DELETE FROM clients WHERE expires_at <= ?1",
    "DELETE FROM entries WHERE expires_at <= ?1",
    "DELETE FROM requests WHERE expires_at <= ?1",
    "DELETE FROM codes WHERE expires_at <= ?1",
    "DELETE FROM refresh_tokens WHERE expires_at <= ?1",
    "DELETE FROM revoked_families WHERE until <= ?1",
];

/// Expired rows are deleted every this many writes.
const PURGE_EVERY: u64 = 256;

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The statements of one single-use table (codes or refresh tokens).
struct SingleUse {
    put: &'static str,
    /// Reads `expires_at, used, data`.
    find: &'static str,
    mark_used: &'static str,
}

const CODES: SingleUse = SingleUse {
    put: "INSERT OR REPLACE INTO codes (hash, expires_at, used, data) VALUES (?1, ?2, 0, ?3)",
    find: "SELECT expires_at, used, data FROM codes WHERE hash = ?1",
    mark_used: "UPDATE codes SET used = 1 WHERE hash = ?1",
};

const REFRESH_TOKENS: SingleUse = SingleUse {
    put: "INSERT OR REPLACE INTO refresh_tokens (hash, expires_at, used, data) VALUES (?1, ?2, 0, ?3)",
    find: "SELECT expires_at, used, data FROM refresh_tokens WHERE hash = ?1",
    mark_used: "UPDATE refresh_tokens SET used = 1 WHERE hash = ?1",
};

/// Keeps the authorization server's state in one SQLite file, so that clients, codes,
/// refresh tokens and revoked grants survive a restart.
///
/// Cloning is cheap and shares the connection.
///
/// ```no_run
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use mcp_oauth::auth_server::{Store, store::SqliteStore};
///
/// let store: Arc<dyn Store> = Arc::new(SqliteStore::open("/var/lib/my-mcp/auth.db")?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Mutex<Db>,
    path: Option<PathBuf>,
}

struct Db {
    conn: Connection,
    writes: u64,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("SqliteStore");
        match &self.inner.path {
            Some(path) => s.field("path", path),
            None => s.field("path", &":memory:"),
        };
        s.finish()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file (and its folder) when absent, and the
    /// schema when the file is new. Expired rows are purged on open.
    ///
    /// On unix the file is given mode `0600` (it holds client-secret and token hashes);
    /// SQLite gives its `-wal` and `-shm` companions the same mode. The database runs in WAL
    /// mode with a 5 second busy timeout, so several processes may share the file.
    ///
    /// # Errors
    ///
    /// The file cannot be created, opened or given its permissions, it is not a SQLite
    /// database, or its schema is newer than this build knows.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let fail = |what: &str, err: &dyn fmt::Display| {
            StoreError(format!("sqlite: {what} {}: {err}", path.display()))
        };
        create_private(path).map_err(|e| fail("cannot create", &e))?;
        let mut conn = Connection::open(path).map_err(|e| fail("cannot open", &e))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail("cannot configure", &e))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(|e| fail("cannot switch to WAL mode", &e))?;
        set_up(&mut conn).map_err(|e| fail("cannot set up", &e))?;
        Ok(Self::from_connection(conn, Some(path.to_owned())))
    }

    /// A store in memory, gone when the last clone is dropped: for tests.
    ///
    /// # Errors
    ///
    /// SQLite could not set up the schema.
    pub fn in_memory() -> Result<Self, StoreError> {
        let fail = |err: &dyn fmt::Display| StoreError(format!("sqlite: in memory: {err}"));
        let mut conn = Connection::open_in_memory().map_err(|e| fail(&e))?;
        set_up(&mut conn).map_err(|e| fail(&e))?;
        Ok(Self::from_connection(conn, None))
    }

    fn from_connection(conn: Connection, path: Option<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                db: Mutex::new(Db { conn, writes: 0 }),
                path,
            }),
        }
    }

    /// Runs `job` with the connection on the blocking pool.
    fn run<T, F>(&self, what: &'static str, job: F) -> BoxFuture<'static, StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, Failure> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let job = move || {
            let mut db = match inner.db.lock() {
                Ok(guard) => guard,
                // A panic mid-call leaves no half-done state: an open transaction was rolled
                // back when it was dropped during the unwind.
                Err(poisoned) => poisoned.into_inner(),
            };
            job(&mut db).map_err(|e| StoreError(format!("sqlite: cannot {what}: {e}")))
        };
        Box::pin(async move {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => runtime.spawn_blocking(job).await.map_err(|e| {
                    StoreError(format!("sqlite: cannot {what}: blocking task failed: {e}"))
                })?,
                Err(_) => job(),
            }
        })
    }
}

/// Creates the database file (and its folder) with owner-only permissions.
fn create_private(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        // A file that existed before keeps its mode through `open`: tighten it too.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    drop(file);
    Ok(())
}

/// Creates or checks the schema, then purges expired rows.
fn set_up(conn: &mut Connection) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA_V1)?;
            tx.execute_batch(SCHEMA_V2)?;
            tx.execute_batch(SCHEMA_V3)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        1 => {
            tx.execute_batch(SCHEMA_V2)?;
            tx.execute_batch(SCHEMA_V3)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        2 => {
            tx.execute_batch(SCHEMA_V3)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        SCHEMA_VERSION => {}
        newer => return Err(Failure::Schema(newer)),
    }
    purge(&tx, now_unix())?;
    tx.commit()?;
    Ok(())
}

fn purge(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    for statement in PURGE {
        conn.prepare_cached(statement)?.execute(params![now])?;
    }
    Ok(())
}

impl Db {
    /// Counts a write, and purges expired rows every [`PURGE_EVERY`] of them. A failed
    /// purge is logged, not reported: the write it follows did succeed.
    fn wrote(&mut self) {
        self.writes = self.writes.wrapping_add(1);
        if !self.writes.is_multiple_of(PURGE_EVERY) {
            return;
        }
        if let Err(err) = purge(&self.conn, now_unix()) {
            tracing::warn!(target: "mcp_oauth::auth_server", error = %err, "sqlite store: cannot purge expired rows");
        }
    }

    fn put_single_use(
        &mut self,
        table: &SingleUse,
        hash: &str,
        expires_at: i64,
        data: &str,
    ) -> Result<(), Failure> {
        self.conn
            .prepare_cached(table.put)?
            .execute(params![hash, expires_at, data])?;
        self.wrote();
        Ok(())
    }

    /// Reads a single-use row without marking it.
    fn peek<T: DeserializeOwned>(
        &mut self,
        table: &SingleUse,
        hash: &str,
        now: i64,
    ) -> Result<Redeemed<T>, Failure> {
        let row = self
            .conn
            .prepare_cached(table.find)?
            .query_row(params![hash], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, bool>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .optional()?;
        Ok(match row {
            None => Redeemed::Missing,
            Some((expires_at, _, _)) if expires_at <= now => Redeemed::Missing,
            Some((_, true, data)) => Redeemed::Replayed(decode(&data)?),
            Some((_, false, data)) => Redeemed::Fresh(decode(&data)?),
        })
    }

    /// Reads and marks a single-use row in one immediate transaction: the write lock is taken
    /// before the read, so no other redemption (in this process or another) interleaves.
    fn redeem<T: DeserializeOwned>(
        &mut self,
        table: &SingleUse,
        hash: &str,
        now: i64,
    ) -> Result<Redeemed<T>, Failure> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = tx
            .prepare_cached(table.find)?
            .query_row(params![hash], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, bool>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .optional()?;
        let outcome = match row {
            None => Redeemed::Missing,
            Some((expires_at, _, _)) if expires_at <= now => Redeemed::Missing,
            Some((_, true, data)) => Redeemed::Replayed(decode(&data)?),
            Some((_, false, data)) => {
                let record = decode(&data)?;
                tx.prepare_cached(table.mark_used)?.execute(params![hash])?;
                Redeemed::Fresh(record)
            }
        };
        tx.commit()?;
        Ok(outcome)
    }
}

/// What went wrong inside a call; shown after "sqlite: cannot <what>: ".
enum Failure {
    Sql(rusqlite::Error),
    Json(serde_json::Error),
    Schema(i64),
}

impl From<rusqlite::Error> for Failure {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sql(err)
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
            Self::Sql(err) => err.fmt(f),
            Self::Json(err) => super::damaged_record(err, f),
            Self::Schema(version) => write!(
                f,
                "database schema version {version} is newer than this build supports ({SCHEMA_VERSION})"
            ),
        }
    }
}

fn encode(record: &impl Serialize) -> Result<String, Failure> {
    Ok(serde_json::to_string(record)?)
}

fn decode<T: DeserializeOwned>(data: &str) -> Result<T, Failure> {
    Ok(serde_json::from_str(data)?)
}

impl Store for SqliteStore {
    fn put_client(&self, client: ClientRecord) -> BoxFuture<'_, StoreResult<()>> {
        self.run("save a client", move |db| {
            let data = encode(&client)?;
            db.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO clients (client_id, data, expires_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![client.client_id, data, client.expires_at])?;
            db.wrote();
            Ok(())
        })
    }

    fn client<'a>(
        &'a self,
        client_id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<ClientRecord>>> {
        let client_id = client_id.to_owned();
        let now = now_unix();
        self.run("read a client", move |db| {
            let data: Option<String> = db
                .conn
                .prepare_cached(
                    "SELECT data FROM clients WHERE client_id = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
                )?
                .query_row(params![client_id, now], |row| row.get(0))
                .optional()?;
            Ok(data
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
        let id = id.to_owned();
        self.run("save an authorization request", move |db| {
            let data = encode(&request)?;
            db.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO requests (id, expires_at, data) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id, request.expires_at, data])?;
            db.wrote();
            Ok(())
        })
    }

    fn request<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<AuthRequestRecord>>> {
        let id = id.to_owned();
        let now = now_unix();
        self.run("read an authorization request", move |db| {
            let data: Option<String> = db
                .conn
                .prepare_cached("SELECT data FROM requests WHERE id = ?1 AND expires_at > ?2")?
                .query_row(params![id, now], |row| row.get(0))
                .optional()?;
            data.as_deref().map(decode).transpose()
        })
    }

    fn take_request<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<AuthRequestRecord>>> {
        let id = id.to_owned();
        let now = now_unix();
        self.run("take an authorization request", move |db| {
            // One statement: of two concurrent takes, only one gets the row back.
            let row: Option<(i64, String)> = db
                .conn
                .prepare_cached("DELETE FROM requests WHERE id = ?1 RETURNING expires_at, data")?
                .query_row(params![id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            match row {
                Some((expires_at, data)) if expires_at > now => decode(&data).map(Some),
                _ => Ok(None),
            }
        })
    }

    fn put_code<'a>(&'a self, hash: &'a str, code: CodeRecord) -> BoxFuture<'a, StoreResult<()>> {
        let hash = hash.to_owned();
        self.run("save a code", move |db| {
            db.put_single_use(&CODES, &hash, code.expires_at, &encode(&code)?)
        })
    }

    fn redeem_code<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<CodeRecord>>> {
        let hash = hash.to_owned();
        let now = now_unix();
        self.run("redeem a code", move |db| db.redeem(&CODES, &hash, now))
    }

    fn peek_code<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, StoreResult<Redeemed<CodeRecord>>> {
        let hash = hash.to_owned();
        let now = now_unix();
        self.run("read a code", move |db| db.peek(&CODES, &hash, now))
    }

    fn put_refresh<'a>(
        &'a self,
        hash: &'a str,
        token: RefreshRecord,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let hash = hash.to_owned();
        self.run("save a refresh token", move |db| {
            db.put_single_use(&REFRESH_TOKENS, &hash, token.expires_at, &encode(&token)?)
        })
    }

    fn redeem_refresh<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<RefreshRecord>>> {
        let hash = hash.to_owned();
        let now = now_unix();
        self.run("redeem a refresh token", move |db| {
            db.redeem(&REFRESH_TOKENS, &hash, now)
        })
    }

    fn peek_refresh<'a>(
        &'a self,
        hash: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<RefreshRecord>>> {
        let hash = hash.to_owned();
        let now = now_unix();
        self.run("read a refresh token", move |db| {
            db.peek(&REFRESH_TOKENS, &hash, now)
        })
    }

    fn refresh<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, StoreResult<Option<RefreshRecord>>> {
        let hash = hash.to_owned();
        let now = now_unix();
        self.run("read a refresh token", move |db| {
            let data: Option<String> = db
                .conn
                .prepare_cached(
                    "SELECT data FROM refresh_tokens WHERE hash = ?1 AND expires_at > ?2",
                )?
                .query_row(params![hash, now], |row| row.get(0))
                .optional()?;
            data.as_deref().map(decode).transpose()
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>> {
        let family = family.to_owned();
        self.run("revoke a grant", move |db| {
            db.conn
                .prepare_cached(
                    "INSERT INTO revoked_families (family, until) VALUES (?1, ?2) ON CONFLICT (family) DO UPDATE SET until = max(until, excluded.until)",
                )?
                .execute(params![family, until])?;
            db.wrote();
            Ok(())
        })
    }

    fn is_family_revoked<'a>(&'a self, family: &'a str) -> BoxFuture<'a, StoreResult<bool>> {
        let family = family.to_owned();
        let now = now_unix();
        self.run("read a revoked grant", move |db| {
            Ok(db
                .conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM revoked_families WHERE family = ?1 AND until > ?2)",
                )?
                .query_row(params![family, now], |row| row.get(0))?)
        })
    }

    fn put_entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
        value: String,
        expires_at: i64,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let key = key.to_owned();
        self.run("save an entry", move |db| {
            db.conn
                .prepare_cached("INSERT OR REPLACE INTO entries (kind, key, expires_at, data) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![kind.as_str(), key, expires_at, value])?;
            db.wrote();
            Ok(())
        })
    }

    fn entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<String>>> {
        let key = key.to_owned();
        let now = now_unix();
        self.run("read an entry", move |db| {
            Ok(db
                .conn
                .prepare_cached(
                    "SELECT data FROM entries WHERE kind = ?1 AND key = ?2 AND expires_at > ?3",
                )?
                .query_row(params![kind.as_str(), key, now], |row| row.get(0))
                .optional()?)
        })
    }

    fn take_entry<'a>(
        &'a self,
        kind: EntryKind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Option<String>>> {
        let key = key.to_owned();
        let now = now_unix();
        self.run("take an entry", move |db| {
            // One statement: of two concurrent takes, only one gets the row back.
            let row: Option<(i64, String)> = db
                .conn
                .prepare_cached(
                    "DELETE FROM entries WHERE kind = ?1 AND key = ?2 RETURNING expires_at, data",
                )?
                .query_row(params![kind.as_str(), key], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            Ok(row
                .filter(|(expires_at, _)| *expires_at > now)
                .map(|(_, data)| data))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_do_not_quote_the_record() {
        let err = decode::<CodeRecord>(r#"{"client_id": "secret-looking-value"}"#)
            .expect_err("a damaged record");
        let message = err.to_string();
        assert!(
            message.starts_with("damaged record (data error"),
            "{message}"
        );
        assert!(!message.contains("secret-looking-value"), "{message}");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("set version");
        let err = set_up(&mut conn).expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "database schema version {} is newer than this build supports ({SCHEMA_VERSION})",
                SCHEMA_VERSION + 1
            )
        );
    }

    #[test]
    fn purge_deletes_only_expired_rows() {
        let mut conn = Connection::open_in_memory().expect("open");
        set_up(&mut conn)
            .map_err(|e| e.to_string())
            .expect("schema");
        for (hash, expires_at) in [("old", 10), ("live", 30)] {
            conn.execute(
                "INSERT INTO codes (hash, expires_at, data) VALUES (?1, ?2, '{}')",
                params![hash, expires_at],
            )
            .expect("insert");
        }
        conn.execute(
            "INSERT INTO revoked_families (family, until) VALUES ('f', 10)",
            [],
        )
        .expect("insert");
        purge(&conn, 20).expect("purge");
        let left: Vec<String> = conn
            .prepare("SELECT hash FROM codes")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(left, ["live"]);
        let families: i64 = conn
            .query_row("SELECT count(*) FROM revoked_families", [], |row| {
                row.get(0)
            })
            .expect("count");
        assert_eq!(families, 0);
    }
}
