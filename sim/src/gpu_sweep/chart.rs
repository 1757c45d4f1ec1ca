//! The sweep as a picture: ITL, TTFT and throughput against concurrency, the model
//! as lines, the published values as dots.
//!
//! Drawn with `plotters`' SVG backend only, the project's one charting library: SVG
//! needs no font files or system libraries (text is laid out with plotters' built-in
//! size estimate and rendered by the viewer), so charts come out the same on a
//! laptop, in CI and in a container.

use std::io;
use std::path::Path;

use plotters::prelude::*;

use super::SweepResult;

const MODEL_COLOR: RGBColor = RGBColor(31, 119, 180);
const PUBLISHED_COLOR: RGBColor = RGBColor(214, 39, 40);

fn draw_err<E: std::fmt::Debug>(e: E) -> io::Error {
    io::Error::other(format!("cannot draw the chart: {e:?}"))
}

/// One panel's data: model points, published points, axis label.
struct Panel<'a> {
    title: &'a str,
    unit: &'a str,
    model: Vec<(f64, f64)>,
    published: Vec<(f64, f64)>,
}

/// Writes the sweep's chart as an SVG file.
pub fn write_chart_svg(result: &SweepResult, path: &Path) -> io::Result<()> {
    let svg = render_chart_svg(result)?;
    std::fs::write(path, svg)
}

/// The sweep's chart as SVG text.
pub fn render_chart_svg(result: &SweepResult) -> io::Result<String> {
    let x = |p: &super::SweepPoint| f64::from(p.concurrency);
    let pick = |f: &dyn Fn(&super::SweepPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        result
            .points
            .iter()
            .filter_map(|p| f(p).map(|v| (x(p), v)))
            .collect()
    };
    let panels = [
        Panel {
            title: "Inter-token latency (mean)",
            unit: "ms",
            model: pick(&|p| Some(p.itl_mean_ms)),
            published: pick(&|p| p.published.and_then(|r| r.itl_ms)),
        },
        Panel {
            title: "Time to first token (p50)",
            unit: "ms",
            model: pick(&|p| Some(p.ttft_p50_ms)),
            published: pick(&|p| p.published.and_then(|r| r.ttft_ms)),
        },
        Panel {
            title: "Output throughput",
            unit: "tokens/s",
            model: pick(&|p| Some(p.throughput_tok_s)),
            published: pick(&|p| p.published.and_then(|r| r.throughput_tok_s)),
        },
    ];

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1500, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let title = format!(
            "brownout GPU model: {} + {}, prompt {} / output {} tokens (lines: model; dots: published)",
            result.gpu, result.model, result.prompt_tokens, result.output_tokens
        );
        let root = root.titled(&title, ("sans-serif", 20)).map_err(draw_err)?;
        let areas = root.split_evenly((1, 3));
        let x_max = result
            .points
            .iter()
            .map(|p| f64::from(p.concurrency))
            .fold(1.0, f64::max)
            * 1.05;
        for (area, panel) in areas.iter().zip(&panels) {
            let y_max = panel
                .model
                .iter()
                .chain(&panel.published)
                .map(|p| p.1)
                .fold(0.0, f64::max)
                .max(1e-6)
                * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption(panel.title, ("sans-serif", 16))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc("concurrent requests")
                .y_desc(panel.unit)
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| {
                    if y_max >= 100.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.1}")
                    }
                })
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(draw_err)?;
            chart
                .draw_series(LineSeries::new(
                    panel.model.iter().copied(),
                    MODEL_COLOR.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label("model")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], MODEL_COLOR.stroke_width(2))
                });
            chart
                .draw_series(
                    panel
                        .model
                        .iter()
                        .map(|&p| Circle::new(p, 3, MODEL_COLOR.filled())),
                )
                .map_err(draw_err)?;
            if !panel.published.is_empty() {
                chart
                    .draw_series(
                        panel
                            .published
                            .iter()
                            .map(|&p| Circle::new(p, 5, PUBLISHED_COLOR.filled())),
                    )
                    .map_err(draw_err)?
                    .label("published")
                    .legend(|(x, y)| Circle::new((x + 10, y), 5, PUBLISHED_COLOR.filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}
