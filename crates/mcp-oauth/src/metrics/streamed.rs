//! [`StreamedOperation`]: an operation whose answer is streamed, observed when it ends.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::OperationError;

type Record = Box<dyn FnOnce(OperationError, Instant) + Send>;

#[derive(Default)]
struct State {
    /// What the operation layer left to record (set once it saw the answer's head).
    record: Option<Record>,
    /// How and when the answer ended, when it ended before the layer saw the head.
    ended: Option<(OperationError, Instant)>,
}

impl Drop for State {
    /// The answer was dropped without [`StreamedOperation::end`] (the stream broke, or the
    /// client went away before it ended): observed now, without an error type.
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record(OperationError::None, Instant::now());
        }
    }
}

/// A response extension for an answer streamed as it comes (SSE), whose outcome is known
/// only at its end: the [operation layer](super::Metrics::layer) does not observe such an
/// answer at its head, but when the service calls [`StreamedOperation::end`], with the
/// duration to then and the error type given there (a JSON-RPC error code seen in the
/// stream's final event, say). When every handle is dropped without `end`, the operation is
/// observed at the drop, without an error type.
///
/// ```
/// use mcp_oauth::metrics::{OperationError, StreamedOperation};
///
/// let streamed = StreamedOperation::new();
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(streamed.clone());
/// // .. the task that writes the stream, when it reads the final event:
/// streamed.end(OperationError::JsonRpc(-32602));
/// ```
#[derive(Clone, Default)]
pub struct StreamedOperation(Arc<Mutex<State>>);

impl std::fmt::Debug for StreamedOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedOperation").finish_non_exhaustive()
    }
}

impl StreamedOperation {
    /// A handle for one answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The answer ended, with `error`: the operation is observed now (or, if the layer has
    /// not seen the answer's head yet, with the duration to now once it does). Only the
    /// first call counts.
    pub fn end(&self, error: OperationError) {
        let now = Instant::now();
        let record = {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if state.ended.is_some() {
                return;
            }
            state.ended = Some((error, now));
            state.record.take()
        };
        if let Some(record) = record {
            record(error, now);
        }
    }

    /// Called by the layer at the answer's head: `record` runs at the end (now, if the
    /// answer already ended).
    #[cfg(any(feature = "axum", test))]
    pub(super) fn arm(&self, record: Record) {
        let ended = {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            match state.ended {
                Some(ended) => Some((record, ended)),
                None => {
                    state.record = Some(record);
                    None
                }
            }
        };
        if let Some((record, (error, at))) = ended {
            record(error, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn counter() -> (Arc<AtomicUsize>, Record) {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let record: Record = Box::new(move |error, _| {
            let code = match error {
                OperationError::JsonRpc(code) => code.unsigned_abs() as usize,
                _ => 1,
            };
            s.fetch_add(code, Ordering::Relaxed);
        });
        (seen, record)
    }

    #[test]
    fn observed_once_at_the_end_whatever_the_order() {
        let (seen, record) = counter();
        let streamed = StreamedOperation::new();
        streamed.arm(record);
        assert_eq!(seen.load(Ordering::Relaxed), 0, "not before the end");
        streamed.end(OperationError::JsonRpc(-32602));
        streamed.end(OperationError::JsonRpc(-1));
        drop(streamed);
        assert_eq!(seen.load(Ordering::Relaxed), 32602);

        let (seen, record) = counter();
        let streamed = StreamedOperation::new();
        streamed.end(OperationError::JsonRpc(-32601));
        streamed.arm(record);
        assert_eq!(seen.load(Ordering::Relaxed), 32601, "ended before the head");

        let (seen, record) = counter();
        let streamed = StreamedOperation::new();
        streamed.arm(record);
        drop(streamed);
        assert_eq!(seen.load(Ordering::Relaxed), 1, "dropped: no error type");
    }
}
