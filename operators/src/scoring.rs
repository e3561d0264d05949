//! Numenta Anomaly Benchmark (NAB) scoring, exact to NAB's own per-row scores.
//!
//! Input: for each data file, the detector's anomaly score per row and the labelled anomaly
//! windows as inclusive row ranges ([`ScoredSeries`]; [`window_rows`] maps NAB's `[start, end]`
//! timestamps to rows), and a cost profile ([`NAB_PROFILES`]). Output: NAB's per-row score
//! column `S(t)` ([`row_scores`]), a file's raw score and row counts ([`score_series`]), the
//! corpus-wide threshold NAB's optimiser would choose with its raw total ([`optimise_threshold`]),
//! and the normalised score, 0 for the null detector and 100 for a perfect one ([`normalised`]).
//! State: none; every function is pure.
//!
//! The rules, as NAB (numenta/NAB at ea702d75, `nab/sweeper.py`, `nab/labeler.py`, and the
//! pre-sweep `nab/scorer.py` that wrote the published `S(t)` columns) applies them:
//! - A row is a detection when `score >= threshold` (a NaN score never is).
//! - The first [`probation_rows`] rows of a file are not scored: detections there count for nothing,
//!   not even inside a window. A window that ends inside the probationary period is neither
//!   rewarded nor penalised (NAB's labeler deletes windows that start inside it, see [`window_rows`]),
//!   but it still counts as the window preceding later false positives.
//! - With `σ(y) = 2 / (1 + e^(5y)) − 1`, a window `L..=R` of `W = R − L + 1` rows whose earliest
//!   scored detection is row `i` earns `A_TP · σ(−(R − i + 1) / W) / σ(−1)`; a window without one
//!   costs `−A_FN`. Either value is booked on the window's first row `L` of the `S(t)` column.
//! - A detection outside every window costs `−A_FP` when no window ended before it, else
//!   `A_FP · σ((i − R) / (W − 1))` for the latest window ending before it, where `σ` is clamped to `−1`
//!   when its argument exceeds 3 (and so for a one-row window, where NAB itself would divide by zero).
//!   Every such row counts.

/// Weights of a NAB application profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostProfile {
    /// NAB's name for it, as in the `S(t)_<name>` columns.
    pub name: &'static str,
    /// `A_TP`: reward for detecting a window at its very start.
    pub tp: f64,
    /// `A_FP`: cost of a false positive far from any window.
    pub fp: f64,
    /// `A_FN`: cost of a missed window.
    pub fn_weight: f64,
}

/// NAB's three profiles: standard, reward_low_FP_rate, reward_low_FN_rate (`config/profiles.json`).
pub const NAB_PROFILES: [CostProfile; 3] = [
    CostProfile { name: "standard", tp: 1.0, fp: 0.11, fn_weight: 1.0 },
    CostProfile { name: "reward_low_FP_rate", tp: 1.0, fp: 0.22, fn_weight: 1.0 },
    CostProfile { name: "reward_low_FN_rate", tp: 1.0, fp: 0.11, fn_weight: 2.0 },
];

/// Share of each file's rows that is probationary.
const PROBATION_FRACTION: f64 = 0.15;
/// Upper bound on the probationary period, in rows (`0.15 · 5000`).
const PROBATION_MAX_ROWS: usize = 750;

/// Rows at the start of an `n`-row file that are not scored: `min(⌊0.15 n⌋, 750)`.
pub fn probation_rows(n: usize) -> usize {
    // Floating point on purpose, like NAB's `math.floor(0.15 * n)`.
    ((PROBATION_FRACTION * n as f64).floor() as usize).min(PROBATION_MAX_ROWS)
}

/// One scored file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoredSeries {
    /// A name for reports, e.g. `realKnownCause/nyc_taxi.csv`.
    pub name: String,
    /// The detector's anomaly score per row.
    pub scores: Vec<f64>,
    /// Labelled windows as inclusive row ranges `(first, last)`, as [`window_rows`] returns them:
    /// sorted and disjoint. Other input is tidied the same way before scoring (ends past the file
    /// clipped, empty ranges dropped, overlapping ranges merged); no probation filtering is applied.
    pub windows: Vec<(usize, usize)>,
}

/// Maps NAB's `[start, end]` window timestamps to inclusive row ranges of a file whose rows carry
/// the ascending `timestamps_ms`: first row `>= start` to last row `<= end` (NAB's labels require
/// both to be exact row timestamps, where this is the same thing).
///
/// Then, as NAB's labeler does when it builds the windows: windows without rows are dropped,
/// windows starting inside the probationary period ([`probation_rows`]) are deleted, and windows
/// that overlap or touch are merged. The result is sorted by row.
pub fn window_rows(timestamps_ms: &[i64], windows_ms: &[(i64, i64)]) -> Vec<(usize, usize)> {
    let probation = probation_rows(timestamps_ms.len());
    let mut rows: Vec<(usize, usize)> = windows_ms
        .iter()
        .filter_map(|&(start, end)| {
            let first = timestamps_ms.partition_point(|&t| t < start);
            let past_last = timestamps_ms.partition_point(|&t| t <= end);
            (first < past_last).then(|| (first, past_last - 1))
        })
        .filter(|&(first, _)| first >= probation)
        .collect();
    rows.sort_unstable();
    merge_overlapping(rows)
}

/// NAB's per-row score column `S(t)` for `threshold`: each window's reward or penalty on its first
/// row, each false positive's cost on its own row, zero elsewhere (see the module rules).
pub fn row_scores(s: &ScoredSeries, threshold: f64, p: &CostProfile) -> Vec<f64> {
    let n = s.scores.len();
    let probation = probation_rows(n);
    let windows = tidy_windows(&s.windows, n);
    let detected = |i: usize| s.scores[i] >= threshold;
    let mut out = vec![0.0; n];

    for &(first, last) in windows.iter().filter(|&&(_, last)| last >= probation) {
        out[first] = match (first.max(probation)..=last).find(|&i| detected(i)) {
            Some(i) => true_positive_weight(i, (first, last), p),
            None => -p.fn_weight,
        };
    }
    walk_scored_rows(n, &windows, |i, place| {
        if let RowPlace::Outside(previous) = place {
            if detected(i) {
                out[i] = false_positive_weight(i, previous, p);
            }
        }
    });
    out
}

/// A file's score at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Tally {
    /// Raw NAB score: the sum of [`row_scores`].
    pub raw: f64,
    /// Scored rows inside a window that are detections.
    pub tp: usize,
    /// Scored rows outside every window that are detections.
    pub fp: usize,
    /// Scored rows inside a window that are not detections.
    pub fn_: usize,
    /// Scored rows outside every window that are not detections.
    pub tn: usize,
}

/// Scores one file at `threshold`; the counts are of rows after the probationary period, as NAB's.
pub fn score_series(s: &ScoredSeries, threshold: f64, p: &CostProfile) -> Tally {
    let raw = row_scores(s, threshold, p).iter().sum();
    let mut tally = Tally { raw, ..Tally::default() };
    let windows = tidy_windows(&s.windows, s.scores.len());
    walk_scored_rows(s.scores.len(), &windows, |i, place| {
        let counter = match (matches!(place, RowPlace::Inside { .. }), s.scores[i] >= threshold) {
            (true, true) => &mut tally.tp,
            (true, false) => &mut tally.fn_,
            (false, true) => &mut tally.fp,
            (false, false) => &mut tally.tn,
        };
        *counter += 1;
    });
    tally
}

/// NAB's threshold choice for a detector over a corpus: every distinct anomaly score of a scored
/// row is tried as the threshold and the one with the best corpus total kept, ties going to the
/// higher threshold. Returns `(threshold, raw total)`; the threshold is `f64::INFINITY` when
/// detecting nothing is best (NAB reports 1.1 there).
///
/// One sweep in descending score, O(N log N): a row outside windows always costs the same when
/// detected (its weight depends only on its place relative to the windows), and a window's value
/// is that of its earliest detected row, which only improves as the threshold falls.
pub fn optimise_threshold(corpus: &[ScoredSeries], p: &CostProfile) -> (f64, f64) {
    struct Candidate {
        score: f64,
        weight: f64,
        window: Option<usize>,
    }
    let mut candidates = Vec::new();
    let mut window_values = Vec::new();
    for s in corpus {
        let n = s.scores.len();
        let probation = probation_rows(n);
        let windows = tidy_windows(&s.windows, n);
        // Global ids of this file's scored windows, by local index (None: ends in probation).
        let ids: Vec<Option<usize>> = windows
            .iter()
            .map(|&(_, last)| {
                (last >= probation).then(|| {
                    window_values.push(-p.fn_weight);
                    window_values.len() - 1
                })
            })
            .collect();
        walk_scored_rows(n, &windows, |i, place| {
            let score = s.scores[i];
            if score.is_nan() {
                return;
            }
            let (weight, window) = match place {
                // A scored row's window ends at or after it, so it has an id.
                RowPlace::Inside { window } => (true_positive_weight(i, windows[window], p), ids[window]),
                RowPlace::Outside(previous) => (false_positive_weight(i, previous, p), None),
            };
            candidates.push(Candidate { score, weight, window });
        });
    }
    candidates.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));

    let mut false_positive_sum = 0.0;
    let mut window_sum: f64 = window_values.iter().sum();
    let mut best = (f64::INFINITY, false_positive_sum + window_sum);
    let mut k = 0;
    while k < candidates.len() {
        let threshold = candidates[k].score;
        while k < candidates.len() && candidates[k].score == threshold {
            let c = &candidates[k];
            match c.window {
                None => false_positive_sum += c.weight,
                Some(id) if c.weight > window_values[id] => {
                    window_sum += c.weight - window_values[id];
                    window_values[id] = c.weight;
                }
                Some(_) => {}
            }
            k += 1;
        }
        let total = false_positive_sum + window_sum;
        if total > best.1 {
            best = (threshold, total);
        }
    }
    best
}

/// NAB's normalised score `100 (S − S_null) / (S_perfect − S_null)` of a raw total over a corpus
/// with `windows` windows, where `S_perfect = A_TP · windows` and `S_null = −A_FN · windows`.
/// NaN when there are no windows.
pub fn normalised(raw: f64, windows: usize, p: &CostProfile) -> f64 {
    let null = -p.fn_weight * windows as f64;
    let perfect = p.tp * windows as f64;
    100.0 * (raw - null) / (perfect - null)
}

/// Parses a NAB timestamp, `YYYY-MM-DD HH:MM:SS` with optional fractional seconds (`T` also
/// accepted as the separator), to milliseconds since the Unix epoch; digits past the millisecond
/// are ignored. None when the text is not of that shape.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next()?.parse().ok()?;
    let day: i64 = date_parts.next()?.parse().ok()?;
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock_parts = clock.splitn(3, ':');
    let hour: i64 = clock_parts.next()?.parse().ok()?;
    let minute: i64 = clock_parts.next()?.parse().ok()?;
    let second: i64 = clock_parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis = fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0, |acc, b| acc * 10 + i64::from(b - b'0'));
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// NAB's scaled sigmoid `2 / (1 + e^(5x)) − 1`, clamped to −1 for `x > 3`.
fn scaled_sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        // Written as NAB computes it: 2 · sigmoid(−5x) − 1 with sigmoid(z) = 1 / (1 + e^(−z)).
        2.0 * (1.0 / (1.0 + (5.0 * x).exp())) - 1.0
    }
}

/// Reward for detecting window `(first, last)` first at row `i`.
fn true_positive_weight(i: usize, (first, last): (usize, usize), p: &CostProfile) -> f64 {
    let width = (last - first + 1) as f64;
    let position = -((last + 1 - i) as f64) / width;
    scaled_sigmoid(position) * p.tp / scaled_sigmoid(-1.0)
}

/// Cost (negative) of a false positive at row `i`, after window `previous` if any.
fn false_positive_weight(i: usize, previous: Option<(usize, usize)>, p: &CostProfile) -> f64 {
    match previous {
        None => -p.fp,
        Some((first, last)) => {
            // A one-row window gives x/0 = +inf here, hence the clamp.
            let position = i.abs_diff(last) as f64 / (last - first) as f64;
            scaled_sigmoid(position) * p.fp
        }
    }
}

/// Where a scored row lies.
#[derive(Debug, Clone, Copy)]
enum RowPlace {
    /// Inside the window of this index in the tidied list.
    Inside { window: usize },
    /// Outside every window; the latest window that ended before it, if any.
    Outside(Option<(usize, usize)>),
}

/// Calls `visit` for each row after the probationary period, in order, with its place relative to
/// `windows` (sorted, disjoint).
fn walk_scored_rows(n: usize, windows: &[(usize, usize)], mut visit: impl FnMut(usize, RowPlace)) {
    let mut next = 0;
    let mut previous = None;
    for i in probation_rows(n)..n {
        while next < windows.len() && windows[next].1 < i {
            previous = Some(windows[next]);
            next += 1;
        }
        let place = match windows.get(next) {
            Some(&(first, _)) if first <= i => RowPlace::Inside { window: next },
            _ => RowPlace::Outside(previous),
        };
        visit(i, place);
    }
}

/// Windows clipped to `n` rows, empty ones dropped, sorted, overlapping ones merged.
fn tidy_windows(windows: &[(usize, usize)], n: usize) -> Vec<(usize, usize)> {
    let mut rows: Vec<(usize, usize)> = windows
        .iter()
        .filter(|&&(first, last)| first <= last && first < n)
        .map(|&(first, last)| (first, last.min(n - 1)))
        .collect();
    rows.sort_unstable();
    merge_overlapping(rows)
}

/// Merges sorted inclusive ranges that overlap (NAB's labeler also merges windows that touch at a
/// shared timestamp, which for row ranges is overlap).
fn merge_overlapping(sorted: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(sorted.len());
    for (first, last) in sorted {
        match merged.last_mut() {
            Some(current) if first <= current.1 => current.1 = current.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: CostProfile = NAB_PROFILES[0];

    fn series(scores: Vec<f64>, windows: Vec<(usize, usize)>) -> ScoredSeries {
        ScoredSeries { name: "test".into(), scores, windows }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(probation_rows(0), 0);
        assert_eq!(probation_rows(6), 0);
        assert_eq!(probation_rows(7), 1);
        assert_eq!(probation_rows(20), 3);
        assert_eq!(probation_rows(1127), 169);
        assert_eq!(probation_rows(4032), 604);
        assert_eq!(probation_rows(5000), 750);
        assert_eq!(probation_rows(22_695), 750);
    }

    #[test]
    fn scaled_sigmoid_matches_nab_landmarks() {
        assert!(close(scaled_sigmoid(-1.0), 0.986_614_298_151_430_3));
        assert!(close(scaled_sigmoid(-0.5), 0.848_283_639_957_512_7));
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert!(close(scaled_sigmoid(1.0), -0.986_614_298_151_430_3));
        assert!(scaled_sigmoid(3.0) > -1.0);
        assert_eq!(scaled_sigmoid(3.000_001), -1.0);
        assert_eq!(scaled_sigmoid(f64::INFINITY), -1.0);
    }

    #[test]
    fn window_rows_maps_edges_drops_and_merges() {
        // 40 rows, one per second from t = 0 s, so 6 probationary rows.
        let ts: Vec<i64> = (0..40).map(|i| i * 1000).collect();
        assert_eq!(probation_rows(ts.len()), 6);
        let windows = [
            (30_500, 34_000), // first row >= start is 31
            (10_000, 12_500), // last row <= end is 12
            (2_000, 8_000),   // starts in probation: deleted
            (12_000, 15_000), // touches the window at 10..=12: merged
            (20_100, 20_900), // no row inside: dropped
            (38_000, 99_000), // end past the file: last row
        ];
        assert_eq!(window_rows(&ts, &windows), vec![(10, 15), (31, 34), (38, 39)]);
        assert_eq!(window_rows(&ts, &[]), vec![]);
        assert_eq!(window_rows(&[], &[(0, 10)]), vec![]);
    }

    #[test]
    fn row_scores_follow_the_rules() {
        // 20 rows: rows 0..=2 probationary; window 10..=14 (W = 5).
        let mut scores = vec![0.0; 20];
        scores[1] = 1.0; // probationary: ignored
        scores[5] = 0.5; // before the first window: -A_FP
        scores[12] = 0.5; // exactly the threshold: detection, earliest in the window
        scores[13] = 0.9; // later in the window: no extra reward
        scores[16] = 0.7; // right after the window: cheap
        scores[19] = 0.4; // below the threshold
        let s = series(scores, vec![(10, 14)]);
        let got = row_scores(&s, 0.5, &STANDARD);
        let max_tp = scaled_sigmoid(-1.0);
        let mut expected = vec![0.0; 20];
        expected[5] = -0.11;
        expected[10] = scaled_sigmoid(-3.0 / 5.0) / max_tp;
        expected[16] = 0.11 * scaled_sigmoid(2.0 / 4.0);
        assert_eq!(got, expected);

        let tally = score_series(&s, 0.5, &STANDARD);
        assert!(close(tally.raw, expected.iter().sum()));
        assert_eq!((tally.tp, tally.fn_, tally.fp, tally.tn), (2, 3, 2, 10));
    }

    #[test]
    fn missed_window_costs_fn_on_its_first_row() {
        let s = series(vec![0.0; 20], vec![(10, 14)]);
        let p = NAB_PROFILES[2];
        let got = row_scores(&s, 0.5, &p);
        assert_eq!(got[10], -2.0);
        assert_eq!(got.iter().filter(|&&v| v != 0.0).count(), 1);
    }

    #[test]
    fn false_positive_far_after_a_window_is_clamped() {
        // 100 rows (15 probationary); window 20..=24, W - 1 = 4: x > 3 beyond row 36.
        let mut scores = vec![0.0; 100];
        scores[36] = 1.0; // x = 3: not clamped
        scores[37] = 1.0; // x = 3.25: clamped
        let s = series(scores, vec![(20, 24)]);
        let got = row_scores(&s, 1.0, &NAB_PROFILES[1]);
        assert_eq!(got[36], 0.22 * scaled_sigmoid(3.0));
        assert_eq!(got[37], -0.22);
        assert_eq!(got[20], -1.0);
    }

    #[test]
    fn nearest_preceding_window_weights_false_positives() {
        let mut scores = vec![0.0; 100];
        scores[50] = 1.0;
        let s = series(scores, vec![(20, 24), (40, 47), (60, 70)]);
        let got = row_scores(&s, 1.0, &STANDARD);
        assert_eq!(got[50], 0.11 * scaled_sigmoid(3.0 / 7.0));
    }

    #[test]
    fn one_row_window_makes_following_false_positives_full_cost() {
        let mut scores = vec![0.0; 100];
        scores[31] = 1.0;
        scores[30] = 1.0;
        let s = series(scores, vec![(30, 30)]);
        let got = row_scores(&s, 1.0, &STANDARD);
        assert_eq!(got[31], -0.11);
        assert!(close(got[30], scaled_sigmoid(-1.0) / scaled_sigmoid(-1.0)));
    }

    #[test]
    fn probation_windows() {
        // 40 rows: 6 probationary.
        let mut scores = vec![0.0; 40];
        scores[3] = 1.0; // inside both windows' probationary part
        scores[9] = 1.0; // after the straddling window, which ended at 7
        let straddling = series(scores.clone(), vec![(2, 7)]);
        let got = row_scores(&straddling, 1.0, &STANDARD);
        assert_eq!(got[2], -1.0, "a detection in probation does not count, even inside a window");
        assert_eq!(got[9], 0.11 * scaled_sigmoid(2.0 / 5.0));

        let hidden = series(scores, vec![(1, 4)]);
        let got = row_scores(&hidden, 1.0, &STANDARD);
        assert_eq!(got[1], 0.0, "a window ending in probation is neither rewarded nor penalised");
        assert_eq!(got[9], 0.11 * scaled_sigmoid(5.0 / 3.0), "but it still precedes false positives");
        assert_eq!(optimise_threshold(&[hidden], &STANDARD), (f64::INFINITY, 0.0));
    }

    #[test]
    fn nan_scores_never_detect() {
        let mut scores = vec![f64::NAN; 40];
        scores[20] = 0.3;
        let s = series(scores, vec![(18, 25)]);
        let t = score_series(&s, 0.0, &STANDARD);
        assert_eq!(t.tp, 1);
        let (threshold, raw) = optimise_threshold(std::slice::from_ref(&s), &STANDARD);
        assert_eq!(threshold, 0.3);
        assert!(close(raw, t.raw));
    }

    #[test]
    fn unsorted_and_out_of_range_windows_are_tidied() {
        let mut scores = vec![0.0; 50];
        scores[45] = 1.0;
        let s = series(scores.clone(), vec![(40, 99), (20, 25), (22, 30), (60, 70), (9, 3)]);
        let tidy = series(scores, vec![(20, 30), (40, 49)]);
        assert_eq!(row_scores(&s, 1.0, &STANDARD), row_scores(&tidy, 1.0, &STANDARD));
    }

    #[test]
    fn normalisation_bounds() {
        for p in &NAB_PROFILES {
            assert!(close(normalised(-p.fn_weight * 7.0, 7, p), 0.0));
            assert!(close(normalised(p.tp * 7.0, 7, p), 100.0));
        }
        assert!(normalised(0.0, 0, &STANDARD).is_nan());
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_timestamp_ms("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp_ms("2014-04-10 07:15:00.000000"), Some(1_397_114_100_000));
        assert_eq!(parse_timestamp_ms("2011-07-11 04:00:01"), Some(1_310_356_801_000));
        assert_eq!(parse_timestamp_ms("2011-07-11 04:00:01.000000"), Some(1_310_356_801_000));
        assert_eq!(parse_timestamp_ms("2000-02-29T12:00:00.25"), Some(951_825_600_250));
        assert_eq!(parse_timestamp_ms("2000-02-29"), None);
        assert_eq!(parse_timestamp_ms("2000-13-01 00:00:00"), None);
        assert_eq!(parse_timestamp_ms("2000-01-01 00:00:00.x"), None);
    }

    /// Deterministic xorshift64*.
    struct XorShift(u64);

    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    fn random_corpus(rng: &mut XorShift) -> Vec<ScoredSeries> {
        (0..1 + rng.below(4))
            .map(|_| {
                let n = 1 + rng.below(120);
                // Few distinct levels sometimes, to exercise ties.
                let levels = [4, 10, 1000][rng.below(3)];
                let scores = (0..n).map(|_| rng.below(levels) as f64 / levels as f64).collect();
                let mut windows = Vec::new();
                let mut start = rng.below(n / 2 + 1);
                while start < n && windows.len() < 4 {
                    let last = (start + rng.below(12)).min(n - 1);
                    windows.push((start, last));
                    start = last + 1 + rng.below(30);
                }
                series(scores, windows)
            })
            .collect()
    }

    fn corpus_total(corpus: &[ScoredSeries], threshold: f64, p: &CostProfile) -> f64 {
        corpus.iter().map(|s| score_series(s, threshold, p).raw).sum()
    }

    #[test]
    fn optimiser_equals_brute_force() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut unambiguous = 0;
        for _ in 0..300 {
            let corpus = random_corpus(&mut rng);
            for p in &NAB_PROFILES {
                let mut thresholds: Vec<f64> =
                    corpus.iter().flat_map(|s| s.scores[probation_rows(s.scores.len())..].iter().copied()).collect();
                thresholds.sort_by(|a, b| b.total_cmp(a));
                thresholds.dedup();
                let mut brute = vec![(f64::INFINITY, corpus_total(&corpus, f64::INFINITY, p))];
                brute.extend(thresholds.iter().map(|&t| (t, corpus_total(&corpus, t, p))));
                let best = brute.iter().map(|b| b.1).fold(f64::NEG_INFINITY, f64::max);

                let (threshold, raw) = optimise_threshold(&corpus, p);
                assert!(close(raw, best), "{raw} vs brute force {best}");
                assert!(close(corpus_total(&corpus, threshold, p), raw));
                // The highest threshold reaching the best total, unless rounding blurs which is best:
                // near-best totals that are not all bit-identical.
                let rivals: Vec<&(f64, f64)> = brute.iter().filter(|b| close(b.1, best)).collect();
                if rivals.iter().all(|b| b.1 == rivals[0].1) {
                    assert_eq!(threshold, rivals[0].0);
                    unambiguous += 1;
                }
            }
        }
        assert!(unambiguous > 800, "only {unambiguous} of 900 cases checked the threshold");
    }

    #[test]
    fn optimiser_ties_go_to_the_higher_threshold() {
        // 40 rows (6 probationary), window 20..=29: row 21 at 0.9 detects it; adding row 25 at 0.8
        // changes nothing, so 0.9 and 0.8 tie and NAB keeps 0.9.
        let mut scores = vec![0.0; 40];
        scores[21] = 0.9;
        scores[25] = 0.8;
        let s = series(scores, vec![(20, 29)]);
        let (threshold, raw) = optimise_threshold(std::slice::from_ref(&s), &STANDARD);
        assert_eq!(threshold, 0.9);
        assert_eq!(raw, score_series(&s, 0.8, &STANDARD).raw);
        // Nothing to gain: detecting nothing wins, reported as an infinite threshold.
        let quiet = series(vec![0.5; 40], vec![]);
        assert_eq!(optimise_threshold(&[quiet], &STANDARD), (f64::INFINITY, 0.0));
    }

    /// NAB's golden vectors: windowedGaussian's per-row `S(t)` for the three profiles, on the shared
    /// data sets (`$VIGIL_DATASETS`, else `../shared/datasets` beside the project; skipped with a
    /// message when absent, a failure under `CI=true`: see [`crate::test_datasets`]).
    #[test]
    fn golden_vectors_of_nab() {
        let Some(root) = crate::test_datasets::require("nab/labels/combined_windows.json") else { return };
        let nab = root.parent().and_then(std::path::Path::parent).expect("nab/labels/combined_windows.json has two parents");
        golden::check_all(nab);
    }

    mod golden {
        use super::super::*;
        use std::collections::HashMap;
        use std::path::Path;

        /// Just enough JSON for NAB's label and config files.
        #[derive(Debug)]
        enum Json {
            Null,
            Bool,
            Number(f64),
            Text(String),
            List(Vec<Json>),
            Object(Vec<(String, Json)>),
        }

        impl Json {
            fn get(&self, key: &str) -> &Json {
                match self {
                    Json::Object(fields) => {
                        fields.iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap_or_else(|| panic!("no key {key}"))
                    }
                    _ => panic!("not an object where {key} is wanted"),
                }
            }
        }

        struct Parser<'a> {
            bytes: &'a [u8],
            at: usize,
        }

        impl Parser<'_> {
            fn parse(text: &str) -> Json {
                let mut parser = Parser { bytes: text.as_bytes(), at: 0 };
                let value = parser.value();
                parser.skip_space();
                assert_eq!(parser.at, parser.bytes.len(), "trailing characters");
                value
            }

            fn skip_space(&mut self) {
                while self.bytes.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
                    self.at += 1;
                }
            }

            fn eat(&mut self, byte: u8) -> bool {
                self.skip_space();
                let found = self.bytes.get(self.at) == Some(&byte);
                if found {
                    self.at += 1;
                }
                found
            }

            fn value(&mut self) -> Json {
                self.skip_space();
                match self.bytes[self.at] {
                    b'{' => Json::Object(self.sequence(b'{', b'}', |p| {
                        let key = p.text();
                        assert!(p.eat(b':'), "expected ':' at {}", p.at);
                        (key, p.value())
                    })),
                    b'[' => Json::List(self.sequence(b'[', b']', Parser::value)),
                    b'"' => Json::Text(self.text()),
                    b't' | b'f' | b'n' => {
                        let word: String =
                            self.bytes[self.at..].iter().take_while(|b| b.is_ascii_alphabetic()).map(|&b| b as char).collect();
                        self.at += word.len();
                        match word.as_str() {
                            "true" | "false" => Json::Bool,
                            "null" => Json::Null,
                            _ => panic!("bad literal {word}"),
                        }
                    }
                    _ => {
                        let start = self.at;
                        while self.bytes.get(self.at).is_some_and(|b| b"+-.eE0123456789".contains(b)) {
                            self.at += 1;
                        }
                        let text = std::str::from_utf8(&self.bytes[start..self.at]).expect("ascii");
                        Json::Number(text.parse().unwrap_or_else(|_| panic!("bad number {text:?}")))
                    }
                }
            }

            fn sequence<T>(&mut self, open: u8, close: u8, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
                assert!(self.eat(open));
                let mut items = Vec::new();
                if self.eat(close) {
                    return items;
                }
                loop {
                    items.push(item(self));
                    if self.eat(close) {
                        return items;
                    }
                    assert!(self.eat(b','), "expected ',' at {}", self.at);
                }
            }

            fn text(&mut self) -> String {
                assert!(self.eat(b'"'), "expected a string at {}", self.at);
                let mut out = String::new();
                loop {
                    let byte = self.bytes[self.at];
                    self.at += 1;
                    match byte {
                        b'"' => return out,
                        b'\\' => {
                            let escaped = self.bytes[self.at];
                            self.at += 1;
                            out.push(match escaped {
                                b'n' => '\n',
                                b't' => '\t',
                                b'r' => '\r',
                                b'"' | b'\\' | b'/' => escaped as char,
                                _ => panic!("unsupported escape \\{}", escaped as char),
                            });
                        }
                        _ => {
                            // Multi-byte UTF-8 passes through byte by byte.
                            let start = self.at - 1;
                            let mut end = self.at;
                            while end < self.bytes.len() && (self.bytes[end] & 0xC0) == 0x80 {
                                end += 1;
                            }
                            out.push_str(std::str::from_utf8(&self.bytes[start..end]).expect("utf-8"));
                            self.at = end;
                        }
                    }
                }
            }
        }

        /// A CSV file with a header and no quoting, by column name.
        struct Table {
            columns: HashMap<String, Vec<String>>,
        }

        impl Table {
            fn read(path: &Path) -> Table {
                let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let mut lines = text.lines().filter(|l| !l.trim().is_empty());
                let header: Vec<String> = lines.next().expect("header").split(',').map(|h| h.trim().to_string()).collect();
                let mut columns: Vec<Vec<String>> = vec![Vec::new(); header.len()];
                for line in lines {
                    let cells: Vec<&str> = line.split(',').collect();
                    assert_eq!(cells.len(), header.len(), "{}: {line}", path.display());
                    for (column, cell) in columns.iter_mut().zip(cells) {
                        column.push(cell.trim().to_string());
                    }
                }
                Table { columns: header.into_iter().zip(columns).collect() }
            }

            fn text(&self, name: &str) -> &[String] {
                self.columns.get(name).unwrap_or_else(|| panic!("no column {name}"))
            }

            fn numbers(&self, name: &str) -> Vec<f64> {
                self.text(name).iter().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: {v:?}"))).collect()
            }

            fn timestamps(&self) -> Vec<i64> {
                self.text("timestamp").iter().map(|t| parse_timestamp_ms(t).unwrap_or_else(|| panic!("{t:?}"))).collect()
            }
        }

        fn read_json(path: &Path) -> Json {
            Parser::parse(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        }

        /// Checks every file of the labels against windowedGaussian's golden `S(t)` columns.
        pub(super) fn check_all(root: &Path) {
            let Json::Object(files) = read_json(&root.join("labels/combined_windows.json")) else {
                panic!("labels are not an object")
            };
            let thresholds = read_json(&root.join("config/thresholds.json"));
            let detector = thresholds.get("windowedGaussian");
            let mut window_count = 0;
            for (key, windows) in &files {
                let (category, file) = key.split_once('/').expect("category/file");
                let results = Table::read(&root.join(format!("results/windowedGaussian/{category}/windowedGaussian_{file}")));
                let timestamps = results.timestamps();
                assert_eq!(Table::read(&root.join("data").join(key)).timestamps(), timestamps, "{key}");
                let Json::List(windows) = windows else { panic!("{key}: windows are not a list") };
                let windows_ms: Vec<(i64, i64)> = windows
                    .iter()
                    .map(|w| match w {
                        Json::List(ends) => match ends.as_slice() {
                            [Json::Text(start), Json::Text(end)] => {
                                (parse_timestamp_ms(start).expect("start"), parse_timestamp_ms(end).expect("end"))
                            }
                            _ => panic!("{key}: bad window"),
                        },
                        _ => panic!("{key}: bad window"),
                    })
                    .collect();
                let rows = window_rows(&timestamps, &windows_ms);
                // NAB's labels: windows are clear of probation, disjoint, and hit exact timestamps.
                assert_eq!(rows.len(), windows_ms.len(), "{key}");
                for (&(first, last), &(start, end)) in rows.iter().zip(&windows_ms) {
                    assert_eq!((timestamps[first], timestamps[last]), (start, end), "{key}");
                }
                window_count += rows.len();
                let labels = results.numbers("label");
                for (i, &label) in labels.iter().enumerate() {
                    let inside = rows.iter().any(|&(first, last)| (first..=last).contains(&i));
                    assert_eq!(label == 1.0, inside, "{key} row {i}: label column vs windows");
                }

                let s = ScoredSeries { name: key.clone(), scores: results.numbers("anomaly_score"), windows: rows };
                for p in &NAB_PROFILES {
                    let Json::Number(threshold) = detector.get(p.name).get("threshold") else {
                        panic!("no threshold for {}", p.name)
                    };
                    let golden = results.numbers(&format!("S(t)_{}", p.name));
                    let got = row_scores(&s, *threshold, p);
                    assert_eq!(got.len(), golden.len());
                    for (i, (g, e)) in got.iter().zip(&golden).enumerate() {
                        assert!((g - e).abs() <= 1e-9, "{key} {} row {i}: {g} vs golden {e}", p.name);
                    }
                    let golden_sum: f64 = golden.iter().sum();
                    let tally = score_series(&s, *threshold, p);
                    assert!((tally.raw - golden_sum).abs() <= 1e-9, "{key} {}: {} vs {golden_sum}", p.name, tally.raw);
                    assert_eq!(tally.tp + tally.fp + tally.fn_ + tally.tn, s.scores.len() - probation_rows(s.scores.len()));
                }
            }
            assert_eq!((files.len(), window_count), (31, 53), "the development part of NAB");
        }
    }
}
