//! Streaming line readers over the store's append-only `.jsonl` files: one
//! buffer of [`BUF`] bytes, however large the file, and only complete lines
//! (ending in `\n`). The bytes after the last newline are a line still being
//! written, or a torn one a killed writer left: they are never returned, and
//! [`LineReader::torn`] says where they are.

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::error::{Error, Result};

/// Bytes a [`LineReader`] reads at once (a longer line grows its buffer).
pub const BUF: usize = 1 << 20;

/// Bytes after the last complete line of a file (no newline yet).
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data.jsonl");
/// std::fs::write(&path, "{\"a\":1}\n{\"a\"").unwrap();
/// let mut r = ml_dash::read::LineReader::open(&path)?;
/// while r.next_line()?.is_some() {}
/// assert_eq!(r.torn(), Some(ml_dash::read::Torn { offset: 8, len: 4 }));
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Torn {
    /// Where they start: the end of the last complete line.
    pub offset: u64,
    /// How many there are.
    pub len: u64,
}

/// Reads the complete lines of one file, in order, without loading it whole.
///
/// ```
/// # fn main() -> ml_dash::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data.jsonl");
/// std::fs::write(&path, "{\"a\":1}\n{\"a\":2}\n{\"a\"").unwrap();
/// let mut r = ml_dash::read::LineReader::open(&path)?;
/// let mut n = 0;
/// while let Some((_offset, line)) = r.next_line()? {
///     assert!(line.starts_with(b"{\"a\":"));
///     n += 1;
/// }
/// assert_eq!(n, 2);
/// assert_eq!(r.torn().map(|t| t.len), Some(4)); // `{"a"`: not a line yet
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LineReader {
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
    /// `buf[start..end]` is read and not yet returned.
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    /// Lines starting at or past this offset are not returned.
    stop: u64,
    eof: bool,
    torn: Option<Torn>,
}

impl LineReader {
    /// A reader of the whole file; a missing file reads as empty.
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("data.jsonl");
    /// std::fs::write(&path, "{\"a\":1}\n").unwrap();
    /// let mut r = ml_dash::read::LineReader::open(&path)?;
    /// assert_eq!(r.next_line()?, Some((0, &b"{\"a\":1}"[..])));
    /// assert_eq!(r.next_line()?, None);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<LineReader> {
        LineReader::range(path, 0..u64::MAX)
    }

    /// A reader of the lines that *start* in `range` (byte offsets): the
    /// first is the one starting at `range.start`, or just after the first
    /// newline past it; the last may end past `range.end`. The ranges of a
    /// split (`0..a`, `a..b`, `b..len`) read each line exactly once, so
    /// several threads can share one file. A missing file reads as empty.
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("data.jsonl");
    /// std::fs::write(&path, "aa\nbb\ncc\n").unwrap(); // lines start at 0, 3, 6
    /// // Two readers split the file: each line belongs to the range it starts in.
    /// let mut first = ml_dash::read::LineReader::range(&path, 0..4)?;
    /// let mut second = ml_dash::read::LineReader::range(&path, 4..9)?;
    /// assert_eq!(first.next_line()?, Some((0, &b"aa"[..])));
    /// assert_eq!(first.next_line()?, Some((3, &b"bb"[..])));
    /// assert_eq!(first.next_line()?, None);
    /// assert_eq!(second.next_line()?, Some((6, &b"cc"[..])));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn range(path: impl AsRef<Path>, range: Range<u64>) -> Result<LineReader> {
        let path = path.as_ref().to_path_buf();
        let file = match File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut r = LineReader {
            path,
            file,
            // A short range (a block of lines) needs no 1 MiB buffer.
            buf: vec![
                0;
                range
                    .end
                    .saturating_sub(range.start)
                    .saturating_add(1)
                    .clamp(4096, BUF as u64) as usize
            ],
            start: 0,
            end: 0,
            offset: range.start,
            stop: range.end,
            eof: false,
            torn: None,
        };
        if range.start > 0 && r.file.is_some() {
            use std::io::{Seek, SeekFrom};
            // Start one byte early: a line starts here only if the byte
            // before it is a newline.
            let at = range.start - 1;
            let f = r.file.as_mut().expect("checked");
            f.seek(SeekFrom::Start(at))
                .map_err(|e| Error::io(&r.path, e))?;
            r.offset = at;
            loop {
                if r.start == r.end && !r.fill()? {
                    break;
                }
                let chunk = &r.buf[r.start..r.end];
                match chunk.iter().position(|&c| c == b'\n') {
                    Some(i) => {
                        r.start += i + 1;
                        r.offset += i as u64 + 1;
                        break;
                    }
                    None => {
                        r.offset += chunk.len() as u64;
                        r.start = r.end;
                    }
                }
            }
        }
        Ok(r)
    }

    /// The file read.
    ///
    /// # Examples
    /// ```
    /// let r = ml_dash::read::LineReader::open("missing.jsonl")?;
    /// assert_eq!(r.path(), std::path::Path::new("missing.jsonl"));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The offset just past the last line returned (where a later reader
    /// of new lines starts).
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("data.jsonl");
    /// std::fs::write(&path, "aa\nbb\n").unwrap();
    /// let mut r = ml_dash::read::LineReader::open(&path)?;
    /// r.next_line()?;
    /// assert_eq!(r.offset(), 3);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads more bytes after `buf[start..end]`; false at the end of the file.
    fn fill(&mut self) -> Result<bool> {
        let Some(file) = self.file.as_mut() else {
            self.eof = true;
            return Ok(false);
        };
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let n = self.buf.len() * 2;
            self.buf.resize(n, 0);
        }
        loop {
            match file.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
    }

    /// The next complete line (without its `\n`) and its offset; `None` at
    /// the end (or past the range). Empty lines are skipped.
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("data.jsonl");
    /// std::fs::write(&path, "aa\n\nbb\n").unwrap();
    /// let mut r = ml_dash::read::LineReader::open(&path)?;
    /// assert_eq!(r.next_line()?, Some((0, &b"aa"[..])));
    /// assert_eq!(r.next_line()?, Some((4, &b"bb"[..]))); // the empty line is skipped
    /// assert_eq!(r.next_line()?, None);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn next_line(&mut self) -> Result<Option<(u64, &[u8])>> {
        let mut scanned = 0;
        loop {
            if self.offset >= self.stop {
                return Ok(None);
            }
            let chunk = &self.buf[self.start + scanned..self.end];
            if let Some(i) = find_newline(chunk) {
                let (s, e) = (self.start, self.start + scanned + i);
                let at = self.offset;
                self.start = e + 1;
                self.offset += (e + 1 - s) as u64;
                if e == s {
                    scanned = 0;
                    continue; // an empty line
                }
                return Ok(Some((at, &self.buf[s..e])));
            }
            scanned = self.end - self.start;
            if !self.fill()? {
                if self.end > self.start {
                    self.torn = Some(Torn {
                        offset: self.offset,
                        len: (self.end - self.start) as u64,
                    });
                }
                return Ok(None);
            }
        }
    }

    /// The bytes after the last complete line, once the reader reached the
    /// end of the file (`None` while reading, or when the file ends in `\n`).
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("data.jsonl");
    /// std::fs::write(&path, "aa\nb").unwrap();
    /// let mut r = ml_dash::read::LineReader::open(&path)?;
    /// r.next_line()?;
    /// assert_eq!(r.torn(), None); // not at the end yet
    /// assert_eq!(r.next_line()?, None);
    /// assert_eq!(r.torn().map(|t| (t.offset, t.len)), Some((3, 1)));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn torn(&self) -> Option<Torn> {
        self.torn
    }
}

/// The position of the first `\n` in `b`, eight bytes at a time.
#[inline]
fn find_newline(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= b.len() {
        let w = u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let x = w ^ (ONES * u64::from(b'\n'));
        // The lowest set bit marks the first zero byte of `x` (a borrow only
        // flags bytes above a real zero).
        let t = x.wrapping_sub(ONES) & !x & HIGH;
        if t != 0 {
            return Some(i + (t.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(|&c| c == b'\n').map(|p| p + i)
}

/// One parsed line of a `.jsonl` file.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data.jsonl");
/// std::fs::write(&path, "{\"a\":1}\n{\"a\":Infinity}\n").unwrap();
/// let lines: Vec<_> = ml_dash::read::Lines::open(&path)?.collect::<Result<_, _>>()?;
/// assert_eq!((lines[1].number, lines[1].offset), (2, 8));
/// assert_eq!(lines[1].value["a"], "Infinity");
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Line {
    /// 1-based number among the file's non-empty lines.
    pub number: u64,
    /// Byte offset of its start.
    pub offset: u64,
    /// The JSON value (non-finite tokens as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`).
    pub value: Json,
}

/// The parsed lines of a `.jsonl` file, streamed: an iterator of
/// `Result<Line>`, where a line that does not parse is an
/// [`Error::Corrupt`] naming it and iteration goes on after it.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("data.jsonl");
/// std::fs::write(&path, "{\"a\":1}\nnot json\n{\"a\":3}\n").unwrap();
/// let results: Vec<_> = ml_dash::read::Lines::open(&path)?.collect();
/// assert_eq!(results.len(), 3);
/// assert!(results[1].is_err()); // named, and reading goes on
/// assert_eq!(results[2].as_ref().unwrap().value["a"], 3);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug)]
pub struct Lines {
    reader: LineReader,
    number: u64,
}

impl Lines {
    /// The lines of `path` (a missing file has none).
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// assert_eq!(ml_dash::read::Lines::open(dir.path().join("missing.jsonl"))?.count(), 0);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Lines> {
        Ok(Lines {
            reader: LineReader::open(path)?,
            number: 0,
        })
    }

    /// The reader under it (for [`LineReader::torn`] at the end).
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("data.jsonl");
    /// std::fs::write(&path, "{\"a\":1}\n{\"a\"").unwrap();
    /// let mut lines = ml_dash::read::Lines::open(&path)?;
    /// assert_eq!(lines.by_ref().count(), 1);
    /// assert_eq!(lines.reader().torn().map(|t| t.len), Some(4));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn reader(&self) -> &LineReader {
        &self.reader
    }
}

impl Iterator for Lines {
    type Item = Result<Line>;

    fn next(&mut self) -> Option<Result<Line>> {
        let (offset, bytes) = match self.reader.next_line() {
            Ok(Some(l)) => l,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        self.number += 1;
        let number = self.number;
        Some(match super::parse_lenient(bytes) {
            Ok(value) => Ok(Line {
                number,
                offset,
                value,
            }),
            Err(e) => Err(Error::Corrupt {
                path: self.reader.path().to_path_buf(),
                reason: format!("line {number} (byte {offset}): {}", corrupt_reason(e)),
            }),
        })
    }
}

fn corrupt_reason(e: Error) -> String {
    match e {
        Error::Corrupt { reason, .. } => reason,
        e => e.to_string(),
    }
}

/// New complete lines of an append-only file, poll after poll: the reader
/// of a live run (`ml-dash follow`), which needs no file-system events (they
/// do not reach NFS or Lustre clients). The file may not exist yet.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// let mut tail = ml_dash::read::Tail::new(ml_dash::read::logs_path(run.dir()));
/// assert_eq!(tail.poll(|_| {})?, 0); // nothing yet (the file may not exist)
/// run.log("one")?;
/// run.flush()?;
/// let mut seen = Vec::new();
/// assert_eq!(tail.poll(|line| seen.push(line.to_vec()))?, 1);
/// assert_eq!(tail.poll(|_| {})?, 0); // only new lines
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    offset: u64,
}

impl Tail {
    /// Follows `path` from its start.
    ///
    /// # Examples
    /// ```
    /// let tail = ml_dash::read::Tail::new("data.jsonl");
    /// assert_eq!(tail.offset(), 0);
    /// ```
    pub fn new(path: impl AsRef<Path>) -> Tail {
        Tail::from_offset(path, 0)
    }

    /// Follows `path` from byte `offset` (a line start).
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("data.jsonl");
    /// std::fs::write(&path, "aa\nbb\n").unwrap();
    /// let mut tail = ml_dash::read::Tail::from_offset(&path, 3); // skip `aa`
    /// let mut got = Vec::new();
    /// tail.poll(|l| got.push(l.to_vec()))?;
    /// assert_eq!(got, [b"bb".to_vec()]);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn from_offset(path: impl AsRef<Path>, offset: u64) -> Tail {
        Tail {
            path: path.as_ref().to_path_buf(),
            offset,
        }
    }

    /// Where the next poll starts.
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("data.jsonl");
    /// std::fs::write(&path, "aa\nbb\n").unwrap();
    /// let mut tail = ml_dash::read::Tail::new(&path);
    /// tail.poll(|_| {})?;
    /// assert_eq!(tail.offset(), 6); // a later `Tail::from_offset(path, 6)` resumes here
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Calls `f` with each complete line appended since the last poll;
    /// returns how many. A file that became shorter (a repair cut a torn
    /// tail) is read on from its new end.
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("data.jsonl");
    /// let mut tail = ml_dash::read::Tail::new(&path);
    /// std::fs::write(&path, "aa\nb").unwrap(); // `b` is still being written
    /// assert_eq!(tail.poll(|l| assert_eq!(l, b"aa"))?, 1);
    /// std::fs::write(&path, "aa\nbb\n").unwrap();
    /// assert_eq!(tail.poll(|l| assert_eq!(l, b"bb"))?, 1);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn poll(&mut self, mut f: impl FnMut(&[u8])) -> Result<u64> {
        let len = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        if len < self.offset {
            self.offset = len;
        }
        if len == self.offset {
            return Ok(0);
        }
        let mut r = LineReader::range(&self.path, self.offset..u64::MAX)?;
        let mut n = 0;
        while let Some((_, line)) = r.next_line()? {
            f(line);
            n += 1;
        }
        self.offset = r.offset();
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(path: &Path, range: Range<u64>) -> Vec<(u64, String)> {
        let mut r = LineReader::range(path, range).unwrap();
        let mut v = Vec::new();
        while let Some((at, l)) = r.next_line().unwrap() {
            v.push((at, String::from_utf8(l.to_vec()).unwrap()));
        }
        v
    }

    #[test]
    fn ranges_split_lines_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let text: String = (0..200).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let whole = lines_of(&path, 0..u64::MAX);
        assert_eq!(whole.len(), 200);
        let len = text.len() as u64;
        for cut in [1, 7, 8, 9, 100, len - 1, len] {
            let mut parts = lines_of(&path, 0..cut);
            parts.extend(lines_of(&path, cut..u64::MAX));
            assert_eq!(parts, whole, "split at {cut}");
        }
    }

    #[test]
    fn long_lines_torn_tail_and_tail_polls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        let long = "x".repeat(3 * BUF);
        std::fs::write(&path, format!("a\n\n{long}\nb\ntorn")).unwrap();
        let mut r = LineReader::open(&path).unwrap();
        let mut got = Vec::new();
        while let Some((_, l)) = r.next_line().unwrap() {
            got.push(l.len());
        }
        assert_eq!(got, [1, 3 * BUF, 1]);
        let torn = r.torn().unwrap();
        assert_eq!(torn.len, 4);
        assert_eq!(r.offset(), torn.offset);

        let mut t = Tail::new(dir.path().join("later.jsonl"));
        assert_eq!(t.poll(|_| {}).unwrap(), 0);
        std::fs::write(dir.path().join("later.jsonl"), "1\n2").unwrap();
        let mut seen = Vec::new();
        assert_eq!(t.poll(|l| seen.push(l.to_vec())).unwrap(), 1);
        std::fs::write(dir.path().join("later.jsonl"), "1\n2\n3\n").unwrap();
        assert_eq!(t.poll(|l| seen.push(l.to_vec())).unwrap(), 2);
        assert_eq!(seen, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
    }
}
