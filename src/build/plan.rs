//! Turning recipes and `pins.lock` into the graph of steps of one or more images.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::kernel::{BaseConfig, KernelSpec};
use crate::key::{
    DependencyInput, OverlayInput, ScriptInput, StepInputs, StepKey, TreeHashOptions,
};
use crate::lockfile::{BUILD_TAG_SUFFIX, KERNEL_TAG_SUFFIX, Lockfile};
use crate::recipe::{KernelBase, OutputFormat, Project, ResolvedKernel, ResolvedRecipe};

use super::BuildError;

/// A pinned .deb a tree is assembled from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebPin {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
}

/// What the kernel step builds from (besides its tools tree).
#[derive(Debug, Clone)]
pub struct KernelStep {
    /// The `linux-source-*` deb.
    pub source: DebPin,
    /// The `linux-config-*` deb, when the base config is a Debian one.
    pub config: Option<DebPin>,
    /// The kernel's description: what its key is computed from and what it runs with.
    pub spec: KernelSpec,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// Install a package closure into an empty tree (an image's rootfs or a tools tree).
    Rootfs { tag: String, debs: Vec<DebPin> },
    /// Lay the overlays over the rootfs, run the recipe's steps, clean up.
    Image {
        recipe: Box<ResolvedRecipe>,
        /// Pinned files the steps see under `$TARBALLDIR`: relative path and SHA-256.
        staged: Vec<(String, String)>,
        architecture: String,
    },
    /// Build the kernel from Debian's source in the `tools` tree.
    Kernel(Box<KernelStep>),
    /// Build a program from pinned sources in the `tools` tree (see [`super::program`]).
    Program(Box<super::program::ProgramStep>),
    /// Build a Go program from pinned sources and modules (see [`super::go`]).
    Go(Box<super::go::GoStep>),
    /// Write the image tree in the recipe's format.
    Output {
        format: OutputFormat,
        stem: String,
        /// The kernel command line of a bootable format.
        cmdline: String,
        /// The project's `[identity]`: the disk's GUIDs, the ESP's serial, the VHD seed.
        identity: crate::recipe::IdentityConfig,
    },
}

impl NodeKind {
    /// A short word for what the step does.
    pub fn word(&self) -> &'static str {
        match self {
            NodeKind::Rootfs { .. } => "rootfs",
            NodeKind::Image { .. } => "image",
            NodeKind::Kernel(_) => "kernel",
            NodeKind::Program(_) | NodeKind::Go(_) => "program",
            NodeKind::Output { .. } => "output",
        }
    }
}

/// One step of the graph.
#[derive(Debug, Clone)]
pub struct Node {
    /// `<image>/<step>`, e.g. `base/rootfs`, `gcp/tools`.
    pub name: String,
    pub kind: NodeKind,
    /// The steps this one builds on, by role (`rootfs`, `tools`, `image`, `kernel`), as node
    /// indexes.
    pub deps: BTreeMap<String, usize>,
    pub key: StepKey,
    /// Everything the key was computed from (kept for `hermetic plan -v`).
    pub inputs: StepInputs,
    /// `SOURCE_DATE_EPOCH` of the run; the key holds the same value (`source-date-epoch`).
    pub source_date_epoch: u64,
}

/// The steps of the requested images, dependencies before dependents.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Per requested image, the node of its final output.
    pub targets: Vec<(String, usize)>,
    /// `SOURCE_DATE_EPOCH` of every step, from the project (`[build] source-date-epoch`):
    /// the value the keys hold is the value the runs use.
    pub source_date_epoch: u64,
    /// Per target that lacks some, the upstream sources left out (`--omit`), sorted.
    pub omitted: BTreeMap<String, Vec<String>>,
}

impl Graph {
    pub(super) fn add(&mut self, node: Node) -> usize {
        if let Some(i) = self.nodes.iter().position(|n| n.key == node.key) {
            return i;
        }
        self.nodes.push(node);
        self.nodes.len() - 1
    }
}

/// At most this many profiles of a recipe are combined every way by [`live_steps`]; with
/// more, only none, each alone and all together are.
pub const LIVE_PROFILE_COMBINATIONS: usize = 6;

/// The keys of every step some image of the project uses: each recipe without profiles and
/// with each selection of its profiles (in name order). `hermetic cache gc` keeps these.
pub fn live_steps(
    project: &Project,
    lock: &Lockfile,
) -> Result<std::collections::BTreeSet<String>, BuildError> {
    let mut keys = std::collections::BTreeSet::new();
    for name in project.recipes.keys() {
        let profiles: Vec<String> = project.profiles(name)?.into_iter().collect();
        let selections: Vec<Vec<String>> = if profiles.len() <= LIVE_PROFILE_COMBINATIONS {
            crate::recipe::selections(&profiles)
        } else {
            std::iter::once(Vec::new())
                .chain(profiles.iter().map(|p| vec![p.clone()]))
                .chain(std::iter::once(profiles.clone()))
                .collect()
        };
        for selected in selections {
            let graph = plan(project, lock, std::slice::from_ref(name), &selected)?;
            keys.extend(graph.nodes.iter().map(|n| n.key.as_str().to_string()));
        }
    }
    Ok(keys)
}

/// Builds the graph of `targets` (recipe names) with the selected `profiles`.
pub fn plan(
    project: &Project,
    lock: &Lockfile,
    targets: &[String],
    profiles: &[String],
) -> Result<Graph, BuildError> {
    plan_omitting(
        project,
        lock,
        targets,
        profiles,
        &std::collections::BTreeSet::new(),
    )
}

/// [`plan`] without the upstream sources `omit` names, and what is built from them (see
/// [`super::omit`]); each name must be a source of some target.
pub fn plan_omitting(
    project: &Project,
    lock: &Lockfile,
    targets: &[String],
    profiles: &[String],
    omit: &std::collections::BTreeSet<String>,
) -> Result<Graph, BuildError> {
    let sde = project.config.build.source_date_epoch;
    // A pin deleted from the lock (or a lock cut short) must not give an image that silently
    // lacks a package: every closure must hold what it was asked for and what that needs.
    let problems = crate::lock::check_closures(lock, &project.config.archive.architecture);
    if !problems.is_empty() {
        return Err(BuildError::StaleLock {
            detail: problems.join("; "),
        });
    }
    let mut graph = Graph {
        source_date_epoch: sde,
        ..Graph::default()
    };
    let mut declared = std::collections::BTreeSet::new();
    for target in targets {
        // `full` is the recipe as locked: its toolchains are checked against the lock whole.
        let full = project.resolve_with_profiles(target, profiles)?;
        declared.extend(full.sources.keys().cloned());
        let mut recipe = full.clone();
        let omitted = super::omit::omit_sources(&mut recipe, omit);
        // The closure of the recipe with the selected profiles that pin something (`gcp` or
        // `gcp/devtools`): it tags the pins of the rootfs, tools, tarballs and sources.
        let closure = project.lock_name(target, profiles)?;
        check_lock_matches(lock, &recipe, &closure)?;

        let bootable = super::bootable::is_bootable(recipe.format);
        let rootfs = rootfs_node(lock, &recipe, &closure, sde, "rootfs")?;
        let rootfs = graph.add(rootfs);

        let tools = if recipe.steps.is_empty() {
            None
        } else {
            let tag = format!("{closure}{BUILD_TAG_SUFFIX}");
            Some(graph.add(rootfs_node(lock, &recipe, &tag, sde, "tools")?))
        };

        let mut inputs = StepInputs {
            kind: "image".into(),
            name: format!("{}/image", recipe.name),
            environment: recipe.environment.clone(),
            ..Default::default()
        };
        inputs
            .settings
            .insert("source-date-epoch".into(), sde.to_string());
        // The overlays as they will be laid: modes from the recipe and git, not the checkout
        // (the recipe's environment, which fills their settings, is in the key above).
        for prepared in super::overlay::prepare(&recipe.overlays, &recipe.overlay_modes)? {
            inputs.overlays.push(OverlayInput {
                name: prepared.overlay.name.clone(),
                tree: prepared.manifest,
            });
        }
        if !recipe.overlays.is_empty() {
            // How overlays are laid changed (hermetic writes them, settings substituted, an
            // existing directory keeps its mode): a stored image laid by `cp` is not reused.
            // Images without overlays keep their keys.
            inputs
                .settings
                .insert("overlays".into(), super::overlay::LAYING_VERSION.into());
        }
        for step in &recipe.steps {
            let mut content = step.script.clone().into_bytes();
            // The step's own environment, tree and sources change its result too.
            for (k, v) in recipe.step_environment(step) {
                content.extend_from_slice(format!("\0env {k}={v}").as_bytes());
            }
            content.extend_from_slice(format!("\0tree {:?}", step.tree).as_bytes());
            for source in &step.sources {
                let hash = crate::key::hash_tree(
                    &source.path,
                    TreeHashOptions {
                        owners: false,
                        mtimes: false,
                    },
                )?;
                content
                    .extend_from_slice(format!("\0source {} {hash}", source.relative).as_bytes());
            }
            inputs.scripts.push(ScriptInput {
                name: step.name.clone(),
                content,
            });
        }
        // The image's tarballs, source packages and `file` sources, as the steps see them in
        // $TARBALLDIR.
        let mut staged: Vec<(String, String)> = Vec::new();
        for t in &lock.tarballs {
            if t.recipes.iter().any(|r| r == &closure) {
                staged.push((t.name.clone(), t.sha256.clone()));
            }
        }
        for src in &lock.sources {
            if src.recipes.iter().any(|r| r == &closure) {
                for f in &src.files {
                    staged.push((
                        format!("source-packages/{}/{}", src.name, f.name),
                        f.sha256.clone(),
                    ));
                }
            }
        }
        // The recipe's `file` sources, under `sources/<name>`.
        staged.extend(super::program::staged_file_sources(lock, &recipe)?);
        staged.sort();
        for (name, sha) in &staged {
            inputs.pins.insert(format!("staged:{name}"), sha.clone());
        }
        let architecture = project.config.archive.architecture.clone();
        inputs
            .settings
            .insert("architecture".into(), architecture.clone());
        inputs
            .settings
            .insert("profiles".into(), recipe.profiles.join(" "));
        inputs
            .settings
            .insert("image-id".into(), recipe.image_id.clone());
        inputs.settings.insert(
            "image-version".into(),
            recipe.version.clone().unwrap_or_default(),
        );
        if bootable && recipe.kernel.is_some() {
            // The image step then leaves /boot alone and refuses a packaged kernel.
            inputs
                .settings
                .insert("kernel".into(), "built from source".into());
        }
        if !omitted.is_empty() {
            // Read back by the image step, which writes them into os-release.
            inputs
                .settings
                .insert(super::omit::OMITTED_SETTING.into(), omitted.join(" "));
            graph.omitted.insert(recipe.name.clone(), omitted);
        }
        let mut deps = BTreeMap::new();
        deps.insert("rootfs".to_string(), rootfs);
        if let Some(t) = tools {
            deps.insert("tools".to_string(), t);
        }
        deps.extend(super::program::program_nodes(
            &mut graph,
            lock,
            &recipe,
            &full.cargo_packages(),
            sde,
            &project.root,
        )?);
        deps.extend(super::go::go_nodes(
            &mut graph,
            lock,
            &recipe,
            &full.go_packages(),
            sde,
        )?);
        super::program::add_deb_sources(&mut inputs, lock, &recipe)?;
        depend_on(&mut inputs, &graph, &deps);
        let image = graph.add(Node {
            name: format!("{}/image", recipe.name),
            key: inputs.key(),
            inputs,
            kind: NodeKind::Image {
                recipe: Box::new(recipe.clone()),
                staged,
                architecture,
            },
            deps,
            source_date_epoch: sde,
        });

        let format = recipe.format;
        let stem = recipe.output_stem();
        let cmdline = recipe
            .cmdline
            .clone()
            .unwrap_or_else(|| super::bootable::default_cmdline(format).to_string());
        let mut inputs = StepInputs {
            kind: "output".into(),
            name: format!("{}/output", recipe.name),
            ..Default::default()
        };
        inputs.settings.insert("format".into(), format.to_string());
        inputs.settings.insert("stem".into(), stem.clone());
        if super::bootable::is_bootable(format) {
            inputs.settings.insert("cmdline".into(), cmdline.clone());
            let id = &project.config.identity;
            for (k, v) in [
                ("disk-guid", &id.disk_guid),
                ("esp-guid", &id.esp_guid),
                ("esp-volume-id", &id.esp_volume_id),
                ("vhd-seed", &id.vhd_seed),
            ] {
                inputs.settings.insert(k.into(), v.clone());
            }
            inputs.settings.insert(
                "bootable-outputs".into(),
                super::bootable::OUTPUTS_VERSION.to_string(),
            );
        }
        inputs
            .settings
            .insert("source-date-epoch".into(), sde.to_string());
        let mut deps = BTreeMap::from([("image".to_string(), image)]);
        if bootable && let Some(kernel) = &recipe.kernel {
            let identity = crate::kernel::build::KernelIdentity::from(&project.config.identity);
            let k = kernel_nodes(&mut graph, lock, &recipe, kernel, sde, identity)?;
            deps.insert("kernel".to_string(), k);
        }
        depend_on(&mut inputs, &graph, &deps);
        let output = graph.add(Node {
            name: format!("{}/output", recipe.name),
            key: inputs.key(),
            inputs,
            kind: NodeKind::Output {
                format,
                stem,
                cmdline,
                identity: project.config.identity.clone(),
            },
            deps,
            source_date_epoch: sde,
        });
        graph.targets.push((recipe.name.clone(), output));
    }
    super::omit::check_declared(omit, &declared, targets)?;
    Ok(graph)
}

/// Adds the keys of the steps `deps` (role → node index) to a step's inputs.
fn depend_on(inputs: &mut StepInputs, graph: &Graph, deps: &BTreeMap<String, usize>) {
    for (role, &i) in deps {
        inputs.dependencies.insert(
            role.clone(),
            DependencyInput {
                key: graph.nodes[i].key.clone(),
                output: None,
            },
        );
    }
}

/// The pins of `lock` carrying `tag`.
pub(super) fn tagged_debs(lock: &Lockfile, tag: &str) -> Vec<DebPin> {
    lock.packages
        .iter()
        .filter(|p| p.recipes.iter().any(|r| r == tag))
        .map(|p| DebPin {
            name: p.name.clone(),
            version: p.version.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
        })
        .collect()
}

/// The kernel's tools tree and the kernel step; returns the kernel node. Both are keyed by
/// their inputs only, so images sharing a kernel share the steps.
fn kernel_nodes(
    graph: &mut Graph,
    lock: &Lockfile,
    recipe: &ResolvedRecipe,
    kernel: &ResolvedKernel,
    sde: u64,
    identity: crate::kernel::build::KernelIdentity,
) -> Result<usize, BuildError> {
    let tag = format!("{}{KERNEL_TAG_SUFFIX}", recipe.name);
    let all = tagged_debs(lock, &tag);
    let inputs_named = kernel.input_packages();
    let find = |name: &str| -> Result<DebPin, BuildError> {
        all.iter()
            .find(|d| d.name == name)
            .cloned()
            .ok_or_else(|| BuildError::StaleLock {
                detail: format!("`{name}` of the kernel of `{}` is not pinned", recipe.name),
            })
    };
    let source = find(&kernel.source)?;
    let config = match &kernel.base {
        KernelBase::Debian { package, .. } => Some(find(package)?),
        KernelBase::Target(_) => None,
    };
    // The source and config debs are inputs of the build, not tools: they stay out of the tree.
    let tools_debs: Vec<DebPin> = all
        .into_iter()
        .filter(|d| !inputs_named.contains(&d.name))
        .collect();
    // Named after the recipe whose [kernel] table it is: every image built on it shares it.
    let mut tools = tree_node(recipe, &tag, tools_debs, sde, "kernel-tools")?;
    tools.name = format!("{}/kernel-tools", kernel.recipe);
    let tools = graph.add(tools);

    let (fragments, patches, accepted) = crate::kernel::build::project_inputs(&kernel.dir)?;
    let spec = KernelSpec {
        base: match &kernel.base {
            KernelBase::Debian { file, .. } => BaseConfig::Debian { file: file.clone() },
            KernelBase::Target(t) => BaseConfig::MakeTarget(t.clone()),
        },
        fragments,
        accepted,
        patches,
        source_date_epoch: sde,
        identity,
    };
    let mut inputs = spec.key_inputs()?;
    // Shared by every image with the same kernel inputs.
    inputs.name = "kernel".into();
    inputs.pins.insert(
        format!("source:{}_{}", source.name, source.version),
        source.sha256.clone(),
    );
    if let Some(c) = &config {
        inputs
            .pins
            .insert(format!("config:{}_{}", c.name, c.version), c.sha256.clone());
    }
    let deps = BTreeMap::from([("tools".to_string(), tools)]);
    depend_on(&mut inputs, graph, &deps);
    Ok(graph.add(Node {
        name: format!("{}/kernel", kernel.recipe),
        key: inputs.key(),
        inputs,
        kind: NodeKind::Kernel(Box::new(KernelStep {
            source,
            config,
            spec,
        })),
        deps,
        source_date_epoch: sde,
    }))
}

fn rootfs_node(
    lock: &Lockfile,
    recipe: &ResolvedRecipe,
    tag: &str,
    sde: u64,
    word: &str,
) -> Result<Node, BuildError> {
    tree_node(recipe, tag, tagged_debs(lock, tag), sde, word)
}

/// A tree installed from `debs` (an image's rootfs or a tools tree).
pub(super) fn tree_node(
    recipe: &ResolvedRecipe,
    tag: &str,
    mut debs: Vec<DebPin>,
    sde: u64,
    word: &str,
) -> Result<Node, BuildError> {
    if debs.is_empty() {
        return Err(BuildError::NothingLocked {
            recipe: recipe.name.clone(),
            tag: tag.to_string(),
        });
    }
    debs.sort();
    let mut inputs = StepInputs {
        kind: "rootfs".into(),
        // The name is not part of what makes the tree: two images with the same closure
        // share one rootfs.
        name: "rootfs".into(),
        ..Default::default()
    };
    for d in &debs {
        inputs
            .pins
            .insert(format!("deb:{}_{}", d.name, d.version), d.sha256.clone());
    }
    inputs
        .settings
        .insert("source-date-epoch".into(), sde.to_string());
    Ok(Node {
        name: format!("{}/{word}", recipe.name),
        key: inputs.key(),
        inputs,
        kind: NodeKind::Rootfs {
            tag: tag.to_string(),
            debs,
        },
        deps: BTreeMap::new(),
        source_date_epoch: sde,
    })
}

/// The lock must have been made from these very recipe requests.
/// `closure` is the lock's name for the recipe with its selected profiles (`gcp/devtools`);
/// the kernel, which profiles cannot change, is the plain recipe's.
fn check_lock_matches(
    lock: &Lockfile,
    recipe: &ResolvedRecipe,
    closure: &str,
) -> Result<(), BuildError> {
    let find = |name: &str| {
        lock.recipes
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| BuildError::StaleLock {
                detail: format!("recipe `{name}` is not in the lock"),
            })
    };
    let locked = find(closure)?;
    let want: Vec<&String> = recipe.packages.iter().collect();
    let have: Vec<&String> = locked.packages.iter().collect();
    if want != have {
        return Err(BuildError::StaleLock {
            detail: format!("the packages of `{closure}` changed"),
        });
    }
    let want: Vec<&String> = recipe.build_packages.iter().collect();
    let have: Vec<&String> = locked.build_packages.iter().collect();
    if want != have {
        return Err(BuildError::StaleLock {
            detail: format!("the build-packages of `{closure}` changed"),
        });
    }
    let want = recipe
        .kernel
        .as_ref()
        .map(|k| k.lock_packages())
        .unwrap_or_default();
    if want != find(&recipe.name)?.kernel_packages {
        return Err(BuildError::StaleLock {
            detail: format!("the kernel packages of `{}` changed", recipe.name),
        });
    }
    Ok(())
}

/// The store paths of the .debs of a rootfs node.
pub fn deb_paths(store: &crate::store::Store, debs: &[DebPin]) -> Vec<PathBuf> {
    debs.iter().map(|d| store.blob_path(&d.sha256)).collect()
}
