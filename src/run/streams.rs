//! The run's stream registry: each (kind, name) gets a stream id, which the
//! records carry and the collector resolves back to a name and description.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;

/// Kind of a named stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum StreamKind {
    Metric,
    Track,
}

/// What the collector needs to know about a stream id.
#[derive(Debug, Clone)]
pub(crate) struct StreamDesc {
    pub(crate) kind: StreamKind,
    /// `None` is the unnamed metric stream.
    pub(crate) name: Option<Arc<str>>,
    /// Description, tags and metadata given when the stream was created.
    pub(crate) info: Option<Arc<StreamInfo>>,
}

/// What a stream's creator said about it (the SDK's `metrics(name,
/// description=, tags=, metadata=)`); the first handle's info wins.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StreamInfo {
    pub(crate) description: Option<String>,
    pub(crate) tags: Vec<String>,
    pub(crate) metadata: Option<serde_json::Value>,
}

/// A name table slot: the stream's kind, name and id.
type NameSlot = OnceLock<(StreamKind, Arc<str>, u32)>;

/// The run's stream names and ids. Handles look names up without a lock (a
/// loop may call `run.metrics(name)` every step), the collector resolves ids
/// without one, and a new name costs O(1) amortised.
///
/// Both tables are arrays of set-once slots behind an `ArcSwap`. Under the
/// mutex a writer fills an empty slot in place (`OnceLock::set` publishes it:
/// a Release store that the readers' `get`, an Acquire load, pairs with), and
/// when a table is half full it publishes a copy twice the size, so each
/// entry is copied O(1) times on average. A reader holding an older table
/// may miss the newest names; a miss is re-checked under the mutex.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    /// Open addressing (linear probing) on `hash(kind, name)`; the length
    /// is 0 or a power of two, and at most half the slots are set.
    by_name: ArcSwap<Vec<NameSlot>>,
    /// Slot `id` describes stream `id`.
    by_id: ArcSwap<Vec<OnceLock<StreamDesc>>>,
    /// The next id; held while a stream is created.
    insert: Mutex<u32>,
    hasher: RandomState,
}

/// Where `(kind, name)` is in `table`: `Ok(id)`, or `Err(slot)`, the empty
/// slot it would take (`Err(0)` for an empty table).
fn probe(table: &[NameSlot], hash: u64, kind: StreamKind, name: &str) -> Result<u32, usize> {
    let mask = table.len().wrapping_sub(1);
    let mut i = hash as usize & mask;
    for _ in 0..table.len() {
        match table[i].get() {
            None => return Err(i),
            Some((k, n, id)) if *k == kind && **n == *name => return Ok(*id),
            Some(_) => i = (i + 1) & mask,
        }
    }
    Err(0) // only for the empty table: a table is never full
}

impl Streams {
    /// The id of a stream, created on first use. The unnamed stream is `""`.
    pub(crate) fn id(&self, kind: StreamKind, name: &str) -> u32 {
        self.id_with(kind, name, None)
    }

    /// As [`id`](Self::id); a stream created here gets `info`, an existing
    /// one keeps its own (the first handle's info wins, as in the SDK).
    pub(crate) fn id_with(&self, kind: StreamKind, name: &str, info: Option<StreamInfo>) -> u32 {
        let hash = self.hasher.hash_one((kind, name));
        if let Ok(id) = probe(&self.by_name.load(), hash, kind, name) {
            return id;
        }
        let mut next = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        let names = self.by_name.load_full();
        let slot = match probe(&names, hash, kind, name) {
            Ok(id) => return id,
            Err(slot) => slot,
        };
        let id = *next;
        *next += 1;
        let desc = StreamDesc {
            kind,
            name: (!name.is_empty()).then(|| Arc::from(name)),
            info: info.map(Arc::new),
        };
        // by_id first: whoever learns the id can resolve it.
        let ids = self.by_id.load_full();
        if (id as usize) < ids.len() {
            let _ = ids[id as usize].set(desc);
        } else {
            let grown: Vec<_> = (ids.iter().map(|d| d.get().cloned()))
                .chain([Some(desc)])
                .chain(std::iter::repeat_with(|| None))
                .take((2 * ids.len()).max(16))
                .map(|d| d.map_or_else(OnceLock::new, OnceLock::from))
                .collect();
            self.by_id.store(Arc::new(grown));
        }
        let entry = (kind, Arc::<str>::from(name), id);
        if 2 * (id as usize + 1) <= names.len() {
            let _ = names[slot].set(entry);
        } else {
            let len = (2 * names.len()).max(16);
            let grown: Vec<NameSlot> = (0..len).map(|_| OnceLock::new()).collect();
            let old = names.iter().filter_map(OnceLock::get).cloned();
            for e in old.chain([entry]) {
                let h = self.hasher.hash_one((e.0, &*e.1));
                if let Err(i) = probe(&grown, h, e.0, &e.1) {
                    let _ = grown[i].set(e);
                }
            }
            self.by_name.store(Arc::new(grown));
        }
        id
    }

    /// The description of a published id.
    pub(crate) fn desc(&self, id: u32) -> Option<StreamDesc> {
        self.by_id.load().get(id as usize)?.get().cloned()
    }

    /// Names of the existing streams of one kind.
    pub(crate) fn names(&self, kind: StreamKind) -> Vec<Box<str>> {
        (self.by_id.load().iter().filter_map(OnceLock::get))
            .filter(|d| d.kind == kind)
            .map(|d| d.name.as_deref().unwrap_or("").into())
            .collect()
    }
}

#[cfg(all(test, not(ml_dash_loom)))]
mod tests {
    use super::{StreamKind, Streams};

    #[test]
    fn stream_ids_are_stable_across_table_growth() {
        let s = Streams::default();
        let unnamed = s.id(StreamKind::Metric, "");
        let n = 5000u32;
        for k in 0..n {
            assert_eq!(s.id(StreamKind::Metric, &format!("m{k}")), k + 1);
        }
        // The same name of another kind is another stream.
        assert_eq!(s.id(StreamKind::Track, "m7"), n + 1);
        assert_eq!(s.id(StreamKind::Metric, ""), unnamed);
        for k in 0..n {
            assert_eq!(s.id(StreamKind::Metric, &format!("m{k}")), k + 1);
            let d = s.desc(k + 1).unwrap();
            assert_eq!(
                (d.kind, d.name.as_deref()),
                (StreamKind::Metric, Some(&*format!("m{k}")))
            );
        }
        assert_eq!(s.desc(unnamed).unwrap().name, None);
        assert!(s.desc(n + 2).is_none());
        assert_eq!(s.names(StreamKind::Track), vec!["m7".into()]);
        assert_eq!(s.names(StreamKind::Metric).len(), n as usize + 1);
    }

    #[test]
    fn racing_threads_get_one_id_per_name() {
        let s = Streams::default();
        let ids: Vec<Vec<u32>> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    sc.spawn(|| {
                        (0..2000)
                            .map(|k| s.id(StreamKind::Metric, &format!("n{k}")))
                            .collect()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(
            ids.windows(2).all(|w| w[0] == w[1]),
            "every thread sees the same ids"
        );
        let mut sorted = ids[0].clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..2000).collect::<Vec<u32>>());
    }
}
