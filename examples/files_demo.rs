//! Saves one JSON, one text, one 1 KiB blob and one 64x48 RGB image, uploads a
//! file when asked, prints the config's metadata (one JSON line), lists the
//! stored files, closes, and prints `files=<n> seconds=<s>`.
//!
//! ```text
//! cargo run --release --example files_demo -- --dash-root DIR --prefix OWNER/PROJ/NAME [--upload PATH]
//!     [--dash-url URL] [--token TOKEN]
//! ```

use std::time::Instant;

use ml_dash::{Experiment, Image};

fn usage() -> ! {
    eprintln!(
        "usage: files_demo [--dash-root DIR] [--dash-url URL [--token TOKEN]] --prefix OWNER/PROJ/NAME [--upload PATH]"
    );
    std::process::exit(2)
}

fn main() -> ml_dash::Result<()> {
    let (mut root, mut url, mut token) = (None::<String>, None::<String>, None::<String>);
    let (mut prefix, mut upload) = (String::new(), None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let v = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--dash-root" => root = Some(v),
            "--dash-url" => url = Some(v),
            "--token" => token = Some(v),
            "--prefix" => prefix = v,
            "--upload" => upload = Some(v),
            _ => usage(),
        }
    }
    if prefix.is_empty() {
        usage()
    }
    let start = Instant::now();
    let mut exp = Experiment::new(&prefix);
    if let Some(r) = &root {
        exp = exp.dash_root(r);
    }
    if let Some(u) = &url {
        exp = exp.dash_url(u); // hybrid with --dash-root, remote only without it
        if root.is_none() {
            exp = exp.remote_only();
        }
    }
    if let Some(t) = &token {
        exp = exp.token(t);
    }
    let run = exp.run()?;
    // A save returns the stored file's metadata, the SDK's dict.
    let cfg = run.files("configs").save_json(
        "config.json",
        serde_json::json!({"lr": 0.001, "layers": [64, 64]}),
    )?;
    println!(
        "{}",
        serde_json::to_string(&cfg).expect("a FileInfo serializes")
    );
    run.files("notes")
        .save_text("readme.txt", "A run saved by the files_demo example.\n")?;
    let blob: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
    run.files("blobs").save_blob("b.bin", &blob)?;
    let (w, h) = (64u32, 48u32);
    let pixels: Vec<u8> = (0..w * h)
        .flat_map(|i| [(i % w * 4) as u8, (i / w * 5) as u8, 128])
        .collect();
    run.files("images").save_image(
        "sample.png",
        Image::Rgb8 {
            width: w,
            height: h,
            data: &pixels,
        },
    )?;
    if let Some(path) = upload {
        run.files("uploads").upload(&path)?;
    }
    let n = run.files("").list()?.len(); // waits for the queued files
    run.complete()?;
    println!("files={n} seconds={:.3}", start.elapsed().as_secs_f64());
    Ok(())
}
