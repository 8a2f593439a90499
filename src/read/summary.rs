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
//! `MLDSUM01`, a CRC-32 of everything after it, then little-endian fields
//! (see [`Summary::write`]).
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
use std::io::{Read, Seek, SeekFrom, Write};
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

const MAGIC: &[u8; 8] = b"MLDSUM01";

/// A data file larger than this is summarised by several threads.
const SPLIT_BYTES: u64 = 8 << 20;

/// One point as a summary holds it: its index, its `step` and `_ts` (NaN
/// when it has none), and the value of the field summarised.
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
    fn new(p: Pt) -> Agg {
        Agg {
            count: 1,
            first: p,
            min: p,
            max: p,
            last: p,
        }
    }

    fn push(&mut self, p: Pt) {
        self.count += 1;
        if p.y < self.min.y {
            self.min = p;
        }
        if p.y > self.max.y {
            self.max = p;
        }
        self.last = p;
    }

    /// The distinct points among first, min, max and last, in stream order.
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
    pub fn agg(&self, id: u32) -> Option<&Agg> {
        self.aggs
            .binary_search_by_key(&id, |a| a.0)
            .ok()
            .map(|i| &self.aggs[i].1)
    }
}

/// The block summary of one metric stream's `data.jsonl`, up to its last
/// complete line when opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    head: Vec<u8>,
    names: Vec<String>,
    blocks: Vec<Block>,
    /// Blocks as last stored (0: not stored).
    stored: usize,
}

/// Where the summary of data file `data` is kept.
pub fn summary_path(data: &Path) -> PathBuf {
    data.with_file_name(".data.summary")
}

impl Summary {
    /// The summary of `data` as it is now: the stored one, extended by the
    /// lines appended since (stored again once it grew by a sixteenth), or
    /// built anew when none is stored or it describes another file. A
    /// missing data file has an empty summary.
    pub fn open(data: &Path) -> Result<Summary> {
        // Readers of one stream in this process take turns: the second
        // finds what the first stored instead of reading the file again.
        let turn = turn_of(data);
        let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
        let head = read_head(data)?;
        let mut s = File::open(summary_path(data))
            .ok()
            .and_then(|f| Summary::decode(std::io::BufReader::new(f)))
            .filter(|s| s.head == head)
            .unwrap_or(Summary {
                head: head.clone(),
                names: Vec::new(),
                blocks: Vec::new(),
                stored: 0,
            });
        let len = std::fs::metadata(data).map_or(0, |m| m.len());
        if s.end() > len {
            s = Summary {
                head,
                names: Vec::new(),
                blocks: Vec::new(),
                stored: 0,
            };
        }
        s.extend(data)?;
        let grown = s.blocks.len() - s.stored;
        if grown > 0 && (s.stored == 0 || grown * 16 >= s.stored) {
            // A cache: a folder that is not writable keeps it in memory.
            let _ = s.store(data);
        }
        Ok(s)
    }

    /// Reads the lines after [`Summary::end`] into blocks (the last block,
    /// if short, is read again with them).
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
        let parts: Vec<Result<Builder>> = std::thread::scope(|s| {
            let hs: Vec<_> = ranges
                .into_iter()
                .map(|r| s.spawn(move || Builder::read(data, r)))
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
    pub fn end(&self) -> u64 {
        self.blocks.last().map_or(0, |b| b.bytes.end)
    }

    /// The blocks, in file order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// Lines that are metric points.
    pub fn points(&self) -> u64 {
        self.blocks.iter().map(|b| u64::from(b.points)).sum()
    }

    /// The id of field `name` in [`Block::agg`] (`None`: no point has a
    /// number in a top-level field of that name).
    pub fn field(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|i| i as u32)
    }

    /// The fields with numbers, in the order first seen.
    pub fn fields(&self) -> &[String] {
        &self.names
    }

    fn store(&mut self, data: &Path) -> std::io::Result<()> {
        let dir = data.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        self.write(tmp.as_file_mut())?;
        tmp.persist(summary_path(data)).map_err(|e| e.error)?;
        self.stored = self.blocks.len();
        Ok(())
    }

    /// The stored form, in memory (see [`Summary::write`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        self.write(&mut out).expect("writes to memory do not fail");
        out.into_inner()
    }

    /// Writes the stored form: `MLDSUM01`, CRC-32 (u32) of the rest; the
    /// head (u16 length, bytes); the field names (u32 count; u16 length,
    /// UTF-8 each); the blocks (u64 count; each: start, end (u64), points
    /// (u32), nested (u8), lowest and highest index (u64), aggregates (u32
    /// count; each: field id, count (u32), first, min, max, last)). A point:
    /// index (u64), step, ts, y (f64). Little-endian.
    pub fn write(&self, to: &mut (impl Write + Seek)) -> std::io::Result<()> {
        let start = to.stream_position()?;
        to.write_all(MAGIC)?;
        to.write_all(&[0; 4])?;
        let crc = (|| -> std::io::Result<u32> {
            let mut w = Checked {
                to: std::io::BufWriter::new(&mut *to),
                crc: crc32fast::Hasher::new(),
            };
            w.put(&(self.head.len() as u16).to_le_bytes())?;
            w.put(&self.head)?;
            w.put(&(self.names.len() as u32).to_le_bytes())?;
            for n in &self.names {
                w.put(&(n.len() as u16).to_le_bytes())?;
                w.put(n.as_bytes())?;
            }
            w.put(&(self.blocks.len() as u64).to_le_bytes())?;
            for b in &self.blocks {
                for v in [b.bytes.start, b.bytes.end] {
                    w.put(&v.to_le_bytes())?;
                }
                w.put(&b.points.to_le_bytes())?;
                w.put(&[u8::from(b.nested)])?;
                w.put(&b.index.0.to_le_bytes())?;
                w.put(&b.index.1.to_le_bytes())?;
                w.put(&(b.aggs.len() as u32).to_le_bytes())?;
                for (id, a) in &b.aggs {
                    w.put(&id.to_le_bytes())?;
                    w.put(&a.count.to_le_bytes())?;
                    for p in [&a.first, &a.min, &a.max, &a.last] {
                        w.put(&p.index.to_le_bytes())?;
                        for v in [p.step, p.ts, p.y] {
                            w.put(&v.to_le_bytes())?;
                        }
                    }
                }
            }
            w.to.flush()?;
            Ok(w.crc.finalize())
        })()?;
        to.seek(SeekFrom::Start(start + MAGIC.len() as u64))?;
        to.write_all(&crc.to_le_bytes())?;
        to.seek(SeekFrom::End(0))?;
        Ok(())
    }

    /// Reads [`Summary::encode`]'s form; `None` when it is not one, or
    /// its checksum does not match.
    pub fn decode(from: impl Read) -> Option<Summary> {
        let mut r = Reader {
            from,
            crc: crc32fast::Hasher::new(),
        };
        let mut magic = [0; 8];
        r.from.read_exact(&mut magic).ok()?;
        let mut crc = [0; 4];
        r.from.read_exact(&mut crc).ok()?;
        if &magic != MAGIC {
            return None;
        }
        let n = usize::from(r.u16()?);
        let head = r.take(n)?;
        let names = (0..r.u32()?)
            .map(|_| {
                let n = usize::from(r.u16()?);
                String::from_utf8(r.take(n)?).ok()
            })
            .collect::<Option<Vec<_>>>()?;
        let count = r.u64()?;
        let mut blocks = Vec::with_capacity(count.min(1 << 20) as usize);
        for _ in 0..count {
            let bytes = r.u64()?..r.u64()?;
            let points = r.u32()?;
            let nested = r.take(1)?[0] != 0;
            let index = (r.u64()?, r.u64()?);
            let aggs = (0..r.u32()?)
                .map(|_| {
                    let id = r.u32()?;
                    let count = r.u32()?;
                    let (first, min, max, last) = (r.pt()?, r.pt()?, r.pt()?, r.pt()?);
                    (id < names.len() as u32).then_some((
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
            blocks.push(Block {
                bytes,
                points,
                nested,
                index,
                aggs,
            });
        }
        let mut rest = [0; 1];
        let at_end = matches!(r.from.read(&mut rest), Ok(0));
        (at_end && r.crc.finalize().to_le_bytes() == crc).then(|| {
            let stored = blocks.len();
            Summary {
                head,
                names,
                blocks,
                stored,
            }
        })
    }
}

/// Writes bytes, checksumming them.
struct Checked<W> {
    to: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Checked<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc.update(b);
        self.to.write_all(b)
    }
}

/// Reads little-endian fields, checksumming them.
struct Reader<R> {
    from: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Reader<R> {
    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        let mut v = vec![0; n];
        self.from.read_exact(&mut v).ok()?;
        self.crc.update(&v);
        Some(v)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut v = [0; N];
        self.from.read_exact(&mut v).ok()?;
        self.crc.update(&v);
        Some(v)
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

/// One reader's blocks, its field ids local to it.
struct Builder {
    names: Vec<String>,
    blocks: Vec<Block>,
}

impl Builder {
    fn read(data: &Path, range: Range<u64>) -> Result<Builder> {
        let mut reader = LineReader::range(data, range)?;
        let mut b = Builder {
            names: Vec::new(),
            blocks: Vec::new(),
        };
        let mut ids: HashMap<Vec<u8>, u32> = HashMap::new();
        // The previous line's keys and ids, in order: most lines repeat them.
        let mut last_keys: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut aggs: Vec<Option<Agg>> = Vec::new();
        let mut vals: Vec<(u32, f64)> = Vec::new();
        let mut cur: Option<Block> = None;
        let mut ordinal = 0u64;
        let (mut step_id, mut ts_id) = (None, None);
        while let Some((at, line)) = reader.next_line()? {
            let end = at + line.len() as u64 + 1;
            let block = cur.get_or_insert_with(|| Block {
                bytes: at..at,
                points: 0,
                nested: false,
                index: (u64::MAX, 0),
                aggs: Vec::new(),
            });
            block.bytes.end = end;
            ordinal += 1;
            vals.clear();
            let mut j = 0;
            let Some((index, nested)) = data_numbers(line, |m| {
                let (k, v) = match m {
                    Member::Number(k, v) => (k, v),
                    Member::Again => {
                        vals.clear();
                        j = 0;
                        return;
                    }
                };
                let id = match last_keys.get(j) {
                    Some((key, id)) if key == k => *id,
                    _ => {
                        let id = *ids.entry(k.to_vec()).or_insert_with(|| {
                            b.names.push(String::from_utf8_lossy(k).into_owned());
                            b.names.len() as u32 - 1
                        });
                        match k {
                            b"step" => step_id = Some(id),
                            b"_ts" => ts_id = Some(id),
                            _ => {}
                        }
                        last_keys.truncate(j);
                        last_keys.push((k.to_vec(), id));
                        id
                    }
                };
                j += 1;
                vals.push((id, v));
            }) else {
                if block_full(block) {
                    b.close(&mut cur, &mut aggs);
                }
                continue;
            };
            let index = index.unwrap_or(ordinal - 1);
            let find = |id: Option<u32>| {
                id.and_then(|id| vals.iter().find(|v| v.0 == id))
                    .map_or(f64::NAN, |v| v.1)
            };
            let at = Pt {
                index,
                step: find(step_id),
                ts: find(ts_id),
                y: f64::NAN,
            };
            block.points += 1;
            block.nested |= nested;
            block.index = (block.index.0.min(index), block.index.1.max(index));
            for &(id, y) in &vals {
                let p = Pt { y, ..at };
                let i = id as usize;
                if aggs.len() <= i {
                    aggs.resize(i + 1, None);
                }
                match &mut aggs[i] {
                    Some(a) => a.push(p),
                    slot => *slot = Some(Agg::new(p)),
                }
            }
            if block_full(block) {
                b.close(&mut cur, &mut aggs);
            }
        }
        b.close(&mut cur, &mut aggs);
        Ok(b)
    }

    fn close(&mut self, cur: &mut Option<Block>, aggs: &mut [Option<Agg>]) {
        if let Some(mut block) = cur.take() {
            block.aggs = aggs
                .iter_mut()
                .enumerate()
                .filter_map(|(i, a)| a.take().map(|a| (i as u32, a)))
                .collect();
            if block.points == 0 {
                block.index = (0, 0);
            }
            self.blocks.push(block);
        }
    }
}

fn block_full(b: &Block) -> bool {
    b.points >= BLOCK_LINES
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
        // A damaged summary is rebuilt.
        let mut bad = std::fs::read(summary_path(&path)).unwrap();
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert!(Summary::decode(&bad[..]).is_none());
        std::fs::write(summary_path(&path), bad).unwrap();
        assert_eq!(Summary::open(&path).unwrap().points(), 10);
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
