//! Running the graph: each missing step runs in the sandbox and is published into the store;
//! a step whose key is already stored is not run again.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sandbox::{IdMapping, Network, Output, RootSpec, Step};

use crate::store::Store;

use super::plan::{Graph, Node};
use super::{BuildError, cleanup};

/// How to run a build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where final outputs are copied (with `SHA256SUMS`).
    pub output_dir: PathBuf,
    /// Keep the tree of a failed step and say where.
    pub keep_failed: bool,
    /// Run every step again and compare with what the store holds, or with a cache's output
    /// (signed or not) of a step the store lacks.
    pub rebuild: bool,
    /// With `rebuild`: only these steps (`<recipe>/<step>`) run again; empty: every step.
    pub rebuild_only: Vec<String>,
    /// What to say on standard error: a line per step (`-v`: with its key), a spinner on a
    /// terminal, the sandbox's commands with `-vv`.
    pub report: crate::report::Reporter,
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
    /// `--rebuild` of a step the store lacked: built here and identical to the output the
    /// cache (named) holds; the local output is stored.
    Verified {
        cache: String,
        trust: String,
    },
    /// `--rebuild` of a step the store lacked: built here and different from the output the
    /// cache holds (the differing paths, the first first); the local output is stored.
    DiffersFromCache {
        cache: String,
        trust: String,
        paths: Vec<String>,
    },
}

impl StepState {
    /// A rebuild found an output that differs.
    pub fn differs(&self) -> bool {
        matches!(
            self,
            StepState::Differs(_) | StepState::DiffersFromCache { .. }
        )
    }
}

impl BuildOptions {
    /// Whether `--rebuild` runs step `name` again.
    pub fn rebuilds(&self, name: &str) -> bool {
        self.rebuild
            && (self.rebuild_only.is_empty() || self.rebuild_only.iter().any(|s| s == name))
    }
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
    /// Per target built without some upstream sources (`--omit`), their names.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub omitted: std::collections::BTreeMap<String, Vec<String>>,
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
        let rebuild = opts.rebuilds(&node.name);
        // A step output from a shared cache, when one signed by a trusted key has it.
        let state = if !rebuild
            && (store.has_step(node.key.as_str())
                || crate::cache::substitute_step(store, node.key.as_str(), &node.name))
        {
            StepState::Cached
        } else {
            opts.report.line(format_args!(
                "  running  {}  ({})",
                node.name,
                short(node.key.as_str())
            ));
            let _guard = store.lock(&format!("step-{}", node.key.as_str()))?;
            if store.has_step(node.key.as_str()) && !rebuild {
                StepState::Cached
            } else {
                // `--rebuild` of a step the store lacks: a cache's output, signed or not, is
                // what the local output is compared with.
                let reference = if rebuild && !store.has_step(node.key.as_str()) {
                    crate::cache::reference_step(store, node.key.as_str(), &node.name)
                } else {
                    None
                };
                let temp = store.temp_dir()?;
                if let Err(e) = run_node(store, graph, i, temp.path(), opts) {
                    if opts.keep_failed {
                        let kept = temp.keep();
                        return Err(with_kept(e, &kept));
                    }
                    return Err(e);
                }
                if let Some(reference) = reference {
                    let diffs = compare_outputs(reference.tree.path(), temp.path())?;
                    // What was built here is stored either way: it is this machine's own.
                    store.publish_step(node.key.as_str(), temp)?;
                    let crate::cache::Reference { tree, cache, trust } = reference;
                    if diffs.is_empty() {
                        StepState::Verified { cache, trust }
                    } else {
                        let kept = keep_for_inspection(
                            tree,
                            &format!("the output of cache {cache}"),
                            &opts.report,
                        );
                        if opts.report.progress() {
                            run_diffoscope(&kept, &stored, &diffs, &opts.report);
                        }
                        StepState::DiffersFromCache {
                            cache,
                            trust,
                            paths: diffs,
                        }
                    }
                } else if rebuild && store.has_step(node.key.as_str()) {
                    let diffs = compare_outputs(&stored, temp.path())?;
                    if diffs.is_empty() {
                        StepState::Identical
                    } else {
                        let kept = keep_for_inspection(temp, "the new output", &opts.report);
                        if opts.report.progress() {
                            run_diffoscope(&stored, &kept, &diffs, &opts.report);
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
        if opts.report.progress() {
            let word = match &state {
                StepState::Cached => "cached",
                StepState::Built => "done",
                StepState::Identical => "same",
                StepState::Verified { .. } => "verified",
                StepState::Differs(_) | StepState::DiffersFromCache { .. } => "DIFFERS",
            };
            if opts.report.verbose() {
                // `-v`: the whole key, and so whether the store had it ("cached").
                opts.report.line(format_args!(
                    "  {word:<7}  {}  {}  {}",
                    node.name,
                    node.key.as_str(),
                    human(seconds)
                ));
            } else {
                opts.report.line(format_args!(
                    "  {word:<7}  {}  {}",
                    node.name,
                    human(seconds)
                ));
            }
            match &state {
                StepState::Verified { cache, trust } => opts.report.line(format_args!(
                    "           identical to the output of cache {cache} ({trust})"
                )),
                StepState::DiffersFromCache {
                    cache,
                    trust,
                    paths,
                } => opts.report.line(format_args!(
                    "           not identical to the output of cache {cache} ({trust}); first difference: {}",
                    paths.first().map_or("", String::as_str)
                )),
                _ => {}
            }
            if let StepState::Differs(paths) | StepState::DiffersFromCache { paths, .. } = &state {
                for p in paths.iter().take(50) {
                    opts.report.line(format_args!("           differs: {p}"));
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
    Ok(BuildReport {
        steps,
        outputs,
        omitted: graph.omitted.clone(),
    })
}

/// Keeps an output that differs (the new one, or a cache's) for inspection and says where.
fn keep_for_inspection(
    temp: crate::store::StoreTempDir,
    what: &str,
    report: &crate::report::Reporter,
) -> PathBuf {
    let kept = temp.keep();
    report.line(format_args!(
        "           {what} is kept at {}",
        kept.display()
    ));
    kept
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

pub(super) fn human(seconds: f64) -> String {
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
    let log = temp.join(LOG);
    let cx = super::steps::StepCx {
        store,
        graph,
        node: &graph.nodes[index],
        temp,
        opts,
        log: &log,
    };
    super::steps::run(&cx)
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
pub(super) fn clean_up(
    node: &Node,
    tree: &Path,
    log: &Path,
    report: &crate::report::Reporter,
) -> Result<(), BuildError> {
    let mut clean = tree_step(node, tree, log);
    clean.argv = vec!["/bin/sh".into(), "-c".into(), cleanup::SCRIPT.into()];
    log_line(log, "==> clean-up")?;
    run_step(node, &clean, log, report)?;
    remove_mount_points(tree)
}

/// A sandbox step with `tree` as its writable root, subordinate ids, no network, set-id files
/// allowed.
pub(super) fn tree_step(node: &Node, tree: &Path, log: &Path) -> Step {
    let mut step = Step::new(["/bin/true"]);
    step.root = RootSpec::Writable(tree.to_path_buf());
    step.ids = IdMapping::Subordinate;
    step.network = Network::None;
    step.output = Output::LogOnly;
    step.log = Some(log.to_path_buf());
    step.source_date_epoch = node.source_date_epoch;
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
    step
}

/// How often a step that writes output says so when progress is plain lines.
const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

pub(super) fn run_step(
    node: &Node,
    step: &Step,
    log: &Path,
    report: &crate::report::Reporter,
) -> Result<(), BuildError> {
    run_step_named(&node.name, step, log, report)
}

pub(super) fn run_step_named(
    name: &str,
    step: &Step,
    log: &Path,
    report: &crate::report::Reporter,
) -> Result<(), BuildError> {
    // Each sandbox run appends to the step's log.
    let part = log.with_extension("part");
    let mut step = step.clone();
    step.log = Some(part.clone());
    report.debug_line(format_args!(
        "           sandbox: {:?} in root {:?}, mounts {:?}",
        step.argv, step.root, step.mounts
    ));
    // On a terminal, a spinner shows the elapsed time and the step's latest output line, so
    // that a long step (dpkg, a kernel) is never silent.
    // Otherwise (a pipe, a log) a line every PLAIN_INTERVAL while the step writes, with
    // its latest line.
    let spinner = report.spinner();
    let plain = report.plain_lines();
    let started = Instant::now();
    let mut said = started;
    let mut pending = Vec::new();
    let outcome = sandbox::run_with(&step, &mut |_, bytes| {
        if spinner.is_drawn() || plain {
            pending.extend_from_slice(bytes);
            if let Some(end) = pending.iter().rposition(|&b| b == b'\n') {
                let text = String::from_utf8_lossy(&pending[..end]);
                if let Some(last) = text.lines().rev().find(|l| !l.trim().is_empty()) {
                    if spinner.is_drawn() {
                        spinner.set_message(last.trim().to_string());
                    } else if said.elapsed() >= PLAIN_INTERVAL {
                        said = Instant::now();
                        report.line(format_args!(
                            "           {name} {}: {}",
                            human(started.elapsed().as_secs_f64()),
                            last.trim()
                        ));
                    }
                }
                pending.drain(..=end);
            }
        }
    })
    .map_err(|source| BuildError::Sandbox {
        step: name.to_string(),
        source: Box::new(source),
    })?;
    drop(spinner);
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
pub(super) fn keep_log(log: &Path) -> PathBuf {
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
pub(super) fn remove_mount_points(tree: &Path) -> Result<(), BuildError> {
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
pub(super) fn copy_plain(src: &Path, dst: &Path) -> Result<(), BuildError> {
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
fn run_diffoscope(stored: &Path, new: &Path, diffs: &[String], report: &crate::report::Reporter) {
    let Some(first) = diffs.first() else { return };
    let path = first.split(':').next().unwrap_or(first);
    let Ok(status) = std::process::Command::new("diffoscope")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    else {
        report.line("           (install diffoscope to see how the files differ)");
        return;
    };
    if !status.success() {
        return;
    }
    report.line(format_args!("           diffoscope {path}:"));
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
