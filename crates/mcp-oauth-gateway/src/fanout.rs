//! The aggregate's part of a client session (a gateway of several upstreams): each member's
//! session, what the client read that routes later requests. Kept apart from the aggregate
//! itself so that the session table can hold it without depending on the aggregate.
//!
//! Members are named, not numbered: a reload may add, remove or reorder upstreams, and a
//! session keeps what it holds of the upstreams that stay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// The aggregate's part of a client session.
pub(crate) struct Fanout {
    /// The client's `initialize` body, replayed to members opened later.
    pub(crate) init: Bytes,
    /// Each member's session id, by the member's name, once opened.
    subs: Mutex<HashMap<Arc<str>, Arc<str>>>,
    /// Requests in flight per member.
    in_flight: Mutex<HashMap<Arc<str>, usize>>,
    /// Resource URI → member, from the lists the client read.
    pub(crate) resources: Mutex<HashMap<String, Arc<str>>>,
    /// Exposed name → (member, name upstream), for names that were shortened.
    pub(crate) shortened: Mutex<HashMap<String, (Arc<str>, String)>>,
    /// Each member's `instructions` (from its `initialize` result), once opened.
    instructions: Mutex<HashMap<Arc<str>, String>>,
}

impl Fanout {
    pub(crate) fn new(init: Bytes, subs: HashMap<Arc<str>, Arc<str>>) -> Self {
        Self {
            init,
            subs: Mutex::new(subs),
            in_flight: Mutex::default(),
            resources: Mutex::default(),
            shortened: Mutex::default(),
            instructions: Mutex::default(),
        }
    }

    /// The member's session id, if one is open.
    pub(crate) fn sub(&self, member: &str) -> Option<Arc<str>> {
        let subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        subs.get(member).cloned()
    }

    pub(crate) fn set_sub(&self, member: &Arc<str>, sub: Option<Arc<str>>) {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        match sub {
            Some(sub) => subs.insert(member.clone(), sub),
            None => subs.remove(member),
        };
    }

    /// The `initialize` result of `member`'s session: what of it a later `server/discover`
    /// repeats.
    pub(crate) fn set_result(&self, member: &Arc<str>, result: &serde_json::Value) {
        if let Some(text) = result.get("instructions").and_then(|v| v.as_str()) {
            let mut all = self.instructions.lock().unwrap_or_else(|p| p.into_inner());
            all.insert(member.clone(), text.to_owned());
        }
    }

    /// `member`'s instructions, if its upstream gave any.
    pub(crate) fn instructions(&self, member: &str) -> Option<String> {
        let all = self.instructions.lock().unwrap_or_else(|p| p.into_inner());
        all.get(member).cloned()
    }

    /// One more request of this session in flight at `member`.
    pub(crate) fn begin(&self, member: &Arc<str>) {
        let mut counts = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(member.clone()).or_default() += 1;
    }

    /// One request fewer in flight at `member`.
    pub(crate) fn end(&self, member: &str) {
        let mut counts = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(member) {
            *count = count.saturating_sub(1);
        }
    }

    /// The members with requests of this session in flight.
    pub(crate) fn busy(&self) -> Vec<Arc<str>> {
        let counts = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(m, _)| m.clone())
            .collect()
    }
}
