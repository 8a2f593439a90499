//! Files: content saved by a run (`save_json`, `save_text`, `save_blob`,
//! `save_image`) or uploaded from the user's disk (`upload`), stored by a pool
//! of upload workers in the ML-Dash layout:
//!
//! ```text
//!  save_*(..) -> temp file in <experiment>/files/.pending/ (the engine's work area)
//!            -> FILE record through the ring -> collector -> job queue
//!  worker:   stream it (sha256 on the way) to files/<path>/<id>/<filename>,
//!            then replace the entry in files/.files_metadata.json under the
//!            SDK's flock, atomically (temp + rename); remove the temp file.
//! ```
//!
//! A user's own file is only ever read: `upload` copies it in 64 KiB chunks
//! (never whole into memory) and never moves, changes or deletes it.
//! Saving the same path + filename again replaces the entry (as the SDK does);
//! when two saves race, the later call wins, whichever worker finishes first.
//! A save hashes its content while writing the temp file, so it returns the
//! entry the store will hold ([`FileInfo`]); the worker only moves it.
//!
//! The read side (`list`, `exists`, `read_text`, `download`, `delete`) reads
//! `.files_metadata.json` as the SDK's `LocalStorage` does; `delete` is its
//! soft delete (`deletedAt` set under the same lock, the content kept).
//!
//! It depends on `encode` (timestamps), `error` and the store's JSON helpers.

mod glob;
mod image;
mod pool;

pub(crate) use glob::fnmatch;
pub use image::Image;
pub(crate) use pool::{FileJob, Pool};

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::encode;
use crate::error::{Error, Result};
use crate::sink::local::{read_json, with_lock, write_json_atomic};

/// What travels through the ring for one file (JSON in the record's message):
/// its store entry, where the content is, and the call order of the save.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct FileRecord {
    #[serde(flatten)]
    pub(crate) entry: FileEntry,
    /// The engine's temp file, or the user's file for `upload`.
    pub(crate) source: String,
    /// The temp file's size and sha256 (hashed while it was written); none
    /// for the user's file, which the worker hashes while copying it.
    pub(crate) written: Option<(u64, String)>,
    pub(crate) seq: u64,
}

impl FileRecord {
    pub(crate) fn into_job(self) -> FileJob {
        let path = PathBuf::from(self.source);
        let source = match self.written {
            Some((size, checksum)) => Source::Temp {
                path,
                size,
                checksum,
            },
            None => Source::User(path),
        };
        FileJob {
            entry: self.entry,
            source,
            seq: self.seq,
        }
    }
}

/// Where the content of a file job comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A temp file the engine wrote and owns (moved into place, or removed),
    /// with the size and sha256 of what it wrote.
    Temp {
        path: PathBuf,
        size: u64,
        checksum: String,
    },
    /// The user's file: read only.
    User(PathBuf),
}

/// Metadata of one stored file (one entry of `.files_metadata.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileEntry {
    pub(crate) id: String,
    /// Logical folder with a leading `/` (`/configs`, `/`).
    pub(crate) path: String,
    pub(crate) filename: String,
    pub(crate) description: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) metadata: Option<Json>,
    pub(crate) content_type: String,
    /// When the save was called (ISO 8601): the entry's `uploadedAt`.
    pub(crate) uploaded_at: String,
}

impl FileEntry {
    /// The store's entry for this file.
    pub(crate) fn info(
        &self,
        experiment_id: &str,
        size: u64,
        checksum: Option<String>,
    ) -> FileInfo {
        FileInfo {
            id: self.id.clone(),
            experiment_id: experiment_id.to_string(),
            path: self.path.clone(),
            filename: self.filename.clone(),
            description: self.description.clone(),
            tags: self.tags.clone(),
            bindrs: Vec::new(),
            content_type: self.content_type.clone(),
            size_bytes: size,
            checksum,
            metadata: self.metadata.clone(),
            uploaded_at: self.uploaded_at.clone(),
            updated_at: self.uploaded_at.clone(),
            deleted_at: None,
        }
    }
}

/// One file of an experiment, as the Python SDK describes it: one entry of
/// `files/.files_metadata.json`, the dict that the SDK's saves and
/// `files.list()` return. Serialized, its keys are the SDK's (`id`,
/// `experimentId`, `path`, `filename`, `description`, `tags`, `bindrs`,
/// `contentType`, `sizeBytes`, `checksum`, `metadata`, `uploadedAt`,
/// `updatedAt`, `deletedAt`), in that order.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # let run = ml_dash::Experiment::new("a/b/c").dash_root(root.path()).run()?;
/// let info = run.files("notes").save_text("a.txt", "hi")?;
/// assert_eq!((info.path.as_str(), info.filename.as_str(), info.size_bytes), ("/notes", "a.txt", 2));
/// assert_eq!(serde_json::to_value(&info).unwrap()["sizeBytes"], 2);
/// assert_eq!(run.files("notes").list()?, vec![info]);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
#[non_exhaustive]
pub struct FileInfo {
    /// The file's id (decimal digits, made as the SDK makes them).
    pub id: String,
    /// `"<project>/<prefix>"`, the SDK's id of a local experiment.
    pub experiment_id: String,
    /// The folder, with a leading `/` (`/configs`; `/` is the root).
    pub path: String,
    /// The file's name.
    pub filename: String,
    /// The description given when it was saved.
    pub description: Option<String>,
    /// The tags given when it was saved.
    pub tags: Vec<String>,
    /// The SDK's bindrs (this engine sets none).
    pub bindrs: Vec<String>,
    /// The MIME type, from the file name (`application/octet-stream` when unknown).
    pub content_type: String,
    /// The content's size in bytes.
    pub size_bytes: u64,
    /// The content's SHA-256, hex. `None` only in what `upload` returns: the
    /// worker hashes the user's file while it copies it (the stored entry has it).
    pub checksum: Option<String>,
    /// The metadata given when it was saved.
    pub metadata: Option<Json>,
    /// When it was saved (ISO 8601, UTC).
    pub uploaded_at: String,
    /// When its entry last changed.
    pub updated_at: String,
    /// When it was deleted (`delete` keeps the entry and the content, as the SDK does).
    pub deleted_at: Option<String>,
}

impl FileInfo {
    /// The path from the experiment's files root, without a leading `/`
    /// (`configs/config.json`): what a glob pattern is matched against.
    fn full_path(&self) -> String {
        let full = format!("{}/{}", self.path.trim_end_matches('/'), self.filename);
        full.trim_start_matches('/').to_string()
    }

    /// Whether it is the file `filename` of the logical folder `path` (a
    /// trailing `/` of either folder aside, as the SDK may write `/a/`).
    pub(crate) fn is_at(&self, path: &str, filename: &str) -> bool {
        self.filename == filename && self.path.trim_end_matches('/') == path.trim_end_matches('/')
    }

    /// Whether it is in `folder` (a logical folder, `/` for the root) or below.
    pub(crate) fn is_under(&self, folder: &str) -> bool {
        folder == "/"
            || self
                .path
                .strip_prefix(folder)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Whether its name or its full path matches `pattern`, as the SDK's
    /// `files.list(pattern)` matches (a leading `/` of the pattern ignored).
    pub(crate) fn matches(&self, pattern: &str) -> bool {
        let pattern = pattern.trim_start_matches('/');
        fnmatch(&self.filename, pattern) || fnmatch(&self.full_path(), pattern)
    }
}

/// A new file id, shaped as the Python SDK makes them (`(ms << 12) | random
/// 12 bits`), and unique in this process: a burst of saves within one
/// millisecond would collide on 12 random bits, so each id is also above the
/// last one handed out.
pub(crate) fn new_id() -> String {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let ms = encode::now_nanos() / 1_000_000;
    let candidate = (ms << 12) | u64::from(fastrand::u16(..4096));
    // Relaxed: only the atomicity of the update matters (a unique number).
    let prev = LAST
        .fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |last| Some(candidate.max(last + 1)),
        )
        .unwrap_or(0);
    candidate.max(prev + 1).to_string()
}

/// The MIME type of a file name (`application/octet-stream` when unknown).
pub(crate) fn content_type(filename: &str) -> String {
    mime_guess::from_path(filename)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string()
}

/// Longest file or folder name the store can create, in bytes (`NAME_MAX`
/// of Linux and macOS file systems): for file folders here, stream and
/// prefix segments in `api::names`.
pub(crate) const MAX_SEGMENT_BYTES: usize = 255;
/// Longest file name, in bytes: an upload is copied to `.<name>.part` first.
const MAX_FILENAME_BYTES: usize = MAX_SEGMENT_BYTES - ".".len() - ".part".len();

/// Splits `dir/name` into the logical folder (`/dir`) and the file name, and
/// refuses anything that could leave the experiment's `files/` folder, that
/// the file system cannot hold, or that collides with the store's own files
/// (`files/.pending/`, `files/.files_metadata.json`, ...: every folder that
/// begins with `.`).
pub(crate) fn logical_path(dir: &str, name: &str) -> Result<(String, String)> {
    let joined = match (dir.trim_matches('/'), name) {
        ("", n) => n.to_string(),
        (d, n) => format!("{d}/{n}"),
    };
    let bad = |reason| Error::InvalidName {
        name: joined.clone(),
        reason,
    };
    if name.is_empty() || name.ends_with('/') {
        return Err(bad("a file needs a name"));
    }
    if name.starts_with('/') || dir.starts_with("//") {
        return Err(bad("a leading '/' would make it an absolute path"));
    }
    if joined.chars().any(char::is_control) || joined.contains('\\') {
        return Err(bad("control characters and backslashes are not allowed"));
    }
    let segs: Vec<&str> = joined.split('/').collect();
    if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(bad(
            "empty, '.' and '..' segments would leave the experiment folder",
        ));
    }
    let (folder, file) = segs.split_at(segs.len() - 1);
    if folder.iter().any(|s| s.starts_with('.')) {
        return Err(bad(
            "a folder may not begin with '.': the store keeps those names (.pending, .files_metadata.json) for its own files",
        ));
    }
    if folder.iter().any(|s| s.len() > MAX_SEGMENT_BYTES) {
        return Err(bad(
            "a folder name is over 255 bytes in UTF-8, longer than a file system allows",
        ));
    }
    if file[0].len() > MAX_FILENAME_BYTES {
        return Err(bad(
            "a file name may be at most 249 bytes in UTF-8 (the file system's 255, less the store's temp suffix)",
        ));
    }
    Ok((format!("/{}", folder.join("/")), file[0].to_string()))
}

/// Reads `src` in 64 KiB chunks, hashing it and copying it to `copy_to` when
/// given: (bytes, sha256 hex). Never holds the whole file in memory.
fn hash_stream(src: &Path, mut copy_to: Option<(&Path, File)>) -> Result<(u64, String)> {
    let mut input = File::open(src).map_err(|e| Error::io(src, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(|e| Error::io(src, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some((path, out)) = copy_to.as_mut() {
            out.write_all(&buf[..n]).map_err(|e| Error::io(*path, e))?;
        }
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
}

/// Streams `src` into `dst` (a new file): (bytes, sha256 hex).
fn copy_hashing(src: &Path, dst: &Path) -> Result<(u64, String)> {
    let out = File::create(dst).map_err(|e| Error::io(dst, e))?;
    hash_stream(src, Some((dst, out)))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

/// The size and sha256 hex of `content`, written nowhere (a save that a
/// rank skips still returns its `FileInfo`).
pub(crate) fn hash_only(
    content: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(u64, String)> {
    let mut out = Hashing {
        inner: std::io::sink(),
        hasher: Sha256::new(),
        size: 0,
    };
    content(&mut out).map_err(|e| Error::io("(a skipped save)", e))?;
    Ok((out.size, hex(&out.hasher.finalize())))
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The files part of one experiment's local store.
#[derive(Debug, Clone)]
pub(crate) struct FileStore {
    /// `<experiment>/files`
    dir: PathBuf,
    /// `"<project>/<prefix>"`, the SDK's `experimentId` in local mode.
    experiment_id: String,
    sync: bool,
    pub(crate) copies: Copies,
}

/// Where a run keeps its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Copies {
    /// The local store only.
    Local,
    /// The local store, and a copy sent to the server.
    Hybrid,
    /// The server only: `dir` is the work area, and a file's content there
    /// is deleted once it is sent.
    RemoteOnly,
}

impl FileStore {
    pub(crate) fn new(
        experiment_dir: &Path,
        prefix: &str,
        sync: bool,
        copies: Copies,
    ) -> FileStore {
        let project = prefix.split('/').nth(1).unwrap_or_default();
        FileStore {
            dir: experiment_dir.join("files"),
            experiment_id: format!("{project}/{prefix}"),
            sync,
            copies,
        }
    }

    pub(crate) fn experiment_id(&self) -> &str {
        &self.experiment_id
    }

    /// The engine's work area for temp files (inside the store, so a finished
    /// file is moved into place by a rename, not copied).
    pub(crate) fn pending_dir(&self) -> PathBuf {
        self.dir.join(".pending")
    }

    /// Writes `content` to a new temp file in the work area, hashing it on
    /// the way: (the temp file, bytes, sha256 hex).
    pub(crate) fn write_temp(
        &self,
        id: &str,
        content: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<(PathBuf, u64, String)> {
        let dir = self.pending_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join(id);
        // Never another's: two processes of one experiment may draw one id
        // (the SDK's 12 random bits per millisecond); the caller draws again.
        let f = File::create_new(&path).map_err(|e| Error::io(&path, e))?;
        let mut out = Hashing {
            inner: f,
            hasher: Sha256::new(),
            size: 0,
        };
        if let Err(e) = content(&mut out).and_then(|()| out.flush()) {
            let _ = fs::remove_file(&path);
            return Err(Error::io(&path, e));
        }
        Ok((path, out.size, hex(&out.hasher.finalize())))
    }

    /// Where a stored file's content is.
    pub(crate) fn content_path(&self, entry: &FileEntry) -> PathBuf {
        self.blob_dir(&entry.path, &entry.id).join(&entry.filename)
    }

    fn blob_dir(&self, path: &str, id: &str) -> PathBuf {
        let rel = path.trim_start_matches('/');
        let base = if rel.is_empty() {
            self.dir.clone()
        } else {
            self.dir.join(rel)
        };
        base.join(id)
    }

    /// Moves (temp) or copies (user file) one file's content into
    /// `files/<path>/<id>/<filename>`: (bytes, sha256). A user's file is
    /// hashed while it is copied; a temp file was hashed when it was written.
    pub(crate) fn store_content(
        &self,
        entry: &FileEntry,
        source: &Source,
    ) -> Result<(u64, String)> {
        let blob_dir = self.blob_dir(&entry.path, &entry.id);
        fs::create_dir_all(&blob_dir).map_err(|e| Error::io(&blob_dir, e))?;
        let dest = blob_dir.join(&entry.filename);
        let r = match source {
            Source::Temp {
                path,
                size,
                checksum,
            } => {
                fs::rename(path, &dest).map_err(|e| Error::io(&dest, e))?;
                (*size, checksum.clone())
            }
            Source::User(path) => {
                let part = blob_dir.join(format!(".{}.part", entry.filename));
                let r = copy_hashing(path, &part)?;
                fs::rename(&part, &dest).map_err(|e| Error::io(&dest, e))?;
                r
            }
        };
        if self.sync {
            File::open(&dest)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&dest, e))?;
        }
        Ok(r)
    }

    /// Removes a stored content folder (a save that a later one replaced).
    pub(crate) fn discard(&self, entry: &FileEntry) {
        let _ = fs::remove_dir_all(self.blob_dir(&entry.path, &entry.id));
    }

    fn meta_path(&self) -> PathBuf {
        self.dir.join(".files_metadata.json")
    }

    /// Runs `f` holding the SDK's lock on `.files_metadata.json`
    /// (`flock` on `.files_metadata.lock`).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        with_lock(&self.dir.join(".files_metadata.lock"), f)
    }

    /// The entries of `.files_metadata.json` as they are (none before the first).
    fn load(&self) -> Result<Vec<Json>> {
        Ok(match read_json(&self.meta_path())? {
            Some(Json::Object(mut m)) => match m.remove("files") {
                Some(Json::Array(a)) => a,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        })
    }

    fn parse(&self, entry: Json) -> Result<FileInfo> {
        serde_json::from_value(entry).map_err(|e| Error::Corrupt {
            path: self.meta_path(),
            reason: format!("an entry of \"files\" is not a file's metadata: {e}"),
        })
    }

    /// The stored files (deleted ones left out), in the store's order.
    pub(crate) fn stored(&self) -> Result<Vec<FileInfo>> {
        let mut files = Vec::new();
        for entry in self.load()? {
            let info = self.parse(entry)?;
            if info.deleted_at.is_none() {
                files.push(info);
            }
        }
        Ok(files)
    }

    /// A stored file's content, whole, checked against its sha256.
    pub(crate) fn read_content(&self, info: &FileInfo) -> Result<Vec<u8>> {
        let src = self.blob_dir(&info.path, &info.id).join(&info.filename);
        let bytes = fs::read(&src).map_err(|e| Error::io(&src, e))?;
        self.verify(info, &src, &hex(&Sha256::digest(&bytes)))?;
        Ok(bytes)
    }

    /// Copies a stored file's content to `to` (created or replaced), streamed
    /// into a temp file beside it and checked against its sha256 before it
    /// replaces `to`: a failed download leaves `to` as it was.
    pub(crate) fn copy_out(&self, info: &FileInfo, to: &Path) -> Result<()> {
        let src = self.blob_dir(&info.path, &info.id).join(&info.filename);
        let dir = match to.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".download-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let (_, sum) = copy_hashing(&src, tmp.path())?;
        self.verify(info, &src, &sum)?;
        tmp.persist(to).map_err(|e| Error::io(to, e.error))?;
        Ok(())
    }

    fn verify(&self, info: &FileInfo, src: &Path, sum: &str) -> Result<()> {
        match info.checksum.as_deref() {
            Some(expected) if !expected.is_empty() && expected != sum => Err(Error::Corrupt {
                path: src.to_path_buf(),
                reason: format!(
                    "its sha256 is {sum}, .files_metadata.json says {expected}: the stored content changed"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The SDK's soft delete of the stored files that `select` picks, under
    /// the lock: `deletedAt` and `updatedAt` set, the content left in place.
    /// Returns their entries as they now are.
    pub(crate) fn delete_where(&self, select: &dyn Fn(&FileInfo) -> bool) -> Result<Vec<FileInfo>> {
        self.locked(|| {
            let mut files = self.load()?;
            let now = encode::iso_now();
            let mut deleted = Vec::new();
            for entry in &mut files {
                let mut info = self.parse(entry.clone())?;
                if info.deleted_at.is_none() && select(&info) {
                    entry["deletedAt"] = json!(now);
                    entry["updatedAt"] = json!(now);
                    info.deleted_at = Some(now.clone());
                    info.updated_at.clone_from(&now);
                    deleted.push(info);
                }
            }
            if !deleted.is_empty() {
                write_json_atomic(&self.meta_path(), &json!({ "files": files }), self.sync)?;
            }
            Ok(deleted)
        })
    }

    /// Records stored files in `.files_metadata.json`: one read and one atomic
    /// rewrite for the whole batch, under the SDK's lock. An entry with the
    /// same path + filename is replaced in place and its old content removed.
    pub(crate) fn merge_entries(&self, stored: &[(FileEntry, u64, String)]) -> Result<()> {
        if stored.is_empty() {
            return Ok(());
        }
        self.locked(|| self.merge_locked(stored))
    }

    fn merge_locked(&self, stored: &[(FileEntry, u64, String)]) -> Result<()> {
        let mut files = self.load()?;
        let mut index: std::collections::HashMap<(String, String), usize> = files
            .iter()
            .enumerate()
            .filter(|(_, f)| f["deletedAt"].is_null())
            .filter_map(|(i, f)| {
                Some((
                    (
                        f["path"].as_str()?.to_string(),
                        f["filename"].as_str()?.to_string(),
                    ),
                    i,
                ))
            })
            .collect();
        for (entry, size, checksum) in stored {
            let info = entry.info(&self.experiment_id, *size, Some(checksum.clone()));
            let doc = serde_json::to_value(info).map_err(|e| Error::InvalidValue(e.to_string()))?;
            match index.get(&(entry.path.clone(), entry.filename.clone())) {
                Some(&i) => {
                    // Replace in place, and remove the old content (as the SDK does).
                    if let Some(old_id) = files[i]["id"].as_str()
                        && old_id != entry.id
                    {
                        let _ = fs::remove_dir_all(self.blob_dir(&entry.path, old_id));
                    }
                    files[i] = doc;
                }
                None => {
                    index.insert((entry.path.clone(), entry.filename.clone()), files.len());
                    files.push(doc);
                }
            }
        }
        write_json_atomic(&self.meta_path(), &json!({ "files": files }), self.sync).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_paths() {
        assert_eq!(
            logical_path("configs", "a.json").unwrap(),
            ("/configs".into(), "a.json".into())
        );
        assert_eq!(
            logical_path("", "a.json").unwrap(),
            ("/".into(), "a.json".into())
        );
        assert_eq!(
            logical_path("/deep/dir/", "x.bin").unwrap(),
            ("/deep/dir".into(), "x.bin".into())
        );
        assert_eq!(
            logical_path("a", "b/c.txt").unwrap(),
            ("/a/b".into(), "c.txt".into())
        );
        // A dot file is fine: it is alone in its `<id>/` folder.
        assert_eq!(
            logical_path("", ".env").unwrap(),
            ("/".into(), ".env".into())
        );
        let (longest_dir, longest_file) = ("é".repeat(127), "x".repeat(249));
        assert!(logical_path(&longest_dir, &longest_file).is_ok());
        let (e200, x250, e128) = ("é".repeat(200), "x".repeat(250), "é".repeat(128));
        for (d, n) in [
            ("..", "x"),
            ("a", "../x"),
            ("a", "/etc/passwd"),
            ("a", ""),
            ("a", "x\0"),
            (".pending", "x"),
            ("a/.x", "y"),
            ("", ".files_metadata.json/x"),
            ("a", e200.as_str()),
            ("a", x250.as_str()),
            (e128.as_str(), "x"),
        ] {
            assert!(
                matches!(logical_path(d, n), Err(Error::InvalidName { .. })),
                "{d:?} {n:?}"
            );
        }
    }

    #[test]
    fn ids_and_types() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 10_000, "unique even within one millisecond");
        let id: u64 = new_id().parse().unwrap();
        assert!(id > (1_700_000_000_000u64 << 12));
        assert_eq!(content_type("c.json"), "application/json");
        assert_eq!(content_type("i.png"), "image/png");
        assert_eq!(content_type("x.unknownext"), "application/octet-stream");
    }

    /// Two writers of one experiment (processes) that drew one id: the
    /// second temp file is refused (the caller draws again), never the
    /// first's content truncated.
    #[test]
    fn a_temp_file_is_never_anothers() {
        let root = tempfile::tempdir().unwrap();
        let fs_ = FileStore::new(&root.path().join("a/b"), "a/b", false, Copies::Local);
        let (tmp, ..) = fs_.write_temp("7", &mut |f| f.write_all(b"first")).unwrap();
        let again = fs_.write_temp("7", &mut |f| f.write_all(b"second"));
        assert!(
            matches!(&again, Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists),
            "{again:?}"
        );
        assert_eq!(fs::read_to_string(tmp).unwrap(), "first");
    }

    #[test]
    fn store_replaces_and_hashes() {
        let root = tempfile::tempdir().unwrap();
        let fs_ = FileStore::new(&root.path().join("a/b"), "a/b", false, Copies::Local);
        let entry = |id: &str| FileEntry {
            id: id.into(),
            path: "/c".into(),
            filename: "x.txt".into(),
            description: None,
            tags: vec![],
            metadata: None,
            content_type: "text/plain".into(),
            uploaded_at: "2026-01-01T00:00:00Z".into(),
        };
        for (id, text) in [("1", "one"), ("2", "two")] {
            let (tmp, size, checksum) = fs_
                .write_temp(id, &mut |f| f.write_all(text.as_bytes()))
                .unwrap();
            let source = Source::Temp {
                path: tmp.clone(),
                size,
                checksum,
            };
            let (size, sum) = fs_.store_content(&entry(id), &source).unwrap();
            fs_.merge_entries(&[(entry(id), size, sum)]).unwrap();
            assert!(!tmp.exists());
        }
        let meta = read_json(&root.path().join("a/b/files/.files_metadata.json"))
            .unwrap()
            .unwrap();
        let files = meta["files"].as_array().unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0]["id"], "2");
        assert_eq!(files[0]["sizeBytes"], 3);
        assert_eq!(
            files[0]["checksum"],
            "3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3"
        );
        assert!(
            !root.path().join("a/b/files/c/1").exists(),
            "replaced content removed"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("a/b/files/c/2/x.txt")).unwrap(),
            "two"
        );
    }
}
