//! Engine errors as the SDK's Python exceptions.
//!
//! | engine error | Python exception |
//! |---|---|
//! | a bad name, prefix, value or file; a record too large | `ValueError` |
//! | a bad level or setting; `_ts=-1` with no previous timestamp | `ConfigurationError` (also a `ValueError`) |
//! | a closed run | `RuntimeError` (the SDK's "Experiment not started") |
//! | the store failed | `StorageError` |
//! | no such stored file | `FileNotFoundError` |
//! | a call from a fork's child into the parent's run | `ForkedError` (also a `RuntimeError`) |
//! | a background thread died | `MlDashError` |
//!
//! The package's own classes (`ml_dash_rs.exceptions`) are handed over by
//! `register` when the package is imported.

use std::sync::OnceLock;

use ml_dash::Error;
use pyo3::exceptions::{PyFileNotFoundError, PyNotImplementedError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyType;

struct Classes {
    base: Py<PyType>,
    configuration: Py<PyType>,
    storage: Py<PyType>,
    forked: Py<PyType>,
}

static CLASSES: OnceLock<Classes> = OnceLock::new();

/// Called once by `ml_dash_rs/__init__.py` with its exception classes.
#[pyfunction]
pub fn register(
    base: Py<PyType>,
    configuration: Py<PyType>,
    storage: Py<PyType>,
    forked: Py<PyType>,
) {
    let _ = CLASSES.set(Classes {
        base,
        configuration,
        storage,
        forked,
    });
}

fn raise(pick: impl FnOnce(&Classes) -> &Py<PyType>, msg: String) -> PyErr {
    match CLASSES.get() {
        Some(c) => Python::attach(|py| {
            let ty = pick(c).bind(py);
            match ty.call1((msg.clone(),)) {
                Ok(e) => PyErr::from_value(e),
                Err(_) => PyRuntimeError::new_err(msg),
            }
        }),
        None => PyRuntimeError::new_err(msg),
    }
}

/// The exception for `e`, with the engine's message (it says what to do).
pub fn py_err(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::InvalidLevel(_) | Error::Config { .. } => raise(|c| &c.configuration, msg),
        Error::InvalidValue(_) if msg.contains("`_ts = -1`") => raise(|c| &c.configuration, msg),
        Error::InvalidPrefix { .. }
        | Error::InvalidName { .. }
        | Error::InvalidValue(_)
        | Error::InvalidFile { .. }
        | Error::RecordTooLarge { .. } => PyValueError::new_err(msg),
        Error::Closed => PyRuntimeError::new_err(
            "the experiment is not open: use `with experiment.run:` or call \
             experiment.run.start() first (a closed run cannot log: open it again)",
        ),
        Error::Io { .. } | Error::Corrupt { .. } | Error::Sink(_) => raise(|c| &c.storage, msg),
        Error::FileNotFound(_) => PyFileNotFoundError::new_err(msg),
        Error::Unsupported(_) => PyNotImplementedError::new_err(msg),
        Error::Forked => forked(),
        _ => raise(|c| &c.base, msg),
    }
}

/// A call from a fork's child into the run its parent opened.
pub fn forked() -> PyErr {
    raise(|c| &c.forked, Error::Forked.to_string())
}
