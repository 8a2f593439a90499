//! Output helpers: aligned tables, times, durations, numbers, globs.

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde_json::Value as Json;

/// An aligned table: a header and rows of cells, columns separated by two
/// spaces, the last column not padded.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with this header.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            rows: vec![header.into_iter().map(Into::into).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Rows added (the header aside).
    pub fn len(&self) -> usize {
        self.rows.len() - 1
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes it, each line indented by `indent`.
    pub fn write(&self, w: &mut impl Write, indent: &str) -> std::io::Result<()> {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut width = vec![0; cols];
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        for r in &self.rows {
            let mut line = String::from(indent);
            for (i, c) in r.iter().enumerate() {
                line.push_str(c);
                if i + 1 < r.len() {
                    let pad = width[i] - c.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(w, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `2026-01-02 03:04:05` (UTC).
pub fn time(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    s.trim_end_matches('Z').replace('T', " ")
}

/// A short duration: `850ms`, `12.3s`, `4m05s`, `2h03m`, `3d04h`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A number as people read it: integers whole, others with up to 6
/// significant digits (`0.00332`, `1.5e-7`, `12345.7`).
pub fn number(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x.fract() == 0.0 && x.abs() < 1e15 {
        return format!("{x:.0}");
    }
    let a = x.abs();
    if (1e-4..1e15).contains(&a) {
        let digits = 6 - (a.log10().floor() as i32 + 1);
        let s = format!("{x:.*}", digits.clamp(0, 10) as usize);
        match s.contains('.') {
            true => s.trim_end_matches('0').trim_end_matches('.').to_string(),
            false => s,
        }
    } else {
        let s = format!("{x:.5e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = m.trim_end_matches('0').trim_end_matches('.');
        format!("{m}e{e}")
    }
}

/// A stored value for a table cell: strings bare, numbers by [`number`],
/// the rest as compact JSON.
pub fn value(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.as_f64().map_or_else(|| n.to_string(), number),
        Json::Null => "null".into(),
        v => v.to_string(),
    }
}

/// Bytes as `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

/// Whether `prefix` matches `pattern`: `*` any run of characters within a
/// segment, `**` any across segments, `?` one character; a pattern without
/// wildcards matches the prefix itself and the prefixes under it.
pub fn glob_match(pattern: &str, prefix: &str) -> bool {
    let pattern = pattern.trim_matches('/');
    if !pattern.contains(['*', '?']) {
        return prefix == pattern || prefix.starts_with(&format!("{pattern}/"));
    }
    fn m(p: &[u8], s: &[u8]) -> bool {
        match p {
            [] => s.is_empty(),
            [b'*', b'*', rest @ ..] => (0..=s.len()).any(|i| m(rest, &s[i..])),
            [b'*', rest @ ..] => {
                let seg = s.iter().position(|&c| c == b'/').unwrap_or(s.len());
                (0..=seg).any(|i| m(rest, &s[i..]))
            }
            [b'?', rest @ ..] => s.first().is_some_and(|&c| c != b'/') && m(rest, &s[1..]),
            [c, rest @ ..] => s.first() == Some(c) && m(rest, &s[1..]),
        }
    }
    m(pattern.as_bytes(), prefix.as_bytes())
}

/// Whether a command-line word is a glob.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// One CSV cell (RFC 4180 quoting when needed).
pub fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes pretty JSON and a newline.
pub fn json(w: &mut impl Write, v: &Json) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, v)?;
    writeln!(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(!glob_match("alice/*", "alice/mnist/x"));
        assert!(glob_match("alice/*/*", "alice/mnist/x"));
        assert!(glob_match("alice/**", "alice/mnist/f/x"));
        assert!(glob_match("alice/mnist", "alice/mnist/x"));
        assert!(!glob_match("alice/mn", "alice/mnist/x"));
        assert!(glob_match("*/mnist/run-?", "bob/mnist/run-3"));
        assert!(!glob_match("*/mnist/run-?", "bob/mnist/run-10"));
    }

    #[test]
    fn numbers() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.0033222591362126247), "0.00332226");
        assert_eq!(number(1234.56789), "1234.57");
        assert_eq!(number(1.5e-7), "1.5e-7");
        assert_eq!(number(-0.5), "-0.5");
        assert_eq!(number(1796303099.9), "1796303100");
        assert_eq!(duration(Duration::from_millis(3)), "3ms");
        assert_eq!(duration(Duration::from_secs(125)), "2m05s");
    }
}
