//! Turning recipes and `pins.lock` into the graph of steps of one or more images.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::key::{
    DependencyInput, OverlayInput, ScriptInput, StepInputs, StepKey, TreeHashOptions,
};
use crate::lockfile::{BUILD_TAG_SUFFIX, Lockfile};
use crate::recipe::{OutputFormat, Project, ResolvedRecipe};

use super::BuildError;

/// A pinned .deb a tree is assembled from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebPin {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
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
    /// Write the image tree in the recipe's format.
    Output {
        format: OutputFormat,
        stem: String,
        /// The kernel command line of a bootable format.
        cmdline: String,
    },
}

impl NodeKind {
    /// A short word for what the step does.
    pub fn word(&self) -> &'static str {
        match self {
            NodeKind::Rootfs { .. } => "rootfs",
            NodeKind::Image { .. } => "image",
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
    /// The steps this one builds on, by role (`rootfs`, `tools`, `image`), as node indexes.
    pub deps: BTreeMap<String, usize>,
    pub key: StepKey,
    /// Everything the key was computed from (kept for `hermetic plan -v`).
    pub inputs: StepInputs,
}

/// The steps of the requested images, dependencies before dependents.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Per requested image, the node of its final output.
    pub targets: Vec<(String, usize)>,
}

impl Graph {
    fn add(&mut self, node: Node) -> usize {
        if let Some(i) = self.nodes.iter().position(|n| n.key == node.key) {
            return i;
        }
        self.nodes.push(node);
        self.nodes.len() - 1
    }
}

/// Builds the graph of `targets` (recipe names) with the selected `profiles`.
pub fn plan(
    project: &Project,
    lock: &Lockfile,
    targets: &[String],
    profiles: &[String],
) -> Result<Graph, BuildError> {
    let sde = project.config.build.source_date_epoch;
    let mut graph = Graph::default();
    for target in targets {
        let recipe = project.resolve_with_profiles(target, profiles)?;
        if !profiles.is_empty() {
            let plain = project.resolve(target)?;
            if plain.packages != recipe.packages || plain.build_packages != recipe.build_packages {
                return Err(BuildError::ProfilePackages {
                    recipe: recipe.name.clone(),
                    profiles: profiles.join(", "),
                });
            }
        }
        check_lock_matches(lock, &recipe)?;

        let rootfs = rootfs_node(lock, &recipe, &recipe.name, sde, "rootfs")?;
        let rootfs = graph.add(rootfs);

        let tools = if recipe.steps.is_empty() {
            None
        } else {
            let tag = format!("{}{}", recipe.name, BUILD_TAG_SUFFIX);
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
        for overlay in &recipe.overlays {
            let tree = crate::key::tree_manifest(
                &overlay.path,
                TreeHashOptions {
                    owners: false,
                    mtimes: false,
                },
            )?;
            inputs.overlays.push(OverlayInput {
                name: overlay.name.clone(),
                tree,
            });
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
        // The image's tarballs and source packages, as the steps see them in $TARBALLDIR.
        let mut staged: Vec<(String, String)> = Vec::new();
        for t in &lock.tarballs {
            if t.recipes.iter().any(|r| r == &recipe.name) {
                staged.push((t.name.clone(), t.sha256.clone()));
            }
        }
        for src in &lock.sources {
            if src.recipes.iter().any(|r| r == &recipe.name) {
                for f in &src.files {
                    staged.push((
                        format!("source-packages/{}/{}", src.name, f.name),
                        f.sha256.clone(),
                    ));
                }
            }
        }
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
        let mut deps = BTreeMap::new();
        deps.insert("rootfs".to_string(), rootfs);
        if let Some(t) = tools {
            deps.insert("tools".to_string(), t);
        }
        for (role, &i) in &deps {
            inputs.dependencies.insert(
                role.clone(),
                DependencyInput {
                    key: graph.nodes[i].key.clone(),
                    output: None,
                },
            );
        }
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
        }
        inputs
            .settings
            .insert("source-date-epoch".into(), sde.to_string());
        inputs.dependencies.insert(
            "image".into(),
            DependencyInput {
                key: graph.nodes[image].key.clone(),
                output: None,
            },
        );
        let output = graph.add(Node {
            name: format!("{}/output", recipe.name),
            key: inputs.key(),
            inputs,
            kind: NodeKind::Output {
                format,
                stem,
                cmdline,
            },
            deps: BTreeMap::from([("image".to_string(), image)]),
        });
        graph.targets.push((recipe.name.clone(), output));
    }
    Ok(graph)
}

fn rootfs_node(
    lock: &Lockfile,
    recipe: &ResolvedRecipe,
    tag: &str,
    sde: u64,
    word: &str,
) -> Result<Node, BuildError> {
    let mut debs: Vec<DebPin> = lock
        .packages
        .iter()
        .filter(|p| p.recipes.iter().any(|r| r == tag))
        .map(|p| DebPin {
            name: p.name.clone(),
            version: p.version.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
        })
        .collect();
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
    })
}

/// The lock must have been made from these very recipe requests.
fn check_lock_matches(lock: &Lockfile, recipe: &ResolvedRecipe) -> Result<(), BuildError> {
    let Some(locked) = lock.recipes.iter().find(|r| r.name == recipe.name) else {
        return Err(BuildError::StaleLock {
            detail: format!("recipe `{}` is not in the lock", recipe.name),
        });
    };
    let want: Vec<&String> = recipe.packages.iter().collect();
    let have: Vec<&String> = locked.packages.iter().collect();
    if want != have {
        return Err(BuildError::StaleLock {
            detail: format!("the packages of `{}` changed", recipe.name),
        });
    }
    let want: Vec<&String> = recipe.build_packages.iter().collect();
    let have: Vec<&String> = locked.build_packages.iter().collect();
    if want != have {
        return Err(BuildError::StaleLock {
            detail: format!("the build-packages of `{}` changed", recipe.name),
        });
    }
    Ok(())
}

/// The store paths of the .debs of a rootfs node.
pub fn deb_paths(store: &crate::store::Store, debs: &[DebPin]) -> Vec<PathBuf> {
    debs.iter().map(|d| store.blob_path(&d.sha256)).collect()
}
