//! JSON text written straight from record bytes into reusable output buffers:
//! no intermediate value tree. Floats use the
//! shortest round-trip form (zmij, as serde_json uses);
//! non-finite floats become the tokens `NaN`, `Infinity`, `-Infinity` that
//! Python's `json` reads; strings escape what JSON requires and, like Python's
//! `json.dumps`, every non-ASCII character as `\uXXXX`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::record::{FieldValue, Nested};

/// Appends a float.
#[inline]
pub(crate) fn f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let mut b = zmij::Buffer::new();
        out.extend_from_slice(b.format_finite(v).as_bytes());
    } else if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v > 0.0 {
        out.extend_from_slice(b"Infinity");
    } else {
        out.extend_from_slice(b"-Infinity");
    }
}

/// Appends a signed integer.
#[inline]
pub(crate) fn i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends an unsigned integer.
#[inline]
pub(crate) fn u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Appends a quoted, escaped string.
#[inline]
pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if plain(s) {
        out.extend_from_slice(s.as_bytes());
    } else {
        escape_slow(out, s);
    }
    out.push(b'"');
}

/// Whether `s` is stored as it is (printable ASCII without `"` and `\`):
/// nothing to escape.
#[inline]
pub(crate) fn plain(s: &str) -> bool {
    s.bytes()
        .all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
}

#[cold]
fn escape_slow(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut units = [0u16; 2];
    for ch in s.chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(ch as u8),
            _ => {
                for u in ch.encode_utf16(&mut units).iter() {
                    out.extend_from_slice(b"\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(HEX[((u >> shift) & 0xf) as usize]);
                    }
                }
            }
        }
    }
}

/// Appends one decoded field value.
#[inline]
pub(crate) fn value(out: &mut Vec<u8>, v: FieldValue<'_>) {
    match v {
        FieldValue::F64(x) => f64(out, x),
        FieldValue::I64(x) => i64(out, x),
        FieldValue::U64(x) => u64(out, x),
        FieldValue::Bool(true) => out.extend_from_slice(b"true"),
        FieldValue::Bool(false) => out.extend_from_slice(b"false"),
        FieldValue::Null => out.extend_from_slice(b"null"),
        FieldValue::Str(s) => str(out, s),
        FieldValue::F64s(raw) => {
            out.push(b'[');
            for (i, w) in raw.chunks_exact(8).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                f64(out, f64::from_le_bytes(w.try_into().unwrap()));
            }
            out.push(b']');
        }
        FieldValue::List(l) => list(out, l),
        FieldValue::Object(o) => object(out, o),
    }
}

#[inline(never)]
fn list(out: &mut Vec<u8>, l: Nested<'_>) {
    out.push(b'[');
    for (i, v) in l.items().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        value(out, v);
    }
    out.push(b']');
}

#[inline(never)]
fn object(out: &mut Vec<u8>, o: Nested<'_>) {
    out.push(b'{');
    for (i, (k, v)) in o.members().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        member(out, k, v);
    }
    out.push(b'}');
}

/// Appends `"name":value`.
#[inline]
pub(crate) fn member(out: &mut Vec<u8>, name: &str, v: FieldValue<'_>) {
    str(out, name);
    out.push(b':');
    value(out, v);
}

/// Nanoseconds since the Unix epoch as float seconds (Python's `time.time()`).
#[inline]
pub(crate) fn epoch_secs(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// Appends a wall-clock time as float seconds with microsecond resolution
/// (`1795817645.891359`): integer formatting, several times cheaper than a
/// general float formatter, and the same value a reader parses.
#[inline]
pub(crate) fn epoch_secs_micros(out: &mut Vec<u8>, nanos: u64) {
    let micros = nanos / 1_000;
    let (secs, frac) = (micros / 1_000_000, (micros % 1_000_000) as u32);
    u64(out, secs);
    out.push(b'.');
    if frac == 0 {
        out.push(b'0');
        return;
    }
    let mut digits = [b'0'; 6];
    let mut f = frac;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (f % 10) as u8;
        f /= 10;
    }
    let end = 6 - digits.iter().rev().take_while(|&&d| d == b'0').count();
    out.extend_from_slice(&digits[..end]);
}

/// ISO-8601 UTC with microseconds and `Z`, as the Python SDK writes it
/// (Python's `isoformat()` leaves the fraction out when it is zero).
pub(crate) fn iso(nanos: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(nanos);
    let s = humantime::format_rfc3339_micros(t).to_string();
    match s.strip_suffix(".000000Z") {
        Some(whole) => format!("{whole}Z"),
        None => s,
    }
}

/// The wall clock now, in nanoseconds since the Unix epoch.
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

/// ISO-8601 of the wall clock now.
pub(crate) fn iso_now() -> String {
    iso(now_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        f(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn floats_and_tokens() {
        assert_eq!(s(|o| f64(o, 1.0)), "1.0");
        assert_eq!(s(|o| f64(o, f64::NAN)), "NaN");
        assert_eq!(s(|o| f64(o, f64::INFINITY)), "Infinity");
        assert_eq!(s(|o| f64(o, f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(s(|o| f64(o, -0.0)), "-0.0");
        assert_eq!(s(|o| f64(o, 0.1)), "0.1");
    }

    #[test]
    fn strings_escape_like_python() {
        assert_eq!(s(|o| str(o, "a\"b\\c\n")), r#""a\"b\\c\n""#);
        assert_eq!(s(|o| str(o, "é\u{1}")), r#""\u00e9\u0001""#);
        assert_eq!(s(|o| str(o, "😀")), r#""\ud83d\ude00""#);
        assert_eq!(s(|o| str(o, "\u{7f}")), r#""\u007f""#);
    }

    #[test]
    fn epoch_seconds_with_micros() {
        assert_eq!(
            s(|o| epoch_secs_micros(o, 1_795_817_645_891_359_123)),
            "1795817645.891359"
        );
        assert_eq!(
            s(|o| epoch_secs_micros(o, 1_795_817_645_000_000_999)),
            "1795817645.0"
        );
        assert_eq!(
            s(|o| epoch_secs_micros(o, 1_795_817_645_010_000_000)),
            "1795817645.01"
        );
        assert_eq!(s(|o| epoch_secs_micros(o, 5_000)), "0.000005");
    }

    #[test]
    fn iso_timestamps() {
        assert_eq!(iso(1_577_836_800_000_000_000), "2020-01-01T00:00:00Z");
        assert_eq!(
            iso(1_577_836_800_123_456_789),
            "2020-01-01T00:00:00.123456Z"
        );
    }
}
