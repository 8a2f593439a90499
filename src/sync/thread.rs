//! Threads under loom, with std's park/unpark semantics.
//!
//! loom's own `unpark` makes the target runnable whatever it is blocked on (a
//! join, a lock, a condition variable), and loom then fails an internal
//! assertion; std's `unpark` only ever leaves a token for `park`. The engine
//! unparks threads that may no longer be parked (a flush waiter that already
//! saw its epoch, the collector after it woke), so the models need std's
//! behaviour. This is std's futex parker, with loom's park as the futex: a
//! token word per thread (EMPTY, NOTIFIED, PARKED); `unpark` calls loom's
//! unpark only for a thread that is parked in [`park`] (or about to be).

use std::io;
use std::sync::Arc as StdArc;

use loom::sync::atomic::{AtomicUsize, Ordering};

pub(crate) use loom::thread::yield_now;

const EMPTY: usize = 0;
const NOTIFIED: usize = 1;
const PARKED: usize = 2;

#[derive(Debug)]
struct Parker {
    state: AtomicUsize,
}

impl Parker {
    fn new() -> StdArc<Parker> {
        StdArc::new(Parker {
            state: AtomicUsize::new(EMPTY),
        })
    }
}

loom::thread_local! {
    static PARKER: std::cell::RefCell<Option<StdArc<Parker>>> = std::cell::RefCell::new(None);
}

fn parker() -> StdArc<Parker> {
    PARKER.with(|p| p.borrow_mut().get_or_insert_with(Parker::new).clone())
}

/// A handle to a thread, for [`Thread::unpark`].
#[derive(Debug, Clone)]
pub(crate) struct Thread {
    inner: loom::thread::Thread,
    parker: StdArc<Parker>,
}

impl Thread {
    /// Leaves the thread a token; wakes it if it is parked.
    pub(crate) fn unpark(&self) {
        // Release: pairs with the Acquire in `park`, as std's parker does.
        if self.parker.state.swap(NOTIFIED, Ordering::Release) == PARKED {
            self.inner.unpark();
        }
    }
}

/// The current thread.
pub(crate) fn current() -> Thread {
    Thread {
        inner: loom::thread::current(),
        parker: parker(),
    }
}

/// Blocks until a token is available, and consumes it.
pub(crate) fn park() {
    let p = parker();
    // Acquire: pairs with the Release swap in `Thread::unpark`.
    if p.state
        .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return;
    }
    if p.state
        .compare_exchange(EMPTY, PARKED, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // An unpark came in between: consume it.
        p.state.swap(EMPTY, Ordering::Acquire);
        return;
    }
    loop {
        // Our `unpark` calls loom's only after it saw PARKED, so this returns
        // (loom keeps that unpark if it comes before this call).
        loom::thread::park();
        if p.state
            .compare_exchange(NOTIFIED, EMPTY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
    }
}

/// A joinable thread.
#[derive(Debug)]
pub(crate) struct JoinHandle<T> {
    inner: loom::thread::JoinHandle<T>,
    thread: Thread,
}

impl<T> JoinHandle<T> {
    pub(crate) fn join(self) -> std::thread::Result<T> {
        self.inner.join()
    }

    pub(crate) fn thread(&self) -> &Thread {
        &self.thread
    }
}

/// std's `thread::Builder` (the name is kept for loom's messages).
#[derive(Debug, Default)]
pub(crate) struct Builder {
    name: Option<String>,
}

impl Builder {
    pub(crate) fn new() -> Builder {
        Builder::default()
    }

    pub(crate) fn name(mut self, name: String) -> Builder {
        self.name = Some(name);
        self
    }

    pub(crate) fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let parker = Parker::new();
        let mine = parker.clone();
        let mut b = loom::thread::Builder::new();
        if let Some(n) = self.name {
            b = b.name(n);
        }
        let inner = b.spawn(move || {
            PARKER.with(|p| *p.borrow_mut() = Some(mine));
            f()
        })?;
        let thread = Thread {
            inner: inner.thread().clone(),
            parker,
        };
        Ok(JoinHandle { inner, thread })
    }
}
