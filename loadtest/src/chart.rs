//! The sweep chart: push p99 latency and hub/Pushgateway RSS versus node count, both systems.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::report::Comparison;

/// TrueType fonts looked for at run time; plotters' ab_glyph backend needs one registered from
/// bytes. Without any, the chart is drawn without text.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers the first font found as `sans-serif`; false when none is on this machine.
fn register_font() -> bool {
    for path in FONTS {
        if let Ok(bytes) = std::fs::read(path) {
            // plotters keeps fonts for the life of the process; the chart is drawn once or twice.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// One line: (nodes, value) points.
type Line = Vec<(f64, f64)>;

/// Writes a 1200×500 PNG: left push p99 (ms, log scale), right peak RSS (MB), per system.
pub fn draw(path: &Path, sweep: &[Comparison]) -> Result<()> {
    let text = register_font();
    if !text {
        eprintln!(
            "no TrueType font found ({}); drawing the chart without text",
            FONTS.join(", ")
        );
    }
    let pick = |f: &dyn Fn(&Comparison) -> Option<(f64, f64)>| -> Line {
        sweep.iter().filter_map(f).collect()
    };
    let p99 = [
        pick(&|c| {
            c.fleetgate
                .as_ref()
                .map(|x| (x.nodes as f64, x.push_p99_ms.max(0.01)))
        }),
        pick(&|c| {
            c.pushgateway
                .as_ref()
                .map(|x| (x.nodes as f64, x.push_p99_ms.max(0.01)))
        }),
    ];
    let rss = [
        pick(&|c| {
            c.fleetgate
                .as_ref()
                .and_then(|x| Some((x.nodes as f64, x.rss_bytes? as f64 / 1e6)))
        }),
        pick(&|c| {
            c.pushgateway
                .as_ref()
                .and_then(|x| Some((x.nodes as f64, x.rss_bytes? as f64 / 1e6)))
        }),
    ];
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (left, right) = root.split_horizontally(600);
    panel(
        &left,
        "push p99 latency (ms, log scale)",
        "ms",
        &p99,
        true,
        text,
    )?;
    panel(&right, "peak RSS (MB)", "MB", &rss, false, text)?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    lines: &[Line; 2],
    log: bool,
    text: bool,
) -> Result<()> {
    let all = lines.iter().flatten();
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_max = all.clone().map(|p| p.1).fold(1.0, f64::max) * if log { 2.0 } else { 1.1 };
    let y_min = all
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .min(y_max / 10.0)
        / 2.0;
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(15)
        .x_label_area_size(if text { 40 } else { 5 })
        .y_label_area_size(if text { 60 } else { 5 });
    if text {
        builder.caption(title, ("sans-serif", 20));
    }
    let colors = [RGBColor(0, 114, 178), RGBColor(213, 94, 0)];
    let names = ["fleetgate", "pushgateway"];
    macro_rules! draw_lines {
        ($chart:expr) => {{
            let mut chart = $chart;
            let mut mesh = chart.configure_mesh();
            mesh.light_line_style(WHITE.mix(0.0));
            if text {
                mesh.x_desc("simulated nodes")
                    .y_desc(unit)
                    .x_label_formatter(&fmt_x)
                    .y_label_formatter(&fmt_y);
            } else {
                mesh.x_labels(0).y_labels(0);
            }
            mesh.draw().map_err(|e| anyhow!("{e}"))?;
            for (i, line) in lines.iter().enumerate() {
                let color = colors[i];
                let series = chart
                    .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(3)))
                    .map_err(|e| anyhow!("{e}"))?;
                if text {
                    series.label(names[i]).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                    });
                }
                chart
                    .draw_series(line.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(|e| anyhow!("{e}"))?;
            }
            if text {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| anyhow!("{e}"))?;
            }
        }};
    }
    if log {
        draw_lines!(builder
            .build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale())
            .map_err(|e| anyhow!("{e}"))?);
    } else {
        draw_lines!(builder
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(|e| anyhow!("{e}"))?);
    }
    Ok(())
}

fn fmt_x(x: &f64) -> String {
    format!("{x:.0}")
}

fn fmt_y(y: &f64) -> String {
    if *y >= 10.0 {
        format!("{y:.0}")
    } else {
        format!("{y:.2}")
    }
}
