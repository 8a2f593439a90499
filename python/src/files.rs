//! `exp.files(dir)`: saves, uploads and reads, with the GIL released while
//! the engine hashes, writes and waits. Results are JSON text (the SDK's
//! dicts, `FileInfo` as the SDK returns it), parsed by the Python side.

use ml_dash::{FileInfo, Files, Image};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::convert::json_of;
use crate::errors::py_err;

fn info_json(i: &FileInfo) -> String {
    serde_json::to_string(i).expect("a FileInfo always serializes")
}

fn infos_json(v: &[FileInfo]) -> String {
    serde_json::to_string(v).expect("a FileInfo always serializes")
}

fn arg<'py, T: for<'a> FromPyObject<'a, 'py>>(
    args: &Bound<'py, PyTuple>,
    i: usize,
    what: &str,
) -> PyResult<T> {
    args.get_item(i)
        .map_err(|_| PyValueError::new_err(format!("files: {what} is missing")))?
        .extract::<T>()
        .map_err(|e| {
            let e: PyErr = e.into();
            PyValueError::new_err(format!("files: {what}: {e}"))
        })
}

/// Description, tags and metadata of the save (keywords of the SDK's upload).
fn described(mut f: Files, kw: Option<&Bound<'_, PyDict>>) -> PyResult<Files> {
    let Some(kw) = kw else { return Ok(f) };
    if let Some(d) = kw.get_item("description")?.filter(|d| !d.is_none()) {
        f = f.description(d.extract::<String>()?);
    }
    if let Some(t) = kw.get_item("tags")?.filter(|t| !t.is_none()) {
        f = f.tags(t.extract::<Vec<String>>()?);
    }
    if let Some(m) = kw.get_item("metadata")?.filter(|m| !m.is_none()) {
        f = f.metadata(json_of(&m)?).map_err(py_err)?;
    }
    Ok(f)
}

/// Runs file operation `op`; see `ml_dash_rs/files.py` for each one's arguments.
pub fn call(
    py: Python<'_>,
    files: Files,
    op: &str,
    args: &Bound<'_, PyTuple>,
    kw: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let files = described(files, kw)?;
    let text = |s: String| PyString::new(py, &s).into_any().unbind();
    let out = match op {
        "save_text" => {
            let (name, body): (String, String) = (arg(args, 0, "to")?, arg(args, 1, "content")?);
            text(info_json(
                &py.detach(|| files.save_text(&name, &body))
                    .map_err(py_err)?,
            ))
        }
        "save_blob" => {
            let name: String = arg(args, 0, "to")?;
            let data = args.get_item(1)?;
            let bytes = data.cast::<PyBytes>().map_err(|_| {
                PyValueError::new_err(
                    "save_blob: data must be bytes (bytes(x) converts a bytearray or memoryview)",
                )
            })?;
            let b = bytes.as_bytes();
            text(info_json(
                &py.detach(|| files.save_blob(&name, b)).map_err(py_err)?,
            ))
        }
        "save_json" => {
            let name: String = arg(args, 0, "to")?;
            let value = json_of(&args.get_item(1)?)?;
            text(info_json(
                &py.detach(|| files.save_json(&name, &value))
                    .map_err(py_err)?,
            ))
        }
        "save_image" => {
            // (to, channels, width, height, pixels): rows of 8-bit samples.
            let name: String = arg(args, 0, "to")?;
            let channels: u8 = arg(args, 1, "channels")?;
            let width: u32 = arg(args, 2, "width")?;
            let height: u32 = arg(args, 3, "height")?;
            let px = args.get_item(4)?;
            let data = px
                .cast::<PyBytes>()
                .map_err(|_| PyValueError::new_err("save_image: pixels must be bytes"))?
                .as_bytes();
            let image = match channels {
                1 => Image::Gray8 {
                    width,
                    height,
                    data,
                },
                3 => Image::Rgb8 {
                    width,
                    height,
                    data,
                },
                4 => Image::Rgba8 {
                    width,
                    height,
                    data,
                },
                n => {
                    return Err(PyValueError::new_err(format!(
                        "save_image: {n} channels: use an H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA) uint8 array"
                    )));
                }
            };
            text(info_json(
                &py.detach(|| files.save_image(&name, image))
                    .map_err(py_err)?,
            ))
        }
        "upload" => {
            let path: std::path::PathBuf = arg(args, 0, "path")?;
            let to: Option<String> = arg(args, 1, "to")?;
            let info = py.detach(|| match &to {
                Some(name) => files.upload_as(&path, name),
                None => files.upload(&path),
            });
            text(info_json(&info.map_err(py_err)?))
        }
        "list" => {
            let pattern: Option<String> = arg(args, 0, "pattern")?;
            let v = py.detach(|| match &pattern {
                Some(p) => files.list_matching(p),
                None => files.list(),
            });
            text(infos_json(&v.map_err(py_err)?))
        }
        "exists" => {
            let name: String = arg(args, 0, "name")?;
            let b = py.detach(|| files.exists(&name)).map_err(py_err)?;
            pyo3::types::PyBool::new(py, b)
                .to_owned()
                .into_any()
                .unbind()
        }
        "read_text" => {
            let name: String = arg(args, 0, "name")?;
            text(py.detach(|| files.read_text(&name)).map_err(py_err)?)
        }
        "download" => {
            let (name, to): (String, std::path::PathBuf) =
                (arg(args, 0, "name")?, arg(args, 1, "to")?);
            let p = py.detach(|| files.download(&name, &to)).map_err(py_err)?;
            text(p.display().to_string())
        }
        "download_matching" => {
            let (pattern, to): (String, std::path::PathBuf) =
                (arg(args, 0, "pattern")?, arg(args, 1, "to")?);
            let v = py
                .detach(|| files.download_matching(&pattern, &to))
                .map_err(py_err)?;
            let v: Vec<String> = v.iter().map(|p| p.display().to_string()).collect();
            text(serde_json::to_string(&v).expect("strings serialize"))
        }
        "delete" => {
            let name: String = arg(args, 0, "name")?;
            text(info_json(
                &py.detach(|| files.delete(&name)).map_err(py_err)?,
            ))
        }
        "delete_matching" => {
            let pattern: String = arg(args, 0, "pattern")?;
            text(infos_json(
                &py.detach(|| files.delete_matching(&pattern))
                    .map_err(py_err)?,
            ))
        }
        other => {
            return Err(PyValueError::new_err(format!(
                "files: no operation {other:?}"
            )));
        }
    };
    Ok(out)
}
