//! Programs built from pinned upstream sources: the `[[cargo]]` builds of a recipe.
//!
//! Each build is a step of the graph (`<image>/cargo-<name>`) keyed by everything that goes
//! into it: the source's content hash, the checksum of every crate its `Cargo.lock` pins, the
//! key of the toolchain tree (`<image>/cargo-tools`, the closure `<recipe>:cargo`), the build
//! options and `SOURCE_DATE_EPOCH`. It runs `cargo build --frozen --offline` in the sandbox
//! with no network:
//!
//! - `/work/src`: the source tree, unpacked from the store after its hash is checked again
//!   (read-only);
//! - `/work/vendor`: every crate unpacked from its `.crate` (each re-hashed against its
//!   checksum) with the `.cargo-checksum.json` cargo checks (read-only);
//! - `/work/cargo-home`: a fresh `CARGO_HOME` whose `config.toml` replaces crates.io by the
//!   vendor directory; `/work/target`: the target directory;
//! - `--remap-path-prefix` maps these to `/usr/src/<name>`, `/usr/src/crates` and
//!   `/usr/src/cargo-home`, so no build path reaches the binary (and none of the host's
//!   exists in the sandbox at all).
//!
//! The declared files are copied out of `target/<profile>/` (read beneath it: the build made
//! that tree) into the step's `tree/` at their image paths, with fixed modes and times. The
//! image step depends on every program step of its recipe and copies their trees over the
//! image after the overlays, before the recipe's steps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sandbox::{IdMapping, Mount, Network, Output, RootSpec, Step};

use crate::key::{DependencyInput, StepInputs};
use crate::lockfile::{LockedGitEntry, Lockfile};
use crate::recipe::{CargoBuild, ResolvedRecipe};
use crate::sources::cargo::{self as crates, CrateError, LockedCrate};
use crate::sources::pin::SourcePin;
use crate::store::Store;

use super::BuildError;
use super::exec::{BuildOptions, LOG, TREE};
use super::plan::{Graph, Node, NodeKind};

/// Changes whenever the way a program step builds changes, so old results are not reused.
pub const PROGRAM_STEP_VERSION: &str = "1";

/// The role prefix of a program step among the image step's dependencies.
pub const ROLE_PREFIX: &str = "program:";

/// Where the build sees its inputs.
const SRC: &str = "/work/src";
const VENDOR: &str = "/work/vendor";
const CARGO_HOME: &str = "/work/cargo-home";
const TARGET: &str = "/work/target";

/// What a program step builds (besides its toolchain tree).
#[derive(Debug, Clone)]
pub struct ProgramStep {
    pub build: CargoBuild,
    /// The source pin as locked (with its content hash).
    pub source: SourcePin,
    pub crates: Vec<LockedCrate>,
    /// The packages its `Cargo.lock` takes from git repositories, with their tree hashes.
    pub git: Vec<LockedGitEntry>,
    /// The project's root, where a `path` source is read (not part of the key: the source's
    /// content hash is).
    pub project_root: PathBuf,
}

/// Adds the toolchain tree and one step per `[[cargo]]` build of `recipe`; gives the image
/// step's dependencies on them (role `program:<name>` → node). `toolchain` is the
/// build-packages the lock must hold for the recipe (those of every build, omitted or not).
pub fn program_nodes(
    graph: &mut Graph,
    lock: &Lockfile,
    recipe: &ResolvedRecipe,
    toolchain: &[String],
    sde: u64,
    project_root: &Path,
) -> Result<BTreeMap<String, usize>, BuildError> {
    let mut deps = BTreeMap::new();
    if recipe.cargo.is_empty() {
        return Ok(deps);
    }
    let stale = |detail: String| BuildError::StaleLock { detail };
    let tools = toolchain_node(
        graph,
        lock,
        recipe,
        sde,
        "cargo",
        |r| &r.cargo_packages,
        toolchain,
    )?;
    for build in recipe.cargo.values() {
        let source = lock
            .upstream
            .iter()
            .find(|u| u.pin.name() == build.source && u.pin.content_hash().is_some())
            .map(|u| u.pin.clone())
            .ok_or_else(|| {
                stale(format!(
                    "source `{}` of cargo build `{}` has no content pin",
                    build.source, build.name
                ))
            })?;
        let hash = source.content_hash().unwrap_or_default().to_string();
        // A directory of the project may have changed since it was locked: then the step
        // key (made from the pin) would name a build of other files, cached or not.
        if let SourcePin::Path { .. } = source {
            let now = crate::sources::path::tree_hash(project_root, &source)
                .map_err(|e| crate_error(CrateError::from(Box::new(e))))?;
            if now != hash {
                return Err(stale(format!(
                    "{} changed since it was locked (the directory hashes to {now}, the lock pins {hash})",
                    source.describe()
                )));
            }
        }
        let record = lock
            .cargo
            .iter()
            .find(|c| c.source == build.source && c.dir == build.dir() && c.source_hash == hash)
            .ok_or_else(|| {
                stale(format!(
                    "the crates of source `{}` of cargo build `{}` are not locked for its pinned content",
                    build.source, build.name
                ))
            })?;
        let crates: Vec<LockedCrate> = record
            .crates
            .iter()
            .map(|k| LockedCrate {
                name: k.name.clone(),
                version: k.version.clone(),
                checksum: k.checksum.clone(),
            })
            .collect();
        let mut inputs = StepInputs {
            kind: "program".into(),
            // Not the image's name: two images building the same program share the step.
            name: format!("cargo-{}", build.name),
            ..Default::default()
        };
        inputs
            .pins
            .insert(format!("source:{}", build.source), hash.clone());
        for c in &crates {
            inputs.pins.insert(
                format!("crate:{}-{}", c.name, c.version),
                c.checksum.clone(),
            );
        }
        // Only builds with git packages get these: the keys of the others stay as they were.
        for g in &record.git {
            inputs.pins.insert(
                format!("git-crate:{}-{}", g.name, g.version),
                g.tree_sha256.clone(),
            );
        }
        let options = serde_json::to_string(build).unwrap_or_default();
        inputs.settings.insert("cargo".into(), options);
        inputs
            .settings
            .insert("source-date-epoch".into(), sde.to_string());
        inputs
            .settings
            .insert("program-step".into(), PROGRAM_STEP_VERSION.into());
        let node = add_program_node(
            graph,
            format!("{}/cargo-{}", recipe.name, build.name),
            inputs,
            NodeKind::Program(Box::new(ProgramStep {
                build: build.clone(),
                source,
                crates,
                git: record.git.clone(),
                project_root: project_root.to_path_buf(),
            })),
            tools,
            sde,
        );
        deps.insert(format!("{ROLE_PREFIX}{}", build.name), node);
    }
    Ok(deps)
}

/// Adds the toolchain tree `<recipe>/<word>-tools` of the closure `<recipe>:<word>`, after
/// checking that the lock resolved it for what the recipe asks now (`wanted`; `locked` picks
/// the lock's list).
pub(super) fn toolchain_node(
    graph: &mut Graph,
    lock: &Lockfile,
    recipe: &ResolvedRecipe,
    sde: u64,
    word: &str,
    locked: impl Fn(&crate::lockfile::LockedRecipe) -> &Vec<String>,
    wanted: &[String],
) -> Result<usize, BuildError> {
    let stale = |detail: String| BuildError::StaleLock { detail };
    let in_lock = lock
        .recipes
        .iter()
        .find(|r| r.name == recipe.name)
        .ok_or_else(|| stale(format!("recipe `{}` is not in the lock", recipe.name)))?;
    if locked(in_lock).as_slice() != wanted {
        return Err(stale(format!(
            "the {word} build-packages of `{}` changed",
            recipe.name
        )));
    }
    let tag = format!("{}:{word}", recipe.name);
    let mut tools = super::plan::tree_node(
        recipe,
        &tag,
        super::plan::tagged_debs(lock, &tag),
        sde,
        &format!("{word}-tools"),
    )?;
    tools.name = format!("{}/{word}-tools", recipe.name);
    Ok(graph.add(tools))
}

/// Adds a program step named `name` that depends on the toolchain tree `tools` (role
/// `tools`, recorded in its inputs); gives its node.
pub(super) fn add_program_node(
    graph: &mut Graph,
    name: String,
    mut inputs: StepInputs,
    kind: NodeKind,
    tools: usize,
    sde: u64,
) -> usize {
    inputs.dependencies.insert(
        "tools".into(),
        DependencyInput {
            key: graph.nodes[tools].key.clone(),
            output: None,
        },
    );
    graph.add(Node {
        name,
        key: inputs.key(),
        inputs,
        kind,
        deps: BTreeMap::from([("tools".to_string(), tools)]),
        source_date_epoch: sde,
    })
}

/// What `hermetic build` needs first: the upstream sources the graph's images declare
/// (programs' sources and modules, `deb` sources, those steps list) and the crates of its
/// `[[cargo]]` builds that the store lacks, each checked against its pin; a source comes from the store, then the
/// `source_dirs`, then (unless `offline`) its URLs. Pins of other images are not touched.
pub fn fetch_inputs(
    store: &Store,
    graph: &Graph,
    lock: &Lockfile,
    source_dirs: &[PathBuf],
    offline: bool,
) -> Result<(), BuildError> {
    let needed = super::omit::needed_pins(graph, lock);
    if needed.upstream.is_empty() && needed.cargo.is_empty() {
        return Ok(());
    }
    let http = crate::http::Http::new();
    crate::sources::fetch::fetch_upstream(store, &http, &needed, source_dirs, offline)
        .map_err(|e| crate_error(CrateError::from(e)))?;
    // Offline, a missing crate is named when its build starts.
    if !offline {
        crates::fetch_locked_crates(store, &http, &needed, false).map_err(crate_error)?;
    }
    crates::fetch_locked_git(store, &http, &needed, source_dirs, offline).map_err(crate_error)?;
    Ok(())
}

/// A program build in the sandbox: `argv` run in `cwd` on the toolchain tree `tools`
/// (read-only), with no network, as the invoking user mapped to root, its output to the log.
pub(super) fn build_step(argv: Vec<String>, tools: PathBuf, node: &Node, cwd: PathBuf) -> Step {
    let mut cmd = Step::new(argv);
    cmd.root = RootSpec::ReadOnly(tools);
    cmd.ids = IdMapping::SingleUser;
    cmd.network = Network::None;
    cmd.output = Output::LogOnly;
    cmd.source_date_epoch = node.source_date_epoch;
    cmd.hostname = "hermetic".into();
    cmd.timeout = Some(std::time::Duration::from_secs(4 * 3600));
    cmd.cwd = cwd;
    cmd
}

/// Unpacks a program's source tree from the store into `dest` (its hash checked again); a
/// source the store lacks is a missing pin.
pub(super) fn unpack_program_source(
    store: &Store,
    source: &SourcePin,
    dest: &Path,
) -> Result<(), BuildError> {
    match crates::unpack_source(store, source, dest) {
        Ok(()) => Ok(()),
        Err(CrateError::SourceMissing { what, path }) => Err(BuildError::MissingPins {
            count: 1,
            store: store.root().to_path_buf(),
            example: format!("{what} ({})", path.display()),
        }),
        Err(e) => Err(crate_error(e)),
    }
}

/// Whether a `Cargo.lock`'s git packages are those recorded (name, version, source, commit;
/// both lists sorted).
fn same_git(in_tree: &[crates::LockedGit], locked: &[LockedGitEntry]) -> bool {
    in_tree.len() == locked.len()
        && in_tree.iter().zip(locked).all(|(t, l)| {
            t.name == l.name
                && t.version == l.version
                && t.source == l.source
                && t.commit == l.commit
        })
}

fn crate_error(e: CrateError) -> BuildError {
    BuildError::Crate(Box::new(e))
}

/// The `RUSTFLAGS` of a build: the path remapping, then the recipe's own flags.
fn rustflags(build: &CargoBuild) -> Vec<String> {
    let mut flags = vec![
        format!("--remap-path-prefix={SRC}=/usr/src/{}", build.name),
        format!("--remap-path-prefix={VENDOR}=/usr/src/crates"),
        format!("--remap-path-prefix={CARGO_HOME}=/usr/src/cargo-home"),
        format!("--remap-path-prefix={TARGET}=/usr/src/target"),
    ];
    flags.extend(build.rustflags.iter().cloned());
    flags
}

/// The command line of the build.
fn cargo_argv(build: &CargoBuild) -> Vec<String> {
    let mut argv: Vec<String> = ["cargo", "build", "--frozen", "--offline", "--profile"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.push(build.profile.clone());
    for (key, value) in &build.profile_settings {
        argv.push("--config".into());
        argv.push(format!(
            "profile.{}.{key}={}",
            build.profile,
            value.to_toml()
        ));
    }
    if let Some(p) = &build.package {
        argv.push("--package".into());
        argv.push(p.clone());
    }
    for b in &build.bins {
        argv.push("--bin".into());
        argv.push(b.clone());
    }
    if !build.features.is_empty() {
        argv.push("--features".into());
        argv.push(build.features.join(","));
    }
    if build.no_default_features {
        argv.push("--no-default-features".into());
    }
    argv
}

/// Runs a program step into `temp`: its `tree/` holds the installed files.
pub fn run(
    store: &Store,
    graph: &Graph,
    node: &Node,
    step: &ProgramStep,
    temp: &Path,
    opts: &BuildOptions,
) -> Result<(), BuildError> {
    let ProgramStep {
        build,
        source,
        crates: locked,
        git,
        project_root,
    } = step;
    let log = temp.join(LOG);
    let tools = store
        .step_path(graph.nodes[node.deps["tools"]].key.as_str())
        .join(TREE);
    // Every input is checked again before use: a store entry may have changed since.
    let missing: Vec<&LockedCrate> = locked
        .iter()
        .filter(|c| !store.has_blob(&c.checksum))
        .collect();
    if let Some(first) = missing.first() {
        return Err(BuildError::MissingPins {
            count: missing.len(),
            store: store.root().to_path_buf(),
            example: format!("crate {} {}", first.name, first.version),
        });
    }
    let git_missing: Vec<SourcePin> = crates::git_pins(git)
        .into_iter()
        .filter(|p| crate::sources::fetch::stored_path(store, p).is_none())
        .collect();
    if let Some(first) = git_missing.first() {
        return Err(BuildError::MissingPins {
            count: git_missing.len(),
            store: store.root().to_path_buf(),
            example: first.describe(),
        });
    }
    let work = temp.join("work");
    let src = work.join("src");
    let vendor = work.join("vendor");
    let home = work.join("cargo-home");
    let target = work.join("target");
    fs_err::create_dir(&work).map_err(BuildError::io(&work))?;
    match source {
        // A directory of the project: the pinned files, read and checked again now.
        SourcePin::Path { .. } => crate::sources::path::copy_pinned(project_root, source, &src)
            .map_err(|e| crate_error(CrateError::from(Box::new(e))))?,
        _ => unpack_program_source(store, source, &src)?,
    }
    // The source's own Cargo.lock must pin exactly the crates the lock recorded.
    let in_tree = crates::packages_of_tree(source, &src, build.dir()).map_err(crate_error)?;
    if &in_tree.crates != locked || !same_git(&in_tree.git, git) {
        return Err(BuildError::StaleLock {
            detail: format!(
                "the Cargo.lock of {} does not list the crates pins.lock records for it",
                source.describe()
            ),
        });
    }
    crates::write_vendor_dir(store, locked, &vendor).map_err(crate_error)?;
    let git_dirs = if git.is_empty() {
        Vec::new()
    } else {
        let scratch = work.join("git-trees");
        let dirs = crates::write_git_vendor(store, git, &vendor, Path::new(VENDOR), &scratch)
            .map_err(crate_error)?;
        fs_err::remove_dir_all(&scratch).map_err(BuildError::io(&scratch))?;
        dirs
    };
    fs_err::create_dir(&home).map_err(BuildError::io(&home))?;
    let config = home.join("config.toml");
    fs_err::write(
        &config,
        crates::vendor_config_git(Path::new(VENDOR), &git_dirs),
    )
    .map_err(BuildError::io(&config))?;
    fs_err::create_dir(&target).map_err(BuildError::io(&target))?;

    let mut cmd = build_step(
        cargo_argv(build),
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
        Mount::ReadOnly {
            src: vendor.clone(),
            dst: PathBuf::from(VENDOR),
        },
        Mount::Writable {
            src: home.clone(),
            dst: PathBuf::from(CARGO_HOME),
        },
        Mount::Writable {
            src: target.clone(),
            dst: PathBuf::from(TARGET),
        },
    ];
    for (k, v) in [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/work"),
        ("CARGO_HOME", CARGO_HOME),
        ("CARGO_TARGET_DIR", TARGET),
        ("CARGO_INCREMENTAL", "0"),
        ("CARGO_TERM_COLOR", "never"),
        ("CARGO_TERM_PROGRESS_WHEN", "never"),
    ] {
        cmd.env.insert(k.into(), v.into());
    }
    // Separated by 0x1f, so a flag may hold spaces.
    cmd.env.insert(
        "CARGO_ENCODED_RUSTFLAGS".into(),
        rustflags(build).join("\u{1f}"),
    );
    super::exec::log_line(&log, &format!("==> {}", cargo_argv(build).join(" ")))?;
    super::exec::run_step_named(&node.name, &cmd, &log, &opts.report)?;

    // Copy the declared files out, read beneath the target directory hermetic made (the
    // build may have made `target/<profile>` a link to anywhere).
    install_files(
        node,
        &target,
        build.profile_dir(),
        &build.install,
        &temp.join(TREE),
    )?;
    // The build tree is large and not an output.
    fs_err::remove_dir_all(&work).map_err(BuildError::io(&work))?;
    Ok(())
}

/// Copies each built file `from` (a path under `built/prefix`, read beneath `built`: the
/// build made that tree and may have put links anywhere in it) to its image path `to` in
/// `tree` (made here), with fixed modes and `SOURCE_DATE_EPOCH` times.
pub(super) fn install_files(
    node: &Node,
    built: &Path,
    prefix: &str,
    install: &BTreeMap<String, String>,
    tree: &Path,
) -> Result<(), BuildError> {
    let built = crate::beneath::Beneath::open(built)?;
    fs_err::create_dir(tree).map_err(BuildError::io(tree))?;
    let mut made_dirs = Vec::new();
    for (from, to) in install {
        let rel = to.trim_start_matches('/');
        let dst = tree.join(rel);
        let mut parent = tree.to_path_buf();
        for c in Path::new(rel)
            .parent()
            .into_iter()
            .flat_map(Path::components)
        {
            parent.push(c);
            if !parent.exists() {
                fs_err::create_dir(&parent).map_err(BuildError::io(&parent))?;
                made_dirs.push(parent.clone());
            }
        }
        let from = if prefix.is_empty() {
            from.clone()
        } else {
            format!("{prefix}/{from}")
        };
        super::outputs::copy_beneath(&built, &from, &dst)?;
        set_mode_and_time(&dst, node.source_date_epoch, true)?;
    }
    // Deepest first, so a parent's time is set after its children were made.
    made_dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in made_dirs {
        set_mode_and_time(&d, node.source_date_epoch, false)?;
    }
    set_mode_and_time(tree, node.source_date_epoch, false)
}

/// A file keeps only its execute bit (`0755` or `0644`); directories are `0755`; every
/// time is `SOURCE_DATE_EPOCH`.
fn set_mode_and_time(path: &Path, sde: u64, file: bool) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = fs_err::symlink_metadata(path).map_err(BuildError::io(path))?;
    let mode = if !file || meta.permissions().mode() & 0o100 != 0 {
        0o755
    } else {
        0o644
    };
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(BuildError::io(path))?;
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(sde);
    let f = fs_err::File::open(path).map_err(BuildError::io(path))?;
    f.file()
        .set_times(
            std::fs::FileTimes::new()
                .set_modified(time)
                .set_accessed(time),
        )
        .map_err(BuildError::io(path))
}

/// The key input naming a `deb` source the image installs (`deb-source:<name>` → SHA-256),
/// and the setting saying whether its maintainer scripts are dropped.
const DEB_SOURCE_PIN: &str = "deb-source:";
const DEB_SOURCE_DROP: &str = "deb-source-drop-scripts:";

/// The content hash the lock pins the source `name` (of `kind`, for the message) at.
fn locked_content_hash<'a>(
    lock: &'a Lockfile,
    kind: &str,
    name: &str,
) -> Result<&'a str, BuildError> {
    lock.upstream
        .iter()
        .find(|u| u.pin.name() == name)
        .and_then(|u| u.pin.content_hash())
        .ok_or_else(|| BuildError::StaleLock {
            detail: format!("{kind} source `{name}` has no content pin"),
        })
}

/// Adds the recipe's `deb` sources to the image step's inputs: each by its locked SHA-256,
/// with its `drop-maintainer-scripts`. [`install_into_image`] installs them from these.
pub fn add_deb_sources(
    inputs: &mut StepInputs,
    lock: &Lockfile,
    recipe: &ResolvedRecipe,
) -> Result<(), BuildError> {
    for (name, pin) in &recipe.sources {
        let SourcePin::Deb {
            drop_maintainer_scripts,
            ..
        } = pin
        else {
            continue;
        };
        let hash = locked_content_hash(lock, "deb", name)?;
        inputs
            .pins
            .insert(format!("{DEB_SOURCE_PIN}{name}"), hash.to_string());
        inputs.settings.insert(
            format!("{DEB_SOURCE_DROP}{name}"),
            drop_maintainer_scripts.to_string(),
        );
    }
    Ok(())
}

/// The recipe's `file` sources as the image's steps see them: `sources/<name>` under
/// `$TARBALLDIR`, each by its locked SHA-256 (a blob of the store, checked again when it is
/// staged).
pub fn staged_file_sources(
    lock: &Lockfile,
    recipe: &ResolvedRecipe,
) -> Result<Vec<(String, String)>, BuildError> {
    let mut staged = Vec::new();
    for (name, pin) in &recipe.sources {
        if !matches!(pin, SourcePin::File { .. }) {
            continue;
        }
        let hash = locked_content_hash(lock, "file", name)?;
        staged.push((format!("sources/{name}"), hash.to_string()));
    }
    Ok(staged)
}

/// Where the store's blobs are seen by the step installing `deb` sources.
const DEB_SOURCE_DIR: &str = "/.hermetic-deb-sources";

/// The script installing the `deb` source `blob` (under [`DEB_SOURCE_DIR`]) with dpkg;
/// without its maintainer scripts, it is first unpacked and packed again without them.
fn deb_source_script(blob: &str, drop_scripts: bool) -> String {
    let mut s = format!(
        "set -eu\n\
         printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d\n\
         chmod 0755 /usr/sbin/policy-rc.d\n\
         deb={DEB_SOURCE_DIR}/{blob}\n"
    );
    if drop_scripts {
        s.push_str(
            "w=$(mktemp -d)\n\
             dpkg-deb -R \"$deb\" \"$w/p\"\n\
             rm -f \"$w/p/DEBIAN/preinst\" \"$w/p/DEBIAN/postinst\" \"$w/p/DEBIAN/prerm\" \"$w/p/DEBIAN/postrm\" \"$w/p/DEBIAN/config\"\n\
             dpkg-deb --build \"$w/p\" \"$w/p.deb\" >/dev/null\n\
             deb=$w/p.deb\n",
        );
    }
    s.push_str("dpkg --install \"$deb\" </dev/null\n");
    if drop_scripts {
        s.push_str("rm -rf \"$w\"\n");
    }
    s.push_str("rm -f /usr/sbin/policy-rc.d\n");
    s
}

/// In the image step: copies the tree of every program step the image depends on over the
/// image `tree`, in the sandbox (the tree's files belong to its subordinate ids), then
/// installs the recipe's `deb` sources with dpkg (the image's own), each re-hashed first.
pub fn install_into_image(
    store: &Store,
    graph: &Graph,
    node: &Node,
    tree: &Path,
    opts: &BuildOptions,
) -> Result<(), BuildError> {
    let log = tree.parent().unwrap_or(tree).join(LOG);
    for (role, &i) in &node.deps {
        let Some(name) = role.strip_prefix(ROLE_PREFIX) else {
            continue;
        };
        let built = store.step_path(graph.nodes[i].key.as_str()).join(TREE);
        let dst = format!("/.hermetic-program-{name}");
        let mut lay = super::exec::tree_step(node, tree, &log);
        lay.argv = vec![
            "/bin/cp".into(),
            "-R".into(),
            "--preserve=mode,timestamps".into(),
            "--no-target-directory".into(),
            "--remove-destination".into(),
            dst.clone(),
            "/".into(),
        ];
        lay.mounts.push(Mount::ReadOnly {
            src: built,
            dst: PathBuf::from(&dst),
        });
        super::exec::log_line(&log, &format!("==> install program {name}"))?;
        super::exec::run_step_named(
            &format!("{} (program {name})", node.name),
            &lay,
            &log,
            &opts.report,
        )?;
    }
    for (key, hash) in &node.inputs.pins {
        let Some(name) = key.strip_prefix(DEB_SOURCE_PIN) else {
            continue;
        };
        let what = format!("deb source `{name}`");
        if !store.has_blob(hash) {
            return Err(BuildError::MissingPins {
                count: 1,
                store: store.root().to_path_buf(),
                example: format!("{what} ({})", store.blob_path(hash).display()),
            });
        }
        let blob = store.verified_blob(hash, None, &what)?;
        let drop_scripts = node
            .inputs
            .settings
            .get(&format!("{DEB_SOURCE_DROP}{name}"))
            .is_some_and(|v| v == "true");
        let mut install = super::exec::tree_step(node, tree, &log);
        install.argv = vec![
            "/bin/sh".into(),
            "-c".into(),
            deb_source_script(hash, drop_scripts),
        ];
        install.mounts.push(Mount::ReadOnly {
            src: blob.parent().unwrap_or(Path::new("/")).to_path_buf(),
            dst: PathBuf::from(DEB_SOURCE_DIR),
        });
        super::exec::log_line(&log, &format!("==> install {what}"))?;
        super::exec::run_step_named(
            &format!("{} ({what})", node.name),
            &install,
            &log,
            &opts.report,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build() -> CargoBuild {
        toml::from_str(
            "name = \"rg\"\nsource = \"ripgrep\"\nbins = [\"rg\"]\nfeatures = [\"pcre2\", \"simd\"]\nno-default-features = true\nrustflags = [\"-C\", \"target-cpu=x86-64\"]\ninstall = { \"rg\" = \"/usr/bin/rg\" }\n",
        )
        .unwrap()
    }

    #[test]
    fn cargo_is_run_frozen_offline_with_the_recipe_options() {
        let argv = cargo_argv(&build());
        assert_eq!(
            argv,
            [
                "cargo",
                "build",
                "--frozen",
                "--offline",
                "--profile",
                "release",
                "--bin",
                "rg",
                "--features",
                "pcre2,simd",
                "--no-default-features"
            ]
        );
    }

    #[test]
    fn profile_settings_become_config_overrides_of_the_chosen_profile() {
        let mut b = build();
        // Without settings, the options in the step key are what they were before the key
        // existed, so existing builds keep their cached steps.
        let options = serde_json::to_string(&b).unwrap();
        assert!(!options.contains("profile-settings"), "{options}");
        b.profile = "dist".into();
        b.profile_settings = toml::from_str(
            "lto = \"thin\"\ncodegen-units = 1\npanic = \"abort\"\nincremental = false\n",
        )
        .unwrap();
        let argv = cargo_argv(&b);
        assert_eq!(
            argv[4..14],
            [
                "--profile",
                "dist",
                "--config",
                "profile.dist.codegen-units=1",
                "--config",
                "profile.dist.incremental=false",
                "--config",
                "profile.dist.lto=\"thin\"",
                "--config",
                "profile.dist.panic=\"abort\"",
            ]
        );
        assert!(
            serde_json::to_string(&b)
                .unwrap()
                .contains("\"profile-settings\"")
        );
    }

    #[test]
    fn a_deb_source_loses_its_maintainer_scripts_only_when_asked() {
        let kept = deb_source_script("ab12", false);
        assert!(kept.contains("deb=/.hermetic-deb-sources/ab12\n"), "{kept}");
        assert!(kept.contains("dpkg --install \"$deb\""), "{kept}");
        assert!(!kept.contains("DEBIAN/postinst"), "{kept}");
        let dropped = deb_source_script("ab12", true);
        for script in ["preinst", "postinst", "prerm", "postrm", "config"] {
            assert!(
                dropped.contains(&format!("\"$w/p/DEBIAN/{script}\"")),
                "{dropped}"
            );
        }
        let repack = dropped.find("dpkg-deb --build").unwrap();
        let install = dropped.find("dpkg --install").unwrap();
        assert!(repack < install, "{dropped}");
    }

    #[test]
    fn every_sandbox_path_is_remapped_before_the_recipe_flags() {
        let flags = rustflags(&build());
        for dir in [SRC, VENDOR, CARGO_HOME, TARGET] {
            assert!(
                flags
                    .iter()
                    .any(|f| f.starts_with(&format!("--remap-path-prefix={dir}="))),
                "{dir} is not remapped: {flags:?}"
            );
        }
        assert_eq!(&flags[flags.len() - 2..], ["-C", "target-cpu=x86-64"]);
    }
}
