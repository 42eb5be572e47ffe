//! Running the graph: each missing step runs in the sandbox and is published into the store;
//! a step whose key is already stored is not run again.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sandbox::{IdMapping, Mount, Network, Output, RootSpec, Step};

use crate::recipe::{OutputFormat, StepTree};
use crate::store::Store;

use super::plan::{Graph, Node, NodeKind, deb_paths};
use super::{BuildError, cleanup, rootfs};

/// How to run a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where final outputs are copied (with `SHA256SUMS`).
    pub output_dir: PathBuf,
    /// Keep the tree of a failed step and say where.
    pub keep_failed: bool,
    /// Run every step again and compare with what the store holds.
    pub rebuild: bool,
    /// Print a line per step.
    pub progress: bool,
    /// The value of `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: u64,
    /// `make -j` of the kernel step; `None`: as many as the sandbox has CPUs. Not part of
    /// any key: the output does not depend on it.
    pub jobs: Option<std::num::NonZeroUsize>,
}

/// What happened to a step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    Cached,
    Built,
    /// `--rebuild`: built again and identical to the stored output.
    Identical,
    /// `--rebuild`: built again and different; the differing paths.
    Differs(Vec<String>),
}

/// One step of a finished build.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub name: String,
    pub key: String,
    pub state: StepState,
    pub seconds: f64,
    pub path: PathBuf,
}

/// The result of [`build`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    pub steps: Vec<StepReport>,
    /// Files copied to the output directory, with their SHA-256.
    pub outputs: Vec<(PathBuf, String)>,
}

/// The subdirectory of a step's store entry holding its tree.
pub const TREE: &str = "tree";
/// The subdirectory of a step's store entry holding its output files.
pub const FILES: &str = "files";
/// The log of a step, in its store entry.
pub const LOG: &str = "log";

/// Runs the graph.
pub fn build(store: &Store, graph: &Graph, opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    // `hermetic cache gc` waits until this build is over, and this build until it is.
    let _in_use = store.use_guard()?;
    let mut steps = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let started = Instant::now();
        let stored = store.step_path(node.key.as_str());
        let state = if store.has_step(node.key.as_str()) && !opts.rebuild {
            StepState::Cached
        } else {
            if opts.progress {
                eprintln!("  running  {}  ({})", node.name, short(node.key.as_str()));
            }
            let _guard = store.lock(&format!("step-{}", node.key.as_str()))?;
            if store.has_step(node.key.as_str()) && !opts.rebuild {
                StepState::Cached
            } else {
                let temp = store.temp_dir()?;
                if let Err(e) = run_node(store, graph, i, temp.path(), opts) {
                    if opts.keep_failed {
                        let kept = temp.keep();
                        return Err(with_kept(e, &kept));
                    }
                    return Err(e);
                }
                if opts.rebuild && store.has_step(node.key.as_str()) {
                    let diffs = compare_outputs(&stored, temp.path())?;
                    if diffs.is_empty() {
                        StepState::Identical
                    } else {
                        // Keep the new output next to the stored one for inspection.
                        let kept = temp.keep();
                        if opts.progress {
                            eprintln!("           the new output is kept at {}", kept.display());
                            run_diffoscope(&stored, &kept, &diffs);
                        }
                        StepState::Differs(diffs)
                    }
                } else {
                    store.publish_step(node.key.as_str(), temp)?;
                    StepState::Built
                }
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        if opts.progress {
            let word = match &state {
                StepState::Cached => "cached",
                StepState::Built => "done",
                StepState::Identical => "same",
                StepState::Differs(_) => "DIFFERS",
            };
            eprintln!("  {word:<7}  {}  {}", node.name, human(seconds));
            if let StepState::Differs(paths) = &state {
                for p in paths.iter().take(50) {
                    eprintln!("           differs: {p}");
                }
            }
        }
        steps.push(StepReport {
            name: node.name.clone(),
            key: node.key.as_str().to_string(),
            state,
            seconds,
            path: stored,
        });
    }
    let outputs = super::outputs::copy_out(store, graph, &opts.output_dir)?;
    Ok(BuildReport { steps, outputs })
}

fn with_kept(err: BuildError, path: &Path) -> BuildError {
    match err {
        BuildError::StepFailed {
            step,
            status,
            tail,
            log,
            ..
        } => BuildError::StepFailed {
            step,
            status,
            tail,
            log,
            kept: format!("\nthe failed tree is kept at {}", path.display()),
        },
        other => other,
    }
}

fn short(key: &str) -> &str {
    &key[..12.min(key.len())]
}

fn human(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        format!(
            "{}m{:02}s",
            (seconds / 60.0) as u64,
            (seconds % 60.0) as u64
        )
    }
}

fn run_node(
    store: &Store,
    graph: &Graph,
    index: usize,
    temp: &Path,
    opts: &BuildOptions,
) -> Result<(), BuildError> {
    let node = &graph.nodes[index];
    let dep = |role: &str| -> PathBuf {
        let i = node.deps[role];
        store.step_path(graph.nodes[i].key.as_str())
    };
    let log = temp.join(LOG);
    match &node.kind {
        NodeKind::Rootfs { debs, .. } => {
            let paths = deb_paths(store, debs);
            let missing: Vec<&PathBuf> = paths.iter().filter(|p| !p.is_file()).collect();
            if let Some(example) = missing.first() {
                return Err(BuildError::MissingPins {
                    count: missing.len(),
                    store: store.root().to_path_buf(),
                    example: example.display().to_string(),
                });
            }
            let tree = temp.join(TREE);
            fs_err::create_dir(&tree).map_err(BuildError::io(&tree))?;
            let infos = rootfs::read_debs(store, debs)?;
            rootfs::bootstrap_tree(store, &tree, &infos)?;
            let blobs = paths[0].parent().unwrap_or(Path::new("/")).to_path_buf();
            let mut step = tree_step(node, &tree, opts, &log);
            step.argv = vec![
                "/bin/sh".into(),
                "-c".into(),
                rootfs::install_script(&infos),
            ];
            step.mounts.push(Mount::ReadOnly {
                src: blobs,
                dst: PathBuf::from(rootfs::DEBS_DIR),
            });
            run_step(node, &step, &log)?;
            remove_mount_points(&tree)?;
            // Every stored tree is a function of its inputs, so that `--rebuild` can check it.
            clean_up(node, &tree, opts, &log)?;
        }
        NodeKind::Image {
            recipe,
            staged,
            architecture,
        } => {
            let tree = temp.join(TREE);
            fs_err::create_dir(&tree).map_err(BuildError::io(&tree))?;
            let files = temp.join(FILES);
            fs_err::create_dir(&files).map_err(BuildError::io(&files))?;
            let rootfs_tree = dep("rootfs").join(TREE);
            // Copy the rootfs with the tree's own cp, inside the sandbox, so that files of
            // every owner are copied as they are, whoever runs hermetic.
            let mut copy = tree_step(node, &rootfs_tree, opts, &log);
            copy.root = RootSpec::ReadOnly(rootfs_tree.clone());
            copy.argv = vec![
                "/bin/cp".into(),
                "-a".into(),
                "--no-target-directory".into(),
                "/.hermetic-src".into(),
                "/.hermetic-dest".into(),
            ];
            copy.mounts = vec![
                Mount::ReadOnly {
                    src: rootfs_tree.clone(),
                    dst: PathBuf::from("/.hermetic-src"),
                },
                Mount::Writable {
                    src: tree.clone(),
                    dst: PathBuf::from("/.hermetic-dest"),
                },
            ];
            run_step(node, &copy, &log)?;
            for (n, overlay) in recipe.overlays.iter().enumerate() {
                let dst = format!("/.hermetic-overlay-{n}");
                let mut lay = tree_step(node, &tree, opts, &log);
                lay.argv = vec![
                    "/bin/cp".into(),
                    "-R".into(),
                    "--preserve=mode,links".into(),
                    "--no-target-directory".into(),
                    "--remove-destination".into(),
                    dst.clone(),
                    "/".into(),
                ];
                lay.mounts.push(Mount::ReadOnly {
                    src: overlay.path.clone(),
                    dst: PathBuf::from(&dst),
                });
                run_step(node, &lay, &log)?;
            }
            super::program::install_into_image(store, graph, node, &tree, opts)?;
            remove_mount_points(&tree)?;
            // Pinned tarballs and source packages, hard-linked from the store (same file
            // system) under their names.
            let tarballs = temp.join("tarballs");
            fs_err::create_dir(&tarballs).map_err(BuildError::io(&tarballs))?;
            for (name, sha) in staged {
                let blob = store.blob_path(sha);
                if !blob.is_file() {
                    return Err(BuildError::MissingPins {
                        count: 1,
                        store: store.root().to_path_buf(),
                        example: format!("{name} ({})", blob.display()),
                    });
                }
                store.verified_blob(sha, None, name)?;
                let dst = tarballs.join(name);
                if let Some(parent) = dst.parent() {
                    fs_err::create_dir_all(parent).map_err(BuildError::io(parent))?;
                }
                if fs_err::hard_link(&blob, &dst).is_err() {
                    fs_err::copy(&blob, &dst).map_err(BuildError::io(&dst))?;
                }
            }
            for s in &recipe.steps {
                let tools = dep("tools").join(TREE);
                let sources = temp.join("src");
                let build = temp.join("build");
                for d in [&sources, &build] {
                    let _ = fs_err::remove_dir_all(d);
                    fs_err::create_dir(d).map_err(BuildError::io(d))?;
                }
                for src in &s.sources {
                    copy_plain(&src.path, &sources.join(&src.relative))?;
                }
                let script = temp.join("script");
                fs_err::write(&script, &s.script).map_err(BuildError::io(&script))?;
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                        .map_err(BuildError::io(&script))?;
                }
                let mut step = tree_step(node, &tools, opts, &log);
                step.root = RootSpec::ReadOnly(tools.clone());
                step.argv = if s.script.starts_with("#!") {
                    vec!["/work/script".into()]
                } else {
                    vec!["/bin/sh".into(), "-eu".into(), "/work/script".into()]
                };
                step.env = recipe.step_environment(s);
                for (k, v) in [
                    ("SRCDIR", "/work/src"),
                    ("BUILDDIR", "/work/build"),
                    ("DESTDIR", "/work/dest"),
                    ("OUTPUTDIR", "/work/out"),
                    ("TARBALLDIR", "/work/tarballs"),
                    ("HOME", "/root"),
                ] {
                    step.env.insert(k.into(), v.into());
                }
                step.env.insert("IMAGE_ID".into(), recipe.image_id.clone());
                step.env.insert(
                    "IMAGE_VERSION".into(),
                    recipe.version.clone().unwrap_or_default(),
                );
                step.env.insert("ARCHITECTURE".into(), architecture.clone());
                step.env
                    .insert("PROFILES".into(), recipe.profiles.join(" "));
                step.cwd = PathBuf::from("/work/build");
                let dest = if s.tree == StepTree::Image {
                    Mount::Writable {
                        src: tree.clone(),
                        dst: PathBuf::from("/work/dest"),
                    }
                } else {
                    Mount::ReadOnly {
                        src: tree.clone(),
                        dst: PathBuf::from("/work/dest"),
                    }
                };
                step.mounts = vec![
                    Mount::Tmpfs {
                        dst: PathBuf::from("/work"),
                    },
                    Mount::ReadOnly {
                        src: script.clone(),
                        dst: PathBuf::from("/work/script"),
                    },
                    Mount::ReadOnly {
                        src: sources.clone(),
                        dst: PathBuf::from("/work/src"),
                    },
                    Mount::ReadOnly {
                        src: tarballs.clone(),
                        dst: PathBuf::from("/work/tarballs"),
                    },
                    Mount::Writable {
                        src: build.clone(),
                        dst: PathBuf::from("/work/build"),
                    },
                    dest,
                    Mount::Writable {
                        src: files.clone(),
                        dst: PathBuf::from("/work/out"),
                    },
                ];
                // Only a step that writes the image tree may make set-id files (the tree needs
                // them; it is kept in the store's private step directories), and even then
                // nothing in its outputs keeps the bits.
                step.allow_setid = s.tree == StepTree::Image;
                let name = format!("{} ({})", node.name, s.name);
                log_line(&log, &format!("==> step {}", s.name))?;
                run_step_named(&name, &step, &log)?;
                if step.allow_setid {
                    sandbox::setid::strip(&files).map_err(|e| BuildError::Sandbox {
                        step: name.clone(),
                        source: Box::new(e.into()),
                    })?;
                }
                // What the step left in $OUTPUTDIR is checked now, naming the step.
                super::outputs::check_step_files(&name, &files)?;
                let _ = fs_err::remove_dir_all(&build);
                let _ = fs_err::remove_dir_all(&sources);
                let _ = fs_err::remove_file(&script);
            }
            let _ = fs_err::remove_dir_all(&tarballs);
            // os-release names the image, as mkosi does.
            let mut osrel = tree_step(node, &tree, opts, &log);
            osrel.argv = vec![
                "/bin/sh".into(),
                "-euc".into(),
                "if [ -f /usr/lib/os-release ]; then printf 'IMAGE_ID=%s\\n' \"$IMAGE_ID\" >> /usr/lib/os-release; if [ -n \"$IMAGE_VERSION\" ]; then printf 'IMAGE_VERSION=%s\\n' \"$IMAGE_VERSION\" >> /usr/lib/os-release; fi; fi".into(),
            ];
            osrel.env.insert("IMAGE_ID".into(), recipe.image_id.clone());
            osrel.env.insert(
                "IMAGE_VERSION".into(),
                recipe.version.clone().unwrap_or_default(),
            );
            run_step(node, &osrel, &log)?;
            if super::bootable::is_bootable(recipe.format) {
                let kernel = temp.join(super::bootable::KERNEL_DIR);
                fs_err::create_dir(&kernel).map_err(BuildError::io(&kernel))?;
                let mut prep = tree_step(node, &tree, opts, &log);
                let script = if recipe.kernel.is_some() {
                    super::bootable::PREPARE_SCRIPT_BUILT_KERNEL
                } else {
                    super::bootable::PREPARE_SCRIPT
                };
                prep.argv = vec!["/bin/sh".into(), "-c".into(), script.into()];
                prep.mounts.push(Mount::Writable {
                    src: kernel.clone(),
                    dst: PathBuf::from("/.hermetic-kernel"),
                });
                log_line(&log, "==> bootable: /init and the kernel")?;
                run_step(node, &prep, &log)?;
                remove_mount_points(&tree)?;
            }
            clean_up(node, &tree, opts, &log)?;
        }
        NodeKind::Kernel(k) => {
            let super::plan::KernelStep {
                source,
                config,
                base,
                fragments,
                patches,
                accepted,
            } = k.as_ref();
            let debs: Vec<&super::plan::DebPin> = std::iter::once(source).chain(config).collect();
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
            let base = match base {
                crate::recipe::KernelBase::Debian { file, .. } => {
                    crate::kernel::BaseConfig::Debian {
                        config_deb: config
                            .as_ref()
                            .map(|c| store.blob_path(&c.sha256))
                            .unwrap_or_default(),
                        file: file.clone(),
                    }
                }
                crate::recipe::KernelBase::Target(t) => {
                    crate::kernel::BaseConfig::MakeTarget(t.clone())
                }
            };
            // Resolved here rather than by `nproc` in the sandbox, so the line below says it.
            let jobs = opts
                .jobs
                .or_else(|| std::thread::available_parallelism().ok())
                .map_or(1, std::num::NonZeroUsize::get);
            if opts.progress {
                eprintln!("           {}: make -j{jobs} (--jobs to change)", node.name);
            }
            let reporter = KernelProgress::new(&node.name, opts.progress);
            let report = |p: &crate::kernel::Progress| reporter.report(p);
            let req = crate::kernel::KernelBuild {
                tools: dep("tools").join(TREE),
                source_deb: store.blob_path(&source.sha256),
                base,
                fragments: fragments.clone(),
                accepted: accepted.clone(),
                patches: patches.clone(),
                source_date_epoch: opts.source_date_epoch,
                work_dir: work.clone(),
                log: log.clone(),
                jobs: Some(jobs),
                progress: &report,
            };
            let built = crate::kernel::build_kernel(&req);
            reporter.finish();
            let built = built.map_err(|e| kernel_error(e, &log))?;
            for (path, name) in [
                (&built.bzimage, super::bootable::KERNEL_BZIMAGE),
                (&built.vmlinux, super::bootable::KERNEL_VMLINUX),
                (&built.config, super::bootable::KERNEL_CONFIG),
            ] {
                let dst = files.join(name);
                fs_err::rename(path, &dst).map_err(BuildError::io(&dst))?;
            }
            let release = files.join(super::bootable::KERNEL_RELEASE);
            fs_err::write(&release, format!("{}\n", built.release))
                .map_err(BuildError::io(&release))?;
            let mut drops = String::new();
            for d in &built.drops.drops {
                let reason = accepted
                    .options
                    .get(&d.request.name)
                    .map(String::as_str)
                    .unwrap_or("");
                drops.push_str(&format!("{}\n  accepted: {reason}\n", d));
            }
            let drops_path = files.join(super::bootable::KERNEL_DROPS);
            fs_err::write(&drops_path, drops).map_err(BuildError::io(&drops_path))?;
            // The build tree is gigabytes and not an output.
            fs_err::remove_dir_all(&work).map_err(BuildError::io(&work))?;
        }
        NodeKind::Program(p) => super::program::run(store, graph, node, p, temp, opts)?,
        NodeKind::Output {
            format,
            stem,
            cmdline,
        } => {
            let tree = dep("image").join(TREE);
            let files = temp.join(FILES);
            fs_err::create_dir(&files).map_err(BuildError::io(&files))?;
            // Files the image's steps left in $OUTPUTDIR are outputs too (checked again: the
            // store entry may have been changed since).
            let step_files = dep("image").join(FILES);
            if step_files.is_dir() {
                let image = &graph.nodes[node.deps["image"]].name;
                super::outputs::copy_step_files(image, &step_files, &files)?;
            }
            let mut link_name = None;
            match format {
                OutputFormat::Tar => {
                    let path = files.join(format!("{stem}.tar"));
                    let out = fs_err::File::create(&path).map_err(BuildError::io(&path))?;
                    let mut out = std::io::BufWriter::new(out);
                    let tar_opts = crate::treetar::TarOptions {
                        source_date_epoch: opts.source_date_epoch,
                        owner: None,
                        id_map: Some(sandbox_id_map()?),
                    };
                    crate::treetar::write_tree(&tree, &mut out, &tar_opts).map_err(|source| {
                        BuildError::Tar {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    out.flush().map_err(BuildError::io(&path))?;
                }
                OutputFormat::Directory => {
                    let name = super::outputs::directory_link_name(stem);
                    let link = files.join(&name);
                    link_name = Some(name);
                    // The directory output is the stored image tree itself; `out/` gets a copy.
                    std::os::unix::fs::symlink(&tree, &link).map_err(BuildError::io(&link))?;
                }
                bootable => {
                    let scratch = temp.join("scratch");
                    fs_err::create_dir(&scratch).map_err(BuildError::io(&scratch))?;
                    let (kernel, uname) = if node.deps.contains_key("kernel") {
                        let built = dep("kernel").join(FILES);
                        let (kernel, uname) = super::bootable::built_kernel(&built)?;
                        // The kernel and its configuration are outputs too.
                        if *bootable != OutputFormat::Initrd {
                            let dir = crate::beneath::Beneath::open(&built)?;
                            for (from, to) in [
                                (super::bootable::KERNEL_BZIMAGE, format!("{stem}.vmlinuz")),
                                (super::bootable::KERNEL_CONFIG, format!("{stem}.config")),
                            ] {
                                super::outputs::copy_beneath(&dir, from, &files.join(to))?;
                            }
                        }
                        (kernel, uname)
                    } else {
                        super::bootable::find_kernel(
                            &dep("image").join(super::bootable::KERNEL_DIR),
                        )?
                    };
                    let inputs = super::bootable::BootableInputs {
                        format: *bootable,
                        tree: &tree,
                        kernel: &kernel,
                        uname: &uname,
                        cmdline,
                        stem,
                        source_date_epoch: opts.source_date_epoch,
                        id_map: sandbox_id_map()?,
                    };
                    super::bootable::write(&inputs, &files, &scratch)?;
                    fs_err::remove_dir_all(&scratch).map_err(BuildError::io(&scratch))?;
                }
            }
            super::outputs::write_sums(&node.name, &files, &temp.join(SUMS), link_name.as_deref())?;
        }
    }
    Ok(())
}

/// Progress of the kernel step: on a terminal a spinner with the elapsed time, the current
/// part of the build and the latest kbuild line; otherwise, with `--progress` lines, one line a
/// minute.
struct KernelProgress {
    name: String,
    spinner: Option<indicatif::ProgressBar>,
    lines: bool,
    last: std::cell::Cell<Instant>,
}

impl KernelProgress {
    fn new(name: &str, progress: bool) -> KernelProgress {
        let spinner =
            (progress && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
                let pb = indicatif::ProgressBar::new_spinner();
                pb.set_style(
                    indicatif::ProgressStyle::with_template("  {spinner} {elapsed:>4} {wide_msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                pb.enable_steady_tick(Duration::from_millis(200));
                pb
            });
        KernelProgress {
            name: name.to_string(),
            spinner,
            lines: progress,
            last: std::cell::Cell::new(Instant::now()),
        }
    }

    fn report(&self, p: &crate::kernel::Progress) {
        let what = if p.phase.is_empty() {
            format!("{}: {} lines", p.step, p.lines)
        } else {
            format!("{}: {} ({} lines)", p.step, p.phase, p.lines)
        };
        if let Some(pb) = &self.spinner {
            pb.set_message(what);
        } else if self.lines && self.last.get().elapsed() >= Duration::from_secs(60) {
            self.last.set(Instant::now());
            eprintln!(
                "           {} {}: {what}",
                self.name,
                human(p.elapsed.as_secs_f64())
            );
        }
    }

    fn finish(&self) {
        if let Some(pb) = &self.spinner {
            pb.finish_and_clear();
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

/// How the host ids of trees made in the sandbox (with [`IdMapping::Subordinate`]) map back
/// to the ids inside, which are the ones an image must carry.
pub fn sandbox_id_map() -> Result<crate::treetar::IdMap, BuildError> {
    let invoker = sandbox::idmap::Invoker::current();
    let (uids, gids) =
        sandbox::idmap::subordinate_ranges(&invoker).map_err(|e| BuildError::Sandbox {
            step: "id mapping".into(),
            source: Box::new(e.into()),
        })?;
    Ok(crate::treetar::IdMap {
        root_uid: invoker.uid,
        uid_start: uids.start,
        root_gid: invoker.gid,
        gid_start: gids.start,
        count: sandbox::step::SUBORDINATE_IDS - 1,
    })
}

/// Runs the deterministic clean-up ([`cleanup::SCRIPT`]) in `tree`.
fn clean_up(node: &Node, tree: &Path, opts: &BuildOptions, log: &Path) -> Result<(), BuildError> {
    let mut clean = tree_step(node, tree, opts, log);
    clean.argv = vec!["/bin/sh".into(), "-c".into(), cleanup::SCRIPT.into()];
    log_line(log, "==> clean-up")?;
    run_step(node, &clean, log)?;
    remove_mount_points(tree)
}

/// A sandbox step with `tree` as its writable root, subordinate ids, no network, set-id files
/// allowed.
pub(super) fn tree_step(node: &Node, tree: &Path, opts: &BuildOptions, log: &Path) -> Step {
    let mut step = Step::new(["/bin/true"]);
    step.root = RootSpec::Writable(tree.to_path_buf());
    step.ids = IdMapping::Subordinate;
    step.network = Network::None;
    step.output = Output::LogOnly;
    step.log = Some(log.to_path_buf());
    step.source_date_epoch = opts.source_date_epoch;
    step.hostname = "hermetic".into();
    step.timeout = Some(Duration::from_secs(4 * 3600));
    // Image trees carry Debian's set-id programs (su, mount, passwd); they live in the
    // store's private step directories.
    step.allow_setid = true;
    step.env = BTreeMap::from([
        ("DEBIAN_FRONTEND".to_string(), "noninteractive".to_string()),
        (
            "DEBCONF_NONINTERACTIVE_SEEN".to_string(),
            "true".to_string(),
        ),
    ]);
    let _ = node;
    step
}

fn run_step(node: &Node, step: &Step, log: &Path) -> Result<(), BuildError> {
    run_step_named(&node.name, step, log)
}

pub(super) fn run_step_named(name: &str, step: &Step, log: &Path) -> Result<(), BuildError> {
    // Each sandbox run appends to the step's log.
    let part = log.with_extension("part");
    let mut step = step.clone();
    step.log = Some(part.clone());
    // On a terminal, a spinner shows the elapsed time and the step's latest output line, so
    // that a long step (dpkg, a kernel) is never silent.
    let spinner = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template("  {spinner} {elapsed:>4} {wide_msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        Some(pb)
    } else {
        None
    };
    let mut pending = Vec::new();
    let outcome = sandbox::run_with(&step, &mut |_, bytes| {
        if let Some(pb) = &spinner {
            pending.extend_from_slice(bytes);
            if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
                let text = String::from_utf8_lossy(&pending[..end]);
                if let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                    pb.set_message(last.trim().to_string());
                }
                pending.drain(..=end);
            }
        }
    })
    .map_err(|source| BuildError::Sandbox {
        step: name.to_string(),
        source: Box::new(source),
    })?;
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    let text = fs_err::read(&part).unwrap_or_default();
    let mut f = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(BuildError::io(log))?;
    f.write_all(&text).map_err(BuildError::io(log))?;
    let _ = fs_err::remove_file(&part);
    if !outcome.success() {
        let all = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = all.lines().collect();
        let tail = lines[lines.len().saturating_sub(25)..]
            .iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        let kept_log = keep_log(log);
        return Err(BuildError::StepFailed {
            step: name.to_string(),
            status: format!("exit status {}", outcome.shell_code()),
            tail,
            log: kept_log,
            kept: String::new(),
        });
    }
    Ok(())
}

/// Copies a failed step's log out of its temporary directory, which is about to go.
fn keep_log(log: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join("hermetic-logs");
    let _ = fs_err::create_dir_all(&dir);
    let name = format!(
        "failed-{}-{}.log",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let dest = dir.join(name);
    match fs_err::copy(log, &dest) {
        Ok(_) => dest,
        Err(_) => log.to_path_buf(),
    }
}

pub(super) fn log_line(log: &Path, line: &str) -> Result<(), BuildError> {
    let mut f = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(BuildError::io(log))?;
    writeln!(f, "{line}").map_err(BuildError::io(log))
}

/// Removes the empty mount points the sandbox made in a writable root for hermetic's own
/// mounts (`/.hermetic-*`).
fn remove_mount_points(tree: &Path) -> Result<(), BuildError> {
    let entries = fs_err::read_dir(tree).map_err(BuildError::io(tree))?;
    for e in entries {
        let e = e.map_err(BuildError::io(tree))?;
        if e.file_name().to_string_lossy().starts_with(".hermetic-") {
            let p = e.path();
            fs_err::remove_dir(&p).map_err(BuildError::io(&p))?;
        }
    }
    Ok(())
}

/// Copies a file or directory of the project (owned by the user) as plain files.
fn copy_plain(src: &Path, dst: &Path) -> Result<(), BuildError> {
    let meta = fs_err::symlink_metadata(src).map_err(BuildError::io(src))?;
    if let Some(parent) = dst.parent() {
        fs_err::create_dir_all(parent).map_err(BuildError::io(parent))?;
    }
    if meta.is_dir() {
        fs_err::create_dir_all(dst).map_err(BuildError::io(dst))?;
        let mut entries: Vec<_> = fs_err::read_dir(src)
            .map_err(BuildError::io(src))?
            .collect::<Result<_, _>>()
            .map_err(BuildError::io(src))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            copy_plain(&e.path(), &dst.join(e.file_name()))?;
        }
        fs_err::set_permissions(dst, meta.permissions()).map_err(BuildError::io(dst))?;
    } else if meta.file_type().is_symlink() {
        let target = fs_err::read_link(src).map_err(BuildError::io(src))?;
        std::os::unix::fs::symlink(target, dst).map_err(BuildError::io(dst))?;
    } else {
        fs_err::copy(src, dst).map_err(BuildError::io(dst))?;
    }
    Ok(())
}

/// Where diffoscope is installed, shows what differs in the first differing file.
fn run_diffoscope(stored: &Path, new: &Path, diffs: &[String]) {
    let Some(first) = diffs.first() else { return };
    let path = first.split(':').next().unwrap_or(first);
    let Ok(status) = std::process::Command::new("diffoscope")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    else {
        eprintln!("           (install diffoscope to see how the files differ)");
        return;
    };
    if !status.success() {
        return;
    }
    eprintln!("           diffoscope {path}:");
    let _ = std::process::Command::new("diffoscope")
        .arg("--max-report-size=200000")
        .arg(stored.join(path))
        .arg(new.join(path))
        .status();
}

/// Compares a stored step output with a new one; returns the differing paths.
fn compare_outputs(stored: &Path, new: &Path) -> Result<Vec<String>, BuildError> {
    let mut diffs = Vec::new();
    for sub in [TREE, FILES] {
        let a = stored.join(sub);
        let b = new.join(sub);
        if !a.exists() && !b.exists() {
            continue;
        }
        let ma = crate::treetar::manifest_dir(&a).map_err(|source| BuildError::Tar {
            path: a.clone(),
            source,
        })?;
        let mb = crate::treetar::manifest_dir(&b).map_err(|source| BuildError::Tar {
            path: b.clone(),
            source,
        })?;
        // A tree's mtimes are part of the image; output files are only their bytes (and
        // the directory holding them is made by hermetic at run time).
        let compare = crate::treetar::CompareOptions {
            mtimes: sub == TREE,
            ..Default::default()
        };
        for d in crate::treetar::compare_manifests(&ma, &mb, compare) {
            diffs.push(format!("{sub}/{}", d.path));
        }
    }
    Ok(diffs)
}

/// The SHA-256 of each output file of a step, written when the step is built.
pub const SUMS: &str = "SHA256SUMS";
