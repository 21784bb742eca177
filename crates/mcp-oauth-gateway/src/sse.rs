//! Server-sent events: the few lines of the format the gateway writes and reads, and the
//! resumability of the streams it writes itself (protocol 2025-03-26 to 2025-11-25,
//! "Resumability and Redelivery"): every event gets an id `PREFIX-STREAM-SEQ`, where `PREFIX` is
//! random per session (drawn once, when the session's first stream opens), `STREAM` numbers the
//! session's streams (0 is the GET stream) and `SEQ` counts the stream's events. Each stream
//! keeps its latest events for a GET with `Last-Event-ID` to replay what came after.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::Notify;

/// Events a stream keeps for a replay; older ones are dropped.
pub(crate) const MAX_EVENTS: usize = 256;
/// Bytes of data a stream keeps (the newest event is kept whatever its size).
pub(crate) const MAX_BYTES: usize = 1024 * 1024;
/// How long an event can be replayed after it was written.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(300);
/// Bytes all streams keep together: past it, a stream keeps only what its connection has not
/// read yet (without a connection, only its newest event), so a resume may find nothing.
pub(crate) const MAX_BYTES_ALL: usize = 64 * 1024 * 1024;
static KEPT_ALL: AtomicUsize = AtomicUsize::new(0);
/// Request (POST) streams a session keeps besides its GET stream; the oldest goes first.
pub(crate) const MAX_STREAMS: usize = 8;

/// The `data` of each event in an SSE body (multi-line data joined with `\n`); comments,
/// `id`, `event` and `retry` lines are skipped.
pub(crate) fn event_data(body: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if let Some(d) = data.take() {
                events.push(d);
            }
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    if let Some(d) = data {
        events.push(d);
    }
    events
}

/// The `id` of an SSE event (its last `id` line), if it has one that can be sent back.
pub(crate) fn event_id(event: &str) -> Option<String> {
    event
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter_map(|line| line.strip_prefix("id:"))
        .map(|value| value.strip_prefix(' ').unwrap_or(value))
        .next_back()
        .filter(|id| !id.is_empty() && !id.contains('\0'))
        .map(str::to_owned)
}

/// The event streams of one session: its id prefix, its GET stream and its latest request
/// streams.
pub(crate) struct Streams {
    prefix: Arc<str>,
    next: AtomicU64,
    standalone: Arc<Replay>,
    kept: Mutex<VecDeque<Arc<Replay>>>,
    /// Dropped with the session: the task reading an upstream's GET stream stops then.
    alive: tokio::sync::watch::Sender<()>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streams").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Streams {
    /// `None` when the random source fails.
    pub(crate) fn new() -> Option<Self> {
        let mut bytes = [0u8; 12];
        aws_lc_rs::rand::fill(&mut bytes).ok()?;
        let mut prefix = String::with_capacity(24);
        for b in bytes {
            prefix.push_str(&format!("{b:02x}"));
        }
        let prefix: Arc<str> = prefix.into();
        let (alive, _) = tokio::sync::watch::channel(());
        Some(Self {
            standalone: Arc::new(Replay::new(prefix.clone(), 0)),
            prefix,
            next: AtomicU64::new(1),
            kept: Mutex::new(VecDeque::new()),
            alive,
        })
    }

    /// The GET stream (stream 0).
    pub(crate) fn standalone(&self) -> &Arc<Replay> {
        &self.standalone
    }

    /// A new request stream; the oldest is forgotten beyond [`MAX_STREAMS`] (a reader still
    /// following it keeps it alive until it ends).
    pub(crate) fn open(&self) -> Arc<Replay> {
        let stream = self.next.fetch_add(1, Ordering::Relaxed);
        let replay = Arc::new(Replay::new(self.prefix.clone(), stream));
        let mut kept = lock(&self.kept);
        kept.push_back(replay.clone());
        while kept.len() > MAX_STREAMS {
            kept.pop_front();
        }
        replay
    }

    /// Resolves when the session ends.
    pub(crate) fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut alive = self.alive.subscribe();
        async move { while alive.changed().await.is_ok() {} }
    }

    /// The stream and the sequence number a `Last-Event-ID` names, if it is one of this
    /// session's streams still kept. An id of another session, a forged or unknown one,
    /// finds nothing.
    pub(crate) fn find(&self, last_event_id: &str) -> Option<(Arc<Replay>, u64)> {
        let rest = last_event_id
            .strip_prefix(&*self.prefix)?
            .strip_prefix('-')?;
        let (stream, seq) = rest.split_once('-')?;
        let (stream, seq) = (number(stream)?, number(seq)?);
        if stream == 0 {
            return Some((self.standalone.clone(), seq));
        }
        let kept = lock(&self.kept);
        let replay = kept.iter().find(|r| r.stream == stream)?.clone();
        Some((replay, seq))
    }
}

/// A decimal number without sign or leading zeros (an id is read back only as written).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// One stream's latest events, written by the task that reads its source and read by the
/// client's connection (one at a time: a resumed connection takes the stream over).
pub(crate) struct Replay {
    prefix: Arc<str>,
    stream: u64,
    /// For the GET stream of an HTTP upstream: the id of the last event read from the
    /// upstream's own GET stream, sent as `Last-Event-ID` when the gateway opens it again.
    pub(crate) upstream_last: Mutex<Option<String>>,
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    /// The sequence number of `events[0]` (numbers start at 1).
    first: u64,
    events: VecDeque<(Instant, Bytes)>,
    bytes: usize,
    /// The source ended (for the GET stream: until a new source starts).
    done: bool,
    /// Whether a task reads the source.
    pumping: bool,
    /// Events before this one were read by the attached reader.
    delivered: u64,
    /// The attached reader (0: none) and the last reader number given.
    reader: u64,
    readers: u64,
}

impl State {
    fn end(&self) -> u64 {
        self.first + self.events.len() as u64
    }

    /// Drops what is beyond the caps ([`MAX_EVENTS`], [`MAX_BYTES`], [`MAX_AGE`]); when all
    /// streams together keep too much (`tight`, [`MAX_BYTES_ALL`]), what the attached reader
    /// already read too (without one, all but the newest event).
    fn prune(&mut self, now: Instant, tight: bool) {
        while self.events.len() > MAX_EVENTS
            || (self.bytes > MAX_BYTES && self.events.len() > 1)
            || self
                .events
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > MAX_AGE)
            || (tight && self.events.len() > 1 && (self.reader == 0 || self.first < self.delivered))
        {
            if let Some((_, data)) = self.events.pop_front() {
                self.bytes -= data.len();
                KEPT_ALL.fetch_sub(data.len(), Ordering::Relaxed);
                self.first += 1;
            }
        }
    }
}

impl Replay {
    fn new(prefix: Arc<str>, stream: u64) -> Self {
        Self {
            prefix,
            stream,
            upstream_last: Mutex::new(None),
            state: Mutex::new(State {
                first: 1,
                events: VecDeque::new(),
                bytes: 0,
                done: false,
                pumping: false,
                delivered: 1,
                reader: 0,
                readers: 0,
            }),
            changed: Notify::new(),
        }
    }

    /// Writes an event.
    pub(crate) fn push(&self, data: Bytes) {
        let now = Instant::now();
        {
            let mut state = lock(&self.state);
            state.bytes += data.len();
            let all = KEPT_ALL.fetch_add(data.len(), Ordering::Relaxed) + data.len();
            state.events.push_back((now, data));
            state.prune(now, all > MAX_BYTES_ALL);
        }
        self.changed.notify_waiters();
    }

    /// Marks a source as reading into this stream; false when one already does.
    pub(crate) fn start(&self) -> bool {
        let mut state = lock(&self.state);
        if state.pumping {
            return false;
        }
        state.pumping = true;
        state.done = false;
        true
    }

    /// The source ended: readers end once they have read everything.
    pub(crate) fn finish(&self) {
        {
            let mut state = lock(&self.state);
            state.done = true;
            state.pumping = false;
        }
        self.changed.notify_waiters();
    }

    /// Whether a client reads this stream now.
    pub(crate) fn has_reader(&self) -> bool {
        lock(&self.state).reader != 0
    }

    /// A reader of the events after `after` (`None`: of the events to come). Without
    /// `take_over`, `None` when a reader is attached; with it, the attached reader ends.
    /// `None` too when events after `after` are no longer kept, or `after` was never written.
    pub(crate) fn attach(self: &Arc<Self>, after: Option<u64>, take_over: bool) -> Option<Reader> {
        let reader = {
            let mut state = lock(&self.state);
            state.prune(Instant::now(), false);
            if state.reader != 0 && !take_over {
                return None;
            }
            let next = match after {
                None => state.end(),
                Some(seq) if seq.checked_add(1)? >= state.first && seq < state.end() => seq + 1,
                Some(_) => return None,
            };
            state.readers += 1;
            state.reader = state.readers;
            state.delivered = next;
            Reader {
                replay: self.clone(),
                next,
                number: state.reader,
            }
        };
        self.changed.notify_waiters();
        Some(reader)
    }
}

/// A client's connection reading a stream.
pub(crate) struct Reader {
    replay: Arc<Replay>,
    next: u64,
    number: u64,
}

impl Reader {
    /// The next event and its id; `None` at the end of the stream, when another
    /// connection took it over, or when this one fell so far behind that the events it
    /// needs were dropped.
    pub(crate) async fn next(&mut self) -> Option<(String, Bytes)> {
        loop {
            let notified = self.replay.changed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = lock(&self.replay.state);
                if state.reader != self.number || self.next < state.first {
                    return None;
                }
                let index = usize::try_from(self.next - state.first).ok()?;
                if let Some(data) = state.events.get(index).map(|(_, data)| data.clone()) {
                    let seq = self.next;
                    self.next += 1;
                    state.delivered = self.next;
                    let id = format!("{}-{}-{seq}", self.replay.prefix, self.replay.stream);
                    return Some((id, data));
                }
                if state.done {
                    return None;
                }
            }
            notified.await;
        }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        let state = lock(&self.state);
        KEPT_ALL.fetch_sub(state.bytes, Ordering::Relaxed);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut state = lock(&self.replay.state);
        if state.reader == self.number {
            state.reader = 0;
        }
    }
}

/// Splits a byte stream into whole SSE events (each ending with a blank line).
pub(crate) fn sse_events(
    body: Body,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    futures_util::stream::unfold(
        (body.into_data_stream(), Vec::<u8>::new(), false),
        |(mut stream, mut buffer, done)| async move {
            loop {
                if let Some(end) = find_event_end(&buffer) {
                    let event: Vec<u8> = buffer.drain(..end).collect();
                    return Some((Ok(Bytes::from(event)), (stream, buffer, done)));
                }
                if done {
                    return None;
                }
                match stream.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    _ => return None,
                }
            }
        },
    )
}

/// The end (exclusive) of the first whole event in `buffer`.
fn find_event_end(buffer: &[u8]) -> Option<usize> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    #[test]
    fn data_of_each_event_is_read() {
        let body = ": keep-alive\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\nevent: message\ndata: x\ndata: y\n\ndata:z";
        assert_eq!(event_data(body), ["{\"a\":1}", "x\ny", "z"]);
        assert!(event_data("").is_empty());
        assert!(event_data(": only a comment\n\n").is_empty());
        assert_eq!(event_id("id: 7\r\ndata: x\r\n").as_deref(), Some("7"));
        assert_eq!(event_id("data: x\nid:a\nid: b\n").as_deref(), Some("b"));
        assert!(event_id("data: x\n").is_none());
        assert!(event_id("id:\ndata: x\n").is_none());
    }

    fn drain(reader: &mut Reader) -> Vec<(String, Bytes)> {
        let mut out = Vec::new();
        while let Some(Some(event)) = reader.next().now_or_never() {
            out.push(event);
        }
        out
    }

    #[test]
    fn ids_name_the_session_stream_and_event_and_find_only_their_own() {
        let (a, b) = (Streams::new().expect("a"), Streams::new().expect("b"));
        assert_ne!(a.prefix, b.prefix);
        let stream = a.open();
        let mut reader = stream.attach(None, true).expect("reader");
        stream.push(Bytes::from_static(b"one"));
        stream.push(Bytes::from_static(b"two"));
        let events = drain(&mut reader);
        let ids: Vec<&str> = events.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            [format!("{}-1-1", a.prefix), format!("{}-1-2", a.prefix)]
        );
        assert!(b.find(ids[0]).is_none(), "another session's id");
        let (found, seq) = a.find(ids[0]).expect("own id");
        assert!(Arc::ptr_eq(&found, &stream) && seq == 1);
        let (standalone, _) = a.find(&format!("{}-0-5", a.prefix)).expect("GET stream");
        assert!(Arc::ptr_eq(&standalone, a.standalone()));
        for forged in [
            "",
            "x",
            "1-1",
            &format!("{}-2-1", a.prefix),
            &format!("{}-1-01", a.prefix),
            &format!("{}-1-+1", a.prefix),
            &format!("{}-01-1", a.prefix),
            &format!("{}1-1", a.prefix),
        ] {
            assert!(a.find(forged).is_none(), "{forged}");
        }
        // Resuming after event 1 replays event 2 and takes the stream over.
        let mut resumed = stream.attach(Some(1), false);
        assert!(resumed.is_none(), "a reader is attached");
        resumed = stream.attach(Some(1), true);
        let mut resumed = resumed.expect("take over");
        assert_eq!(drain(&mut resumed).len(), 1);
        assert_eq!(reader.next().now_or_never(), Some(None), "taken over");
        // An event never written, or one before what is kept, resumes nothing.
        assert!(
            stream.attach(Some(2), true).is_some(),
            "after the last: nothing yet"
        );
        assert!(stream.attach(Some(3), true).is_none());
        assert!(stream.attach(Some(u64::MAX), true).is_none());
        stream.finish();
        let mut last = stream.attach(Some(0), true).expect("from the start");
        assert_eq!(drain(&mut last).len(), 2);
        assert_eq!(last.next().now_or_never(), Some(None), "ended");
    }

    #[test]
    fn streams_and_events_are_bounded() {
        let streams = Streams::new().expect("streams");
        let first = streams.open();
        for _ in 0..MAX_STREAMS {
            streams.open();
        }
        assert!(
            streams.find(&format!("{}-1-1", streams.prefix)).is_none(),
            "oldest forgotten"
        );
        let stream = streams.open();
        for n in 0..(MAX_EVENTS + 10) {
            stream.push(Bytes::from(n.to_string()));
        }
        // Events 1 to 10 were dropped: a resume after 9 would miss event 10.
        assert!(stream.attach(Some(9), true).is_none(), "dropped");
        let mut reader = stream.attach(Some(10), true).expect("kept");
        assert_eq!(drain(&mut reader).len(), MAX_EVENTS);
        let big = streams.open();
        big.push(Bytes::from(vec![b'x'; MAX_BYTES]));
        big.push(Bytes::from(vec![b'y'; 10]));
        assert!(big.attach(Some(0), true).is_none(), "over the byte cap");
        let mut reader = big.attach(Some(1), true).expect("the newest");
        assert_eq!(drain(&mut reader).len(), 1);
        drop(first);
    }

    #[test]
    fn when_all_streams_keep_too_much_only_what_is_unread_stays() {
        let stream = Streams::new().expect("streams").open();
        for n in 0..5 {
            stream.push(Bytes::from(n.to_string()));
        }
        let mut reader = stream.attach(Some(0), true).expect("reader");
        assert!(reader.next().now_or_never().flatten().is_some());
        assert!(reader.next().now_or_never().flatten().is_some());
        {
            let mut state = lock(&stream.state);
            state.prune(Instant::now(), true);
            assert_eq!(
                (state.first, state.events.len()),
                (3, 3),
                "events 1 and 2 were read"
            );
        }
        assert_eq!(drain(&mut reader).len(), 3, "the reader loses nothing");
        drop(reader);
        let mut state = lock(&stream.state);
        state.prune(Instant::now(), true);
        assert_eq!(
            (state.first, state.events.len()),
            (5, 1),
            "without a reader, the newest"
        );
    }

    #[test]
    fn sse_events_end_at_a_blank_line() {
        assert_eq!(find_event_end(b"data: 1\n\ndata: 2"), Some(9));
        assert_eq!(find_event_end(b"data: 1\r\n\r\n"), Some(11));
        assert_eq!(find_event_end(b"data: 1\n"), None);
    }
}
