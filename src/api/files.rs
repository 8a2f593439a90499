//! The files API: `run.files("configs").save_json("config.json", &cfg)`, and
//! the SDK's read side on the same handle (`list`, `exists`, `read_text`,
//! `download`, `delete`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value as Json;

use crate::encode;
use crate::error::{Error, Result};
use crate::files::{
    Copies, FileEntry, FileInfo, FileRecord, FileStore, Image, content_type, logical_path, new_id,
};
use crate::record::{Head, kind};
use crate::run::RunCore;

/// Call order of saves in this process: the later save of a path + filename
/// wins, whichever upload worker finishes first. Relaxed: only uniqueness and
/// the order of calls that are themselves ordered matter.
static SAVE_SEQ: AtomicU64 = AtomicU64::new(1);

/// The files of one folder of a run. Cheap to clone; `Send + Sync`.
///
/// Each save writes the content to a temp file in the engine's work area,
/// hashing it on the way, and returns at once the [`FileInfo`] the store will
/// hold (the SDK's dict: id, path, filename, size, checksum...); an upload
/// worker then moves it into `files/<folder>/<id>/<name>` and records it in
/// `files/.files_metadata.json`. `flush()` and close wait for queued files.
///
/// The description, tags and metadata set on the handle go with every file
/// saved through it (the SDK's keyword arguments): make a handle per call to
/// vary them. The read side sees every file saved before the call: it first
/// waits for the run's queued files, as `flush()` does.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # let run = ml_dash::Experiment::new("a/b/c").dash_root(root.path()).run()?;
/// let cfg = run
///     .files("configs")
///     .description("training config")
///     .save_json("config.json", &serde_json::json!({"lr": 0.001}))?;
/// assert_eq!(cfg.path, "/configs");
/// assert!(run.files("configs").exists("config.json")?);
/// assert_eq!(run.files("").list_matching("*.json")?, vec![cfg]);
/// let text = run.files("configs").read_text("config.json")?;
/// assert!(text.contains("0.001"));
/// run.files("configs").delete("config.json")?;
/// assert!(run.files("").list()?.is_empty());
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a files handle does nothing until a file is saved or read through it"]
pub struct Files {
    pub(crate) core: Arc<RunCore>,
    pub(crate) store: Arc<FileStore>,
    pub(crate) dir: String,
    pub(crate) description: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) metadata: Option<Json>,
    /// Written by rank 0 alone in [`RankMode::Shared`](crate::RankMode::Shared).
    pub(crate) shared: bool,
}

impl Files {
    /// Marks the files saved through this handle as the job's, not this
    /// rank's: in [`RankMode::Shared`](crate::RankMode::Shared) only rank 0
    /// stores them (a config, the final checkpoint); on the other ranks a
    /// save returns the [`FileInfo`] it would have stored and stores
    /// nothing. No effect in other modes.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// // One config for the whole job, saved by rank 0 in `RankMode::Shared`.
    /// run.files("configs").shared().save_text("job.yaml", "lr: 0.001")?;
    /// assert!(run.files("configs").exists("job.yaml")?); // a single process saves it
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// A description for the files saved through this handle (default none).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let info = run.files("").description("final weights").save_blob("w.bin", &[1, 2])?;
    /// assert_eq!(info.description.as_deref(), Some("final weights"));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Tags for the files saved through this handle (default none). As in
    /// the SDK, a handle with tags lists only files that have one of them.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.files("ckpt").tags(["best"]).save_blob("e3.bin", &[3])?;
    /// run.files("ckpt").save_blob("e4.bin", &[4])?;
    /// let best = run.files("ckpt").tags(["best"]).list()?;
    /// assert_eq!(best.len(), 1);
    /// assert_eq!(best[0].filename, "e3.bin");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Metadata for the files saved through this handle (default none).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `value` does not serialize.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let info = (run.files("ckpt").metadata(serde_json::json!({"epoch": 3}))?).save_blob("e3.bin", &[3])?;
    /// assert_eq!(info.metadata, Some(serde_json::json!({"epoch": 3})));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn metadata(mut self, value: impl Serialize) -> Result<Self> {
        self.metadata =
            Some(serde_json::to_value(value).map_err(|e| Error::InvalidValue(e.to_string()))?);
        Ok(self)
    }

    /// Saves `value` as pretty JSON (2-space indent, like the SDK). `name`
    /// may hold subfolders (`"a/b.json"`).
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a name that would leave the experiment folder
    /// or that the store cannot hold (a file name over 249 bytes, a folder
    /// over 255 bytes or beginning with `.`), [`Error::InvalidValue`],
    /// [`Error::Io`], [`Error::Closed`], [`Error::Forked`].
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let info = run.files("configs").save_json("train/config.json", serde_json::json!({"lr": 0.001}))?;
    /// assert_eq!((info.path.as_str(), info.filename.as_str()), ("/configs/train", "config.json"));
    /// assert_eq!(info.content_type, "application/json");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn save_json(&self, name: &str, value: impl Serialize) -> Result<FileInfo> {
        let bytes =
            serde_json::to_vec_pretty(&value).map_err(|e| Error::InvalidValue(e.to_string()))?;
        self.save_with(name, &mut |f| f.write_all(&bytes))
    }

    /// Saves text.
    ///
    /// # Errors
    /// As [`save_json`](Self::save_json).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.files("notes").save_text("todo.txt", "try a larger batch")?;
    /// assert_eq!(run.files("notes").read_text("todo.txt")?, "try a larger batch");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn save_text(&self, name: &str, text: &str) -> Result<FileInfo> {
        self.save_with(name, &mut |f| f.write_all(text.as_bytes()))
    }

    /// Saves bytes.
    ///
    /// # Errors
    /// As [`save_json`](Self::save_json).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let info = run.files("ckpt").save_blob("model.bin", &[0u8; 16])?;
    /// assert_eq!(info.size_bytes, 16);
    /// assert_eq!(info.checksum.map(|c| c.len()), Some(64)); // sha256, hex
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn save_blob(&self, name: &str, bytes: &[u8]) -> Result<FileInfo> {
        self.save_with(name, &mut |f| f.write_all(bytes))
    }

    /// Saves an image as PNG.
    ///
    /// # Errors
    /// As [`save_json`](Self::save_json); [`Error::InvalidValue`] when the
    /// buffer length does not match the shape.
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// use ml_dash::Image;
    /// let pixels = [0u8, 64, 128, 255]; // 2x2 gray
    /// let info = run.files("images").save_image("x.png", Image::Gray8 { width: 2, height: 2, data: &pixels })?;
    /// assert_eq!(info.content_type, "image/png");
    /// let short = Image::Gray8 { width: 3, height: 3, data: &pixels };
    /// assert!(run.files("images").save_image("y.png", short).is_err());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn save_image(&self, name: &str, image: Image<'_>) -> Result<FileInfo> {
        image.validate()?;
        self.save_with(name, &mut |f| image.write_png(std::io::BufWriter::new(f)))
    }

    /// Uploads the user's file `path` into this folder, under its own name.
    /// The file is streamed by an upload worker (never read whole into
    /// memory, never on the caller's thread) and never moved, changed or
    /// deleted. The returned [`FileInfo`] has the file's size at the call and
    /// `checksum: None`: the worker hashes what it copies, and the stored
    /// entry (`list()`) has both.
    ///
    /// # Errors
    /// [`Error::InvalidFile`] for a missing file, a directory or a non-UTF-8
    /// path; as [`save_json`](Self::save_json).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let src = root.path().join("weights.bin");
    /// std::fs::write(&src, [7u8; 100]).unwrap();
    /// let info = run.files("ckpt").upload(&src)?;
    /// assert_eq!((info.filename.as_str(), info.size_bytes), ("weights.bin", 100));
    /// run.flush()?; // the upload worker has stored it, hash and all
    /// assert!(run.files("ckpt").list()?[0].checksum.is_some());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn upload(&self, path: impl AsRef<Path>) -> Result<FileInfo> {
        self.upload_file(path.as_ref(), None)
    }

    /// [`upload`](Self::upload) under another name (the SDK's
    /// `upload(path, to=name)`); `name` may hold subfolders.
    ///
    /// # Errors
    /// As [`upload`](Self::upload).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let src = root.path().join("out.bin");
    /// std::fs::write(&src, b"weights").unwrap();
    /// let info = run.files("ckpt").upload_as(&src, "best/model.bin")?;
    /// assert_eq!((info.path.as_str(), info.filename.as_str()), ("/ckpt/best", "model.bin"));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn upload_as(&self, path: impl AsRef<Path>, name: &str) -> Result<FileInfo> {
        self.upload_file(path.as_ref(), Some(name))
    }

    /// The stored files of this folder and its subfolders, in the store's
    /// order (deleted ones left out): the SDK's `files(dir).list()`.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a folder that would leave the experiment,
    /// [`Error::Io`], [`Error::Corrupt`] for a `.files_metadata.json` that
    /// does not parse, [`Error::Forked`]; [`Error::Unsupported`] in a
    /// remote-only run (it keeps no copy of its files; a hybrid run reads its
    /// local store).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.files("a").save_text("1.txt", "one")?;
    /// run.files("a/b").save_text("2.txt", "two")?;
    /// assert_eq!(run.files("a").list()?.len(), 2); // subfolders too
    /// assert_eq!(run.files("a/b").list()?.len(), 1);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn list(&self) -> Result<Vec<FileInfo>> {
        let folder = self.folder()?;
        self.settle()?;
        let files = self.store.stored()?;
        Ok(files
            .into_iter()
            .filter(|f| f.is_under(&folder))
            .filter(|f| self.tags.is_empty() || f.tags.iter().any(|t| self.tags.contains(t)))
            .collect())
    }

    /// The files of [`list`](Self::list) whose name or path from the
    /// experiment's files root (`images/a.png`) matches the glob `pattern`,
    /// as the SDK's `files(dir).list(pattern)` matches: Python's `fnmatch`
    /// (`*` also matches `/`, `?`, `[a-z]`, `[!x]`; case-sensitive).
    ///
    /// # Errors
    /// As [`list`](Self::list).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.files("images").save_blob("a.png", &[1])?;
    /// run.files("images").save_blob("b.jpg", &[2])?;
    /// let pngs = run.files("").list_matching("images/*.png")?;
    /// assert_eq!(pngs.len(), 1);
    /// assert_eq!(pngs[0].filename, "a.png");
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn list_matching(&self, pattern: &str) -> Result<Vec<FileInfo>> {
        let mut files = self.list()?;
        files.retain(|f| f.matches(pattern));
        Ok(files)
    }

    /// Whether the file `name` of this folder is stored.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.files("configs").save_text("a.yaml", "x: 1")?;
    /// assert!(run.files("configs").exists("a.yaml")?);
    /// assert!(!run.files("configs").exists("b.yaml")?);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn exists(&self, name: &str) -> Result<bool> {
        match self.find(name) {
            Ok(_) => Ok(true),
            Err(Error::FileNotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The content of the file `name` of this folder, as text (checked
    /// against its sha256, as the SDK's download checks it).
    ///
    /// # Errors
    /// [`Error::FileNotFound`]; [`Error::InvalidValue`] when it is not UTF-8
    /// (use [`download`](Self::download)); [`Error::Corrupt`] when the content
    /// does not match its checksum; as [`exists`](Self::exists).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.files("").save_json("cfg.json", serde_json::json!({"lr": 1}))?;
    /// assert_eq!(run.files("").read_text("cfg.json")?, "{\n  \"lr\": 1\n}");
    /// assert!(matches!(run.files("").read_text("none.json"), Err(ml_dash::Error::FileNotFound(_))));
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn read_text(&self, name: &str) -> Result<String> {
        let info = self.find(name)?;
        let bytes = self.store.read_content(&info)?;
        String::from_utf8(bytes).map_err(|e| {
            Error::InvalidValue(format!(
                "{} is not UTF-8 text ({e}): download() it instead",
                info.filename
            ))
        })
    }

    /// Copies the file `name` of this folder to `to` (a file, created or
    /// replaced; or an existing folder, then under the file's name) and
    /// returns the copy's path. Streamed, and checked against its sha256.
    ///
    /// # Errors
    /// [`Error::FileNotFound`]; [`Error::Io`] on either side;
    /// [`Error::Corrupt`] when the content does not match its checksum (the
    /// copy is removed); as [`exists`](Self::exists).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.files("ckpt").save_blob("model.bin", &[1, 2, 3])?;
    /// let out = tempfile::tempdir().unwrap();
    /// let copy = run.files("ckpt").download("model.bin", out.path())?;
    /// assert_eq!(copy, out.path().join("model.bin"));
    /// assert_eq!(std::fs::read(&copy).unwrap(), [1, 2, 3]);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn download(&self, name: &str, to: impl AsRef<Path>) -> Result<PathBuf> {
        let info = self.find(name)?;
        let to = to.as_ref();
        let dest = if to.is_dir() {
            to.join(&info.filename)
        } else {
            to.to_path_buf()
        };
        self.store.copy_out(&info, &dest)?;
        Ok(dest)
    }

    /// Copies every file of [`list_matching`](Self::list_matching) into the
    /// folder `to` (created if missing), each under its file name, as the SDK's
    /// `files(dir).download(pattern, to=dir)`; returns the copies' paths.
    ///
    /// # Errors
    /// [`Error::FileNotFound`] when nothing matches; [`Error::InvalidValue`] when
    /// two matches share a file name (nothing is copied); as [`download`](Self::download).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.files("images").save_blob("a.png", &[1])?;
    /// run.files("images").save_blob("b.png", &[2])?;
    /// let out = tempfile::tempdir().unwrap();
    /// let copies = run.files("images").download_matching("*.png", out.path().join("pngs"))?;
    /// assert_eq!(copies.len(), 2);
    /// assert!(out.path().join("pngs/b.png").is_file());
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn download_matching(&self, pattern: &str, to: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
        let files = self.list_matching(pattern)?;
        if files.is_empty() {
            return Err(Error::FileNotFound(self.display(pattern)));
        }
        // Every copy lands as `to/<filename>`: two matches of one name would
        // overwrite each other, so none is copied.
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = files.iter().find(|f| !seen.insert(&f.filename)) {
            return Err(Error::InvalidValue(format!(
                "more than one file matching {pattern:?} is named {:?}: their copies would \
                 overwrite each other in one folder; narrow the pattern or download them one by one",
                twice.filename
            )));
        }
        let to = to.as_ref();
        std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
        let mut copies = Vec::with_capacity(files.len());
        for info in &files {
            let dest = to.join(&info.filename);
            self.store.copy_out(info, &dest)?;
            copies.push(dest);
        }
        Ok(copies)
    }

    /// Whether this handle's saves and deletes do nothing in this process:
    /// an inert run (rank0 mode, other ranks), or a shared file on a rank
    /// other than 0.
    fn skips(&self) -> bool {
        self.core.role.inert || (self.shared && !self.core.role.writes_shared)
    }

    /// Deletes the file `name` of this folder as the SDK does (a soft
    /// delete: its entry gets `deletedAt`, under the SDK's lock, and its
    /// content stays on disk); returns the entry as it now is.
    ///
    /// # Errors
    /// [`Error::FileNotFound`]; [`Error::Unsupported`] in a run with a
    /// server (`dash_url`): it would delete the local copy only, and a
    /// remote-only run has none; [`Error::Closed`]; as [`exists`](Self::exists).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.files("tmp").save_text("scratch.txt", "x")?;
    /// let gone = run.files("tmp").delete("scratch.txt")?;
    /// assert!(gone.deleted_at.is_some());
    /// assert!(!run.files("tmp").exists("scratch.txt")?);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn delete(&self, name: &str) -> Result<FileInfo> {
        if self.skips() {
            return self.find(name);
        }
        self.check_deletable()?;
        let (path, filename) = logical_path(&self.dir, name)?;
        self.settle()?;
        let mut deleted = self.store.delete_where(&|f| f.is_at(&path, &filename))?;
        deleted
            .pop()
            .ok_or_else(|| Error::FileNotFound(self.display(name)))
    }

    /// Deletes (as [`delete`](Self::delete)) every file of
    /// [`list_matching`](Self::list_matching); returns their entries.
    ///
    /// # Errors
    /// [`Error::FileNotFound`] when nothing matches; as [`delete`](Self::delete).
    ///
    /// # Examples
    /// ```
    /// # let root = tempfile::tempdir().unwrap();
    /// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// run.files("tmp").save_text("a.log", "x")?;
    /// run.files("tmp").save_text("b.log", "y")?;
    /// run.files("tmp").save_text("keep.txt", "z")?;
    /// assert_eq!(run.files("tmp").delete_matching("*.log")?.len(), 2);
    /// assert_eq!(run.files("tmp").list()?.len(), 1);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn delete_matching(&self, pattern: &str) -> Result<Vec<FileInfo>> {
        if self.skips() {
            let found = self.list_matching(pattern)?;
            if found.is_empty() {
                return Err(Error::FileNotFound(self.display(pattern)));
            }
            return Ok(found);
        }
        self.check_deletable()?;
        let folder = self.folder()?;
        self.settle()?;
        let tags = &self.tags;
        let deleted = self.store.delete_where(&|f| {
            f.is_under(&folder)
                && (tags.is_empty() || f.tags.iter().any(|t| tags.contains(t)))
                && f.matches(pattern)
        })?;
        if deleted.is_empty() {
            return Err(Error::FileNotFound(self.display(pattern)));
        }
        Ok(deleted)
    }

    /// The stored file `name` of this folder.
    fn find(&self, name: &str) -> Result<FileInfo> {
        let (path, filename) = logical_path(&self.dir, name)?;
        self.settle()?;
        self.store
            .stored()?
            .into_iter()
            .find(|f| f.is_at(&path, &filename))
            .ok_or_else(|| Error::FileNotFound(self.display(name)))
    }

    /// Waits for the files saved before the call (a flush: a file's record
    /// travels through the ring), failing as that flush does; after close
    /// every file is already stored. Every read and delete calls
    /// this before it reaches the store: the child of a fork gets
    /// [`Error::Forked`] here.
    fn settle(&self) -> Result<()> {
        self.core.check_owner()?;
        if self.store.copies == Copies::RemoteOnly {
            return Err(Error::Unsupported(
                "a remote-only run keeps no copy of its files (each is deleted from the work \
                 area once sent): read them on the server, or open the run with a dash_root",
            ));
        }
        // A flush reports a failure once: pass it on, so a read never hides
        // it from the caller's next `flush()`. After close the files are in.
        match self.core.flush() {
            Ok(()) | Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The handle's folder (`/configs`; `/` for the root).
    fn folder(&self) -> Result<String> {
        // Any valid file name: only the folder part is checked and kept.
        logical_path(&self.dir, "_").map(|(folder, _)| folder)
    }

    /// `dir/name` for messages.
    fn display(&self, name: &str) -> String {
        match self.dir.trim_matches('/') {
            "" => name.to_string(),
            d => format!("{d}/{name}"),
        }
    }

    fn check_deletable(&self) -> Result<()> {
        self.core.check_owner()?;
        if self.store.copies == Copies::Hybrid {
            return Err(Error::Unsupported(
                "delete() in a run with a server (dash_url) would delete only the local copy: \
                 delete the file on the server (its web UI), or open a run without dash_url",
            ));
        }
        if self.core.closed.load(crate::sync::Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn upload_file(&self, path: &Path, to: Option<&str>) -> Result<FileInfo> {
        self.core.check_owner()?;
        let bad = |reason| Error::InvalidFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta =
            std::fs::metadata(path).map_err(|_| bad("it does not exist or cannot be read"))?;
        if meta.is_dir() {
            return Err(bad("it is a directory; upload its files one by one"));
        }
        let name = match to {
            Some(name) => name,
            None => path
                .file_name()
                .ok_or_else(|| bad("it has no file name"))?
                .to_str()
                .ok_or_else(|| bad("its name is not valid UTF-8"))?,
        };
        let full = std::path::absolute(path).map_err(|_| bad("its absolute path is unknown"))?;
        let source = full
            .to_str()
            .ok_or_else(|| bad("its path is not valid UTF-8"))?;
        let entry = self.entry(name)?;
        if self.skips() {
            self.core.noop_result()?;
            return Ok(entry.info(self.store.experiment_id(), meta.len(), None));
        }
        self.send(entry, source.to_string(), meta.len(), None)
    }

    fn save_with(
        &self,
        name: &str,
        content: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<FileInfo> {
        self.core.check_owner()?;
        let mut entry = self.entry(name)?;
        if self.core.closed.load(crate::sync::Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        if self.skips() {
            // What the save would return, with nothing written.
            let (size, checksum) = crate::files::hash_only(content)?;
            return Ok(entry.info(self.store.experiment_id(), size, Some(checksum)));
        }
        let (tmp, size, checksum) = loop {
            match self.store.write_temp(&entry.id, content) {
                // Another writer of the experiment has this id in flight.
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    entry.id = new_id();
                }
                r => break r?,
            }
        };
        let source = tmp.to_string_lossy().into_owned();
        self.send(entry, source, size, Some(checksum))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
    }

    /// A new entry for the file `name` of this folder.
    fn entry(&self, name: &str) -> Result<FileEntry> {
        let (path, filename) = logical_path(&self.dir, name)?;
        Ok(FileEntry {
            id: new_id(),
            content_type: content_type(&filename),
            path,
            filename,
            description: self.description.clone(),
            tags: self.tags.clone(),
            metadata: self.metadata.clone(),
            uploaded_at: encode::iso_now(),
        })
    }

    /// Queues the file; `checksum` is known for a temp file (none for the
    /// user's file, which the worker hashes).
    fn send(
        &self,
        entry: FileEntry,
        source: String,
        size: u64,
        checksum: Option<String>,
    ) -> Result<FileInfo> {
        let info = entry.info(self.store.experiment_id(), size, checksum.clone());
        let rec = FileRecord {
            entry,
            source,
            written: checksum.map(|sum| (size, sum)),
            seq: SAVE_SEQ.fetch_add(1, Ordering::Relaxed),
        };
        let text = serde_json::to_vec(&rec).map_err(|e| Error::InvalidValue(e.to_string()))?;
        let head = Head {
            kind: kind::FILE,
            aux: 0,
            stream: 0,
            ts: 0,
        };
        self.core.push(head, &text, &[])?;
        Ok(info)
    }
}
