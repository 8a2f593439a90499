//! Sleep and wake-up: a short tick while producers are active, a long park
//! when idle, and the collector half of the Dekker pair with
//! `RunCore::nudge`.

use std::time::Duration;

use super::Collector;
use crate::sink::Sink;
use crate::sink::local::HEARTBEAT_INTERVAL;
#[cfg(not(ml_dash_mutant = "wake_no_fence"))]
use crate::sync::fence;
use crate::sync::{Ordering, park_timeout};

/// Tick period while producers are active.
const TICK: Duration = Duration::from_micros(250);
/// Empty ticks before the collector parks until the next trigger. The models
/// have no time, so there every sleep is the full sleep protocol (a tick
/// would be a wake-up that nobody sends).
const IDLE_TICKS: u32 = 40;

impl<S: Sink> Collector<S> {
    /// The re-check before a long park. Runs after `sleeping = true` and an
    /// SC fence (see `sleep`).
    fn has_work(&mut self) -> bool {
        // Acquire (and no lost wake-up without it): `flush` always unparks us
        // after its RMW, so a stale value here costs one empty loop at most.
        if self.core.epochs.requested.load(Ordering::Acquire) > self.completed {
            return true;
        }
        // Relaxed is enough for `wake_wanted`: the SC fences order it (see
        // `sleep`), and `true` only sends us round the loop. The ring's tail
        // is read with Acquire (the ring's own pair with the producer's
        // commit); after the fence it is at least as new as any tail stored
        // before a nudge that missed `sleeping`.
        self.chains
            .iter()
            .any(|c| c.shared.wake_wanted.load(Ordering::Relaxed) || !c.consumer.is_empty())
    }

    pub(super) fn sleep(&mut self) {
        if cfg!(not(ml_dash_loom)) && self.idle_ticks < IDLE_TICKS {
            park_timeout(TICK);
            return;
        }
        // The collector half of the Dekker pair with `RunCore::nudge`: store
        // `sleeping`, SC fence, then re-check. Either a producer's nudge sees
        // `sleeping` and unparks us, or this re-check sees its `wake_wanted`.
        // Relaxed store: the fence orders it.
        self.core.sleeping.store(true, Ordering::Relaxed);
        #[cfg(not(ml_dash_mutant = "wake_no_fence"))]
        fence(Ordering::SeqCst);
        if !self.has_work() {
            let pending = self.pending().any() || !self.params.is_empty();
            let interval = self.write_interval();
            let wait = if pending {
                interval.saturating_sub(self.last_write.elapsed())
            } else {
                interval
            };
            park_timeout(wait.max(TICK).min(HEARTBEAT_INTERVAL));
        }
        // Relaxed: only the nudges read it, and they re-check after their fence.
        self.core.sleeping.store(false, Ordering::Relaxed);
        self.idle_ticks = 0;
    }
}
