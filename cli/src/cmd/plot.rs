//! `ml-dash plot`: a metric stream of one or more runs as a Braille chart in
//! the terminal or a PNG (plotters, bitmap backend, the bundled DejaVu Sans
//! Mono through ab_glyph: no system font library). Points are read and
//! downsampled per pixel column by [`crate::series`], the code `ml-dash
//! serve` uses.

use std::io::{IsTerminal, Write};
use std::path::Path;

use ml_dash::read::{self, RunInfo};

use crate::args::{PlotArgs, XAxis};
use crate::chart::{self, Series};
use crate::out::number;
use crate::series::{Query, Stream, X};
use crate::{Fail, Result};

/// The bundled font (Bitstream Vera licence: `cli/assets/DejaVuSansMono.LICENSE`).
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSansMono.ttf");

pub(crate) fn run(root: &Path, a: &PlotArgs) -> Result {
    let runs = super::matching_runs(root, &a.prefixes)?;
    let x_key = match a.x {
        XAxis::Step => Some("step"),
        XAxis::Index => None,
        XAxis::Time => Some("_ts"),
    };
    let fields = match a.fields.is_empty() {
        false => a.fields.clone(),
        true => default_fields(&runs, &a.metric, x_key)?,
    };
    if fields.is_empty() {
        return Err(Fail::Usage(format!(
            "no numeric field to plot in metric stream {:?} of {} (name one with --field)",
            a.metric,
            runs.iter()
                .map(|r| r.prefix.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let png = a.png.is_some();
    let width = a.width.map(|w| w as usize).unwrap_or_else(|| match png {
        true => 1000,
        false => terminal_width().saturating_sub(14).clamp(20, 200),
    });
    let height = a.height.map_or(if png { 600 } else { 20 }, |h| h as usize);
    // Pixel columns of the plot area.
    let columns = if png {
        width.saturating_sub(90)
    } else {
        2 * width
    };

    let x = match a.x {
        XAxis::Step => X::Step,
        XAxis::Index => X::Index,
        XAxis::Time => X::Time,
    };
    let streams = runs
        .iter()
        .map(|r| {
            Stream::open(
                &read::metric_stream(&r.dir, Some(a.metric.as_str())).data(),
                x,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    // One x range for all runs: the pixel columns line up.
    let range = streams
        .iter()
        .filter_map(Stream::bounds)
        .reduce(|p, q| (p.0.min(q.0), p.1.max(q.1)));
    let mut drawn = Vec::new();
    let mut total = 0;
    for (r, s) in runs.iter().zip(&streams) {
        let got = s.series(&Query {
            x,
            fields: &fields,
            columns: columns.max(1),
            range,
            smooth: a.smooth.unwrap_or(1),
            log_y: a.log_y,
        })?;
        for (f, kept) in fields.iter().zip(got.fields) {
            total += kept.len();
            drawn.push(Series {
                label: match (runs.len(), fields.len()) {
                    (1, _) => f.clone(),
                    (_, 1) => r.prefix.clone(),
                    _ => format!("{} {f}", r.prefix),
                },
                xs: kept.iter().map(|p| p.1).collect(),
                ys: kept.iter().map(|p| p.2).collect(),
            });
        }
    }
    if total == 0 {
        return Err(Fail::Usage(format!(
            "metric stream {:?} has no points in {}",
            a.metric,
            runs.iter()
                .map(|r| r.prefix.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let title = format!(
        "{}  ({} vs {})",
        a.metric,
        fields.join(", "),
        match a.x {
            XAxis::Step => "step",
            XAxis::Index => "index",
            XAxis::Time => "seconds",
        }
    );
    match &a.png {
        Some(path) => png_chart(path, &drawn, &title, width as u32, height as u32, a.log_y),
        None => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let log = a.log_y;
            let label = move |v: f64| {
                if log {
                    number(10f64.powf(v))
                } else {
                    number(v)
                }
            };
            let text = chart::braille(&drawn, width, height, color, &label);
            let mut w = std::io::stdout().lock();
            writeln!(w, "{title}")?;
            w.write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

fn terminal_width() -> usize {
    console::Term::stdout()
        .size_checked()
        .map(|(_, w)| w as usize)
        .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
        .unwrap_or(80)
}

/// Every numeric field of the stream's first points (in the runs given),
/// but the x one and `_ts`.
fn default_fields(runs: &[RunInfo], metric: &str, x_key: Option<&str>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for r in runs {
        let s = read::metric_stream(&r.dir, Some(metric));
        for line in read::Lines::open(s.data())?.take(100) {
            let Ok(line) = line else { continue };
            let Some(data) = line.value.get("data").and_then(|d| d.as_object()) else {
                continue;
            };
            for (k, v) in data {
                if k != "_ts" && Some(k.as_str()) != x_key && v.is_number() && !out.contains(k) {
                    out.push(k.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Colours of the series in a PNG, in turn.
pub(crate) const PALETTE: [(u8, u8, u8); 6] = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (23, 190, 207),
];

fn png_chart(path: &Path, series: &[Series], title: &str, w: u32, h: u32, log_y: bool) -> Result {
    use plotters::prelude::*;
    let (w, h) = (w.max(200), h.max(150));
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| Fail::Problem("the bundled font does not load".into()))?;
    let Some(((x0, x1), (y0, y1))) = chart::ranges(series) else {
        return Err(Fail::Usage("no finite points to plot".into()));
    };
    let mut buf = vec![0u8; (w * h * 3) as usize];
    let mut draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let fmt_y = |v: &f64| {
            if log_y {
                number(10f64.powf(*v))
            } else {
                number(*v)
            }
        };
        chart
            .configure_mesh()
            .x_label_formatter(&|v| number(*v))
            .y_label_formatter(&fmt_y)
            .label_style(("sans-serif", 12))
            .draw()?;
        for (i, s) in series.iter().enumerate() {
            let (r, g, b) = PALETTE[i % PALETTE.len()];
            let c = RGBColor(r, g, b);
            chart
                .draw_series(LineSeries::new(
                    s.xs.iter().copied().zip(s.ys.iter().copied()),
                    c.stroke_width(2),
                ))?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| Fail::Problem(format!("cannot draw the chart: {e}")))?;
    let file = std::fs::File::create(path)
        .map_err(|e| Fail::Problem(format!("cannot create {}: {e}", path.display())))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc
        .write_header()
        .map_err(|e| Fail::Problem(format!("cannot write {}: {e}", path.display())))?;
    wr.write_image_data(&buf)
        .and_then(|()| wr.finish())
        .map_err(|e| Fail::Problem(format!("cannot write {}: {e}", path.display())))?;
    eprintln!("wrote {} ({w}x{h})", path.display());
    Ok(())
}
