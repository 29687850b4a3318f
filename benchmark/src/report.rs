//! Latency statistics and their presentation, laid out like etcd's `pkg/report`.
//!
//! Each worker fills its own [`Recorder`] (no shared lock on the hot path); the recorders are
//! merged at the end into a [`Summary`], which prints either etcd's text layout or JSON.
//! Latencies go into an HDR histogram (nanoseconds, 3 significant digits) for percentiles and
//! the response-time histogram; fastest, slowest, mean and standard deviation are kept exactly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The percentiles etcd's report prints.
const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];
/// Buckets of the response time histogram, and the longest bar, as in etcd.
const HISTOGRAM_BUCKETS: usize = 10;
const HISTOGRAM_BAR_WIDTH: u64 = 40;
const BAR_CHAR: char = '∎';

/// Latencies and errors seen by one worker.
#[derive(Debug, Clone)]
pub struct Recorder {
    histogram: Histogram<u64>,
    fastest_nanos: u64,
    slowest_nanos: u64,
    /// Running mean and sum of squared deviations (Welford), in seconds.
    mean_secs: f64,
    squared_deviations: f64,
    errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            // Auto-resizing, so that an idle worker's histogram stays small.
            histogram: Histogram::new(3).expect("3 significant digits is a valid precision"),
            fastest_nanos: u64::MAX,
            slowest_nanos: 0,
            mean_secs: 0.0,
            squared_deviations: 0.0,
            errors: BTreeMap::new(),
        }
    }

    /// Records one successful request that took `latency`.
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        // An auto-resizing histogram only fails on values beyond u64, which cannot occur.
        let _ = self.histogram.record(nanos);
        self.fastest_nanos = self.fastest_nanos.min(nanos);
        self.slowest_nanos = self.slowest_nanos.max(nanos);
        let secs = latency.as_secs_f64();
        let count = self.histogram.len() as f64;
        let delta = secs - self.mean_secs;
        self.mean_secs += delta / count;
        self.squared_deviations += delta * (secs - self.mean_secs);
    }

    /// Counts one failed request under its message.
    pub fn record_error(&mut self, error: impl std::fmt::Display) {
        self.record_errors(error, 1);
    }

    /// Counts `count` failures under the same message.
    pub fn record_errors(&mut self, error: impl std::fmt::Display, count: u64) {
        if count > 0 {
            *self.errors.entry(error.to_string()).or_default() += count;
        }
    }

    pub fn successes(&self) -> u64 {
        self.histogram.len()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Folds `other` into `self` (Chan et al.'s parallel variance).
    pub fn merge(&mut self, other: &Recorder) {
        let (na, nb) = (self.successes() as f64, other.successes() as f64);
        if nb > 0.0 {
            let n = na + nb;
            let delta = other.mean_secs - self.mean_secs;
            self.mean_secs += delta * nb / n;
            self.squared_deviations += other.squared_deviations + delta * delta * na * nb / n;
            // Both histograms auto-resize, so adding cannot run out of range.
            let _ = self.histogram.add(&other.histogram);
            self.fastest_nanos = self.fastest_nanos.min(other.fastest_nanos);
            self.slowest_nanos = self.slowest_nanos.max(other.slowest_nanos);
        }
        for (message, count) in &other.errors {
            *self.errors.entry(message.clone()).or_default() += count;
        }
    }

    /// The statistics of everything recorded, for a run that took `elapsed` in total.
    pub fn summarize(&self, name: &str, elapsed: Duration) -> Summary {
        let requests = self.successes();
        let total_secs = elapsed.as_secs_f64();
        let mut summary = Summary {
            name: name.to_string(),
            total_secs,
            requests,
            errors: self.error_count(),
            fastest_secs: 0.0,
            slowest_secs: 0.0,
            average_secs: 0.0,
            stddev_secs: 0.0,
            requests_per_sec: 0.0,
            percentiles: Vec::new(),
            histogram: Vec::new(),
            error_distribution: self.errors.clone(),
        };
        if requests == 0 {
            return summary;
        }
        summary.fastest_secs = nanos_to_secs(self.fastest_nanos);
        summary.slowest_secs = nanos_to_secs(self.slowest_nanos);
        summary.average_secs = self.mean_secs;
        summary.stddev_secs = (self.squared_deviations / requests as f64).sqrt();
        if total_secs > 0.0 {
            summary.requests_per_sec = requests as f64 / total_secs;
        }
        summary.percentiles = PERCENTILES
            .iter()
            .map(|&percentile| Percentile {
                percentile,
                latency_secs: nanos_to_secs(
                    self.exact_bounds(self.histogram.value_at_quantile(percentile / 100.0)),
                ),
            })
            .collect();
        summary.histogram = self.response_time_histogram(&summary);
        summary
    }

    /// A histogram value (the top of its bucket) clamped to what was actually recorded.
    fn exact_bounds(&self, nanos: u64) -> u64 {
        nanos.clamp(self.fastest_nanos, self.slowest_nanos)
    }

    /// etcd's layout: ten equal-width buckets from fastest to slowest, each counting the
    /// latencies above the previous bound and at most its own, plus one for the slowest.
    fn response_time_histogram(&self, summary: &Summary) -> Vec<Bucket> {
        let width = (summary.slowest_secs - summary.fastest_secs) / HISTOGRAM_BUCKETS as f64;
        let mut buckets: Vec<Bucket> = (0..HISTOGRAM_BUCKETS)
            .map(|i| Bucket {
                upper_bound_secs: summary.fastest_secs + width * i as f64,
                count: 0,
            })
            .chain(std::iter::once(Bucket {
                upper_bound_secs: summary.slowest_secs,
                count: 0,
            }))
            .collect();
        for value in self.histogram.iter_recorded() {
            // The bottom of the value's bucket, so that the fastest request lands in the first.
            let nanos =
                self.exact_bounds(self.histogram.lowest_equivalent(value.value_iterated_to()));
            let secs = nanos_to_secs(nanos);
            let index = buckets
                .iter()
                .position(|bucket| secs <= bucket.upper_bound_secs)
                .unwrap_or(HISTOGRAM_BUCKETS);
            buckets[index].count += value.count_at_value();
        }
        buckets
    }
}

fn nanos_to_secs(nanos: u64) -> f64 {
    Duration::from_nanos(nanos).as_secs_f64()
}

/// The machine-readable result of one benchmark phase (`--output json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub name: String,
    /// Wall time of the phase.
    pub total_secs: f64,
    /// Requests that succeeded; only these have latencies.
    pub requests: u64,
    pub errors: u64,
    pub fastest_secs: f64,
    pub slowest_secs: f64,
    pub average_secs: f64,
    pub stddev_secs: f64,
    pub requests_per_sec: f64,
    pub percentiles: Vec<Percentile>,
    pub histogram: Vec<Bucket>,
    /// Error message to number of occurrences.
    pub error_distribution: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentile {
    pub percentile: f64,
    pub latency_secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub upper_bound_secs: f64,
    pub count: u64,
}

impl Summary {
    /// etcd's text report. `precise` prints every digit instead of etcd's `%4.4f`.
    pub fn to_text(&self, precise: bool) -> String {
        let number = |value: f64| {
            if precise {
                format!("{value}")
            } else {
                format!("{value:4.4}")
            }
        };
        let secs = |value: f64| format!("{} secs", number(value));
        let mut text = String::new();
        if self.requests > 0 {
            text.push_str("\nSummary:\n");
            let _ = writeln!(text, "  Total:\t{}.", secs(self.total_secs));
            let _ = writeln!(text, "  Slowest:\t{}.", secs(self.slowest_secs));
            let _ = writeln!(text, "  Fastest:\t{}.", secs(self.fastest_secs));
            let _ = writeln!(text, "  Average:\t{}.", secs(self.average_secs));
            let _ = writeln!(text, "  Stddev:\t{}.", secs(self.stddev_secs));
            let _ = writeln!(text, "  Requests/sec:\t{}", number(self.requests_per_sec));

            text.push_str("\nResponse time histogram:\n");
            let tallest = self.histogram.iter().map(|b| b.count).max().unwrap_or(0);
            for bucket in &self.histogram {
                let bar_len = (bucket.count * HISTOGRAM_BAR_WIDTH)
                    .checked_div(tallest)
                    .unwrap_or(0);
                let bar: String = std::iter::repeat_n(BAR_CHAR, bar_len as usize).collect();
                let _ = writeln!(
                    text,
                    "  {} [{}]\t|{}",
                    number(bucket.upper_bound_secs),
                    bucket.count,
                    bar
                );
            }

            text.push_str("\nLatency distribution:\n");
            for p in self.percentiles.iter().filter(|p| p.latency_secs > 0.0) {
                let _ = writeln!(text, "  {}% in {}.", p.percentile, secs(p.latency_secs));
            }
        }
        if !self.error_distribution.is_empty() {
            text.push_str("\nError distribution:\n");
            for (message, count) in &self.error_distribution {
                let _ = writeln!(text, "  [{count}]\t{message}");
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Recorder {
        let mut recorder = Recorder::new();
        for &v in values {
            recorder.record(Duration::from_millis(v));
        }
        recorder
    }

    #[test]
    fn exact_statistics() {
        let recorder = millis(&[1, 2, 3, 4, 10]);
        let summary = recorder.summarize("put", Duration::from_secs(2));
        assert_eq!(summary.requests, 5);
        assert_eq!(summary.errors, 0);
        assert_eq!(summary.fastest_secs, 0.001);
        assert_eq!(summary.slowest_secs, 0.010);
        assert!((summary.average_secs - 0.004).abs() < 1e-12);
        // Population standard deviation of 1,2,3,4,10 ms = sqrt(10) ms.
        assert!((summary.stddev_secs - 10f64.sqrt() / 1000.0).abs() < 1e-9);
        assert_eq!(summary.requests_per_sec, 2.5);
    }

    #[test]
    fn merged_recorders_match_a_single_one() {
        let mut merged = millis(&[1, 2, 3]);
        merged.merge(&millis(&[4, 10]));
        merged.merge(&Recorder::new());
        let single = millis(&[1, 2, 3, 4, 10]);
        let (a, b) = (
            merged.summarize("x", Duration::from_secs(1)),
            single.summarize("x", Duration::from_secs(1)),
        );
        assert_eq!(a.requests, b.requests);
        assert!((a.average_secs - b.average_secs).abs() < 1e-12);
        assert!((a.stddev_secs - b.stddev_secs).abs() < 1e-12);
        assert_eq!(a.fastest_secs, b.fastest_secs);
        assert_eq!(a.slowest_secs, b.slowest_secs);
    }

    #[test]
    fn percentiles_follow_the_distribution() {
        // 99 fast requests and one slow one: the slow one shows at 99.9% only.
        let mut values = vec![1; 99];
        values.push(100);
        let summary = millis(&values).summarize("x", Duration::from_secs(1));
        let at = |p: f64| {
            summary
                .percentiles
                .iter()
                .find(|x| x.percentile == p)
                .unwrap()
                .latency_secs
        };
        assert!((at(50.0) - 0.001).abs() < 0.001 * 0.001);
        assert!((at(99.0) - 0.001).abs() < 0.001 * 0.001);
        assert!((at(99.9) - 0.100).abs() < 0.100 * 0.001);
        assert_eq!(summary.percentiles.len(), PERCENTILES.len());
    }

    #[test]
    fn histogram_has_eleven_buckets_holding_every_request() {
        let summary = millis(&[1, 1, 1, 5, 10]).summarize("x", Duration::from_secs(1));
        assert_eq!(summary.histogram.len(), HISTOGRAM_BUCKETS + 1);
        assert_eq!(summary.histogram.iter().map(|b| b.count).sum::<u64>(), 5);
        assert_eq!(
            summary.histogram[0].count, 3,
            "the fastest bucket holds the 1ms requests"
        );
        assert_eq!(
            summary.histogram[10].count, 1,
            "the last bucket holds the slowest"
        );
        assert_eq!(summary.histogram[10].upper_bound_secs, 0.010);
    }

    #[test]
    fn text_layout_matches_etcd() {
        let mut recorder = millis(&[1, 1, 1, 5, 10]);
        recorder.record_error("etcdserver: too many requests");
        recorder.record_error("etcdserver: too many requests");
        let text = recorder
            .summarize("x", Duration::from_secs(1))
            .to_text(false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "");
        assert_eq!(lines[1], "Summary:");
        assert_eq!(lines[2], "  Total:\t1.0000 secs.");
        assert_eq!(lines[3], "  Slowest:\t0.0100 secs.");
        assert_eq!(lines[4], "  Fastest:\t0.0010 secs.");
        assert_eq!(lines[5], "  Average:\t0.0036 secs.");
        assert!(lines[6].starts_with("  Stddev:\t0.00"));
        assert_eq!(lines[7], "  Requests/sec:\t5.0000");
        assert_eq!(lines[9], "Response time histogram:");
        assert_eq!(lines[10], format!("  0.0010 [3]\t|{}", "∎".repeat(40)));
        assert_eq!(lines[20], format!("  0.0100 [1]\t|{}", "∎".repeat(13)));
        assert_eq!(lines[22], "Latency distribution:");
        assert_eq!(lines[23], "  10% in 0.0010 secs.");
        assert_eq!(lines[30], "  99.9% in 0.0100 secs.");
        assert_eq!(lines[32], "Error distribution:");
        assert_eq!(lines[33], "  [2]\tetcdserver: too many requests");
        assert_eq!(lines.len(), 34);
    }

    #[test]
    fn errors_only_print_just_the_error_distribution() {
        let mut recorder = Recorder::new();
        recorder.record_errors("context deadline exceeded", 3);
        let summary = recorder.summarize("x", Duration::from_secs(1));
        assert_eq!(summary.errors, 3);
        assert_eq!(summary.requests, 0);
        assert_eq!(
            summary.to_text(false),
            "\nError distribution:\n  [3]\tcontext deadline exceeded\n"
        );
    }
}
