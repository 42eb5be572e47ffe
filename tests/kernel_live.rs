//! Live test of the kernel step's bad inputs, through `hermetic build`: the real Debian archive
//! through the host's apt mirror, the kernel tools tree assembled from pinned debs, Debian's
//! `linux-source-6.12`, the real sandbox. The small test kernel of a `uki` image is built with
//! one bad input at a time; each must fail with a message that names the culprit, publish no
//! kernel step, and leave the next build to run it again.
//!
//! - a fragment line that is not a Kconfig assignment: its file and line, before any work;
//! - a patch that does not apply: the patch and the hunk;
//! - a fragment naming an option this kernel does not have: the option, file and line, with a
//!   hint (the drop report after `make olddefconfig`);
//! - a patch that applies but breaks the compilation: the tail of the log with the compiler's
//!   error, and where the whole log is kept.
//!
//! A good build of the same kernel (twice, bit-identical, booted) is in tests/build_live.rs.
//! It locks afresh into a temporary project, as the mirror drops superseded versions.

mod project;

use std::path::Path;
use std::process::Command;

use project::{Kernel, SMALL_KERNEL_DIR, run};

fn hermetic(p: &Path, store: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermetic"));
    cmd.arg("-C").arg(p).arg("--store").arg(store);
    cmd
}

/// Runs a build that must fail; returns its standard error.
fn build_fails(p: &Path, store: &Path) -> String {
    build_fails_with(p, &mut hermetic(p, store))
}

/// As [`build_fails`], with a command prepared by the caller (e.g. its environment).
fn build_fails_with(p: &Path, cmd: &mut Command) -> String {
    let out = cmd
        .args(["build", "kt", "--output"])
        .arg(p.join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the build must fail:\n{stderr}");
    assert!(
        !p.join("out/kt.efi").exists(),
        "no output after a failed build"
    );
    stderr
}

/// The kernel step is not in the store: `hermetic plan` would run it.
fn kernel_would_run(p: &Path, store: &Path) {
    let out = run(hermetic(p, store).args(["plan", "kt"]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("would run") && l.contains("base/kernel ")),
        "{text}"
    );
}

#[test]
fn bad_kernel_inputs_fail_naming_the_culprit_and_publish_nothing() {
    let project = project::project(&["base"], Kernel::Small);
    let p = project.path();
    fs_err::write(
        p.join("recipes/kt.toml"),
        "description = \"the small kernel in a UKI\"\nparent = \"base\"\nformat = \"uki\"\n",
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let store = store.path();
    run(hermetic(p, store).args(["lock", "--allow-mirror-state"]));
    run(hermetic(p, store).arg("fetch"));
    let kdir = p.join(SMALL_KERNEL_DIR);

    // A line that is not an assignment: named before anything is unpacked.
    let broken = kdir.join("configs/50-broken");
    fs_err::write(
        &broken,
        "# a comment\nCONFIG_PRINTK=y\nCONFIG_PRINTK is on\n",
    )
    .unwrap();
    let text = build_fails(p, store);
    assert!(
        text.contains(&format!(
            "{}:3: not a Kconfig assignment: `CONFIG_PRINTK is on`",
            broken.display()
        )),
        "{text}"
    );
    assert!(text.contains("hint: "), "{text}");
    kernel_would_run(p, store);
    fs_err::remove_file(&broken).unwrap();

    // A patch that does not apply: the patch and its hunk.
    let good = fs_err::read_to_string(kdir.join("patches/0001-test-banner.patch")).unwrap();
    let bad_patch = kdir.join("patches/0002-bad.patch");
    let bad = good.replace(" \t\"%s version %s\"\n", " \t\"%s VERSION %s\"\n");
    assert_ne!(good, bad, "the test patch has the line this test breaks");
    // Applied after 0001, the same hunk finds its context changed.
    fs_err::write(&bad_patch, bad).unwrap();
    let text = build_fails(p, store);
    assert!(
        text.contains(&format!("patch {} does not apply", bad_patch.display())),
        "{text}"
    );
    assert!(text.contains("init/version.c: hunk #1 FAILED"), "{text}");
    assert!(text.contains("the full log: "), "{text}");
    kernel_would_run(p, store);
    fs_err::remove_file(&bad_patch).unwrap();

    // An option this kernel does not have: the drop report names it, file and line.
    let bogus = kdir.join("configs/90-bogus");
    fs_err::write(
        &bogus,
        "# not a real option\nCONFIG_HERMETIC_NO_SUCH_OPTION=y\nCONFIG_PRINTK=y\n",
    )
    .unwrap();
    let text = build_fails(p, store);
    assert!(
        text.contains(&format!(
            "CONFIG_HERMETIC_NO_SUCH_OPTION dropped: requested y, final absent ({}:2)",
            bogus.display()
        )),
        "{text}"
    );
    assert!(text.contains("1 requested kernel option(s)"), "{text}");
    assert!(text.contains("[accepted-drops]"), "{text}");
    kernel_would_run(p, store);
    fs_err::remove_file(&bogus).unwrap();

    // A patch that applies but does not compile: kernel/bounds.c is among the first files
    // `make bzImage` compiles. The compiler's message is in the tail, the log is kept.
    fs_err::write(
        kdir.join("patches/0002-compile-error.patch"),
        "--- a/kernel/bounds.c\n+++ b/kernel/bounds.c\n@@ -6,6 +6,7 @@\n  */\n \n \
         #define __GENERATING_BOUNDS_H\n+#error \"hermetic-test: a compiler error\"\n \
         /* Include headers that define the enum constants of interest */\n \
         #include <linux/page-flags.h>\n #include <linux/mmzone.h>\n",
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let text = build_fails_with(p, hermetic(p, store).env("TMPDIR", tmp.path()));
    assert!(text.contains("kernel step `bzImage` failed"), "{text}");
    assert!(
        text.contains("kernel/bounds.c:9:2: error: #error \"hermetic-test: a compiler error\""),
        "{text}"
    );
    let log = text
        .lines()
        .find_map(|l| l.strip_prefix("the full log: "))
        .unwrap_or_else(|| panic!("no log named:\n{text}"));
    assert!(
        Path::new(log).starts_with(tmp.path().join("hermetic-logs")),
        "{log}"
    );
    let kept = fs_err::read_to_string(log).unwrap();
    assert!(
        kept.contains("==> drop report"),
        "the whole log, not the tail"
    );
    assert!(kept.contains("hermetic-test: a compiler error"), "{kept}");
    kernel_would_run(p, store);
}
