//! Line charts in the terminal, drawn with Braille characters (2 × 4 dots
//! per character), one colour per series and a legend. Deterministic: the
//! same series give the same text (the golden tests compare it).

use crate::out::number;

/// One line of a chart: points sorted by x (already downsampled).
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's text.
    pub label: String,
    /// x values.
    pub xs: Vec<f64>,
    /// y values (as drawn: already log10 for a log axis).
    pub ys: Vec<f64>,
}

/// ANSI colours of the series, in turn.
const ANSI: [u8; 6] = [34, 31, 32, 33, 35, 36];

/// The ranges a chart spans, from its series (a flat range is widened).
pub fn ranges(series: &[Series]) -> Option<((f64, f64), (f64, f64))> {
    let mut x = (f64::INFINITY, f64::NEG_INFINITY);
    let mut y = x;
    for s in series {
        for (&a, &b) in s.xs.iter().zip(&s.ys) {
            if a.is_finite() && b.is_finite() {
                x = (x.0.min(a), x.1.max(a));
                y = (y.0.min(b), y.1.max(b));
            }
        }
    }
    if !x.0.is_finite() {
        return None;
    }
    let widen = |r: (f64, f64)| {
        if r.1 > r.0 {
            r
        } else {
            let d = if r.0 == 0.0 { 1.0 } else { r.0.abs() * 0.1 };
            (r.0 - d, r.1 + d)
        }
    };
    Some((widen(x), widen(y)))
}

/// Draws `series` in a plot area of `width` × `height` characters (axes
/// and labels around it). `y_label` formats a y value for the axis (for a
/// log axis: `10^v`); `color` adds ANSI colours.
pub fn braille(
    series: &[Series],
    width: usize,
    height: usize,
    color: bool,
    y_label: &dyn Fn(f64) -> String,
) -> String {
    let (w, h) = (width.max(4), height.max(2));
    let Some(((x0, x1), (y0, y1))) = ranges(series) else {
        return "(no points to plot)\n".into();
    };
    let (pw, ph) = (2 * w, 4 * h);
    // Per cell: the dots set and the series that set the last of them.
    let mut dots = vec![0u8; w * h];
    let mut owner = vec![usize::MAX; w * h];
    let to_px = |x: f64, y: f64| -> (i64, i64) {
        let px = ((x - x0) / (x1 - x0) * (pw - 1) as f64).round() as i64;
        let py = ((y1 - y) / (y1 - y0) * (ph - 1) as f64).round() as i64;
        (px, py)
    };
    for (si, s) in series.iter().enumerate() {
        let mut prev: Option<(i64, i64)> = None;
        for (&x, &y) in s.xs.iter().zip(&s.ys) {
            if !x.is_finite() || !y.is_finite() {
                prev = None;
                continue;
            }
            let p = to_px(x, y);
            let from = prev.unwrap_or(p);
            line(from, p, |px, py| {
                if px < 0 || py < 0 || px >= pw as i64 || py >= ph as i64 {
                    return;
                }
                let (cx, cy) = (px as usize / 2, py as usize / 4);
                let (dx, dy) = (px as usize % 2, py as usize % 4);
                let bit = match (dx, dy) {
                    (0, 3) => 0x40,
                    (1, 3) => 0x80,
                    (0, d) => 1 << d,
                    (_, d) => 8 << d,
                };
                dots[cy * w + cx] |= bit;
                owner[cy * w + cx] = si;
            });
            prev = Some(p);
        }
    }
    let labels: Vec<String> = (0..h)
        .map(|row| match row {
            0 => y_label(y1),
            r if r == h - 1 => y_label(y0),
            r if r == h / 2 => y_label(y1 - (y1 - y0) * (r as f64 * 4.0 + 1.5) / (ph - 1) as f64),
            _ => String::new(),
        })
        .collect();
    let lw = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (row, label) in labels.iter().enumerate() {
        let tick = if label.is_empty() { '│' } else { '┤' };
        out.push_str(&format!("{label:>lw$} {tick}"));
        let mut last_color = None;
        for col in 0..w {
            let i = row * w + col;
            let ch = char::from_u32(0x2800 + u32::from(dots[i])).unwrap_or(' ');
            let c = (color && dots[i] != 0).then(|| ANSI[owner[i] % ANSI.len()]);
            if c != last_color {
                match c {
                    Some(c) => out.push_str(&format!("\x1b[{c}m")),
                    None => out.push_str("\x1b[0m"),
                }
                last_color = c;
            }
            out.push(if dots[i] == 0 { ' ' } else { ch });
        }
        if last_color.is_some() {
            out.push_str("\x1b[0m");
        }
        let trimmed = out.trim_end_matches(' ').len();
        out.truncate(trimmed);
        out.push('\n');
    }
    out.push_str(&format!("{:>lw$} └{}\n", "", "─".repeat(w)));
    let (left, right) = (number(x0), number(x1));
    let gap = (w + 1)
        .saturating_sub(left.chars().count() + right.chars().count())
        .max(1);
    out.push_str(&format!("{:>lw$}  {left}{}{right}\n", "", " ".repeat(gap)));
    for (si, s) in series.iter().enumerate() {
        let mark = if color {
            format!("\x1b[{}m⣿⣿\x1b[0m", ANSI[si % ANSI.len()])
        } else {
            ["⣿⣿", "⠶⠶", "⠒⠒", "⠤⠤", "⠉⠉", "⣀⣀"][si % 6].to_string()
        };
        out.push_str(&format!("{:>lw$}  {mark} {}\n", "", s.label));
    }
    out
}

/// The pixels of a line from `a` to `b` (Bresenham), both ends included.
fn line(a: (i64, i64), b: (i64, i64), mut put: impl FnMut(i64, i64)) {
    let (mut x, mut y) = a;
    let (dx, dy) = ((b.0 - x).abs(), -(b.1 - y).abs());
    let (sx, sy) = (if x < b.0 { 1 } else { -1 }, if y < b.1 { 1 } else { -1 });
    let mut err = dx + dy;
    loop {
        put(x, y);
        if (x, y) == b {
            return;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}
