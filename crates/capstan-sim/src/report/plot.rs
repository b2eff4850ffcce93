//! The run plot: demand, tasks (and hosts, for EC2 cluster runs) and the policy metric
//! for every run, in panels stacked on one time axis (hours), drawn identically to PNG
//! and SVG.
//!
//! PNG text is rendered with DejaVu Sans, embedded in the binary (licence next to the
//! font in `assets/`), so no system font library is needed.

use std::error::Error;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::ReportError;
use super::series::{RunSeries, SeriesPoint, Stat};

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (1400, 1200);
const LEGEND_WIDTH: u32 = 280;

/// One colour per run, in order (repeating after ten runs).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

type DrawResult = Result<(), Box<dyn Error>>;

/// Draws `runs` (name, series) into `png` and `svg` (same picture, parent directories
/// created): (1) the demand, with its min–max band when points merge several steps;
/// (2) per run, desired and running tasks, and the tasks needed as a dashed line (every
/// run replays the same trace, so demand and needed are drawn once, from the series
/// with the finest resolution); for EC2 cluster runs, (3) the hosts billed per run;
/// then per run, the main policy's metric and, dashed, its target. Legends sit to the
/// right of each panel.
pub fn plot(
    title: &str,
    runs: &[(&str, &RunSeries)],
    png: &Path,
    svg: &Path,
) -> Result<(), ReportError> {
    if runs.is_empty() {
        return Err(ReportError::Plot {
            path: png.to_path_buf(),
            reason: "no run to plot".to_owned(),
        });
    }
    register_embedded_font().map_err(|reason| ReportError::Plot {
        path: png.to_path_buf(),
        reason,
    })?;
    for path in [png, svg] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| ReportError::io("creating directory", dir, e))?;
        }
    }
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |e: Box<dyn Error>| ReportError::Plot {
            path,
            reason: e.to_string(),
        }
    };
    draw(
        BitMapBackend::new(png, SIZE).into_drawing_area(),
        title,
        runs,
    )
    .map_err(fail(png))?;
    draw(SVGBackend::new(svg, SIZE).into_drawing_area(), title, runs).map_err(fail(svg))
}

fn register_embedded_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font(FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| "the embedded DejaVu Sans font does not parse".to_owned())
        })
        .clone()
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    runs: &[(&str, &RunSeries)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let body = root.margin(8, 0, 0, 0).titled(title, (FAMILY, 28))?;
    let with_hosts = runs
        .iter()
        .any(|(_, s)| s.points().iter().any(|p| p.hosts.is_some()));
    let panels = body.split_evenly((if with_hosts { 4 } else { 3 }, 1));
    let x_max = runs
        .iter()
        .map(|(_, s)| s.end_s() / 3600.0)
        .fold(0.0, f64::max);
    let x_max = if x_max > 0.0 { x_max } else { 1.0 };
    demand_panel(&panels[0], runs, x_max)?;
    tasks_panel(&panels[1], runs, x_max)?;
    if with_hosts {
        hosts_panel(&panels[2], runs, x_max)?;
    }
    metric_panel(&panels[panels.len() - 1], runs, x_max)?;
    root.present()?;
    Ok(())
}

/// How a legend entry's sample looks.
#[derive(Clone, Copy)]
enum Sample {
    Line(RGBAColor, u32),
    Dashed(RGBAColor, u32),
    Band(RGBAColor),
}

/// A panel's chart area and its legend area.
fn split_panel<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
) -> (DrawingArea<DB, Shift>, DrawingArea<DB, Shift>) {
    let width = panel.dim_in_pixel().0;
    panel.split_horizontally(width.saturating_sub(LEGEND_WIDTH))
}

fn demand_panel<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    runs: &[(&str, &RunSeries)],
    x_max: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (area, legend_area) = split_panel(panel);
    let points = finest(runs).points();
    let y_max = padded(points.iter().map(|p| p.demand.max));
    let mut chart = chart(&area, x_max, 0.0..y_max, "demand (arrivals/s)", false)?;
    let colour = RGBColor(60, 60, 60);
    let mut legend = vec![("demand".to_owned(), Sample::Line(colour.to_rgba(), 2))];
    if points.iter().any(|p| p.demand.steps > 1) {
        let band = colour.mix(0.18);
        let upper = points.iter().map(|p| (p.mid_hours(), p.demand.max));
        let lower = points.iter().rev().map(|p| (p.mid_hours(), p.demand.min));
        chart.draw_series(std::iter::once(Polygon::new(
            upper.chain(lower).collect::<Vec<_>>(),
            band.filled(),
        )))?;
        legend.push(("demand min-max".to_owned(), Sample::Band(band)));
    }
    chart.draw_series(LineSeries::new(
        points.iter().map(|p| (p.mid_hours(), p.demand.mean)),
        colour.stroke_width(2),
    ))?;
    draw_legend(&legend_area, &legend)
}

fn tasks_panel<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    runs: &[(&str, &RunSeries)],
    x_max: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (area, legend_area) = split_panel(panel);
    let needed = finest(runs).points();
    let y_max = padded(
        runs.iter()
            .flat_map(|(_, s)| s.points())
            .flat_map(|p| [p.desired.max, p.running.max])
            .chain(needed.iter().map(|p| p.needed.max)),
    );
    let mut chart = chart(&area, x_max, 0.0..y_max, "tasks", false)?;
    let mut legend = Vec::new();
    for (i, (name, series)) in runs.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let desired = colour.mix(0.35);
        chart.draw_series(LineSeries::new(
            series
                .points()
                .iter()
                .map(|p| (p.mid_hours(), p.desired.mean)),
            desired.stroke_width(5),
        ))?;
        chart.draw_series(LineSeries::new(
            series
                .points()
                .iter()
                .map(|p| (p.mid_hours(), p.running.mean)),
            colour.stroke_width(2),
        ))?;
        legend.push((format!("{name} desired"), Sample::Line(desired, 5)));
        legend.push((format!("{name} running"), Sample::Line(colour.to_rgba(), 2)));
    }
    let black = BLACK.to_rgba();
    chart.draw_series(DashedLineSeries::new(
        needed.iter().map(|p| (p.mid_hours(), p.needed.mean)),
        8,
        5,
        black.stroke_width(2),
    ))?;
    legend.push(("needed".to_owned(), Sample::Dashed(black, 2)));
    draw_legend(&legend_area, &legend)
}

fn hosts_panel<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    runs: &[(&str, &RunSeries)],
    x_max: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (area, legend_area) = split_panel(panel);
    let y_max = padded(
        runs.iter()
            .flat_map(|(_, s)| s.points())
            .filter_map(|p| p.hosts.map(|h| h.max)),
    );
    let mut chart = chart(&area, x_max, 0.0..y_max, "hosts", false)?;
    let mut legend = Vec::new();
    for (i, (name, series)) in runs.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()].to_rgba();
        for segment in segments(series.points(), |p| p.hosts) {
            chart.draw_series(LineSeries::new(segment, colour.stroke_width(2)))?;
        }
        legend.push((format!("{name} hosts"), Sample::Line(colour, 2)));
    }
    draw_legend(&legend_area, &legend)
}

fn metric_panel<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    runs: &[(&str, &RunSeries)],
    x_max: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (area, legend_area) = split_panel(panel);
    let values: Vec<f64> = runs
        .iter()
        .flat_map(|(_, s)| s.points())
        .flat_map(|p| [p.metric, p.metric_target])
        .flatten()
        .map(|s| s.mean)
        .collect();
    let y_min = values.iter().copied().fold(0.0, f64::min);
    let y_max = padded(values.iter().copied());
    let mut chart = chart(&area, x_max, y_min..y_max, "metric vs target", true)?;
    let mut legend = Vec::new();
    for (i, (name, series)) in runs.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()].to_rgba();
        for segment in segments(series.points(), |p| p.metric) {
            chart.draw_series(LineSeries::new(segment, colour.stroke_width(2)))?;
        }
        for segment in segments(series.points(), |p| p.metric_target) {
            chart.draw_series(DashedLineSeries::new(segment, 8, 5, colour.stroke_width(2)))?;
        }
        legend.push((format!("{name} metric"), Sample::Line(colour, 2)));
        legend.push((format!("{name} target"), Sample::Dashed(colour, 2)));
    }
    draw_legend(&legend_area, &legend)
}

/// The run with the most points: every run replays the same trace, so demand and the
/// tasks it needs are drawn once, from the series that merged the fewest steps.
fn finest<'a>(runs: &[(&str, &'a RunSeries)]) -> &'a RunSeries {
    runs.iter()
        .map(|(_, s)| *s)
        .min_by_key(|s| s.stride())
        .unwrap_or_else(|| runs[0].1)
}

/// A chart with axes, the time axis in hours.
fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    x_max: f64,
    y: std::ops::Range<f64>,
    y_desc: &str,
    time_label: bool,
) -> Result<
    ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    Box<dyn Error>,
>
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(if time_label { 48 } else { 30 })
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, y)?;
    let mut mesh = chart.configure_mesh();
    mesh.y_desc(y_desc)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235));
    if time_label {
        mesh.x_desc("time (hours)");
    }
    mesh.draw()?;
    Ok(chart)
}

/// The top of an axis showing `values`: 10 % above the largest, at least 1.
fn padded(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
    if max > 0.0 { max * 1.1 } else { 1.0 }
}

/// The stretches of consecutive points where `get` is defined, as (hours, mean) lines.
fn segments(
    points: &[SeriesPoint],
    get: impl Fn(&SeriesPoint) -> Option<Stat>,
) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for p in points {
        match get(p) {
            Some(s) => current.push((p.mid_hours(), s.mean)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Draws a legend: one entry per line, a sample then the label.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, Sample)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    const TOP: i32 = 24;
    const LINE: i32 = 22;
    let font = (FAMILY, 15).into_font().color(&BLACK);
    for (i, (label, sample)) in entries.iter().enumerate() {
        let y = TOP + LINE * i as i32;
        match *sample {
            Sample::Line(c, w) => {
                area.draw(&PathElement::new(vec![(8, y), (40, y)], c.stroke_width(w)))?;
            }
            Sample::Dashed(c, w) => {
                for x in [8, 21, 34] {
                    area.draw(&PathElement::new(
                        vec![(x, y), (x + 7, y)],
                        c.stroke_width(w),
                    ))?;
                }
            }
            Sample::Band(c) => {
                area.draw(&Rectangle::new([(8, y - 6), (40, y + 6)], c.filled()))?;
            }
        }
        area.draw(&Text::new(label.clone(), (48, y - 8), font.clone()))?;
    }
    Ok(())
}
