//! Files: saves and uploads land in the ML-Dash layout with the right
//! metadata; temp files are cleaned up; user files are never touched; the
//! newest save of a path wins; bad input is a typed error.

use std::path::Path;

use ml_dash::{Error, Image, read};
use serde_json::Value as Json;

mod local;
use local::{open, sha256_hex};

fn entries(root: &Path, prefix: &str) -> Vec<Json> {
    read::document(root, prefix, "files/.files_metadata.json")
        .unwrap()
        .map(|d| d["files"].as_array().unwrap().clone())
        .unwrap_or_default()
}

#[test]
fn saves_land_in_the_layout_with_metadata() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/files");
    let json_id = run
        .files("configs")
        .description("cfg")
        .tags(["a", "b"])
        .save_json("config.json", serde_json::json!({"lr": 0.001}))
        .unwrap()
        .id;
    run.files("").save_text("notes.txt", "hello").unwrap();
    let blob = vec![7u8; 1024];
    run.files("deep/dir").save_blob("b.bin", &blob).unwrap();
    let px = vec![200u8; 4 * 3 * 3];
    run.files("images")
        .save_image(
            "i.png",
            Image::Rgb8 {
                width: 4,
                height: 3,
                data: &px,
            },
        )
        .unwrap();
    run.flush().unwrap();
    let files = entries(root.path(), "o/p/files");
    assert_eq!(files.len(), 4);
    let by_name = |n: &str| files.iter().find(|f| f["filename"] == n).unwrap().clone();
    let c = by_name("config.json");
    assert_eq!(c["id"], json_id.as_str());
    assert_eq!(c["path"], "/configs");
    assert_eq!(c["experimentId"], "p/o/p/files");
    assert_eq!(c["contentType"], "application/json");
    assert_eq!(c["description"], "cfg");
    assert_eq!(c["tags"], serde_json::json!(["a", "b"]));
    let on_disk = std::fs::read(
        root.path()
            .join(format!("o/p/files/files/configs/{json_id}/config.json")),
    )
    .unwrap();
    assert_eq!(c["sizeBytes"], on_disk.len());
    assert_eq!(c["checksum"], sha256_hex(&on_disk).as_str());
    assert_eq!(by_name("notes.txt")["path"], "/");
    assert_eq!(by_name("b.bin")["path"], "/deep/dir");
    assert_eq!(by_name("b.bin")["checksum"], sha256_hex(&blob).as_str());
    assert_eq!(by_name("i.png")["contentType"], "image/png");
    let pending = root.path().join("o/p/files/files/.pending");
    assert!(
        std::fs::read_dir(&pending).map_or(true, |mut d| d.next().is_none()),
        "temp files removed"
    );
    run.complete().unwrap();
}

#[test]
fn close_stores_queued_files_and_counts_them() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/close");
    for i in 0..20 {
        run.files("many")
            .save_text(&format!("{i}.txt"), &i.to_string())
            .unwrap();
    }
    let report = run.complete().unwrap();
    assert_eq!(report.stored.files, 20);
    assert_eq!(entries(root.path(), "o/p/close").len(), 20);
}

#[test]
fn the_newest_save_of_a_path_wins() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/race");
    std::thread::scope(|s| {
        for t in 0..4 {
            let files = run.files("x");
            s.spawn(move || {
                for i in 0..25 {
                    files.save_text("same.txt", &format!("{t}-{i}")).unwrap();
                }
            });
        }
    });
    let last = run.files("x").save_text("same.txt", "final").unwrap().id;
    run.complete().unwrap();
    let files = entries(root.path(), "o/p/race");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["id"], last.as_str());
    let dir = root.path().join("o/p/race/files/x");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "replaced contents removed"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(&last).join("same.txt")).unwrap(),
        "final"
    );
}

#[test]
fn upload_copies_and_never_touches_the_users_file() {
    let root = tempfile::tempdir().unwrap();
    let user = tempfile::tempdir().unwrap();
    let src = user.path().join("weights.bin");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&src, &bytes).unwrap();
    let before = std::fs::metadata(&src).unwrap().modified().unwrap();
    let run = open(root.path(), "o/p/upload");
    let id = run.files("uploads").upload(&src).unwrap().id;
    run.complete().unwrap();
    assert_eq!(
        std::fs::read(&src).unwrap(),
        bytes,
        "the user's file is unchanged"
    );
    assert_eq!(std::fs::metadata(&src).unwrap().modified().unwrap(), before);
    let stored = root
        .path()
        .join(format!("o/p/upload/files/uploads/{id}/weights.bin"));
    assert_eq!(std::fs::read(stored).unwrap(), bytes);
    let e = &entries(root.path(), "o/p/upload")[0];
    assert_eq!(e["checksum"], sha256_hex(&bytes).as_str());
}

#[test]
fn bad_file_input_is_typed_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/bad");
    run.files("ok").save_text("a.txt", "a").unwrap();
    let f = run.files("x");
    assert!(matches!(
        f.upload(root.path().join("missing.bin")),
        Err(Error::InvalidFile { .. })
    ));
    assert!(matches!(
        f.upload(root.path()),
        Err(Error::InvalidFile { .. })
    ));
    assert!(matches!(
        f.save_text("../escape.txt", "x"),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        f.save_text("/abs.txt", "x"),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        run.files("..").save_text("a", "x"),
        Err(Error::InvalidName { .. })
    ));
    let px = [0u8; 5];
    assert!(matches!(
        f.save_image(
            "i.png",
            Image::Rgb8 {
                width: 2,
                height: 2,
                data: &px
            }
        ),
        Err(Error::InvalidValue(_))
    ));
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let odd = root
            .path()
            .join(std::ffi::OsStr::from_bytes(b"bad\xff.bin"));
        std::fs::write(&odd, b"x").unwrap();
        assert!(matches!(f.upload(&odd), Err(Error::InvalidFile { .. })));
    }
    run.files("ok").save_text("b.txt", "b").unwrap();
    let report = run.complete().unwrap();
    assert_eq!(report.stored.files, 2);
    assert_eq!(entries(root.path(), "o/p/bad").len(), 2);
}
