//! HdrHistogram's standard percentile-distribution text format (what Java's
//! `Histogram.outputPercentileDistribution(out, 5, scale)` writes and HdrHistogram's plotter
//! reads), for histograms of nanoseconds written in microseconds.
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        3.071 0.000000000000          1           1.00
//!        ...
//!      812.031 1.000000000000      10000
//! #[Mean    =        4.123, StdDeviation   =        2.345]
//! #[Max     =      812.031, Total count    =        10000]
//! #[Buckets =           27, SubBuckets     =         2048]
//! ```

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Percentile ticks per half distance (HdrHistogram's default of 5).
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;
/// Nanoseconds per reported unit (microseconds).
pub const SCALE: f64 = 1000.0;

/// Renders `hist` (nanoseconds) in the percentile-distribution format, values in µs.
#[must_use]
pub fn render(hist: &Histogram<u64>) -> String {
    let digits = usize::from(hist.sigfig());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !hist.is_empty() {
        let mut total = 0_u64;
        for v in hist.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.digits$} {q:>2.12} {total:>10}");
            }
        }
    }
    let mean = hist.mean() / SCALE;
    let stdev = hist.stdev() / SCALE;
    let max = hist.max() as f64 / SCALE;
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:>12.digits$}, Total count    = {:>12}]",
        hist.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        hist.buckets(),
        sub_buckets(hist.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count for `sigfig` significant digits (lowest value 1).
fn sub_buckets(sigfig: u8) -> u64 {
    let largest_single_unit = 2 * 10_u64.pow(u32::from(sigfig));
    largest_single_unit.next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::new_histogram;

    #[test]
    fn renders_header_rows_and_footer() {
        let mut h = new_histogram();
        for v in 1..=10_000_u64 {
            h.record(v * 1000).unwrap();
        }
        let text = render(&h);
        let mut lines = text.lines();
        let header: Vec<_> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(rows.len() > 20);
        assert!(
            rows.windows(2)
                .all(|w| w[0][1] <= w[1][1] && w[0][0] <= w[1][0])
        );
        let last = rows.last().unwrap();
        assert_eq!(last.len(), 3, "the 100% row has no 1/(1-p) column");
        assert_eq!(last[1], 1.0);
        assert_eq!(last[2], 10_000.0);
        assert!((last[0] - 10_000.0).abs() / 10_000.0 < 0.001, "{last:?}");
        assert!(text.contains("#[Max     = "));
        assert!(text.contains("Total count    =        10000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }
}
