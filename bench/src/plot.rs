//! The latency plot: p50 and p99 latency against concurrency, routed and raw.
//!
//! Drawn with plotters on a bitmap. Text needs a TrueType font, loaded at run time from
//! [`FONT`] (Debian package `fonts-dejavu-core`) rather than built into the binary. Without it a
//! benchmark run fails with the package to install; the plot's test is skipped with a message.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::overhead::{self, Point};
use crate::report::Section;

/// The font the plot's text is drawn with.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The plot's size in pixels.
const SIZE: (u32, u32) = (900, 600);

/// Loads [`FONT`] and registers it as plotters' `sans-serif` (once per process).
fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT).map_err(|e| {
                format!(
                    "cannot read the plot font {FONT} ({e}): install it with \
                     `apt-get install fonts-dejavu-core`"
                )
            })?;
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{FONT} is not a usable TrueType font"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Draws the overhead section's latencies into a PNG at `path`: p50 and p99 of raw and routed
/// calls, in microseconds on a log scale, against concurrency (log scale too).
pub fn latency(section: &Section, path: &Path) -> anyhow::Result<()> {
    let points = overhead::points(section)?;
    anyhow::ensure!(!points.is_empty(), "no latency to plot");
    draw(&points, path).with_context(|| format!("drawing {}", path.display()))
}

fn draw(points: &[Point], path: &Path) -> anyhow::Result<()> {
    register_font()?;
    let latencies = points
        .iter()
        .flat_map(|p| [p.raw.p50_us, p.raw.p99_us, p.routed.p50_us, p.routed.p99_us]);
    let (low, high) = latencies.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let y = (low / 2.0).max(0.1)..high * 2.0;
    let max_concurrency = points.iter().map(|p| p.concurrency).max().unwrap_or(1) as f64;
    let x = 0.8..max_concurrency * 1.25;

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Calc::sum latency: through the router vs a raw tarpc client",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x.log_scale().base(2.0), y.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("concurrent callers")
        .y_desc("latency (µs, log scale)")
        .y_labels(12)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;

    let raw = RGBColor(31, 119, 180);
    let routed = RGBColor(214, 39, 40);
    // (label, colour, dashed, the latency plotted)
    type Line = (&'static str, RGBColor, bool, fn(&Point) -> f64);
    let series: [Line; 4] = [
        ("raw p50", raw, false, |p| p.raw.p50_us),
        ("raw p99", raw, true, |p| p.raw.p99_us),
        ("routed p50", routed, false, |p| p.routed.p50_us),
        ("routed p99", routed, true, |p| p.routed.p99_us),
    ];
    for (label, color, dashed, value) in series {
        let data: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.concurrency as f64, value(p)))
            .collect();
        let style = color.stroke_width(if dashed { 2 } else { 3 });
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(data.clone(), 8, 5, style))?
                .label(label)
                .legend(move |(x, y)| {
                    let style = color.stroke_width(2);
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (9, 0)], style)
                        + PathElement::new(vec![(15, 0), (24, 0)], style)
                });
        } else {
            chart
                .draw_series(LineSeries::new(data.clone(), style))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
        }
        chart.draw_series(
            data.iter()
                .map(|&point| Circle::new(point, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rounds::PathFigures;

    #[test]
    fn draws_a_png() {
        // The font is a system file (Debian's fonts-dejavu-core, which .ci/run installs): on a
        // machine without it the plot cannot be drawn, and this test says so instead of failing.
        if !Path::new(FONT).exists() {
            eprintln!(
                "skipped draws_a_png: {FONT} is missing (apt-get install fonts-dejavu-core); \
                 `make bench` needs it for the plot"
            );
            return;
        }
        let figures = |us: f64| PathFigures {
            rps: 1000.0,
            p50_us: us,
            p99_us: us * 3.0,
            cpu_us: 10.0,
            calls: 10,
        };
        let points: Vec<Point> = [1, 16, 128]
            .iter()
            .map(|&c| Point {
                concurrency: c,
                raw: figures(20.0 * c as f64),
                routed: figures(22.0 * c as f64),
                ratio: 1.0,
                p50_diff_us: 2.0,
                routed_secret: figures(22.0 * c as f64),
                secret_ratio: 1.0,
                secret_cpu_diff_us: 0.0,
            })
            .collect();
        let path = std::env::temp_dir().join(format!("latency-{}.png", std::process::id()));
        draw(&points, &path).unwrap();
        let png = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(&png[1..4], b"PNG");
    }
}
