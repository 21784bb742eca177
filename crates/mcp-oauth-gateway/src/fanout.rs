//! The aggregate's part of a client session (a gateway of several upstreams): each member's
//! session, what the client read that routes later requests. Kept apart from the aggregate
//! itself so that the session table can hold it without depending on the aggregate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;

/// The aggregate's part of a client session.
pub(crate) struct Fanout {
    /// The client's `initialize` body, replayed to members opened later.
    pub(crate) init: Bytes,
    /// Each member's session id, once opened.
    pub(crate) subs: Mutex<Vec<Option<std::sync::Arc<str>>>>,
    /// Requests in flight per member.
    pub(crate) in_flight: Vec<AtomicUsize>,
    /// Resource URI → member, from the lists the client read.
    pub(crate) resources: Mutex<HashMap<String, usize>>,
    /// Exposed name → (member, name upstream), for names that were shortened.
    pub(crate) shortened: Mutex<HashMap<String, (usize, String)>>,
}
