//! Fast numeric reads of metric streams: the values of a few fields of each
//! point, scanned straight from the line bytes (no JSON tree), for charts
//! and summaries over millions of points. A line the scanner does not
//! follow (an escaped key, a nested field `a.b`) is parsed whole instead, so
//! the result is the same as [`parse_lenient`](super::parse_lenient)'s.

use serde_json::Value as Json;

use super::lines::LineReader;
use crate::error::Result;

/// What a scan read.
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
            match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some((&self.b[start..self.i - 1], escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                _ => self.i += 1,
            }
        }
    }

    /// A value as a number (NaN when it is not one); nested values skipped.
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
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                while let Some(c) = self.b.get(self.i) {
                    if !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
                        break;
                    }
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                Some((text.parse().ok()?, false))
            }
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

fn fast_line(line: &[u8], keys: &[&[u8]], vals: &mut [f64]) -> Option<Fast> {
    let mut p = P { b: line, i: 0 };
    let mut index = None;
    let mut slow = false;
    let mut found = 0usize;
    let mut nested = false;
    p.members(|key, escaped, p| {
        slow |= escaped;
        match key {
            b"index" => {
                let (v, _) = p.number()?;
                index = (v >= 0.0 && v.fract() == 0.0).then_some(v as u64);
            }
            b"data" => p.members(|k, esc, p| {
                slow |= esc;
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
                Some(())
            })?,
            _ => p.skip()?,
        }
        Some(())
    })?;
    if slow || (nested && found < keys.len()) {
        return Some(Fast::Slow);
    }
    Some(Fast::Done(index))
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

/// A stored value as a number (see [`scan_metric`]).
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
