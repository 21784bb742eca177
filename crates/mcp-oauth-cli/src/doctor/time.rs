//! Times in words: "2 h 5 min", "2025-01-31T10:00:00Z".

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub(super) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A length of time for people: "45 s", "3 min 20 s", "2 h 5 min", "3 days 4 h".
pub(super) fn human_duration(secs: u64) -> String {
    let (days, hours, mins, rest) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    if secs < 60 {
        format!("{rest} s")
    } else if secs < 3600 {
        if rest == 0 || mins >= 10 {
            format!("{mins} min")
        } else {
            format!("{mins} min {rest} s")
        }
    } else if secs < 86_400 {
        if mins == 0 {
            format!("{hours} h")
        } else {
            format!("{hours} h {mins} min")
        }
    } else {
        let unit = if days == 1 { "day" } else { "days" };
        if hours == 0 {
            format!("{days} {unit}")
        } else {
            format!("{days} {unit} {hours} h")
        }
    }
}

/// A Unix time as RFC 3339 in UTC (`2025-01-31T10:00:00Z`).
pub(super) fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(0), "0 s");
        assert_eq!(human_duration(59), "59 s");
        assert_eq!(human_duration(200), "3 min 20 s");
        assert_eq!(human_duration(720), "12 min");
        assert_eq!(human_duration(7200), "2 h");
        assert_eq!(human_duration(7530), "2 h 5 min");
        assert_eq!(human_duration(86_400), "1 day");
        assert_eq!(human_duration(3 * 86_400 + 4 * 3600 + 12), "3 days 4 h");
    }

    #[test]
    fn dates_match_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
