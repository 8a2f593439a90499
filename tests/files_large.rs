//! `upload` streams: a 512 MiB (sparse) file goes through a process that stays
//! well under 100 MiB resident. Its own test binary, so the peak resident size
//! read from /proc is this test's alone.

#[cfg(target_os = "linux")]
#[test]
fn uploading_512_mib_keeps_the_process_small() {
    let root = tempfile::tempdir().unwrap();
    let user = tempfile::tempdir().unwrap();
    let src = user.path().join("big.bin");
    let f = std::fs::File::create(&src).unwrap();
    f.set_len(512 << 20).unwrap(); // sparse: reads as zeros, takes no disk
    drop(f);
    let mut cfg = ml_dash::BufferConfig::default();
    cfg.quiet = true;
    let run = ml_dash::Experiment::new("o/p/big")
        .dash_root(root.path())
        .buffer_config(cfg)
        .run()
        .unwrap();
    let id = run.files("uploads").upload(&src).unwrap().id;
    run.complete().unwrap();
    let stored = root
        .path()
        .join(format!("o/p/big/files/uploads/{id}/big.bin"));
    assert_eq!(std::fs::metadata(&stored).unwrap().len(), 512 << 20);
    assert_eq!(
        std::fs::metadata(&src).unwrap().len(),
        512 << 20,
        "the user's file is untouched"
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(hwm_kib < 100 * 1024, "peak resident size {hwm_kib} KiB");
}
