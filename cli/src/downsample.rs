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
    let mut m4 = M4::new(x_range, columns);
    for i in (0..n).filter(valid) {
        m4.push(i, xs[i], ys[i]);
    }
    m4.finish().into_iter().map(|(i, _, _)| i).collect()
}

/// A point as [`M4`] holds it: `(key, x, y)`.
pub type Point = (usize, f64, f64);

/// [`min_max`] as a stream: points go in one at a time (in x order) and
/// only the current pixel column's four candidates are held, so a server
/// can downsample a stream of any length in `O(columns)` memory. Each point
/// carries a key (its index) and its x and y.
#[derive(Debug, Clone)]
pub struct M4 {
    x0: f64,
    span: f64,
    cols: usize,
    /// The current column: first, min, max, last.
    cur: Option<(usize, [Point; 4])>,
    out: Vec<Point>,
}

impl M4 {
    /// Columns spanning `x_range`.
    pub fn new(x_range: (f64, f64), columns: usize) -> M4 {
        let cols = columns.max(1);
        M4 {
            x0: x_range.0,
            span: x_range.1 - x_range.0,
            cols,
            cur: None,
            out: Vec::with_capacity(4 * cols + 2),
        }
    }

    /// The pixel column of `x` (clamped to the first and last).
    pub fn column(&self, x: f64) -> usize {
        self.col_of(x)
    }

    fn col_of(&self, x: f64) -> usize {
        if self.span.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return 0;
        }
        (((x - self.x0) / self.span * self.cols as f64)
            .floor()
            .max(0.0) as usize)
            .min(self.cols - 1)
    }

    /// The next point (NaN x or y: a gap, left out).
    pub fn push(&mut self, key: usize, x: f64, y: f64) {
        if x.is_nan() || y.is_nan() {
            return;
        }
        let c = self.col_of(x);
        let p = (key, x, y);
        match &mut self.cur {
            Some((col, k)) if *col == c => {
                if y < k[1].2 {
                    k[1] = p;
                }
                if y > k[2].2 {
                    k[2] = p;
                }
                k[3] = p;
            }
            _ => {
                self.flush();
                self.cur = Some((c, [p; 4]));
            }
        }
    }

    fn flush(&mut self) {
        if let Some((_, mut k)) = self.cur.take() {
            k.sort_unstable_by_key(|p| p.0);
            for p in k {
                if self.out.last().map(|q| q.0) != Some(p.0) {
                    self.out.push(p);
                }
            }
        }
    }

    /// The points kept, in input order: `(key, x, y)`.
    pub fn finish(mut self) -> Vec<Point> {
        self.flush();
        self.out
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
    fn gaps() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        let ys = [1.0, f64::NAN, 3.0, 5.0];
        assert_eq!(min_max(&xs, &ys, (0.0, 3.0), 10), [0, 2, 3]);
    }
}
