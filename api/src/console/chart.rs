//! Server-side SVG time-series charts for the console.
//!
//! [`render`] draws one sensor's series over a time range: the value as a line, the bucket's `min`..`max` as a light
//! band, optional hard limits as dashed horizontal lines, and events (anomalies, drift, maintenance, predictions) as
//! vertical marks with a tooltip.
//!
//! Inputs are plain values ([`Chart`], [`Point`], [`Mark`]); the caller converts from the query types. The output is a
//! single `<svg>` element as a `String`, meant to be inserted verbatim into HTML (`maud::PreEscaped`): every text put
//! into it (title, unit, labels) is XML-escaped here. Pure functions: no state, no I/O, no clock, std only; the output
//! depends only on the input (same input, same bytes).
//!
//! Layout: a fixed `viewBox` of 560×220 user units and `width="100%"`, so the chart scales with its container,
//! text included (12.5 units: 12.5 px in a 560 px wide box, 9.4 px at 420 px). Times are UTC. Numbers are written
//! with at most one decimal. Styling goes through CSS classes (`chart`, `chart-grid`, `chart-axis`, `chart-band`,
//! `chart-line`, `chart-limit`, `chart-empty`, `chart-marks`, `mark`, `mark-anomaly`, `mark-drift`,
//! `mark-maintenance`, `mark-prediction`) with presentation attributes as a fallback (no `style`
//! attributes, so a strict Content-Security-Policy is fine), which any stylesheet rule overrides.
//!
//! Robustness: non-finite values (and absurd ones, |v| ≥ 1e290) are skipped; points and marks outside
//! `[from, to]` are skipped; the line breaks where consecutive points are more than 3× the median step apart; dense
//! series are reduced per 1-unit pixel column to first/min/max/last (visually lossless, bounds the output to a few
//! thousand vertices whatever the input size); at most 500 marks are drawn.

use std::fmt::Write as _;

/// One point of a series: a raw reading, or the summary of a bucket of readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    /// Time, ms since the Unix epoch (UTC): the reading's, or the bucket's start.
    pub(crate) ts: i64,
    /// The reading, or the bucket's mean. Non-finite values are skipped.
    pub(crate) value: f64,
    /// Least value in the bucket (`value` for a raw reading); non-finite means "use `value`".
    pub(crate) min: f64,
    /// Greatest value in the bucket (`value` for a raw reading); non-finite means "use `value`".
    pub(crate) max: f64,
}

/// What a [`Mark`] stands for; picks its colour, dash pattern, symbol and CSS class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MarkKind {
    /// An anomaly was detected (class `mark-anomaly`, red, solid, ▼).
    Anomaly,
    /// Drift was detected (class `mark-drift`, violet, dashed, ◆).
    Drift,
    /// Maintenance was done (class `mark-maintenance`, green, dotted, ■).
    Maintenance,
    /// A failure is predicted (class `mark-prediction`, amber, long dashes, ●).
    Prediction,
}

impl MarkKind {
    fn name(self) -> &'static str {
        match self {
            MarkKind::Anomaly => "anomaly",
            MarkKind::Drift => "drift",
            MarkKind::Maintenance => "maintenance",
            MarkKind::Prediction => "prediction",
        }
    }

    fn colour(self) -> &'static str {
        match self {
            MarkKind::Anomaly => "#b42318",
            MarkKind::Drift => "#7a4fbf",
            MarkKind::Maintenance => "#1e7d46",
            MarkKind::Prediction => "#9a6700",
        }
    }

    fn dash(self) -> &'static str {
        match self {
            MarkKind::Anomaly => "",
            MarkKind::Drift => r#" stroke-dasharray="4 3""#,
            MarkKind::Maintenance => r#" stroke-dasharray="1.5 2.5""#,
            MarkKind::Prediction => r#" stroke-dasharray="8 3""#,
        }
    }
}

/// An event drawn as a vertical line at `ts`, with `label` as its tooltip.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mark {
    /// Time of the event, ms since the Unix epoch (UTC); marks outside the chart's range are skipped.
    pub(crate) ts: i64,
    /// Kind of event.
    pub(crate) kind: MarkKind,
    /// Tooltip text (plain text; escaped here); when empty, the kind and the time.
    pub(crate) label: String,
}

/// Everything [`render`] needs to draw one chart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chart<'a> {
    /// Accessible title (plain text; escaped here), e.g. `asset-0001-vib-2 (vibration)`; not drawn visibly.
    pub(crate) title: &'a str,
    /// Unit of the values (plain text; escaped here), e.g. `mm/s`; may be empty. Drawn above the y axis.
    pub(crate) unit: &'a str,
    /// Start of the x range, ms since the Unix epoch (UTC).
    pub(crate) from: i64,
    /// End of the x range, ms since the Unix epoch (UTC); if `to <= from`, `from + 1` is used.
    pub(crate) to: i64,
    /// Points in time order; gaps and non-finite values are allowed.
    pub(crate) points: &'a [Point],
    /// Events to mark; any order.
    pub(crate) marks: &'a [Mark],
    /// Hard limits `(low, high)`, drawn as dashed lines when within or near the values' range.
    pub(crate) limits: Option<(f64, f64)>,
}

// Layout, in viewBox units.
const W: f64 = 560.0;
const H: f64 = 220.0;
/// Font size of the axis labels.
const FONT: f64 = 12.5;
/// Approximate width of a digit at [`FONT`] (system-ui fonts: ~0.58 em).
const CHAR_W: f64 = FONT * 0.58;
const ML: f64 = 8.0 + 6.0 * CHAR_W;
const MR: f64 = 14.0;
const MT: f64 = 22.0;
const MB: f64 = 26.0;
const PW: f64 = W - ML - MR;
const PH: f64 = H - MT - MB;
const BOTTOM: f64 = MT + PH;
const RIGHT: f64 = ML + PW;

/// Most marks drawn; beyond it they are thinned evenly.
const MAX_MARKS: usize = 500;
/// Values at least this large are treated as garbage (keeps every computation finite).
const ABSURD: f64 = 1e290;

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// Candidate x-tick steps (ms), ascending; all divide a day or are whole days, so UTC alignment is epoch alignment.
const TIME_STEPS: [i64; 33] = [
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    SEC,
    2 * SEC,
    5 * SEC,
    10 * SEC,
    15 * SEC,
    30 * SEC,
    MIN,
    2 * MIN,
    5 * MIN,
    10 * MIN,
    15 * MIN,
    30 * MIN,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
    28 * DAY,
    91 * DAY,
    364 * DAY,
];

const C_GRID: &str = "#e3e7ee";
const C_AXIS: &str = "#8b93a3";
const C_TEXT: &str = "#5b6475";
const C_LINE: &str = "#1f5fbf";
const C_LIMIT: &str = "#b42318";

/// A point kept for drawing: finite value, band widened to include the value.
#[derive(Debug, Clone, Copy)]
struct Vis {
    ts: i64,
    v: f64,
    lo: f64,
    hi: f64,
}

fn usable(v: f64) -> bool {
    v.is_finite() && v.abs() < ABSURD
}

/// Renders `chart` as an `<svg>` element (see the module documentation).
pub(crate) fn render(chart: &Chart<'_>) -> String {
    let from = chart.from;
    let to = if chart.to > from { chart.to } else { from.saturating_add(1) };
    let xs = XScale { from, span: (i128::from(to) - i128::from(from)).max(1) as f64 };

    let pts: Vec<Vis> = chart
        .points
        .iter()
        .filter(|p| p.ts >= from && p.ts <= to && usable(p.value))
        .map(|p| Vis {
            ts: p.ts,
            v: p.value,
            lo: if usable(p.min) { p.min.min(p.value) } else { p.value },
            hi: if usable(p.max) { p.max.max(p.value) } else { p.value },
        })
        .collect();
    let in_range: Vec<&Mark> = chart.marks.iter().filter(|m| m.ts >= from && m.ts <= to).collect();
    let shown = in_range.len().min(MAX_MARKS);

    let mut out = String::with_capacity(2048 + pts.len().min(3 * PW as usize) * 36 + shown * 200);
    let id = chart_id(chart, from, to);

    // Header, title and description.
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {W} {H}" width="100%" role="img" aria-labelledby="{id}-t {id}-d" font-family="system-ui,sans-serif" font-size="{FONT}"><title id="{id}-t">"#
    );
    push_escaped(&mut out, if chart.title.is_empty() { "Chart" } else { chart.title });
    if !chart.unit.is_empty() {
        out.push_str(", ");
        push_escaped(&mut out, chart.unit);
    }
    out.push_str(", ");
    push_range(&mut out, from, to);
    let _ = write!(out, r#"</title><desc id="{id}-d">"#);
    let stats = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.v), b.max(p.v)));
    if pts.is_empty() {
        out.push_str("No readings");
    } else {
        let _ = write!(out, "{} point{}, values from {} to {}", pts.len(), plural(pts.len()), fmt_sig(stats.0), fmt_sig(stats.1));
        if !chart.unit.is_empty() {
            out.push(' ');
            push_escaped(&mut out, chart.unit);
        }
    }
    if !in_range.is_empty() {
        let _ = write!(out, "; {} mark{}", in_range.len(), plural(in_range.len()));
        if shown < in_range.len() {
            let _ = write!(out, " ({} not drawn)", in_range.len() - shown);
        }
    }
    out.push_str(".</desc>");

    // Y scale (only with data).
    let ys = if pts.is_empty() {
        None
    } else {
        let (blo, bhi) = pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.lo), b.max(p.hi)));
        Some(y_scale(blo, bhi, chart.limits))
    };
    let (x_step, x_ticks) = time_ticks(from, to);

    // Grid.
    let _ = write!(out, r#"<path class="chart-grid" fill="none" stroke="{C_GRID}" d=""#);
    if let Some(ys) = &ys {
        for i in ys.ticks.first..=ys.ticks.last {
            out.push('M');
            push_xy(&mut out, ML, ys.y(ys.ticks.value(i)));
            out.push('H');
            push_num(&mut out, RIGHT);
        }
    }
    for &t in &x_ticks {
        out.push('M');
        push_xy(&mut out, xs.x(t), MT);
        out.push('V');
        push_num(&mut out, BOTTOM);
    }
    out.push_str("\"/>");

    if let Some(ys) = &ys {
        let segs = segments(&pts);
        // Band.
        if pts.iter().any(|p| p.hi > p.lo) {
            let _ = write!(out, r#"<g class="chart-band" fill="{C_LINE}" fill-opacity="0.15" stroke="none">"#);
            let mut cols = Vec::new();
            for &(a, b) in &segs {
                band_path(&mut out, &mut cols, &pts[a..b], &xs, ys);
            }
            out.push_str("</g>");
        }
        // Limits.
        if !ys.limits.is_empty() {
            let _ = write!(out, r#"<g class="chart-limit" stroke="{C_LIMIT}" fill="{C_LIMIT}" stroke-dasharray="6 4">"#);
            for &(name, v) in &ys.limits {
                let y = ys.y(v);
                out.push_str("<g><title>");
                let _ = write!(out, "{name} limit: {}", fmt_sig(v));
                if !chart.unit.is_empty() {
                    out.push(' ');
                    push_escaped(&mut out, chart.unit);
                }
                out.push_str("</title><path d=\"M");
                push_xy(&mut out, ML, y);
                out.push('H');
                push_num(&mut out, RIGHT);
                // A halo keeps the label readable over the line and marks.
                out.push_str(
                    r##""/><text stroke="#fff" stroke-width="3" stroke-dasharray="none" stroke-linejoin="round" paint-order="stroke" text-anchor="end" x=""##,
                );
                push_num(&mut out, RIGHT - 4.0);
                out.push_str("\" y=\"");
                // Above the line, or below it when too close to the top.
                push_num(&mut out, if y - 4.0 < MT + 10.0 { y + 12.0 } else { y - 4.0 });
                let _ = write!(out, "\">{name} {}</text></g>", fmt_sig(v));
            }
            out.push_str("</g>");
        }
        // Line.
        let _ = write!(
            out,
            r#"<g class="chart-line" fill="none" stroke="{C_LINE}" stroke-width="1.5" stroke-linejoin="round" stroke-linecap="round">"#
        );
        for &(a, b) in &segs {
            // A lone point is a dot: a zero-length line with round caps, thicker.
            out.push_str(if b - a == 1 { r#"<path stroke-width="5" d=""# } else { "<path d=\"" });
            let mut d = Decimator::default();
            for p in &pts[a..b] {
                d.push(&mut out, xs.x(p.ts), ys.y(p.v));
            }
            d.finish(&mut out);
            out.push_str("\"/>");
        }
        out.push_str("</g>");
    }

    // Axes and labels.
    let _ = write!(out, r#"<g class="chart-axis" fill="{C_TEXT}"><path fill="none" stroke="{C_AXIS}" d="M"#);
    push_xy(&mut out, ML, MT);
    out.push('V');
    push_num(&mut out, BOTTOM);
    out.push('H');
    push_num(&mut out, RIGHT);
    for &t in &x_ticks {
        out.push('M');
        push_xy(&mut out, xs.x(t), BOTTOM);
        out.push_str("v4");
    }
    out.push_str("\"/>");
    if let Some(ys) = &ys {
        let labels = ys.ticks.labels();
        out.push_str(r#"<g text-anchor="end""#);
        // Shrink unusually long labels (many significant digits) to fit the margin.
        let w = width(&labels) as f64 * CHAR_W;
        if w > ML - 8.0 {
            out.push_str(" font-size=\"");
            push_num(&mut out, (FONT * (ML - 8.0) / w).max(6.0));
            out.push('"');
        }
        out.push('>');
        for (i, label) in (ys.ticks.first..=ys.ticks.last).zip(&labels) {
            out.push_str("<text x=\"");
            push_num(&mut out, ML - 6.0);
            out.push_str("\" y=\"");
            push_num(&mut out, ys.y(ys.ticks.value(i)) + FONT * 0.35);
            out.push_str("\">");
            out.push_str(label);
            out.push_str("</text>");
        }
        out.push_str("</g>");
    }
    let tf = time_fmt(from, to, x_step);
    out.push_str(r#"<g text-anchor="middle">"#);
    let mut label = String::new();
    for &t in &x_ticks {
        label.clear();
        push_time(&mut label, t, tf);
        let x = xs.x(t);
        let half = label.len() as f64 * CHAR_W / 2.0;
        if x + half > W - 1.0 || x - half < 1.0 {
            continue;
        }
        out.push_str("<text x=\"");
        push_num(&mut out, x);
        out.push_str("\" y=\"");
        push_num(&mut out, BOTTOM + 6.0 + FONT);
        out.push_str("\">");
        out.push_str(&label);
        out.push_str("</text>");
    }
    out.push_str("</g>");
    if !chart.unit.is_empty() {
        out.push_str(r#"<text x="4" y="14">"#);
        push_escaped(&mut out, truncate(chart.unit, 24));
        out.push_str("</text>");
    }
    out.push_str("</g>");

    if pts.is_empty() {
        out.push_str(r#"<text class="chart-empty" text-anchor="middle" font-size="14" fill=""#);
        out.push_str(C_TEXT);
        out.push_str("\" x=\"");
        push_num(&mut out, ML + PW / 2.0);
        out.push_str("\" y=\"");
        push_num(&mut out, MT + PH / 2.0 + 4.0);
        out.push_str("\">no readings in this range</text>");
    }

    // Marks, on top so their tooltips win.
    if shown > 0 {
        out.push_str(r#"<g class="chart-marks" stroke-width="1.5">"#);
        for i in 0..shown {
            let m = in_range[if shown == in_range.len() { i } else { i * in_range.len() / shown }];
            push_mark(&mut out, m, xs.x(m.ts));
        }
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

fn push_mark(out: &mut String, m: &Mark, x: f64) {
    let c = m.kind.colour();
    let _ = write!(out, r#"<g class="mark mark-{}" stroke="{c}" fill="{c}"><title>"#, m.kind.name());
    if m.label.is_empty() {
        out.push_str(m.kind.name());
        out.push(' ');
        push_time(out, m.ts, TimeFmt::Full);
        out.push_str(" UTC");
    } else {
        push_escaped(out, &m.label);
    }
    out.push_str("</title><path fill=\"none\" d=\"M");
    push_xy(out, x, MT - 2.0);
    out.push('V');
    push_num(out, BOTTOM);
    out.push('"');
    out.push_str(m.kind.dash());
    out.push_str("/>");
    // Symbol above the plot, centred on (x, MT - 7).
    let cy = MT - 7.0;
    match m.kind {
        MarkKind::Prediction => {
            out.push_str("<circle stroke=\"none\" r=\"3.5\" cx=\"");
            push_num(out, x);
            out.push_str("\" cy=\"");
            push_num(out, cy);
            out.push_str("\"/>");
        }
        kind => {
            out.push_str("<path stroke=\"none\" d=\"M");
            push_num(out, x);
            out.push(' ');
            match kind {
                MarkKind::Anomaly => {
                    push_num(out, cy + 4.0);
                    out.push_str("l-4.5-8h9z");
                }
                MarkKind::Drift => {
                    push_num(out, cy - 5.0);
                    out.push_str("l5 5-5 5-5-5z");
                }
                _ => {
                    push_num(out, cy - 4.0);
                    out.push_str("h3.5v8h-7v-8z");
                }
            }
            out.push_str("\"/>");
        }
    }
    out.push_str("</g>");
}

// ---------------------------------------------------------------------------------------------------------------
// Scales.

struct XScale {
    from: i64,
    span: f64,
}

impl XScale {
    fn x(&self, ts: i64) -> f64 {
        ML + (i128::from(ts) - i128::from(self.from)) as f64 / self.span * PW
    }
}

struct YScale {
    lo: f64,
    hi: f64,
    ticks: Ticks,
    /// Limits to draw: ("low" | "high", value).
    limits: Vec<(&'static str, f64)>,
}

impl YScale {
    fn y(&self, v: f64) -> f64 {
        MT + (self.hi - v) / (self.hi - self.lo) * PH
    }
}

/// Y domain for data in `[lo, hi]` (finite, `lo <= hi`): widened for a flat series, to include near limits, and
/// padded so the line never touches the frame; ticks inside it.
fn y_scale(lo: f64, hi: f64, limits: Option<(f64, f64)>) -> YScale {
    let (mut lo, mut hi) = (lo, hi);
    if hi - lo <= lo.abs().max(hi.abs()) * 1e-9 {
        let c = (lo + hi) / 2.0;
        let half = if c.abs() * 0.1 > 1e-200 { c.abs() * 0.1 } else { 1.0 };
        (lo, hi) = (c - half, c + half);
    }
    let span = hi - lo;
    let mut drawn = Vec::new();
    if let Some((l, h)) = limits {
        for (name, v) in [("low", l), ("high", h)] {
            if usable(v) && v >= lo - span / 2.0 && v <= hi + span / 2.0 {
                drawn.push((name, v));
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    let span = hi - lo;
    // The least padding (6% to 30% on each side) that gives 4 to 6 ticks at a 1/2/5 step.
    const PADS: [f64; 5] = [0.06, 0.12, 0.18, 0.24, 0.3];
    let mut best: Option<(f64, f64, Ticks, f64)> = None;
    for pl in PADS {
        for ph in PADS {
            let cost = pl + ph + (pl - ph).abs() / 8.0;
            if best.as_ref().is_some_and(|b| b.3 <= cost) {
                continue;
            }
            let (a, b) = (lo - span * pl, hi + span * ph);
            let t = nice_ticks(a, b);
            if (4..=6).contains(&t.count()) && t.m != 2.5 {
                best = Some((a, b, t, cost));
            }
        }
    }
    let (a, b, ticks) = best.map_or_else(
        || {
            let (a, b) = (lo - span * PADS[0], hi + span * PADS[0]);
            (a, b, nice_ticks(a, b))
        },
        |(a, b, t, _)| (a, b, t),
    );
    YScale { lo: a, hi: b, ticks, limits: drawn }
}

/// Ticks `first * step ..= last * step` with `step = m × 10^k`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ticks {
    m: f64,
    k: i32,
    first: i64,
    last: i64,
}

impl Ticks {
    fn count(&self) -> i64 {
        self.last - self.first + 1
    }

    /// Value of tick `i`, computed so that it is the double nearest the decimal value.
    fn value(&self, i: i64) -> f64 {
        let n = i as f64 * self.m;
        if self.k >= 0 {
            n * 10f64.powi(self.k)
        } else {
            n / 10f64.powi(-self.k)
        }
    }

    /// Labels of all ticks, as short as possible: a plain number with the decimals the step needs, or scaled with
    /// `k`/`M`/`G`/`T`, or in scientific notation; trailing zeros trimmed.
    fn labels(&self) -> Vec<String> {
        let max_abs = self.value(self.first).abs().max(self.value(self.last).abs());
        let mag = if max_abs > 0.0 { max_abs.log10().floor() as i32 } else { 0 };
        let decimals = i32::from(self.m == 2.5) - self.k;
        let mut best = Vec::new();
        if max_abs < 1e15 && decimals <= 9 {
            best = self.fixed(0, decimals.max(0));
        }
        let group = mag.div_euclid(3);
        if (1..=4).contains(&group) && (best.is_empty() || width(&best) > 5) {
            shortest(&mut best, self.fixed(group, (decimals + 3 * group).clamp(0, 12)));
        }
        if best.is_empty() || width(&best) > 5 {
            let digits = (mag + decimals).clamp(0, 12) as usize;
            let sci = (self.first..=self.last)
                .map(|i| {
                    let v = self.value(i);
                    if v == 0.0 {
                        return "0".to_owned();
                    }
                    let s = format!("{v:.digits$e}");
                    match s.split_once('e') {
                        Some((m, e)) if m.contains('.') => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
                        _ => s,
                    }
                })
                .collect();
            shortest(&mut best, sci);
        }
        best
    }

    /// Labels as `value / 1000^group` with `decimals`, trailing zeros trimmed, plus the group's suffix.
    fn fixed(&self, group: i32, decimals: i32) -> Vec<String> {
        let d = decimals.clamp(0, 12) as usize;
        let suffix = ["", "k", "M", "G", "T"].get(group as usize).copied().unwrap_or("");
        (self.first..=self.last)
            .map(|i| {
                let v = self.value(i) / 10f64.powi(3 * group);
                let mut s = format!("{v:.d$}");
                if s.contains('.') {
                    let keep = s.trim_end_matches('0').trim_end_matches('.').len();
                    s.truncate(keep);
                }
                if s == "-0" {
                    s.remove(0);
                }
                s.push_str(suffix);
                s
            })
            .collect()
    }
}

/// Longest label's length in characters.
fn width(labels: &[String]) -> usize {
    labels.iter().map(|l| l.chars().count()).max().unwrap_or(0)
}

/// Keeps in `best` the shorter of `best` (if not empty) and `candidate`.
fn shortest(best: &mut Vec<String>, candidate: Vec<String>) {
    if best.is_empty() || width(&candidate) < width(best) {
        *best = candidate;
    }
}

/// Ticks at multiples of `m` in `lo..=hi` with `m` in 1, 2, 5 × 10^k, 4 to 6 of them when possible (2.5 × 10^k
/// only when no other step gives 4 to 6), otherwise as close to 5 as possible.
fn nice_ticks(lo: f64, hi: f64) -> Ticks {
    let span = hi - lo;
    let base = if span > 0.0 && span.is_finite() { (span / 5.0).log10().floor() as i32 } else { 0 };
    let mut best: Option<(i64, Ticks)> = None;
    for k in base - 1..=base + 1 {
        for m in [1.0, 2.0, 2.5, 5.0] {
            let mut t = Ticks { m, k, first: 0, last: 0 };
            let step = t.value(1);
            t.first = (lo / step - 1e-9).ceil() as i64;
            t.last = (hi / step + 1e-9).floor() as i64;
            let c = t.count();
            let off = (c - 5).abs().min(1000);
            let score = if (4..=6).contains(&c) { off } else { 100 + 10 * off } + if m == 2.5 { 10 } else { 0 };
            if best.is_none_or(|(s, _)| score < s) {
                best = Some((score, t));
            }
        }
    }
    best.map_or(Ticks { m: 1.0, k: 0, first: 0, last: -1 }, |(_, t)| t)
}

/// Most intervals between x ticks whose labels have `chars` characters (2 to 7, so that labels never collide).
fn max_intervals(chars: usize) -> i128 {
    ((PW / (chars as f64 * CHAR_W + 2.0 * FONT)).floor() as i128).clamp(2, 7)
}

/// X-tick step and tick times: the smallest step in [`TIME_STEPS`] whose labels fit ([`max_intervals`]), ticks at
/// UTC multiples of it.
fn time_ticks(from: i64, to: i64) -> (i64, Vec<i64>) {
    let span = i128::from(to) - i128::from(from);
    let step = TIME_STEPS
        .iter()
        .copied()
        .find(|&s| span / i128::from(s) <= max_intervals(time_fmt(from, to, s).chars()))
        .unwrap_or_else(|| i64::try_from(span / max_intervals(10) / i128::from(DAY) + 1).unwrap_or(1).saturating_mul(DAY));
    let mut ticks = Vec::new();
    let r = from.rem_euclid(step);
    let mut t = if r == 0 { Some(from) } else { from.checked_add(step - r) };
    while let Some(v) = t {
        if v > to || ticks.len() > 16 {
            break;
        }
        ticks.push(v);
        t = v.checked_add(step);
    }
    (step, ticks)
}

// ---------------------------------------------------------------------------------------------------------------
// Series geometry.

/// Index ranges `[a, b)` of runs of points without a gap: a gap is a step longer than 3× the median step.
fn segments(pts: &[Vis]) -> Vec<(usize, usize)> {
    if pts.len() < 3 {
        return if pts.is_empty() { Vec::new() } else { vec![(0, pts.len())] };
    }
    let mut steps: Vec<i64> = pts.windows(2).map(|w| w[1].ts.saturating_sub(w[0].ts)).collect();
    let mid = steps.len() / 2;
    let median = *steps.select_nth_unstable(mid).1;
    let limit = median.max(1).saturating_mul(3);
    let mut segs = Vec::new();
    let mut start = 0;
    for i in 1..pts.len() {
        if pts[i].ts.saturating_sub(pts[i - 1].ts) > limit {
            segs.push((start, i));
            start = i;
        }
    }
    segs.push((start, pts.len()));
    segs
}

/// One pixel column of the band: x extent, top (from the max) and bottom (from the min), in SVG coordinates.
struct Col {
    x0: f64,
    x1: f64,
    top: f64,
    bot: f64,
}

/// Writes the band of one segment as a closed `<path>` (nothing for a single column).
fn band_path(out: &mut String, cols: &mut Vec<Col>, seg: &[Vis], xs: &XScale, ys: &YScale) {
    cols.clear();
    for p in seg {
        let (x, top, bot) = (xs.x(p.ts), ys.y(p.hi), ys.y(p.lo));
        match cols.last_mut() {
            Some(c) if x.floor() == c.x0.floor() => {
                c.x1 = x;
                c.top = c.top.min(top);
                c.bot = c.bot.max(bot);
            }
            _ => cols.push(Col { x0: x, x1: x, top, bot }),
        }
    }
    if cols.len() < 2 {
        return;
    }
    out.push_str("<path d=\"");
    let mut em = Emitter::default();
    for c in cols.iter() {
        em.pt(out, c.x0, c.top);
        em.pt(out, c.x1, c.top);
    }
    for c in cols.iter().rev() {
        em.pt(out, c.x1, c.bot);
        em.pt(out, c.x0, c.bot);
    }
    out.push_str("Z\"/>");
}

/// Writes path vertices rounded to 0.1, skipping repeats: `M x y x y …` (implicit line-tos).
#[derive(Default)]
struct Emitter {
    last: Option<(i64, i64)>,
    count: usize,
}

impl Emitter {
    fn pt(&mut self, out: &mut String, x: f64, y: f64) {
        let k = (tenths(x), tenths(y));
        if self.last == Some(k) {
            return;
        }
        out.push(if self.count == 0 { 'M' } else { ' ' });
        push_tenths(out, k.0);
        out.push(' ');
        push_tenths(out, k.1);
        self.last = Some(k);
        self.count += 1;
    }
}

/// Reduces a polyline to at most 4 vertices per 1-unit column (first, min, max, last, in order): at that
/// resolution the drawing is unchanged, and the output stays bounded for dense series.
#[derive(Default)]
struct Decimator {
    em: Emitter,
    col: i64,
    seq: usize,
    /// first, min y, max y, last: (seq, x, y).
    pts: Option<[(usize, f64, f64); 4]>,
}

impl Decimator {
    fn push(&mut self, out: &mut String, x: f64, y: f64) {
        let col = x.floor() as i64;
        let p = (self.seq, x, y);
        self.seq += 1;
        match &mut self.pts {
            Some(c) if col == self.col => {
                if y < c[1].2 {
                    c[1] = p;
                }
                if y > c[2].2 {
                    c[2] = p;
                }
                c[3] = p;
            }
            _ => {
                self.flush(out);
                self.col = col;
                self.pts = Some([p; 4]);
            }
        }
    }

    fn flush(&mut self, out: &mut String) {
        if let Some(mut c) = self.pts.take() {
            c.sort_by_key(|p| p.0);
            let mut prev = usize::MAX;
            for (seq, x, y) in c {
                if seq != prev {
                    self.em.pt(out, x, y);
                    prev = seq;
                }
            }
        }
    }

    /// Flushes; a lone vertex becomes a dot (zero-length line with round caps).
    fn finish(&mut self, out: &mut String) {
        self.flush(out);
        if self.em.count == 1 {
            out.push_str("h0");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Text.

fn tenths(v: f64) -> i64 {
    let t = (v * 10.0).round();
    if t.is_finite() {
        t as i64
    } else {
        0
    }
}

fn push_tenths(out: &mut String, t: i64) {
    if t < 0 {
        out.push('-');
    }
    let a = t.unsigned_abs();
    let _ = write!(out, "{}", a / 10);
    let frac = (a % 10) as u8;
    if frac != 0 {
        out.push('.');
        out.push(char::from(b'0' + frac));
    }
}

/// Writes `v` rounded to one decimal, without a trailing `.0`.
/// Writes `x y` (two coordinates of a path or a point).
fn push_xy(out: &mut String, x: f64, y: f64) {
    push_num(out, x);
    out.push(' ');
    push_num(out, y);
}

fn push_num(out: &mut String, v: f64) {
    push_tenths(out, tenths(v));
}

/// XML-escapes `s` into `out`; drops characters XML 1.0 does not allow (control characters but tab/LF/CR,
/// U+FFFE, U+FFFF).
fn push_escaped(out: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

fn truncate(s: &str, max_chars: usize) -> &str {
    s.char_indices().nth(max_chars).map_or(s, |(i, _)| &s[..i])
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `v` with 4 significant digits, trailing zeros trimmed; scientific notation when very large or small.
fn fmt_sig(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".to_owned();
    }
    if !(1e-4..1e9).contains(&a) {
        return format!("{v:.3e}");
    }
    let d = (3 - a.log10().floor() as i32).clamp(0, 10) as usize;
    let mut s = format!("{v:.d$}");
    if s.contains('.') {
        let keep = s.trim_end_matches('0').trim_end_matches('.').len();
        s.truncate(keep);
    }
    if s == "-0" {
        s.remove(0);
    }
    s
}

/// Stable id for the `aria-labelledby` references (FNV-1a of the chart's identity).
fn chart_id(chart: &Chart<'_>, from: i64, to: i64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(chart.title.as_bytes());
    eat(&[0]);
    eat(chart.unit.as_bytes());
    eat(&from.to_le_bytes());
    eat(&to.to_le_bytes());
    eat(&(chart.points.len() as u64).to_le_bytes());
    eat(&(chart.marks.len() as u64).to_le_bytes());
    format!("chart-{:08x}", h as u32 ^ (h >> 32) as u32)
}

// ---------------------------------------------------------------------------------------------------------------
// UTC calendar.

/// (year, month 1..=12, day 1..=31) of day `z` since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// How time labels look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeFmt {
    /// `HH:MM:SS.mmm`
    Millis,
    /// `HH:MM:SS`
    Secs,
    /// `HH:MM`
    Mins,
    /// `MM-DD HH:MM`
    DayMins,
    /// `MM-DD`
    Days,
    /// `YYYY-MM-DD`
    Dates,
    /// `YYYY-MM-DD HH:MM:SS` (plus `.mmm` when not whole seconds)
    Full,
}

impl TimeFmt {
    /// Length of a label in characters.
    fn chars(self) -> usize {
        match self {
            TimeFmt::Millis => 12,
            TimeFmt::Secs => 8,
            TimeFmt::Mins | TimeFmt::Days => 5,
            TimeFmt::DayMins => 11,
            TimeFmt::Dates => 10,
            TimeFmt::Full => 19,
        }
    }
}

/// Label format for x ticks `step` apart over `[from, to]`.
fn time_fmt(from: i64, to: i64, step: i64) -> TimeFmt {
    let day = |t: i64| t.div_euclid(DAY);
    let same_day = day(from) == day(to.saturating_sub(1).max(from));
    if step < SEC {
        TimeFmt::Millis
    } else if step < MIN {
        TimeFmt::Secs
    } else if step < DAY {
        if same_day {
            TimeFmt::Mins
        } else {
            TimeFmt::DayMins
        }
    } else if civil_from_days(day(from)).0 == civil_from_days(day(to)).0 {
        TimeFmt::Days
    } else {
        TimeFmt::Dates
    }
}

fn push_time(out: &mut String, ts: i64, f: TimeFmt) {
    let (y, mo, d) = civil_from_days(ts.div_euclid(DAY));
    let ms = ts.rem_euclid(DAY);
    let (h, mi, s, milli) = (ms / HOUR, ms % HOUR / MIN, ms % MIN / SEC, ms % SEC);
    let _ = match f {
        TimeFmt::Millis => write!(out, "{h:02}:{mi:02}:{s:02}.{milli:03}"),
        TimeFmt::Secs => write!(out, "{h:02}:{mi:02}:{s:02}"),
        TimeFmt::Mins => write!(out, "{h:02}:{mi:02}"),
        TimeFmt::DayMins => write!(out, "{mo:02}-{d:02} {h:02}:{mi:02}"),
        TimeFmt::Days => write!(out, "{mo:02}-{d:02}"),
        TimeFmt::Dates => write!(out, "{y:04}-{mo:02}-{d:02}"),
        TimeFmt::Full if milli == 0 => write!(out, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
        TimeFmt::Full => write!(out, "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{milli:03}"),
    };
}

/// `YYYY-MM-DD HH:MM – YYYY-MM-DD HH:MM UTC` (with seconds, and milliseconds, when the ends need them).
fn push_range(out: &mut String, from: i64, to: i64) {
    let f = if from.rem_euclid(MIN) == 0 && to.rem_euclid(MIN) == 0 { None } else { Some(TimeFmt::Full) };
    for (i, t) in [from, to].into_iter().enumerate() {
        if i == 1 {
            out.push_str(" – ");
        }
        match f {
            Some(f) => push_time(out, t, f),
            None => {
                push_time(out, t, TimeFmt::Dates);
                out.push(' ');
                push_time(out, t, TimeFmt::Mins);
            }
        }
    }
    out.push_str(" UTC");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(m);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn ts(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
        days_from_civil(y, mo, d) * DAY + h * HOUR + mi * MIN + s * SEC
    }

    fn time(t: i64, f: TimeFmt) -> String {
        let mut s = String::new();
        push_time(&mut s, t, f);
        s
    }

    fn pt(ts: i64, v: f64) -> Point {
        Point { ts, value: v, min: v, max: v }
    }

    fn chart<'a>(points: &'a [Point], marks: &'a [Mark]) -> Chart<'a> {
        Chart { title: "asset-0001-vib-2 (vibration)", unit: "mm/s", from: 0, to: HOUR, points, marks, limits: None }
    }

    /// Minimal well-formedness check: one root element, balanced and properly nested tags, quoted attributes,
    /// no raw `<` or bare `&` in text or attribute values, only the five predefined entities or character references.
    fn assert_well_formed(xml: &str) {
        fn check_text(t: &str) {
            assert!(!t.contains('<'), "raw < in {t:?}");
            let mut rest = t;
            while let Some(i) = rest.find('&') {
                let after = &rest[i + 1..];
                let end = after.find(';').unwrap_or_else(|| panic!("bare & in {t:?}"));
                let ent = &after[..end];
                let ok = matches!(ent, "amp" | "lt" | "gt" | "quot" | "apos")
                    || (ent.starts_with('#') && ent.len() > 1 && ent[1..].chars().all(|c| c.is_ascii_digit()));
                assert!(ok, "bad entity &{ent}; in {t:?}");
                rest = &after[end + 1..];
            }
            for c in t.chars() {
                assert!(c >= ' ' || matches!(c, '\t' | '\n' | '\r'), "control char {c:?}");
            }
        }
        let mut stack: Vec<&str> = Vec::new();
        let mut roots = 0;
        let mut rest = xml;
        while !rest.is_empty() {
            let Some(lt) = rest.find('<') else {
                check_text(rest);
                assert!(stack.is_empty() && rest.trim().is_empty(), "text outside root");
                break;
            };
            check_text(&rest[..lt]);
            if stack.is_empty() {
                assert!(rest[..lt].trim().is_empty(), "text outside root");
            }
            rest = &rest[lt + 1..];
            // Find the tag's end, honouring quotes.
            let mut quote = None;
            let mut end = None;
            for (i, c) in rest.char_indices() {
                match (quote, c) {
                    (None, '"' | '\'') => quote = Some(c),
                    (Some(q), c) if c == q => quote = None,
                    (None, '>') => {
                        end = Some(i);
                        break;
                    }
                    (None, '<') => panic!("< inside a tag"),
                    _ => {}
                }
            }
            let end = end.expect("unterminated tag");
            let tag = &rest[..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name.trim()), "mismatched close tag");
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name_end = body.find(char::is_whitespace).unwrap_or(body.len());
            let name = &body[..name_end];
            assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'), "name {name:?}");
            // Attributes: name="value" ...
            let mut attrs = body[name_end..].trim();
            let mut seen = Vec::new();
            while !attrs.is_empty() {
                let eq = attrs.find('=').expect("attribute without =");
                let an = attrs[..eq].trim();
                assert!(!an.is_empty() && !an.contains(char::is_whitespace), "attribute name {an:?}");
                assert!(!seen.contains(&an), "duplicate attribute {an}");
                seen.push(an);
                let v = &attrs[eq + 1..];
                let q = v.chars().next().expect("attribute value");
                assert!(q == '"' || q == '\'', "unquoted attribute");
                let close = v[1..].find(q).expect("unterminated attribute") + 1;
                check_text(&v[1..close]);
                attrs = v[close + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name);
            }
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        assert_eq!(roots, 1, "exactly one root");
    }

    fn count(hay: &str, needle: &str) -> usize {
        hay.matches(needle).count()
    }

    /// The `d` attributes inside the `<g class="chart-line" …>` group.
    fn line_paths(svg: &str) -> usize {
        let start = svg.find(r#"<g class="chart-line""#).expect("line group");
        let end = start + svg[start..].find("</g>").expect("end of line group");
        count(&svg[start..end], "<path")
    }

    #[test]
    fn civil_dates_round_trip_and_boundaries() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 28), 2);
        assert_eq!(days_from_civil(2023, 3, 1) - days_from_civil(2023, 2, 28), 1);
        assert_eq!(days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28), 2);
        assert_eq!(days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28), 1);
        for z in -800_000..800_000 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(time(0, TimeFmt::Full), "1970-01-01 00:00:00");
        assert_eq!(time(-1, TimeFmt::Full), "1969-12-31 23:59:59.999");
        assert_eq!(time(ts(2024, 2, 29, 23, 59, 59), TimeFmt::Full), "2024-02-29 23:59:59");
        assert_eq!(time(ts(2024, 2, 29, 23, 59, 59) + SEC, TimeFmt::Full), "2024-03-01 00:00:00");
        assert_eq!(time(ts(2024, 2, 29, 7, 5, 9), TimeFmt::Secs), "07:05:09");
        assert_eq!(time(ts(2024, 2, 29, 7, 5, 9), TimeFmt::Mins), "07:05");
        assert_eq!(time(ts(2024, 2, 29, 7, 5, 9), TimeFmt::DayMins), "02-29 07:05");
        assert_eq!(time(ts(2024, 2, 29, 7, 5, 9) + 42, TimeFmt::Millis), "07:05:09.042");
        assert_eq!(time(1_700_000_000_000, TimeFmt::Full), "2023-11-14 22:13:20");
        let mut s = String::new();
        push_range(&mut s, ts(2024, 2, 29, 22, 0, 0), ts(2024, 3, 1, 2, 0, 0));
        assert_eq!(s, "2024-02-29 22:00 – 2024-03-01 02:00 UTC");
        // Extremes do not panic.
        let _ = time(i64::MIN, TimeFmt::Full);
        let _ = time(i64::MAX, TimeFmt::Full);
    }

    #[test]
    fn time_ticks_and_formats() {
        let t0 = ts(2024, 2, 29, 10, 7, 0);
        let (step, ticks) = time_ticks(t0, t0 + 2 * HOUR);
        assert_eq!(step, 30 * MIN);
        assert_eq!(ticks.first().copied(), Some(ts(2024, 2, 29, 10, 30, 0)));
        assert_eq!(ticks.len(), 4);
        assert_eq!(time_fmt(t0, t0 + 2 * HOUR, step), TimeFmt::Mins);
        let (step, _) = time_ticks(t0, t0 + 2 * DAY);
        assert_eq!(step, 12 * HOUR);
        assert_eq!(time_fmt(t0, t0 + 2 * DAY, step), TimeFmt::DayMins);
        let (step, ticks) = time_ticks(t0, t0 + 3 * DAY);
        assert_eq!((step, ticks.len()), (DAY, 3));
        assert_eq!(time_fmt(t0, t0 + 3 * DAY, step), TimeFmt::Days);
        let (step, _) = time_ticks(t0, t0 + 30 * SEC);
        assert_eq!(step, 10 * SEC);
        assert_eq!(time_fmt(t0, t0 + 30 * SEC, step), TimeFmt::Secs);
        let (step, _) = time_ticks(t0, t0 + 20 * DAY);
        assert_eq!(time_fmt(t0, t0 + 20 * DAY, step), TimeFmt::Days);
        // A whole UTC day ending at midnight is still "one day".
        let d = ts(2024, 2, 29, 0, 0, 0);
        assert_eq!(time_fmt(d, d + DAY, 3 * HOUR), TimeFmt::Mins);
        for span in [1, 7, 999, SEC, 59 * SEC, 17 * MIN, 5 * HOUR, 25 * HOUR, 9 * DAY, 400 * DAY, 40_000 * DAY] {
            let (step, ticks) = time_ticks(t0, t0 + span);
            assert!(!ticks.is_empty() || step > span, "span {span}");
            assert!(ticks.len() <= 8, "span {span}: {} ticks", ticks.len());
            assert!(ticks.iter().all(|t| t.rem_euclid(step) == 0 && *t >= t0 && *t <= t0 + span));
        }
        let _ = time_ticks(i64::MAX - 5, i64::MAX);
        let _ = time_ticks(i64::MIN, i64::MAX);
    }

    #[test]
    fn nice_ticks_are_nice() {
        let t = nice_ticks(0.0, 1.0);
        assert_eq!((t.m, t.k, t.first, t.last), (2.0, -1, 0, 5));
        assert_eq!(t.labels(), ["0", "0.2", "0.4", "0.6", "0.8", "1"].map(String::from));
        // No 1/2/5 step gives 4 to 6 ticks here: the closest wins (y_scale avoids this by adjusting its padding).
        assert_eq!(nice_ticks(-0.33, 0.33).labels(), ["-0.3", "-0.2", "-0.1", "0", "0.1", "0.2", "0.3"].map(String::from));
        assert_eq!(nice_ticks(2.9, 3.35).labels(), ["2.9", "3", "3.1", "3.2", "3.3"].map(String::from));
        assert_eq!(nice_ticks(100_000.0, 480_000.0).labels(), ["100k", "200k", "300k", "400k"].map(String::from));
        assert_eq!(nice_ticks(1.0e6, 2.0e6).labels(), ["1M", "1.2M", "1.4M", "1.6M", "1.8M", "2M"].map(String::from));
        assert!(nice_ticks(1e-9, 5e-9).labels().iter().all(|l| l.contains('e') && l.len() <= 6));
        // Over many ranges (as y_scale would pad them): 1/2/5 steps, 4..=6 ticks, short exact labels.
        let mut r = 0x2545_f491_4f6c_dd1d_u64;
        let mut rnd = || {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            (r >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..20_000 {
            let scale = 10f64.powf(rnd() * 12.0 - 6.0);
            let lo = (rnd() - 0.5) * 20.0 * scale;
            let hi = lo + (rnd() + 0.001) * 10.0 * scale;
            let ys = y_scale(lo, hi, None);
            let t = ys.ticks;
            assert!((4..=6).contains(&t.count()) || t.m == 2.5 && (3..=7).contains(&t.count()), "{lo} {hi}: {t:?}");
            assert!(ys.lo < lo && ys.hi > hi);
            for (i, l) in (t.first..=t.last).zip(t.labels()) {
                assert!(l.len() <= 10, "label {l} for {lo}..{hi}");
                let v = t.value(i);
                assert!(v >= ys.lo - 1e-9 * scale && v <= ys.hi + 1e-9 * scale);
            }
        }
    }

    #[test]
    fn numbers_are_compact() {
        let mut s = String::new();
        for v in [0.0, -0.04, 0.05, 12.34, -3.0, 799.96, f64::NAN] {
            push_num(&mut s, v);
            s.push(',');
        }
        assert_eq!(s, "0,0,0.1,12.3,-3,800,0,");
        assert_eq!(fmt_sig(0.30000000000000004), "0.3");
        assert_eq!(fmt_sig(-1234.5678), "-1235");
        assert_eq!(fmt_sig(2.5e-7), "2.500e-7");
    }

    #[test]
    fn escapes_text() {
        let marks = [Mark { ts: 60_000, kind: MarkKind::Anomaly, label: "z > 3 & <b>\"x\"</b>\u{1}'".into() }];
        let points = [pt(0, 1.0), pt(1000, 2.0)];
        let c = Chart { title: "a<b & \"c\"", unit: "<µm>", ..chart(&points, &marks) };
        let svg = render(&c);
        assert_well_formed(&svg);
        assert!(svg.contains("a&lt;b &amp; &quot;c&quot;"));
        assert!(svg.contains("&lt;µm&gt;"));
        assert!(svg.contains("z &gt; 3 &amp; &lt;b&gt;&quot;x&quot;&lt;/b&gt;&#39;</title>"));
        assert!(!svg.contains('\u{1}'));
    }

    #[test]
    fn empty_series() {
        let svg = render(&chart(&[], &[]));
        assert_well_formed(&svg);
        assert!(svg.contains("no readings in this range"));
        assert!(svg.contains("No readings"));
        assert!(!svg.contains("chart-line"));
        // Only non-finite values, or all outside the range: the same.
        let nan = [pt(10, f64::NAN), pt(20, f64::INFINITY), pt(2 * HOUR, 1.0)];
        let svg = render(&chart(&nan, &[]));
        assert_well_formed(&svg);
        assert!(svg.contains("no readings in this range"));
        // Degenerate range.
        let svg = render(&Chart { from: 5, to: 5, ..chart(&[pt(5, 1.0)], &[]) });
        assert_well_formed(&svg);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn flat_single_and_nan_series() {
        let flat: Vec<Point> = (0..60).map(|i| pt(i * MIN, 3.2)).collect();
        let svg = render(&chart(&flat, &[]));
        assert_well_formed(&svg);
        assert_eq!(line_paths(&svg), 1);
        assert!(svg.contains(">3.2</text>"), "{svg}");
        assert!(!svg.contains("chart-band"));
        let zero: Vec<Point> = (0..60).map(|i| pt(i * MIN, 0.0)).collect();
        assert_well_formed(&render(&chart(&zero, &[])));

        let single = render(&chart(&[pt(30 * MIN, -7.5)], &[]));
        assert_well_formed(&single);
        assert_eq!(line_paths(&single), 1);
        assert!(single.contains("h0\""), "single point drawn as a dot");

        let mut mixed: Vec<Point> = (0..60).map(|i| pt(i * MIN, (i as f64).sin())).collect();
        mixed[10].value = f64::NAN;
        mixed[20].value = f64::NEG_INFINITY;
        mixed[30].min = f64::NAN;
        mixed[31].max = f64::INFINITY;
        mixed[40].value = 1e300;
        let svg = render(&chart(&mixed, &[]));
        assert_well_formed(&svg);
        assert_eq!(line_paths(&svg), 1, "a skipped value is no gap");
        assert!(svg.contains("57 points"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn gaps_break_the_line() {
        let mut points: Vec<Point> = (0..20).map(|i| pt(i * MIN, i as f64)).collect();
        points.extend((30..50).map(|i| pt(i * MIN, i as f64)));
        points.push(pt(58 * MIN, 1.0));
        let svg = render(&chart(&points, &[]));
        assert_well_formed(&svg);
        assert_eq!(line_paths(&svg), 3);
        // Bucketed: band drawn per segment.
        let banded: Vec<Point> = points.iter().map(|p| Point { min: p.value - 1.0, max: p.value + 1.0, ..*p }).collect();
        let svg = render(&chart(&banded, &[]));
        assert_well_formed(&svg);
        assert!(svg.contains("chart-band"));
        assert_eq!(count(&svg, "Z\"/>"), 2, "no band for the lone point");
    }

    #[test]
    fn marks_in_range_only_and_capped() {
        let points: Vec<Point> = (0..60).map(|i| pt(i * MIN, i as f64)).collect();
        let marks = [
            Mark { ts: -1, kind: MarkKind::Anomaly, label: "before".into() },
            Mark { ts: 10 * MIN, kind: MarkKind::Anomaly, label: "a".into() },
            Mark { ts: 20 * MIN, kind: MarkKind::Drift, label: "d".into() },
            Mark { ts: 30 * MIN, kind: MarkKind::Maintenance, label: "m".into() },
            Mark { ts: 40 * MIN, kind: MarkKind::Prediction, label: String::new() },
            Mark { ts: HOUR + 1, kind: MarkKind::Prediction, label: "after".into() },
        ];
        let svg = render(&chart(&points, &marks));
        assert_well_formed(&svg);
        for class in ["mark-anomaly", "mark-drift", "mark-maintenance", "mark-prediction"] {
            assert_eq!(count(&svg, class), 1, "{class}");
        }
        assert!(!svg.contains("before") && !svg.contains("after"));
        assert!(svg.contains("<title>a</title>"));
        assert!(svg.contains("<title>prediction 1970-01-01 00:40:00 UTC</title>"));
        assert!(svg.contains("4 marks."));

        let many: Vec<Mark> =
            (0..3000).map(|i| Mark { ts: i * HOUR / 3000, kind: MarkKind::Anomaly, label: format!("m{i}") }).collect();
        let svg = render(&chart(&points, &many));
        assert_well_formed(&svg);
        assert_eq!(count(&svg, "class=\"mark "), MAX_MARKS);
        assert!(svg.contains("3000 marks (2500 not drawn)"));
        assert!(svg.contains("<title>m0<") && svg.contains("<title>m2994<"));
    }

    #[test]
    fn limits_near_the_range_only() {
        let points: Vec<Point> = (0..60).map(|i| pt(i * MIN, 2.0 + (i as f64 / 10.0).sin())).collect();
        let svg = render(&Chart { limits: Some((0.5, 3.9)), ..chart(&points, &[]) });
        assert_well_formed(&svg);
        assert!(svg.contains(">low 0.5</text>") && svg.contains(">high 3.9</text>"));
        let svg = render(&Chart { limits: Some((-1000.0, f64::NAN)), ..chart(&points, &[]) });
        assert_well_formed(&svg);
        assert!(!svg.contains("chart-limit"));
    }

    #[test]
    fn dense_series_is_bounded_and_deterministic() {
        let points: Vec<Point> = (0..100_000)
            .map(|i| {
                let v = (i as f64 / 500.0).sin() * 3.0 + ((i * 7919) % 101) as f64 / 100.0;
                Point { ts: i * 36, value: v, min: v - 0.5, max: v + 0.5 }
            })
            .collect();
        let a = render(&chart(&points, &[]));
        assert_well_formed(&a);
        assert!(a.len() < 120_000, "{} bytes", a.len());
        assert_eq!(a, render(&chart(&points, &[])));
    }
}
