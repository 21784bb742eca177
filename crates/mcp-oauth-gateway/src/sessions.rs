//! Client sessions (`Mcp-Session-Id`): random ids the gateway hands out on `initialize`, each
//! bound to the principal (issuer and subject) whose token opened it. Another principal
//! presenting the id is answered as if the session did not exist (404).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use mcp_oauth::Auth;
use tokio::sync::mpsc;

use crate::fanout::Fanout;
use crate::sse::Streams;
use crate::upstream::http::HttpSession;

/// Messages the GET stream of a session can hold before new ones are dropped.
const STANDALONE_BUFFER: usize = 64;

/// One client session.
pub(crate) struct Session {
    pub(crate) id: Arc<str>,
    pub(crate) principal: Arc<str>,
    /// The protocol version agreed with the client.
    pub(crate) protocol_version: &'static str,
    /// The session's GET stream (server-initiated messages), when one is open.
    standalone: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// The upstream session, for a Streamable HTTP upstream.
    pub(crate) http: Option<HttpSession>,
    /// The members' sessions, for a gateway of several upstreams.
    pub(crate) fanout: Option<Fanout>,
    /// Whether the client declared URL-mode elicitation at `initialize` (see
    /// [`crate::elicit`]).
    url_elicitation: AtomicBool,
    /// The event ids and replay buffers of the streams the gateway writes, from the first
    /// one (`None` inside when the random source failed).
    streams: std::sync::OnceLock<Option<Streams>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("protocol_version", &self.protocol_version)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens the GET stream; `None` when one is already open (a second one gets 409).
    pub(crate) fn open_stream(&self) -> Option<mpsc::Receiver<Bytes>> {
        let mut slot = self.standalone.lock().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|tx| !tx.is_closed()) {
            return None;
        }
        let (tx, rx) = mpsc::channel(STANDALONE_BUFFER);
        *slot = Some(tx);
        Some(rx)
    }

    /// Records whether the client declared URL-mode elicitation at `initialize` (see
    /// [`crate::elicit::declares_url_elicitation`]).
    pub(crate) fn declared(&self, url_elicitation: bool) {
        self.url_elicitation
            .store(url_elicitation, Ordering::Relaxed);
    }

    /// Whether the client declared URL-mode elicitation.
    pub(crate) fn url_elicitation(&self) -> bool {
        self.url_elicitation.load(Ordering::Relaxed)
    }

    /// The session's resumable streams (created at the first call).
    pub(crate) fn streams(&self) -> Option<&Streams> {
        self.streams.get_or_init(Streams::new).as_ref()
    }

    /// Sends a server-initiated message on the GET stream; false when none is open or it is
    /// full. A resumable GET stream is open while a client reads it (a message written to a
    /// connection that broke is replayed when the client resumes).
    pub(crate) fn push(&self, message: Bytes) -> bool {
        if let Some(Some(streams)) = self.streams.get()
            && !streams.standalone().has_reader()
        {
            return false;
        }
        let slot = self.standalone.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().is_some_and(|tx| tx.try_send(message).is_ok())
    }
}

/// The principal a session is bound to: issuer and subject ("" without authentication).
pub(crate) fn principal(auth: Option<&Auth>) -> Arc<str> {
    match auth {
        Some(auth) => Arc::from(format!(
            "{}\u{0}{}",
            auth.issuer.as_deref().unwrap_or_default(),
            auth.subject()
        )),
        None => Arc::from(""),
    }
}

/// Whether `principal` (as [`principal`] builds it) is the caller's (issuer, subject; `None`
/// without authentication), without building a string.
fn is_principal(principal: &str, caller: Option<(Option<&str>, &str)>) -> bool {
    match caller {
        Some((issuer, subject)) => {
            principal
                .strip_prefix(issuer.unwrap_or_default())
                .and_then(|rest| rest.strip_prefix('\u{0}'))
                == Some(subject)
        }
        None => principal.is_empty(),
    }
}

/// A new session id: 128 random bits, hex (visible ASCII, as the MCP spec requires).
fn new_id() -> Option<Arc<str>> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    let mut id = String::with_capacity(32);
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    Some(Arc::from(id))
}

/// The session table: sessions expire after `idle` without a request.
#[derive(Clone)]
pub(crate) struct Sessions {
    cache: moka::sync::Cache<Arc<str>, Arc<Session>>,
    /// For stateless clients (protocol 2026-07-28): each principal's session, made by the
    /// gateway and never shown to the client (principal to session id).
    stateless: moka::sync::Cache<Arc<str>, Arc<str>>,
}

impl Sessions {
    pub(crate) fn new(idle: Duration, max: u64) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(max)
                .time_to_idle(idle)
                .build(),
            stateless: moka::sync::Cache::builder()
                .max_capacity(max)
                .time_to_idle(idle)
                .build(),
        }
    }

    /// The session the gateway keeps for a stateless client's `principal`, while it lives.
    pub(crate) fn stateless(&self, principal: &Arc<str>) -> Option<Arc<Session>> {
        let id = self.stateless.get(principal)?;
        let session = self.cache.get(&id);
        if session.is_none() {
            self.stateless.invalidate(principal);
        }
        session
    }

    /// Keeps `session` as the stateless session of its principal.
    pub(crate) fn set_stateless(&self, session: &Session) {
        self.stateless
            .insert(session.principal.clone(), session.id.clone());
    }

    /// Creates a session for `principal`; `None` when the random source fails.
    pub(crate) fn create(
        &self,
        principal: Arc<str>,
        protocol_version: &'static str,
        http: Option<HttpSession>,
    ) -> Option<Arc<Session>> {
        self.insert(Session {
            id: new_id()?,
            principal,
            protocol_version,
            standalone: Mutex::new(None),
            url_elicitation: AtomicBool::new(false),
            http,
            fanout: None,
            streams: std::sync::OnceLock::new(),
        })
    }

    /// Creates a session of a gateway of several upstreams.
    pub(crate) fn create_fanout(
        &self,
        principal: Arc<str>,
        protocol_version: &'static str,
        fanout: Fanout,
    ) -> Option<Arc<Session>> {
        self.insert(Session {
            id: new_id()?,
            principal,
            protocol_version,
            standalone: Mutex::new(None),
            url_elicitation: AtomicBool::new(false),
            http: None,
            fanout: Some(fanout),
            streams: std::sync::OnceLock::new(),
        })
    }

    fn insert(&self, session: Session) -> Option<Arc<Session>> {
        let session = Arc::new(session);
        self.cache.insert(session.id.clone(), session.clone());
        Some(session)
    }

    /// The session `id` if the caller `auth` owns it.
    pub(crate) fn get(&self, id: &str, auth: Option<&Auth>) -> Option<Arc<Session>> {
        let session = self.cache.get(id)?;
        // Not a secret comparison: the id was already matched; this is ownership.
        let caller = auth.map(|a| (a.issuer.as_deref(), a.subject()));
        is_principal(&session.principal, caller).then_some(session)
    }

    /// The session `id`, whoever owns it (for routing upstream messages).
    pub(crate) fn find(&self, id: &str) -> Option<Arc<Session>> {
        self.cache.get(id)
    }

    pub(crate) fn remove(&self, id: &str) {
        self.cache.invalidate(id);
    }

    /// Ends every session: their ids are unknown from now on (404), and their GET streams
    /// lose the gateway's side (a stdio upstream's stream ends). For a reload that changes
    /// what the endpoint serves.
    pub(crate) fn close_all(&self) {
        for (_, session) in self.cache.iter() {
            let mut slot = session.standalone.lock().unwrap_or_else(|p| p.into_inner());
            slot.take();
        }
        self.cache.invalidate_all();
        self.stateless.invalidate_all();
    }

    /// Every live session (for broadcasts such as `list_changed`).
    pub(crate) fn all(&self) -> Vec<Arc<Session>> {
        self.cache.iter().map(|(_, s)| s).collect()
    }

    /// The only session, if there is exactly one.
    pub(crate) fn only(&self) -> Option<Arc<Session>> {
        let mut it = self.cache.iter();
        match (it.next(), it.next()) {
            (Some((_, s)), None) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_only_by_its_owner() {
        let sessions = Sessions::new(Duration::from_secs(60), 10);
        let alice = Arc::<str>::from("https://iss\u{0}alice");
        let s = sessions
            .create(alice.clone(), "2025-06-18", None)
            .expect("session");
        assert_eq!(s.id.len(), 32);
        assert!(s.id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(is_principal(&alice, Some((Some("https://iss"), "alice"))));
        for (issuer, subject) in [
            (Some("https://iss"), "mallory"),
            (Some("https://other"), "alice"),
            (Some("https://iss"), "alic"),
            (None, "alice"),
        ] {
            assert!(
                !is_principal(&alice, Some((issuer, subject))),
                "{issuer:?} {subject}"
            );
        }
        assert!(!is_principal(&alice, None));
        assert!(is_principal("", None));
        assert!(sessions.get(&s.id, None).is_none());
        assert!(sessions.find(&s.id).is_some());
        sessions.remove(&s.id);
        assert!(sessions.find(&s.id).is_none());
    }

    #[test]
    fn one_get_stream_per_session() {
        let sessions = Sessions::new(Duration::from_secs(60), 10);
        let s = sessions
            .create(Arc::from("p"), "2025-06-18", None)
            .expect("session");
        assert!(!s.push(Bytes::from_static(b"{}")));
        let mut rx = s.open_stream().expect("first stream");
        assert!(s.open_stream().is_none());
        assert!(s.push(Bytes::from_static(b"{}")));
        assert_eq!(rx.try_recv().ok(), Some(Bytes::from_static(b"{}")));
        drop(rx);
        assert!(s.open_stream().is_some(), "a closed stream can be reopened");
    }

    #[test]
    fn a_resumable_get_stream_takes_messages_only_while_a_client_reads_it() {
        let sessions = Sessions::new(Duration::from_secs(60), 10);
        let s = sessions
            .create(Arc::from("p"), "2025-06-18", None)
            .expect("session");
        let _rx = s.open_stream().expect("the source");
        let standalone = s.streams().expect("streams").standalone().clone();
        assert!(!s.push(Bytes::from_static(b"{}")), "no reader");
        let reader = standalone.attach(None, false).expect("reader");
        assert!(s.push(Bytes::from_static(b"{}")));
        drop(reader);
        assert!(!s.push(Bytes::from_static(b"{}")), "the reader left");
    }
}
