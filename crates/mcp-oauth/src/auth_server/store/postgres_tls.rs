//! TLS to PostgreSQL for [`PostgresStore`](super::PostgresStore): rustls (aws-lc-rs), the
//! server's certificate always verified.
//!
//! The connection URL says whether to use it, with libpq's words:
//!
//! | in the URL | connection |
//! |---|---|
//! | nothing, `sslmode=disable` or `sslmode=prefer` | plain TCP (no TLS) |
//! | `sslmode=require`, `verify-ca` or `verify-full` | TLS; the certificate must chain to a trusted root and name the host |
//! | `sslrootcert=/path/ca.pem` | with one of the above: only the certificates in that PEM file are trusted roots |
//!
//! Stricter than libpq on purpose: `require` verifies too (libpq's `require` encrypts but
//! trusts any certificate, which an attacker on the path can present). Without
//! `sslrootcert`, the trusted roots are the platform's.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::StoreError;
use crate::verify::BoxFuture;

/// How a connection URL asks to connect.
pub(super) enum Tls {
    /// Plain TCP.
    Off,
    /// TLS, verified.
    Verified(VerifiedTls),
}

/// Splits the libpq TLS words tokio-postgres does not read (`verify-ca`, `verify-full`,
/// `sslrootcert`) out of a connection URL (URL or `key=value` form): the URL to parse, and
/// the TLS to use.
pub(super) fn from_url(url: &str) -> Result<(String, Tls), StoreError> {
    let (rest, mode, root) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url_form(url)?
    } else {
        split_key_value_form(url)
    };
    let verified = match mode.as_deref() {
        None | Some("disable" | "prefer") => false,
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(other) => {
            return Err(StoreError::unavailable(format!(
                "postgres: sslmode={other} is not supported; use disable, require, verify-ca or verify-full"
            )));
        }
    };
    if !verified {
        if root.is_some() {
            return Err(StoreError::unavailable(
                "postgres: sslrootcert is given but TLS is not: add sslmode=verify-full",
            ));
        }
        return Ok((rest, Tls::Off));
    }
    Ok((
        rest,
        Tls::Verified(VerifiedTls::new(root.map(PathBuf::from))?),
    ))
}

type Split = (String, Option<String>, Option<String>);

fn split_url_form(url: &str) -> Result<Split, StoreError> {
    let mut parsed = url::Url::parse(url)
        .map_err(|_| StoreError::unavailable("postgres: invalid connection url"))?;
    let (mut mode, mut root) = (None, None);
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(k, v)| match k.as_ref() {
            "sslmode" => {
                mode = Some(v.into_owned());
                None
            }
            "sslrootcert" => {
                root = Some(v.into_owned());
                None
            }
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    if mode.is_none() && root.is_none() {
        // Nothing of ours in it: the URL goes to the driver exactly as given.
        return Ok((url.to_owned(), None, None));
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((parsed.into(), mode, root))
}

fn split_key_value_form(config: &str) -> Split {
    let (mut mode, mut root) = (None, None);
    let kept: Vec<&str> = config
        .split_whitespace()
        .filter(|pair| {
            if let Some(value) = pair.strip_prefix("sslmode=") {
                mode = Some(value.to_owned());
                false
            } else if let Some(value) = pair.strip_prefix("sslrootcert=") {
                root = Some(value.to_owned());
                false
            } else {
                true
            }
        })
        .collect();
    (kept.join(" "), mode, root)
}

/// TLS with the server's certificate verified, against the platform's roots or a PEM file's.
#[derive(Clone)]
pub(super) struct VerifiedTls {
    config: Arc<ClientConfig>,
}

impl VerifiedTls {
    fn new(roots_file: Option<PathBuf>) -> Result<Self, StoreError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::unavailable(format!("postgres: TLS set-up: {e}")))?;
        let config = match roots_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(&path)
                    .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                    .map_err(|e| {
                        StoreError::unavailable(format!(
                            "postgres: cannot read sslrootcert {}: {e}",
                            path.display()
                        ))
                    })?;
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(StoreError::unavailable(format!(
                        "postgres: sslrootcert {} holds no usable certificate",
                        path.display()
                    )));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(|e| {
                    StoreError::unavailable(format!("postgres: the platform's roots: {e}"))
                })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth()
            }
        };
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

impl<S> MakeTlsConnect<S> for VerifiedTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, io::Error> {
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Connect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One connection's handshake.
pub(super) struct Connect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = BoxFuture<'static, Result<Stream<S>, io::Error>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(Stream(tls))
        })
    }
}

/// A TLS connection to the server.
pub(super) struct Stream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Stream<S> {
    /// No channel binding: SCRAM-SHA-256 without `-PLUS` (the certificate is verified instead).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, Option<String>, Option<String>) {
        if url.starts_with("postgres") {
            split_url_form(url).expect("parses")
        } else {
            split_key_value_form(url)
        }
    }

    #[test]
    fn libpq_tls_words_are_taken_out_and_the_rest_kept() {
        assert_eq!(
            split(
                "postgres://u:p@db:5432/mcp?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x"
            ),
            (
                "postgres://u:p@db:5432/mcp?application_name=x".to_owned(),
                Some("verify-full".to_owned()),
                Some("/ca.pem".to_owned())
            )
        );
        assert_eq!(
            split("postgres://db/mcp?sslmode=require"),
            (
                "postgres://db/mcp".to_owned(),
                Some("require".to_owned()),
                None
            )
        );
        assert_eq!(
            split("host=db dbname=mcp sslmode=verify-ca sslrootcert=/ca.pem"),
            (
                "host=db dbname=mcp".to_owned(),
                Some("verify-ca".to_owned()),
                Some("/ca.pem".to_owned())
            )
        );
        assert_eq!(
            split("postgres://db/mcp"),
            ("postgres://db/mcp".to_owned(), None, None)
        );
    }

    #[test]
    fn what_cannot_be_kept_is_refused_with_what_to_do() {
        let err = |url: &str| match from_url(url) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{url} accepted"),
        };
        assert!(err("postgres://db/mcp?sslmode=allow").contains("sslmode=allow is not supported"));
        assert!(err("postgres://db/mcp?sslrootcert=/ca.pem").contains("add sslmode=verify-full"));
        assert!(
            err("postgres://db/mcp?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .contains("cannot read sslrootcert /nonexistent/ca.pem")
        );
        assert!(matches!(
            from_url("postgres://db/mcp?sslmode=prefer"),
            Ok((_, Tls::Off))
        ));
        assert!(matches!(
            from_url("postgres://db/mcp?sslmode=require"),
            Ok((_, Tls::Verified(_)))
        ));
    }
}
