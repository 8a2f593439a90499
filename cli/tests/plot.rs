//! `ml-dash plot` as a process: the terminal chart against a golden file,
//! the PNG decoded (size, plotted pixels inside the plot area, one colour
//! per run), globs overlaid, and the usage errors.

mod common;

use common::*;

fn store() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join(".dash");
    write_train_run(&root, "alice/mnist/run-1", 1.0);
    write_train_run(&root, "alice/mnist/run-2", 2.0);
    t
}

#[test]
fn terminal_chart_matches_its_golden_file() {
    let t = store();
    let root = t.path().join(".dash");
    let one = ok_out(
        &root,
        &[
            "plot",
            "alice/mnist/run-1",
            "--metric",
            "train",
            "--width",
            "40",
            "--height",
            "8",
        ],
        0,
    );
    golden("plot_one.txt", &one);
    // A glob: both runs overlaid, one legend line each; log y; smoothing.
    let two = ok_out(
        &root,
        &[
            "plot",
            "alice/mnist/*",
            "--metric",
            "train",
            "--field",
            "loss",
            "--log-y",
            "--smooth",
            "3",
            "--width",
            "40",
            "--height",
            "8",
        ],
        0,
    );
    golden("plot_glob_log.txt", &two);
    assert!(two.contains("alice/mnist/run-1") && two.contains("alice/mnist/run-2"));
}

#[test]
fn png_has_the_size_the_axes_and_one_colour_per_run() {
    let t = store();
    let root = t.path().join(".dash");
    let png = t.path().join("out.png");
    ok_out(
        &root,
        &[
            "plot",
            "alice/mnist/run-1",
            "alice/mnist/run-2",
            "--metric",
            "train",
            "--field",
            "loss",
            "--png",
            png.to_str().unwrap(),
            "--width",
            "640",
            "--height",
            "400",
        ],
        0,
    );
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (640, 400));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let px = |x: u32, y: u32| {
        let i = ((y * 640 + x) * 3) as usize;
        (buf[i], buf[i + 1], buf[i + 2])
    };
    // The palette's first two colours: run-1 and run-2.
    let colours = [(31, 119, 180), (214, 39, 40)];
    for (k, c) in colours.iter().enumerate() {
        let hits: Vec<(u32, u32)> = (0..400)
            .flat_map(|y| (0..640).map(move |x| (x, y)))
            .filter(|&(x, y)| px(x, y) == *c)
            .collect();
        assert!(
            hits.len() > 200,
            "run {k}: {} pixels of its colour",
            hits.len()
        );
        // Inside the plot area: right of the y labels, above the x labels,
        // below the title.
        for &(x, y) in &hits {
            assert!(
                (80..630).contains(&x) && (30..370).contains(&y),
                "run {k} at ({x},{y})"
            );
        }
        // The curve spans the area: from the left edge to the right one.
        let (lo, hi) = (
            hits.iter().map(|h| h.0).min().unwrap(),
            hits.iter().map(|h| h.0).max().unwrap(),
        );
        assert!(lo < 100 && hi > 550, "run {k} spans x {lo}..{hi}");
    }
    // The second run's loss is twice the first's: its line starts higher.
    let top = |c| {
        (0..400)
            .find(|&y| (80..100).any(|x| px(x, y) == c))
            .unwrap()
    };
    assert!(top(colours[1]) < top(colours[0]));
}

#[test]
fn usage_errors() {
    let t = store();
    let root = t.path().join(".dash");
    let o = ml_dash(&root, &["plot", "no/such/*", "--metric", "train"]);
    assert_eq!(o.status.code(), Some(2));
    let o = ml_dash(&root, &["plot", "alice/mnist/run-1", "--metric", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    let o = ml_dash(&root, &["plot", "alice/mnist/run-1"]);
    assert_eq!(o.status.code(), Some(2), "--metric is required");
}
