//! Termination signals, opt-in ([`Experiment::handle_signals`](crate::Experiment::handle_signals),
//! `ML_DASH_HANDLE_SIGNALS`): on SIGTERM (scancel, preemption, torchrun
//! stopping its workers) or SIGINT (Ctrl-C) the runs that asked drain within
//! `ML_DASH_SIGNAL_DEADLINE`, record CANCELLED, and the signal then takes
//! its course as if the engine had not been there: the program's own
//! handler, or the default action (the process ends by the signal, as its
//! launcher expects).
//!
//! ```text
//!  signal --> handler: one byte into a pipe (async-signal-safe: write(2) only)
//!             watcher thread "ml-dash-signals" (poll on the pipe)
//!               each run: a warn log line {"signal": ..}, flush, close as CANCELLED
//!               wait until every collector ended or the deadline passed
//!               (a second signal ends the wait at once)
//!               put the previous dispositions back, kill(getpid(), signal)
//! ```
//!
//! The handler is installed with `sigaction`, not chained through a handler
//! registry: restoring the disposition found at install time and raising the
//! signal again runs the program's own handler *after* the drain (a chain
//! would run it at once, beside the drain), and the default action really
//! happens (a registry's handler stays installed). A signal whose
//! disposition is "ignore" when the first run asks (a job started with `&`
//! from a script ignores SIGINT) is left ignored. `libc` is enough for this;
//! no handler crate is needed.
//!
//! fork: the child keeps the handler but not the watcher. The handler tells
//! by the pid: in a process that did not install it, it restores the
//! previous disposition and raises the signal again (the child behaves as if
//! never installed). A child that opens a run with signals on installs its
//! own pipe and watcher. The state is atomics only (no lock a parent's
//! thread could hold across the fork), and the install section is a spin
//! lock tagged with the holder's pid, so a child takes it over.

use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::api::Status;
use crate::config::{WAIT_RANGE, parse_duration};
use crate::error::{Error, Result};
use crate::record::{Head, Level, kind};
use crate::run::RunCore;

/// `ML_DASH_HANDLE_SIGNALS`: `0` (off), `term` (SIGTERM) or `1` (SIGTERM and SIGINT).
pub const ENV_HANDLE_SIGNALS: &str = "ML_DASH_HANDLE_SIGNALS";
/// `ML_DASH_SIGNAL_DEADLINE`: seconds a signal waits for the runs to drain.
pub const ENV_SIGNAL_DEADLINE: &str = "ML_DASH_SIGNAL_DEADLINE";
/// Default of `ML_DASH_SIGNAL_DEADLINE`: 10 s (inside SLURM's default
/// 30 s between SIGTERM and SIGKILL).
pub const DEFAULT_SIGNAL_DEADLINE: Duration = Duration::from_secs(10);

/// Which termination signals close a run before they take their course.
///
/// # Examples
/// ```
/// use ml_dash::HandleSignals;
/// assert_eq!(HandleSignals::default(), HandleSignals::Off);
/// assert_eq!("term".parse::<HandleSignals>()?, HandleSignals::Term);
/// assert_eq!("1".parse::<HandleSignals>()?, HandleSignals::TermAndInt);
/// # Ok::<(), ml_dash::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HandleSignals {
    /// None (the default of the Rust API): the program decides.
    #[default]
    Off,
    /// SIGTERM only (the Python module's default: SIGINT stays Python's
    /// `KeyboardInterrupt`, which closes the run through `with` or at exit).
    Term,
    /// SIGTERM and SIGINT.
    TermAndInt,
}

impl HandleSignals {
    /// `ML_DASH_HANDLE_SIGNALS` (`None` when unset).
    ///
    /// # Errors
    /// [`Error::Config`] for a value other than `0`/`false`/`off`,
    /// `term`, `1`/`true`/`on`.
    ///
    /// # Examples
    /// ```
    /// use ml_dash::HandleSignals;
    /// // What `Experiment::run` does when code does not say.
    /// let which = HandleSignals::from_env()?.unwrap_or_default();
    /// # let _ = which;
    /// # Ok::<(), ml_dash::Error>(())
    /// ```
    pub fn from_env() -> Result<Option<HandleSignals>> {
        match std::env::var(ENV_HANDLE_SIGNALS) {
            Ok(v) => v.parse().map(Some),
            Err(_) => Ok(None),
        }
    }

    fn signals(self) -> &'static [libc::c_int] {
        match self {
            HandleSignals::Off => &[],
            HandleSignals::Term => &[libc::SIGTERM],
            HandleSignals::TermAndInt => &[libc::SIGTERM, libc::SIGINT],
        }
    }
}

impl std::str::FromStr for HandleSignals {
    type Err = Error;

    fn from_str(s: &str) -> Result<HandleSignals> {
        match s.trim().to_ascii_lowercase().as_str() {
            "0" | "false" | "no" | "off" => Ok(HandleSignals::Off),
            "term" | "sigterm" => Ok(HandleSignals::Term),
            "1" | "true" | "yes" | "on" | "term,int" => Ok(HandleSignals::TermAndInt),
            _ => Err(Error::Config {
                name: ENV_HANDLE_SIGNALS,
                value: s.to_string(),
                reason: "use 1 (SIGTERM and SIGINT), term (SIGTERM only) or 0 (none)",
            }),
        }
    }
}

/// `ML_DASH_SIGNAL_DEADLINE`, checked (0 to 86400 s).
///
/// # Errors
/// [`Error::Config`] for a value out of range.
pub(crate) fn deadline_from_env() -> Result<Duration> {
    match std::env::var(ENV_SIGNAL_DEADLINE) {
        Ok(v) => parse_duration(ENV_SIGNAL_DEADLINE, &v, &WAIT_RANGE),
        Err(_) => Ok(DEFAULT_SIGNAL_DEADLINE),
    }
}

/// The signal being handled (0: none so far).
static FIRED: AtomicI32 = AtomicI32::new(0);

/// Whether a termination signal is closing this process's runs.
pub(crate) fn fired() -> bool {
    // Relaxed: a hint (shared mode's rank 0 then does not wait for the others).
    FIRED.load(Ordering::Relaxed) != 0
}

/// Called where a call finds its run closed: while a signal is closing
/// this process's runs, the caller waits (at most the deadline and a
/// second) instead of getting `Closed` at once, so a training loop does not
/// end the process (an error, a normal exit) before the signal does. When
/// the process survives the signal (its own handler), the call returns.
pub(crate) fn wait_out() {
    #[cfg(target_os = "linux")]
    if fired() && std::thread::current().name() != Some("ml-dash-signals") {
        linux::wait_out();
    }
}

/// Closes `core` on the signals of `which` (from here until it closes),
/// installing the handler and starting the watcher on first use in this
/// process. Off on other systems than Linux.
///
/// # Errors
/// [`Error::Io`] when the pipe or the watcher thread cannot be made.
pub(crate) fn watch(core: &Arc<RunCore>, which: HandleSignals, deadline: Duration) -> Result<()> {
    if which == HandleSignals::Off {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    return linux::watch(core, which, deadline);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (core, deadline);
        Ok(())
    }
}

/// The handler, the watcher and their state (`libc::pipe2` and
/// `__errno_location` are Linux's).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // the handler, the pipe and sigaction: libc throughout
mod linux {
    use super::*;

    /// Closes `core` on the signals of `which` (from here until it closes),
    /// installing the handler and starting the watcher on first use in this
    /// process.
    ///
    /// # Errors
    /// [`Error::Io`] when the pipe or the watcher thread cannot be made.
    pub(super) fn watch(
        core: &Arc<RunCore>,
        which: HandleSignals,
        deadline: Duration,
    ) -> Result<()> {
        installing(|| {
            let me = pid();
            // Relaxed: see the statics' comment.
            if OWNER.load(Ordering::Relaxed) != me {
                start_watcher()?;
            }
            for &sig in which.signals() {
                install(sig)?;
            }
            let ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
            DEADLINE_MS.fetch_max(ms, Ordering::Relaxed);
            let mut runs: Vec<Weak<RunCore>> = match RUNS.load_full() {
                Some(r) if r.0 == me => {
                    r.1.iter()
                        .filter(|w| w.strong_count() > 0)
                        .cloned()
                        .collect()
                }
                _ => Vec::new(),
            };
            runs.push(Arc::downgrade(core));
            RUNS.store(Some(Arc::new((me, runs))));
            Ok(())
        })
    }

    pub(super) fn wait_out() {
        let limit = Duration::from_millis(DEADLINE_MS.load(Ordering::Relaxed))
            .saturating_add(Duration::from_secs(1));
        let start = Instant::now();
        // Relaxed: the watcher clears FIRED once the signal took its course.
        while FIRED.load(Ordering::Relaxed) != 0 && start.elapsed() < limit {
            std::thread::park_timeout(Duration::from_millis(5));
        }
    }

    /// The signals handled, in `PREV` order.
    const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

    // Every static below is read by the handler or written before it can run;
    // each is an atomic, so the handler reads whole values. Relaxed throughout:
    // the install writes them all before `sigaction` makes the handler live
    // (a system call, which orders them for a handler in any thread), and the
    // watcher writes them while holding INSTALL (taken with Acquire,
    // left with Release).

    /// Write end of the wake-up pipe (-1: none).
    static PIPE_W: AtomicI32 = AtomicI32::new(-1);
    /// The process whose watcher reads the pipe (a fork's child is not it).
    static OWNER: AtomicU32 = AtomicU32::new(0);
    /// The disposition each of `SIGNALS` had before ours (a leaked box;
    /// null: ours is not installed for it).
    static PREV: [AtomicPtr<libc::sigaction>; 2] = [
        AtomicPtr::new(std::ptr::null_mut()),
        AtomicPtr::new(std::ptr::null_mut()),
    ];
    /// Milliseconds a signal waits for the drain (the longest any run asked).
    static DEADLINE_MS: AtomicU64 = AtomicU64::new(0);
    /// The install section: 0, or the pid of the process whose thread holds it.
    static INSTALL: AtomicU32 = AtomicU32::new(0);
    /// The runs to close, with the process that registered them.
    static RUNS: ArcSwapOption<(u32, Vec<Weak<RunCore>>)> = ArcSwapOption::const_empty();

    #[cfg(target_os = "linux")]
    fn pid() -> u32 {
        std::process::id()
    }

    #[cfg(target_os = "linux")]
    /// Runs `f` in the install section (a spin lock a fork's child takes over:
    /// its holder is then a thread of the parent, which the child does not have).
    fn installing<R>(f: impl FnOnce() -> R) -> R {
        let me = pid();
        loop {
            // Acquire on success: pairs with the Release store that ended the
            // previous section, so its writes are seen here.
            match INSTALL.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(holder) if holder != me => {
                    // A parent's thread held it at the fork: take it over.
                    if INSTALL
                        .compare_exchange(holder, me, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        break;
                    }
                }
                Err(_) => std::thread::yield_now(),
            }
        }
        let r = f();
        // Release: pairs with the Acquire above in the next holder.
        INSTALL.store(0, Ordering::Release);
        r
    }

    /// A new pipe and its watcher thread, for this process.
    fn start_watcher() -> Result<()> {
        let mut fds = [-1; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`, which lives here.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(Error::io("signal pipe", std::io::Error::last_os_error()));
        }
        let (r, w) = (fds[0], fds[1]);
        std::thread::Builder::new()
            .name("ml-dash-signals".into())
            .spawn(move || watcher(r))
            .map_err(|e| {
                // SAFETY: closing the two descriptors made above, used by no one.
                unsafe {
                    libc::close(r);
                    libc::close(w);
                }
                Error::io("signal watcher thread", e)
            })?;
        // Relaxed: see the statics' comment. (A fork's child that gets here
        // keeps the parent's two inherited ends open, unused.)
        PIPE_W.store(w, Ordering::Relaxed);
        OWNER.store(pid(), Ordering::Relaxed);
        Ok(())
    }

    /// Installs the handler for `sig` unless it is installed or ignored.
    fn install(sig: libc::c_int) -> Result<()> {
        let slot = &PREV[SIGNALS
            .iter()
            .position(|&s| s == sig)
            .expect("a handled signal")];
        // Relaxed: see the statics' comment.
        if !slot.load(Ordering::Relaxed).is_null() {
            return Ok(());
        }
        // SAFETY: a zeroed sigaction is a valid value to be overwritten.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: querying the disposition into `old`, which lives here.
        if unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } != 0 {
            return Err(Error::io("sigaction", std::io::Error::last_os_error()));
        }
        if old.sa_sigaction == libc::SIG_IGN {
            return Ok(());
        }
        // SAFETY: as above.
        let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
        ours.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        ours.sa_flags = libc::SA_RESTART;
        // SAFETY: `sa_mask` lives in `ours`; sigemptyset only writes it.
        unsafe { libc::sigemptyset(&mut ours.sa_mask) };
        // Published before the handler can run (it reads it in a fork's child).
        slot.store(Box::into_raw(Box::new(old)), Ordering::Relaxed);
        // SAFETY: `ours` is a complete sigaction whose handler is
        // async-signal-safe (`on_signal`).
        if unsafe { libc::sigaction(sig, &ours, std::ptr::null_mut()) } != 0 {
            let e = std::io::Error::last_os_error();
            let p = slot.swap(std::ptr::null_mut(), Ordering::Relaxed);
            // SAFETY: `p` came from Box::into_raw just above and is no longer shared.
            drop(unsafe { Box::from_raw(p) });
            return Err(Error::io("sigaction", e));
        }
        Ok(())
    }

    /// Puts back the disposition `sig` had before ours (async-signal-safe:
    /// atomic loads and `sigaction`). The saved box stays allocated: a handler
    /// in another thread may still read it.
    fn restore(sig: libc::c_int) {
        let Some(i) = SIGNALS.iter().position(|&s| s == sig) else {
            return;
        };
        // Relaxed: see the statics' comment.
        let prev = PREV[i].swap(std::ptr::null_mut(), Ordering::Relaxed);
        if !prev.is_null() {
            // SAFETY: `prev` points at a sigaction that is never freed.
            unsafe { libc::sigaction(sig, prev, std::ptr::null_mut()) };
        }
    }

    /// The handler: wakes the watcher, nothing else (async-signal-safe: atomic
    /// loads, getpid, write; errno is kept).
    extern "C" fn on_signal(sig: libc::c_int) {
        // SAFETY: __errno_location returns this thread's errno slot.
        let errno = unsafe { *libc::__errno_location() };
        // Relaxed: see the statics' comment.
        let fd = PIPE_W.load(Ordering::Relaxed);
        if fd >= 0 && pid() == OWNER.load(Ordering::Relaxed) {
            let b = sig as u8;
            // SAFETY: writing one byte from a local to our pipe; a full pipe
            // (EAGAIN) already holds a wake-up.
            unsafe { libc::write(fd, (&raw const b).cast(), 1) };
        } else {
            // A fork's child: no watcher here. Behave as if never installed.
            restore(sig);
            // SAFETY: raise is async-signal-safe; the signal is blocked while
            // this handler runs and is delivered when it returns.
            unsafe { libc::raise(sig) };
        }
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }

    /// Waits up to `timeout` for a byte on the pipe; the signal it names.
    fn next_signal(fd: libc::c_int, timeout: Option<Duration>) -> Option<libc::c_int> {
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polling one pollfd that lives here.
        if unsafe { libc::poll(&mut p, 1, ms) } <= 0 {
            return None;
        }
        let mut b = 0u8;
        // SAFETY: reading one byte into a local.
        let n = unsafe { libc::read(fd, (&raw mut b).cast(), 1) };
        (n == 1).then_some(libc::c_int::from(b))
    }

    fn watcher(fd: libc::c_int) {
        loop {
            let Some(sig) = next_signal(fd, None) else {
                continue;
            };
            if pid() != OWNER.load(Ordering::Relaxed) {
                return; // (a fork's child never runs this thread; defensive)
            }
            FIRED.store(sig, Ordering::Relaxed);
            let deadline = Duration::from_millis(DEADLINE_MS.load(Ordering::Relaxed));
            let start = Instant::now();
            let runs: Vec<Arc<RunCore>> = match RUNS.load_full() {
                Some(r) if r.0 == pid() => r.1.iter().filter_map(Weak::upgrade).collect(),
                _ => Vec::new(),
            };
            let open: Vec<Arc<RunCore>> = runs
                .into_iter()
                .filter(|c| c.check_owner().is_ok() && c.alive())
                .collect();
            let name = if sig == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            for core in &open {
                note(core, name);
            }
            // Flush first (logging goes on meanwhile: the loop is not cut off
            // mid-step), then close: the close drains only what came since.
            let mut hurried = false;
            for core in &open {
                let left = deadline.saturating_sub(start.elapsed());
                if core.flush_within(left).is_none() {
                    hurried = true; // the deadline passed
                    break;
                }
            }
            for core in &open {
                crate::pipeline::request_close(core, Status::Cancelled);
            }
            while !hurried && open.iter().any(|c| c.alive()) {
                let left = deadline.saturating_sub(start.elapsed());
                if left.is_zero() {
                    break;
                }
                // A second signal: do not wait any longer.
                if next_signal(fd, Some(left.min(Duration::from_millis(20)))).is_some() {
                    break;
                }
            }
            installing(|| {
                for s in SIGNALS {
                    restore(s);
                }
            });
            // SAFETY: kill(2) on our own process; the previous disposition runs.
            unsafe { libc::kill(libc::getpid(), sig) };
            // A program whose own handler lets it go on has no run closing now.
            FIRED.store(0, Ordering::Relaxed);
        }
    }

    /// The marker: a warn log line saying which signal closed the run.
    fn note(core: &Arc<RunCore>, name: &str) {
        let message = format!("{name}: closing the run as CANCELLED");
        let head = Head {
            kind: kind::LOG,
            aux: Level::Warn.to_u8(),
            stream: 0,
            ts: crate::encode::now_nanos(),
        };
        let _ = core.push(head, message.as_bytes(), &[("signal", name.into())]);
    }
}
