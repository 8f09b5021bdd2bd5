//! Latency by percentile as SVG, drawn the way HdrHistogram's plotter draws it: the x axis is
//! `1/(1-p)` on a log scale (labels 0%, 90%, 99%, 99.9%, ...), the y axis the latency in µs.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::error::{BenchError, Result};
use super::hgrm::{SCALE, TICKS_PER_HALF_DISTANCE};

/// The x axis reaches `1/(1-p)` of this much (99.9999 %).
const X_MAX: f64 = 1e6;

/// One curve.
#[derive(Debug)]
pub struct Curve<'a> {
    /// Its legend.
    pub label: String,
    /// Round trips in nanoseconds.
    pub hist: &'a Histogram<u64>,
}

fn points(hist: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    for v in hist.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        let q = v.quantile_iterated_to();
        let x = if q >= 1.0 {
            X_MAX
        } else {
            (1.0 / (1.0 - q)).min(X_MAX)
        };
        pts.push((x, v.value_iterated_to() as f64 / SCALE));
    }
    pts
}

fn percent_label(x: f64) -> String {
    // x = 1/(1-p): 1 -> 0 %, 10 -> 90 %, 100 -> 99 %, ...
    let p = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let nines = x.log10().round().max(0.0) as usize;
    let decimals = nines.saturating_sub(2);
    format!("{p:.decimals$}%")
}

/// Draws `curves` into `path`.
///
/// # Errors
/// [`BenchError::Plot`] if the file cannot be written.
pub fn draw(path: &Path, title: &str, curves: &[Curve<'_>]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| BenchError::Plot {
        path: path.to_path_buf(),
        what: e.to_string(),
    };
    let series: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .filter(|c| !c.hist.is_empty())
        .map(|c| (c.label.clone(), points(c.hist)))
        .collect();
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(1.0_f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (1024, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .margin_right(60)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0_f64..X_MAX).log_scale(), 0.0_f64..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us)")
        .x_label_formatter(&|x| percent_label(*x))
        .draw()
        .map_err(|e| err(&e))?;
    let colors = [RED, BLUE, GREEN, MAGENTA, CYAN];
    for (i, (label, pts)) in series.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_labels_follow_the_nines() {
        assert_eq!(percent_label(1.0), "0%");
        assert_eq!(percent_label(10.0), "90%");
        assert_eq!(percent_label(100.0), "99%");
        assert_eq!(percent_label(1000.0), "99.9%");
        assert_eq!(percent_label(10_000.0), "99.99%");
    }
}
