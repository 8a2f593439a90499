//! `MetricBuilder.log(**fields)` as a raw vectorcall method.
//!
//! CPython hands a `METH_FASTCALL | METH_KEYWORDS` method its keyword
//! arguments as an array of values and a tuple of (interned) names; a PyO3
//! `**kwargs` method first builds a dict of them, which cost about as much as
//! the rest of the call (`perf/RESULTS.md`, "Python"). This method reads the
//! array in place: names and `str` values are borrowed, exact `float`, `int`,
//! `bool` and `None` are read without a call, anything else goes through
//! `convert::held` like every other call. It is installed over the PyO3
//! method of the same name when the module is imported.

use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;
use smallvec::SmallVec;

use crate::Metric;
use crate::convert::{Held, INLINE, check_finite, held};
use crate::errors::py_err;

/// Replaces `MetricBuilder.log` with [`metric_log`].
pub fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"log".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: metric_log,
        },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: c"log(**fields): logs one point (`_ts=` seconds or -1); returns the builder."
            .as_ptr(),
    }));
    // SAFETY: `ty` is a live type object and `def` lives for the rest of the
    // process (leaked); a new reference or null (with an exception set) is
    // returned, which `from_owned_ptr_or_err` takes over.
    let descr = unsafe {
        Bound::from_owned_ptr_or_err(ty.py(), ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))?
    };
    ty.setattr("log", descr)
}

/// The C entry point: converts errors and panics into Python exceptions.
unsafe extern "C" fn metric_log(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls a method with the GIL held (or, free-threaded,
    // with this thread attached).
    let py = unsafe { Python::assume_attached() };
    // SAFETY: the arguments are as CPython passes them to a FASTCALL |
    // KEYWORDS method whose descriptor checked `slf`'s type (`log` below).
    let result = catch_unwind(AssertUnwindSafe(|| unsafe {
        log(py, slf, args, nargsf, kwnames)
    }));
    let err = match result {
        Ok(Ok(())) => {
            // SAFETY: `slf` is a live object; the new reference is the result.
            unsafe { ffi::Py_IncRef(slf) };
            return slf;
        }
        Ok(Err(e)) => e,
        Err(_) => PyRuntimeError::new_err(
            "ml-dash panicked in MetricBuilder.log (a bug, please report it)",
        ),
    };
    err.restore(py);
    std::ptr::null_mut()
}

/// # Safety
/// `slf` is a `MetricBuilder`; `args` holds `nargs + len(kwnames)` borrowed
/// references; `kwnames` is null or a tuple of `str`.
unsafe fn log(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<()> {
    // SAFETY: the method descriptor only calls this with an instance of the
    // type it was made for (`install`), a frozen pyclass read through `get`.
    let this: &Metric =
        unsafe { pyo3::Borrowed::from_ptr(py, slf).cast_unchecked::<Metric>() }.get();
    // SAFETY: `nargsf` is the vectorcall argument count (with its flag bit).
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargsf as usize) };
    if nargs != 0 {
        return Err(PyTypeError::new_err(
            "log() takes keyword arguments only: log(loss=0.5, step=3)",
        ));
    }
    if kwnames.is_null() {
        return this.m.log(&[]).map_err(py_err);
    }
    // SAFETY: `kwnames` is a tuple (the calling convention).
    let n = unsafe { ffi::PyTuple_GET_SIZE(kwnames) };
    let mut keys: SmallVec<[&str; INLINE]> = SmallVec::with_capacity(n as usize);
    let mut vals: SmallVec<[Held<'_, '_>; INLINE]> = SmallVec::with_capacity(n as usize);
    for i in 0..n {
        // SAFETY: `i < n`; the names and values are borrowed for this call,
        // which outlives every `&str` taken from them here.
        let (k, v) = unsafe { (ffi::PyTuple_GET_ITEM(kwnames, i), *args.offset(i)) };
        let key = unsafe { utf8(py, k)? };
        let h = unsafe { value(py, key, v, this.remote)? };
        keys.push(key);
        vals.push(h);
    }
    let mut fields: SmallVec<[(&str, ml_dash::Value<'_>); INLINE]> =
        SmallVec::with_capacity(keys.len());
    for (k, h) in keys.iter().zip(&vals) {
        fields.push((k, h.value()?));
    }
    this.m.log(&fields).map_err(py_err)
}

/// The UTF-8 of the `str` `s`, borrowed (CPython caches it in the object).
///
/// # Safety
/// `s` is a live `str` that outlives `'a`.
unsafe fn utf8<'a>(py: Python<'_>, s: *mut ffi::PyObject) -> PyResult<&'a str> {
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a str; the buffer lives as long as `s`.
    let p = unsafe { ffi::PyUnicode_AsUTF8AndSize(s, &mut len) };
    if p.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: CPython returns `len` bytes of valid UTF-8 at `p`.
    Ok(
        unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(p.cast(), len as usize))
        },
    )
}

/// One value: the exact built-in scalars directly, the rest as every call does.
///
/// # Safety
/// `v` is a live object that outlives `'a`.
unsafe fn value<'a, 'py>(
    py: Python<'py>,
    key: &str,
    v: *mut ffi::PyObject,
    finite: bool,
) -> PyResult<Held<'a, 'py>> {
    // SAFETY (each block): `v` is a live object; the checks are the C API's
    // own type tests, and the reads match the type just tested.
    unsafe {
        if ffi::PyFloat_CheckExact(v) != 0 {
            let x = ffi::PyFloat_AS_DOUBLE(v);
            if finite {
                check_finite(key, x)?;
            }
            return Ok(Held::F64(x));
        }
        if ffi::PyLong_CheckExact(v) != 0 {
            let mut overflow: c_int = 0;
            let i = ffi::PyLong_AsLongLongAndOverflow(v, &mut overflow);
            if overflow == 0 && (i != -1 || ffi::PyErr_Occurred().is_null()) {
                return Ok(Held::I64(i));
            }
            ffi::PyErr_Clear();
        } else if v == ffi::Py_True() {
            return Ok(Held::Bool(true));
        } else if v == ffi::Py_False() {
            return Ok(Held::Bool(false));
        } else if v == ffi::Py_None() {
            return Ok(Held::Null);
        } else if ffi::PyUnicode_CheckExact(v) != 0 {
            return Ok(Held::Text(utf8(py, v)?));
        }
        held(key, &pyo3::Borrowed::from_ptr(py, v), finite)
    }
}
