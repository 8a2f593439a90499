//! The sender's view of the server's health, shared by its workers (plain
//! data under the sink's lock; time is passed in, so it is tested without
//! threads or clocks):
//!
//! - **In flight**: how many requests may be out at once, adapted to the
//!   failure rate (AIMD). Each window of `limit` answers raises it by one (up
//!   to `ML_DASH_MAX_IN_FLIGHT`) unless more than half of them failed, which
//!   halves it (floor 1); a 429 halves it at once. A request waiting out its
//!   backoff is not out, so a batch that keeps failing does not hold the
//!   others back.
//! - **Independent failures** (the server answers other requests): the failed
//!   request alone waits, from [`QUICK_RETRY`] doubling per failure of that
//!   request, jittered, at most `retry_base_delay`.
//! - **Outage**: [`OUTAGE_STREAK`] failures in a row with no success between
//!   mean the server is down. Then one request at a time probes it, the probe
//!   delay doubling from `retry_base_delay` to `retry_max_delay`; the others
//!   wait for the probe's answer (no thundering herd on recovery). A success
//!   (or any answer that is not a transient failure) ends the outage.
//! - **`Retry-After`** holds every request of the sink, not only the one
//!   answered with it, for the time it names (exactly that time).

use std::time::{Duration, Instant};

/// Transient failures in a row, over all requests, that mean an outage rather
/// than failures of some requests: at 35 % independent failures ten in a row
/// come once in ~36 000 requests (and then cost one `retry_base_delay`).
pub(crate) const OUTAGE_STREAK: u32 = 10;

/// First retry delay of a request that failed while the server is not down
/// (at most `retry_base_delay`). Small on purpose: the load a sink puts on
/// the server is bounded by the in-flight limit (a retry takes the slot of
/// the request it repeats), not by the backoff; what protects a struggling
/// server is the limit halving on failure bursts and on 429, `Retry-After`,
/// and the one-probe rule of an outage. A per-stream order means a failed
/// batch holds its stream until it is taken, so every millisecond of backoff
/// here is a millisecond that stream stands still (10 ms gave 8-11 % of the
/// fault-free rate at 30 % 5xx + 5 % resets on loopback, 2 ms 37-67 %:
/// `perf/RESULTS.md`).
pub(crate) const QUICK_RETRY: Duration = Duration::from_millis(2);

/// Default of `ML_DASH_MAX_IN_FLIGHT`.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// Largest `ML_DASH_MAX_IN_FLIGHT` (one thread each).
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// What a request about to be sent does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Send now; `probe`: it is the one request out during an outage (report
    /// its answer with `probe` set).
    Go { probe: bool },
    /// Wait until then (`None`: until the probe out now is answered).
    Wait(Option<Instant>),
}

/// The link's health (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    max: u32,
    limit: u32,
    /// Requests out now (admitted, not yet answered).
    out: u32,
    /// Answers, and failed ones, in the current window.
    window: u32,
    window_failed: u32,
    /// Transient failures since the last answer that was not one.
    streak: u32,
    /// An outage probe is out.
    probing: bool,
    /// Outage probes failed so far (the doubling of the probe delay).
    probes: u32,
    /// No request starts before this (`Retry-After`, the next outage probe).
    not_before: Option<Instant>,
    base: Duration,
    max_delay: Duration,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new(1, Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Gate {
    /// `max_in_flight` records at most (the start), delays between `base`
    /// (`retry_base_delay`) and `max_delay` (`retry_max_delay`).
    pub(crate) fn new(max_in_flight: usize, base: Duration, max_delay: Duration) -> Gate {
        let max = max_in_flight.clamp(1, MAX_IN_FLIGHT) as u32;
        Gate {
            max,
            limit: max,
            out: 0,
            window: 0,
            window_failed: 0,
            streak: 0,
            probing: false,
            probes: 0,
            not_before: None,
            base,
            max_delay: max_delay.max(base),
        }
    }

    /// Requests that may be out at once now.
    #[cfg(test)]
    fn limit(&self) -> usize {
        self.limit as usize
    }

    /// Every recent request failed: the server is taken as down.
    pub(crate) fn down(&self) -> bool {
        self.streak >= OUTAGE_STREAK
    }

    /// May a request go at `now`? `Go` counts it as out until its answer is
    /// reported (every `Go` is followed by one of [`Gate::success`],
    /// [`Gate::failure`], [`Gate::answered`]). `hurry` (close just started)
    /// skips the wait for `Retry-After` or the next probe, not the limits.
    pub(crate) fn admit(&mut self, now: Instant, hurry: bool) -> Admit {
        if !hurry
            && let Some(t) = self.not_before
            && now < t
        {
            return Admit::Wait(Some(t));
        }
        if self.out >= self.limit || (self.down() && self.probing) {
            return Admit::Wait(None);
        }
        self.out += 1;
        let probe = self.down();
        self.probing |= probe;
        Admit::Go { probe }
    }

    /// A 2xx answer.
    pub(crate) fn success(&mut self, probe: bool) {
        self.answered(probe);
        self.count(false);
    }

    /// An answer that is neither 2xx nor a transient failure (401, 409, 4xx):
    /// the server is up, so any outage is over; the in-flight limit stays.
    pub(crate) fn answered(&mut self, probe: bool) {
        self.returned(probe);
        self.streak = 0;
        self.probes = 0;
    }

    /// A request admitted by [`Gate::admit`] is back.
    fn returned(&mut self, probe: bool) {
        self.out = self.out.saturating_sub(1);
        if probe {
            self.probing = false;
        }
    }

    /// A transient failure (connection error, timeout, 408, 429, 5xx) of a
    /// request that had failed `attempt` times before; `overload` for a 429.
    /// Returns how long this request waits before it asks [`Gate::admit`] again.
    pub(crate) fn failure(
        &mut self,
        now: Instant,
        probe: bool,
        attempt: u32,
        retry_after: Option<Duration>,
        overload: bool,
    ) -> Duration {
        self.returned(probe);
        if probe {
            self.probes = self.probes.saturating_add(1);
        }
        self.streak = self.streak.saturating_add(1);
        if overload {
            self.halve();
        } else {
            self.count(true);
        }
        if self.down() {
            // One probe per backoff, from retry_base_delay doubling per failed
            // probe up to retry_max_delay (or what the server asked for).
            self.limit = 1;
            let d = retry_after
                .unwrap_or_else(|| jitter(doubled(self.base, self.probes, self.max_delay)));
            self.hold(after(now, d));
            return Duration::ZERO;
        }
        if let Some(d) = retry_after {
            self.hold(after(now, d));
            return d;
        }
        retry_delay(attempt, self.base)
    }

    /// No request before `t`.
    fn hold(&mut self, t: Instant) {
        self.not_before = Some(self.not_before.map_or(t, |n| n.max(t)));
    }

    /// One answer into the AIMD window.
    fn count(&mut self, failed: bool) {
        self.window += 1;
        self.window_failed += u32::from(failed);
        if self.window < self.limit {
            return;
        }
        if 2 * self.window_failed > self.window {
            self.halve();
        } else {
            self.limit = (self.limit + 1).min(self.max);
            self.window = 0;
            self.window_failed = 0;
        }
    }

    fn halve(&mut self) {
        self.limit = (self.limit / 2).max(1);
        self.window = 0;
        self.window_failed = 0;
    }
}

/// The wait of a request that failed `attempt` times before while the server
/// is not down: [`QUICK_RETRY`] (at most `base`) doubling per attempt, at most
/// `base`, jittered.
pub(crate) fn retry_delay(attempt: u32, base: Duration) -> Duration {
    jitter(doubled(QUICK_RETRY.min(base), attempt, base))
}

/// `now + d`, saturated (the farthest instant `Instant` can hold).
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| after(now, d / 2))
}

/// `d * 2^n`, at most `cap`.
fn doubled(d: Duration, n: u32, cap: Duration) -> Duration {
    d.checked_mul(1u32 << n.min(20)).unwrap_or(cap).min(cap)
}

/// Uniform in the upper half of `d`.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);

    fn fail(g: &mut Gate, now: Instant, probe: bool, attempt: u32) -> Duration {
        g.failure(now, probe, attempt, None, false)
    }

    #[test]
    fn independent_failures_wait_milliseconds_and_keep_the_limit_up() {
        let mut g = Gate::new(8, BASE, MAX);
        let now = Instant::now();
        // One request in three fails (more than the 30 % of the issue): never
        // an outage, each failed request retries after 5-10 ms (its first
        // retry), and the in-flight limit stays at its ceiling.
        for i in 0..3000 {
            assert_eq!(g.admit(now, false), Admit::Go { probe: false });
            if i % 3 == 1 {
                let d = fail(&mut g, now, false, 0);
                assert!(d >= QUICK_RETRY / 2 && d <= QUICK_RETRY, "{d:?}");
            } else {
                g.success(false);
            }
            assert!(!g.down());
        }
        assert_eq!(g.limit(), 8);
        // A request failing again and again backs off by doubling, up to
        // retry_base_delay.
        let d: Vec<Duration> = (0..9).map(|a| fail(&mut g, now, false, a)).collect();
        assert!(d[3] >= QUICK_RETRY * 4 && d[3] <= QUICK_RETRY * 8, "{d:?}");
        assert!(
            d[8] >= QUICK_RETRY * 128 && d[8] <= QUICK_RETRY * 256,
            "{d:?}"
        );
        let mut g = Gate::new(8, QUICK_RETRY * 20, MAX);
        let d: Vec<Duration> = (0..9).map(|a| fail(&mut g, now, false, a)).collect();
        assert!(
            d[8] >= QUICK_RETRY * 10 && d[8] <= QUICK_RETRY * 20,
            "{d:?}"
        );
    }

    #[test]
    fn the_limit_grows_by_one_per_window_and_halves_on_failure_bursts() {
        let mut g = Gate::new(8, BASE, MAX);
        let now = Instant::now();
        assert_eq!(g.limit(), 8, "starts at the ceiling");
        // Failure bursts (more than half of a window), never ten in a row.
        let burst = |g: &mut Gate, pattern: &str| {
            for c in pattern.chars() {
                if c == 'F' {
                    fail(g, now, false, 0);
                } else {
                    g.success(false);
                }
                assert!(!g.down());
            }
        };
        burst(&mut g, "FFFSFFFF");
        assert_eq!(g.limit(), 4, "7 of 8 failed: halved");
        burst(&mut g, "FSFF");
        assert_eq!(g.limit(), 2);
        burst(&mut g, "SS");
        assert_eq!(g.limit(), 3, "+1 per window of successes");
        burst(&mut g, "SSS");
        assert_eq!(g.limit(), 4);
        burst(&mut g, "SFSF");
        assert_eq!(g.limit(), 5, "half failed is not a burst");
        // A 429 halves at once.
        g.failure(now, false, 0, None, true);
        assert_eq!(g.limit(), 2);
        for _ in 0..40 {
            g.success(false);
        }
        assert_eq!(g.limit(), 8, "never above the ceiling");
    }

    #[test]
    fn an_outage_collapses_to_one_probe_per_backoff() {
        let mut g = Gate::new(8, BASE, MAX);
        let mut now = Instant::now();
        for a in 0..OUTAGE_STREAK - 1 {
            assert!(fail(&mut g, now, false, a) <= BASE);
            assert!(!g.down());
        }
        assert_eq!(fail(&mut g, now, false, 9), Duration::ZERO);
        assert!(g.down());
        assert_eq!(g.limit(), 1);
        // Nobody goes before the first probe delay (base, jittered).
        let Admit::Wait(Some(t)) = g.admit(now, false) else {
            panic!("an outage holds every request");
        };
        assert!(t >= now + BASE / 2 && t <= now + BASE);
        let mut gaps = Vec::new();
        for _ in 0..12 {
            let Admit::Wait(Some(t)) = g.admit(now, false) else {
                panic!("waits for the next probe");
            };
            gaps.push(t - now);
            now = t;
            assert_eq!(g.admit(now, false), Admit::Go { probe: true });
            for _ in 0..5 {
                assert_eq!(
                    g.admit(now, false),
                    Admit::Wait(None),
                    "one probe at a time"
                );
            }
            assert_eq!(fail(&mut g, now, true, 0), Duration::ZERO);
        }
        // The probe delay doubles from retry_base_delay up to retry_max_delay.
        assert!(gaps[1] >= BASE && gaps[1] <= BASE * 2, "{gaps:?}");
        assert!(gaps[2] >= BASE * 2 && gaps[2] <= BASE * 4, "{gaps:?}");
        for g in &gaps[6..] {
            assert!(*g >= MAX / 2 && *g <= MAX, "{gaps:?}");
        }
        // The probe gets through: everyone may go again.
        let Admit::Wait(Some(t)) = g.admit(now, false) else {
            panic!("waits for the next probe");
        };
        assert_eq!(g.admit(t, false), Admit::Go { probe: true });
        g.success(true);
        assert!(!g.down());
        // From one request out, growing again by AIMD.
        assert_eq!(g.limit(), 2);
        assert_eq!(g.admit(t, false), Admit::Go { probe: false });
        assert_eq!(g.admit(t, false), Admit::Go { probe: false });
        assert_eq!(g.admit(t, false), Admit::Wait(None));
        assert!(
            fail(&mut g, t, false, 0) <= QUICK_RETRY,
            "back to quick retries"
        );
    }

    #[test]
    fn the_limit_bounds_the_requests_out_not_those_in_backoff() {
        let mut g = Gate::new(2, BASE, MAX);
        let now = Instant::now();
        assert_eq!(g.admit(now, false), Admit::Go { probe: false });
        assert_eq!(g.admit(now, false), Admit::Go { probe: false });
        assert_eq!(g.admit(now, false), Admit::Wait(None), "two out");
        // One fails: while it waits its backoff, another request may go.
        assert!(fail(&mut g, now, false, 0) <= QUICK_RETRY);
        assert_eq!(g.admit(now, false), Admit::Go { probe: false });
        assert_eq!(g.admit(now, false), Admit::Wait(None));
        g.success(false);
        assert_eq!(g.admit(now, false), Admit::Go { probe: false });
    }

    #[test]
    fn retry_after_holds_every_request_for_exactly_its_time() {
        let mut g = Gate::new(4, BASE, MAX);
        let now = Instant::now();
        let two = Duration::from_secs(2);
        assert_eq!(g.failure(now, false, 0, Some(two), true), two);
        for _ in 0..3 {
            assert_eq!(g.admit(now, false), Admit::Wait(Some(now + two)));
        }
        assert_eq!(
            g.admit(now, true),
            Admit::Go { probe: false },
            "close's one more try goes at once"
        );
        assert_eq!(g.admit(now + two, false), Admit::Go { probe: false });
        // In an outage the server's Retry-After is the probe delay.
        for a in 0..OUTAGE_STREAK {
            fail(&mut g, now, false, a);
        }
        let later = now + Duration::from_secs(60);
        let seven = Duration::from_secs(7);
        assert_eq!(g.admit(later, false), Admit::Go { probe: true });
        g.failure(later, true, 0, Some(seven), false);
        assert_eq!(g.admit(later, false), Admit::Wait(Some(later + seven)));
    }

    #[test]
    fn any_answer_ends_an_outage() {
        let mut g = Gate::new(4, BASE, MAX);
        let now = Instant::now();
        for a in 0..OUTAGE_STREAK {
            fail(&mut g, now, false, a);
        }
        let t = now + MAX;
        assert_eq!(g.admit(t, false), Admit::Go { probe: true });
        g.answered(true); // e.g. a 401: the server is up
        assert!(!g.down());
        assert_eq!(g.admit(t, false), Admit::Go { probe: false });
    }
}
