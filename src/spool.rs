//! The remote sink's durable spool: every batch bound for the server is first
//! appended here, in the engine's work area, and only the server's answer
//! removes it. Owns the on-disk format, its recovery and nothing else: no
//! HTTP, no threads (the sender in [`crate::remote`] drives it).
//!
//! ```text
//!  <spool dir>/                          (one per experiment, e.g. <dash_root>/<prefix>/.spool)
//!    s<created ms>-<run id>-<pid>/       one session = one sink opened by one process
//!      session.json                      the experiment to create on the server (no token)
//!                                        (also the first record of every segment)
//!      lock                              flock'd while a live sink or a sender owns the session
//!      ack                               the sender's cursor (two checksummed slots)
//!      00000001.seg 00000002.seg ...     segments of records, deleted once acknowledged
//!      files/<seq>-<name>                the content of spooled files, deleted once sent
//!    dead-letter.jsonl                   batches the server refused (4xx), with the answer
//! ```
//!
//! A segment starts with a 32-byte header (`MLDSPOOL`, format version, run id,
//! pid, CRC-32 of the header) followed by records, the first of which is a
//! [`Kind::Session`] record holding a copy of `session.json`:
//!
//! ```text
//!  u32 LE payload length | u32 LE CRC-32 of the payload | payload
//!  payload = kind u8 | flags u8 | 0u16 | seq u64 LE | stream: u16 LE len + UTF-8
//!            | item count u32 LE | (u32 LE len + JSON bytes) per item
//!  flags: bit 0 = has a stream; bit 1 = item 0 is the stream's info (a
//!         metric stream's `{"description":…,"tags":…,"metadata":…}`), not an item
//! ```
//!
//! `seq` numbers the session's records from 0 and, with the run id, the pid
//! and the stream, makes the request's idempotency key, so a replay after a
//! restart sends every batch under the key it had the first time.
//!
//! The session record repeats the descriptor in every segment (a few hundred
//! bytes per 16 MiB), so a session whose `session.json` was lost or damaged
//! is rebuilt from any segment still on disk ([`descriptor_copy`]); readers
//! skip it, and it takes no sequence number of its own. Format 1 segments
//! (before the copy) read the same, without it.
//!
//! ## Recovery
//!
//! Readers never trust the bytes: a record whose length runs past the end or
//! whose checksum or layout is wrong is *corrupt*. The reader then looks for the
//! next position where a whole valid record starts; if there is one, the bytes
//! in between are skipped and counted, and reading goes on (every intact record
//! is recovered); if there is none, the rest of the segment is a torn tail
//! (a process killed in the middle of a write), which is truncated and counted.
//! Nothing here panics on any input.
//!
//! ## Durability
//!
//! [`SpoolWriter::append`] is one `write` per batch (page cache: it survives a
//! `kill -9`); [`SpoolWriter::sync`] fsyncs the segment (and the folder when a
//! file was created), once per flush epoch and at close. The ack cursor is
//! written without fsync: after a power cut it can only move back, and the
//! idempotency keys let the server drop what is sent twice.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MLDSPOOL";
/// Version of the segment format (2: segments start with a session record).
pub const FORMAT_VERSION: u32 = 2;
/// Bytes of a segment header.
pub const SEGMENT_HEADER_LEN: u64 = 32;
/// Bytes before each record's payload (length and checksum).
pub const RECORD_HEADER_LEN: u64 = 8;
/// Largest payload a reader accepts (a larger length is corruption).
pub const MAX_PAYLOAD: u64 = 1 << 30;
/// Name of the dead-letter file in the spool folder.
pub const DEAD_LETTER_FILE: &str = "dead-letter.jsonl";
/// Name of the session descriptor in a session folder.
pub const SESSION_FILE: &str = "session.json";
/// Folder of a session's file blobs.
pub const FILES_DIR: &str = "files";

const PAYLOAD_FIXED: usize = 1 + 1 + 2 + 8 + 2;

/// What a record carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A copy of the session descriptor, first in every segment; never sent,
    /// and skipped by [`SessionReader`].
    Session = 1,
    /// A parameter merge: one item, a flat JSON object.
    Params = 2,
    /// Log entries, one JSON object each.
    Logs = 3,
    /// Metric points of one stream (`stream` = name, none for the unnamed stream).
    Metrics = 4,
    /// Track rows of one topic (`stream` = topic).
    Tracks = 5,
    /// The run's final status: one item, `COMPLETED`, `FAILED` or `CANCELLED`.
    Status = 6,
    /// A file: one item, its descriptor (the content is a blob in the session's `files/`).
    File = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Session,
            2 => Kind::Params,
            3 => Kind::Logs,
            4 => Kind::Metrics,
            5 => Kind::Tracks,
            6 => Kind::Status,
            7 => Kind::File,
            _ => return None,
        })
    }

    /// One letter for idempotency keys and messages.
    pub fn tag(self) -> char {
        match self {
            Kind::Session => 'd',
            Kind::Params => 'p',
            Kind::Logs => 'l',
            Kind::Metrics => 'm',
            Kind::Tracks => 't',
            Kind::Status => 's',
            Kind::File => 'f',
        }
    }

    /// Plural noun for reports.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Session => "session descriptor",
            Kind::Params => "parameter set",
            Kind::Logs => "log",
            Kind::Metrics => "metric point",
            Kind::Tracks => "track entry",
            Kind::Status => "status",
            Kind::File => "file",
        }
    }
}

/// Who wrote a session: the run (random per opened sink), the process and
/// the creation time (which orders sessions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId {
    /// Random id of the opened sink.
    pub run: u64,
    /// The writing process.
    pub pid: u32,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

impl SessionId {
    /// A fresh id for this process.
    pub fn new() -> SessionId {
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut run = fastrand::u64(..);
        if run == 0 {
            run = 1;
        }
        SessionId {
            run,
            pid: std::process::id(),
            created_ms,
        }
    }

    /// The session's folder name (sorts by creation time).
    pub fn dir_name(&self) -> String {
        format!("s{:013}-{:016x}-{}", self.created_ms, self.run, self.pid)
    }

    /// Parses a folder name written by [`dir_name`](Self::dir_name).
    pub fn parse(name: &str) -> Option<SessionId> {
        let rest = name.strip_prefix('s')?;
        let mut parts = rest.splitn(3, '-');
        let created_ms = parts.next()?.parse().ok()?;
        let run = u64::from_str_radix(parts.next()?, 16).ok()?;
        let pid = parts.next()?.parse().ok()?;
        Some(SessionId {
            run,
            pid,
            created_ms,
        })
    }
}

impl Default for SessionId {
    fn default() -> Self {
        SessionId::new()
    }
}

/// A position in a session: segment number and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// Segment number (from 1).
    pub seg: u32,
    /// Byte offset in the segment.
    pub off: u64,
}

/// The sender's progress: the first record not fully acknowledged, and how
/// many of its items were (a batch split into several requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Start of the first record not fully acknowledged.
    pub pos: Pos,
    /// Items of that record already acknowledged.
    pub done_items: u32,
}

/// A decoded record (owned, reusable buffer).
#[derive(Debug, Default, Clone)]
pub struct Record {
    kind: Option<Kind>,
    seq: u64,
    stream: Option<String>,
    payload: Vec<u8>,
    items: Vec<(usize, usize)>,
    info: Option<(usize, usize)>,
}

impl Record {
    /// What the record carries.
    pub fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::Logs)
    }
    /// Its sequence number in the session.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// Metric name or track topic (none for logs, params, status and the unnamed metric stream).
    pub fn stream(&self) -> Option<&str> {
        self.stream.as_deref()
    }
    /// The stream's info object, when the record carries one.
    pub fn info(&self) -> Option<&[u8]> {
        self.info.map(|(a, b)| &self.payload[a..b])
    }
    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// No items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Item `i` (JSON bytes).
    pub fn item(&self, i: usize) -> &[u8] {
        let (a, b) = self.items[i];
        &self.payload[a..b]
    }
    /// All items in order.
    pub fn items(&self) -> impl Iterator<Item = &[u8]> {
        self.items.iter().map(|&(a, b)| &self.payload[a..b])
    }

    /// Decodes the payload in `self.payload` (its checksum matched); `None`
    /// if its layout is wrong.
    fn decode(&mut self) -> Option<()> {
        self.items.clear();
        self.info = None;
        let p = &self.payload;
        if p.len() < PAYLOAD_FIXED + 4 {
            return None;
        }
        let kind = Kind::from_u8(p[0])?;
        let flags = p[1];
        if flags > 3 || p[2] != 0 || p[3] != 0 {
            return None;
        }
        let seq = u64::from_le_bytes(p[4..12].try_into().ok()?);
        let slen = u16::from_le_bytes(p[12..14].try_into().ok()?) as usize;
        let mut at = PAYLOAD_FIXED;
        let stream = p.get(at..at + slen)?;
        let stream = std::str::from_utf8(stream).ok()?;
        self.stream = (flags & 1 == 1).then(|| stream.to_owned());
        if flags & 1 == 0 && slen != 0 {
            return None;
        }
        at += slen;
        let n = u32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        if n > p.len() {
            return None;
        }
        // Flag 2: item 0 is the stream's info, not a data item.
        let has_info = flags & 2 == 2;
        if has_info && n == 0 {
            return None;
        }
        self.items.reserve(n);
        for i in 0..n {
            let len = u32::from_le_bytes(p.get(at..at + 4)?.try_into().ok()?) as usize;
            at += 4;
            let end = at.checked_add(len)?;
            if end > p.len() {
                return None;
            }
            if has_info && i == 0 {
                self.info = Some((at, end));
            } else {
                self.items.push((at, end));
            }
            at = end;
        }
        if at != p.len() {
            return None;
        }
        self.kind = Some(kind);
        self.seq = seq;
        Some(())
    }
}

/// Counters of what recovery found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Damage {
    /// Torn tails truncated (one per damaged segment end).
    pub torn_tails: u64,
    /// Corrupt stretches skipped in the middle of a segment.
    pub corrupt_stretches: u64,
    /// Bytes removed or skipped.
    pub bytes: u64,
}

impl Damage {
    /// Adds another count.
    pub fn add(&mut self, o: Damage) {
        self.torn_tails += o.torn_tails;
        self.corrupt_stretches += o.corrupt_stretches;
        self.bytes += o.bytes;
    }
    /// Nothing found.
    pub fn is_clean(&self) -> bool {
        *self == Damage::default()
    }
}

/// The result of reading at one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A record was decoded; the next one starts at `next`.
    Record {
        /// Offset just past the record.
        next: u64,
    },
    /// No bytes left before `end`.
    End,
    /// Damaged bytes up to `resume`, where a valid record starts.
    Corrupt {
        /// Offset of the next valid record.
        resume: u64,
    },
    /// Damaged bytes up to `end` and no valid record after them: a torn tail.
    Torn,
}

/// Reads the record at `off` (reading no byte at or past `end`).
pub fn read_at(file: &File, off: u64, end: u64, rec: &mut Record) -> io::Result<Read> {
    if off >= end {
        return Ok(Read::End);
    }
    if let Some(next) = try_record(file, off, end, rec)? {
        return Ok(Read::Record { next });
    }
    // Damaged: look for the next place a whole valid record starts.
    let mut rest = vec![0u8; (end - off) as usize];
    file.read_exact_at(&mut rest, off)?;
    for i in 1..rest.len() {
        if let Some(len) = plausible(&rest[i..]) {
            let body = &rest[i + 8..i + 8 + len];
            let crc = u32::from_le_bytes(rest[i + 4..i + 8].try_into().unwrap_or_default());
            if crc32fast::hash(body) != crc {
                continue;
            }
            rec.payload.clear();
            rec.payload.extend_from_slice(body);
            if rec.decode().is_some() {
                return Ok(Read::Corrupt {
                    resume: off + i as u64,
                });
            }
        }
    }
    Ok(Read::Torn)
}

/// The payload length if `b` starts like a record (cheap checks before the CRC).
fn plausible(b: &[u8]) -> Option<usize> {
    if b.len() < RECORD_HEADER_LEN as usize + PAYLOAD_FIXED + 4 {
        return None;
    }
    let len = u32::from_le_bytes(b[0..4].try_into().ok()?) as usize;
    if len < PAYLOAD_FIXED + 4 || len as u64 > MAX_PAYLOAD || 8 + len > b.len() {
        return None;
    }
    let p = &b[8..];
    (Kind::from_u8(p[0]).is_some() && p[1] <= 1 && p[2] == 0 && p[3] == 0).then_some(len)
}

fn try_record(file: &File, off: u64, end: u64, rec: &mut Record) -> io::Result<Option<u64>> {
    if end - off < RECORD_HEADER_LEN {
        return Ok(None);
    }
    let mut head = [0u8; 8];
    file.read_exact_at(&mut head, off)?;
    let len = u32::from_le_bytes(head[0..4].try_into().unwrap_or_default()) as u64;
    let crc = u32::from_le_bytes(head[4..8].try_into().unwrap_or_default());
    if len > MAX_PAYLOAD || off + RECORD_HEADER_LEN + len > end {
        return Ok(None);
    }
    rec.payload.clear();
    rec.payload.resize(len as usize, 0);
    file.read_exact_at(&mut rec.payload, off + RECORD_HEADER_LEN)?;
    let ok = crc32fast::hash(&rec.payload) == crc && rec.decode().is_some();
    Ok(ok.then_some(off + RECORD_HEADER_LEN + len))
}

fn segment_header(id: &SessionId) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&id.run.to_le_bytes());
    h[20..24].copy_from_slice(&id.pid.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The file name of segment `n`.
pub fn segment_name(n: u32) -> String {
    format!("{n:08}.seg")
}

/// The segment numbers present in a session folder, ascending.
pub fn segments(session_dir: &Path) -> io::Result<Vec<u32>> {
    let mut v = Vec::new();
    for e in fs::read_dir(session_dir)? {
        let name = e?.file_name();
        if let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_suffix(".seg"))
            .and_then(|s| s.parse::<u32>().ok())
        {
            v.push(n);
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// The sessions in a spool folder, oldest first.
pub fn sessions(spool_dir: &Path) -> io::Result<Vec<(SessionId, PathBuf)>> {
    let mut v = Vec::new();
    let rd = match fs::read_dir(spool_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(v),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        if let Some(id) = e.file_name().to_str().and_then(SessionId::parse)
            && e.file_type()?.is_dir()
        {
            v.push((id, e.path()));
        }
    }
    v.sort_by_key(|(id, _)| (id.created_ms, id.run, id.pid));
    Ok(v)
}

/// Takes the session's lock without waiting: `None` when a live process holds it.
pub fn try_lock(session_dir: &Path) -> io::Result<Option<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(session_dir.join("lock"))?;
    // `flock(LOCK_EX | LOCK_NB)` (std's lock on Linux), held for the lifetime of `f`.
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    crate::__fault::sync_all(&File::open(dir)?)
}

/// Appends records to the newest segment of one session. Used by one thread
/// (the collector); a sender reads the same files through its own handles.
#[derive(Debug)]
pub struct SpoolWriter {
    dir: PathBuf,
    id: SessionId,
    seg: u32,
    file: File,
    len: u64,
    segment_limit: u64,
    next_seq: u64,
    /// `session.json`, repeated at the start of every segment.
    descriptor: Vec<u8>,
    buf: Vec<u8>,
    dir_dirty: bool,
    /// A failed append left bytes past `len` that could not be cut yet.
    torn: bool,
}

/// What an append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The record's sequence number.
    pub seq: u64,
    /// Where the record ends (what a reader may now read up to).
    pub end: Pos,
    /// Bytes written (header included), plus a new segment's header and
    /// session record if one was started.
    pub bytes: u64,
}

impl SpoolWriter {
    /// Creates a new session folder under `spool_dir`, locked, with its
    /// descriptor (`session.json`, and a copy in each segment) and first
    /// segment. Returns the writer and the lock (keep it while anyone uses
    /// the session).
    pub fn create(
        spool_dir: &Path,
        id: SessionId,
        descriptor: &[u8],
        segment_limit: u64,
    ) -> io::Result<(SpoolWriter, File)> {
        fs::create_dir_all(spool_dir)?;
        // Built under a name no reader lists, locked, then renamed into place:
        // another process never sees (or adopts) a session before it is locked.
        let building = spool_dir.join(format!(".{}.new", id.dir_name()));
        fs::create_dir(&building)?;
        let lock =
            try_lock(&building)?.ok_or_else(|| io::Error::other("new session already locked"))?;
        {
            let mut f = File::create(building.join(SESSION_FILE))?;
            f.write_all(descriptor)?;
            crate::__fault::sync_all(&f)?;
        }
        let mut buf = Vec::with_capacity(64 * 1024);
        let (_, len) = Self::new_segment(&building, &id, 1, descriptor, 0, &mut buf)?;
        sync_dir(&building)?;
        let dir = spool_dir.join(id.dir_name());
        fs::rename(&building, &dir)?;
        sync_dir(spool_dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(segment_name(1)))?;
        Ok((
            SpoolWriter {
                dir,
                id,
                seg: 1,
                file,
                len,
                segment_limit: segment_limit.max(len + 1),
                next_seq: 0,
                descriptor: descriptor.to_vec(),
                buf,
                dir_dirty: false,
                torn: false,
            },
            lock,
        ))
    }

    /// Segment `n` with its header and session record (one write); returns
    /// it and its length.
    fn new_segment(
        dir: &Path,
        id: &SessionId,
        n: u32,
        descriptor: &[u8],
        seq: u64,
        buf: &mut Vec<u8>,
    ) -> io::Result<(File, u64)> {
        buf.clear();
        buf.extend_from_slice(&segment_header(id));
        encode_record(buf, Kind::Session, seq, None, None, [descriptor])?;
        // Truncating: a leftover of a failed earlier try (disk full) is reused.
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(dir.join(segment_name(n)))?;
        file.write_all(buf)?;
        Ok((file, buf.len() as u64))
    }

    /// The session folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Where the data written so far ends.
    pub fn end(&self) -> Pos {
        Pos {
            seg: self.seg,
            off: self.len,
        }
    }

    /// Appends one record with one `write`. On error nothing is kept (the
    /// segment is cut back) and the caller still owns the batch. A full disk,
    /// `EIO` or a read-only folder never leaves a torn record behind a later
    /// one: when the cut itself fails, it is retried before the next append,
    /// which fails until it succeeds (readers stop at the published end, and
    /// the checksummed framing catches what a crash leaves).
    pub fn append<'a, I>(
        &mut self,
        kind: Kind,
        stream: Option<&str>,
        items: I,
    ) -> io::Result<Appended>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        self.append_with(kind, stream, None, items)
    }

    /// As [`append`](Self::append), with the stream's `info` object ahead
    /// of the items (see [`Record::info`]).
    pub fn append_with<'a, I>(
        &mut self,
        kind: Kind,
        stream: Option<&str>,
        info: Option<&'a [u8]>,
        items: I,
    ) -> io::Result<Appended>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        if self.torn {
            self.file.set_len(self.len)?;
            self.torn = false;
        }
        let mut extra = 0;
        if self.len >= self.segment_limit {
            let (file, len) = Self::new_segment(
                &self.dir,
                &self.id,
                self.seg + 1,
                &self.descriptor,
                self.next_seq,
                &mut self.buf,
            )?;
            // The old segment is complete; sync() only fsyncs the newest one,
            // so make this one durable now.
            crate::__fault::sync_data(&self.file)?;
            self.seg += 1;
            self.file = file;
            self.len = len;
            self.dir_dirty = true;
            extra = len;
        }
        let seq = self.next_seq;
        let b = &mut self.buf;
        b.clear();
        encode_record(b, kind, seq, stream, info, items)?;
        if let Err(e) = self.file.write_all_at(b, self.len) {
            // Cut back a partial write so the next record starts clean.
            self.torn = self.file.set_len(self.len).is_err();
            return Err(e);
        }
        let written = b.len() as u64;
        self.len += written;
        self.next_seq += 1;
        Ok(Appended {
            seq,
            end: self.end(),
            bytes: written + extra,
        })
    }

    /// Makes everything appended so far durable (fsync of the segment, and of
    /// the folder when a segment was created since the last call).
    pub fn sync(&mut self) -> io::Result<()> {
        crate::__fault::sync_data(&self.file)?;
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }
}

/// Appends one framed record to `b`.
fn encode_record<'a, I>(
    b: &mut Vec<u8>,
    kind: Kind,
    seq: u64,
    stream: Option<&str>,
    info: Option<&'a [u8]>,
    items: I,
) -> io::Result<()>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let start = b.len();
    b.extend_from_slice(&[0u8; 8]);
    let stream_bytes = stream.map(str::as_bytes).unwrap_or_default();
    let slen = stream_bytes.len().min(u16::MAX as usize);
    b.push(kind as u8);
    b.push(stream.is_some() as u8 | (info.is_some() as u8) << 1);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&(slen as u16).to_le_bytes());
    b.extend_from_slice(&stream_bytes[..slen]);
    let count_at = b.len();
    b.extend_from_slice(&[0u8; 4]);
    let mut n: u32 = 0;
    for item in info.into_iter().chain(items) {
        b.extend_from_slice(&(item.len() as u32).to_le_bytes());
        b.extend_from_slice(item);
        n += 1;
    }
    b[count_at..count_at + 4].copy_from_slice(&n.to_le_bytes());
    let payload_len = b.len() - start - 8;
    if payload_len as u64 > MAX_PAYLOAD {
        b.truncate(start);
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "batch of {payload_len} bytes exceeds the spool's record limit of {MAX_PAYLOAD}"
            ),
        ));
    }
    let crc = crc32fast::hash(&b[start + 8..]);
    b[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    b[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The first intact copy of the session descriptor in a session's segments
/// (each starts with one), oldest segment first; `None` when no segment has
/// one (all damaged, or format 1).
pub fn descriptor_copy(session_dir: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut rec = Record::default();
    for n in segments(session_dir)? {
        let file = match File::open(session_dir.join(segment_name(n))) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // acknowledged meanwhile
            Err(e) => return Err(e),
        };
        let end = file.metadata()?.len();
        if try_record(&file, SEGMENT_HEADER_LEN, end, &mut rec)?.is_some()
            && rec.kind() == Kind::Session
            && rec.len() == 1
        {
            return Ok(Some(rec.item(0).to_vec()));
        }
    }
    Ok(None)
}

/// Replaces a session's `session.json` atomically (a temp file, fsynced, then
/// renamed over it, and the folder fsynced): a crash leaves the old file or
/// the new one, never a torn one.
pub fn write_descriptor(session_dir: &Path, descriptor: &[u8]) -> io::Result<()> {
    let tmp = session_dir.join(format!(".{SESSION_FILE}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(descriptor)?;
        crate::__fault::sync_all(&f)?;
    }
    fs::rename(&tmp, session_dir.join(SESSION_FILE))?;
    sync_dir(session_dir)
}

/// The sender's cursor, stored in two checksummed 32-byte slots written in
/// turn, so a torn write loses at most the newest step.
#[derive(Debug)]
pub struct AckFile {
    file: File,
    generation: u64,
}

impl AckFile {
    /// Opens (or creates) the cursor of a session; a missing or unreadable
    /// cursor is the start of the session.
    pub fn open(session_dir: &Path) -> io::Result<(AckFile, Cursor)> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(session_dir.join("ack"))?;
        let mut best: Option<(u64, Cursor)> = None;
        for slot in 0..2u64 {
            let mut s = [0u8; 32];
            if file.read_exact_at(&mut s, slot * 32).is_err() {
                continue;
            }
            let crc = u32::from_le_bytes(s[24..28].try_into().unwrap_or_default());
            if crc32fast::hash(&s[..24]) != crc {
                continue;
            }
            let generation = u64::from_le_bytes(s[0..8].try_into().unwrap_or_default());
            let c = Cursor {
                pos: Pos {
                    seg: u32::from_le_bytes(s[8..12].try_into().unwrap_or_default()),
                    off: u64::from_le_bytes(s[16..24].try_into().unwrap_or_default()),
                },
                done_items: u32::from_le_bytes(s[12..16].try_into().unwrap_or_default()),
            };
            if best.is_none_or(|(g, _)| generation > g) {
                best = Some((generation, c));
            }
        }
        let (generation, cursor) = best.unwrap_or((0, Cursor::default()));
        Ok((AckFile { file, generation }, cursor))
    }

    /// Stores a new cursor (no fsync; see the module docs).
    pub fn store(&mut self, c: Cursor) -> io::Result<()> {
        self.generation += 1;
        let mut s = [0u8; 32];
        s[0..8].copy_from_slice(&self.generation.to_le_bytes());
        s[8..12].copy_from_slice(&c.pos.seg.to_le_bytes());
        s[12..16].copy_from_slice(&c.done_items.to_le_bytes());
        s[16..24].copy_from_slice(&c.pos.off.to_le_bytes());
        let crc = crc32fast::hash(&s[..24]);
        s[24..28].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all_at(&s, (self.generation % 2) * 32)
    }

    /// fsyncs the cursor.
    pub fn sync(&self) -> io::Result<()> {
        crate::__fault::sync_data(&self.file)
    }
}

/// Reads one session in order from a cursor, across segments, never past a
/// limit (the writer's published end for a live session).
#[derive(Debug)]
pub struct SessionReader {
    dir: PathBuf,
    seg: u32,
    file: Option<File>,
    file_len: u64,
    off: u64,
    damage: Damage,
    /// Truncate torn tails (only for sessions no writer appends to).
    pub repair: bool,
}

impl SessionReader {
    /// A reader of the session in `dir` starting at `from` (a record start).
    pub fn new(dir: &Path, from: Pos) -> SessionReader {
        SessionReader {
            dir: dir.to_owned(),
            seg: from.seg.max(1),
            file: None,
            file_len: 0,
            off: if from.seg == 0 {
                SEGMENT_HEADER_LEN
            } else {
                from.off.max(SEGMENT_HEADER_LEN)
            },
            damage: Damage::default(),
            repair: false,
        }
    }

    /// Where the next read starts.
    pub fn pos(&self) -> Pos {
        Pos {
            seg: self.seg,
            off: self.off,
        }
    }

    /// Damage found so far.
    pub fn damage(&self) -> Damage {
        self.damage
    }

    fn open_seg(&mut self) -> io::Result<bool> {
        if self.file.is_some() {
            return Ok(true);
        }
        match File::open(self.dir.join(segment_name(self.seg))) {
            Ok(f) => {
                self.file_len = f.metadata()?.len();
                self.file = Some(f);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The next segment number present after the current one, if any.
    fn next_segment(&self) -> io::Result<Option<u32>> {
        Ok(segments(&self.dir)?.into_iter().find(|&n| n > self.seg))
    }

    /// Reads the next record into `rec`, returning the position just past it,
    /// or `None` when nothing is left before `limit` (`None` = the whole
    /// session as it is on disk). Damage is skipped and counted, and so are
    /// the segments' session records.
    pub fn next(&mut self, rec: &mut Record, limit: Option<Pos>) -> io::Result<Option<Pos>> {
        loop {
            if let Some(l) = limit
                && self.pos() >= l
            {
                return Ok(None);
            }
            if !self.open_seg()? {
                // The segment is gone (acknowledged and deleted) or not created yet.
                match self.next_segment()? {
                    Some(n) if limit.is_none_or(|l| n <= l.seg) => {
                        self.seg = n;
                        self.off = SEGMENT_HEADER_LEN;
                        continue;
                    }
                    _ => return Ok(None),
                }
            }
            let end = match limit {
                Some(l) if l.seg == self.seg => l.off,
                _ => {
                    // A complete segment (or a finished session): its length is final,
                    // but refresh it in case it was cut by a repair.
                    if let Some(f) = &self.file {
                        self.file_len = f.metadata()?.len();
                    }
                    self.file_len
                }
            };
            let file = self
                .file
                .as_ref()
                .ok_or_else(|| io::Error::other("segment not open"))?;
            match read_at(file, self.off, end, rec)? {
                Read::Record { next } if rec.kind() == Kind::Session => self.off = next,
                Read::Record { next } => {
                    self.off = next;
                    return Ok(Some(self.pos()));
                }
                Read::Corrupt { resume } => {
                    self.damage.corrupt_stretches += 1;
                    self.damage.bytes += resume - self.off;
                    self.off = resume;
                }
                Read::Torn => {
                    self.damage.torn_tails += 1;
                    self.damage.bytes += end - self.off;
                    if self.repair {
                        let f = OpenOptions::new()
                            .write(true)
                            .open(self.dir.join(segment_name(self.seg)))?;
                        f.set_len(self.off)?;
                        crate::__fault::sync_all(&f)?;
                        self.file_len = self.off;
                    }
                    if !self.advance(limit)? {
                        return Ok(None);
                    }
                }
                Read::End => {
                    if !self.advance(limit)? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Moves to the next segment when the current one is complete.
    fn advance(&mut self, limit: Option<Pos>) -> io::Result<bool> {
        if let Some(l) = limit
            && l.seg <= self.seg
        {
            return Ok(false);
        }
        match self.next_segment()? {
            Some(n) if limit.is_none_or(|l| n <= l.seg) => {
                self.seg = n;
                self.off = SEGMENT_HEADER_LEN;
                self.file = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Deletes the segments before the current one (all acknowledged).
    /// Returns the bytes freed.
    pub fn delete_before(&self, seg: u32) -> io::Result<u64> {
        let mut freed = 0;
        for n in segments(&self.dir)? {
            if n >= seg {
                break;
            }
            let p = self.dir.join(segment_name(n));
            freed += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(freed)
    }
}

/// Bytes held by a session's segments and file blobs.
pub fn session_bytes(session_dir: &Path) -> u64 {
    let segs: u64 = segments(session_dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| fs::metadata(session_dir.join(segment_name(n))).ok())
        .map(|m| m.len())
        .sum();
    let blobs: u64 = fs::read_dir(session_dir.join(FILES_DIR))
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    segs + blobs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_some(dir: &Path, n: usize, limit: u64) -> (SpoolWriter, File) {
        let (mut w, lock) = SpoolWriter::create(dir, SessionId::new(), b"{}", limit).unwrap();
        for i in 0..n {
            let item = format!("{{\"i\":{i}}}");
            w.append(Kind::Metrics, Some("train"), [item.as_bytes()])
                .unwrap();
        }
        (w, lock)
    }

    fn read_all(dir: &Path, repair: bool) -> (Vec<u64>, Damage) {
        let mut r = SessionReader::new(dir, Pos::default());
        r.repair = repair;
        let mut rec = Record::default();
        let mut seqs = Vec::new();
        while r.next(&mut rec, None).unwrap().is_some() {
            seqs.push(rec.seq());
        }
        (seqs, r.damage())
    }

    #[test]
    fn round_trip_across_segments() {
        let t = tempfile::tempdir().unwrap();
        let (w, _l) = write_some(t.path(), 100, 300);
        assert!(w.end().seg > 3);
        let (seqs, d) = read_all(w.dir(), false);
        assert_eq!(seqs, (0..100).collect::<Vec<_>>());
        assert!(d.is_clean());
    }

    #[test]
    fn record_fields_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let (mut w, _l) = SpoolWriter::create(t.path(), SessionId::new(), b"{}", 1 << 20).unwrap();
        w.append(Kind::Metrics, None, [&b"{\"a\":1}"[..], b"{}"])
            .unwrap();
        w.append(Kind::Tracks, Some("robot/pose"), std::iter::empty())
            .unwrap();
        w.append_with(
            Kind::Metrics,
            Some("m"),
            Some(b"{\"tags\":[\"t\"]}"),
            [&b"{}"[..]],
        )
        .unwrap();
        let mut r = SessionReader::new(w.dir(), Pos::default());
        let mut rec = Record::default();
        r.next(&mut rec, None).unwrap().unwrap();
        assert_eq!(
            (rec.kind(), rec.stream(), rec.len()),
            (Kind::Metrics, None, 2)
        );
        assert_eq!(rec.item(0), b"{\"a\":1}");
        r.next(&mut rec, None).unwrap().unwrap();
        assert_eq!(
            (rec.kind(), rec.stream(), rec.len()),
            (Kind::Tracks, Some("robot/pose"), 0)
        );
        assert_eq!(rec.info(), None);
        r.next(&mut rec, None).unwrap().unwrap();
        assert_eq!((rec.stream(), rec.len()), (Some("m"), 1));
        assert_eq!(rec.info(), Some(&b"{\"tags\":[\"t\"]}"[..]));
        assert_eq!(rec.item(0), b"{}");
        assert!(r.next(&mut rec, None).unwrap().is_none());
    }

    #[test]
    fn torn_tail_is_truncated_and_counted() {
        let t = tempfile::tempdir().unwrap();
        let (w, _l) = write_some(t.path(), 10, 1 << 20);
        let seg = w.dir().join(segment_name(1));
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (seqs, d) = read_all(w.dir(), true);
        assert_eq!(seqs, (0..9).collect::<Vec<_>>());
        assert_eq!(d.torn_tails, 1);
        assert!(fs::metadata(&seg).unwrap().len() < len - 5);
        let (seqs, d) = read_all(w.dir(), true);
        assert_eq!((seqs.len(), d.is_clean()), (9, true));
    }

    #[test]
    fn corrupt_middle_is_skipped_and_the_rest_recovered() {
        let t = tempfile::tempdir().unwrap();
        let (w, _l) = write_some(t.path(), 10, 1 << 20);
        let seg = w.dir().join(segment_name(1));
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .unwrap();
        // Flip a byte inside the 4th record's payload.
        let mut r = SessionReader::new(w.dir(), Pos::default());
        let mut rec = Record::default();
        let mut starts = vec![SEGMENT_HEADER_LEN];
        while let Some(p) = r.next(&mut rec, None).unwrap() {
            starts.push(p.off);
        }
        let at = starts[3] + 20;
        let mut b = [0u8];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
        let (seqs, d) = read_all(w.dir(), true);
        assert_eq!(seqs, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
        assert_eq!((d.corrupt_stretches, d.torn_tails), (1, 0));
    }

    #[test]
    fn random_bytes_never_panic() {
        let t = tempfile::tempdir().unwrap();
        let (w, _l) = write_some(t.path(), 20, 1 << 20);
        let seg = w.dir().join(segment_name(1));
        let good = fs::read(&seg).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for round in 0..300 {
            let mut bytes = good.clone();
            match round % 3 {
                0 => bytes.truncate(rng.usize(0..bytes.len())),
                1 => {
                    for _ in 0..rng.usize(1..8) {
                        let i = rng.usize(0..bytes.len());
                        bytes[i] ^= 1 << rng.u8(0..8);
                    }
                }
                _ => {
                    let i = rng.usize(32..bytes.len());
                    for b in &mut bytes[i..] {
                        *b = rng.u8(..);
                    }
                }
            }
            fs::write(&seg, &bytes).unwrap();
            let (seqs, _) = read_all(w.dir(), false);
            assert!(seqs.windows(2).all(|p| p[0] < p[1]));
        }
    }

    #[test]
    fn every_segment_holds_the_descriptor() {
        let t = tempfile::tempdir().unwrap();
        let desc = br#"{"prefix":"o/p/e"}"#;
        let (mut w, _l) = SpoolWriter::create(t.path(), SessionId::new(), desc, 300).unwrap();
        for i in 0..40 {
            let item = format!("{{\"i\":{i}}}");
            w.append(Kind::Metrics, None, [item.as_bytes()]).unwrap();
        }
        let dir = w.dir().to_owned();
        let segs = segments(&dir).unwrap();
        assert!(segs.len() > 4);
        // Readers skip the copies: the records and their numbers are unchanged.
        assert_eq!(read_all(&dir, false).0, (0..40).collect::<Vec<_>>());
        fs::remove_file(dir.join(SESSION_FILE)).unwrap();
        assert_eq!(descriptor_copy(&dir).unwrap().as_deref(), Some(&desc[..]));
        // The oldest segments acknowledged and deleted, and the next copy
        // damaged: a later segment's copy is found.
        fs::remove_file(dir.join(segment_name(segs[0]))).unwrap();
        let f = OpenOptions::new()
            .write(true)
            .open(dir.join(segment_name(segs[1])))
            .unwrap();
        f.write_all_at(b"#", SEGMENT_HEADER_LEN + 30).unwrap();
        assert_eq!(descriptor_copy(&dir).unwrap().as_deref(), Some(&desc[..]));
        write_descriptor(&dir, desc).unwrap();
        assert_eq!(fs::read(dir.join(SESSION_FILE)).unwrap(), desc);
        assert!(!dir.join(format!(".{SESSION_FILE}.tmp")).exists());
        for &n in &segs[2..] {
            let f = OpenOptions::new()
                .write(true)
                .open(dir.join(segment_name(n)))
                .unwrap();
            f.write_all_at(b"#", SEGMENT_HEADER_LEN + 30).unwrap();
        }
        assert_eq!(descriptor_copy(&dir).unwrap(), None);
    }

    #[test]
    fn ack_cursor_survives_a_torn_slot() {
        let t = tempfile::tempdir().unwrap();
        let (mut a, c) = AckFile::open(t.path()).unwrap();
        assert_eq!(c, Cursor::default());
        let c1 = Cursor {
            pos: Pos { seg: 1, off: 100 },
            done_items: 0,
        };
        let c2 = Cursor {
            pos: Pos { seg: 2, off: 40 },
            done_items: 7,
        };
        a.store(c1).unwrap();
        a.store(c2).unwrap();
        assert_eq!(AckFile::open(t.path()).unwrap().1, c2);
        // Tear the newest slot: the previous cursor comes back.
        let f = OpenOptions::new()
            .write(true)
            .open(t.path().join("ack"))
            .unwrap();
        f.write_all_at(&[0xff; 4], 0).unwrap();
        assert_eq!(AckFile::open(t.path()).unwrap().1, c1);
    }

    #[test]
    fn session_names_round_trip_and_lock_excludes() {
        let id = SessionId::new();
        assert_eq!(SessionId::parse(&id.dir_name()), Some(id));
        let t = tempfile::tempdir().unwrap();
        let (w, lock) = write_some(t.path(), 1, 1 << 20);
        assert!(try_lock(w.dir()).unwrap().is_none());
        drop(lock);
        assert!(try_lock(w.dir()).unwrap().is_some());
        assert_eq!(sessions(t.path()).unwrap().len(), 1);
    }
}
