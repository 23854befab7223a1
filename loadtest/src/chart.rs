//! The sweep charts: push p99 latency and hub/Pushgateway RSS versus node count, both systems;
//! and for a Fleetgate-only sweep, how the hub's memory, CPU and scrape times grow with the
//! fleet.

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
    let [p99_f, p99_p] = p99;
    let [rss_f, rss_p] = rss;
    panel(
        &left,
        "push p99 latency (ms, log scale)",
        "ms",
        &[("fleetgate", p99_f.clone()), ("pushgateway", p99_p.clone())],
        true,
        text,
    )?;
    panel(
        &right,
        "peak RSS (MB)",
        "MB",
        &[("fleetgate", rss_f), ("pushgateway", rss_p)],
        false,
        text,
    )?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Writes a 1800×500 PNG of a Fleetgate sweep: hub peak RSS (MB) and RSS per series held;
/// hub CPU (% of one core); scrape times (unsharded plain, and with `--scrape-shards` the
/// slowest shard and the whole gzip round).
pub fn draw_scale(path: &Path, sweep: &[Comparison]) -> Result<()> {
    let text = register_font();
    let runs: Vec<&crate::report::Figures> =
        sweep.iter().filter_map(|c| c.fleetgate.as_ref()).collect();
    let line = |f: &dyn Fn(&crate::report::Figures) -> Option<f64>| -> Line {
        runs.iter()
            .filter_map(|x| Some((x.nodes as f64, f(x)?)))
            .collect()
    };
    let root = BitMapBackend::new(path, (1800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let areas = root.split_evenly((1, 3));
    panel(
        &areas[0],
        "hub memory",
        "MB / bytes per series",
        &[
            ("peak RSS, MB", line(&|x| Some(x.rss_bytes? as f64 / 1e6))),
            ("RSS bytes per series", line(&|x| x.rss_bytes_per_series)),
        ],
        false,
        text,
    )?;
    panel(
        &areas[1],
        "hub CPU (% of one core)",
        "%",
        &[
            ("hub", line(&|x| x.cpu_percent)),
            ("rig", line(&|x| Some(x.rig_cpu_percent))),
        ],
        false,
        text,
    )?;
    panel(
        &areas[2],
        "scrape time (s)",
        "s",
        &[
            ("unsharded, plain", line(&|x| Some(x.scrape_seconds))),
            (
                "slowest shard, plain",
                line(&|x| {
                    x.shard_scrapes
                        .as_ref()
                        .filter(|s| s.rounds > 0)
                        .map(|s| s.shard_seconds)
                }),
            ),
            (
                "all shards, gzip",
                line(&|x| {
                    x.shard_scrapes
                        .as_ref()
                        .filter(|s| s.gzip_round_bytes > 0)
                        .map(|s| s.gzip_round_seconds)
                }),
            ),
        ],
        false,
        text,
    )?;
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    lines: &[(&str, Line)],
    log: bool,
    text: bool,
) -> Result<()> {
    let lines: Vec<&(&str, Line)> = lines.iter().filter(|(_, l)| !l.is_empty()).collect();
    let all = lines.iter().flat_map(|(_, l)| l);
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
    let colors = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
    ];
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
            for (i, (name, line)) in lines.iter().enumerate() {
                let color = colors[i % colors.len()];
                let series = chart
                    .draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(3)))
                    .map_err(|e| anyhow!("{e}"))?;
                if text {
                    series.label(*name).legend(move |(x, y)| {
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
