//! One producer thread's byte ring: framing of variable-length records over
//! `rtrb` (or, under `--cfg ml_dash_loom`, over a loom-visible model with the
//! same contract).
//!
//! Contract, shared by both implementations:
//! - every record is written contiguously and is a multiple of 8 bytes long,
//!   with its total length as the first little-endian `u32`;
//! - when a record does not fit before the end of the buffer, the producer
//!   fills the rest with one padding record (kind byte `0`) and writes the
//!   record at the start; the padding goes in as soon as there is room for
//!   it, also when the record itself must still wait for room, so a record of
//!   up to the ring's capacity always fits once the consumer drained the ring;
//! - [`RingProducer::try_write`] publishes with Release (rtrb's tail store);
//!   [`RingConsumer::drain`] reads with Acquire (rtrb's tail load) and frees the
//!   space with one Release commit per drain, not per record.
//!
//! [`producer`] is the producer thread's side: its ring chain per run, found
//! through a thread-local slot, and the push into it (with the run's
//! synchronization table).

use std::marker::PhantomData;
use std::mem::MaybeUninit;

pub(crate) mod producer;

/// Writes one record into its reserved, contiguous slot of the ring.
///
/// The slot's last 8 bytes are zeroed first, so the padding that rounds a
/// record up to a multiple of 8 is initialised whatever the writer leaves.
///
/// Bounds: `record::encode` writes exactly the bytes that `record::encoded_len`
/// counted for the same arguments, and the slot has that length; so the writes
/// stay inside it by construction. Debug builds check every write; release
/// builds check the total once, after the fact, in `record::encode`.
#[derive(Debug)]
pub(crate) struct SlotWriter<'a> {
    ptr: *mut u8,
    len: usize,
    pos: usize,
    _slot: PhantomData<&'a mut [MaybeUninit<u8>]>,
}

impl<'a> SlotWriter<'a> {
    /// A writer over `slot`, whose length is a multiple of 8 and at least 8.
    #[inline(always)]
    pub(crate) fn new(slot: &'a mut [MaybeUninit<u8>]) -> Self {
        let len = slot.len();
        debug_assert!(len >= 8 && len.is_multiple_of(8));
        let ptr = slot.as_mut_ptr().cast::<u8>();
        // SAFETY: every record is at least the 24-byte header (`encoded_len`),
        // so `len >= 8` and the 8 bytes at `len - 8` are inside the slot,
        // which we borrow mutably; an unaligned write is allowed for u64.
        unsafe { ptr.add(len - 8).cast::<u64>().write_unaligned(0) };
        SlotWriter {
            ptr,
            len,
            pos: 0,
            _slot: PhantomData,
        }
    }

    /// Appends a fixed-size group of bytes (compiled to plain stores).
    #[inline(always)]
    pub(crate) fn put<const N: usize>(&mut self, bytes: [u8; N]) {
        debug_assert!(self.pos + N <= self.len, "record larger than its slot");
        // SAFETY: [pos, pos + N) is inside the borrowed slot (see the type's
        // "Bounds"), and `bytes` is a separate local, so the ranges do not overlap.
        unsafe {
            self.ptr
                .add(self.pos)
                .cast::<[u8; N]>()
                .write_unaligned(bytes)
        };
        self.pos += N;
    }

    /// Appends a byte slice.
    #[inline(always)]
    pub(crate) fn put_slice(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        debug_assert!(self.pos + n <= self.len, "record larger than its slot");
        let (src, dst) = (bytes.as_ptr(), self.ptr.wrapping_add(self.pos));
        // SAFETY: [pos, pos + n) is inside the borrowed slot (see "Bounds") and
        // [src, src + n) is the caller's slice, disjoint from the ring. Every
        // access below stays inside those ranges: for n in 8..=16 the two 8-byte
        // copies start at 0 and n - 8; for n in 4..8 the 4-byte ones at 0 and n - 4.
        // This keeps field names (a few bytes) off the `memcpy` call path.
        unsafe {
            match n {
                8..=16 => {
                    let (a, b) = (
                        src.cast::<u64>().read_unaligned(),
                        src.add(n - 8).cast::<u64>().read_unaligned(),
                    );
                    dst.cast::<u64>().write_unaligned(a);
                    dst.add(n - 8).cast::<u64>().write_unaligned(b);
                }
                4..=7 => {
                    let (a, b) = (
                        src.cast::<u32>().read_unaligned(),
                        src.add(n - 4).cast::<u32>().read_unaligned(),
                    );
                    dst.cast::<u32>().write_unaligned(a);
                    dst.add(n - 4).cast::<u32>().write_unaligned(b);
                }
                1..=3 => {
                    dst.write(*src);
                    dst.add(n / 2).write(*src.add(n / 2));
                    dst.add(n - 1).write(*src.add(n - 1));
                }
                0 => {}
                _ => std::ptr::copy_nonoverlapping(src, dst, n),
            }
        }
        self.pos += n;
    }

    /// Checks that the record filled its slot up to the zeroed tail, exactly.
    #[inline(always)]
    pub(crate) fn finish(self) {
        // One compare: `len - pos` in 0..8 (wrapping turns pos > len into a huge number).
        assert!(self.len.wrapping_sub(self.pos) < 8, "record size mismatch");
    }
}

/// Writes one record into its slot, which is exactly as long as the record.
/// (A trait rather than a closure so the encoder's `#[inline(always)]`
/// reaches the hot path: a closure's body is inlined at LLVM's discretion.)
///
/// # Safety
/// `fill` initialises every byte of `out` (or panics): the ring publishes
/// the slot as written data right after it returns.
pub(crate) unsafe trait Fill {
    fn fill(&mut self, out: &mut [MaybeUninit<u8>]);
}

/// A closure as a [`Fill`] for tests and the loom models: the slot is zeroed
/// first, so the closure may leave bytes unwritten.
#[cfg(any(test, ml_dash_loom))]
pub(crate) struct Zeroed<F>(pub(crate) F);

// SAFETY: every byte of `out` is written (zero) before the closure runs.
#[cfg(any(test, ml_dash_loom))]
unsafe impl<F: FnMut(&mut [MaybeUninit<u8>])> Fill for Zeroed<F> {
    fn fill(&mut self, out: &mut [MaybeUninit<u8>]) {
        out.fill(MaybeUninit::new(0));
        (self.0)(out);
    }
}

/// Kind byte of a padding record.
pub(crate) const PAD: u8 = 0;

/// Rounds a requested ring size to the framing unit.
pub(crate) fn round_capacity(bytes: usize) -> usize {
    (bytes.max(64) + 7) & !7
}

#[cfg(not(ml_dash_loom))]
pub(crate) use self::rt::{RingConsumer, RingProducer, channel};

#[cfg(ml_dash_loom)]
pub(crate) use self::model::{RingConsumer, RingProducer, channel};

/// [`channel`], or `None` when the allocator cannot give `capacity` bytes
/// now (the buffer is allocated infallibly: rtrb has no fallible
/// constructor, so the same size is asked for fallibly first).
pub(crate) fn try_channel(capacity: usize) -> Option<(RingProducer, RingConsumer)> {
    let cap = round_capacity(capacity);
    Vec::<u8>::new().try_reserve_exact(cap).ok()?;
    Some(channel(cap))
}

fn write_pad(out: &mut [MaybeUninit<u8>]) {
    // Lengths and positions are multiples of 8, so a pad is at least 8 bytes.
    let len = out.len() as u32;
    for (i, b) in out.iter_mut().enumerate() {
        let v = match i {
            0..4 => len.to_le_bytes()[i],
            4 => PAD,
            _ => 0,
        };
        b.write(v);
    }
}

/// Calls `f` on each non-padding record in `bytes`; returns how many bytes it
/// consumed (always all of them: the producer only publishes whole records).
fn for_each_record(mut bytes: &[u8], f: &mut impl FnMut(&[u8])) {
    while bytes.len() >= 8 {
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        debug_assert!(len >= 8 && len.is_multiple_of(8) && len <= bytes.len());
        if len < 8 || len > bytes.len() {
            return; // corrupt framing: stop rather than read garbage
        }
        if bytes[4] != PAD {
            f(&bytes[..len]);
        }
        bytes = &bytes[len..];
    }
}

#[cfg(not(ml_dash_loom))]
mod rt {
    use super::*;

    /// The writing end, owned by one producer thread.
    #[derive(Debug)]
    pub(crate) struct RingProducer {
        inner: rtrb::Producer<u8>,
    }

    /// The reading end, owned by the collector.
    #[derive(Debug)]
    pub(crate) struct RingConsumer {
        inner: rtrb::Consumer<u8>,
    }

    /// A ring of `capacity` bytes (rounded up to a multiple of 8), pre-touched
    /// so the first writes do not page-fault on the hot path.
    pub(crate) fn channel(capacity: usize) -> (RingProducer, RingConsumer) {
        let cap = round_capacity(capacity);
        let (mut p, c) = rtrb::RingBuffer::<u8>::new(cap);
        if let Ok(mut chunk) = p.write_chunk_uninit(cap) {
            // Touch every page without committing anything.
            let (a, _) = chunk.as_mut_slices();
            for b in a.iter_mut().step_by(4096) {
                b.write(0);
            }
        }
        (RingProducer { inner: p }, RingConsumer { inner: c })
    }

    impl RingProducer {
        /// Bytes this ring holds.
        pub(crate) fn capacity(&self) -> usize {
            self.inner.buffer().capacity()
        }

        /// Writes one record of `len` bytes (a multiple of 8) with `fill`, which
        /// must initialise all of them. Returns `false`, writing no record (at
        /// most the padding to the end), when the ring has no room. `fill`
        /// has one call site, so it is inlined.
        #[inline(always)]
        pub(crate) fn try_write(&mut self, len: usize, fill: &mut impl Fill) -> bool {
            let Ok(mut chunk) = self.inner.write_chunk_uninit(len) else {
                return false;
            };
            let pad = chunk.as_mut_slices().0.len();
            if pad < len {
                // The record would cross the end: pad to the end, then write
                // it at the start (the first chunk is left uncommitted).
                if !self.pad_to_end(pad, len) {
                    return false;
                }
                chunk = match self.inner.write_chunk_uninit(len) {
                    Ok(c) => c,
                    Err(_) => return false,
                };
            }
            fill.fill(chunk.as_mut_slices().0);
            // SAFETY: the chunk is contiguous (it fitted before the end, or
            // starts at offset 0 after the padding), and `fill` initialised
            // all of its `len` bytes.
            unsafe { chunk.commit_all() };
            true
        }

        /// Fills the `pad` bytes before the end of the buffer with a padding
        /// record. There is room for it (the caller's chunk of `len > pad`
        /// free bytes starts there), and it goes in even when the record will
        /// not fit after it yet: the record then waits at the start of the
        /// buffer, where any record up to the capacity fits once drained.
        #[cold]
        #[inline(never)]
        fn pad_to_end(&mut self, pad: usize, len: usize) -> bool {
            debug_assert!(pad < len);
            let Ok(mut chunk) = self.inner.write_chunk_uninit(pad) else {
                return false;
            };
            write_pad(chunk.as_mut_slices().0);
            // SAFETY: `write_pad` initialised every byte of the `pad`-byte chunk,
            // which is contiguous (it ends exactly at the end of the buffer).
            unsafe { chunk.commit_all() };
            true
        }
    }

    impl RingConsumer {
        /// Hands every published record to `f` in order, then frees their space
        /// with one commit. Returns the number of bytes drained.
        pub(crate) fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
            let n = self.inner.slots();
            if n == 0 {
                return 0;
            }
            let Ok(chunk) = self.inner.read_chunk(n) else {
                return 0;
            };
            let (a, b) = chunk.as_slices();
            for_each_record(a, &mut f);
            for_each_record(b, &mut f);
            chunk.commit_all();
            n
        }

        /// Whether the producer has published anything not yet drained.
        pub(crate) fn is_empty(&self) -> bool {
            self.inner.is_empty()
        }
    }
}

#[cfg(ml_dash_loom)]
mod model {
    //! A loom-visible SPSC byte ring with the contract of the rtrb wrapper.
    //!
    //! Like rtrb, each side keeps its own position in a plain field and a
    //! cached copy of the other side's, so an access to the shared positions
    //! (a loom operation) happens only where rtrb does one: the producer reads
    //! `head` only when its cached view says the ring is full, publishes with
    //! one Release store of `tail` per commit (two when it writes a padding
    //! record first, as `write_wrapped` commits twice); the consumer reads
    //! `tail` once per drain and frees with one Release store of `head`.
    use super::*;
    use crate::sync::{Arc, AtomicUsize, Ordering, UnsafeCell};

    #[derive(Debug)]
    struct Shared {
        buf: Box<[UnsafeCell<u8>]>,
        head: AtomicUsize, // consumer position (monotonic)
        tail: AtomicUsize, // producer position (monotonic)
    }

    // SAFETY: each byte is written only by the producer while it is outside
    // [head, tail) and read only by the consumer while inside; loom checks
    // those accesses through its UnsafeCell.
    unsafe impl Sync for Shared {}
    // SAFETY: as above; the buffer holds plain bytes.
    unsafe impl Send for Shared {}

    /// Loom model of the writing end.
    #[derive(Debug)]
    pub(crate) struct RingProducer {
        s: Arc<Shared>,
        tail: usize,
        head_cache: usize,
        scratch: Vec<MaybeUninit<u8>>,
    }
    /// Loom model of the reading end.
    #[derive(Debug)]
    pub(crate) struct RingConsumer {
        s: Arc<Shared>,
        head: usize,
    }

    /// A model ring of `capacity` bytes.
    pub(crate) fn channel(capacity: usize) -> (RingProducer, RingConsumer) {
        let cap = round_capacity(capacity);
        let s = Arc::new(Shared {
            buf: (0..cap).map(|_| UnsafeCell::new(0)).collect(),
            head: AtomicUsize::new(0),
            tail: AtomicUsize::new(0),
        });
        (
            RingProducer {
                s: s.clone(),
                tail: 0,
                head_cache: 0,
                scratch: Vec::new(),
            },
            RingConsumer { s, head: 0 },
        )
    }

    impl RingProducer {
        pub(crate) fn capacity(&self) -> usize {
            self.s.buf.len()
        }

        fn put(&mut self, at: usize, bytes: &[MaybeUninit<u8>]) {
            let cap = self.capacity();
            for (i, b) in bytes.iter().enumerate() {
                // SAFETY: the encoder initialised every byte (the contract of `fill`).
                let v = unsafe { b.assume_init() };
                self.s.buf[(at + i) % cap].with_mut(|p| {
                    // SAFETY: the slot is outside [head, tail): only we touch it,
                    // and loom checks that the consumer's last read of it
                    // happened before (through `head`).
                    unsafe { *p = v }
                });
            }
        }

        fn publish(&mut self, to: usize) {
            self.tail = to;
            // Release: pairs with the Acquire load of tail in `drain` / `is_empty`,
            // so the bytes written above are visible to the consumer.
            #[cfg(not(ml_dash_mutant = "ring_publish_relaxed"))]
            self.s.tail.store(to, Ordering::Release);
            #[cfg(ml_dash_mutant = "ring_publish_relaxed")]
            self.s.tail.store(to, Ordering::Relaxed);
        }

        pub(crate) fn try_write(&mut self, len: usize, fill: &mut impl Fill) -> bool {
            let cap = self.capacity();
            let tail = self.tail;
            let to_end = cap - tail % cap;
            let pad = if to_end < len { to_end } else { 0 };
            if cap - (tail - self.head_cache) < pad + len {
                // Acquire: pairs with the consumer's Release store of head in
                // `drain`, so its reads of the freed bytes happen before our
                // overwrites.
                self.head_cache = self.s.head.load(Ordering::Acquire);
            }
            let free = cap - (tail - self.head_cache);
            if free < len {
                return false;
            }
            if pad > 0 {
                // As the rtrb wrapper: the padding goes in whenever there is
                // room for the record's first chunk, even if the record must
                // then wait at the start.
                let mut p = vec![MaybeUninit::new(0u8); pad];
                write_pad(&mut p);
                self.put(tail, &p);
                self.publish(tail + pad);
                if free < pad + len {
                    return false;
                }
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            scratch.resize(len, MaybeUninit::new(0));
            fill.fill(&mut scratch);
            self.put(tail + pad, &scratch);
            self.scratch = scratch;
            self.publish(tail + pad + len);
            true
        }
    }

    impl RingConsumer {
        pub(crate) fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
            let cap = self.s.buf.len();
            let head = self.head;
            // Acquire: pairs with the Release store of tail in `publish`.
            let tail = self.s.tail.load(Ordering::Acquire);
            if tail == head {
                return 0;
            }
            let bytes: Vec<u8> = (head..tail)
                .map(|i| {
                    self.s.buf[i % cap].with(|p| {
                        // SAFETY: the slot is inside [head, tail): published, not freed.
                        unsafe { *p }
                    })
                })
                .collect();
            // Records never wrap, so split the copy where the buffer wraps.
            let split = (cap - head % cap).min(bytes.len());
            for_each_record(&bytes[..split], &mut f);
            for_each_record(&bytes[split..], &mut f);
            self.head = tail;
            // Release: pairs with the Acquire load of head in `try_write`.
            self.s.head.store(tail, Ordering::Release);
            tail - head
        }

        pub(crate) fn is_empty(&self) -> bool {
            // Acquire: pairs with the Release store of tail in `publish`.
            self.s.tail.load(Ordering::Acquire) == self.head
        }
    }
}

#[cfg(all(test, not(ml_dash_loom)))]
mod tests {
    use super::*;

    fn rec(len: usize, tag: u8) -> impl FnMut(&mut [MaybeUninit<u8>]) {
        move |out: &mut [MaybeUninit<u8>]| {
            assert_eq!(out.len(), len);
            for (i, b) in out.iter_mut().enumerate() {
                b.write(match i {
                    0..4 => (len as u32).to_le_bytes()[i],
                    4 => 1,
                    _ => tag,
                });
            }
        }
    }

    #[test]
    fn records_wrap_with_padding_and_come_back_in_order() {
        let (mut p, mut c) = channel(128);
        let mut seen = Vec::new();
        for round in 0..50u8 {
            let len = 8 * (1 + (round as usize % 5));
            assert!(p.try_write(len, &mut Zeroed(rec(len, round))));
            if round % 3 == 2 {
                c.drain(|r| seen.push((r.len(), r[8.min(r.len() - 1)])));
            }
        }
        c.drain(|r| seen.push((r.len(), r[8.min(r.len() - 1)])));
        assert_eq!(seen.len(), 50);
        for (i, (len, _)) in seen.iter().enumerate() {
            assert_eq!(*len, 8 * (1 + (i % 5)));
        }
    }

    #[test]
    fn full_ring_refuses_without_writing() {
        let (mut p, mut c) = channel(64);
        assert!(p.try_write(32, &mut Zeroed(rec(32, 1))));
        assert!(p.try_write(32, &mut Zeroed(rec(32, 2))));
        assert!(!p.try_write(8, &mut Zeroed(rec(8, 3))));
        let mut n = 0;
        c.drain(|_| n += 1);
        assert_eq!(n, 2);
        assert!(c.is_empty());
        // A record that would cross the end needs pad + record of free space.
        assert!(p.try_write(40, &mut Zeroed(rec(40, 4))));
        assert!(p.try_write(24, &mut Zeroed(rec(24, 5)))); // exactly fills to the end
        c.drain(|_| n += 1);
        assert!(p.try_write(48, &mut Zeroed(rec(48, 6)))); // wraps: starts at 0
        c.drain(|r| assert_eq!(r.len(), 48));
    }

    #[test]
    fn a_record_up_to_the_capacity_fits_once_drained_wherever_the_tail_is() {
        for offset in (8..64).step_by(8) {
            for len in (16..=64).step_by(8) {
                let (mut p, mut c) = channel(64);
                assert!(p.try_write(offset, &mut Zeroed(rec(offset, 1))));
                c.drain(|_| {});
                // The ring is empty; the record may need the padding drained first.
                let mut seen = Vec::new();
                if !p.try_write(len, &mut Zeroed(rec(len, 2))) {
                    c.drain(|r| seen.push(r.len()));
                    assert!(
                        p.try_write(len, &mut Zeroed(rec(len, 2))),
                        "{len} bytes after the tail at {offset}: never fits"
                    );
                }
                c.drain(|r| seen.push(r.len()));
                assert_eq!(seen, [len], "only padding besides the record");
            }
        }
    }
}
