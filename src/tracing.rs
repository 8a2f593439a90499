//! A [`tracing_subscriber::Layer`] that records `tracing` events into a run
//! (feature `tracing`).
//!
//! - **Logs**: an event becomes a log of the run: its `message` is the log's
//!   message, its level is mapped (`TRACE` and `DEBUG` to debug, `INFO` to
//!   info, `WARN` to warn, `ERROR` to error), and its other fields are the
//!   log's metadata, after `"target"`, the event's target.
//! - **Metrics**: an event with a field named `metric.<name>` is a metric
//!   point instead (no log): `<name>` for each such field, the event's other
//!   fields (`step`, `epoch`, ...) as they are, and no message. It goes to the
//!   stream named by its field `metric_stream` (a string), else to the
//!   layer's stream ([`Layer::metrics_stream`]; by default the unnamed one,
//!   stored as `metrics/None`, like the SDK's `exp.metrics.log(..)`).
//! - **Span durations** (opt-in, [`Layer::span_durations`]): when a span
//!   closes, a point `{<span name>: seconds}` (from its creation to its close)
//!   goes to the given stream.
//!
//! Values keep their type: floats, integers, booleans and strings; any other
//! value (`?x`, `%x`, an error) is stored as its text.
//!
//! The layer filters nothing: it does not implement `enabled`, so it never
//! disables an event for the other layers of the subscriber. To record fewer
//! events, give it a per-layer filter (`layer.with_filter(LevelFilter::INFO)`).
//! Per event it costs the engine's log (or metric) call plus visiting the
//! fields into a reused per-thread buffer: no allocation once warm, no lock.
//! A call the run refuses (the run is closed, a field name over 255 bytes,
//! a record over the size limit) drops that event: `tracing` has no way to
//! return the error.
//!
//! # Examples
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//! # let root = tempfile::tempdir().unwrap();
//! let run = ml_dash::Experiment::new("alice/mnist/traced").dash_root(root.path()).run()?;
//! let layer = ml_dash::tracing::Layer::new(&run).metrics_stream("train")?;
//! let subscriber = tracing_subscriber::registry().with(layer);
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info!(epoch = 1, "epoch started");              // a log with metadata
//!     tracing::info!(metric.loss = 0.25, metric.acc = 0.9, step = 3); // a point in "train"
//!     tracing::info!(metric_stream = "eval", metric.loss = 0.3, epoch = 1); // one in "eval"
//! });
//! run.complete()?;
//! # Ok::<(), ml_dash::Error>(())
//! ```

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::Instant;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id};
use tracing_core::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::api::{Logger, Metrics, Run};
use crate::error::Result;
use crate::record::{Level, Value};

/// The field-name prefix that makes an event a metric point: `metric.loss = x`
/// is the point's field `loss`.
pub const METRIC_PREFIX: &str = "metric.";

/// The field that names a metric event's stream: `metric_stream = "eval"`.
pub const STREAM_FIELD: &str = "metric_stream";

/// Records `tracing` events into a run: see the [module docs](self).
///
/// # Examples
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
/// # let root = tempfile::tempdir().unwrap();
/// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
/// let subscriber = tracing_subscriber::registry().with(ml_dash::tracing::Layer::new(&run));
/// tracing::subscriber::with_default(subscriber, || tracing::warn!(step = 3, "slow batch"));
/// run.flush()?;
/// let logs = ml_dash::read::logs(root.path(), "a/b")?;
/// assert_eq!((logs[0]["level"].as_str(), logs[0]["message"].as_str()), (Some("warn"), Some("slow batch")));
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Layer {
    logger: Logger,
    metrics: Metrics,
    spans: Option<Metrics>,
}

impl Layer {
    /// A layer that records into `run`: logs, and metric events into its
    /// unnamed stream; no span durations.
    ///
    /// # Examples
    /// ```
    /// use tracing_subscriber::layer::SubscriberExt;
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let subscriber = tracing_subscriber::registry().with(ml_dash::tracing::Layer::new(&run));
    /// tracing::subscriber::with_default(subscriber, || tracing::info!(metric.loss = 0.5));
    /// run.flush()?;
    /// assert_eq!(ml_dash::read::metrics(root.path(), "a/b", None)?[0]["data"]["loss"], 0.5);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn new(run: &Run) -> Layer {
        Layer {
            logger: run.logger(),
            metrics: run.unnamed_metrics(),
            spans: None,
        }
    }

    /// Metric events without a `metric_stream` field go to stream `name`.
    ///
    /// # Errors
    /// As [`Run::metrics`].
    ///
    /// # Examples
    /// ```
    /// use tracing_subscriber::layer::SubscriberExt;
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let layer = ml_dash::tracing::Layer::new(&run).metrics_stream("train")?;
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     tracing::info!(metric.loss = 0.5, step = 1);
    /// });
    /// run.flush()?;
    /// assert_eq!(ml_dash::read::metrics(root.path(), "a/b", Some("train"))?.len(), 1);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn metrics_stream(mut self, name: &str) -> Result<Layer> {
        self.metrics = self.logger.metrics(name)?;
        Ok(self)
    }

    /// Records each span's duration, `{<span name>: seconds}`, into stream
    /// `name` when the span closes.
    ///
    /// # Errors
    /// As [`Run::metrics`].
    ///
    /// # Examples
    /// ```
    /// use tracing_subscriber::layer::SubscriberExt;
    /// # let root = tempfile::tempdir().unwrap();
    /// let run = ml_dash::Experiment::new("a/b").dash_root(root.path()).run()?;
    /// let layer = ml_dash::tracing::Layer::new(&run).span_durations("timing")?;
    /// tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
    ///     let _step = tracing::info_span!("step").entered();
    /// });
    /// run.flush()?;
    /// let points = ml_dash::read::metrics(root.path(), "a/b", Some("timing"))?;
    /// assert!(points[0]["data"]["step"].as_f64().unwrap() >= 0.0);
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn span_durations(mut self, name: &str) -> Result<Layer> {
        self.spans = Some(self.logger.metrics(name)?);
        Ok(self)
    }

    fn record(&self, event: &Event<'_>, s: &mut Scratch) {
        s.clear();
        event.record(&mut Visitor(s));
        let text = s.text.as_str();
        let fields = s.fields.iter().map(|&(name, v)| (name, v.value(text)));
        // Failures drop the event (see the module docs).
        if s.metric {
            let stream = match s.stream {
                Some(r) => match self.logger.metrics(&text[r.0..r.1]) {
                    Ok(m) => m,
                    Err(_) => return,
                },
                None => self.metrics.clone(),
            };
            let _ = with_fields(fields, s.fields.len(), |f| stream.log(f));
        } else {
            let meta = event.metadata();
            let message = s.message.map_or("", |r| &text[r.0..r.1]);
            let target = (!s.fields.iter().any(|(n, _)| *n == "target"))
                .then(|| ("target", Value::Str(meta.target())));
            let n = s.fields.len() + usize::from(target.is_some());
            let level = level(meta.level());
            let _ = with_fields(target.into_iter().chain(fields), n, |f| {
                self.logger.log(level, message, f)
            });
        }
    }
}

fn level(l: &tracing_core::Level) -> Level {
    if *l == tracing_core::Level::ERROR {
        Level::Error
    } else if *l == tracing_core::Level::WARN {
        Level::Warn
    } else if *l == tracing_core::Level::INFO {
        Level::Info
    } else {
        Level::Debug
    }
}

/// Runs `f` on the `n` fields of `it`: on the stack up to 32 fields.
fn with_fields<'a, R>(
    it: impl Iterator<Item = (&'a str, Value<'a>)>,
    n: usize,
    f: impl FnOnce(&[(&'a str, Value<'a>)]) -> R,
) -> R {
    const INLINE: usize = 32;
    if n <= INLINE {
        let mut buf = [("", Value::Null); INLINE];
        let mut k = 0;
        for (slot, field) in buf.iter_mut().zip(it) {
            *slot = field;
            k += 1;
        }
        f(&buf[..k])
    } else {
        f(&it.collect::<Vec<_>>())
    }
}

impl<S> tracing_subscriber::Layer<S> for Layer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut s) => self.record(event, &mut s),
            // A field's `Debug` that logs an event itself: a buffer of its own.
            Err(_) => self.record(event, &mut Scratch::default()),
        });
    }

    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.spans.is_some()
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().insert(Opened(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(spans) = &self.spans else { return };
        let Some(span) = ctx.span(&id) else { return };
        let Some(&Opened(at)) = span.extensions().get::<Opened>() else {
            return;
        };
        let secs = at.elapsed().as_secs_f64();
        let _ = spans.log(&[(span.name(), Value::F64(secs))]);
    }
}

/// When a span was created (in its extensions, with span durations on).
#[derive(Clone, Copy)]
struct Opened(Instant);

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// One event's fields as visited; strings live in `text`.
#[derive(Default)]
struct Scratch {
    fields: Vec<(&'static str, Scalar)>,
    text: String,
    message: Option<(usize, usize)>,
    stream: Option<(usize, usize)>,
    metric: bool,
}

impl Scratch {
    fn clear(&mut self) {
        self.fields.clear();
        self.text.clear();
        self.message = None;
        self.stream = None;
        self.metric = false;
    }

    /// Appends `v`'s text to `text`: its range there.
    fn write(&mut self, v: impl fmt::Display) -> (usize, usize) {
        let start = self.text.len();
        let _ = write!(self.text, "{v}");
        (start, self.text.len())
    }

    fn put(&mut self, field: &Field, v: Scalar) {
        let name = field.name();
        if let Some(short) = name.strip_prefix(METRIC_PREFIX) {
            self.metric = true;
            self.fields.push((short, v));
        } else {
            self.fields.push((name, v));
        }
    }

    /// A field given as text (a string, or a value's `Debug`).
    fn put_text(&mut self, field: &Field, range: (usize, usize)) {
        match field.name() {
            "message" => self.message = Some(range),
            STREAM_FIELD => self.stream = Some(range),
            _ => self.put(field, Scalar::Text(range.0, range.1)),
        }
    }

    /// A number or a boolean; a `message` of one is its text.
    fn put_scalar(&mut self, field: &Field, v: Scalar, text: impl fmt::Display) {
        if field.name() == "message" {
            self.message = Some(self.write(text));
        } else {
            self.put(field, v);
        }
    }
}

/// A visited value; text is a range of [`Scratch::text`].
#[derive(Clone, Copy)]
enum Scalar {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Text(usize, usize),
}

impl Scalar {
    fn value(self, text: &str) -> Value<'_> {
        match self {
            Scalar::F64(v) => Value::F64(v),
            Scalar::I64(v) => Value::I64(v),
            Scalar::U64(v) => v.into(),
            Scalar::Bool(v) => Value::Bool(v),
            Scalar::Text(a, b) => Value::Str(&text[a..b]),
        }
    }
}

struct Visitor<'s>(&'s mut Scratch);

impl Visit for Visitor<'_> {
    fn record_f64(&mut self, field: &Field, v: f64) {
        self.0.put_scalar(field, Scalar::F64(v), v);
    }

    fn record_i64(&mut self, field: &Field, v: i64) {
        self.0.put_scalar(field, Scalar::I64(v), v);
    }

    fn record_u64(&mut self, field: &Field, v: u64) {
        self.0.put_scalar(field, Scalar::U64(v), v);
    }

    fn record_i128(&mut self, field: &Field, v: i128) {
        match i64::try_from(v) {
            Ok(v) => self.record_i64(field, v),
            Err(_) => self.record_debug(field, &v),
        }
    }

    fn record_u128(&mut self, field: &Field, v: u128) {
        match u64::try_from(v) {
            Ok(v) => self.record_u64(field, v),
            Err(_) => self.record_debug(field, &v),
        }
    }

    fn record_bool(&mut self, field: &Field, v: bool) {
        self.0.put_scalar(field, Scalar::Bool(v), v);
    }

    fn record_str(&mut self, field: &Field, v: &str) {
        let range = self.0.write(v);
        self.0.put_text(field, range);
    }

    fn record_debug(&mut self, field: &Field, v: &dyn fmt::Debug) {
        let start = self.0.text.len();
        let _ = write!(self.0.text, "{v:?}");
        let range = (start, self.0.text.len());
        self.0.put_text(field, range);
    }
}
