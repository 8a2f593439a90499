//! Python values to the engine's `Value`s, borrowed where they can be.
//!
//! A field's value is, in this order: an exact `float`; a `bool`; an `int`
//! (to `i64`, or `u64` above it); a `str` (borrowed, no copy); `None`; a
//! `float` subclass (`numpy.float64`); a `dict`, `list` or `tuple` (nested, as
//! the SDK stores them); anything with `.item()` (numpy scalars, 0-d arrays, a
//! 0-d torch tensor: its Python scalar) or `.tolist()` (numpy arrays). Neither
//! numpy nor torch is imported. Anything else is a `TypeError` naming the field.

use ml_dash::{Error, Fields, Metrics, Value};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value as Json};
use smallvec::SmallVec;

use crate::Metric;
use crate::errors::py_err;

/// Fields of most calls fit here without a heap allocation.
pub(crate) const INLINE: usize = 8;

/// One converted value: what `Value` borrows from lives here.
pub(crate) enum Held<'a, 'py> {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Null,
    /// Borrowed as `&str` (the dict or `item()` result keeps it alive).
    Str(Bound<'py, PyString>),
    /// A `str` argument of the call, borrowed for the call's length.
    Text(&'a str),
    Json(Json),
}

impl Held<'_, '_> {
    pub(crate) fn value(&self) -> PyResult<Value<'_>> {
        Ok(match self {
            Held::F64(v) => Value::F64(*v),
            Held::I64(v) => Value::I64(*v),
            Held::U64(v) => Value::U64(*v),
            Held::Bool(v) => Value::Bool(*v),
            Held::Null => Value::Null,
            Held::Str(s) => Value::Str(s.to_str()?),
            Held::Text(s) => Value::Str(s),
            Held::Json(j) => Value::Json(j),
        })
    }
}

/// Converts `v` (the field `key`), following the order in the module doc.
pub(crate) fn held<'a, 'py>(
    key: &str,
    v: &Bound<'py, PyAny>,
    finite: bool,
) -> PyResult<Held<'a, 'py>> {
    let h = if let Ok(f) = v.cast_exact::<PyFloat>() {
        Held::F64(f.value())
    } else if let Ok(b) = v.cast::<PyBool>() {
        Held::Bool(b.is_true())
    } else if v.is_instance_of::<PyInt>() {
        int(key, v)?
    } else if let Ok(s) = v.cast::<PyString>() {
        Held::Str(s.clone())
    } else if v.is_none() {
        Held::Null
    } else if let Ok(f) = v.cast::<PyFloat>() {
        Held::F64(f.value())
    } else if v.is_instance_of::<PyDict>()
        || v.is_instance_of::<PyList>()
        || v.is_instance_of::<PyTuple>()
    {
        Held::Json(json_at(key, v, finite, 0)?)
    } else if let Some(inner) = method(v, "item") {
        return held(key, &inner, finite);
    } else if let Some(list) = method(v, "tolist") {
        Held::Json(json_at(key, &list, finite, 0)?)
    } else {
        return Err(not_a_value(key, v));
    };
    if finite && let Held::F64(x) = h {
        check_finite(key, x)?;
    }
    Ok(h)
}

fn int<'a, 'py>(key: &str, v: &Bound<'py, PyAny>) -> PyResult<Held<'a, 'py>> {
    if let Ok(i) = v.extract::<i64>() {
        Ok(Held::I64(i))
    } else if let Ok(u) = v.extract::<u64>() {
        Ok(Held::U64(u))
    } else {
        Err(PyValueError::new_err(format!(
            "field {key:?}: the integer {v} does not fit in 64 bits: log it as a float or a string"
        )))
    }
}

/// `v.name()` when `v` has such a method (`item`, `tolist`) and it succeeds
/// (`item()` of an array of several elements fails: `tolist()` is next).
fn method<'py>(v: &Bound<'py, PyAny>, name: &str) -> Option<Bound<'py, PyAny>> {
    v.getattr(name).ok()?.call0().ok()
}

pub(crate) fn check_finite(key: &str, x: f64) -> PyResult<()> {
    if x.is_finite() {
        return Ok(());
    }
    Err(PyValueError::new_err(format!(
        "cannot log a non-finite value ({x}) in field {key:?}: the remote server does not \
         accept NaN or inf (a local-only run stores them)"
    )))
}

fn not_a_value(key: &str, v: &Bound<'_, PyAny>) -> PyErr {
    let ty = v
        .get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string());
    PyTypeError::new_err(format!(
        "field {key:?}: a value of type {ty} cannot be logged: use a number, bool, str, None, \
         a list or dict of them, or an object with .item() (a 0-d tensor or numpy scalar)"
    ))
}

/// Deepest nesting of lists and dicts, as the engine's.
const MAX_DEPTH: usize = 64;

/// Any loggable Python value as JSON (for nested values, metadata, parameters).
/// Non-finite floats are refused when `finite`, else kept as the JSON
/// tokens the SDK writes (`NaN`, `Infinity`) only at the top level of a field:
/// inside lists and dicts serde_json has no place for them, so they are null.
fn json_at(key: &str, v: &Bound<'_, PyAny>, finite: bool, depth: usize) -> PyResult<Json> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "field {key:?} nests lists and dicts more than {MAX_DEPTH} deep"
        )));
    }
    if let Ok(d) = v.cast::<PyDict>() {
        let mut m = Map::with_capacity(d.len());
        for (k, item) in d.iter() {
            let k = match k.cast::<PyString>() {
                Ok(s) => s.to_str()?.to_owned(),
                Err(_) => k.str()?.to_str()?.to_owned(),
            };
            let j = json_at(&k, &item, finite, depth + 1)?;
            m.insert(k, j);
        }
        return Ok(Json::Object(m));
    }
    if v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>() {
        let mut out = Vec::new();
        for item in v.try_iter()? {
            out.push(json_at(key, &item?, finite, depth + 1)?);
        }
        return Ok(Json::Array(out));
    }
    Ok(match held(key, v, finite)? {
        Held::F64(x) => Number::from_f64(x).map_or(Json::Null, Json::Number),
        Held::I64(i) => Json::from(i),
        Held::U64(u) => Json::from(u),
        Held::Bool(b) => Json::Bool(b),
        Held::Null => Json::Null,
        Held::Str(s) => Json::String(s.to_str()?.to_owned()),
        Held::Text(s) => Json::String(s.to_owned()),
        Held::Json(j) => j,
    })
}

/// A Python value (metadata, parameters) as JSON.
pub fn json_of(v: &Bound<'_, PyAny>) -> PyResult<Json> {
    json_at("", v, false, 0)
}

/// The keyword arguments of a call as the engine's fields.
struct Converted<'py> {
    keys: SmallVec<[Bound<'py, PyString>; INLINE]>,
    held: SmallVec<[Held<'static, 'py>; INLINE]>,
}

fn convert<'py>(d: &Bound<'py, PyDict>, finite: bool) -> PyResult<Converted<'py>> {
    let mut c = Converted {
        keys: SmallVec::with_capacity(d.len()),
        held: SmallVec::with_capacity(d.len()),
    };
    for (k, v) in d.iter() {
        // Keyword names are always str; a dict passed as **d may not be.
        let k = k.cast_into::<PyString>().map_err(|e| {
            PyTypeError::new_err(format!("field names must be str, not {}", e.into_inner()))
        })?;
        let h = held(k.to_str()?, &v, finite)?;
        c.keys.push(k);
        c.held.push(h);
    }
    Ok(c)
}

impl Converted<'_> {
    fn fields(&self) -> PyResult<SmallVec<[(&str, Value<'_>); INLINE]>> {
        let mut f = SmallVec::with_capacity(self.keys.len());
        for (k, h) in self.keys.iter().zip(&self.held) {
            f.push((k.to_str()?, h.value()?));
        }
        Ok(f)
    }
}

/// Runs `f` on the fields of `d`; an engine error becomes a Python exception.
pub fn with_fields<R>(
    d: &Bound<'_, PyDict>,
    finite: bool,
    f: impl FnOnce(&Fields<'_>) -> Result<R, Error>,
) -> PyResult<R> {
    let c = convert(d, finite)?;
    let fields = c.fields()?;
    f(&fields).map_err(py_err)
}

/// The SDK's `metrics.log(epoch=1, train={..}, eval={..})`.
pub fn log_groups(
    unnamed: &Metrics,
    finite: bool,
    scalars: &Bound<'_, PyDict>,
    groups: &[(Bound<'_, Metric>, Bound<'_, PyDict>)],
) -> PyResult<()> {
    let s = convert(scalars, finite)?;
    let converted: Vec<Converted<'_>> = groups
        .iter()
        .map(|(_, d)| convert(d, finite))
        .collect::<PyResult<_>>()?;
    let sf = s.fields()?;
    let gf: Vec<_> = converted
        .iter()
        .map(Converted::fields)
        .collect::<PyResult<_>>()?;
    let pairs: Vec<(&Metrics, &Fields<'_>)> = groups
        .iter()
        .zip(&gf)
        .map(|((m, _), f)| (&m.get().m, f.as_slice()))
        .collect();
    unnamed.log_groups(&sf, &pairs).map_err(py_err)
}
