//! A whole build as one call, the same for every command that builds (`build`, `verify`,
//! `boot`, `shell`): check that the sandbox can run, plan the graph, fetch what the store
//! lacks (unless offline), run the steps, write the release files next to the outputs.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{BuildError, BuildOptions, BuildReport, Graph};
use crate::lockfile::Lockfile;
use crate::recipe::Project;
use crate::store::Store;

/// Errors of a whole build: each is the error of the part that failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("the build sandbox cannot run on this machine")]
    Sandbox(#[source] sandbox::doctor::PreflightError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error(transparent)]
    Release(#[from] crate::release::ReleaseError),
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    #[error(transparent)]
    Source(#[from] crate::sources::fetch::SourceError),
    #[error(transparent)]
    Crate(#[from] crate::sources::cargo::CrateError),
    #[error("--rebuild={step}: {targets} has no step {step}")]
    UnknownStep {
        step: String,
        targets: String,
        steps: Vec<String>,
    },
}

impl PipelineError {
    /// The error this one stands for (a transparent variant's own), for telling kinds apart.
    pub fn inner(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            PipelineError::Sandbox(_) => self,
            PipelineError::Build(e) => e,
            PipelineError::Fetch(e) => e,
            PipelineError::Release(e) => e,
            PipelineError::Verify(e) => e,
            PipelineError::Source(e) => e,
            PipelineError::Crate(e) => e,
            PipelineError::UnknownStep { .. } => self,
        }
    }
}

impl crate::error::Diagnostic for PipelineError {
    fn hints(&self) -> Vec<String> {
        match self {
            PipelineError::Build(e) => e.hints(),
            PipelineError::Fetch(e) => e.hints(),
            PipelineError::UnknownStep { steps, .. } => {
                vec![format!("its steps are {}", steps.join(", "))]
            }
            _ => Vec::new(),
        }
    }

    fn subject(&self) -> crate::error::Subject {
        match self {
            PipelineError::Build(e) => e.subject(),
            PipelineError::Fetch(e) => e.subject(),
            _ => crate::error::Subject::default(),
        }
    }
}

/// What to build and how.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Recipe names.
    pub targets: &'a [String],
    /// Selected profiles.
    pub profiles: &'a [String],
    /// Never touch the network: fail when the store lacks a pin the build needs.
    pub offline: bool,
    /// Debian mirrors to fetch missing pins from first (`--mirror`).
    pub mirrors: &'a [String],
    /// Directories holding copies of upstream sources, tried before their URLs
    /// (`--source-dir`).
    pub source_dirs: &'a [PathBuf],
    /// Upstream sources to build without (`--omit`).
    pub omit: &'a [String],
    /// Also build without every upstream source that cannot be had (`--omit-unavailable`).
    pub omit_unavailable: bool,
    /// How the steps run and where the outputs go.
    pub options: BuildOptions,
}

/// A finished build.
#[derive(Debug)]
pub struct Built {
    pub report: BuildReport,
    pub output_dir: PathBuf,
    /// A rebuild found a step whose new output differs from the stored one.
    pub differs: bool,
    /// The release files (provenance, SBOM, manifest) with their SHA-256.
    pub release: Vec<(PathBuf, String)>,
}

/// Makes this process ready to build: whatever hermetic itself creates in a tree must not
/// depend on the caller's umask (Debian's default is 002, Ubuntu's 022; the sandbox fixes it
/// for the steps), and the sandbox must be able to run here.
pub fn prepare() -> Result<(), PipelineError> {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    sandbox::preflight(sandbox::IdMapping::Subordinate).map_err(PipelineError::Sandbox)
}

/// Like cargo: what `graph` needs and the store lacks is fetched first (a `stat` per pin when
/// everything is there), with the same verification as `hermetic fetch`, unless `offline`
/// forbids the network; only these images' pins, so another image's unreachable source stops
/// nothing here. Then the upstream sources, crates and Go modules of their programs, from
/// `source_dirs` first.
#[allow(clippy::too_many_arguments)]
pub fn fetch_missing(
    store: &Store,
    project: &Project,
    lock: &Lockfile,
    graph: &Graph,
    offline: bool,
    mirrors: &[String],
    source_dirs: &[PathBuf],
    report: &crate::report::Reporter,
) -> Result<(), PipelineError> {
    let needed = super::omit::needed_pins(graph, lock);
    let make =
        || crate::fetch::default_downloader(store, mirrors, &project.config.archive.snapshot);
    let fetch_opts = crate::fetch::FetchOptions {
        offline,
        report: report.clone(),
    };
    let fetched = crate::fetch::fetch(store, &needed, &fetch_opts, &make)?;
    if fetched.fetched > 0 {
        report.line(fetched);
    }
    super::program::fetch_inputs(store, graph, lock, source_dirs, offline)?;
    Ok(())
}

/// `--omit-unavailable`: the upstream sources of `graph` that cannot be had now (store,
/// `source_dirs`, then their URLs unless offline); those that can are in the store after.
/// Only a source no copy of could be had counts; a pin without a hash or a store that cannot
/// be written stays an error.
pub fn unavailable_sources(
    store: &Store,
    graph: &Graph,
    lock: &Lockfile,
    source_dirs: &[PathBuf],
    offline: bool,
) -> Result<Vec<String>, PipelineError> {
    use crate::sources::fetch::SourceError;
    let needed = super::omit::needed_pins(graph, lock);
    let http = crate::http::Http::new();
    let upstream =
        crate::sources::fetch::fetch_upstream(store, &http, &needed, source_dirs, offline);
    // The git repositories of cargo builds' crates: one that cannot be had leaves out the
    // build's source (its error is named by it).
    let git = match crate::sources::cargo::fetch_locked_git(
        store,
        &http,
        &needed,
        source_dirs,
        offline,
    ) {
        Err(crate::sources::cargo::CrateError::UpstreamFetch(e)) => Err(e),
        Err(other) => return Err(other.into()),
        Ok(_) => Ok(()),
    };
    let mut names = Vec::new();
    for e in [upstream.err(), git.err()].into_iter().flatten() {
        for (error, name) in e.errors.into_iter().zip(e.names) {
            match error {
                SourceError::Unavailable { .. } | SourceError::Go(_) => names.push(name),
                other => return Err(other.into()),
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

/// Plans `request`'s targets without the sources it omits: those `--omit` names and, with
/// `--omit-unavailable`, those that cannot be had. Each omitted source is a warning, whatever
/// the verbosity: such an image must never pass for a release.
pub fn plan_request(
    store: &Store,
    project: &Project,
    lock: &Lockfile,
    request: &Request,
) -> Result<Graph, PipelineError> {
    let mut omit: BTreeSet<String> = request.omit.iter().cloned().collect();
    let mut graph = super::plan_omitting(project, lock, request.targets, request.profiles, &omit)?;
    if request.omit_unavailable {
        let unavailable =
            unavailable_sources(store, &graph, lock, request.source_dirs, request.offline)?;
        if !unavailable.is_empty() {
            omit.extend(unavailable);
            graph = super::plan_omitting(project, lock, request.targets, request.profiles, &omit)?;
        }
    }
    for (target, names) in &graph.omitted {
        for name in names {
            request.options.report.warn(format_args!(
                "`{target}` is built without the upstream source `{name}` (HERMETIC_OMITTED in its os-release): not a release image"
            ));
        }
    }
    Ok(graph)
}

/// Builds `request.targets` of the project in `store`: [`prepare`], [`plan_request`],
/// [`fetch_missing`], [`super::build`], then the release files next to the outputs.
pub fn build_targets(
    store: &Store,
    project: &Project,
    lock: &Lockfile,
    request: &Request,
) -> Result<Built, PipelineError> {
    prepare()?;
    let graph = plan_request(store, project, lock, request)?;
    // `--rebuild=STEP,…` names steps of these images.
    if let Some(unknown) = request
        .options
        .rebuild_only
        .iter()
        .find(|name| !graph.nodes.iter().any(|n| &n.name == *name))
    {
        return Err(PipelineError::UnknownStep {
            step: unknown.clone(),
            targets: request.targets.join(" "),
            steps: graph.nodes.iter().map(|n| n.name.clone()).collect(),
        });
    }
    fetch_missing(
        store,
        project,
        lock,
        &graph,
        request.offline,
        request.mirrors,
        request.source_dirs,
        &request.options.report,
    )?;
    let report = super::build(store, &graph, &request.options)?;
    let differs = report.steps.iter().any(|s| s.state.differs());
    let output_dir = request.options.output_dir.clone();
    let release = crate::release::write_release_files(
        &crate::release::ReleaseInputs {
            store,
            graph: &graph,
            lock,
            lock_sha256: crate::verify::sha256_file(&Lockfile::path_in(&project.root))?,
            profiles: request.profiles,
            git: crate::release::git_revision(&project.root),
            source_date_epoch: graph.source_date_epoch,
        },
        &output_dir,
    )?;
    Ok(Built {
        report,
        output_dir,
        differs,
        release,
    })
}
