//! Server-sent events: the few lines of the format the gateway writes and reads.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_of_each_event_is_read() {
        let body = ": keep-alive\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\nevent: message\ndata: x\ndata: y\n\ndata:z";
        assert_eq!(event_data(body), ["{\"a\":1}", "x\ny", "z"]);
        assert!(event_data("").is_empty());
        assert!(event_data(": only a comment\n\n").is_empty());
    }
}
