//! `--store` of `mcp-oauth dev` and `mcp-oauth proxy`: a name (`memory`, `sqlite`, `redis`)
//! or a URL (`postgres://…`, `redis://…`, `redis+cluster://…`), and opening that store.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use mcp_oauth::auth_server::{MemoryStore, Store};

/// Where clients, codes, consents and tokens are kept.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum StoreArg {
    /// In memory: everything ends with the process.
    Memory,
    /// SQLite in the data folder: survives restarts of this one instance.
    Sqlite,
    /// Redis at the URL of `--redis-url` (proxy only; the older spelling).
    Redis,
    /// PostgreSQL at this URL (`postgres://` or `postgresql://`).
    Postgres(String),
    /// One Redis server at this URL (`redis://`, `rediss://` or `redis+unix://`).
    RedisUrl(String),
    /// A Redis Cluster through these nodes (from `redis+cluster://[auth@]h1:p1,h2:p2`).
    RedisCluster(Vec<String>),
    /// Not a store: the reason, reported when the store is opened. Parsing never fails, so
    /// that clap's error (which quotes the value, and so a URL's password) never shows.
    Invalid(&'static str),
}

/// The help text of `--store`, shared by both commands.
pub(crate) const HELP: &str = "Where clients, codes and tokens are kept: memory, sqlite (in the \
data folder), postgres://USER[:PASSWORD]@HOST[:PORT]/DB, redis://[:PASSWORD@]HOST[:PORT][/DB], or \
a Redis Cluster as redis+cluster://[:PASSWORD@]HOST:PORT,HOST:PORT,… (any of its nodes; \
rediss+cluster:// for TLS). Instances behind one load balancer share a PostgreSQL or Redis store";

impl FromStr for StoreArg {
    type Err = std::convert::Infallible;

    /// Never fails: what is not a store is [`StoreArg::Invalid`], whose reason never quotes
    /// the value (a URL may hold a password).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let value = value.trim();
        let scheme = value.split_once("://").map(|(scheme, _)| scheme);
        Ok(match (value, scheme) {
            ("memory", _) => Self::Memory,
            ("sqlite", _) => Self::Sqlite,
            ("redis", _) => Self::Redis,
            (_, Some("postgres" | "postgresql")) => Self::Postgres(value.to_owned()),
            (_, Some("redis" | "rediss" | "redis+unix" | "unix")) => {
                Self::RedisUrl(value.to_owned())
            }
            (_, Some(cluster @ ("redis+cluster" | "rediss+cluster"))) => {
                let node_scheme = if cluster == "rediss+cluster" {
                    "rediss"
                } else {
                    "redis"
                };
                cluster_nodes(value, node_scheme).map_or_else(Self::Invalid, Self::RedisCluster)
            }
            (_, Some(_)) => Self::Invalid(
                "--store: a URL must start with postgres://, redis://, rediss:// or redis+cluster://",
            ),
            _ => Self::Invalid(
                "--store: use memory, sqlite, redis, or a postgres:// or redis:// URL",
            ),
        })
    }
}

/// `redis+cluster://[auth@]h1:p1,h2:p2[/]` as one `redis://[auth@]hN:pN` per node.
fn cluster_nodes(value: &str, scheme: &str) -> Result<Vec<String>, &'static str> {
    let rest = value
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .trim_end_matches('/');
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (Some(auth), hosts),
        None => (None, rest),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| match auth {
            Some(auth) => format!("{scheme}://{auth}@{host}"),
            None => format!("{scheme}://{host}"),
        })
        .collect();
    if nodes.is_empty() || hosts.contains('/') {
        return Err(
            "--store: a cluster is redis+cluster://[:PASSWORD@]HOST:PORT,HOST:PORT,… (no database number)",
        );
    }
    Ok(nodes)
}

/// Shows the kind and, for URLs, the scheme only: a URL may hold a password.
impl fmt::Debug for StoreArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Sqlite => f.write_str("sqlite"),
            Self::Redis => f.write_str("redis"),
            Self::Postgres(_) => f.write_str("postgres://[redacted]"),
            Self::RedisUrl(_) => f.write_str("redis://[redacted]"),
            Self::RedisCluster(nodes) => {
                write!(f, "redis+cluster://[{} nodes redacted]", nodes.len())
            }
            Self::Invalid(why) => write!(f, "invalid ({why})"),
        }
    }
}

impl StoreArg {
    /// Opens the store: SQLite in `dir`, Redis keys under `prefix`. `redis_url` is the
    /// older `--redis-url` of `--store redis`.
    pub(crate) async fn open(
        &self,
        dir: &Path,
        redis_url: Option<&str>,
        prefix: &str,
    ) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
        Ok(match self {
            Self::Memory => Arc::new(MemoryStore::new()),
            Self::Sqlite => sqlite(dir)?,
            Self::Redis => {
                let url = redis_url
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .ok_or("--store redis needs --redis-url (or REDIS_URL)")?;
                redis(&[url.to_owned()], false, prefix).await?
            }
            Self::RedisUrl(url) => redis(std::slice::from_ref(url), false, prefix).await?,
            Self::RedisCluster(nodes) => redis(nodes, true, prefix).await?,
            Self::Postgres(url) => postgres(url).await?,
            Self::Invalid(why) => return Err((*why).into()),
        })
    }
}

#[cfg(feature = "sqlite")]
fn sqlite(dir: &Path) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    Ok(Arc::new(mcp_oauth::auth_server::store::SqliteStore::open(
        dir.join("state.sqlite3"),
    )?))
}

#[cfg(not(feature = "sqlite"))]
fn sqlite(_dir: &Path) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    Err("this build has no SQLite support; use --store memory".into())
}

#[cfg(feature = "redis")]
async fn redis(
    urls: &[String],
    cluster: bool,
    prefix: &str,
) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    use mcp_oauth::auth_server::store::RedisStore;
    Ok(match (cluster, urls) {
        (false, [url]) => Arc::new(RedisStore::connect(url, prefix).await?),
        _ => Arc::new(RedisStore::cluster(urls, prefix).await?),
    })
}

#[cfg(not(feature = "redis"))]
async fn redis(
    _urls: &[String],
    _cluster: bool,
    _prefix: &str,
) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    Err(
        "this build has no Redis support; rebuild with the redis feature or use --store sqlite"
            .into(),
    )
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    Ok(Arc::new(
        mcp_oauth::auth_server::store::PostgresStore::connect(url).await?,
    ))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_url: &str) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    Err(
        "this build has no PostgreSQL support; rebuild with the postgres feature or use --store sqlite"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<StoreArg, &'static str> {
        match value.parse() {
            Ok(StoreArg::Invalid(why)) => Err(why),
            Ok(arg) => Ok(arg),
            Err(never) => match never {},
        }
    }

    #[tokio::test]
    async fn an_invalid_store_fails_when_opened_without_quoting_it() {
        let arg: StoreArg = "mysql://u:hunter2@db/x".parse().expect("never fails");
        assert!(!format!("{arg:?}").contains("hunter2"));
        let err = arg
            .open(Path::new("."), None, "p:")
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("--store: a URL must start with"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn names_and_urls_parse() {
        assert_eq!(parse("memory"), Ok(StoreArg::Memory));
        assert_eq!(parse("sqlite"), Ok(StoreArg::Sqlite));
        assert_eq!(parse("redis"), Ok(StoreArg::Redis));
        assert_eq!(
            parse("postgres://u:p@db:5432/auth"),
            Ok(StoreArg::Postgres("postgres://u:p@db:5432/auth".into()))
        );
        assert_eq!(
            parse("postgresql://db/auth"),
            Ok(StoreArg::Postgres("postgresql://db/auth".into()))
        );
        assert_eq!(
            parse("redis://:p@cache:6379/0"),
            Ok(StoreArg::RedisUrl("redis://:p@cache:6379/0".into()))
        );
        assert_eq!(
            parse("redis+cluster://:p@a:7000,b:7001,c:7002/"),
            Ok(StoreArg::RedisCluster(vec![
                "redis://:p@a:7000".into(),
                "redis://:p@b:7001".into(),
                "redis://:p@c:7002".into(),
            ]))
        );
        assert_eq!(
            parse("rediss+cluster://a:7000"),
            Ok(StoreArg::RedisCluster(vec!["rediss://a:7000".into()]))
        );
    }

    #[test]
    fn errors_and_debug_never_quote_a_password() {
        for bad in [
            "mysql://u:hunter2@db/x",
            "hunter2",
            "redis+cluster://:hunter2@",
            "redis+cluster://:hunter2@a:1/0",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(!err.contains("hunter2"), "{err}");
        }
        for good in [
            "postgres://u:hunter2@db/x",
            "redis://:hunter2@cache",
            "redis+cluster://:hunter2@a:1,b:2",
        ] {
            let printed = format!("{:?}", parse(good).expect(good));
            assert!(!printed.contains("hunter2"), "{printed}");
        }
    }
}
