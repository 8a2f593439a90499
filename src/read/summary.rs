//! Block summaries of metric streams: for every block of up to
//! [`BLOCK_LINES`] consecutive lines of a `data.jsonl`, per field its count
//! and its first, lowest, highest and last point. A chart of millions of
//! points folds whole blocks instead of reading their lines (a block whose
//! points all fall in one pixel column gives that column the same four
//! candidates its lines would), and reads only the lines of the blocks that
//! straddle a column's edge.
//!
//! The summary is a cache derived from the data file alone. It is kept
//! beside it, in `.data.summary` (the SDK and the engine never read it),
//! extended from the bytes appended since, and rebuilt when the data file
//! is not the one it describes. When the folder is not writable it lives
//! only in memory, for the reader that built it. Its format: the magic
//! `MLDSUM02`, then frames, each checksummed on its own, so that a writer
//! appends to it (see [`Summary::write`]).
//!
//! The engine keeps the summary of a stream it writes from the start, as it
//! writes: the collector folds each point's numbers into its block as it
//! encodes the line (no line is read back), and the local store appends
//! each completed block under the stream's lock. A reader then reads at
//! most the last, unfinished block's lines. Such a summary says it is kept
//! by its writer, and readers extend it in memory instead of replacing it,
//! unless it fell behind (the writer gave up: another process appended to
//! the stream, or a point held a nested value, whose fields readers parse
//! differently).
//!
//! ```
//! # fn main() -> ml_dash::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("data.jsonl");
//! let mut text = String::new();
//! for i in 0..1000 {
//!     text += &format!("{{\"index\":{i},\"data\":{{\"loss\":{},\"step\":{i}}}}}\n", 1000 - i);
//! }
//! std::fs::write(&path, text).unwrap();
//! let s = ml_dash::read::Summary::open(&path)?;
//! assert_eq!(s.points(), 1000);
//! let loss = s.field("loss").unwrap();
//! let lowest = s.blocks().iter().filter_map(|b| b.agg(loss)).map(|a| a.min.y).fold(f64::MAX, f64::min);
//! assert_eq!(lowest, 1.0);
//! assert!(dir.path().join(".data.summary").exists());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use super::lines::LineReader;
use super::scan::{Member, data_numbers};
use crate::error::{Error, Result};

/// Lines per block: small enough that the blocks straddling the edges of
/// 1000 pixel columns are a few hundred thousand lines to read, large
/// enough that a summary is ~1 % of its data file (3 fields).
pub const BLOCK_LINES: u32 = 256;

/// Bytes of the data file's head kept to recognise it.
const HEAD: usize = 64;

const MAGIC: &[u8; 8] = b"MLDSUM02";

/// Frame kinds (see [`Summary::write`]).
const HEAD_FRAME: u8 = 0;
const NAMES_FRAME: u8 = 1;
const BLOCKS_FRAME: u8 = 2;

/// Blocks per frame (about 2 MB for a few fields): a reader holds one
/// frame at a time.
const FRAME_BLOCKS: usize = 1 << 12;

/// A data file larger than this is summarised by several threads.
const SPLIT_BYTES: u64 = 8 << 20;

/// One point as a summary holds it: its index, its `step` and `_ts` (NaN
/// when it has none), and the value of the field summarised.
///
/// # Examples
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let data = dir.path().join("data.jsonl");
/// std::fs::write(&data, "{\"index\":7,\"data\":{\"loss\":0.5,\"step\":70}}\n").unwrap();
/// let s = ml_dash::read::Summary::open(&data)?;
/// let p = s.blocks()[0].agg(s.field("loss").unwrap()).unwrap().first;
/// assert_eq!((p.index, p.step, p.y), (7, 70.0, 0.5));
/// assert!(p.ts.is_nan()); // the point has no `_ts`
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pt {
    /// The point's `index` (its line's position when it has none).
    pub index: u64,
    /// Its `step`.
    pub step: f64,
    /// Its `_ts`.
    pub ts: f64,
    /// The field's value.
    pub y: f64,
}

/// One field's points in one block: how many, the first and last, and the
/// lowest and highest (the first of equals).
///
/// # Examples
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let data = dir.path().join("data.jsonl");
/// # let line = |i: u32, y: f64| format!("{{\"index\":{i},\"data\":{{\"loss\":{y}}}}}\n");
/// let text = [line(0, 3.0), line(1, 1.0), line(2, 3.0), line(3, 2.0)].concat();
/// std::fs::write(&data, text).unwrap();
/// let s = ml_dash::read::Summary::open(&data)?;
/// let a = s.blocks()[0].agg(s.field("loss").unwrap()).unwrap();
/// assert_eq!(a.count, 4);
/// assert_eq!((a.first.index, a.min.index, a.max.index, a.last.index), (0, 1, 0, 3));
/// assert_eq!((a.min.y, a.max.y), (1.0, 3.0));
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    /// Points with a number in this field.
    pub count: u32,
    /// The first of them.
    pub first: Pt,
    /// The one with the lowest value.
    pub min: Pt,
    /// The one with the highest value.
    pub max: Pt,
    /// The last of them.
    pub last: Pt,
}

impl Agg {
    /// The distinct points among first, min, max and last, in stream order.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// # let line = |i: u32, y: f64| format!("{{\"index\":{i},\"data\":{{\"loss\":{y}}}}}\n");
    /// // The first point is also the highest: three distinct points.
    /// let text = [line(0, 3.0), line(1, 1.0), line(2, 2.0), line(3, 2.5)].concat();
    /// std::fs::write(&data, text).unwrap();
    /// let s = ml_dash::read::Summary::open(&data)?;
    /// let a = s.blocks()[0].agg(s.field("loss").unwrap()).unwrap();
    /// let at: Vec<u64> = a.points().map(|p| p.index).collect();
    /// assert_eq!(at, [0, 1, 3]);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn points(&self) -> impl Iterator<Item = Pt> {
        let mut k = [self.first, self.min, self.max, self.last];
        k.sort_by_key(|p| p.index);
        let mut prev = None;
        k.into_iter().filter(move |p| {
            let new = prev != Some((p.index, p.y.to_bits()));
            prev = Some((p.index, p.y.to_bits()));
            new
        })
    }
}

/// Consecutive complete lines of a data file and what their points hold.
///
/// # Examples
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let data = dir.path().join("data.jsonl");
/// let text = concat!(
///     "{\"index\":4,\"data\":{\"loss\":1.5}}\n",
///     "not a point\n",
///     "{\"index\":5,\"data\":{\"opt\":{\"lr\":0.1}}}\n",
/// );
/// std::fs::write(&data, text).unwrap();
/// let s = ml_dash::read::Summary::open(&data)?;
/// let b = &s.blocks()[0];
/// assert_eq!((b.bytes.clone(), b.points, b.index), (0..text.len() as u64, 2, (4, 5)));
/// assert!(b.nested);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Byte range of the lines.
    pub bytes: Range<u64>,
    /// Lines that are metric points.
    pub points: u32,
    /// Whether some point's `data` holds nested values (a dotted field
    /// such as `opt.lr` may be in them).
    pub nested: bool,
    /// Lowest and highest index.
    pub index: (u64, u64),
    /// Per field id ([`Summary::field`]), ascending.
    aggs: Vec<(u32, Agg)>,
}

impl Block {
    /// The points of field `id` in this block (`None`: it has none).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// // `acc` first appears in the second block.
    /// let mut text = String::new();
    /// for i in 0..ml_dash::read::BLOCK_LINES {
    ///     text += &format!("{{\"index\":{i},\"data\":{{\"loss\":1}}}}\n");
    /// }
    /// text += "{\"index\":256,\"data\":{\"loss\":1,\"acc\":0.5}}\n";
    /// std::fs::write(&data, text).unwrap();
    /// let s = ml_dash::read::Summary::open(&data)?;
    /// let acc = s.field("acc").unwrap();
    /// assert!(s.blocks()[0].agg(acc).is_none());
    /// assert_eq!(s.blocks()[1].agg(acc).unwrap().count, 1);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn agg(&self, id: u32) -> Option<&Agg> {
        self.aggs
            .binary_search_by_key(&id, |a| a.0)
            .ok()
            .map(|i| &self.aggs[i].1)
    }
}

/// The block summary of one metric stream's `data.jsonl`, up to its last
/// complete line when opened.
///
/// # Examples
///
/// The engine keeps the summary of a stream it logs:
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b/c").dash_root(root.path()).run()?;
/// let train = run.metrics("train")?;
/// for i in 0..300 {
///     train.log(&ml_dash::point! {"loss" => 1.0 / f64::from(i + 1), "step" => i})?;
/// }
/// run.complete()?;
/// let data = root.path().join("a/b/c/metrics/train/data.jsonl");
/// let s = ml_dash::read::Summary::open(&data)?;
/// assert_eq!((s.points(), s.blocks().len()), (300, 2));
/// assert!(s.kept_by_writer());
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    head: Vec<u8>,
    names: Vec<String>,
    blocks: Vec<Block>,
    /// Blocks as last stored (0: not stored).
    stored: usize,
    /// The stored one is kept by the stream's writer (see the module docs).
    kept: bool,
}

/// Where the summary of data file `data` is kept.
///
/// # Examples
/// ```
/// use std::path::Path;
/// let data = Path::new("exp/metrics/train/data.jsonl");
/// let kept = ml_dash::read::summary_path(data);
/// assert_eq!(kept, Path::new("exp/metrics/train/.data.summary"));
/// ```
pub fn summary_path(data: &Path) -> PathBuf {
    data.with_file_name(".data.summary")
}

impl Summary {
    fn empty(head: Vec<u8>) -> Summary {
        Summary {
            head,
            names: Vec::new(),
            blocks: Vec::new(),
            stored: 0,
            kept: false,
        }
    }

    /// The summary of `data` as it is now: the stored one, extended by the
    /// lines appended since, or built anew when none is stored or it
    /// describes another file. What it read is stored once the summary grew
    /// by a sixteenth, unless the stored one is kept by the stream's writer
    /// and was behind by its last blocks only. A missing data file has an
    /// empty summary.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// use ml_dash::read::{Summary, summary_path};
    /// assert_eq!(Summary::open(&data)?.points(), 0); // no data file yet
    /// std::fs::write(&data, "{\"index\":0,\"data\":{\"loss\":1}}\n").unwrap();
    /// assert_eq!(Summary::open(&data)?.points(), 1);
    /// assert!(summary_path(&data).exists());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn open(data: &Path) -> Result<Summary> {
        // Readers of one stream in this process take turns: the second
        // finds what the first stored instead of reading the file again.
        let turn = turn_of(data);
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        let head = read_head(data)?;
        let len = std::fs::metadata(data).map_or(0, |m| m.len());
        let mut s = File::open(summary_path(data))
            .ok()
            .and_then(|f| Summary::decode(std::io::BufReader::new(f)))
            .filter(|s| s.head == head && s.end() <= len)
            .unwrap_or_else(|| Summary::empty(head));
        let before = s.points();
        s.extend(data)?;
        let kept = s.kept && s.points() - before <= 2 * u64::from(BLOCK_LINES);
        let grown = s.blocks.len() - s.stored;
        if grown > 0 && !kept && (s.stored == 0 || grown * 16 >= s.stored) {
            // A cache: a folder that is not writable keeps it in memory.
            let _ = s.store(data);
        }
        Ok(s)
    }

    /// Whether the summary stored beside `data` describes it and is kept
    /// by the stream's writer (the engine, which adds each block as it
    /// writes it): then there is nothing to build. Reads its first frame
    /// only.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// use ml_dash::read::Summary;
    /// let run = ml_dash::Experiment::new("a/b/c").dash_root(root.path()).run()?;
    /// let train = run.metrics("train")?;
    /// for i in 0..300 {
    ///     train.log(&ml_dash::point! {"loss" => 1.0, "step" => i})?;
    /// }
    /// run.complete()?;
    /// let data = root.path().join("a/b/c/metrics/train/data.jsonl");
    /// assert!(Summary::is_kept(&data));
    /// // A data file a reader summarised, or none at all: not kept.
    /// let other = root.path().join("data.jsonl");
    /// assert!(!Summary::is_kept(&other));
    /// std::fs::write(&other, "{\"index\":0,\"data\":{\"loss\":1}}\n").unwrap();
    /// Summary::open(&other)?;
    /// assert!(!Summary::is_kept(&other));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn is_kept(data: &Path) -> bool {
        let Ok(mut f) = File::open(summary_path(data)) else {
            return false;
        };
        let mut magic = [0; 8];
        let mut s = None;
        f.read_exact(&mut magic).is_ok()
            && &magic == MAGIC
            && read_frame(&mut f).is_some_and(|p| Summary::apply(&mut s, &p).is_some())
            && s.is_some_and(|s| s.kept && read_head(data).is_ok_and(|h| h == s.head))
    }

    /// Reads the lines after [`Summary::end`] into blocks (the last block,
    /// if short, is read again with them).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// use std::io::Write;
    /// std::fs::write(&data, "{\"index\":0,\"data\":{\"loss\":1}}\n").unwrap();
    /// let mut s = ml_dash::read::Summary::open(&data)?;
    /// let mut f = std::fs::OpenOptions::new().append(true).open(&data).unwrap();
    /// f.write_all(b"{\"index\":1,\"data\":{\"loss\":0.5}}\n").unwrap();
    /// s.extend(&data)?;
    /// assert_eq!((s.points(), s.blocks().len()), (2, 1));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn extend(&mut self, data: &Path) -> Result<()> {
        if self.blocks.last().is_some_and(|b| b.points < BLOCK_LINES) {
            self.blocks.pop();
            self.stored = self.stored.min(self.blocks.len());
        }
        let from = self.end();
        let len = std::fs::metadata(data).map_or(0, |m| m.len());
        if len <= from {
            return Ok(());
        }
        let threads = if len - from > SPLIT_BYTES {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8)
        } else {
            1
        };
        let span = len - from;
        let ranges: Vec<Range<u64>> = (0..threads as u64)
            .map(|i| from + span * i / threads as u64..from + span * (i + 1) / threads as u64)
            .map(|r| if r.end == len { r.start..u64::MAX } else { r })
            .collect();
        let parts: Vec<Result<Acc>> = std::thread::scope(|s| {
            let hs: Vec<_> = ranges
                .into_iter()
                .map(|r| s.spawn(move || Acc::read(data, r)))
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Panicked("a summary thread".into())))
                })
                .collect()
        });
        let mut ids: HashMap<String, u32> = self
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        let parts = parts.into_iter().collect::<Result<Vec<_>>>()?;
        self.blocks
            .reserve_exact(parts.iter().map(|p| p.blocks.len()).sum());
        for part in parts {
            let map: Vec<u32> = part
                .names
                .iter()
                .map(|n| {
                    *ids.entry(n.clone()).or_insert_with(|| {
                        self.names.push(n.clone());
                        self.names.len() as u32 - 1
                    })
                })
                .collect();
            for mut b in part.blocks {
                for a in &mut b.aggs {
                    a.0 = map[a.0 as usize];
                }
                b.aggs.sort_by_key(|a| a.0);
                self.blocks.push(b);
            }
        }
        Ok(())
    }

    /// The offset just past the last line summarised.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// let line = "{\"index\":0,\"data\":{\"loss\":1}}\n";
    /// // A line still being written (no newline yet) is left out.
    /// std::fs::write(&data, format!("{line}{{\"index\":1,")).unwrap();
    /// let s = ml_dash::read::Summary::open(&data)?;
    /// assert_eq!(s.end(), line.len() as u64);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn end(&self) -> u64 {
        self.blocks.last().map_or(0, |b| b.bytes.end)
    }

    /// The blocks, in file order.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// # let line = |i| format!("{{\"index\":{i},\"data\":{{\"loss\":1}}}}\n");
    /// # let text: String = (0..600).map(line).collect();
    /// # std::fs::write(&data, text).unwrap();
    /// // 600 points: two full blocks and a short last one.
    /// let s = ml_dash::read::Summary::open(&data)?;
    /// let sizes: Vec<u32> = s.blocks().iter().map(|b| b.points).collect();
    /// assert_eq!(sizes, [256, 256, 88]);
    /// assert_eq!(s.blocks()[1].index, (256, 511));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Lines that are metric points.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// std::fs::write(&data, "{\"index\":0,\"data\":{\"loss\":1}}\nnot a point\n").unwrap();
    /// assert_eq!(ml_dash::read::Summary::open(&data)?.points(), 1);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn points(&self) -> u64 {
        self.blocks.iter().map(|b| u64::from(b.points)).sum()
    }

    /// The id of field `name` in [`Block::agg`] (`None`: no point has a
    /// number in a top-level field of that name).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// let line = "{\"index\":0,\"data\":{\"loss\":1,\"tag\":\"x\",\"opt\":{\"lr\":0.1}}}\n";
    /// std::fs::write(&data, line).unwrap();
    /// let s = ml_dash::read::Summary::open(&data)?;
    /// assert_eq!(s.field("loss"), Some(0));
    /// // Neither a string nor a nested value is summarised.
    /// assert_eq!((s.field("tag"), s.field("opt"), s.field("lr")), (None, None, None));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn field(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|i| i as u32)
    }

    /// The fields with numbers, in the order first seen.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// let text = "{\"data\":{\"step\":0,\"loss\":1}}\n{\"data\":{\"acc\":0.5,\"loss\":2}}\n";
    /// std::fs::write(&data, text).unwrap();
    /// let s = ml_dash::read::Summary::open(&data)?;
    /// assert_eq!(s.fields(), ["step", "loss", "acc"]);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn fields(&self) -> &[String] {
        &self.names
    }

    /// Whether the stored summary this one was read from is kept by the
    /// stream's writer (the engine, while it writes the stream).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// use std::io::Write;
    /// let run = ml_dash::Experiment::new("a/b/c").dash_root(root.path()).run()?;
    /// let train = run.metrics("train")?;
    /// for i in 0..300 {
    ///     train.log(&ml_dash::point! {"loss" => 1.0, "step" => i})?;
    /// }
    /// run.complete()?;
    /// let data = root.path().join("a/b/c/metrics/train/data.jsonl");
    /// assert!(ml_dash::read::Summary::open(&data)?.kept_by_writer());
    /// // Another process appends many lines: a reader stores its own summary.
    /// let mut f = std::fs::OpenOptions::new().append(true).open(&data).unwrap();
    /// for i in 300..1300 {
    ///     writeln!(f, "{{\"index\":{i},\"data\":{{\"loss\":1,\"step\":{i}}}}}").unwrap();
    /// }
    /// let s = ml_dash::read::Summary::open(&data)?;
    /// assert_eq!(s.points(), 1300);
    /// assert!(!s.kept_by_writer());
    /// assert!(!ml_dash::read::Summary::open(&data)?.kept_by_writer());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn kept_by_writer(&self) -> bool {
        self.kept
    }

    fn store(&mut self, data: &Path) -> std::io::Result<()> {
        let dir = data.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        self.write(&mut w)?;
        w.flush()?;
        drop(w);
        tmp.persist(summary_path(data)).map_err(|e| e.error)?;
        self.stored = self.blocks.len();
        self.kept = false;
        Ok(())
    }

    /// The stored form, in memory (see [`Summary::write`]).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// # std::fs::write(&data, "{\"index\":0,\"data\":{\"loss\":1}}\n").unwrap();
    /// use ml_dash::read::Summary;
    /// let s = Summary::open(&data)?;
    /// let bytes = s.encode();
    /// assert!(bytes.starts_with(b"MLDSUM02"));
    /// // A point without `step` holds NaN (NaN != NaN): compare the encodings.
    /// assert_eq!(Summary::decode(&bytes[..]).unwrap().encode(), bytes);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out).expect("writes to memory do not fail");
        out
    }

    /// Writes the stored form: `MLDSUM02`, then frames. A frame is its
    /// payload's length and CRC-32 (u32 each), then the payload: its kind
    /// (u8) and fields. The head frame (0): whether the stream's writer
    /// keeps the summary (u8), the data file's first bytes (u16 length,
    /// bytes). A names frame (1): field names after those before (u32
    /// count; u16 length, UTF-8 each). A blocks frame (2): blocks (u32
    /// count; each: start, end (u64), points (u32), nested (u8), lowest and
    /// highest index (u64), aggregates (u32 count; each: field id, count
    /// (u32), first, min, max, last)); a point is its index (u64), step, ts
    /// and y (f64). Little-endian. A reader takes the frames up to the first
    /// that is torn, fails its checksum, or holds a block that neither
    /// follows the last one nor replaces it (the finished form of a short
    /// last block).
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// # std::fs::write(&data, "{\"index\":0,\"data\":{\"loss\":1}}\n").unwrap();
    /// use ml_dash::read::Summary;
    /// let s = Summary::open(&data)?;
    /// let mut file = std::fs::File::create(dir.path().join("copy.summary")).unwrap();
    /// s.write(&mut file).unwrap();
    /// let back = Summary::decode(std::fs::File::open(dir.path().join("copy.summary")).unwrap());
    /// assert_eq!(back.unwrap().encode(), s.encode());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn write(&self, to: &mut impl Write) -> std::io::Result<()> {
        to.write_all(MAGIC)?;
        to.write_all(&head_frame(&self.head, false))?;
        to.write_all(&names_frame(&self.names))?;
        for chunk in self.blocks.chunks(FRAME_BLOCKS) {
            to.write_all(&blocks_frame(chunk))?;
        }
        Ok(())
    }

    /// Reads [`Summary::write`]'s form, up to its last good frame; `None`
    /// when it is not one.
    ///
    /// # Examples
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let data = dir.path().join("data.jsonl");
    /// # std::fs::write(&data, "{\"index\":0,\"data\":{\"loss\":1}}\n").unwrap();
    /// use ml_dash::read::Summary;
    /// let bytes = Summary::open(&data)?.encode();
    /// assert_eq!(Summary::decode(&bytes[..]).unwrap().points(), 1);
    /// // A torn last frame is dropped; what is not a summary is `None`.
    /// let torn = Summary::decode(&bytes[..bytes.len() - 1]).unwrap();
    /// assert_eq!((torn.points(), torn.fields().len()), (0, 1));
    /// assert!(Summary::decode(&b"not a summary"[..]).is_none());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn decode(mut from: impl Read) -> Option<Summary> {
        let mut magic = [0; 8];
        from.read_exact(&mut magic).ok()?;
        if &magic != MAGIC {
            return None;
        }
        let mut s = None;
        while let Some(payload) = read_frame(&mut from) {
            if Summary::apply(&mut s, &payload).is_none() {
                break;
            }
        }
        let mut s = s?;
        s.stored = s.blocks.len();
        Some(s)
    }

    /// Takes one frame's payload into `s`; `None`: it does not fit.
    fn apply(s: &mut Option<Summary>, payload: &[u8]) -> Option<()> {
        let (&kind, rest) = payload.split_first()?;
        let mut r = Fields(rest);
        match kind {
            HEAD_FRAME if s.is_none() => {
                let kept = r.u8()? != 0;
                let n = usize::from(r.u16()?);
                let head = r.take(n)?.to_vec();
                *s = Some(Summary {
                    kept,
                    ..Summary::empty(head)
                });
            }
            NAMES_FRAME => {
                let s = s.as_mut()?;
                for _ in 0..r.u32()? {
                    let n = usize::from(r.u16()?);
                    s.names.push(String::from_utf8(r.take(n)?.to_vec()).ok()?);
                }
            }
            BLOCKS_FRAME => {
                let s = s.as_mut()?;
                for _ in 0..r.u32()? {
                    let b = r.block(s.names.len())?;
                    match s.blocks.last() {
                        _ if b.bytes.start == s.end() => {}
                        Some(last)
                            if last.points < BLOCK_LINES && last.bytes.start == b.bytes.start =>
                        {
                            s.blocks.pop();
                        }
                        _ => return None,
                    }
                    s.blocks.push(b);
                }
            }
            _ => return None,
        }
        Some(())
    }
}

/// A frame of `kind`, its payload written by `body`.
fn frame(kind: u8, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = vec![0; 8];
    f.push(kind);
    body(&mut f);
    let len = (f.len() - 8) as u32;
    let crc = crc32fast::hash(&f[8..]);
    f[..4].copy_from_slice(&len.to_le_bytes());
    f[4..8].copy_from_slice(&crc.to_le_bytes());
    f
}

fn head_frame(head: &[u8], kept: bool) -> Vec<u8> {
    frame(HEAD_FRAME, |f| {
        f.push(u8::from(kept));
        f.extend_from_slice(&(head.len() as u16).to_le_bytes());
        f.extend_from_slice(head);
    })
}

fn names_frame(names: &[String]) -> Vec<u8> {
    frame(NAMES_FRAME, |f| {
        f.extend_from_slice(&(names.len() as u32).to_le_bytes());
        for n in names {
            f.extend_from_slice(&(n.len() as u16).to_le_bytes());
            f.extend_from_slice(n.as_bytes());
        }
    })
}

fn blocks_frame(blocks: &[Block]) -> Vec<u8> {
    frame(BLOCKS_FRAME, |f| {
        f.extend_from_slice(&(blocks.len() as u32).to_le_bytes());
        for b in blocks {
            for v in [b.bytes.start, b.bytes.end] {
                f.extend_from_slice(&v.to_le_bytes());
            }
            f.extend_from_slice(&b.points.to_le_bytes());
            f.push(u8::from(b.nested));
            f.extend_from_slice(&b.index.0.to_le_bytes());
            f.extend_from_slice(&b.index.1.to_le_bytes());
            f.extend_from_slice(&(b.aggs.len() as u32).to_le_bytes());
            for (id, a) in &b.aggs {
                f.extend_from_slice(&id.to_le_bytes());
                f.extend_from_slice(&a.count.to_le_bytes());
                for p in [&a.first, &a.min, &a.max, &a.last] {
                    f.extend_from_slice(&p.index.to_le_bytes());
                    for v in [p.step, p.ts, p.y] {
                        f.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
    })
}

/// The next frame's payload; `None` at the end, or when it is torn or
/// fails its checksum.
fn read_frame(from: &mut impl Read) -> Option<Vec<u8>> {
    let mut h = [0u8; 8];
    from.read_exact(&mut h).ok()?;
    let len = u32::from_le_bytes(h[..4].try_into().unwrap());
    let crc = u32::from_le_bytes(h[4..].try_into().unwrap());
    let mut payload = Vec::new();
    from.take(u64::from(len)).read_to_end(&mut payload).ok()?;
    (payload.len() == len as usize && crc32fast::hash(&payload) == crc).then_some(payload)
}

/// Little-endian fields of a frame's payload.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, rest) = (self.0.len() >= n).then(|| self.0.split_at(n))?;
        self.0 = rest;
        Some(a)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|b| b.try_into().unwrap())
    }
    fn u8(&mut self) -> Option<u8> {
        self.array().map(u8::from_le_bytes)
    }
    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
    fn f64(&mut self) -> Option<f64> {
        self.array().map(f64::from_le_bytes)
    }
    fn pt(&mut self) -> Option<Pt> {
        Some(Pt {
            index: self.u64()?,
            step: self.f64()?,
            ts: self.f64()?,
            y: self.f64()?,
        })
    }
    /// A block whose field ids are below `names`.
    fn block(&mut self, names: usize) -> Option<Block> {
        let bytes = self.u64()?..self.u64()?;
        let points = self.u32()?;
        let nested = self.u8()? != 0;
        let index = (self.u64()?, self.u64()?);
        let aggs = (0..self.u32()?)
            .map(|_| {
                let id = self.u32()?;
                let count = self.u32()?;
                let (first, min, max, last) = (self.pt()?, self.pt()?, self.pt()?, self.pt()?);
                ((id as usize) < names).then_some((
                    id,
                    Agg {
                        count,
                        first,
                        min,
                        max,
                        last,
                    },
                ))
            })
            .collect::<Option<Vec<_>>>()?;
        (bytes.start <= bytes.end && points <= BLOCK_LINES).then_some(Block {
            bytes,
            points,
            nested,
            index,
            aggs,
        })
    }
}

/// The lock of `data`'s summary in this process.
fn turn_of(data: &Path) -> Arc<Mutex<()>> {
    static TURNS: Mutex<Vec<(PathBuf, Weak<Mutex<()>>)>> = Mutex::new(Vec::new());
    let mut turns = TURNS.lock().unwrap_or_else(|e| e.into_inner());
    turns.retain(|t| t.1.strong_count() > 0);
    if let Some(t) = turns
        .iter()
        .find(|t| t.0 == data)
        .and_then(|t| t.1.upgrade())
    {
        return t;
    }
    let t = Arc::new(Mutex::new(()));
    turns.push((data.to_path_buf(), Arc::downgrade(&t)));
    t
}

fn read_head(data: &Path) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(HEAD);
    match File::open(data) {
        Ok(f) => f
            .take(HEAD as u64)
            .read_to_end(&mut head)
            .map_err(|e| Error::io(data, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io(data, e)),
    };
    Ok(head)
}

/// Folds lines into blocks: the one code of a reader's scan
/// ([`Acc::read`]) and of a writer's [`Feed`]. Field ids are its own.
#[derive(Debug)]
struct Acc {
    names: Vec<String>,
    ids: HashMap<Vec<u8>, u32>,
    /// The previous line's field ids, in order: most lines repeat them.
    last: Vec<u32>,
    /// Numbers of the point being read so far.
    j: usize,
    /// The open block's fields, by id.
    open: Vec<Option<Open>>,
    /// The open block's points by place: index, step, ts (NaN: none).
    pts: Vec<(u64, f64, f64)>,
    /// A reader's numbers of the line being read (read twice when it
    /// turns out to need the whole parse).
    vals: Vec<(u32, f64)>,
    /// The ids of `step` and `_ts` (`u32::MAX`: not seen yet).
    step: u32,
    ts: u32,
    cur: Option<Block>,
    blocks: Vec<Block>,
}

impl Default for Acc {
    fn default() -> Acc {
        Acc {
            names: Vec::new(),
            ids: HashMap::new(),
            last: Vec::new(),
            j: 0,
            open: Vec::new(),
            pts: Vec::new(),
            vals: Vec::new(),
            step: u32::MAX,
            ts: u32::MAX,
            cur: None,
            blocks: Vec::new(),
        }
    }
}

/// Whether two field names are equal: names are short, and comparing them
/// by words here is cheaper than a call to `memcmp` for each.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let w4 = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
    let w8 = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    match n {
        0 => true,
        // The first, middle and last bytes: every byte of up to three.
        1..4 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..8 => w4(a, 0) == w4(b, 0) && w4(a, n - 4) == w4(b, n - 4),
        8..=16 => w8(a, 0) == w8(b, 0) && w8(a, n - 8) == w8(b, n - 8),
        _ => a == b,
    }
}

/// One field's points in the open block, by their place in it: as [`Agg`],
/// without copying a point per value.
#[derive(Debug, Clone, Copy)]
struct Open {
    count: u32,
    first: (u32, f64),
    min: (u32, f64),
    max: (u32, f64),
    last: (u32, f64),
}

impl Open {
    fn new(k: u32, y: f64) -> Open {
        Open {
            count: 1,
            first: (k, y),
            min: (k, y),
            max: (k, y),
            last: (k, y),
        }
    }

    #[inline(always)]
    fn push(&mut self, k: u32, y: f64) {
        self.count += 1;
        if y < self.min.1 {
            self.min = (k, y);
        }
        if y > self.max.1 {
            self.max = (k, y);
        }
        self.last = (k, y);
    }

    fn agg(&self, pts: &[(u64, f64, f64)]) -> Agg {
        let pt = |(k, y): (u32, f64)| {
            let (index, step, ts) = pts[k as usize];
            Pt { index, step, ts, y }
        };
        Agg {
            count: self.count,
            first: pt(self.first),
            min: pt(self.min),
            max: pt(self.max),
            last: pt(self.last),
        }
    }
}

impl Acc {
    /// Summarises the lines of `data` in `range`.
    fn read(data: &Path, range: Range<u64>) -> Result<Acc> {
        let mut reader = LineReader::range(data, range)?;
        let mut acc = Acc::default();
        let mut ordinal = 0u64;
        while let Some((at, line)) = reader.next_line()? {
            let end = at + line.len() as u64 + 1;
            let point = data_numbers(line, |m| match m {
                Member::Number(k, v) => {
                    let (id, _) = acc.id_of(k);
                    acc.vals.push((id, v));
                }
                Member::Again => {
                    acc.vals.clear();
                    acc.j = 0;
                }
            });
            let point = point.map(|(index, nested)| (index.unwrap_or(ordinal), nested));
            ordinal += 1;
            acc.line(at..end, point);
        }
        acc.close();
        Ok(acc)
    }

    /// The id of the next number's key in the point being read; true when
    /// the key is new.
    #[inline(always)]
    fn id_of(&mut self, k: &[u8]) -> (u32, bool) {
        let j = self.j;
        self.j += 1;
        match self.last.get(j) {
            Some(&id) if same(self.names[id as usize].as_bytes(), k) => (id, false),
            _ => self.intern(k, j),
        }
    }

    fn intern(&mut self, k: &[u8], j: usize) -> (u32, bool) {
        let (id, new) = match self.ids.get(k) {
            Some(&id) => (id, false),
            None => {
                let id = self.names.len() as u32;
                self.names.push(String::from_utf8_lossy(k).into_owned());
                self.ids.insert(k.to_vec(), id);
                match k {
                    b"step" => self.step = id,
                    b"_ts" => self.ts = id,
                    _ => {}
                }
                (id, true)
            }
        };
        self.last.truncate(j);
        self.last.push(id);
        (id, new)
    }

    /// Starts a point at `at` with this index: in the open block, or a new
    /// one from there.
    #[inline]
    fn begin(&mut self, at: u64, index: u64) {
        self.cur.get_or_insert_with(|| Block {
            bytes: at..at,
            points: 0,
            nested: false,
            index: (u64::MAX, 0),
            aggs: Vec::new(),
        });
        self.pts.push((index, f64::NAN, f64::NAN));
        self.j = 0;
    }

    /// Folds number `y` of field `id` into the point begun last (its
    /// `step` and `_ts` are the first such numbers).
    #[inline(always)]
    fn fold(&mut self, id: u32, y: f64) {
        let k = self.pts.len() - 1;
        if id == self.step || id == self.ts {
            let p = &mut self.pts[k];
            if id == self.step && p.1.is_nan() {
                p.1 = y;
            }
            if id == self.ts && p.2.is_nan() {
                p.2 = y;
            }
        }
        let i = id as usize;
        if self.open.len() <= i {
            self.open.resize(i + 1, None);
        }
        match &mut self.open[i] {
            Some(a) => a.push(k as u32, y),
            slot => *slot = Some(Open::new(k as u32, y)),
        }
    }

    /// Ends the point begun last, its line ending at `end`; closes a full block.
    #[inline]
    fn end(&mut self, end: u64, nested: bool) {
        let index = self.pts.last().map_or(0, |p| p.0);
        let block = self.cur.as_mut().expect("begun");
        block.bytes.end = end;
        block.points += 1;
        block.nested |= nested;
        block.index = (block.index.0.min(index), block.index.1.max(index));
        if block.points >= BLOCK_LINES {
            self.close();
        }
    }

    /// Ends a reader's line, which spans `bytes`: a point with this index
    /// and whether its `data` nests values, or (`None`) not a point.
    fn line(&mut self, bytes: Range<u64>, point: Option<(u64, bool)>) {
        match point {
            Some((index, nested)) => {
                self.begin(bytes.start, index);
                for i in 0..self.vals.len() {
                    let (id, y) = self.vals[i];
                    self.fold(id, y);
                }
                self.end(bytes.end, nested);
            }
            None => {
                self.cur
                    .get_or_insert_with(|| Block {
                        bytes: bytes.start..bytes.start,
                        points: 0,
                        nested: false,
                        index: (u64::MAX, 0),
                        aggs: Vec::new(),
                    })
                    .bytes
                    .end = bytes.end;
            }
        }
        self.vals.clear();
        self.j = 0;
    }

    /// Closes the open block.
    fn close(&mut self) {
        if let Some(mut block) = self.cur.take() {
            let pts = &self.pts;
            block.aggs = (self.open.iter_mut().enumerate())
                .filter_map(|(i, a)| a.take().map(|a| (i as u32, a.agg(pts))))
                .collect();
            if block.points == 0 {
                block.index = (0, 0);
            }
            self.pts.clear();
            self.blocks.push(block);
        }
    }
}

/// A writer's side of one stream's summary (see the module docs): the
/// collector folds in each point it encodes (begin, numbers, end);
/// after the lines are appended to the data file, the local store appends
/// [`Feed::frames`] to `.data.summary`.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    acc: Acc,
    /// The stream's first bytes: the head readers check.
    head: Vec<u8>,
    /// Bytes of the lines folded in.
    produced: u64,
    /// Names in frames already.
    names_sent: usize,
    /// The file was started (its first frames written).
    started: bool,
}

impl Feed {
    /// A number of the point being encoded (the stored value: a reader
    /// parses the same one from the line); false when the feed cannot
    /// follow the point (a name JSON escapes: readers parse such lines
    /// whole).
    #[inline(always)]
    pub(crate) fn number(&mut self, name: &str, v: f64) -> bool {
        let (id, new) = self.acc.id_of(name.as_bytes());
        self.acc.fold(id, v);
        !new || crate::encode::plain(name)
    }

    /// Starts a point the collector encodes, with this index.
    #[inline]
    pub(crate) fn begin(&mut self, index: u64) {
        self.acc.begin(self.produced, index);
    }

    /// Ends the point begun last: its line as encoded.
    #[inline]
    pub(crate) fn end(&mut self, line: &[u8]) {
        if self.head.len() < HEAD {
            let n = (HEAD - self.head.len()).min(line.len());
            self.head.extend_from_slice(&line[..n]);
        }
        self.produced += line.len() as u64;
        self.acc.end(self.produced, false);
    }

    /// Bytes of the lines folded in: the data file's length once they are
    /// appended, if this writer started it and was its only one.
    pub(crate) fn produced(&self) -> u64 {
        self.produced
    }

    /// What to add to the summary file for the blocks completed since the
    /// last call, and whether it starts the file (written anew rather than
    /// appended); `None` when no block was completed. The last, open block
    /// is left to readers (at most [`BLOCK_LINES`] lines).
    pub(crate) fn frames(&mut self) -> Option<(bool, Vec<u8>)> {
        if self.acc.blocks.is_empty() {
            return None;
        }
        let first = !self.started;
        let mut out = Vec::new();
        if first {
            out.extend_from_slice(MAGIC);
            out.extend(head_frame(&self.head, true));
            self.started = true;
        }
        let names = &self.acc.names[self.names_sent..];
        if !names.is_empty() {
            out.extend(names_frame(names));
            self.names_sent = self.acc.names.len();
        }
        for chunk in self.acc.blocks.chunks(FRAME_BLOCKS) {
            out.extend(blocks_frame(chunk));
        }
        self.acc.blocks.clear();
        Some((first, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, from: u64, to: u64) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for i in from..to {
            let loss = ((i * 7919) % 1000) as f64 / 10.0;
            if i % 97 == 5 {
                writeln!(f, "{{\"index\":{i},\"data\":{{\"step\":{i}}}}}").unwrap();
            } else {
                writeln!(
                    f,
                    "{{\"index\":{i},\"data\":{{\"loss\":{loss},\"step\":{i},\"_ts\":{}.5}},\"createdAt\":\"x\"}}",
                    1000 + i
                )
                .unwrap();
            }
        }
    }

    /// The summary of a file read line by line, without one.
    fn by_hand(path: &Path) -> Vec<(u64, Vec<(String, f64)>)> {
        let mut r = LineReader::open(path).unwrap();
        let mut out = Vec::new();
        while let Some((_, line)) = r.next_line().unwrap() {
            let mut v = Vec::new();
            let (i, _) = data_numbers(line, |m| match m {
                Member::Number(k, x) => v.push((String::from_utf8_lossy(k).into(), x)),
                Member::Again => v.clear(),
            })
            .unwrap();
            out.push((i.unwrap(), v));
        }
        out
    }

    #[test]
    fn blocks_hold_each_fields_extremes_and_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        write(&path, 0, 10_000);
        let s = Summary::open(&path).unwrap();
        assert_eq!(s.points(), 10_000);
        let points = by_hand(&path);
        let loss = s.field("loss").unwrap();
        let mut at = 0usize;
        for b in s.blocks() {
            let lines = &points[at..at + b.points as usize];
            at += b.points as usize;
            let ys: Vec<(u64, f64)> = lines
                .iter()
                .filter_map(|(i, v)| v.iter().find(|f| f.0 == "loss").map(|f| (*i, f.1)))
                .collect();
            let a = b.agg(loss).unwrap();
            assert_eq!(a.count as usize, ys.len());
            assert_eq!((a.first.index, a.first.y), ys[0]);
            assert_eq!((a.last.index, a.last.y), *ys.last().unwrap());
            let lo = ys.iter().fold(f64::MAX, |m, p| m.min(p.1));
            let first_lo = ys.iter().find(|p| p.1 == lo).unwrap();
            assert_eq!((a.min.index, a.min.y), *first_lo);
            let hi = ys.iter().fold(f64::MIN, |m, p| m.max(p.1));
            assert_eq!(
                (a.max.index, a.max.y),
                *ys.iter().find(|p| p.1 == hi).unwrap()
            );
            assert_eq!(a.min.step, a.min.index as f64);
            assert_eq!(a.min.ts, 1000.5 + a.min.index as f64);
        }
        assert_eq!(at, 10_000);
    }

    #[test]
    fn stored_extended_and_rebuilt_for_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        write(&path, 0, 3000);
        let first = Summary::open(&path).unwrap();
        let stored = std::fs::read(summary_path(&path)).unwrap();
        // (NaN != NaN: the encodings are compared.)
        assert!(Summary::decode(&stored[..]).unwrap().encode() == first.encode());
        // Appended lines and a partial line: the complete ones are read.
        write(&path, 3000, 3100);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"index\":3100,"))
            .unwrap();
        let more = Summary::open(&path).unwrap();
        assert_eq!(more.points(), 3100);
        let whole = {
            let fresh = tempfile::tempdir().unwrap();
            let copy = fresh.path().join("data.jsonl");
            std::fs::copy(&path, &copy).unwrap();
            Summary::open(&copy).unwrap()
        };
        let loss = more.field("loss").unwrap();
        let sum = |s: &Summary| -> u32 {
            s.blocks()
                .iter()
                .filter_map(|b| b.agg(loss))
                .map(|a| a.count)
                .sum()
        };
        assert_eq!(sum(&more), sum(&whole));
        // Another file at the same path: rebuilt, not extended.
        std::fs::remove_file(&path).unwrap();
        write(&path, 50, 60);
        assert_eq!(Summary::open(&path).unwrap().points(), 10);
        // A damaged frame and what follows it are dropped, the lines read
        // again; a damaged head frame: rebuilt.
        write(&path, 60, 1000);
        assert_eq!(Summary::open(&path).unwrap().points(), 950);
        let good = std::fs::read(summary_path(&path)).unwrap();
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert_eq!(Summary::decode(&bad[..]).unwrap().points(), 0);
        std::fs::write(summary_path(&path), &bad).unwrap();
        assert!(
            Summary::open(&path).unwrap().encode() == Summary::decode(&good[..]).unwrap().encode()
        );
        bad[MAGIC.len() + 9] ^= 1;
        assert!(Summary::decode(&bad[..]).is_none());
        std::fs::write(summary_path(&path), bad).unwrap();
        assert_eq!(Summary::open(&path).unwrap().points(), 950);
    }

    #[test]
    fn names_compare_as_slices_do() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let len = (next() % 21) as usize;
            let a: Vec<u8> = (0..len).map(|_| b"ab"[(next() & 1) as usize]).collect();
            let mut b = a.clone();
            match next() % 3 {
                0 if len > 0 => b[(next() % len as u64) as usize] ^= 1,
                1 => b.push(b'a'),
                _ => {}
            }
            assert_eq!(same(&a, &b), a == b, "{a:?} {b:?}");
        }
    }

    #[test]
    fn escaped_keys_nested_values_and_non_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        std::fs::write(
            &path,
            concat!(
                "{\"index\":0,\"data\":{\"a\\\"b\":1.5,\"opt\":{\"lr\":0.1},\"ok\":true}}\n",
                "not json\n",
                "{\"index\":1,\"data\":{\"a\\\"b\":NaN,\"x\":-Infinity,\"s\":\"str\"}}\n",
            ),
        )
        .unwrap();
        let s = Summary::open(&path).unwrap();
        assert_eq!(s.points(), 2);
        let b = &s.blocks()[0];
        assert!(b.nested);
        assert_eq!(b.agg(s.field("a\"b").unwrap()).unwrap().count, 1);
        assert_eq!(b.agg(s.field("ok").unwrap()).unwrap().min.y, 1.0);
        assert_eq!(
            b.agg(s.field("x").unwrap()).unwrap().min.y,
            f64::NEG_INFINITY
        );
        assert!(s.field("s").is_none() && s.field("opt").is_none());
    }
}
