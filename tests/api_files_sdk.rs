//! The SDK's files API on a local store: saves return the stored entry
//! (`FileInfo`, the SDK's dict), `upload_as` renames, and `list`,
//! `list_matching`, `exists`, `read_text`, `download`, `delete` read and
//! change `.files_metadata.json` as the SDK does, seeing every save made
//! before them without an explicit flush.

use std::path::Path;

use ml_dash::{Error, FileInfo, Image, Run, read};
use serde_json::{Value as Json, json};

mod local;
use local::sha256_hex;

fn open(root: &Path, prefix: &str) -> Run {
    let mut cfg = local::quiet();
    // Nothing is flushed by the clock: what the reads see, they waited for.
    cfg.flush_interval = std::time::Duration::from_secs(3600);
    local::open_with(root, prefix, cfg)
}

/// `.files_metadata.json` as it is on disk, deleted entries included.
fn raw_entries(root: &Path, prefix: &str) -> Vec<Json> {
    read::document(root, prefix, "files/.files_metadata.json")
        .unwrap()
        .map(|d| d["files"].as_array().unwrap().clone())
        .unwrap_or_default()
}

fn names(files: &[FileInfo]) -> Vec<String> {
    let mut v: Vec<String> = files
        .iter()
        .map(|f| format!("{}/{}", f.path.trim_end_matches('/'), f.filename))
        .collect();
    v.sort();
    v
}

#[test]
fn a_save_returns_the_entry_the_store_holds() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "o/p/returned";
    let run = open(root.path(), prefix);
    let cfg = run
        .files("configs")
        .description("cfg")
        .tags(["a", "b"])
        .metadata(json!({"epoch": 3}))
        .unwrap()
        .save_json("config.json", json!({"lr": 0.001}))
        .unwrap();
    let txt = run.files("").save_text("deep/notes.txt", "héllo").unwrap();
    let blob = run.files("b").save_blob("b.bin", &[7u8; 1000]).unwrap();
    let px = [9u8; 2 * 2 * 3];
    let png = run
        .files("i")
        .save_image(
            "i.png",
            Image::Rgb8 {
                width: 2,
                height: 2,
                data: &px,
            },
        )
        .unwrap();
    // Known at the call: where it goes, what it is, its size and sha256.
    assert_eq!(
        (cfg.path.as_str(), cfg.filename.as_str()),
        ("/configs", "config.json")
    );
    assert_eq!(cfg.experiment_id, "p/o/p/returned");
    assert_eq!(cfg.content_type, "application/json");
    assert_eq!(cfg.description.as_deref(), Some("cfg"));
    assert_eq!(cfg.tags, ["a", "b"]);
    assert_eq!(cfg.metadata, Some(json!({"epoch": 3})));
    let cfg_bytes = serde_json::to_vec_pretty(&json!({"lr": 0.001})).unwrap();
    assert_eq!(cfg.size_bytes, cfg_bytes.len() as u64);
    assert_eq!(
        cfg.checksum.as_deref(),
        Some(sha256_hex(&cfg_bytes).as_str())
    );
    assert_eq!((txt.path.as_str(), txt.size_bytes), ("/deep", 6));
    assert_eq!(blob.checksum, Some(sha256_hex(&[7u8; 1000])));
    assert_eq!(cfg.deleted_at, None);

    // After the move into place, the store holds exactly what was returned,
    // and its JSON keys are the returned value's keys.
    let listed = run.files("").list().unwrap();
    for info in [&cfg, &txt, &blob, &png] {
        assert!(listed.contains(info), "{info:?} not in {listed:?}");
    }
    assert_eq!(listed.len(), 4);
    let raw = raw_entries(root.path(), prefix);
    let raw_cfg = raw.iter().find(|e| e["id"] == cfg.id.as_str()).unwrap();
    assert_eq!(*raw_cfg, serde_json::to_value(&cfg).unwrap());
    let keys: Vec<&str> = raw_cfg
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "experimentId",
            "path",
            "filename",
            "description",
            "tags",
            "bindrs",
            "contentType",
            "sizeBytes",
            "checksum",
            "metadata",
            "uploadedAt",
            "updatedAt",
            "deletedAt"
        ]
    );
    let stored = std::fs::read(run.dir().join(format!("files/i/{}/i.png", png.id))).unwrap();
    assert_eq!(png.checksum, Some(sha256_hex(&stored)));
    run.complete().unwrap();
}

#[test]
fn upload_as_renames_and_carries_the_options() {
    let root = tempfile::tempdir().unwrap();
    let user = tempfile::tempdir().unwrap();
    let src = user.path().join("model.pt");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&src, &bytes).unwrap();
    let run = open(root.path(), "o/p/upload-as");
    let up = run
        .files("checkpoints")
        .description("best at epoch 10")
        .tags(["best"])
        .metadata(json!({"epoch": 10}))
        .unwrap()
        .upload_as(&src, "epoch_10.pt")
        .unwrap();
    assert_eq!(
        (up.path.as_str(), up.filename.as_str()),
        ("/checkpoints", "epoch_10.pt")
    );
    assert_eq!(up.size_bytes, bytes.len() as u64);
    assert_eq!(up.checksum, None, "the worker hashes the user's file");
    let nested = run.files("").upload_as(&src, "models/latest.pt").unwrap();
    assert_eq!(
        (nested.path.as_str(), nested.filename.as_str()),
        ("/models", "latest.pt")
    );

    let stored = run.files("checkpoints").list().unwrap();
    let mut expected = up.clone();
    expected.checksum = Some(sha256_hex(&bytes));
    assert_eq!(stored, [expected]);
    assert_eq!(
        std::fs::read(
            run.dir()
                .join(format!("files/checkpoints/{}/epoch_10.pt", up.id))
        )
        .unwrap(),
        bytes
    );
    assert!(run.files("models").exists("latest.pt").unwrap());
    assert!(!run.files("checkpoints").exists("model.pt").unwrap());
    assert_eq!(
        std::fs::read(&src).unwrap(),
        bytes,
        "the user's file is unchanged"
    );
    assert!(matches!(
        run.files("x").upload_as(&src, "../escape.pt"),
        Err(Error::InvalidName { .. })
    ));
    run.complete().unwrap();
}

#[test]
fn reads_see_every_save_made_before_them() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/read-your-writes");
    let files = run.files("cfg");
    // No flush in between: each read waits for the files queued before it.
    files.save_text("view.yaml", "a: 1\n").unwrap();
    assert!(files.exists("view.yaml").unwrap());
    assert_eq!(files.read_text("view.yaml").unwrap(), "a: 1\n");
    files.save_text("view.yaml", "a: 2\n").unwrap();
    assert_eq!(
        files.read_text("view.yaml").unwrap(),
        "a: 2\n",
        "the newest save"
    );
    let other = run.files("cfg");
    std::thread::spawn(move || other.save_text("t.txt", "from a thread").unwrap())
        .join()
        .unwrap();
    assert_eq!(files.list().unwrap().len(), 2);
    assert_eq!(files.read_text("t.txt").unwrap(), "from a thread");

    assert!(!files.exists("missing.txt").unwrap());
    assert!(
        !run.files("").exists("view.yaml").unwrap(),
        "names are exact paths"
    );
    assert!(matches!(
        files.read_text("missing.txt"),
        Err(Error::FileNotFound(n)) if n == "cfg/missing.txt"
    ));
    run.files("")
        .save_blob("bin.dat", &[0xff, 0xfe, 0x00])
        .unwrap();
    assert!(matches!(
        run.files("").read_text("bin.dat"),
        Err(Error::InvalidValue(_))
    ));
    assert!(matches!(
        run.files("..").list(),
        Err(Error::InvalidName { .. })
    ));
    // After close the store is final: reads still work.
    run.complete().unwrap();
    assert_eq!(files.read_text("t.txt").unwrap(), "from a thread");
    assert!(matches!(files.delete("t.txt"), Err(Error::Closed)));
}

#[test]
fn list_matching_globs_as_the_sdk() {
    let root = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/glob");
    for (dir, name) in [
        ("images", "a.png"),
        ("images", "b.jpg"),
        ("images/sub", "c.png"),
        ("images2", "d.png"),
        ("", "root.png"),
    ] {
        run.files(dir).save_text(name, name).unwrap();
    }
    run.files("images")
        .tags(["t"])
        .save_text("tagged.png", "t")
        .unwrap();
    let images = run.files("images");
    // A folder lists its subfolders too, not its namesakes (`images2`).
    assert_eq!(
        names(&images.list().unwrap()),
        [
            "/images/a.png",
            "/images/b.jpg",
            "/images/sub/c.png",
            "/images/tagged.png"
        ]
    );
    // fnmatch on the name or on the path from the files root.
    assert_eq!(
        names(&images.list_matching("*.png").unwrap()),
        ["/images/a.png", "/images/sub/c.png", "/images/tagged.png"]
    );
    assert_eq!(
        names(&images.list_matching("images/sub/*").unwrap()),
        ["/images/sub/c.png"]
    );
    assert!(
        images.list_matching("sub/*").unwrap().is_empty(),
        "as the SDK: not relative"
    );
    assert_eq!(
        names(&images.list_matching("[ab].*").unwrap()),
        ["/images/a.png", "/images/b.jpg"]
    );
    // `**/` needs a `/` (fnmatch has no recursive wildcard): root.png is left out.
    assert_eq!(
        names(&run.files("").list_matching("**/*.png").unwrap()),
        [
            "/images/a.png",
            "/images/sub/c.png",
            "/images/tagged.png",
            "/images2/d.png"
        ]
    );
    // As in the SDK, a handle's tags filter what it lists.
    assert_eq!(
        names(&run.files("").tags(["t", "u"]).list().unwrap()),
        ["/images/tagged.png"]
    );
    run.complete().unwrap();
}

#[test]
fn download_copies_and_checks_the_checksum() {
    let root = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = open(root.path(), "o/p/download");
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i % 239) as u8).collect();
    let info = run.files("w").save_blob("weights.bin", &blob).unwrap();
    run.files("w").save_text("a.png", "A").unwrap();
    run.files("w/sub").save_text("b.png", "B").unwrap();

    let to = out.path().join("local.bin");
    assert_eq!(run.files("w").download("weights.bin", &to).unwrap(), to);
    assert_eq!(std::fs::read(&to).unwrap(), blob);
    // Into an existing folder: under the file's name.
    let into = run.files("w").download("weights.bin", out.path()).unwrap();
    assert_eq!(into, out.path().join("weights.bin"));
    assert_eq!(std::fs::read(&into).unwrap(), blob);

    let pngs = out.path().join("pngs");
    let mut got = run.files("w").download_matching("*.png", &pngs).unwrap();
    got.sort();
    assert_eq!(got, [pngs.join("a.png"), pngs.join("b.png")]);
    assert_eq!(std::fs::read_to_string(pngs.join("b.png")).unwrap(), "B");
    assert!(matches!(
        run.files("w").download_matching("*.gif", &pngs),
        Err(Error::FileNotFound(p)) if p == "w/*.gif"
    ));
    assert!(matches!(
        run.files("w").download("nope.bin", &to),
        Err(Error::FileNotFound(_))
    ));

    // Content that no longer matches its sha256: refused, the copy removed.
    let stored = run.dir().join(format!("files/w/{}/weights.bin", info.id));
    std::fs::write(&stored, b"tampered").unwrap();
    let bad = out.path().join("bad.bin");
    assert!(matches!(
        run.files("w").download("weights.bin", &bad),
        Err(Error::Corrupt { .. })
    ));
    assert!(!bad.exists(), "a copy that does not match is removed");
    assert!(matches!(
        run.files("w").read_text("weights.bin"),
        Err(Error::Corrupt { .. })
    ));
    run.complete().unwrap();
}

#[test]
fn delete_is_the_sdks_soft_delete() {
    let root = tempfile::tempdir().unwrap();
    let prefix = "o/p/delete";
    let run = open(root.path(), prefix);
    let a = run.files("logs").save_text("a.txt", "a").unwrap();
    for n in ["1.log", "2.log", "keep.txt"] {
        run.files("logs").save_text(n, n).unwrap();
    }
    let gone = run.files("logs").delete("a.txt").unwrap();
    assert_eq!(gone.id, a.id);
    let at = gone.deleted_at.clone().expect("deletedAt set");
    assert_eq!(gone.updated_at, at);
    assert!(!run.files("logs").exists("a.txt").unwrap());
    assert!(matches!(
        run.files("logs").delete("a.txt"),
        Err(Error::FileNotFound(n)) if n == "logs/a.txt"
    ));
    // The entry stays, marked; the content stays on disk (as the SDK's).
    let raw = raw_entries(root.path(), prefix);
    let entry = raw.iter().find(|e| e["id"] == a.id.as_str()).unwrap();
    assert_eq!(entry["deletedAt"], at.as_str());
    assert!(
        run.dir()
            .join(format!("files/logs/{}/a.txt", a.id))
            .exists()
    );

    let logs = run.files("logs").delete_matching("*.log").unwrap();
    assert_eq!(names(&logs), ["/logs/1.log", "/logs/2.log"]);
    assert!(logs.iter().all(|f| f.deleted_at.is_some()));
    assert!(matches!(
        run.files("logs").delete_matching("*.log"),
        Err(Error::FileNotFound(_))
    ));
    assert_eq!(names(&run.files("").list().unwrap()), ["/logs/keep.txt"]);

    // Saving a deleted name again makes a new entry beside the deleted one.
    let again = run.files("logs").save_text("a.txt", "again").unwrap();
    assert_eq!(run.files("logs").read_text("a.txt").unwrap(), "again");
    assert_ne!(again.id, a.id);
    let report = run.complete().unwrap();
    assert_eq!(report.stored.files, 5);
    assert_eq!(raw_entries(root.path(), prefix).len(), 5);
}
