//! Timestamps of metric points and track rows: the caller's, the thread's
//! previous one (`_ts = -1`), or the producer's clock.

use crate::encode;
use crate::record::{FieldValue, RecordView};

/// A timestamp a metric point or track row got.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stamp {
    /// The producer's clock, nanoseconds (stored with microseconds).
    Clock(u64),
    /// Float seconds (a caller's `_ts`, a track row's timestamp).
    Secs(f64),
}

impl Stamp {
    /// Float seconds: the value a reader parses from the stored record.
    pub(super) fn secs(self) -> f64 {
        match self {
            Stamp::Clock(nanos) => (nanos / 1_000) as f64 / 1e6,
            Stamp::Secs(x) => x,
        }
    }

    /// Appends it as a metric point's `_ts` (the same text as the point it
    /// was taken from).
    pub(super) fn write(self, out: &mut Vec<u8>) {
        match self {
            Stamp::Clock(nanos) => encode::epoch_secs_micros(out, nanos),
            Stamp::Secs(x) => encode::f64(out, x),
        }
    }
}

/// What a record's `_ts` (or `Track::append_at` time) asks for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Given {
    /// Nothing: the time of the call.
    Clock,
    /// This time.
    At(f64),
    /// `-1`: the thread's previous timestamp.
    Previous,
}

impl Given {
    /// From the value of a `_ts` field (the producer checked it is a number).
    pub(super) fn of(v: FieldValue<'_>) -> Given {
        match v {
            FieldValue::F64(-1.0) | FieldValue::I64(-1) => Given::Previous,
            FieldValue::F64(x) => Given::At(x),
            FieldValue::I64(x) => Given::At(x as f64),
            FieldValue::U64(x) => Given::At(x as f64),
            _ => Given::Clock,
        }
    }

    /// From a record's `_ts` field, if any.
    pub(super) fn field(r: &RecordView<'_>) -> Given {
        r.fields()
            .find(|(name, _)| *name == "_ts")
            .map_or(Given::Clock, |(_, v)| Given::of(v))
    }
}

/// A metric point's `_ts`: the caller's, the thread's previous for `-1` (the
/// producer refused a `-1` with none; the call's time after a one-off ring at
/// thread exit or points dropped under `DropNewest`), else the call's time.
/// It becomes the thread's previous.
pub(super) fn metric_stamp(given: Given, clock: u64, last: &mut Option<Stamp>) -> Stamp {
    let s = match (given, *last) {
        (Given::At(x), _) => Stamp::Secs(x),
        (Given::Previous, Some(prev)) => prev,
        _ => Stamp::Clock(clock),
    };
    *last = Some(s);
    s
}
