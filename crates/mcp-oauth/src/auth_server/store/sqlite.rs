//! The SQLite store (feature `sqlite`): one file that survives restarts.
//!
//! Every record is one row of `records`, keyed by its kind and key; revocations are rows of
//! `revoked_families`. Codes and refresh tokens are keyed by the hash the caller passes, never
//! by their value. The schema (version 4, kept in `PRAGMA user_version` so later versions can
//! migrate it):
//!
//! ```sql
//! CREATE TABLE records (
//!     kind       TEXT NOT NULL,               -- client, request, code, refresh, transaction,
//!                                             -- upstream_tokens, consent, dpop_proof
//!     key        TEXT NOT NULL,
//!     data       BLOB NOT NULL,               -- the record (JSON)
//!     expires_at INTEGER,                     -- Unix seconds; NULL: kept
//!     used       INTEGER NOT NULL DEFAULT 0,  -- redeemed (codes, refresh tokens)
//!     PRIMARY KEY (kind, key)
//! ) STRICT;
//! CREATE TABLE revoked_families (
//!     family     TEXT PRIMARY KEY NOT NULL,
//!     until      INTEGER NOT NULL             -- revoked while until > now
//! ) STRICT;
//! -- and an index on expires_at (until) of each
//! ```
//!
//! A file of an older version (1 to 3: one table per record type) is migrated to version 4
//! when it is opened, in one transaction: its clients, pending requests, codes (with their
//! used flags), refresh tokens, revocations and proxy records are kept.
//!
//! Rows past their expiry are ignored on read and deleted when the store opens and every
//! 256 writes after that.
//!
//! Redeeming reads and marks the row in one `BEGIN IMMEDIATE` transaction, so of two
//! redemptions of one value exactly one is fresh, even across processes that share the file.
//! Saving a record only when absent is one `INSERT … ON CONFLICT DO UPDATE … WHERE` the
//! existing row lapsed, so of two such saves of one key exactly one changes a row.
//!
//! The connection sits behind a mutex and every call runs on Tokio's blocking pool, so the
//! store never blocks the async runtime (outside a Tokio runtime it runs inline).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::{Kind, Redeemed, Store, StoreError, StoreResult, Stored};
use crate::claims::now_unix;
use crate::verify::BoxFuture;

/// The schema version this build writes, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = "
CREATE TABLE records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    data BLOB NOT NULL,
    expires_at INTEGER,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, key)
) STRICT;
CREATE INDEX records_expires_at ON records (expires_at);
";

const REVOKED: &str = "
CREATE TABLE revoked_families (
    family TEXT PRIMARY KEY NOT NULL,
    until INTEGER NOT NULL
) STRICT;
CREATE INDEX revoked_families_until ON revoked_families (until);
";

/// Version 1 to 3 files: version 2 added `entries`, version 3 `clients.expires_at`. Brought
/// to version 3 first, then moved into `records` ([`MIGRATE_V3`]).
const OLD_V2: &str = "
CREATE TABLE entries (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) STRICT;
";
const OLD_V3: &str = "ALTER TABLE clients ADD COLUMN expires_at INTEGER;";

/// Version 3 to 4: one table of records.
const MIGRATE_V3: &str = "
INSERT INTO records (kind, key, data, expires_at, used)
    SELECT 'client', client_id, CAST(data AS BLOB), expires_at, 0 FROM clients;
INSERT INTO records (kind, key, data, expires_at, used)
    SELECT 'request', id, CAST(data AS BLOB), expires_at, 0 FROM requests;
INSERT INTO records (kind, key, data, expires_at, used)
    SELECT 'code', hash, CAST(data AS BLOB), expires_at, used FROM codes;
INSERT INTO records (kind, key, data, expires_at, used)
    SELECT 'refresh', hash, CAST(data AS BLOB), expires_at, used FROM refresh_tokens;
INSERT INTO records (kind, key, data, expires_at, used)
    SELECT kind, key, CAST(data AS BLOB), expires_at, 0 FROM entries;
DROP TABLE clients;
DROP TABLE requests;
DROP TABLE codes;
DROP TABLE refresh_tokens;
DROP TABLE entries;
";

/// Deletes the rows that lapsed before `?1` (a `NULL` expiry never compares true).
const PURGE: [&str; 2] = [
    "DELETE FROM records WHERE expires_at <= ?1",
    "DELETE FROM revoked_families WHERE until <= ?1",
];

/// Expired rows are deleted every this many writes.
const PURGE_EVERY: u64 = 256;

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Inserts a record unless a live one has its kind and key; a lapsed one is replaced. One
/// statement, so SQLite's write lock makes it atomic across every connection to the file:
/// it changes one row when it saved the record, none when a live one was there.
const PUT_IF_ABSENT: &str = "INSERT INTO records (kind, key, data, expires_at, used) VALUES (?1, ?2, ?3, ?4, 0) \
    ON CONFLICT (kind, key) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at, used = 0 \
    WHERE records.expires_at IS NOT NULL AND records.expires_at <= ?5";

/// Reads `data, used` of a live record.
const FIND: &str = "SELECT data, used FROM records WHERE kind = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)";

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
    /// schema when the file is new (an older schema is migrated). Expired rows are purged on
    /// open.
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
            StoreError::unavailable(format!("sqlite: {what} {}: {err}", path.display()))
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
        let fail =
            |err: &dyn fmt::Display| StoreError::unavailable(format!("sqlite: in memory: {err}"));
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

    /// Runs `job` with the connection on the blocking pool; a failure reads
    /// "sqlite: cannot <what> <kind>: ...".
    fn run<T, F>(
        &self,
        what: &'static str,
        kind: Option<Kind>,
        job: F,
    ) -> BoxFuture<'static, StoreResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db, i64) -> Result<T, Failure> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let noun = kind.map_or("a revoked grant", Kind::noun);
        let now = now_unix();
        let job = move || {
            let mut db = match inner.db.lock() {
                Ok(guard) => guard,
                // A panic mid-call leaves no half-done state: an open transaction was rolled
                // back when it was dropped during the unwind.
                Err(poisoned) => poisoned.into_inner(),
            };
            job(&mut db, now)
                .map_err(|e| StoreError::unavailable(format!("sqlite: cannot {what} {noun}: {e}")))
        };
        Box::pin(async move {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => runtime.spawn_blocking(job).await.map_err(|e| {
                    StoreError::unavailable(format!(
                        "sqlite: cannot {what} {noun}: blocking task failed: {e}"
                    ))
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

/// Creates, migrates or checks the schema, then purges expired rows.
fn set_up(conn: &mut Connection) -> Result<(), Failure> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    match version {
        0 => {
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(REVOKED)?;
        }
        1..=3 => {
            if version < 2 {
                tx.execute_batch(OLD_V2)?;
            }
            if version < 3 {
                tx.execute_batch(OLD_V3)?;
            }
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(MIGRATE_V3)?;
        }
        SCHEMA_VERSION => {}
        newer => return Err(Failure::Schema(newer)),
    }
    if version != SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
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
}

fn find(conn: &Connection, kind: Kind, key: &str, now: i64) -> rusqlite::Result<Option<Stored>> {
    conn.prepare_cached(FIND)?
        .query_row(params![kind.as_str(), key, now], |row| {
            Ok(Stored {
                data: row.get(0)?,
                used: row.get(1)?,
            })
        })
        .optional()
}

/// What went wrong inside a call; shown after "sqlite: cannot <what>: ".
enum Failure {
    Sql(rusqlite::Error),
    Schema(i64),
}

impl From<rusqlite::Error> for Failure {
    fn from(err: rusqlite::Error) -> Self {
        Self::Sql(err)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sql(err) => err.fmt(f),
            Self::Schema(version) => write!(
                f,
                "database schema version {version} is newer than this build supports ({SCHEMA_VERSION})"
            ),
        }
    }
}

impl Store for SqliteStore {
    fn put<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
        data: Vec<u8>,
        expires_at: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let key = key.to_owned();
        self.run("save", Some(kind), move |db, _| {
            db.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO records (kind, key, data, expires_at, used) VALUES (?1, ?2, ?3, ?4, 0)",
                )?
                .execute(params![kind.as_str(), key, data, expires_at])?;
            db.wrote();
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
        let key = key.to_owned();
        self.run("save", Some(kind), move |db, now| {
            let changed = db.conn.prepare_cached(PUT_IF_ABSENT)?.execute(params![
                kind.as_str(),
                key,
                data,
                expires_at,
                now
            ])?;
            if changed == 0 {
                return Ok(false);
            }
            db.wrote();
            Ok(true)
        })
    }

    fn get<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Stored>>> {
        let key = key.to_owned();
        self.run("read", Some(kind), move |db, now| {
            Ok(find(&db.conn, kind, &key, now)?)
        })
    }

    fn take<'a>(&'a self, kind: Kind, key: &'a str) -> BoxFuture<'a, StoreResult<Option<Vec<u8>>>> {
        let key = key.to_owned();
        self.run("take", Some(kind), move |db, now| {
            // One statement: of two concurrent takes, only one gets the row back.
            let row: Option<(Option<i64>, Vec<u8>)> = db
                .conn
                .prepare_cached(
                    "DELETE FROM records WHERE kind = ?1 AND key = ?2 RETURNING expires_at, data",
                )?
                .query_row(params![kind.as_str(), key], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            Ok(row
                .filter(|(expires_at, _)| expires_at.is_none_or(|at| at > now))
                .map(|(_, data)| data))
        })
    }

    fn redeem<'a>(
        &'a self,
        kind: Kind,
        key: &'a str,
    ) -> BoxFuture<'a, StoreResult<Redeemed<Vec<u8>>>> {
        let key = key.to_owned();
        self.run("redeem", Some(kind), move |db, now| {
            // The write lock is taken before the read, so no other redemption (in this
            // process or another) interleaves.
            let tx = db
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let outcome = match find(&tx, kind, &key, now)? {
                None => Redeemed::Missing,
                Some(Stored { data, used: true }) => Redeemed::Replayed(data),
                Some(Stored { data, used: false }) => {
                    tx.prepare_cached("UPDATE records SET used = 1 WHERE kind = ?1 AND key = ?2")?
                        .execute(params![kind.as_str(), key])?;
                    Redeemed::Fresh(data)
                }
            };
            tx.commit()?;
            Ok(outcome)
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, until: i64) -> BoxFuture<'a, StoreResult<()>> {
        let family = family.to_owned();
        self.run("save", None, move |db, _| {
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
        self.run("read", None, move |db, now| {
            Ok(db
                .conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM revoked_families WHERE family = ?1 AND until > ?2)",
                )?
                .query_row(params![family, now], |row| row.get(0))?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for (key, expires_at) in [("old", Some(10)), ("live", Some(30)), ("kept", None)] {
            conn.execute(
                "INSERT INTO records (kind, key, expires_at, data) VALUES ('code', ?1, ?2, X'7B7D')",
                params![key, expires_at],
            )
            .expect("insert");
        }
        conn.execute(
            "INSERT INTO revoked_families (family, until) VALUES ('f', 10)",
            [],
        )
        .expect("insert");
        purge(&conn, 20).expect("purge");
        let mut left: Vec<String> = conn
            .prepare("SELECT key FROM records")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        left.sort();
        assert_eq!(left, ["kept", "live"]);
        let families: i64 = conn
            .query_row("SELECT count(*) FROM revoked_families", [], |row| {
                row.get(0)
            })
            .expect("count");
        assert_eq!(families, 0);
    }
}
