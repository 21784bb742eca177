//! Canonical JSON (RFC 8785, JSON Canonicalization Scheme) and its SHA-256.
//!
//! The form, exactly:
//!
//! - no whitespace anywhere;
//! - object members sorted by key, comparing the keys as sequences of UTF-16 code units
//!   (RFC 8785 §3.2.3; for keys in the Basic Multilingual Plane this is code point order);
//! - strings: `"` and `\` escaped as `\"` and `\\`; U+0008, U+0009, U+000A, U+000C and
//!   U+000D as `\b`, `\t`, `\n`, `\f`, `\r`; every other character below U+0020 as `\u00xx`
//!   with lowercase hex; everything else (including `/`, U+007F and non-ASCII) written as
//!   its UTF-8 bytes;
//! - numbers as ECMAScript's `Number.prototype.toString` writes them (RFC 8785 §3.2.2.3):
//!   integers up to 2^53 in magnitude as plain digits, `-0` as `0`, other values by the
//!   shortest round-trip digits, in exponent form (`1e+21`, `1e-7`) outside `[1e-6, 1e21)`.
//!   An integer larger than 2^53 in magnitude is first converted to the nearest IEEE 754
//!   double, as RFC 8785 requires, so it may lose digits;
//! - `true`, `false`, `null` as such; arrays keep their order.

use std::cmp::Ordering;
use std::fmt::Write as _;

use aws_lc_rs::digest;
use serde_json::{Number, Value};

/// The canonical JSON text of `value` (RFC 8785).
pub(crate) fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Lowercase hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// Lower-case hex, two digits a byte (every audit line has at least one: its `event_id`; a
/// digit at a time rather than `write!` per byte, which cost a formatter call per byte).
pub(crate) fn hex(bytes: &[u8]) -> String {
    let digit = |nibble: u8| char::from_digit(u32::from(nibble), 16).unwrap_or('0');
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(digit(byte >> 4));
        out.push(digit(byte & 0x0f));
    }
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(out, number),
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| utf16_order(a, b));
            out.push('{');
            for (i, (key, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn utf16_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// 2^53: integers up to this magnitude are exact in a double and print as plain digits.
const MAX_SAFE: u64 = 1 << 53;

fn write_number(out: &mut String, number: &Number) {
    if let Some(n) = number.as_u64().filter(|n| *n <= MAX_SAFE) {
        let _ = write!(out, "{n}");
    } else if let Some(n) = number.as_i64().filter(|n| n.unsigned_abs() <= MAX_SAFE) {
        let _ = write!(out, "{n}");
    } else if let Some(f) = number.as_f64().filter(|f| f.is_finite()) {
        write_double(out, f);
    } else {
        // Only reachable with serde_json's `arbitrary_precision` and an out-of-range value;
        // keep the text as parsed rather than invent a value.
        let _ = write!(out, "{number}");
    }
}

/// ECMAScript `Number.prototype.toString` for a finite double (ECMA-262 §6.1.6.1.20).
fn write_double(out: &mut String, value: f64) {
    if value == 0.0 {
        out.push('0');
        return;
    }
    if value < 0.0 {
        out.push('-');
    }
    // `{:e}` gives the shortest digits that round-trip, as `d[.ddd]e<exp>`.
    let sci = format!("{:e}", value.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let k = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    // n: where the decimal point goes, counted from the first digit.
    let n = exponent + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n(
            '0',
            usize::try_from(n - k).unwrap_or(0),
        ));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(usize::try_from(n).unwrap_or(0));
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', usize::try_from(-n).unwrap_or(0)));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        let _ = write!(
            out,
            "e{}{}",
            if e < 0 { '-' } else { '+' },
            e.unsigned_abs()
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(hex(&[]), "");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn number(value: f64) -> String {
        let mut out = String::new();
        write_double(&mut out, value);
        out
    }

    #[test]
    fn numbers_follow_ecmascript() {
        // Expected values from RFC 8785 Appendix B and ECMAScript's Number.prototype.toString.
        assert_eq!(number(1e21), "1e+21");
        assert_eq!(number(1e20), "100000000000000000000");
        assert_eq!(number(1e-7), "1e-7");
        assert_eq!(number(0.000001), "0.000001");
        assert_eq!(number(333333333.3333333), "333333333.3333333");
        assert_eq!(number(-1.5), "-1.5");
        assert_eq!(number(4.5), "4.5");
        assert_eq!(number(0.002), "0.002");
        assert_eq!(number(1.7976931348623157e308), "1.7976931348623157e+308");
        assert_eq!(number(5e-324), "5e-324");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(123456789.0), "123456789");
    }

    #[test]
    fn large_integers_become_doubles() {
        assert_eq!(
            canonical_json(&json!(9007199254740992_u64)),
            "9007199254740992"
        );
        assert_eq!(
            canonical_json(&json!(-9007199254740992_i64)),
            "-9007199254740992"
        );
        assert_eq!(
            canonical_json(&json!(18446744073709551615_u64)),
            "18446744073709552000"
        );
    }

    #[test]
    fn strings_escape_only_what_rfc_8785_escapes() {
        let value = json!("\u{0}\u{8}\t\n\u{c}\r\u{1f}\"\\/\u{7f}é€😀");
        assert_eq!(
            canonical_json(&value),
            "\"\\u0000\\b\\t\\n\\f\\r\\u001f\\\"\\\\/\u{7f}é€😀\""
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // U+1F600 is the surrogate pair D83D DE00 in UTF-16: it sorts after U+20AC and
        // before U+FB33, where code point order would put it last.
        let value = json!({"\u{fb33}": 1, "😀": 2, "€": 3, "a": 4, "\r": 5});
        assert_eq!(
            canonical_json(&value),
            "{\"\\r\":5,\"a\":4,\"€\":3,\"😀\":2,\"\u{fb33}\":1}"
        );
    }
}
