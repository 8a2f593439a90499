//! Checking a store and a spool for damage, and the repairs that need no
//! guess. Used by `ml-dash verify`.
//!
//! A run: every line of every append file parses; metric `index` and log
//! `sequenceNumber` values are unique and contiguous; `metadata.json` /
//! `.log_sequence` totals match the data; every stored file's size and
//! SHA-256 match `.files_metadata.json`. A spool: every segment's header and
//! record checksums, increasing sequence numbers, the session descriptor,
//! and the ack cursor (both slots' checksums, and that it points at a record
//! boundary of a segment still there).
//!
//! The one repair: a torn last line (bytes after the last newline, found
//! under the file's lock, so not a line being written) is moved to
//! `<file>.torn` beside it, by the same code the store's own recovery uses.
//! Nothing is ever deleted.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::lines::LineReader;
use super::store;
use crate::error::{Error, Result};
use crate::sink::local::{cut_torn_tail, read_json, with_lock};
use crate::spool::{self, Kind, Read as SpoolRead, Record};

/// Problems reported per file at most (the rest are counted in one line).
pub const MAX_PER_FILE: usize = 20;

/// One problem found.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir().unwrap(); // no experiment.json
/// let problems = ml_dash::read::verify_run(dir.path(), false)?;
/// assert_eq!(problems[0].path, dir.path());
/// assert!(problems[0].what.contains("experiment.json"));
/// assert_eq!(problems[0].repaired, None);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or folder) concerned.
    pub path: PathBuf,
    /// What is wrong, with the line or byte where it is.
    pub what: String,
    /// What `repair` did about it, if anything.
    pub repaired: Option<String>,
}

#[derive(Default)]
struct Report {
    problems: Vec<Problem>,
}

impl Report {
    fn add(&mut self, path: &Path, what: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_path_buf(),
            what: what.into(),
            repaired: None,
        });
    }
}

/// A per-file cap on reported problems.
struct Capped<'a> {
    report: &'a mut Report,
    path: PathBuf,
    n: usize,
}

impl Capped<'_> {
    fn add(&mut self, what: String) {
        self.n += 1;
        if self.n <= MAX_PER_FILE {
            self.report.add(&self.path, what);
        }
    }
}

impl Drop for Capped<'_> {
    fn drop(&mut self) {
        if self.n > MAX_PER_FILE {
            let more = self.n - MAX_PER_FILE;
            self.report
                .add(&self.path, format!("{more} more problem(s) of this kind"));
        }
    }
}

/// Which numbers were seen: a bit set, for unique / contiguous checks.
#[derive(Default)]
struct Seen {
    bits: Vec<u64>,
    distinct: u64,
    max: Option<u64>,
}

impl Seen {
    /// Records `n`; false when it was seen before. Numbers past 2^36 are
    /// only compared with their predecessor (the set would be too large).
    fn insert(&mut self, n: u64) -> bool {
        self.max = Some(self.max.map_or(n, |m| m.max(n)));
        if n >= 1 << 36 {
            self.distinct += 1;
            return true;
        }
        let (w, b) = ((n / 64) as usize, n % 64);
        if self.bits.len() <= w {
            self.bits.resize(w + 1, 0);
        }
        let fresh = self.bits[w] & (1 << b) == 0;
        self.bits[w] |= 1 << b;
        self.distinct += u64::from(fresh);
        fresh
    }
}

/// Checks the append file `path` line by line: each line parses and holds
/// a number `key` (`None`: no number to check) unique and contiguous from
/// 0; a torn last line is reported (and moved aside under `lock` when
/// `repair`). Returns the numbers seen and the complete lines.
fn check_lines(
    report: &mut Report,
    path: &Path,
    lock: &Path,
    key: Option<&str>,
    repair: bool,
    mut each: impl FnMut(&Json),
) -> Result<(Seen, u64)> {
    let mut seen = Seen::default();
    let mut lines = 0u64;
    let mut r = LineReader::open(path)?;
    {
        let mut c = Capped {
            report,
            path: path.to_path_buf(),
            n: 0,
        };
        let mut prev: Option<u64> = None;
        while let Some((offset, line)) = r.next_line()? {
            lines += 1;
            let v = match super::parse_lenient(line) {
                Ok(v) => v,
                Err(e) => {
                    let why = match e {
                        Error::Corrupt { reason, .. } => reason,
                        e => e.to_string(),
                    };
                    c.add(format!(
                        "line {lines} (byte {offset}) does not parse: {why}"
                    ));
                    continue;
                }
            };
            each(&v);
            let Some(key) = key else { continue };
            let Some(n) = v.get(key).and_then(Json::as_u64) else {
                c.add(format!("line {lines} has no numeric \"{key}\""));
                continue;
            };
            if !seen.insert(n) {
                c.add(format!(
                    "line {lines}: {key} {n} is a duplicate (an earlier line has it)"
                ));
            } else {
                let expected = prev.map_or(0, |p| p + 1);
                if n > expected {
                    let gap = if n - expected == 1 {
                        format!("{expected}")
                    } else {
                        format!("{expected}..{}", n - 1)
                    };
                    c.add(format!(
                        "line {lines}: {key} {n} follows {}: {key} {gap} missing",
                        prev.map_or("the start".into(), |p| p.to_string())
                    ));
                } else if n < expected {
                    c.add(format!(
                        "line {lines}: {key} {n} is out of order (after {})",
                        expected - 1
                    ));
                }
            }
            prev = Some(prev.map_or(n, |p| p.max(n)));
        }
    }
    if r.torn().is_some() {
        torn_tail(report, path, lock, repair)?;
    }
    Ok((seen, lines))
}

/// Under the file's lock (so not a line a live writer is appending): a tail
/// without a newline is torn; `repair` moves it to `<file>.torn`.
fn torn_tail(report: &mut Report, path: &Path, lock: &Path, repair: bool) -> Result<()> {
    with_lock(lock, || {
        let mut file = OpenOptions::new()
            .read(true)
            .write(repair)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut last = [0u8];
        if len == 0 || (file.read_exact_at(&mut last, len - 1).is_ok() && last[0] == b'\n') {
            return Ok(()); // a writer finished the line meanwhile
        }
        let keep = complete_len(&mut file, len).map_err(|e| Error::io(path, e))?;
        let what = format!(
            "torn last line: {} bytes after the last complete line (byte {keep}), no newline: \
             a writer was killed mid-append",
            len - keep
        );
        let repaired = if repair {
            let (_, note) = cut_torn_tail(&file, path, len)?;
            note.map(|_| {
                format!(
                    "moved the {} bytes to {}",
                    len - keep,
                    crate::sink::local::torn_path(path).display()
                )
            })
        } else {
            None
        };
        report.problems.push(Problem {
            path: path.to_path_buf(),
            what,
            repaired,
        });
        Ok(())
    })
}

/// The length up to the last newline.
fn complete_len(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&c| c == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn num(m: &Json, key: &str) -> Option<u64> {
    m.get(key).and_then(Json::as_u64)
}

fn document(report: &mut Report, path: &Path) -> Option<Json> {
    match read_json(path) {
        Ok(v) => v,
        Err(e) => {
            report.add(path, format!("does not parse: {e}"));
            None
        }
    }
}

/// Checks the run in `dir` (see the module docs); `repair` moves torn last
/// lines aside. Returns every problem found (empty: the run is sound).
///
/// # Examples
/// ```
/// use std::io::Write;
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// run.log("whole")?;
/// run.complete()?;
/// let dir = root.path().join("a/b");
/// assert_eq!(ml_dash::read::verify_run(&dir, false)?, []);
/// // A writer killed mid-line leaves a torn line; repair moves it aside.
/// let logs = ml_dash::read::logs_path(&dir);
/// std::fs::OpenOptions::new().append(true).open(&logs).unwrap().write_all(b"{\"tor").unwrap();
/// let found = ml_dash::read::verify_run(&dir, true)?;
/// assert!(found.iter().any(|p| p.repaired.is_some()));
/// assert_eq!(ml_dash::read::verify_run(&dir, false)?, []);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn verify_run(dir: &Path, repair: bool) -> Result<Vec<Problem>> {
    let mut rep = Report::default();
    if !dir.join("experiment.json").is_file() {
        rep.add(dir, "no experiment.json: not a run folder");
    } else {
        document(&mut rep, &dir.join("experiment.json"));
    }
    document(&mut rep, &dir.join("parameters.json"));

    for s in store::metric_streams(dir)? {
        let data = s.data();
        let (seen, _) = check_lines(
            &mut rep,
            &data,
            &s.dir.join(".metadata.lock"),
            Some("index"),
            repair,
            |_| {},
        )?;
        let meta_path = s.dir.join("metadata.json");
        if let Some(meta) = document(&mut rep, &meta_path) {
            let next = seen.max.map_or(0, |m| m + 1);
            if let Some(t) = num(&meta, "totalDataPoints")
                && t != seen.distinct
            {
                rep.add(
                    &meta_path,
                    format!(
                        "totalDataPoints is {t}, the data has {} point(s)",
                        seen.distinct
                    ),
                );
            }
            if let Some(n) = num(&meta, "nextIndex")
                && n != next
            {
                rep.add(
                    &meta_path,
                    format!("nextIndex is {n}, the data's last index + 1 is {next}"),
                );
            }
        }
    }

    let logs = store::logs_path(dir);
    let lock = dir.join("logs").join(".log_sequence.lock");
    let (seen, _) = check_lines(
        &mut rep,
        &logs,
        &lock,
        Some("sequenceNumber"),
        repair,
        |_| {},
    )?;
    let seq_path = dir.join("logs").join(".log_sequence");
    if let Ok(text) = std::fs::read_to_string(&seq_path) {
        let next = seen.max.map_or(0, |m| m + 1);
        match text.trim().parse::<u64>() {
            Ok(n) if n == next => {}
            Ok(n) => rep.add(
                &seq_path,
                format!("says {n}, the logs' last sequenceNumber + 1 is {next}"),
            ),
            Err(_) => rep.add(&seq_path, format!("is not a number: {:?}", text.trim())),
        }
    }

    for t in store::track_topics(dir)? {
        let data = t.data();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut untimed = 0u64;
        let (_, lines) = check_lines(
            &mut rep,
            &data,
            &t.dir.join(".metadata.lock"),
            None,
            repair,
            |v| match v.get("timestamp").and_then(Json::as_f64) {
                Some(ts) => {
                    lo = lo.min(ts);
                    hi = hi.max(ts);
                }
                None => untimed += 1,
            },
        )?;
        if untimed > 0 {
            rep.add(
                &data,
                format!("{untimed} row(s) without a numeric \"timestamp\""),
            );
        }
        let meta_path = t.dir.join("metadata.json");
        if let Some(meta) = document(&mut rep, &meta_path) {
            if let Some(n) = num(&meta, "totalEntries")
                && n != lines
            {
                rep.add(
                    &meta_path,
                    format!("totalEntries is {n}, the data has {lines} row(s)"),
                );
            }
            let f = |k: &str| meta.get(k).and_then(Json::as_f64);
            if lines > untimed
                && let (Some(first), Some(last)) = (f("firstTimestamp"), f("lastTimestamp"))
                && (first != lo || last != hi)
            {
                rep.add(
                    &meta_path,
                    format!("time range {first}..{last}, the data's is {lo}..{hi}"),
                );
            }
        }
    }

    let files = match store::stored_files(dir) {
        Ok(f) => f,
        Err(e) => {
            rep.add(
                &dir.join("files").join(".files_metadata.json"),
                e.to_string(),
            );
            Vec::new()
        }
    };
    for f in files {
        let (size, sum) = match hash_file(&f.content) {
            Ok(x) => x,
            Err(e) => {
                rep.add(
                    &f.content,
                    format!("cannot be read ({e}): the stored content is missing"),
                );
                continue;
            }
        };
        if size != f.info.size_bytes {
            rep.add(
                &f.content,
                format!(
                    "is {size} bytes, .files_metadata.json says {}",
                    f.info.size_bytes
                ),
            );
        }
        if let Some(want) = f.info.checksum.as_deref().filter(|c| !c.is_empty())
            && want != sum
        {
            rep.add(
                &f.content,
                format!("has sha256 {sum}, .files_metadata.json says {want}: the content changed"),
            );
        }
    }

    for sub in [".spool", crate::remote::SYNC_DIR] {
        let spool = dir.join(sub);
        if spool.is_dir() {
            rep.problems.extend(verify_spool(&spool)?);
        }
    }
    Ok(rep.problems)
}

/// Size and SHA-256 (hex) of a file, streamed.
///
/// # Examples
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("a.txt");
/// std::fs::write(&path, "abc").unwrap();
/// let (size, sha) = ml_dash::read::hash_file(&path).unwrap();
/// assert_eq!(size, 3);
/// assert_eq!(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
/// ```
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((
        size,
        h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

/// Whether `dir` is a spool folder (it holds session folders) or a session.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?.complete()?;
/// let run_dir = root.path().join("a/b");
/// let spooled = ml_dash::spool_run(&run_dir, "a/b", Some("https://api.dash.ml"))?;
/// assert!(ml_dash::read::is_spool(&spooled.spool_dir));
/// assert!(!ml_dash::read::is_spool(&run_dir));
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn is_spool(dir: &Path) -> bool {
    is_session(dir) || spool::sessions(dir).is_ok_and(|s| !s.is_empty())
}

fn is_session(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .and_then(spool::SessionId::parse)
        .is_some()
        && dir.is_dir()
}

/// Checks a spool folder (every session in it) or one session folder (see
/// the module docs). Nothing is repaired: the sender skips damaged bytes
/// and rebuilds a lost descriptor itself.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?.complete()?;
/// let spooled = ml_dash::spool_run(&root.path().join("a/b"), "a/b", Some("https://api.dash.ml"))?;
/// assert_eq!(ml_dash::read::verify_spool(&spooled.spool_dir)?, []);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn verify_spool(dir: &Path) -> Result<Vec<Problem>> {
    let mut rep = Report::default();
    let sessions = if is_session(dir) {
        vec![dir.to_path_buf()]
    } else {
        spool::sessions(dir)
            .map_err(|e| Error::io(dir, e))?
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    };
    for s in sessions {
        verify_session(&mut rep, &s).map_err(|e| Error::io(&s, e))?;
    }
    Ok(rep.problems)
}

fn verify_session(rep: &mut Report, dir: &Path) -> std::io::Result<()> {
    let desc = dir.join(spool::SESSION_FILE);
    match std::fs::read(&desc) {
        Ok(b) if serde_json::from_slice::<Json>(&b).is_ok() => {}
        Ok(_) => rep.add(
            &desc,
            "does not parse (sync rebuilds it from the copy in the segments)",
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => rep.add(
            &desc,
            "is missing (sync rebuilds it from the copy in the segments)",
        ),
        Err(e) => return Err(e),
    }
    let segs = spool::segments(dir)?;
    // Record starts (and ends) per segment, for the cursor check.
    let mut bounds: Vec<(u32, Vec<u64>)> = Vec::new();
    let mut rec = Record::default();
    let mut last_seq: Option<u64> = None;
    for &n in &segs {
        let path = dir.join(spool::segment_name(n));
        let file = File::open(&path)?;
        let len = file.metadata()?.len();
        let mut head = [0u8; spool::SEGMENT_HEADER_LEN as usize];
        if len < spool::SEGMENT_HEADER_LEN || file.read_exact_at(&mut head, 0).is_err() {
            rep.add(&path, format!("{len} bytes: shorter than a segment header"));
            continue;
        }
        let version = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(head[28..32].try_into().unwrap_or_default());
        if head[..8] != spool::SEGMENT_MAGIC
            || crc32fast::hash(&head[..28]) != crc
            || !(1..=spool::FORMAT_VERSION).contains(&version)
        {
            rep.add(
                &path,
                "bytes 0..32: the segment header is damaged (magic, version or checksum)",
            );
        }
        let mut starts = Vec::new();
        let mut off = spool::SEGMENT_HEADER_LEN;
        loop {
            starts.push(off);
            match spool::read_at(&file, off, len, &mut rec)? {
                SpoolRead::End => break,
                SpoolRead::Record { next } => {
                    if rec.kind() != Kind::Session {
                        if last_seq.is_some_and(|l| rec.seq() <= l) {
                            rep.add(
                                &path,
                                format!(
                                    "byte {off}: record seq {} after seq {}",
                                    rec.seq(),
                                    last_seq.unwrap_or(0)
                                ),
                            );
                        }
                        last_seq = Some(rec.seq());
                    }
                    off = next;
                }
                SpoolRead::Corrupt { resume } => {
                    rep.add(
                        &path,
                        format!(
                            "bytes {off}..{resume}: damaged ({} bytes whose checksum or layout \
                         fails; the records in them are lost)",
                            resume - off
                        ),
                    );
                    starts.pop();
                    off = resume;
                }
                SpoolRead::Torn => {
                    rep.add(
                        &path,
                        format!(
                            "bytes {off}..{len}: torn tail ({} bytes, no whole record: a write \
                         cut short)",
                            len - off
                        ),
                    );
                    starts.pop();
                    break;
                }
            }
        }
        bounds.push((n, starts));
    }
    verify_ack(rep, dir, &bounds)
}

/// The best valid slot of an ack file: (segment, offset).
fn ack_cursor(path: &Path) -> Option<(u32, u64)> {
    let bytes = std::fs::read(path).ok()?;
    let mut best: Option<(u64, u32, u64)> = None;
    for slot in bytes.chunks_exact(32).take(2) {
        let crc = u32::from_le_bytes(slot[24..28].try_into().ok()?);
        if crc32fast::hash(&slot[..24]) != crc {
            continue;
        }
        let g = u64::from_le_bytes(slot[0..8].try_into().ok()?);
        let seg = u32::from_le_bytes(slot[8..12].try_into().ok()?);
        let off = u64::from_le_bytes(slot[16..24].try_into().ok()?);
        if best.is_none_or(|(bg, _, _)| g > bg) {
            best = Some((g, seg, off));
        }
    }
    best.map(|(_, s, o)| (s, o))
}

/// Bytes a spool folder (or one session) still holds to send: each
/// session's segments after its ack cursor, and its file contents. 0 for a
/// missing folder. For progress reports; reading it changes nothing.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?.complete()?;
/// let spooled = ml_dash::spool_run(&root.path().join("a/b"), "a/b", Some("https://api.dash.ml"))?;
/// assert!(ml_dash::read::spool_backlog(&spooled.spool_dir) > 0); // not sent yet
/// assert_eq!(ml_dash::read::spool_backlog(&root.path().join("missing")), 0);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub fn spool_backlog(dir: &Path) -> u64 {
    let sessions = if is_session(dir) {
        vec![dir.to_path_buf()]
    } else {
        spool::sessions(dir)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    };
    let mut total = 0;
    for s in sessions {
        let (cseg, coff) = ack_cursor(&s.join("ack")).unwrap_or((0, 0));
        for n in spool::segments(&s).unwrap_or_default() {
            let len = std::fs::metadata(s.join(spool::segment_name(n))).map_or(0, |m| m.len());
            total += match n.cmp(&cseg) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Equal => {
                    len.saturating_sub(coff.max(spool::SEGMENT_HEADER_LEN))
                }
                std::cmp::Ordering::Greater => len.saturating_sub(spool::SEGMENT_HEADER_LEN),
            };
        }
        if let Ok(rd) = std::fs::read_dir(s.join(spool::FILES_DIR)) {
            total += rd
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>();
        }
    }
    total
}

fn verify_ack(rep: &mut Report, dir: &Path, bounds: &[(u32, Vec<u64>)]) -> std::io::Result<()> {
    let path = dir.join("ack");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut best: Option<(u64, u32, u64)> = None;
    for (i, slot) in bytes.chunks(32).take(2).enumerate() {
        if slot.len() < 32 {
            continue;
        }
        let crc = u32::from_le_bytes(slot[24..28].try_into().unwrap_or_default());
        if crc32fast::hash(&slot[..24]) != crc {
            if slot.iter().any(|&b| b != 0) {
                rep.add(
                    &path,
                    format!(
                        "slot {i} (bytes {}..{}): checksum fails",
                        i * 32,
                        i * 32 + 32
                    ),
                );
            }
            continue;
        }
        let g = u64::from_le_bytes(slot[0..8].try_into().unwrap_or_default());
        let seg = u32::from_le_bytes(slot[8..12].try_into().unwrap_or_default());
        let off = u64::from_le_bytes(slot[16..24].try_into().unwrap_or_default());
        if best.is_none_or(|(bg, _, _)| g > bg) {
            best = Some((g, seg, off));
        }
    }
    let Some((_, seg, off)) = best else {
        return Ok(());
    };
    if seg == 0 {
        return Ok(()); // the start of the session
    }
    match bounds.iter().find(|(n, _)| *n == seg) {
        Some((_, starts)) if starts.contains(&off) => {}
        Some(_) => rep.add(
            &path,
            format!("the cursor (segment {seg}, byte {off}) is not at a record boundary"),
        ),
        None if bounds.iter().any(|(n, _)| *n > seg) => rep.add(
            &path,
            format!("the cursor's segment {seg} is gone while later ones are not sent"),
        ),
        None if bounds.is_empty() => {}
        None => rep.add(&path, format!("the cursor's segment {seg} does not exist")),
    }
    Ok(())
}
