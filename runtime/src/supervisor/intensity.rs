//! Restart intensity: at most `max_restarts` restarts within any `period`, kept as
//! a sliding window of restart times.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::Exit;

use super::address::SupervisorError;

/// The restarts of the last period.
pub(super) struct RestartWindow {
    /// At most this many restarts...
    pub(super) max_restarts: u32,
    /// ...within this period.
    pub(super) period: Duration,
    /// When the restarts of the last period happened, oldest first. Holds at most
    /// `max_restarts + 1` entries.
    times: VecDeque<Instant>,
}

impl RestartWindow {
    pub(super) fn new(max_restarts: u32, period: Duration) -> RestartWindow {
        RestartWindow {
            max_restarts,
            period,
            times: VecDeque::new(),
        }
    }

    /// Counts a restart at `now`; false if it is one too many for the period.
    pub(super) fn admit(&mut self, now: Instant) -> bool {
        while let Some(&oldest) = self.times.front() {
            if now.saturating_duration_since(oldest) > self.period {
                self.times.pop_front();
            } else {
                break;
            }
        }
        if self.times.len() >= self.max_restarts as usize {
            return false;
        }
        self.times.push_back(now);
        true
    }

    /// Counts the restart of child `child` (ended with `reason`) now; if it is one
    /// too many, logs it and returns the reason the supervisor `label` exits
    /// with: a clean end, as in OTP (its `shutdown`), so that the supervisor's own
    /// transient parent does not restart it; the reason says why.
    pub(super) fn admit_or_give_up(
        &mut self,
        label: &str,
        child: &str,
        reason: &Exit,
    ) -> Option<Exit> {
        if self.admit(Instant::now()) {
            return None;
        }
        tracing::warn!(
            supervisor = %label,
            child = %child,
            max_restarts = self.max_restarts,
            period = ?self.period,
            "restart intensity exceeded; shutting down"
        );
        Some(Exit::done(SupervisorError::IntensityExceeded {
            max_restarts: self.max_restarts,
            period: self.period,
            child: child.to_string(),
            reason: reason.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_max_restarts_within_the_period_and_no_more() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut window = RestartWindow::new(3, s(5));
        assert!(window.admit(t0));
        assert!(window.admit(t0 + s(1)));
        assert!(window.admit(t0 + s(2)));
        assert!(!window.admit(t0 + s(3)));
        // The first restart leaves the window after 5 s: room for one more.
        assert!(window.admit(t0 + s(6)));
        assert!(!window.admit(t0 + s(6)));
        // Far later, the window is empty again.
        assert!(window.admit(t0 + s(60)));
    }

    #[test]
    fn zero_allows_no_restart() {
        let mut window = RestartWindow::new(0, Duration::from_secs(5));
        assert!(!window.admit(Instant::now()));
    }
}
