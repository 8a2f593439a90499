//! Where batches go. Sinks never see rings or records: they receive batches of
//! JSON objects that the collector serialized, and write them out.
//!
//! - [`local`]: the ML-Dash `.dash/<prefix>` layout (the default).

pub(crate) mod local;

/// A batch of serialized JSON objects, back to back in one buffer.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    /// The buffer to append the next object to; call [`end_item`](Self::end_item) after.
    #[inline]
    pub(crate) fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Marks the end of the object just written.
    #[inline]
    pub(crate) fn end_item(&mut self) {
        self.ends.push(self.buf.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// The objects in order.
    pub(crate) fn items(&self) -> impl Iterator<Item = &[u8]> {
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let s = &self.buf[start..end];
            start = end;
            s
        })
    }
}

/// Metric points as finished store lines,
/// `{"index":N,"data":{...},"createdAt":"..."}\n`, written straight from the
/// ring's bytes. The store renumbers them in the rare case that another writer
/// appended to the stream in between.
#[derive(Debug, Default)]
pub(crate) struct MetricBatch {
    pub(crate) lines: Vec<u8>,
    pub(crate) first_index: u64,
    pub(crate) count: usize,
    pub(crate) created_at: String,
}

impl MetricBatch {
    pub(crate) fn clear(&mut self) {
        self.lines.clear();
        self.count = 0;
    }
}

/// One track row: its timestamp and its fields as (name, JSON value text).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrackEntry {
    pub(crate) ts: f64,
    pub(crate) fields: Vec<(String, String)>,
}
