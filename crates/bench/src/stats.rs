//! Statistics: latency histograms (HDR, microseconds) and the formatting of figures.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency a histogram records exactly (larger values are clamped to it).
const MAX_MICROS: u64 = 120_000_000;

/// A latency histogram in microseconds, 3 significant figures (an HDR histogram: constant memory,
/// constant-time recording, mergeable across connections).
#[derive(Debug, Clone)]
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram covering 1 µs to 120 s.
    pub fn new() -> Self {
        // 1..=MAX_MICROS with 3 significant figures is always a valid configuration.
        Latency(
            Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .unwrap_or_else(|e| unreachable!("fixed histogram bounds are valid: {e}")),
        )
    }

    /// Records one latency (sub-microsecond values count as 1 µs, huge ones are clamped).
    pub fn record(&mut self, d: Duration) {
        self.record_micros(u64::try_from(d.as_micros()).unwrap_or(MAX_MICROS));
    }

    /// Records one latency in microseconds.
    pub fn record_micros(&mut self, micros: u64) {
        self.0.saturating_record(micros.clamp(1, MAX_MICROS));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The value at quantile `q` (0.0..=1.0) in microseconds; 0 when empty.
    pub fn quantile_micros(&self, q: f64) -> u64 {
        if self.0.is_empty() {
            return 0;
        }
        self.0.value_at_quantile(q)
    }

    /// p50, p90, p99, p99.9 and max.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            p50_us: self.quantile_micros(0.50),
            p90_us: self.quantile_micros(0.90),
            p99_us: self.quantile_micros(0.99),
            p999_us: self.quantile_micros(0.999),
            max_us: if self.0.is_empty() { 0 } else { self.0.max() },
            mean_us: if self.0.is_empty() {
                0.0
            } else {
                self.0.mean()
            },
        }
    }
}

/// Percentiles of a [`Latency`], in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest value.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

/// `value / base`, or `None` when there is no base to compare with.
pub fn ratio(value: f64, base: f64) -> Option<f64> {
    (base > 0.0 && value.is_finite()).then(|| value / base)
}

/// A ratio as `0.52x`; `-` when there is none.
pub fn format_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r >= 10.0 => format!("{r:.1}x"),
        Some(r) => format!("{r:.2}x"),
        None => "-".to_owned(),
    }
}

/// A rate with thousands separators: `47,210`.
pub fn format_rate(per_sec: f64) -> String {
    if !per_sec.is_finite() {
        return "-".to_owned();
    }
    let n = per_sec.round() as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds for people: `850us`, `1.25ms`, `12.3ms`, `1.50s`.
pub fn format_micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=9_999 => format!("{:.2}ms", us as f64 / 1e3),
        10_000..=999_999 => format!("{:.1}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// Bytes as MiB with one decimal: `23.4 MB` (the table says MB, meaning MiB, as `ps` does).
pub fn format_mib(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HDR with 3 significant figures: a value is reported within 0.1 % of the truth.
    fn assert_close(got: u64, want: u64) {
        let tolerance = (want as f64 * 0.001).ceil() as u64;
        assert!(
            got.abs_diff(want) <= tolerance,
            "got {got}, want {want} ± {tolerance}"
        );
    }

    #[test]
    fn percentiles_of_one_to_ten_thousand() {
        let mut h = Latency::new();
        for v in 1..=10_000 {
            h.record_micros(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert_close(s.p50_us, 5_000);
        assert_close(s.p90_us, 9_000);
        assert_close(s.p99_us, 9_900);
        assert_close(s.p999_us, 9_990);
        assert_close(s.max_us, 10_000);
        assert!((s.mean_us - 5_000.5).abs() < 10.0, "mean {}", s.mean_us);
    }

    #[test]
    fn a_slow_tail_shows_in_the_high_percentiles_only() {
        // 990 fast requests at 1 ms and 10 slow ones at 200 ms: p99 is still fast (the 990th
        // value), p99.9 is slow.
        let mut h = Latency::new();
        for _ in 0..990 {
            h.record(Duration::from_millis(1));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(200));
        }
        let s = h.summary();
        assert_close(s.p50_us, 1_000);
        assert_close(s.p99_us, 1_000);
        assert_close(s.p999_us, 200_000);
    }

    #[test]
    fn merged_histograms_hold_both_sides() {
        let (mut a, mut b) = (Latency::new(), Latency::new());
        for v in 1..=500 {
            a.record_micros(v);
        }
        for v in 501..=1_000 {
            b.record_micros(v);
        }
        a.merge(&b);
        assert_eq!(a.count(), 1_000);
        assert_close(a.quantile_micros(0.5), 500);
        assert_close(a.quantile_micros(1.0), 1_000);
    }

    #[test]
    fn empty_and_out_of_range_values() {
        let mut h = Latency::new();
        assert_eq!(h.summary(), LatencySummary::default());
        h.record(Duration::from_nanos(10));
        h.record(Duration::from_secs(3600));
        assert_eq!(h.quantile_micros(0.0), 1);
        assert_close(h.quantile_micros(1.0), MAX_MICROS);
    }

    #[test]
    fn ratios_are_formatted_against_the_baseline() {
        assert_eq!(format_ratio(ratio(47_500.0, 95_000.0)), "0.50x");
        assert_eq!(format_ratio(ratio(4_321.0, 95_000.0)), "0.05x");
        assert_eq!(format_ratio(ratio(95_000.0, 95_000.0)), "1.00x");
        assert_eq!(format_ratio(ratio(1_200_000.0, 95_000.0)), "12.6x");
        assert_eq!(format_ratio(ratio(1.0, 0.0)), "-");
        assert_eq!(format_ratio(None), "-");
    }

    #[test]
    fn figures_are_formatted_for_people() {
        assert_eq!(format_rate(0.4), "0");
        assert_eq!(format_rate(999.0), "999");
        assert_eq!(format_rate(47_210.4), "47,210");
        assert_eq!(format_rate(1_234_567.0), "1,234,567");
        assert_eq!(format_micros(850), "850us");
        assert_eq!(format_micros(1_250), "1.25ms");
        assert_eq!(format_micros(12_345), "12.3ms");
        assert_eq!(format_micros(1_500_000), "1.50s");
        assert_eq!(format_mib(25 * 1024 * 1024 + 512 * 1024), "25.5 MB");
    }
}
