//! Go programs built from pinned upstream sources: the `[[go]]` builds of a recipe.
//!
//! Like the `[[cargo]]` builds of [`super::program`], each build is a step of the graph
//! (`<image>/go-<name>`) keyed by everything that goes into it: the source's content hash,
//! the `modules-sha256` of its `go-modules` pin (the list of go.sum `h1:` hashes), the key of
//! the toolchain tree (`<image>/go-tools`, the closure `<recipe>:go`), the build options and
//! `SOURCE_DATE_EPOCH`. It runs `go build -trimpath -buildvcs=false -ldflags=-buildid=` in the
//! sandbox with no network and `GOPROXY=off` (see [`crate::sources::gomod::go_build_plan`]):
//!
//! - `/work/src`: the source tree, unpacked from the store after its hash is checked again
//!   (read-only); the build runs in its module directory;
//! - `/work/modcache`: the module cache laid out from the store, each zip and `go.mod`
//!   re-hashed against its `h1:` (read-only); none for a tree that vendors its modules
//!   (`-mod=vendor`);
//! - `/work/gowork`: go's build cache, `GOPATH` and `HOME` (fresh, never shared);
//! - `/work/out`: where `go build -o /work/out/` writes one binary per main package.
//!
//! The declared binaries are copied out of `/work/out` into the step's `tree/`, and the
//! image step installs them as it installs the cargo builds' files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sandbox::Mount;

use crate::key::StepInputs;
use crate::lockfile::{GO_TAG_SUFFIX, Lockfile};
use crate::recipe::{GoProgram, ResolvedRecipe};
use crate::sources::gomod::{self, GoModError, GoModules};
use crate::sources::pin::SourcePin;
use crate::store::Store;

use super::BuildError;
use super::exec::{BuildOptions, LOG, TREE};
use super::plan::{Graph, Node, NodeKind};
use super::program::ROLE_PREFIX;

/// Changes whenever the way a Go step builds changes, so old results are not reused.
pub const GO_STEP_VERSION: &str = "1";

/// Where the build sees its inputs.
const SRC: &str = "/work/src";
const MODCACHE: &str = "/work/modcache";
const GOWORK: &str = "/work/gowork";
const OUT: &str = "/work/out";

/// What a Go step builds (besides its toolchain tree).
#[derive(Debug, Clone)]
pub struct GoStep {
    pub build: GoProgram,
    /// The source pin as locked (with its content hash).
    pub source: SourcePin,
    /// The modules its `go-modules` pin records (checked against its `modules-sha256`);
    /// `None` when the build names no `go-modules` source.
    pub modules: Option<GoModules>,
}

/// Adds the toolchain tree and one step per `[[go]]` build of `recipe`; gives the image
/// step's dependencies on them (role `program:<name>` → node). `toolchain` is the
/// build-packages the lock must hold for the recipe (those of every build, omitted or not).
pub fn go_nodes(
    graph: &mut Graph,
    lock: &Lockfile,
    recipe: &ResolvedRecipe,
    toolchain: &[String],
    sde: u64,
) -> Result<BTreeMap<String, usize>, BuildError> {
    let mut deps = BTreeMap::new();
    if recipe.go.is_empty() {
        return Ok(deps);
    }
    let stale = |detail: String| BuildError::StaleLock { detail };
    let tools = super::program::toolchain_node(
        graph,
        lock,
        recipe,
        sde,
        GO_TAG_SUFFIX.trim_start_matches(':'),
        |r| &r.go_packages,
        toolchain,
    )?;
    for build in recipe.go.values() {
        let locked_pin = |name: &str| {
            lock.upstream
                .iter()
                .find(|u| u.pin.name() == name && u.pin.content_hash().is_some())
                .map(|u| u.pin.clone())
        };
        let source = locked_pin(&build.source).ok_or_else(|| {
            stale(format!(
                "source `{}` of go build `{}` has no content pin",
                build.source, build.name
            ))
        })?;
        let hash = source.content_hash().unwrap_or_default().to_string();
        let mut inputs = StepInputs {
            kind: "program".into(),
            // Not the image's name: two images building the same program share the step.
            name: format!("go-{}", build.name),
            ..Default::default()
        };
        inputs
            .pins
            .insert(format!("source:{}", build.source), hash.clone());
        let modules = match &build.modules {
            None => None,
            Some(name) => {
                let pin = locked_pin(name).ok_or_else(|| {
                    stale(format!(
                        "go-modules source `{name}` of go build `{}` is not locked",
                        build.name
                    ))
                })?;
                let SourcePin::GoModules {
                    source_hash: Some(read_at),
                    ..
                } = &pin
                else {
                    return Err(stale(format!("`{name}` is not a locked go-modules source")));
                };
                if read_at != &hash {
                    return Err(stale(format!(
                        "the modules of `{name}` were read from another content of source `{}`",
                        build.source
                    )));
                }
                let found = gomod::pin_modules(&pin).map_err(go_error)?;
                inputs.pins.insert(
                    format!("go-modules:{name}"),
                    pin.content_hash().unwrap_or_default().to_string(),
                );
                Some(found)
            }
        };
        let options = serde_json::to_string(build).unwrap_or_default();
        inputs.settings.insert("go".into(), options);
        inputs
            .settings
            .insert("source-date-epoch".into(), sde.to_string());
        inputs
            .settings
            .insert("go-step".into(), GO_STEP_VERSION.into());
        let node = super::program::add_program_node(
            graph,
            format!("{}/go-{}", recipe.name, build.name),
            inputs,
            NodeKind::Go(Box::new(GoStep {
                build: build.clone(),
                source,
                modules,
            })),
            tools,
            sde,
        );
        deps.insert(format!("{ROLE_PREFIX}{}", build.name), node);
    }
    Ok(deps)
}

fn go_error(e: GoModError) -> BuildError {
    BuildError::Go(Box::new(e))
}

/// What `go build` is asked for (paths inside the sandbox).
fn go_build(build: &GoProgram) -> gomod::GoBuild {
    let mut b = gomod::GoBuild::new(&[], &format!("{OUT}/"));
    b.go = build.go_command();
    b.packages = build.packages.clone();
    b.ldflags = build.ldflags.clone();
    b.tags = build.tags.clone();
    b.cgo = build.cgo;
    b.modcache_dst = PathBuf::from(MODCACHE);
    b.work_dst = PathBuf::from(GOWORK);
    b
}

/// The modules the build uses: those of its `go-modules` pin, which must be what the
/// source archive's own `go.sum` (or `vendor/modules.txt`) lists; without a pin, the tree must vendor its
/// modules or need none.
fn modules_of_tree(step: &GoStep, archive: &Path) -> Result<GoModules, BuildError> {
    let GoStep { build, source, .. } = step;
    let in_tree = gomod::go_modules_of_archive(archive, build.dir()).map_err(go_error)?;
    let lines = |m: &GoModules| match m {
        GoModules::Vendor { vendored } => (true, vendored.clone()),
        GoModules::Proxy { modules } => (false, gomod::go_sum_lines(modules)),
    };
    match &step.modules {
        Some(pinned) if lines(pinned) != lines(&in_tree) => Err(BuildError::StaleLock {
            detail: format!(
                "the go.sum of {} does not list the modules pins.lock records for go build `{}`",
                source.describe(),
                build.name
            ),
        }),
        Some(pinned) => Ok(pinned.clone()),
        None => match in_tree {
            GoModules::Proxy { modules } if !modules.is_empty() => Err(BuildError::StaleLock {
                detail: format!(
                    "go build `{}` needs the {} module(s) of the go.sum of {}, but names no `modules` source; hint: add a `go-modules` source for `{}` and `modules = \"<its name>\"`",
                    build.name,
                    modules.len(),
                    source.describe(),
                    build.source
                ),
            }),
            found => Ok(found),
        },
    }
}

/// Runs a Go step into `temp`: its `tree/` holds the installed files.
pub fn run(
    store: &Store,
    graph: &Graph,
    node: &Node,
    step: &GoStep,
    temp: &Path,
    opts: &BuildOptions,
) -> Result<(), BuildError> {
    let build = &step.build;
    let log = temp.join(LOG);
    let tools = store
        .step_path(graph.nodes[node.deps["tools"]].key.as_str())
        .join(TREE);
    let work = temp.join("work");
    let src = work.join("src");
    let modcache = work.join("modcache");
    let gowork = work.join("gowork");
    let out = work.join("out");
    fs_err::create_dir(&work).map_err(BuildError::io(&work))?;
    super::program::unpack_program_source(store, &step.source, &src)?;
    // Read from the archive as `hermetic lock` read them, not through the unpacked tree's
    // paths (which the archive chose, links included).
    let archive = crate::sources::cargo::verified_source(store, &step.source)
        .map_err(|e| BuildError::Crate(Box::new(e)))?;
    let modules = modules_of_tree(step, &archive)?;
    if let GoModules::Proxy { modules } = &modules {
        let missing = modules
            .iter()
            .filter(|m| {
                [(&m.mod_h1, "mod"), (&m.h1, "zip")]
                    .into_iter()
                    .any(|(h, ext)| {
                        h.as_deref().is_some_and(|h| {
                            let key = if ext == "zip" {
                                gomod::zip_key(h)
                            } else {
                                gomod::mod_key(h)
                            };
                            !key.is_some_and(|k| store.has_step(&k))
                        })
                    })
            })
            .collect::<Vec<_>>();
        if let Some(first) = missing.first() {
            return Err(BuildError::MissingPins {
                count: missing.len(),
                store: store.root().to_path_buf(),
                example: format!("Go module {}@{}", first.path, first.version),
            });
        }
    }
    for d in [&gowork, &out] {
        fs_err::create_dir(d).map_err(BuildError::io(d))?;
    }
    let go = go_build(build);
    let plan = gomod::go_build_plan(store, &modules, &go, &modcache).map_err(go_error)?;

    let mut cmd = super::program::build_step(
        plan.argv.clone(),
        tools,
        node,
        Path::new(SRC).join(build.dir()),
    );
    cmd.mounts = vec![
        Mount::Tmpfs {
            dst: PathBuf::from("/work"),
        },
        Mount::ReadOnly {
            src: src.clone(),
            dst: PathBuf::from(SRC),
        },
        Mount::Writable {
            src: gowork.clone(),
            dst: PathBuf::from(GOWORK),
        },
        Mount::Writable {
            src: out.clone(),
            dst: PathBuf::from(OUT),
        },
    ];
    cmd.mounts.extend(plan.mounts.iter().cloned());
    cmd.env
        .insert("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into());
    cmd.env.extend(plan.env.clone());
    super::exec::log_line(&log, &format!("==> {}", plan.argv.join(" ")))?;
    super::exec::run_step_named(&node.name, &cmd, &log, &opts.report)?;

    super::program::install_files(node, &out, "", &build.install, &temp.join(TREE))?;
    // The build tree is large and not an output; the module cache is read-only (go's
    // layout), so its directories are made writable before it is removed.
    make_writable(&work)?;
    fs_err::remove_dir_all(&work).map_err(BuildError::io(&work))?;
    Ok(())
}

/// Gives the owner write permission on every directory under `dir` (links not followed),
/// so the tree can be removed.
fn make_writable(dir: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = fs_err::symlink_metadata(dir).map_err(BuildError::io(dir))?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700))
            .map_err(BuildError::io(dir))?;
    }
    for entry in fs_err::read_dir(dir).map_err(BuildError::io(dir))? {
        let entry = entry.map_err(BuildError::io(dir))?;
        make_writable(&entry.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debians_versioned_go_is_called_by_its_path_with_the_recipe_options() {
        let build: GoProgram = toml::from_str(
            "name = \"hello\"\nsource = \"src\"\npackages = [\"./cmd/hello\"]\ntags = [\"netgo\"]\nldflags = [\"-s\", \"-w\"]\ninstall = { \"hello\" = \"/usr/bin/hello\" }\n",
        )
        .unwrap();
        let go = go_build(&build);
        assert_eq!(go.go, "/usr/lib/go-1.24/bin/go");
        assert_eq!(go.output, "/work/out/");
        assert_eq!(go.packages, ["./cmd/hello"]);
        assert!(!go.cgo);
        let mut other = build.clone();
        other.build_packages = vec!["golang-go".into()];
        assert_eq!(go_build(&other).go, "go");
    }
}
