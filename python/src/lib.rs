//! `ml_dash_rs._core`: the engine's handles as Python objects.
//!
//! The Python package (`python/ml_dash_rs`) gives them the ML-Dash 0.11 SDK's
//! shape; this module holds only what must be native: opening and closing a
//! run, the per-call paths (`Metric.log`, `Track.append`, `MetricsManager`),
//! logs, parameters and files. Every engine error becomes a Python exception
//! (`errors.rs`); no Rust panic crosses into Python (PyO3 turns one into
//! `PanicException`, and none is expected).
//!
//! The GIL: a log call converts its arguments and pushes into the calling
//! thread's ring (no I/O, no lock, never waits on another thread); `flush`,
//! close and file saves wait with the GIL released. No Rust lock is held
//! while the GIL is released (a thread holding the GIL could otherwise wait
//! on it while the waiter waits for the GIL).

mod convert;
mod errors;
mod fast;
mod files;

use std::sync::Mutex;

use ml_dash::{BufferConfig, Experiment, Level, MetricInfo};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use convert::{json_of, with_fields};
use errors::{forked, py_err};

/// An open run. Closing takes the engine's run out (`close`); every handle
/// made from it fails with `RuntimeError` after that, as the SDK's do.
#[pyclass(frozen, module = "ml_dash_rs._core")]
struct Run {
    run: Mutex<Option<ml_dash::Run>>,
    /// For flushes from any thread without the run's lock.
    logger: ml_dash::Logger,
    params: ml_dash::Params,
    /// The server cannot store NaN or ±inf: the SDK refuses them when a
    /// server is configured, and so does this module.
    remote: bool,
    /// The process that opened the run (a fork's child must not touch the lock).
    pid: u32,
    #[pyo3(get)]
    dir: String,
    #[pyo3(get)]
    prefix: String,
}

impl Run {
    /// The engine run, or why there is none: closed, or this is a fork's child.
    fn with<R>(&self, f: impl FnOnce(&ml_dash::Run) -> PyResult<R>) -> PyResult<R> {
        if std::process::id() != self.pid {
            return Err(forked());
        }
        let guard = self.run.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(run) => f(run),
            None => Err(py_err(ml_dash::Error::Closed)),
        }
    }
}

#[pymethods]
impl Run {
    /// Opens (or reopens) the experiment `prefix`. `dash_root=None` with a
    /// `dash_url` is remote-only; `buffer` is a dict of `BufferConfig` fields;
    /// `handle_signals` is `ML_DASH_HANDLE_SIGNALS`'s syntax (`"term"`,
    /// `"1"`, `"0"`; `None`: the variable, else off).
    #[new]
    #[pyo3(signature = (prefix, dash_root=None, dash_url=None, token=None, readme=None, tags=None, metadata=None, buffer=None, handle_signals=None))]
    #[allow(clippy::too_many_arguments)]
    fn open(
        py: Python<'_>,
        prefix: String,
        dash_root: Option<std::path::PathBuf>,
        dash_url: Option<String>,
        token: Option<String>,
        readme: Option<String>,
        tags: Option<Vec<String>>,
        metadata: Option<&Bound<'_, PyAny>>,
        buffer: Option<&Bound<'_, PyDict>>,
        handle_signals: Option<&str>,
    ) -> PyResult<Run> {
        let mut e = Experiment::new(prefix);
        if let Some(s) = handle_signals {
            e = e.handle_signals(s.parse().map_err(py_err)?);
        }
        match &dash_root {
            Some(root) => e = e.dash_root(root),
            None => e = e.remote_only(),
        }
        let remote = dash_url.is_some();
        if let Some(url) = dash_url {
            e = e.dash_url(url);
        }
        if let Some(t) = token {
            e = e.token(t);
        }
        if let Some(r) = readme {
            e = e.readme(r);
        }
        if let Some(t) = tags {
            e = e.tags(t);
        }
        if let Some(m) = metadata.filter(|m| !m.is_none()) {
            e = e.metadata(json_of(m)?);
        }
        if let Some(b) = buffer {
            e = e.buffer_config(buffer_config(b)?);
        }
        let run = py.detach(|| e.run()).map_err(py_err)?;
        Ok(Run {
            logger: run.logger(),
            params: run.params(),
            remote,
            pid: std::process::id(),
            dir: run.dir().display().to_string(),
            prefix: run.prefix().to_string(),
            run: Mutex::new(Some(run)),
        })
    }

    /// A metric stream's handle (`name=None`: the unnamed stream).
    #[pyo3(signature = (name, description=None, tags=None, metadata=None))]
    fn metric(
        &self,
        name: Option<&str>,
        description: Option<String>,
        tags: Option<Vec<String>>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Metric> {
        let metadata = metadata.filter(|m| !m.is_none()).map(json_of).transpose()?;
        let m = self.with(|run| {
            let Some(name) = name else {
                return Ok(run.unnamed_metrics());
            };
            if description.is_none() && tags.is_none() && metadata.is_none() {
                return run.metrics(name).map_err(py_err);
            }
            let mut info = MetricInfo::default();
            if let Some(d) = description {
                info = info.description(d);
            }
            if let Some(t) = tags {
                info = info.tags(t);
            }
            if let Some(m) = metadata {
                info = info.metadata(m).map_err(py_err)?;
            }
            run.metrics_with(name, info).map_err(py_err)
        })?;
        Ok(Metric {
            m,
            remote: self.remote,
        })
    }

    /// A track topic's handle.
    fn track(&self, topic: &str) -> PyResult<Track> {
        let t = self.with(|run| run.tracks(topic).map_err(py_err))?;
        Ok(Track {
            t,
            remote: self.remote,
        })
    }

    /// One log line; `level` is checked by the engine (info, warn, error,
    /// debug, fatal; any case).
    #[pyo3(signature = (message, level="info", metadata=None))]
    fn log(
        &self,
        message: &str,
        level: &str,
        metadata: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        if std::process::id() != self.pid {
            return Err(forked());
        }
        match metadata {
            Some(m) if !m.is_empty() => {
                with_fields(m, false, |f| self.logger.log_level(level, message, f))
            }
            _ => self.logger.log_level(level, message, &[]).map_err(py_err),
        }
    }

    /// One parameters version (a dict; nested dicts are flattened with `.`).
    fn params_set(&self, values: &Bound<'_, PyDict>) -> PyResult<()> {
        if std::process::id() != self.pid {
            return Err(forked());
        }
        let v = json_of(values.as_any())?;
        self.params.set(v).map_err(py_err)
    }

    /// Waits (GIL released) until everything logged before is stored.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        if std::process::id() != self.pid {
            return Err(forked());
        }
        py.detach(|| self.logger.flush()).map_err(py_err)
    }

    /// Closes the run with `status` (COMPLETED, FAILED or CANCELLED), draining
    /// everything with the GIL released. Returns the close report's warnings.
    fn close(&self, py: Python<'_>, status: &str) -> PyResult<Vec<String>> {
        if std::process::id() != self.pid {
            return Err(forked());
        }
        let taken = self.run.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(run) = taken else {
            return Err(py_err(ml_dash::Error::Closed));
        };
        let report = match status {
            "COMPLETED" => py.detach(|| run.complete()),
            "FAILED" => py.detach(|| run.fail()),
            "CANCELLED" => py.detach(|| run.cancel()),
            other => {
                *self.run.lock().unwrap_or_else(|p| p.into_inner()) = Some(run);
                return Err(PyValueError::new_err(format!(
                    "unknown status {other:?}: use COMPLETED, FAILED or CANCELLED"
                )));
            }
        };
        Ok(report.map_err(py_err)?.warnings)
    }

    /// Whether the run is still open.
    #[getter]
    fn is_open(&self) -> bool {
        std::process::id() == self.pid
            && self.run.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Whether this is a fork's child of the process that opened the run.
    #[getter]
    fn forked(&self) -> bool {
        std::process::id() != self.pid
    }

    /// Records dropped under the lossy backpressure policy.
    #[getter]
    fn dropped(&self) -> PyResult<u64> {
        self.with(|run| Ok(run.dropped()))
    }

    /// A file operation on folder `dir` (see `files.rs`).
    #[pyo3(signature = (op, dir, *args, **kwargs))]
    fn files(
        &self,
        py: Python<'_>,
        op: &str,
        dir: &str,
        args: &Bound<'_, PyTuple>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let store = self.with(|run| Ok(run.files(dir)))?;
        files::call(py, store, op, args, kwargs)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // A run collected without a close completes (the engine's drop drains
        // it; in a fork's child it leaves the parent's run alone), with the
        // GIL released so other Python threads run meanwhile.
        if let Some(run) = self.run.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            Python::attach(|py| py.detach(move || drop(run)));
        }
    }
}

/// A metric stream: `MetricBuilder` of the SDK.
#[pyclass(frozen, module = "ml_dash_rs._core", name = "MetricBuilder")]
struct Metric {
    m: ml_dash::Metrics,
    remote: bool,
}

#[pymethods]
impl Metric {
    /// Logs one point; `_ts=` seconds or `-1` (this thread's previous
    /// timestamp). Returns the builder, for chaining.
    #[pyo3(signature = (**fields))]
    fn log<'py>(
        slf: &Bound<'py, Self>,
        fields: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        let this = slf.get();
        match fields {
            Some(f) => with_fields(f, this.remote, |f| this.m.log(f))?,
            None => this.m.log(&[]).map_err(py_err)?,
        }
        Ok(slf.clone())
    }

    /// Kept for chaining, as in the SDK: `flush()` of the experiment stores.
    fn flush<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }
}

/// `exp.metrics`: `metrics("train")` (cached per name) and the unnamed stream's
/// `log`, with the SDK's fan-out form `log(epoch=1, train={..}, eval={..})`.
#[pyclass(frozen, module = "ml_dash_rs._core")]
struct MetricsManager {
    run: Py<Run>,
    cache: Py<PyDict>,
    unnamed: Py<Metric>,
}

#[pymethods]
impl MetricsManager {
    #[new]
    fn new(py: Python<'_>, run: Py<Run>) -> PyResult<Self> {
        let unnamed = Py::new(py, run.get().metric(None, None, None, None)?)?;
        Ok(MetricsManager {
            run,
            cache: PyDict::new(py).unbind(),
            unnamed,
        })
    }

    /// The stream `name` (the same builder on every call; description, tags
    /// and metadata count on the first, as in the SDK).
    #[pyo3(signature = (name, description=None, tags=None, metadata=None))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyString>,
        description: Option<String>,
        tags: Option<Vec<String>>,
        metadata: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let cache = self.cache.bind(py);
        if let Some(m) = cache.get_item(name)? {
            return Ok(m);
        }
        let metric = self
            .run
            .get()
            .metric(Some(name.to_str()?), description, tags, metadata)?;
        let m = Bound::new(py, metric)?.into_any();
        // Two threads may race here: the first builder stored wins.
        cache.call_method1("setdefault", (name, m))
    }

    /// Logs to the unnamed stream; dict values go to the stream of their key
    /// with the other fields in them, all with one timestamp.
    #[pyo3(signature = (_flush=false, **fields))]
    fn log<'py>(
        slf: &Bound<'py, Self>,
        py: Python<'py>,
        _flush: bool,
        fields: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        let this = slf.get();
        let unnamed = this.unnamed.get();
        if let Some(f) = fields {
            let groups = PyDict::new(py);
            let scalars = PyDict::new(py);
            for (k, v) in f.iter() {
                if v.is_instance_of::<PyDict>() {
                    groups.set_item(k, v)?;
                } else {
                    scalars.set_item(k, v)?;
                }
            }
            if groups.is_empty() {
                with_fields(f, unnamed.remote, |f| unnamed.m.log(f))?;
            } else {
                let mut handles = Vec::with_capacity(groups.len());
                for (k, v) in groups.iter() {
                    let name = k.cast_into::<PyString>()?;
                    let m = this.__call__(py, &name, None, None, None)?;
                    handles.push((m.cast_into::<Metric>()?, v.cast_into::<PyDict>()?));
                }
                convert::log_groups(&unnamed.m, unnamed.remote, &scalars, &handles)?;
            }
        }
        if _flush {
            this.run.get().flush(py)?;
        }
        Ok(slf.clone())
    }

    /// Kept for chaining, as in the SDK.
    fn flush<'py>(slf: &Bound<'py, Self>) -> Bound<'py, Self> {
        slf.clone()
    }
}

/// A track topic.
#[pyclass(frozen, module = "ml_dash_rs._core")]
struct Track {
    t: ml_dash::Track,
    remote: bool,
}

#[pymethods]
impl Track {
    /// Appends a row at `_ts` (seconds, or `-1`) or the wall clock.
    #[pyo3(signature = (**fields))]
    fn append<'py>(
        slf: &Bound<'py, Self>,
        fields: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        let this = slf.get();
        match fields {
            Some(f) => with_fields(f, this.remote, |f| this.t.append(f))?,
            None => this.t.append(&[]).map_err(py_err)?,
        }
        Ok(slf.clone())
    }
}

/// The engine's `BufferConfig::from_env()` as a dict (the defaults with the
/// `ML_DASH_*` variables applied); `ValueError` names a bad variable.
#[pyfunction]
fn buffer_config_from_env(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let c = BufferConfig::from_env().map_err(py_err)?;
    let d = PyDict::new(py);
    d.set_item("flush_interval", c.flush_interval.as_secs_f64())?;
    d.set_item("log_batch_size", c.log_batch_size)?;
    d.set_item("metric_batch_size", c.metric_batch_size)?;
    d.set_item("track_batch_size", c.track_batch_size)?;
    d.set_item("file_upload_workers", c.file_upload_workers)?;
    d.set_item("buffer_enabled", c.buffer_enabled)?;
    d.set_item("max_retries", c.max_retries)?;
    d.set_item("retry_base_delay", c.retry_base_delay.as_secs_f64())?;
    d.set_item("retry_max_delay", c.retry_max_delay.as_secs_f64())?;
    d.set_item("ring_capacity", c.ring_capacity)?;
    d.set_item("memory_budget", c.memory_budget)?;
    d.set_item("max_record_bytes", c.max_record_bytes)?;
    let policy = match c.backpressure {
        ml_dash::Backpressure::DropNewest => "drop",
        _ => "block",
    };
    d.set_item("backpressure", policy)?;
    d.set_item("sync_on_flush", c.sync_on_flush)?;
    d.set_item("quiet", c.quiet)?;
    Ok(d)
}

/// A `BufferConfig` from the dict of its fields (every field present).
fn buffer_config(d: &Bound<'_, PyDict>) -> PyResult<BufferConfig> {
    fn get<'py, T: for<'a> FromPyObject<'a, 'py>>(d: &Bound<'py, PyDict>, k: &str) -> PyResult<T> {
        match d.get_item(k)? {
            Some(v) => v.extract::<T>().map_err(|e| {
                let e: PyErr = e.into();
                PyValueError::new_err(format!("BufferConfig.{k}: {e}"))
            }),
            None => Err(PyValueError::new_err(format!(
                "BufferConfig.{k} is missing"
            ))),
        }
    }
    let secs = |k: &str| -> PyResult<std::time::Duration> {
        let s: f64 = get(d, k)?;
        std::time::Duration::try_from_secs_f64(s).map_err(|_| {
            PyValueError::new_err(format!(
                "BufferConfig.{k}={s}: use a number of seconds, at least 0"
            ))
        })
    };
    let mut c = BufferConfig::default();
    c.flush_interval = secs("flush_interval")?;
    c.log_batch_size = get(d, "log_batch_size")?;
    c.metric_batch_size = get(d, "metric_batch_size")?;
    c.track_batch_size = get(d, "track_batch_size")?;
    c.file_upload_workers = get(d, "file_upload_workers")?;
    c.buffer_enabled = get(d, "buffer_enabled")?;
    c.max_retries = get(d, "max_retries")?;
    c.retry_base_delay = secs("retry_base_delay")?;
    c.retry_max_delay = secs("retry_max_delay")?;
    c.ring_capacity = get(d, "ring_capacity")?;
    c.memory_budget = get(d, "memory_budget")?;
    c.max_record_bytes = get(d, "max_record_bytes")?;
    c.backpressure = match get::<String>(d, "backpressure")?.as_str() {
        "block" => ml_dash::Backpressure::Block,
        "drop" => ml_dash::Backpressure::DropNewest,
        other => {
            return Err(PyValueError::new_err(format!(
                "BufferConfig.backpressure={other:?}: use \"block\" or \"drop\" (lossy, counted)"
            )));
        }
    };
    c.sync_on_flush = get(d, "sync_on_flush")?;
    c.quiet = get(d, "quiet")?;
    Ok(c)
}

/// Checks a log level as the SDK's `LogLevel.validate` does; returns it lowercased.
#[pyfunction]
fn validate_level(level: &str) -> PyResult<&'static str> {
    level.parse::<Level>().map(Level::as_str).map_err(py_err)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Run>()?;
    m.add_class::<Metric>()?;
    fast::install(&m.py().get_type::<Metric>())?;
    m.add_class::<MetricsManager>()?;
    m.add_class::<Track>()?;
    m.add_function(wrap_pyfunction!(buffer_config_from_env, m)?)?;
    m.add_function(wrap_pyfunction!(validate_level, m)?)?;
    m.add_function(wrap_pyfunction!(errors::register, m)?)?;
    m.add_class::<Floor>()?;
    m.add("ENGINE_VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// Methods that do nothing: the floor of a PyO3 call, for `perf/py_bench.py`.
#[pyclass(frozen, module = "ml_dash_rs._core")]
struct Floor;

#[pymethods]
impl Floor {
    #[new]
    fn new() -> Self {
        Floor
    }

    /// Two named keyword arguments (PyO3's cheapest keyword call).
    #[pyo3(signature = (*, loss, step))]
    fn log(&self, loss: &Bound<'_, PyAny>, step: &Bound<'_, PyAny>) {
        let _ = (loss, step);
    }

    /// Any keyword arguments (PyO3 builds a dict for them).
    #[pyo3(signature = (**fields))]
    fn log_kwargs(&self, fields: Option<&Bound<'_, PyDict>>) {
        let _ = fields;
    }
}
