// TEMPORARY development driver; deleted before delivery.
use hermetic::kernel::*;
use std::path::PathBuf;

#[test]
fn scratch() {
    let tools = PathBuf::from(
        "/tmp/kstore/v1/steps/efd04f68498116d3d2c8b8db0916f8f50c996969d8ef91743de98c0c93a21a77/tree",
    );
    let src = PathBuf::from(
        "/tmp/kstore/v1/blobs/sha256/b75bb2e78a5c7762254e2af7685085c788a67eb342cb4092ad2a05eaf9fc33b7",
    );
    let cfg = PathBuf::from(
        "/tmp/kstore/v1/blobs/sha256/d8154165c97b5e1b249d4a4893d2ac6422cbc3001849b78ebd4fbd2de98272c3",
    );
    let which = std::env::var("SCRATCH").unwrap_or_default();
    let root = PathBuf::from(std::env::var("SCRATCH_WORK").unwrap_or("/tmp/kwork-a".into()));
    let (base, fragments, patches) = if which == "seed" {
        let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernel");
        let (f, p, _) = build::project_inputs(&d).unwrap();
        (
            BaseConfig::Debian {
                config_deb: cfg,
                file: build::DEBIAN_CLOUD_CONFIG.into(),
            },
            f,
            p,
        )
    } else {
        (
            BaseConfig::MakeTarget("tinyconfig".into()),
            vec![
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernel/test-configs/10-qemu-boot"),
            ],
            vec![
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("kernel/test-patches/0001-test-banner.patch"),
            ],
        )
    };
    let accepted = if which == "seed" {
        AcceptedDrops::default()
    } else {
        AcceptedDrops::default()
    };
    let last = std::cell::Cell::new(std::time::Instant::now());
    let progress = |p: &Progress| {
        if last.get().elapsed().as_secs() >= 5 {
            last.set(std::time::Instant::now());
            eprintln!(
                "[{:?}] {} {} lines: {}",
                p.elapsed, p.step, p.lines, p.phase
            );
        }
    };
    let req = KernelBuild {
        tools,
        source_deb: src,
        base,
        fragments,
        accepted,
        patches,
        source_date_epoch: 1700000000,
        work_dir: root.clone(),
        log: root.with_extension("log"),
        jobs: Some(2),
        progress: &progress,
    };
    match build_kernel(&req) {
        Ok(o) => eprintln!("OK {:?}", o),
        Err(e) => panic!(
            "{}",
            hermetic::error::render_error_chain(&anyhow::Error::new(e))
        ),
    }
}
