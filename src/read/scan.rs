//! Fast numeric reads of metric streams: the values of a few fields of each
//! point, scanned straight from the line bytes (no JSON tree), for charts
//! and summaries over millions of points. A line the scanner does not
//! follow (an escaped key, a nested field `a.b`) is parsed whole instead, so
//! the result is the same as [`parse_lenient`](super::parse_lenient)'s.

use serde_json::Value as Json;

use super::lines::LineReader;
use crate::error::Result;

/// What a scan read.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data.jsonl");
/// std::fs::write(&path, "{\"data\":{\"loss\":0.5}}\nnot a point\n").unwrap();
/// let mut reader = ml_dash::read::LineReader::open(&path)?;
/// let report = ml_dash::read::scan_metric(&mut reader, &["loss"], |_, _| {})?;
/// assert_eq!(report, ml_dash::read::ScanReport { lines: 2, unparsed: 1 });
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Complete lines read.
    pub lines: u64,
    /// Lines that do not parse as a metric point (skipped).
    pub unparsed: u64,
}

/// Calls `f(index, values)` for every point of a metric stream's
/// `data.jsonl` that `reader` reads, `values[i]` being the number in field
/// `fields[i]` of the point's `data` (`_ts` included; a nested field by its
/// dotted path, `opt.lr`): NaN when the point has no such field or it is not
/// a number (`true` / `false` are 1 / 0; the stored tokens `NaN`,
/// `Infinity`, `-Infinity` are those values). `index` is the point's
/// `index`, or its line's position among those read when it has none.
///
/// ```
/// # fn main() -> ml_dash::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data.jsonl");
/// std::fs::write(&path, concat!(
///     "{\"index\":0,\"data\":{\"loss\":0.5,\"step\":0,\"_ts\":1.5}}\n",
///     "{\"index\": 1, \"data\": {\"loss\": NaN, \"step\": 1}}\n",
/// )).unwrap();
/// let mut reader = ml_dash::read::LineReader::open(&path)?;
/// let mut got = Vec::new();
/// ml_dash::read::scan_metric(&mut reader, &["step", "loss"], |i, v| got.push((i, v[0], v[1])))?;
/// assert_eq!(got[0], (0, 0.0, 0.5));
/// assert!(got[1].2.is_nan());
/// # Ok(()) }
/// ```
pub fn scan_metric(
    reader: &mut LineReader,
    fields: &[&str],
    mut f: impl FnMut(u64, &[f64]),
) -> Result<ScanReport> {
    let keys: Vec<&[u8]> = fields.iter().map(|k| k.as_bytes()).collect();
    let mut vals = vec![f64::NAN; fields.len()];
    let mut report = ScanReport::default();
    while let Some((_, line)) = reader.next_line()? {
        report.lines += 1;
        vals.fill(f64::NAN);
        let index = match fast_line(line, &keys, &mut vals) {
            Some(Fast::Done(i)) => i,
            Some(Fast::Slow) | None => match slow_line(line, fields, &mut vals) {
                Some(i) => i,
                None => {
                    report.unparsed += 1;
                    continue;
                }
            },
        };
        f(index.unwrap_or(report.lines - 1), &vals);
    }
    Ok(report)
}

enum Fast {
    Done(Option<u64>),
    /// Parse this line whole (an escaped key or a requested field not found
    /// at the top level of `data` while it has nested objects).
    Slow,
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> P<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// A string's raw content and whether it has escapes.
    #[inline]
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.i..)?;
            let at = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
            self.i += at;
            if rest[at] == b'"' {
                self.i += 1;
                return Some((&self.b[start..self.i - 1], escaped));
            }
            escaped = true;
            self.i += 2;
        }
    }

    /// The bytes of a number token.
    #[inline]
    fn span(&mut self) -> &'a [u8] {
        let start = self.i;
        while let Some(c) = self.b.get(self.i) {
            if !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                break;
            }
            self.i += 1;
        }
        &self.b[start..self.i]
    }

    /// The value of an `index` member: a point's index when it is a whole
    /// number of at most 19 digits, else `None` (the value skipped).
    #[inline]
    fn index(&mut self) -> Option<Option<u64>> {
        self.ws();
        let t = self.span();
        if t.is_empty() {
            self.skip()?;
        }
        Some(
            (!t.is_empty() && t.len() < 20 && t.iter().all(u8::is_ascii_digit))
                .then(|| t.iter().fold(0u64, |n, &c| n * 10 + u64::from(c - b'0'))),
        )
    }

    /// A value as a number (NaN when it is not one); nested values skipped
    /// (the flag says one was).
    #[inline]
    fn number(&mut self) -> Option<(f64, bool)> {
        self.ws();
        let c = *self.b.get(self.i)?;
        let word = |p: &mut Self, w: &[u8], v: f64| {
            p.b[p.i..].starts_with(w).then(|| {
                p.i += w.len();
                (v, false)
            })
        };
        match c {
            b'-' if self.b[self.i..].starts_with(b"-Infinity") => {
                word(self, b"-Infinity", f64::NEG_INFINITY)
            }
            b'-' | b'0'..=b'9' => Some((decimal(self.span())?, false)),
            b'N' => word(self, b"NaN", f64::NAN),
            b'I' => word(self, b"Infinity", f64::INFINITY),
            b't' => word(self, b"true", 1.0),
            b'f' => word(self, b"false", 0.0),
            b'n' => word(self, b"null", f64::NAN),
            b'"' => self.string().map(|_| (f64::NAN, false)),
            b'{' | b'[' => self.skip().map(|()| (f64::NAN, true)),
            _ => None,
        }
    }

    /// Skips one value of any kind.
    fn skip(&mut self) -> Option<()> {
        self.ws();
        match *self.b.get(self.i)? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.b.get(self.i)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            b'-' | b'0'..=b'9' if !self.b[self.i..].starts_with(b"-I") => {
                self.span();
                Some(())
            }
            _ => self.number().map(drop),
        }
    }

    /// Calls `f(key, self)` for each member of an object; `f` consumes the value.
    #[inline]
    fn members(
        &mut self,
        mut f: impl FnMut(&'a [u8], bool, &mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let (key, escaped) = self.string()?;
            self.eat(b':')?;
            f(key, escaped, self)?;
            if self.eat(b',').is_none() {
                return self.eat(b'}');
            }
        }
    }
}

/// Powers of ten exact in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A JSON number token as the nearest f64: Clinger's fast path (a mantissa
/// of at most 19 digits that is exact in an f64, at most 2^53, and a power of
/// ten up to 22: one correctly rounded operation on exact values), else the
/// standard library's parser.
#[inline]
fn decimal(t: &[u8]) -> Option<f64> {
    if t.len() > 21 {
        return slow_decimal(t); // past 19 digits, or an exponent
    }
    let (neg, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    let mut m: u64 = 0;
    let mut n = 0u32; // significant digits taken
    let mut frac = 0i32;
    let mut seen_dot = false;
    let mut i = 0;
    while i < digits.len() {
        match digits[i] {
            // Up to 19 significant digits (leading zeros aside): a u64.
            c @ b'0'..=b'9' if n < 19 || (m == 0 && c == b'0') => {
                m = m * 10 + u64::from(c - b'0');
                if m != 0 {
                    n += 1;
                }
                if seen_dot {
                    frac += 1;
                }
            }
            b'0'..=b'9' => return slow_decimal(t),
            b'.' if !seen_dot => seen_dot = true,
            b'e' | b'E' => break,
            _ => return slow_decimal(t),
        }
        i += 1;
    }
    if i == 0 || (i == 1 && seen_dot) {
        return None;
    }
    let mut exp: i32 = -frac;
    if i < digits.len() {
        let e = std::str::from_utf8(&digits[i + 1..])
            .ok()?
            .parse::<i32>()
            .ok()?;
        exp = exp.checked_add(e)?;
    }
    if m > (1 << 53) || exp.unsigned_abs() > 22 {
        return slow_decimal(t);
    }
    let v = m as f64;
    let v = if exp < 0 {
        v / POW10[exp.unsigned_abs() as usize]
    } else {
        v * POW10[exp as usize]
    };
    Some(if neg { -v } else { v })
}

#[cold]
fn slow_decimal(t: &[u8]) -> Option<f64> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// A line as [`walk`] read it.
enum Walk {
    /// `index` (if it has one) and whether it has `data`.
    Done(Option<u64>, bool),
    /// An escaped key: parse the line whole.
    Slow,
}

/// Reads a metric line's `index` and hands each member of its `data` to
/// `member`, which consumes the value and returns whether it has all it
/// wants; the walk ends there once the index is read too (the rest of the
/// line is not read, nor checked), else at the line's end.
fn walk<'a>(
    line: &'a [u8],
    mut member: impl FnMut(&'a [u8], &mut P<'a>) -> Option<bool>,
) -> Option<Walk> {
    let mut p = P { b: line, i: 0 };
    let (mut index, mut have_index, mut have_data, mut enough) = (None, false, false, false);
    p.eat(b'{')?;
    if p.eat(b'}').is_some() {
        return Some(Walk::Done(None, false));
    }
    loop {
        let (key, escaped) = p.string()?;
        if escaped {
            return Some(Walk::Slow);
        }
        p.eat(b':')?;
        match key {
            b"index" => {
                index = p.index()?;
                have_index = true;
            }
            b"data" => {
                have_data = true;
                p.eat(b'{')?;
                if p.eat(b'}').is_none() {
                    loop {
                        let (k, escaped) = p.string()?;
                        if escaped {
                            return Some(Walk::Slow);
                        }
                        p.eat(b':')?;
                        enough = member(k, &mut p)?;
                        if enough && have_index {
                            return Some(Walk::Done(index, true));
                        }
                        if p.eat(b',').is_none() {
                            p.eat(b'}')?;
                            break;
                        }
                    }
                }
            }
            _ => p.skip()?,
        }
        if have_index && (have_data || enough) {
            return Some(Walk::Done(index, have_data));
        }
        if p.eat(b',').is_none() {
            p.eat(b'}')?;
            return Some(Walk::Done(index, have_data));
        }
    }
}

/// The fast path: reads a line up to where it has the index and every
/// field asked for (the rest of the line is not read, nor checked).
fn fast_line(line: &[u8], keys: &[&[u8]], vals: &mut [f64]) -> Option<Fast> {
    let (mut nested, mut found) = (false, 0usize);
    let walked = walk(line, |k, p| {
        match keys.iter().position(|&want| want == k) {
            Some(i) => {
                let (v, n) = p.number()?;
                vals[i] = v;
                nested |= n;
                found += 1;
            }
            None => {
                p.ws();
                nested |= matches!(p.b.get(p.i), Some(b'{'));
                p.skip()?;
            }
        }
        Some(found == keys.len())
    })?;
    match walked {
        Walk::Slow => Some(Fast::Slow),
        Walk::Done(..) if nested && found < keys.len() => Some(Fast::Slow),
        Walk::Done(index, _) => Some(Fast::Done(index)),
    }
}

/// Every number among the top-level members of a metric line's `data`
/// (`true` / `false` as 1 / 0, the stored non-finite tokens as those
/// values; strings, `null` and NaN are no number), as `f(key, value)` in
/// stored order. Returns the line's `index` (`Some(None)`: it has none) and
/// whether `data` holds nested values; `None` when the line is not a metric
/// point. As [`scan_metric`]'s fast path, the line is read up to where it
/// has both `index` and `data`. A line with an escaped key or nested values
/// is parsed whole: `f` is then told to forget what it saw
/// ([`Member::Again`]) and sees every member from the start.
pub(crate) fn data_numbers(line: &[u8], mut f: impl FnMut(Member)) -> Option<(Option<u64>, bool)> {
    let mut g = |k: &[u8], v: f64| f(Member::Number(k, v));
    match data_numbers_fast(line, &mut g) {
        Some(Fast::Done(index)) => return Some((index, false)),
        Some(Fast::Slow) => f(Member::Again),
        None => return None,
    }
    let v = super::parse_lenient(line).ok()?;
    let data = v.get("data")?.as_object()?;
    let mut nested = false;
    for (k, v) in data {
        nested |= v.is_object() || v.is_array();
        let n = number_of(v);
        if !n.is_nan() {
            f(Member::Number(k.as_bytes(), n));
        }
    }
    Some((v.get("index").and_then(Json::as_u64), nested))
}

/// What [`data_numbers`] reports.
pub(crate) enum Member<'a> {
    /// A member with a number: key (as stored, unescaped), value.
    Number(&'a [u8], f64),
    /// Forget the members reported so far: they come again.
    Again,
}

/// [`data_numbers`] for a line without escapes and nested values (else
/// `Fast::Slow`, for the whole parse to read it).
fn data_numbers_fast(line: &[u8], f: &mut impl FnMut(&[u8], f64)) -> Option<Fast> {
    let mut nested = false;
    let walked = walk(line, |k, p| {
        let (v, n) = p.number()?;
        nested |= n;
        if !v.is_nan() && !nested {
            f(k, v);
        }
        Some(false)
    })?;
    match walked {
        Walk::Done(index, true) if !nested => Some(Fast::Done(index)),
        Walk::Done(_, false) => None,
        _ => Some(Fast::Slow),
    }
}

/// The whole-parse path: top-level fields of `data`, then dotted paths into
/// its nested objects. Returns the index (`Some(None)`: no index), `None`
/// when the line is not a metric point.
fn slow_line(line: &[u8], fields: &[&str], vals: &mut [f64]) -> Option<Option<u64>> {
    let v = super::parse_lenient(line).ok()?;
    let data = v.get("data")?.as_object()?;
    for (i, name) in fields.iter().enumerate() {
        let value = data.get(*name).or_else(|| {
            let mut parts = name.split('.');
            let mut at = data.get(parts.next()?)?;
            for part in parts {
                at = at.get(part)?;
            }
            Some(at)
        });
        vals[i] = value.map_or(f64::NAN, number_of);
    }
    Some(v.get("index").and_then(Json::as_u64))
}

/// The raw bytes of member `key` of the JSON object `line` (a metric line's
/// `data` object, say), as stored: `None` when the line is not an object or
/// has no such member.
///
/// ```
/// let line = br#"{"index":3,"data":{"loss":NaN,"q":[1,2]},"createdAt":"t"}"#;
/// assert_eq!(ml_dash::read::member_bytes(line, "data"), Some(&br#"{"loss":NaN,"q":[1,2]}"#[..]));
/// ```
pub fn member_bytes<'a>(line: &'a [u8], key: &str) -> Option<&'a [u8]> {
    let mut p = P { b: line, i: 0 };
    let mut found = None;
    p.members(|k, _, p| {
        p.ws();
        let start = p.i;
        p.skip()?;
        if found.is_none() && k == key.as_bytes() {
            found = Some(&p.b[start..p.i]);
        }
        Some(())
    })?;
    found
}

/// The JSON object `line` without its member `key`, the others as stored
/// (`None` when the line is not an object).
///
/// ```
/// let line = br#"{"sequenceNumber":7,"level":"info","message":"hi"}"#;
/// let out = ml_dash::read::without_member(line, "sequenceNumber").unwrap();
/// assert_eq!(out, br#"{"level":"info","message":"hi"}"#);
/// ```
pub fn without_member(line: &[u8], key: &str) -> Option<Vec<u8>> {
    let mut p = P { b: line, i: 0 };
    let mut out = Vec::with_capacity(line.len());
    out.push(b'{');
    p.members(|k, _, p| {
        p.ws();
        let start = p.i;
        p.skip()?;
        if k != key.as_bytes() {
            if out.len() > 1 {
                out.push(b',');
            }
            // `k` lies in the line: the key with its quotes is one byte wider.
            let at = k.as_ptr() as usize - p.b.as_ptr() as usize;
            out.extend_from_slice(&p.b[at - 1..at + k.len() + 1]);
            out.push(b':');
            out.extend_from_slice(&p.b[start..p.i]);
        }
        Some(())
    })?;
    out.push(b'}');
    Some(out)
}

/// A stored value as a number (see [`scan_metric`]).
///
/// # Examples
/// ```
/// use serde_json::json;
/// use ml_dash::read::number_of;
/// assert_eq!(number_of(&json!(0.5)), 0.5);
/// assert_eq!(number_of(&json!(true)), 1.0);
/// assert_eq!(number_of(&json!("-Infinity")), f64::NEG_INFINITY);
/// assert!(number_of(&json!("a word")).is_nan());
/// ```
pub fn number_of(v: &Json) -> f64 {
    match v {
        Json::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Json::Bool(b) => f64::from(u8::from(*b)),
        Json::String(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => f64::NAN,
        },
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str, fields: &[&str]) -> (Vec<(u64, Vec<f64>)>, ScanReport) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(&path, text).unwrap();
        let mut r = LineReader::open(&path).unwrap();
        let mut got = Vec::new();
        let rep = scan_metric(&mut r, fields, |i, v| got.push((i, v.to_vec()))).unwrap();
        (got, rep)
    }

    #[test]
    fn decimals_are_the_standard_parsers() {
        for t in [
            "0",
            "-0",
            "1",
            "12.5",
            "0.1",
            "1e3",
            "-2.5E-3",
            "1.0000000399920017",
            "123456789012345",
            "1234567890123456789012",
            "0.30000000000000004",
            "1796303099.908762",
            "5e-324",
            "1e400",
            "9007199254740993",
            "0.000001",
            "10.0",
            "1.5e+2",
        ] {
            let want: f64 = t.parse().unwrap();
            let got = decimal(t.as_bytes()).unwrap();
            assert!(got.to_bits() == want.to_bits(), "{t}: {got} vs {want}");
        }
        // Mantissas of 15 to 19 digits around 2^53, the dot anywhere.
        let mut rng = 7u64;
        for _ in 0..20_000 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let digits = 15 + (rng >> 60) % 5;
            let m = (rng >> 3) % 10u64.pow(digits as u32);
            let s = m.to_string();
            let dot = (rng >> 40) as usize % (s.len() + 1);
            let t = match dot {
                0 => s.clone(),
                d => format!("{}.{}", &s[..d], &s[d..]),
            };
            let want: f64 = t.parse().unwrap();
            let got = decimal(t.as_bytes()).unwrap();
            assert!(got.to_bits() == want.to_bits(), "{t}: {got} vs {want}");
        }
        for bad in ["", "-", ".", "1.2.3", "--1", "1e"] {
            assert_eq!(
                decimal(bad.as_bytes()).map(f64::to_bits),
                bad.parse::<f64>().ok().map(f64::to_bits),
                "{bad}"
            );
        }
    }

    #[test]
    fn fast_and_slow_paths_agree() {
        let text = concat!(
            "{\"index\":0,\"data\":{\"a\":1.5,\"s\":\"x\\\"}\",\"b\":-2e3,\"_ts\":7},\"createdAt\":\"t\"}\n",
            "{\"index\": 1, \"data\": {\"a\": Infinity, \"b\": -Infinity, \"q\": [1, {\"z\": 2}]}}\n",
            "{\"index\":2,\"data\":{\"opt\":{\"lr\":0.1},\"a\":true}}\n",
            "{\"index\":3,\"data\":{\"a\\u0062\":5}}\n",
            "not json\n",
            "{\"data\":{\"a\":null}}\n",
        );
        let (got, rep) = scan(text, &["a", "b", "opt.lr", "_ts"]);
        assert_eq!(
            rep,
            ScanReport {
                lines: 6,
                unparsed: 1
            }
        );
        let show: Vec<(u64, Vec<String>)> = got
            .iter()
            .map(|(i, v)| (*i, v.iter().map(|x| x.to_string()).collect()))
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            show,
            [
                (0, s(&["1.5", "-2000", "NaN", "7"])),
                (1, s(&["inf", "-inf", "NaN", "NaN"])),
                (2, s(&["1", "NaN", "0.1", "NaN"])),
                (3, s(&["NaN", "NaN", "NaN", "NaN"])),
                (5, s(&["NaN", "NaN", "NaN", "NaN"])),
            ]
        );
        // The escaped key `a\u0062` is `ab`: found by the whole parse.
        let (got, _) = scan(text, &["ab"]);
        assert_eq!(got[3].1, [5.0]);
    }
}
