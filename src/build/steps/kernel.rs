//! The `kernel` step: the kernel built from Debian's source in its tools tree
//! (see [`crate::kernel`]), its bzImage, vmlinux, `.config`, release and drop report kept.

use std::path::Path;

use super::StepCx;
use crate::build::BuildError;
use crate::build::exec::{FILES, TREE, human, keep_log};
use std::time::{Duration, Instant};

pub(in crate::build) fn run(
    cx: &StepCx<'_>,
    k: &crate::build::plan::KernelStep,
) -> Result<(), BuildError> {
    let StepCx {
        store,
        node,
        temp,
        opts,
        log,
        ..
    } = *cx;
    let dep = |role: &str| cx.dep(role);
    let crate::build::plan::KernelStep {
        source,
        config,
        spec,
    } = k;
    let debs: Vec<&crate::build::plan::DebPin> = std::iter::once(source).chain(config).collect();
    for d in &debs {
        let blob = store.blob_path(&d.sha256);
        if !blob.is_file() {
            return Err(BuildError::MissingPins {
                count: debs
                    .iter()
                    .filter(|d| !store.blob_path(&d.sha256).is_file())
                    .count(),
                store: store.root().to_path_buf(),
                example: format!("{}_{} ({})", d.name, d.version, blob.display()),
            });
        }
        store.verified_blob(
            &d.sha256,
            Some(d.size),
            &format!("package {}_{}", d.name, d.version),
        )?;
    }
    let files = temp.join(FILES);
    fs_err::create_dir(&files).map_err(BuildError::io(&files))?;
    let work = temp.join("work");
    // Resolved here rather than by `nproc` in the sandbox, so the line below says it.
    let jobs = opts
        .jobs
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, std::num::NonZeroUsize::get);
    opts.report.line(format_args!(
        "           {}: make -j{jobs} (--jobs to change)",
        node.name
    ));
    let reporter = KernelProgress::new(&node.name, &opts.report);
    let report = |p: &crate::kernel::Progress| reporter.report(p);
    let req = crate::kernel::KernelBuild {
        spec,
        tools: dep("tools").join(TREE),
        source_deb: store.blob_path(&source.sha256),
        config_deb: config.as_ref().map(|c| store.blob_path(&c.sha256)),
        work_dir: work.clone(),
        log: log.to_path_buf(),
        jobs: Some(jobs),
        progress: &report,
    };
    let built = crate::kernel::build_kernel(&req);
    drop(reporter);
    let built = built.map_err(|e| kernel_error(e, log))?;
    for (path, name) in [
        (&built.bzimage, crate::build::bootable::KERNEL_BZIMAGE),
        (&built.vmlinux, crate::build::bootable::KERNEL_VMLINUX),
        (&built.config, crate::build::bootable::KERNEL_CONFIG),
    ] {
        let dst = files.join(name);
        fs_err::rename(path, &dst).map_err(BuildError::io(&dst))?;
    }
    let release = files.join(crate::build::bootable::KERNEL_RELEASE);
    fs_err::write(&release, format!("{}\n", built.release)).map_err(BuildError::io(&release))?;
    let mut drops = String::new();
    for d in &built.drops.drops {
        let reason = spec
            .accepted
            .options
            .get(&d.request.name)
            .map(String::as_str)
            .unwrap_or("");
        drops.push_str(&format!("{}\n  accepted: {reason}\n", d));
    }
    let drops_path = files.join(crate::build::bootable::KERNEL_DROPS);
    fs_err::write(&drops_path, drops).map_err(BuildError::io(&drops_path))?;
    // The build tree is gigabytes and not an output.
    fs_err::remove_dir_all(&work).map_err(BuildError::io(&work))?;
    Ok(())
}

/// Progress of the kernel step: on a terminal a spinner with the elapsed time, the current
/// part of the build and the latest kbuild line; otherwise plain lines, one a minute.
struct KernelProgress {
    name: String,
    spinner: crate::report::Progress,
    report: crate::report::Reporter,
    last: std::cell::Cell<Instant>,
}

impl KernelProgress {
    fn new(name: &str, report: &crate::report::Reporter) -> KernelProgress {
        KernelProgress {
            name: name.to_string(),
            spinner: report.spinner(),
            report: report.clone(),
            last: std::cell::Cell::new(Instant::now()),
        }
    }

    fn report(&self, p: &crate::kernel::Progress) {
        let what = if p.phase.is_empty() {
            format!("{}: {} lines", p.step, p.lines)
        } else {
            format!("{}: {} ({} lines)", p.step, p.phase, p.lines)
        };
        if self.spinner.is_drawn() {
            self.spinner.set_message(what);
        } else if self.report.plain_lines() && self.last.get().elapsed() >= Duration::from_secs(60)
        {
            self.last.set(Instant::now());
            self.report.line(format_args!(
                "           {} {}: {what}",
                self.name,
                human(p.elapsed.as_secs_f64())
            ));
        }
    }
}

/// A kernel error whose log is in the step's temporary directory points at a kept copy.
fn kernel_error(e: crate::kernel::KernelError, log: &Path) -> BuildError {
    use crate::kernel::KernelError as K;
    match e {
        K::StepFailed {
            step,
            status,
            tail,
            log: _,
        } => K::StepFailed {
            step,
            status,
            tail,
            log: keep_log(log),
        },
        K::PatchFailed {
            patch,
            problems,
            log: _,
        } => K::PatchFailed {
            patch,
            problems,
            log: keep_log(log),
        },
        K::MissingOutput { path, log: _ } => K::MissingOutput {
            path,
            log: keep_log(log),
        },
        other => other,
    }
    .into()
}
