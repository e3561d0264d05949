//! Threshold calibration on a declared normal period.
//!
//! A fixed threshold (a z of 6, a novelty of 0.3) floods on some series and stays silent on
//! others, because what a detector scores on normal data depends on the series: a quantised or
//! smooth sensor gives huge robust z-scores to ordinary steps, a noisy one small scores to real
//! faults. Calibrating instead sets each detector's threshold, per sensor or per asset, from the
//! scores the detector gave to a period declared normal: a high quantile of those scores times a
//! margin, never below the detector's own floor.
//!
//! Input: the detector's scores over the normal period (non-finite ones are ignored), the quantile
//! `q` in `[0, 1]`, the margin (> 0) and a floor. Output: the threshold, or `None` when the normal
//! period gave no finite score. State: none; every function is pure and deterministic.

/// The `q`-quantile of `values` with linear interpolation between order statistics (the default
/// of numpy's `quantile` and R's type 7): position `q · (n − 1)` in the sorted finite values.
/// Non-finite values are ignored; `None` when none is left. `q` is clamped to `[0, 1]` (NaN as 1).
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let frac = pos - lo as f64;
    Some(v[lo] + (v[hi] - v[lo]) * frac)
}

/// The calibrated threshold: `max(floor, quantile(normal_scores, q) · margin)`. `None` when the
/// normal period gave no finite score (the detector should then keep its configured threshold).
pub fn calibrated_threshold(normal_scores: &[f64], q: f64, margin: f64, floor: f64) -> Option<f64> {
    let base = quantile(normal_scores, q)?;
    let t = base * margin.max(0.0);
    Some(if t.is_finite() { t.max(floor) } else { floor })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quantile_matches_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4], 0.5) == 2.5; ([1..=10], 0.99) == 9.91
        assert_eq!(quantile(&[4.0, 1.0, 3.0, 2.0], 0.5), Some(2.5));
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert!((quantile(&v, 0.99).unwrap() - 9.91).abs() < 1e-12);
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(10.0));
        assert_eq!(quantile(&[f64::NAN, 3.0, f64::INFINITY], 0.7), Some(3.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[f64::NAN], 0.5), None);
    }

    #[test]
    fn threshold_is_quantile_times_margin_with_a_floor() {
        let normal: Vec<f64> = (0..1000).map(|i| f64::from(i % 100) / 10.0).collect();
        let t = calibrated_threshold(&normal, 0.99, 2.0, 0.0).unwrap();
        // numpy.quantile of these 1,000 values at 0.99 is 9.801.
        assert!((t - 2.0 * 9.801).abs() < 1e-9, "{t}");
        assert_eq!(calibrated_threshold(&[0.0; 10], 0.99, 3.0, 6.0), Some(6.0));
        assert_eq!(calibrated_threshold(&[f64::NAN], 0.99, 3.0, 6.0), None);
        assert_eq!(calibrated_threshold(&[f64::MAX, f64::MAX], 0.5, 4.0, 6.0), Some(6.0));
    }

    #[test]
    fn a_flooding_series_gets_a_threshold_above_its_normal_scores() {
        // A quantised sensor: normal robust z-scores of 0 or 1e6 (its MAD is zero). A fixed
        // threshold of 6 flags every step; the calibrated one flags none of the normal period.
        let normal: Vec<f64> = (0..400).map(|i| if i % 7 == 0 { 1e6 } else { 0.0 }).collect();
        let t = calibrated_threshold(&normal, 0.99, 1.5, 6.0).unwrap();
        assert!(normal.iter().all(|s| *s < t), "{t}");
    }

    proptest! {
        #[test]
        fn quantile_is_monotone_and_within_range(mut v in proptest::collection::vec(-1e6f64..1e6, 1..200), a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let (lo, hi) = (a.min(b), a.max(b));
            let (ql, qh) = (quantile(&v, lo).unwrap(), quantile(&v, hi).unwrap());
            prop_assert!(ql <= qh);
            v.sort_by(f64::total_cmp);
            prop_assert!(v[0] <= ql && qh <= v[v.len() - 1]);
        }
    }
}
