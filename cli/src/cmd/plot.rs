//! `ml-dash plot`: a metric stream of one or more runs as a Braille chart in
//! the terminal or a PNG (plotters, bitmap backend, the bundled DejaVu Sans
//! Mono through ab_glyph: no system font library). Points are read with
//! `ml_dash::read::scan_metric`, a large file split over the cores, and
//! downsampled per pixel column ([`crate::downsample::min_max`]).

use std::io::{IsTerminal, Write};
use std::ops::Range;
use std::path::Path;

use ml_dash::read::{self, RunInfo};

use crate::args::{PlotArgs, XAxis};
use crate::chart::{self, Series};
use crate::downsample;
use crate::out::number;
use crate::{Fail, Result};

/// The bundled font (Bitstream Vera licence: `cli/assets/DejaVuSansMono.LICENSE`).
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSansMono.ttf");

/// A file larger than this is read by several threads.
const SPLIT_BYTES: u64 = 8 << 20;

/// One run's points: x and one y column per field, sorted by x.
struct Points {
    xs: Vec<f64>,
    ys: Vec<Vec<f64>>,
}

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

    let mut labels = Vec::new();
    let mut all = Vec::new();
    for r in &runs {
        let stream = read::metric_stream(&r.dir, Some(a.metric.as_str()));
        let mut p = load(&stream.data(), x_key, &fields)?;
        for (f, ys) in fields.iter().zip(&mut p.ys) {
            if let Some(n) = a.smooth {
                downsample::smooth(ys, n);
            }
            if a.log_y {
                ys.iter_mut()
                    .for_each(|y| *y = if *y > 0.0 { y.log10() } else { f64::NAN });
            }
            labels.push(match (runs.len(), fields.len()) {
                (1, _) => f.clone(),
                (_, 1) => r.prefix.clone(),
                _ => format!("{} {f}", r.prefix),
            });
        }
        all.push(p);
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in &all {
        if let (Some(&a), Some(&b)) = (p.xs.first(), p.xs.last()) {
            x0 = x0.min(a);
            x1 = x1.max(b);
        }
    }
    // One x range for all runs: the pixel columns line up.
    let mut drawn = Vec::new();
    let mut labels = labels.into_iter();
    for p in &all {
        for ys in &p.ys {
            let keep = downsample::min_max(&p.xs, ys, (x0, x1), columns.max(1));
            drawn.push(Series {
                label: labels.next().unwrap_or_default(),
                xs: keep.iter().map(|&i| p.xs[i]).collect(),
                ys: keep.iter().map(|&i| ys[i]).collect(),
            });
        }
    }
    let total: usize = all.iter().map(|p| p.xs.len()).sum();
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

/// The points of one stream: x (`x_key`, else the index; for `_ts`,
/// seconds since the first point) and the fields, sorted by x.
fn load(path: &Path, x_key: Option<&str>, fields: &[String]) -> Result<Points> {
    let mut keys: Vec<&str> = fields.iter().map(String::as_str).collect();
    if let Some(k) = x_key {
        keys.push(k);
    }
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let threads = if len > SPLIT_BYTES {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
    } else {
        1
    };
    let ranges: Vec<Range<u64>> = (0..threads as u64)
        .map(|i| len * i / threads as u64..len * (i + 1) / threads as u64)
        .map(|r| if r.end == len { r.start..u64::MAX } else { r })
        .collect();
    let parts: Vec<Result<Points>> = std::thread::scope(|s| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|r| {
                let keys = &keys;
                let r = r.clone();
                s.spawn(move || scan_range(path, r, keys, fields.len(), x_key.is_some()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Fail::Problem("a reader thread panicked".into())))
            })
            .collect()
    });
    let mut p = Points {
        xs: Vec::new(),
        ys: vec![Vec::new(); fields.len()],
    };
    for part in parts {
        let part = part?;
        p.xs.extend_from_slice(&part.xs);
        for (a, b) in p.ys.iter_mut().zip(&part.ys) {
            a.extend_from_slice(b);
        }
    }
    if x_key == Some("_ts")
        && let Some(t0) = p.xs.iter().copied().find(|x| x.is_finite())
    {
        p.xs.iter_mut().for_each(|x| *x -= t0);
    }
    if p.xs.windows(2).any(|w| w[1] < w[0]) {
        let mut order: Vec<usize> = (0..p.xs.len()).collect();
        order.sort_by(|&i, &j| p.xs[i].total_cmp(&p.xs[j]));
        p.xs = order.iter().map(|&i| p.xs[i]).collect();
        for ys in &mut p.ys {
            *ys = order.iter().map(|&i| ys[i]).collect();
        }
    }
    Ok(p)
}

fn scan_range(path: &Path, r: Range<u64>, keys: &[&str], n: usize, has_x: bool) -> Result<Points> {
    let mut reader = read::LineReader::range(path, r)?;
    let mut p = Points {
        xs: Vec::new(),
        ys: vec![Vec::new(); n],
    };
    read::scan_metric(&mut reader, keys, |index, v| {
        let x = if has_x && !v[n].is_nan() {
            v[n]
        } else {
            index as f64
        };
        p.xs.push(x);
        for (col, y) in p.ys.iter_mut().zip(v) {
            col.push(*y);
        }
    })?;
    Ok(p)
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
