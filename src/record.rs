//! The encoded record that travels through a ring: plain bytes, no I/O.
//!
//! A record is a 24-byte header, an optional message, then its fields, padded
//! to a multiple of 8 bytes (the ring's framing relies on that):
//!
//! ```text
//! 0  u32 len      total bytes, multiple of 8 (the ring's framing word)
//! 4  u8  kind     Metric, Log, Track, Params, File (PAD belongs to the ring)
//! 5  u8  aux      log level / track flags
//! 6  u16 nfields
//! 8  u32 stream   stream or topic id
//! 12 u32 msg_len  bytes of the message (logs) or JSON text (params, files)
//! 16 u64 ts       wall clock, nanoseconds since the Unix epoch (0: none)
//! 24 message bytes, then per field: u8 name_len, u8 tag, name, value
//! ```
//!
//! Values are copied raw (a pointer-free "name and a double"); turning them
//! into JSON is the collector's job. All integers are little-endian. A list or
//! an object is a u32 byte length (of what follows), a u32 count, then its
//! members laid out as fields: a list's with empty names, an object's with
//! names of 0 to 255 bytes. The length lets a reader skip either in one step.

use std::mem::MaybeUninit;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::ring::SlotWriter;

/// Header size in bytes.
pub(crate) const HEADER: usize = 24;

/// Record kinds. `0` is reserved for the ring's padding record.
pub(crate) mod kind {
    pub(crate) const METRIC: u8 = 1;
    pub(crate) const LOG: u8 = 2;
    pub(crate) const TRACK: u8 = 3;
    pub(crate) const PARAMS: u8 = 4;
    pub(crate) const FILE: u8 = 5;
}

/// Track flag in `aux`: the caller gave the timestamp (`ts` holds its bits).
pub(crate) const TRACK_EXPLICIT_TS: u8 = 1;

/// Track flag in `aux`: the caller gave `-1`, the thread's previous timestamp
/// (`ts` is the time of the call, for a thread that has none).
pub(crate) const TRACK_PREVIOUS_TS: u8 = 2;

mod tag {
    pub(super) const F64: u8 = 0;
    pub(super) const I64: u8 = 1;
    pub(super) const U64: u8 = 2;
    pub(super) const BOOL: u8 = 3;
    pub(super) const STR: u8 = 4;
    pub(super) const F64S: u8 = 5;
    pub(super) const NULL: u8 = 6;
    pub(super) const LIST: u8 = 7;
    pub(super) const OBJECT: u8 = 8;
}

/// How deep values may nest (a list in an object is depth 2).
const MAX_DEPTH: u32 = 64;

// The hot path keeps a caller's fields in registers: a value stays three words.
const _: () = assert!(std::mem::size_of::<Value<'static>>() == 24);

/// One field value of a metric point, a track entry or log metadata.
///
/// Build it with `.into()` from `f64`, `f32`, the integer types, `bool`,
/// `&str`, `&String`, slices, arrays and `Vec`s of `f64`, `i64`, `&str` and
/// [`Value`], a nested point (`&[(&str, Value)]`), `&serde_json::Value`, or
/// with the [`point!`](crate::point) macro.
///
/// Nested objects and lists are stored as the Python SDK stores them: a
/// metric point and log metadata keep them nested; a track row in the local
/// store has its objects flattened into dotted keys (`{"cam": {"pos": [1, 2]}}`
/// becomes `"cam.pos": [1, 2]`, an empty object disappears, lists stay as
/// they are); the server gets every one of them nested.
///
/// # Examples
/// ```
/// use ml_dash::Value;
/// let cfg = serde_json::json!({"depth": 3});
/// let fields: [(&str, Value); 5] = [
///     ("loss", 0.5.into()),
///     ("step", 7u64.into()),
///     ("phase", "train".into()),
///     ("q", (&[0.1, 0.2][..]).into()),
///     ("cfg", (&cfg).into()),
/// ];
/// assert_eq!(fields[1].1, Value::I64(7));
/// assert_eq!(Value::from(u64::MAX), Value::U64(u64::MAX));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Value<'a> {
    /// A float; NaN and ±Infinity are stored as the tokens `NaN`, `Infinity`, `-Infinity`.
    F64(f64),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer above `i64::MAX`.
    U64(u64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(&'a str),
    /// A list of floats (track fields such as joint positions).
    F64s(&'a [f64]),
    /// JSON `null`.
    Null,
    /// A list of integers (`[1, 2, 3]`, stored as integers).
    I64s(&'a [i64]),
    /// A list of strings.
    Strs(&'a [&'a str]),
    /// A list of any values: mixed, or holding lists and objects.
    List(&'a [Value<'a>]),
    /// A nested object (keys may be empty, at most 255 bytes; values nest at
    /// most 64 deep).
    Object(&'a Fields<'a>),
    /// Any JSON value (objects keep their order; values nest at most 64 deep).
    Json(&'a serde_json::Value),
}

macro_rules! value_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {$(
        impl From<$t> for Value<'_> {
            #[inline]
            fn from($v: $t) -> Self { $e }
        }
    )*};
}
value_from! {
    f64 => |v| Value::F64(v),
    f32 => |v| Value::F64(f64::from(v)),
    i64 => |v| Value::I64(v),
    i32 => |v| Value::I64(i64::from(v)),
    i16 => |v| Value::I64(i64::from(v)),
    i8 => |v| Value::I64(i64::from(v)),
    u32 => |v| Value::I64(i64::from(v)),
    u16 => |v| Value::I64(i64::from(v)),
    u8 => |v| Value::I64(i64::from(v)),
    u64 => |v| i64::try_from(v).map_or(Value::U64(v), Value::I64),
    usize => |v| i64::try_from(v).map_or(Value::U64(v as u64), Value::I64),
    bool => |v| Value::Bool(v),
}
impl<'a> From<&'a str> for Value<'a> {
    #[inline]
    fn from(v: &'a str) -> Self {
        Value::Str(v)
    }
}
impl<'a> From<&'a String> for Value<'a> {
    #[inline]
    fn from(v: &'a String) -> Self {
        Value::Str(v)
    }
}
/// `From` for a slice, an array and a `Vec` of `$t`, as the variant `$v`.
macro_rules! value_from_list {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl<'a> From<&'a [$t]> for Value<'a> {
            #[inline]
            fn from(v: &'a [$t]) -> Self {
                Value::$v(v)
            }
        }
        impl<'a, const N: usize> From<&'a [$t; N]> for Value<'a> {
            #[inline]
            fn from(v: &'a [$t; N]) -> Self {
                Value::$v(v)
            }
        }
        impl<'a> From<&'a Vec<$t>> for Value<'a> {
            #[inline]
            fn from(v: &'a Vec<$t>) -> Self {
                Value::$v(v)
            }
        }
    )*};
}
value_from_list! {
    f64 => F64s,
    i64 => I64s,
    &'a str => Strs,
    Value<'a> => List,
    (&'a str, Value<'a>) => Object,
}
impl<'a> From<&'a serde_json::Value> for Value<'a> {
    #[inline]
    fn from(v: &'a serde_json::Value) -> Self {
        Value::Json(v)
    }
}
impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    #[inline]
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A list of named fields: `&[("loss", 0.5.into()), ("step", 3.into())]`.
///
/// # Examples
/// ```
/// # let root = tempfile::tempdir().unwrap();
/// # let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// let fields: &ml_dash::Fields = &[("loss", 0.5.into()), ("step", 3.into())];
/// run.metrics("train")?.log(fields)?;
/// assert_eq!(fields, &ml_dash::point! {"loss" => 0.5, "step" => 3}[..]);
/// # Ok::<(), ml_dash::Error>(())
/// ```
pub type Fields<'a> = [(&'a str, Value<'a>)];

/// Builds a `[(&str, Value); N]` field array: `point!{"loss" => 0.5, "step" => 3}`.
///
/// A value is anything with `Into<Value>`: a nested point is `&point!{..}`,
/// lists are slices or arrays (`&[1, 2]`, `&["a", "b"]`, `&[0.1, 0.2]`).
///
/// # Examples
/// ```
/// use ml_dash::point;
/// let p = point! {"loss" => 0.25, "step" => 7, "phase" => "train"};
/// assert_eq!(p.len(), 3);
/// let opt = point! {"lr" => 0.1, "betas" => &[0.9, 0.999]};
/// let q = point! {"opt" => &opt, "layers" => &[64, 64], "tags" => &["a", "b"]};
/// assert_eq!(q.len(), 3);
/// ```
#[macro_export]
macro_rules! point {
    ($($name:expr => $value:expr),* $(,)?) => {
        [$(($name, $crate::Value::from($value))),*]
    };
}

impl Value<'_> {
    /// Bytes after the tag of a scalar or an `F64s`; `None` for the lists and
    /// objects that [`nested_len`] sizes.
    #[inline(always)]
    fn flat_len(&self) -> Option<usize> {
        Some(match self {
            Value::F64(_) | Value::I64(_) | Value::U64(_) => 8,
            Value::Bool(_) => 1,
            Value::Null => 0,
            Value::Str(s) => 4 + s.len(),
            Value::F64s(v) => 4 + 8 * v.len(),
            _ => return None,
        })
    }
}

/// Why a record cannot be encoded.
enum Unencodable<'a> {
    /// A list or an object: not on the hot path (only `checked_len` sizes it).
    Nested,
    /// The field at this index has an empty or over-long name.
    Name(usize),
    /// A key of a nested object is over 255 bytes long.
    Key(&'a str),
    /// Values nest deeper than [`MAX_DEPTH`].
    Depth,
    /// `_ts` is not a finite number (or, on the hot path, is `-1`).
    Ts,
    /// The encoded size (over the limit, or too many fields); for a large
    /// nested value, the size measured when it passed the limit.
    TooLarge(usize),
}

/// Whether `v`, the value of a `_ts` field, is `-1`: the SDK's "same
/// timestamp as this thread's previous metric point or track row".
#[inline]
pub(crate) fn is_previous_ts(v: &Value<'_>) -> bool {
    matches!(v, Value::I64(-1) | Value::F64(-1.0))
}

/// Whether `v` is a valid `_ts`: a finite number; `-1` only if `previous`.
/// Out of line: inlined, it keeps the compiler from folding [`measure`] to a
/// constant for a caller's literal field names (+20 ns for 8 fields).
#[inline(never)]
fn ts_ok(v: &Value<'_>, previous: bool) -> bool {
    match v {
        Value::F64(x) => x.is_finite() && (previous || *x != -1.0),
        Value::I64(x) => previous || *x != -1,
        Value::U64(_) => true,
        _ => false,
    }
}

/// The encoded size of a record, padded to 8, or why it cannot be encoded.
/// `previous`: a `_ts` of `-1` is valid (else it is `Ts`, for the general path).
/// `FLAT`: refuse lists and objects (`Nested`) rather than walk them, which
/// keeps the hot path's loop as small as it was before they existed (the
/// compiler unrolls it and folds a literal point's size to a constant).
#[inline(always)]
fn measure<'a, const FLAT: bool>(
    msg: &[u8],
    fields: &Fields<'a>,
    max: usize,
    previous: bool,
) -> Result<usize, Unencodable<'a>> {
    let mut n = HEADER + msg.len();
    for (i, (name, v)) in fields.iter().enumerate() {
        // One compare for "1 to 255 bytes".
        if name.len().wrapping_sub(1) >= u8::MAX as usize {
            return Err(Unencodable::Name(i));
        }
        if name.len() == 3 && *name == "_ts" && !ts_ok(v, previous) {
            return Err(Unencodable::Ts);
        }
        n += 2 + name.len();
        n += match v.flat_len() {
            Some(len) => len,
            None if FLAT => return Err(Unencodable::Nested),
            None => nested_len(v, max.saturating_sub(n))?,
        };
    }
    let n = (n + 7) & !7;
    // `max` is at most u32::MAX (BufferConfig::validate), so a record within it
    // also has a message length that fits the header's u32.
    if n > max || fields.len() > u16::MAX as usize {
        return Err(Unencodable::TooLarge(n));
    }
    Ok(n)
}

/// The encoded size of a record, padded to 8; `None` for one that cannot be
/// encoded ([`checked_len`] says why), has `_ts = -1` (the producer checks
/// that its thread has a previous timestamp) or holds a list or an object
/// (which takes the general path). The hot path's check: no error values.
#[inline(always)]
pub(crate) fn encoded_len(msg: &[u8], fields: &Fields<'_>, max: usize) -> Option<usize> {
    measure::<true>(msg, fields, max, false).ok()
}

/// [`encoded_len`] and whether the record's `_ts` is `-1`, or the typed error
/// that says what is wrong with the record.
#[cold]
pub(crate) fn checked_len(msg: &[u8], fields: &Fields<'_>, max: usize) -> Result<(usize, bool)> {
    match measure::<false>(msg, fields, max, true) {
        Ok(n) => {
            let previous = (fields.iter()).any(|(name, v)| *name == "_ts" && is_previous_ts(v));
            Ok((n, previous))
        }
        Err(Unencodable::Nested) => unreachable!("measure::<false> sizes nested values"),
        Err(Unencodable::Name(i)) => Err(bad_field(fields[i].0)),
        Err(Unencodable::Key(k)) => Err(Error::InvalidName {
            name: k.to_string(),
            reason: "a key of a nested object must be at most 255 bytes long",
        }),
        Err(Unencodable::Depth) => Err(Error::InvalidValue(format!(
            "a value nests deeper than {MAX_DEPTH} levels of lists and objects: flatten it, or save it as a file"
        ))),
        Err(Unencodable::Ts) => Err(bad_ts()),
        Err(Unencodable::TooLarge(n)) => Err(too_large(n, max)),
    }
}

/// The bytes after the tag of a list or object (or of a [`Value::Json`]), or
/// why it cannot be encoded. Past `room` bytes the walk stops (the record is
/// too large then): it visits at most `room` values, however often a value
/// shares its parts.
#[inline(never)]
fn nested_len<'a>(v: &Value<'a>, room: usize) -> Result<usize, Unencodable<'a>> {
    Sizer { room, depth: 0 }.value(v)
}

/// The walk of [`nested_len`]; it mirrors [`put_nested`] byte for byte.
struct Sizer {
    room: usize,
    depth: u32,
}

impl Sizer {
    /// For a value `measure` checked already.
    fn unbounded() -> Sizer {
        Sizer {
            room: usize::MAX,
            depth: 0,
        }
    }

    fn value<'a>(&mut self, v: &Value<'a>) -> Result<usize, Unencodable<'a>> {
        Ok(match v {
            Value::F64(_) | Value::I64(_) | Value::U64(_) => 8,
            Value::Bool(_) => 1,
            Value::Null => 0,
            Value::Str(s) => 4 + s.len(),
            Value::F64s(xs) => 4 + 8 * xs.len(),
            Value::I64s(xs) => 8 + 10 * xs.len(),
            Value::Strs(ss) => self.items(ss.iter(), |_, s| Ok(6 + s.len()))?,
            Value::List(vs) => self.items(vs.iter(), |z, v| Ok(2 + z.value(v)?))?,
            Value::Object(fs) => self.items(fs.iter(), |z, (k, v)| Ok(z.key(k)? + z.value(v)?))?,
            Value::Json(j) => self.json(j)?,
        })
    }

    fn json<'a>(&mut self, j: &'a Json) -> Result<usize, Unencodable<'a>> {
        Ok(match j {
            Json::Null => 0,
            Json::Bool(_) => 1,
            Json::Number(_) => 8,
            Json::String(s) => 4 + s.len(),
            Json::Array(vs) => self.items(vs.iter(), |z, v| Ok(2 + z.json(v)?))?,
            Json::Object(m) => self.items(m.iter(), |z, (k, v)| Ok(z.key(k)? + z.json(v)?))?,
        })
    }

    /// A member's name bytes: its length, tag and text.
    fn key<'a>(&self, k: &'a str) -> Result<usize, Unencodable<'a>> {
        if k.len() > u8::MAX as usize {
            return Err(Unencodable::Key(k));
        }
        Ok(2 + k.len())
    }

    /// A list or object: its length and count, then each item's bytes by `size`.
    fn items<'a, T>(
        &mut self,
        items: impl Iterator<Item = T>,
        mut size: impl FnMut(&mut Self, T) -> Result<usize, Unencodable<'a>>,
    ) -> Result<usize, Unencodable<'a>> {
        if self.depth == MAX_DEPTH {
            return Err(Unencodable::Depth);
        }
        self.depth += 1;
        let mut n = 8;
        for item in items {
            n += size(self, item)?;
            if n > self.room {
                return Err(Unencodable::TooLarge(n));
            }
        }
        self.depth -= 1;
        Ok(n)
    }
}

#[cold]
fn bad_ts() -> Error {
    Error::InvalidValue(
        "`_ts` must be a finite number of seconds since the Unix epoch, or -1 for the \
         timestamp of this thread's previous metric point or track row"
            .into(),
    )
}

/// A metric point with `_ts = -1` from a thread that has no previous one.
#[cold]
pub(crate) fn no_previous_ts() -> Error {
    Error::InvalidValue(
        "`_ts = -1` takes the timestamp of this thread's previous metric point or track row \
         in this run, and this thread has none yet: log that point without `_ts` or with \
         an explicit timestamp"
            .into(),
    )
}

#[cold]
fn too_large(size: usize, limit: usize) -> Error {
    Error::RecordTooLarge { size, limit }
}

#[cold]
fn bad_field(name: &str) -> Error {
    Error::InvalidName {
        name: name.to_string(),
        reason: "a field name must be 1 to 255 bytes long",
    }
}

/// What a record says about itself, apart from its fields.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Head {
    pub(crate) kind: u8,
    pub(crate) aux: u8,
    pub(crate) stream: u32,
    pub(crate) ts: u64,
}

/// A record to encode into a ring slot.
pub(crate) struct Encoder<'a> {
    pub(crate) head: Head,
    pub(crate) msg: &'a [u8],
    pub(crate) fields: &'a Fields<'a>,
}

// SAFETY: `encode` zeroes the slot's last 8 bytes, then writes from offset 0
// without gaps; `SlotWriter::finish` asserts (panics otherwise) that it stopped
// within those 8 bytes, so every byte of `out` is initialised.
#[allow(unsafe_code)]
unsafe impl crate::ring::Fill for Encoder<'_> {
    #[inline(always)]
    fn fill(&mut self, out: &mut [MaybeUninit<u8>]) {
        encode(out, self.head, self.msg, self.fields);
    }
}

/// Writes one record into `out`, which is exactly `encoded_len` (or
/// `checked_len`) bytes long. Lists and objects are written by cold, out of
/// line functions, so the loop for flat records stays as small as it was
/// (for a literal point their arms fold away).
#[inline(always)]
pub(crate) fn encode(out: &mut [MaybeUninit<u8>], head: Head, msg: &[u8], fields: &Fields<'_>) {
    let len = out.len() as u32;
    let mut w = SlotWriter::new(out);
    let mut h = [0u8; HEADER];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4] = head.kind;
    h[5] = head.aux;
    h[6..8].copy_from_slice(&(fields.len() as u16).to_le_bytes());
    h[8..12].copy_from_slice(&head.stream.to_le_bytes());
    h[12..16].copy_from_slice(&(msg.len() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&head.ts.to_le_bytes());
    w.put(h);
    if !msg.is_empty() {
        w.put_slice(msg);
    }
    for (name, v) in fields {
        let t = match v {
            Value::F64(_) => tag::F64,
            Value::I64(_) => tag::I64,
            Value::U64(_) => tag::U64,
            Value::Bool(_) => tag::BOOL,
            Value::Str(_) => tag::STR,
            Value::F64s(_) => tag::F64S,
            Value::Null => tag::NULL,
            _ => tag_of(v),
        };
        w.put([name.len() as u8, t]);
        w.put_slice(name.as_bytes());
        match v {
            Value::F64(x) => w.put(x.to_le_bytes()),
            Value::I64(x) => w.put(x.to_le_bytes()),
            Value::U64(x) => w.put(x.to_le_bytes()),
            Value::Bool(b) => w.put([u8::from(*b)]),
            Value::Null => {}
            Value::Str(s) => {
                w.put((s.len() as u32).to_le_bytes());
                w.put_slice(s.as_bytes());
            }
            Value::F64s(xs) => {
                w.put((xs.len() as u32).to_le_bytes());
                for x in *xs {
                    w.put(x.to_le_bytes());
                }
            }
            _ => put_nested(&mut w, v),
        }
    }
    w.finish();
}

/// The tag of any value.
#[cold]
#[inline(never)]
fn tag_of(v: &Value<'_>) -> u8 {
    match v {
        Value::F64(_) => tag::F64,
        Value::I64(_) => tag::I64,
        Value::U64(_) => tag::U64,
        Value::Bool(_) => tag::BOOL,
        Value::Str(_) => tag::STR,
        Value::F64s(_) => tag::F64S,
        Value::Null => tag::NULL,
        Value::I64s(_) | Value::Strs(_) | Value::List(_) => tag::LIST,
        Value::Object(_) => tag::OBJECT,
        Value::Json(j) => json_tag(j),
    }
}

fn json_tag(j: &Json) -> u8 {
    match j {
        Json::Null => tag::NULL,
        Json::Bool(_) => tag::BOOL,
        Json::Number(x) if x.is_i64() => tag::I64,
        Json::Number(x) if x.is_u64() => tag::U64,
        Json::Number(_) => tag::F64,
        Json::String(_) => tag::STR,
        Json::Array(_) => tag::LIST,
        Json::Object(_) => tag::OBJECT,
    }
}

/// Writes the bytes after the tag of any value (the lists and objects that
/// [`encode`] leaves to it): exactly the bytes [`Sizer`] counts. Each list and
/// object is sized again for its length word (`measure` checked the record,
/// so the walk cannot fail): linear in its size times its depth.
#[cold]
#[inline(never)]
fn put_nested(w: &mut SlotWriter<'_>, v: &Value<'_>) {
    let size = || Sizer::unbounded().value(v).unwrap_or(0);
    match v {
        Value::F64(x) => w.put(x.to_le_bytes()),
        Value::I64(x) => w.put(x.to_le_bytes()),
        Value::U64(x) => w.put(x.to_le_bytes()),
        Value::Bool(b) => w.put([u8::from(*b)]),
        Value::Null => {}
        Value::Str(s) => put_str(w, s),
        Value::F64s(xs) => {
            w.put((xs.len() as u32).to_le_bytes());
            for x in *xs {
                w.put(x.to_le_bytes());
            }
        }
        Value::I64s(xs) => {
            begin(w, size(), xs.len());
            for x in *xs {
                w.put([0, tag::I64]);
                w.put(x.to_le_bytes());
            }
        }
        Value::Strs(ss) => {
            begin(w, size(), ss.len());
            for s in *ss {
                w.put([0, tag::STR]);
                put_str(w, s);
            }
        }
        Value::List(vs) => {
            begin(w, size(), vs.len());
            for v in *vs {
                w.put([0, tag_of(v)]);
                put_nested(w, v);
            }
        }
        Value::Object(fs) => {
            begin(w, size(), fs.len());
            for (k, v) in *fs {
                w.put([k.len() as u8, tag_of(v)]);
                w.put_slice(k.as_bytes());
                put_nested(w, v);
            }
        }
        Value::Json(j) => put_json(w, j),
    }
}

fn put_json(w: &mut SlotWriter<'_>, j: &Json) {
    let size = || Sizer::unbounded().json(j).unwrap_or(0);
    match j {
        Json::Null => {}
        Json::Bool(b) => w.put([u8::from(*b)]),
        Json::Number(x) => {
            if let Some(i) = x.as_i64() {
                w.put(i.to_le_bytes());
            } else if let Some(u) = x.as_u64() {
                w.put(u.to_le_bytes());
            } else {
                w.put(x.as_f64().unwrap_or(f64::NAN).to_le_bytes());
            }
        }
        Json::String(s) => put_str(w, s),
        Json::Array(vs) => {
            begin(w, size(), vs.len());
            for v in vs {
                w.put([0, json_tag(v)]);
                put_json(w, v);
            }
        }
        Json::Object(m) => {
            begin(w, size(), m.len());
            for (k, v) in m {
                w.put([k.len() as u8, json_tag(v)]);
                w.put_slice(k.as_bytes());
                put_json(w, v);
            }
        }
    }
}

/// The length and count words of a list or object of `size` bytes in all.
fn begin(w: &mut SlotWriter<'_>, size: usize, count: usize) {
    w.put(((size - 4) as u32).to_le_bytes());
    w.put((count as u32).to_le_bytes());
}

fn put_str(w: &mut SlotWriter<'_>, s: &str) {
    w.put((s.len() as u32).to_le_bytes());
    w.put_slice(s.as_bytes());
}

const _: () = assert!(std::mem::size_of::<FieldValue<'static>>() == 24);

/// A field value read back from a record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FieldValue<'a> {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(&'a str),
    F64s(&'a [u8]),
    Null,
    List(Nested<'a>),
    Object(Nested<'a>),
}

/// The items of a list or the members of an object read back from a record:
/// their u32 count, then exactly their bytes (a slice, so that a
/// [`FieldValue`] stays three words).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Nested<'a>(&'a [u8]);

impl<'a> Nested<'a> {
    /// An object's members in order (a list's have empty names).
    pub(crate) fn members(self) -> FieldIter<'a> {
        let (count, rest) = self.0.split_at(4);
        FieldIter {
            rest,
            left: u32::from_le_bytes(count.try_into().unwrap()),
        }
    }

    /// A list's items in order.
    pub(crate) fn items(self) -> impl Iterator<Item = FieldValue<'a>> {
        self.members().map(|(_, v)| v)
    }
}

/// A decoded view of one record, borrowing the ring's bytes.
#[derive(Debug)]
pub(crate) struct RecordView<'a> {
    pub(crate) head: Head,
    pub(crate) msg: &'a [u8],
    nfields: u16,
    fields: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Parses a record written by [`encode`].
    pub(crate) fn parse(b: &'a [u8]) -> RecordView<'a> {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let head = Head {
            kind: b[4],
            aux: b[5],
            stream: u32_at(8),
            ts: u64::from_le_bytes(b[16..24].try_into().unwrap()),
        };
        let msg_len = u32_at(12) as usize;
        RecordView {
            head,
            msg: &b[HEADER..HEADER + msg_len],
            nfields: u16::from_le_bytes([b[6], b[7]]),
            fields: &b[HEADER + msg_len..],
        }
    }

    /// The record's fields in logging order.
    pub(crate) fn fields(&self) -> FieldIter<'a> {
        FieldIter {
            rest: self.fields,
            left: u32::from(self.nfields),
        }
    }
}

/// `bytes` as text ("" if they are not UTF-8, which only ring corruption
/// could cause). Field names are short and nearly always ASCII: checking that
/// first skips the general validator's call and setup (with `next` inlined
/// into the collector's decoders: about 14 % fewer instructions per point end
/// to end, `perf/RESULTS.md`).
#[inline]
#[allow(unsafe_code)] // from_utf8_unchecked after the ASCII check
fn utf8(bytes: &[u8]) -> &str {
    if bytes.is_ascii() {
        // SAFETY: ASCII bytes are valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    } else {
        std::str::from_utf8(bytes).unwrap_or("")
    }
}

/// Iterator over `(name, value)` of a record or a nested object.
#[derive(Debug)]
pub(crate) struct FieldIter<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = (&'a str, FieldValue<'a>);

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let b = self.rest;
        let (nlen, t) = (b[0] as usize, b[1]);
        // The bytes were copied from a `&str` by `encode`; a failed check here
        // would mean ring corruption, which we surface as an empty name.
        let name = utf8(&b[2..2 + nlen]);
        let v = &b[2 + nlen..];
        let word = |i: usize| -> [u8; 8] { v[i..i + 8].try_into().unwrap() };
        let len32 = || u32::from_le_bytes(v[..4].try_into().unwrap()) as usize;
        // One match, here (not in a helper: as one the decoders ran about
        // 30 more instructions per point, callgrind of `stress`).
        let (val, used) = match t {
            tag::F64 => (FieldValue::F64(f64::from_le_bytes(word(0))), 8),
            tag::I64 => (FieldValue::I64(i64::from_le_bytes(word(0))), 8),
            tag::U64 => (FieldValue::U64(u64::from_le_bytes(word(0))), 8),
            tag::BOOL => (FieldValue::Bool(v[0] != 0), 1),
            tag::STR => {
                let n = len32();
                let s = utf8(&v[4..4 + n]);
                (FieldValue::Str(s), 4 + n)
            }
            tag::F64S => {
                let n = len32();
                (FieldValue::F64s(&v[4..4 + 8 * n]), 4 + 8 * n)
            }
            tag::LIST => {
                let n = len32();
                (FieldValue::List(Nested(&v[4..4 + n])), 4 + n)
            }
            tag::OBJECT => {
                let n = len32();
                (FieldValue::Object(Nested(&v[4..4 + n])), 4 + n)
            }
            _ => (FieldValue::Null, 0),
        };
        self.rest = &v[used..];
        Some((name, val))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(msg: &[u8], fields: &Fields<'_>) -> Vec<(String, String)> {
        let n = encoded_len(msg, fields, 1 << 20).unwrap();
        assert_eq!(n % 8, 0);
        let mut buf = vec![MaybeUninit::new(0xAAu8); n];
        let head = Head {
            kind: kind::METRIC,
            aux: 3,
            stream: 7,
            ts: 123,
        };
        encode(&mut buf, head, msg, fields);
        let bytes: Vec<u8> = buf.iter().map(unsafe_free_read).collect();
        let r = RecordView::parse(&bytes);
        assert_eq!(
            (r.head.kind, r.head.aux, r.head.stream, r.head.ts),
            (1, 3, 7, 123)
        );
        assert_eq!(r.msg, msg);
        r.fields()
            .map(|(k, v)| (k.to_string(), format!("{v:?}")))
            .collect()
    }

    fn unsafe_free_read(b: &MaybeUninit<u8>) -> u8 {
        // Every byte was initialised by `vec![MaybeUninit::new(..)]` and then `encode`.
        let mut out = [0u8; 1];
        std::slice::from_ref(b)
            .iter()
            .zip(out.iter_mut())
            .for_each(|(s, d)| *d = *unsafe_ref(s));
        out[0]
    }

    #[allow(unsafe_code)]
    fn unsafe_ref(b: &MaybeUninit<u8>) -> &u8 {
        // SAFETY: see `unsafe_free_read`: the byte is initialised.
        unsafe { b.assume_init_ref() }
    }

    #[test]
    fn every_value_kind_round_trips() {
        let xs = [1.5, -2.0];
        let got = roundtrip(
            b"hello",
            &point! {"a" => 1.5, "b" => -3, "c" => u64::MAX, "d" => true, "e" => "s\"x",
            "f" => &xs, "g" => None::<f64>, "h" => f64::NAN},
        );
        let names: Vec<_> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e", "f", "g", "h"]);
        assert_eq!(got[1].1, "I64(-3)");
        assert_eq!(got[2].1, format!("U64({})", u64::MAX));
        assert_eq!(got[4].1, "Str(\"s\\\"x\")");
        assert_eq!(got[7].1, "F64(NaN)");
    }

    /// The record's fields as the collector writes them: `{"name":value,...}`.
    fn json(fields: &Fields<'_>) -> String {
        let (n, _) = checked_len(b"", fields, 1 << 20).unwrap();
        let mut buf = vec![MaybeUninit::new(0xAAu8); n];
        let head = Head {
            kind: kind::METRIC,
            aux: 0,
            stream: 0,
            ts: 0,
        };
        encode(&mut buf, head, b"", fields);
        let bytes: Vec<u8> = buf.iter().map(unsafe_free_read).collect();
        let mut out = vec![b'{'];
        for (i, (k, v)) in RecordView::parse(&bytes).fields().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::encode::member(&mut out, k, v);
        }
        out.push(b'}');
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lists_and_objects_round_trip_nested() {
        let inner = point! {"w" => 1.0, "" => "empty key", "none" => &[] as &[f64]};
        let mixed = [
            Value::from(1),
            "a".into(),
            Value::Null,
            true.into(),
            (&inner).into(),
        ];
        let deep =
            serde_json::json!({"b": [1, -2, u64::MAX, 0.5, "s", null, {"c": {}}], "d": true});
        let got = json(&point! {
            "ints" => &[1, 2, 3], "strs" => &["x", "y\"z"], "mixed" => &mixed,
            "obj" => &point! {"lr" => 0.1, "in" => &inner, "e" => &[] as &Fields},
            "json" => &deep, "num" => &serde_json::json!(7), "after" => 2.5,
        });
        // The hot path's check leaves them to the general path.
        assert_eq!(encoded_len(b"", &point! {"o" => &inner}, 1 << 20), None);
        assert_eq!(
            got,
            r#"{"ints":[1,2,3],"strs":["x","y\"z"],"mixed":[1,"a",null,true,{"w":1.0,"":"empty key","none":[]}],"obj":{"lr":0.1,"in":{"w":1.0,"":"empty key","none":[]},"e":{}},"json":{"b":[1,-2,18446744073709551615,0.5,"s",null,{"c":{}}],"d":true},"num":7,"after":2.5}"#
        );
    }

    #[test]
    fn nested_keys_depth_and_size_are_checked() {
        let long = "k".repeat(256);
        let bad_key = point! {long.as_str() => 1};
        assert!(matches!(
            checked_len(b"", &point! {"o" => &bad_key}, 1 << 20),
            Err(Error::InvalidName { name, .. }) if name == long
        ));
        let mut v = serde_json::json!(1);
        for _ in 0..MAX_DEPTH {
            v = serde_json::json!([v]);
        }
        assert!(checked_len(b"", &point! {"v" => &v}, 1 << 20).is_ok());
        let deeper = serde_json::json!({ "x": v });
        assert!(matches!(
            checked_len(b"", &point! {"v" => &deeper}, 1 << 20),
            Err(Error::InvalidValue(_))
        ));
        // A value that shares its parts: 2^40 leaves, walked no further than the limit.
        fn shared(levels: u32, below: &[Value<'_>]) -> Result<(usize, bool)> {
            let here = [Value::List(below), Value::List(below)];
            match levels {
                0 => checked_len(b"", &point! {"w" => &here}, 1 << 20),
                _ => shared(levels - 1, &here),
            }
        }
        assert!(matches!(
            shared(40, &[1.5.into()]),
            Err(Error::RecordTooLarge { .. })
        ));
    }

    #[test]
    fn non_ascii_names_and_strings_round_trip() {
        let got = roundtrip(b"", &point! {"λ" => "naïve ✓ 😀", "ascii" => "plain"});
        assert_eq!(got[0], ("λ".into(), "Str(\"naïve ✓ 😀\")".into()));
        assert_eq!(got[1], ("ascii".into(), "Str(\"plain\")".into()));
    }

    #[test]
    fn bad_field_names_and_sizes_are_errors() {
        let long = "x".repeat(256);
        assert!(matches!(
            checked_len(b"", &point! {long.as_str() => 1}, 1 << 20),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            checked_len(b"", &point! {"" => 1}, 1 << 20),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            checked_len(&[0; 100], &[], 64),
            Err(Error::RecordTooLarge { .. })
        ));
    }
}

/// A log level: exactly the five the ML-Dash store and server know.
///
/// # Examples
/// ```
/// use ml_dash::Level;
/// let level: Level = "WARN".parse()?;
/// assert_eq!(level, Level::Warn);
/// assert_eq!(level.to_string(), "warn");
/// assert!("warning".parse::<Level>().is_err());
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// `info` (the default).
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
    /// `debug`.
    Debug,
    /// `fatal`.
    Fatal,
}

impl Level {
    /// The stored name.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(ml_dash::Level::Fatal.as_str(), "fatal");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Debug => "debug",
            Level::Fatal => "fatal",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Level {
        match v {
            1 => Level::Warn,
            2 => Level::Error,
            3 => Level::Debug,
            4 => Level::Fatal,
            _ => Level::Info,
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Level::Info => 0,
            Level::Warn => 1,
            Level::Error => 2,
            Level::Debug => 3,
            Level::Fatal => 4,
        }
    }
}

impl std::str::FromStr for Level {
    type Err = Error;

    /// Case-insensitive, as in the Python SDK; anything else (also `warning`) is
    /// [`Error::InvalidLevel`].
    fn from_str(s: &str) -> Result<Level> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "info" => Level::Info,
            "warn" => Level::Warn,
            "error" => Level::Error,
            "debug" => Level::Debug,
            "fatal" => Level::Fatal,
            _ => return Err(Error::InvalidLevel(s.to_string())),
        })
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
