//! The files API: `run.files("configs").save_json("config.json", &cfg)`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value as Json;

use crate::core::RunCore;
use crate::error::{Error, Result};
use crate::files::{FileEntry, FileRecord, FileStore, Image, content_type, logical_path, new_id};
use crate::record::{Head, kind};

/// Call order of saves in this process: the later save of a path + filename
/// wins, whichever upload worker finishes first. Relaxed: only uniqueness and
/// the order of calls that are themselves ordered matter.
static SAVE_SEQ: AtomicU64 = AtomicU64::new(1);

/// The files of one folder of a run. Cheap to clone; `Send + Sync`.
///
/// Each save writes the content to a temp file in the engine's work area and
/// returns the file's id at once (the id it has in the store); an upload
/// worker then moves it into `files/<folder>/<id>/<name>` and records it in
/// `files/.files_metadata.json`. `flush()` and close wait for queued files.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// let id = run
///     .files("configs")
///     .description("training config")
///     .save_json("config.json", &serde_json::json!({"lr": 0.001}))?;
/// run.flush()?;
/// # let _ = id;
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Files {
    pub(crate) core: Arc<RunCore>,
    pub(crate) store: Arc<FileStore>,
    pub(crate) dir: String,
    pub(crate) description: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) metadata: Option<Json>,
}

impl Files {
    /// A description for the files saved through this handle (default none).
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Tags for the files saved through this handle (default none).
    pub fn tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Metadata for the files saved through this handle (default none).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when `value` does not serialize.
    pub fn metadata(mut self, value: impl Serialize) -> Result<Self> {
        self.metadata =
            Some(serde_json::to_value(value).map_err(|e| Error::InvalidValue(e.to_string()))?);
        Ok(self)
    }

    /// Saves `value` as pretty JSON (2-space indent, like the SDK).
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a name that would leave the experiment folder
    /// or that the store cannot hold (a file name over 249 bytes, a folder
    /// over 255 bytes or beginning with `.`), [`Error::InvalidValue`],
    /// [`Error::Io`], [`Error::Closed`], [`Error::Forked`].
    pub fn save_json(&self, name: &str, value: impl Serialize) -> Result<String> {
        let bytes =
            serde_json::to_vec_pretty(&value).map_err(|e| Error::InvalidValue(e.to_string()))?;
        self.save_with(name, &mut |f| f.write_all(&bytes))
    }

    /// Saves text.
    ///
    /// # Errors
    /// As [`save_json`](Self::save_json).
    pub fn save_text(&self, name: &str, text: &str) -> Result<String> {
        self.save_with(name, &mut |f| f.write_all(text.as_bytes()))
    }

    /// Saves bytes.
    ///
    /// # Errors
    /// As [`save_json`](Self::save_json).
    pub fn save_blob(&self, name: &str, bytes: &[u8]) -> Result<String> {
        self.save_with(name, &mut |f| f.write_all(bytes))
    }

    /// Saves an image as PNG.
    ///
    /// # Errors
    /// As [`save_json`](Self::save_json); [`Error::InvalidValue`] when the
    /// buffer length does not match the shape.
    pub fn save_image(&self, name: &str, image: Image<'_>) -> Result<String> {
        image.validate()?;
        self.save_with(name, &mut |f| image.write_png(std::io::BufWriter::new(f)))
    }

    /// Uploads the user's file `path` into this folder, under its own name.
    /// The file is streamed (never read whole into memory) and never moved,
    /// changed or deleted.
    ///
    /// # Errors
    /// [`Error::InvalidFile`] for a missing file, a directory or a non-UTF-8
    /// name; as [`save_json`](Self::save_json).
    pub fn upload(&self, path: impl AsRef<Path>) -> Result<String> {
        self.core.check_owner()?;
        let path = path.as_ref();
        let bad = |reason| Error::InvalidFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta =
            std::fs::metadata(path).map_err(|_| bad("it does not exist or cannot be read"))?;
        if meta.is_dir() {
            return Err(bad("it is a directory; upload its files one by one"));
        }
        let name = path
            .file_name()
            .ok_or_else(|| bad("it has no file name"))?
            .to_str()
            .ok_or_else(|| bad("its name is not valid UTF-8"))?;
        let full = std::path::absolute(path).map_err(|_| bad("its absolute path is unknown"))?;
        let source = full
            .to_str()
            .ok_or_else(|| bad("its path is not valid UTF-8"))?;
        let id = new_id();
        self.send(name, id, source.to_string(), true)
    }

    fn save_with(
        &self,
        name: &str,
        content: &mut dyn FnMut(&mut std::fs::File) -> std::io::Result<()>,
    ) -> Result<String> {
        self.core.check_owner()?;
        logical_path(&self.dir, name)?;
        if self.core.closed.load(crate::sync::Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let id = new_id();
        let tmp = self.store.write_temp(&id, content)?;
        let source = tmp.to_string_lossy().into_owned();
        self.send(name, id, source, false).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    fn send(&self, name: &str, id: String, source: String, user_file: bool) -> Result<String> {
        let (path, filename) = logical_path(&self.dir, name)?;
        let rec = FileRecord {
            entry: FileEntry {
                id: id.clone(),
                content_type: content_type(&filename),
                path,
                filename,
                description: self.description.clone(),
                tags: self.tags.clone(),
                metadata: self.metadata.clone(),
            },
            source,
            user_file,
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
        Ok(id)
    }
}
