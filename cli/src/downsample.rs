//! Deterministic downsampling for charts that never hide a point's extreme:
//! per pixel column, the first, the lowest, the highest and the last point
//! (M4). A line through what is kept draws the same pixels as a line
//! through every point, the global first and last points are always kept,
//! and the same input always gives the same output (no sampling at
//! random, as TensorBoard's reservoir does). Shared by the terminal and PNG
//! charts, and meant for a dashboard server too.

/// The points of `xs` / `ys` (sorted by x) to draw in `columns` pixel
/// columns spanning `x_range`, as indices into them, ascending. Points
/// whose y is NaN are gaps and are left out; when there are at most
/// `4 × columns` points, all are kept.
///
/// ```
/// use ml_dash_cli::downsample::min_max;
/// let xs: Vec<f64> = (0..1000).map(f64::from).collect();
/// let mut ys = vec![0.0; 1000];
/// ys[500] = 9.0; // one spike
/// let keep = min_max(&xs, &ys, (0.0, 999.0), 10);
/// assert!(keep.len() <= 40);
/// assert!(keep.contains(&0) && keep.contains(&999) && keep.contains(&500));
/// ```
pub fn min_max(xs: &[f64], ys: &[f64], x_range: (f64, f64), columns: usize) -> Vec<usize> {
    let n = xs.len().min(ys.len());
    let valid = |i: &usize| !ys[*i].is_nan() && !xs[*i].is_nan();
    if n <= 4 * columns.max(1) {
        return (0..n).filter(valid).collect();
    }
    let (x0, x1) = x_range;
    let span = x1 - x0;
    let cols = columns.max(1);
    let col_of = |x: f64| -> usize {
        if span.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return 0;
        }
        (((x - x0) / span * cols as f64).floor().max(0.0) as usize).min(cols - 1)
    };
    let mut out = Vec::with_capacity(4 * cols + 2);
    // The current column: its first, min, max and last point.
    let mut cur: Option<(usize, [usize; 4])> = None;
    let flush = |c: [usize; 4], out: &mut Vec<usize>| {
        let mut v = c;
        v.sort_unstable();
        for i in v {
            if out.last() != Some(&i) {
                out.push(i);
            }
        }
    };
    for i in 0..n {
        if !valid(&i) {
            continue;
        }
        let c = col_of(xs[i]);
        match &mut cur {
            Some((col, k)) if *col == c => {
                if ys[i] < ys[k[1]] {
                    k[1] = i;
                }
                if ys[i] > ys[k[2]] {
                    k[2] = i;
                }
                k[3] = i;
            }
            _ => {
                if let Some((_, k)) = cur.take() {
                    flush(k, &mut out);
                }
                cur = Some((c, [i; 4]));
            }
        }
    }
    if let Some((_, k)) = cur {
        flush(k, &mut out);
    }
    out
}

/// A trailing moving average over `window` points (NaN points are gaps:
/// left as they are and not counted).
pub fn smooth(ys: &mut [f64], window: usize) {
    if window <= 1 {
        return;
    }
    let mut ring = std::collections::VecDeque::with_capacity(window);
    let mut sum = 0.0;
    for y in ys.iter_mut() {
        if y.is_nan() {
            continue;
        }
        ring.push_back(*y);
        sum += *y;
        if ring.len() > window {
            sum -= ring.pop_front().unwrap_or(0.0);
        }
        *y = sum / ring.len() as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_extremes_first_last_and_is_deterministic() {
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let mut rng = 12345u64;
        let ys: Vec<f64> = (0..n)
            .map(|_| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (rng >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        let keep = min_max(&xs, &ys, (0.0, (n - 1) as f64), 100);
        assert_eq!(keep, min_max(&xs, &ys, (0.0, (n - 1) as f64), 100));
        assert!(keep.len() <= 400 && keep.len() >= 200);
        assert_eq!((keep[0], *keep.last().unwrap()), (0, n - 1));
        assert!(keep.windows(2).all(|w| w[0] < w[1]));
        // Each column's min and max are kept.
        for c in 0..100 {
            let (a, b) = (c * 1000, (c + 1) * 1000);
            let lo = (a..b).min_by(|&i, &j| ys[i].total_cmp(&ys[j])).unwrap();
            let hi = (a..b).max_by(|&i, &j| ys[i].total_cmp(&ys[j])).unwrap();
            assert!(keep.contains(&lo) && keep.contains(&hi), "column {c}");
        }
    }

    #[test]
    fn gaps_and_smoothing() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        let ys = [1.0, f64::NAN, 3.0, 5.0];
        assert_eq!(min_max(&xs, &ys, (0.0, 3.0), 10), [0, 2, 3]);
        let mut s = [1.0, 3.0, f64::NAN, 5.0, 7.0];
        smooth(&mut s, 2);
        assert_eq!(s[..2], [1.0, 2.0]);
        assert!(s[2].is_nan());
        assert_eq!(s[3..], [4.0, 6.0]);
    }
}
