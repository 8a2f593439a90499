//! One metric stream as a chart's series, for `ml-dash plot` and `ml-dash
//! serve` alike: x (step, index or time) and one downsampled series per
//! field, per pixel column the first, lowest, highest and last point
//! ([`M4`]). It reads the stream's block summary
//! ([`ml_dash::read::Summary`], built once and extended by appends): a block
//! whose points all fall in one pixel column is folded from its summary,
//! and only the lines of blocks that straddle a column edge (or a zoom's
//! edge) are read. The result is the one reading every line gives.
//!
//! ```
//! # fn main() -> ml_dash_cli::Result {
//! use ml_dash_cli::series::{Query, Stream, X};
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("data.jsonl");
//! let text: String = (0..10_000)
//!     .map(|i| format!("{{\"index\":{i},\"data\":{{\"loss\":{},\"step\":{i}}}}}\n", (i % 100) as f64))
//!     .collect();
//! std::fs::write(&path, text).unwrap();
//! let s = Stream::open(&path, X::Step)?;
//! let fields = ["loss".to_string()];
//! let got = s.series(&Query { fields: &fields, columns: 10, ..Query::new(X::Step) })?;
//! assert_eq!(got.points, 10_000);
//! let loss = &got.fields[0];
//! assert!(loss.len() <= 40 && loss.iter().any(|p| p.2 == 99.0) && loss[0].0 == 0);
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ml_dash::read::{self, Block, LineReader, Pt, Summary};

use crate::downsample::{M4, Point};
use crate::{Fail, Result};

/// Which x a chart uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X {
    /// The `step` field (the index where a point has none).
    Step,
    /// The point's index.
    Index,
    /// Seconds since the stream's first `_ts` (points without one are left
    /// out).
    Time,
}

/// What to draw.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The x.
    pub x: X,
    /// The fields, one series each.
    pub fields: &'a [String],
    /// Pixel columns.
    pub columns: usize,
    /// The x range the columns span; points outside it are left out.
    /// `None`: the stream's first to last x.
    pub range: Option<(f64, f64)>,
    /// A moving average over this many points (1: none).
    pub smooth: usize,
    /// log10 of each value (not positive: left out).
    pub log_y: bool,
}

impl Query<'_> {
    /// No fields, 1000 columns, the whole range, no smoothing, linear.
    pub fn new(x: X) -> Query<'static> {
        Query {
            x,
            fields: &[],
            columns: 1000,
            range: None,
            smooth: 1,
            log_y: false,
        }
    }
}

/// A stream's series.
#[derive(Debug, Clone)]
pub struct Series {
    /// Metric points in the stream (all lines read that are points).
    pub points: u64,
    /// Offset just past the last line read (where a live reader goes on).
    pub end: u64,
    /// The `_ts` subtracted from time x (0 for the other x).
    pub t0: f64,
    /// The x range the columns spanned.
    pub range: (f64, f64),
    /// Per field, the points kept `(index, x, y)`, in x order.
    pub fields: Vec<Vec<Point>>,
    /// Points read from their lines (the others came from the summary).
    pub lines_read: u64,
}

/// One stream, its summary up to date.
#[derive(Debug)]
pub struct Stream {
    path: PathBuf,
    summary: Summary,
    t0: f64,
    x: X,
}

/// What to do with one block.
enum Take {
    Fold,
    Skip,
    Lines,
}

/// Where a field's points go: all of them (few points) or the downsampler.
enum Keep {
    All(Vec<Point>),
    M4(M4),
}

impl Keep {
    fn push(&mut self, p: Point) {
        match self {
            Keep::All(v) if !p.1.is_nan() && !p.2.is_nan() => v.push(p),
            Keep::All(_) => {}
            Keep::M4(m) => m.push(p.0, p.1, p.2),
        }
    }
}

impl Stream {
    /// The stream whose data file is `path` (missing: an empty stream).
    pub fn open(path: &Path, x: X) -> Result<Stream> {
        let summary = Summary::open(path)?;
        let t0 = match x {
            X::Time => summary
                .field("_ts")
                .and_then(|id| summary.blocks().iter().find_map(|b| b.agg(id)))
                .map_or(0.0, |a| a.first.y),
            _ => 0.0,
        };
        Ok(Stream {
            path: path.to_path_buf(),
            summary,
            t0,
            x,
        })
    }

    /// The summary read.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    fn x_of(&self, p: &Pt) -> f64 {
        match self.x {
            X::Index => p.index as f64,
            X::Step if p.step.is_nan() => p.index as f64,
            X::Step => p.step,
            X::Time => p.ts - self.t0,
        }
    }

    /// The lowest and highest x (`None`: no point has one).
    pub fn bounds(&self) -> Option<(f64, f64)> {
        let mut out: Option<(f64, f64)> = None;
        let mut widen = |lo: f64, hi: f64| {
            let (a, b) = out.get_or_insert((lo, hi));
            (*a, *b) = (a.min(lo), b.max(hi));
        };
        let (step, ts) = (self.summary.field("step"), self.summary.field("_ts"));
        for b in self.summary.blocks().iter().filter(|b| b.points > 0) {
            let index = (b.index.0 as f64, b.index.1 as f64);
            let field = |id: Option<u32>| id.and_then(|id| b.agg(id));
            match (self.x, field(step), field(ts)) {
                (X::Index, ..) | (X::Step, None, _) => widen(index.0, index.1),
                (X::Step, Some(a), _) => {
                    widen(a.min.y, a.max.y);
                    if a.count < b.points {
                        widen(index.0, index.1);
                    }
                }
                (X::Time, _, Some(a)) => widen(a.min.y - self.t0, a.max.y - self.t0),
                (X::Time, _, None) => {}
            }
        }
        out
    }

    /// The x range of a block's points, when they all have the x (else
    /// `Err(true)`: some do, read its lines; `Err(false)`: none does).
    fn x_range(&self, b: &Block) -> std::result::Result<(f64, f64), bool> {
        let field = |name: &str| self.summary.field(name).and_then(|id| b.agg(id));
        match self.x {
            X::Index => Ok((b.index.0 as f64, b.index.1 as f64)),
            X::Step => match field("step") {
                None => Ok((b.index.0 as f64, b.index.1 as f64)),
                Some(a) if a.count == b.points => Ok((a.min.y, a.max.y)),
                Some(_) => Err(true),
            },
            X::Time => match field("_ts") {
                None => Err(false),
                Some(a) if a.count == b.points => Ok((a.min.y - self.t0, a.max.y - self.t0)),
                Some(_) => Err(true),
            },
        }
    }

    /// The series `q` asks for.
    pub fn series(&self, q: &Query) -> Result<Series> {
        let range = q.range.or_else(|| self.bounds()).unwrap_or((0.0, 0.0));
        let columns = q.columns.max(1);
        let ids: Vec<Option<u32>> = q.fields.iter().map(|f| self.summary.field(f)).collect();
        let dotted = q.fields.iter().any(|f| f.contains('.'));
        // Smoothing needs every point; a dotted field may be in nested values.
        let all_lines = q.smooth > 1
            || q.fields
                .iter()
                .zip(&ids)
                .any(|(f, id)| id.is_none() && f.contains('.'));
        let few = self.summary.points() <= 4 * columns as u64;
        let grid = M4::new(range, columns);
        let mut keep: Vec<Keep> = q
            .fields
            .iter()
            .map(|_| match few {
                true => Keep::All(Vec::new()),
                false => Keep::M4(M4::new(range, columns)),
            })
            .collect();
        let mut rings: Vec<(VecDeque<f64>, f64)> = vec![(VecDeque::new(), 0.0); q.fields.len()];
        let zoom = q.range;
        let mut push = |j: usize, index: u64, x: f64, y: f64| {
            if zoom.is_some_and(|(a, b)| x < a || x > b) || y.is_nan() {
                return;
            }
            let mut y = y;
            if q.smooth > 1 {
                let (ring, sum) = &mut rings[j];
                ring.push_back(y);
                *sum += y;
                if ring.len() > q.smooth {
                    *sum -= ring.pop_front().unwrap_or(0.0);
                }
                y = *sum / ring.len() as f64;
            }
            if q.log_y {
                y = if y > 0.0 { y.log10() } else { f64::NAN };
            }
            keep[j].push((index as usize, x, y));
        };
        let mut keys: Vec<&str> = q.fields.iter().map(String::as_str).collect();
        keys.push(match self.x {
            X::Time => "_ts",
            _ => "step",
        });
        let xi = q.fields.len();
        let mut lines_read = 0;
        for b in self.summary.blocks() {
            let take = if b.points == 0 {
                Take::Skip
            } else if all_lines || few || (dotted && b.nested) {
                Take::Lines
            } else {
                match self.x_range(b) {
                    Err(false) => Take::Skip,
                    Err(true) => Take::Lines,
                    Ok((lo, hi)) => match zoom {
                        Some((a, z)) if hi < a || lo > z => Take::Skip,
                        Some((a, z)) if lo < a || hi > z => Take::Lines,
                        _ if grid.column(lo) != grid.column(hi) => Take::Lines,
                        _ if q.log_y
                            && ids
                                .iter()
                                .flatten()
                                .filter_map(|id| b.agg(*id))
                                .any(|a| a.min.y <= 0.0) =>
                        {
                            Take::Lines
                        }
                        _ => Take::Fold,
                    },
                }
            };
            match take {
                Take::Skip => {}
                Take::Fold => {
                    for (j, id) in ids.iter().enumerate() {
                        for p in id
                            .and_then(|id| b.agg(id))
                            .into_iter()
                            .flat_map(|a| a.points())
                        {
                            push(j, p.index, self.x_of(&p), p.y);
                        }
                    }
                }
                Take::Lines => self.lines(b.bytes.clone(), &keys, |index, v| {
                    lines_read += 1;
                    let x = match self.x {
                        X::Index => index as f64,
                        X::Step if v[xi].is_nan() => index as f64,
                        X::Step => v[xi],
                        X::Time => v[xi] - self.t0,
                    };
                    for (j, y) in v[..xi].iter().enumerate() {
                        push(j, index, x, *y);
                    }
                })?,
            }
        }
        let fields = keep
            .into_iter()
            .map(|k| {
                let mut kept = match k {
                    Keep::All(v) => v,
                    Keep::M4(m) => m.finish(),
                };
                kept.sort_by(|a, b| a.1.total_cmp(&b.1));
                kept
            })
            .collect();
        Ok(Series {
            points: self.summary.points(),
            end: self.summary.end(),
            t0: self.t0,
            range,
            fields,
            lines_read,
        })
    }

    fn lines(&self, bytes: Range<u64>, keys: &[&str], f: impl FnMut(u64, &[f64])) -> Result {
        let mut r = LineReader::range(&self.path, bytes)?;
        read::scan_metric(&mut r, keys, f)
            .map(drop)
            .map_err(Fail::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream with what charts meet: points without `step` or `_ts`, a
    /// step that goes back (a resumed run), negative and NaN values, a
    /// second field on some points only.
    fn write(path: &Path, n: u64) {
        use std::fmt::Write;
        let mut text = String::new();
        let mut rng = 99u64;
        for i in 0..n {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (rng >> 11) as f64 / (1u64 << 53) as f64;
            let step = if (40_000..41_000).contains(&i) {
                i - 5000
            } else {
                i
            };
            let loss = if i % 1013 == 7 {
                "NaN".to_string()
            } else {
                format!("{}", r * 4.0 - 1.0)
            };
            let mut data = format!("\"loss\":{loss}");
            if i % 3001 != 11 {
                write!(data, ",\"step\":{step}").unwrap();
            }
            if i % 2003 != 13 {
                write!(data, ",\"_ts\":{}", 1_700_000_000.0 + i as f64 * 0.01).unwrap();
            }
            if i % 5 == 0 {
                write!(data, ",\"acc\":{}", r).unwrap();
            }
            writeln!(text, "{{\"index\":{i},\"data\":{{{data}}}}}").unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    /// The series read line by line, without the summary.
    fn by_lines(path: &Path, x: X, q: &Query, range: (f64, f64), t0: f64) -> Vec<Vec<Point>> {
        let mut keys: Vec<&str> = q.fields.iter().map(String::as_str).collect();
        keys.push(if x == X::Time { "_ts" } else { "step" });
        let n = q.fields.len();
        let mut all = Vec::new();
        let mut r = LineReader::open(path).unwrap();
        read::scan_metric(&mut r, &keys, |i, v| all.push((i, v.to_vec()))).unwrap();
        let few = all.len() <= 4 * q.columns;
        (0..n)
            .map(|j| {
                let mut m4 = M4::new(range, q.columns);
                let mut kept = Vec::new();
                for (i, v) in &all {
                    let px = match x {
                        X::Index => *i as f64,
                        X::Step if v[n].is_nan() => *i as f64,
                        X::Step => v[n],
                        X::Time => v[n] - t0,
                    };
                    let mut y = v[j];
                    if q.range.is_some_and(|(a, b)| px < a || px > b) || y.is_nan() {
                        continue;
                    }
                    if q.log_y {
                        y = if y > 0.0 { y.log10() } else { f64::NAN };
                    }
                    if few {
                        if !px.is_nan() && !y.is_nan() {
                            kept.push((*i as usize, px, y));
                        }
                    } else {
                        m4.push(*i as usize, px, y);
                    }
                }
                if !few {
                    kept = m4.finish();
                }
                kept.sort_by(|a, b| a.1.total_cmp(&b.1));
                kept
            })
            .collect()
    }

    fn same(a: &[Vec<Point>], b: &[Vec<Point>]) -> bool {
        a.len() == b.len()
            && a.iter().zip(b).all(|(p, q)| {
                p.len() == q.len()
                    && p.iter().zip(q).all(|(p, q)| {
                        p.0 == q.0
                            && p.1.to_bits() == q.1.to_bits()
                            && p.2.to_bits() == q.2.to_bits()
                    })
            })
    }

    #[test]
    fn the_summary_gives_what_every_line_gives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        write(&path, 60_000);
        let fields = ["loss".to_string(), "acc".to_string()];
        for x in [X::Step, X::Index, X::Time] {
            let s = Stream::open(&path, x).unwrap();
            let (lo, hi) = s.bounds().unwrap();
            for columns in [7, 50, 300, 1000, 20_000] {
                for range in [None, Some((lo + (hi - lo) * 0.3, lo + (hi - lo) * 0.61))] {
                    for log_y in [false, true] {
                        let q = Query {
                            x,
                            fields: &fields,
                            columns,
                            range,
                            smooth: 1,
                            log_y,
                        };
                        let got = s.series(&q).unwrap();
                        let want = by_lines(&path, x, &q, got.range, got.t0);
                        assert!(
                            same(&got.fields, &want),
                            "{x:?} {columns} columns, range {range:?}, log {log_y}: {} / {} points",
                            got.fields[0].len(),
                            want[0].len()
                        );
                        assert_eq!(got.points, 60_000);
                        if columns == 7 && range.is_none() && !log_y {
                            assert!(
                                got.lines_read < 10_000,
                                "{x:?}: {} lines read",
                                got.lines_read
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn smoothing_is_a_trailing_mean_over_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        std::fs::write(
            &path,
            "{\"index\":0,\"data\":{\"v\":1,\"step\":0}}\n{\"index\":1,\"data\":{\"v\":3,\"step\":1}}\n\
             {\"index\":2,\"data\":{\"step\":2}}\n{\"index\":3,\"data\":{\"v\":5,\"step\":3}}\n\
             {\"index\":4,\"data\":{\"v\":7,\"step\":4}}\n",
        )
        .unwrap();
        let s = Stream::open(&path, X::Step).unwrap();
        let fields = ["v".to_string()];
        let got = s
            .series(&Query {
                fields: &fields,
                smooth: 2,
                ..Query::new(X::Step)
            })
            .unwrap();
        let ys: Vec<f64> = got.fields[0].iter().map(|p| p.2).collect();
        assert_eq!(ys, [1.0, 2.0, 4.0, 6.0]);
    }
}
