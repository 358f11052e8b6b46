//! Properties of the start times the cumulative tracker gives kernel counters, for any
//! sequence of observations: what OTLP consumers rely on to compute rates.

use podnet_pipeline::cumulative::CumulativeTracker;
use proptest::prelude::*;

proptest! {
    /// For one series observed at increasing times: the start time is never after the
    /// observation, never goes backwards, and moves exactly when the value fell (a reset),
    /// to the previous observation's time.
    #[test]
    fn start_times_follow_resets(values in proptest::collection::vec(0u64..1_000, 1..60), origin in 0u64..5_000) {
        let mut t = CumulativeTracker::default();
        let mut prev: Option<(u64, u64, u64)> = None; // (value, time, start)
        for (i, v) in values.iter().enumerate() {
            let now = 1_000 + 10 * i as u64;
            t.begin_round();
            let start = t.observe("s", *v, now, origin);
            t.end_round();
            prop_assert!(start <= now);
            match prev {
                None => prop_assert_eq!(start, origin.min(now)),
                Some((pv, pt, ps)) => {
                    if *v < pv {
                        prop_assert_eq!(start, pt, "a fall is a reset since the previous observation");
                    } else {
                        prop_assert_eq!(start, ps, "no fall, no new start");
                    }
                    prop_assert!(start >= ps);
                }
            }
            prev = Some((*v, now, start));
        }
        let falls = values.windows(2).filter(|w| w[1] < w[0]).count() as u64;
        prop_assert_eq!(t.resets(), falls);
    }

    /// Series missing from a round are forgotten; one that comes back starts afresh.
    #[test]
    fn vanished_series_start_afresh(present in proptest::collection::vec(any::<bool>(), 2..40)) {
        let mut t = CumulativeTracker::default();
        let mut was_present = false;
        for (i, here) in present.iter().enumerate() {
            let now = 100 + i as u64;
            t.begin_round();
            if *here {
                let start = t.observe("s", 5, now, 0);
                if !was_present {
                    prop_assert_eq!(start, 0, "a new series starts at its origin");
                }
            }
            t.end_round();
            prop_assert_eq!(t.len(), usize::from(*here));
            was_present = *here;
        }
    }
}
