//! Building an image without some of its upstream sources (`hermetic build --omit NAME`,
//! `--omit-unavailable`), and the pins a graph needs (`hermetic fetch TARGET`).
//!
//! Omitting a source takes out of the recipe the source itself, every `go-modules` source
//! read from it, every `[[cargo]]` and `[[go]]` build made from one of these, and every step
//! that lists one of them in its `sources`; a `deb` source is then simply not installed. The
//! plan then follows from the recipe as it is left: the image step's key changes with it and
//! also holds the omitted names (`omitted-sources`), which the image step writes into
//! `/usr/lib/os-release` as `HERMETIC_OMITTED`, so such an image is never taken for the full
//! one.

use std::collections::BTreeSet;

use crate::lockfile::Lockfile;
use crate::recipe::ResolvedRecipe;
use crate::sources::pin::SourcePin;

use super::plan::{Graph, NodeKind};

/// The image step's setting holding the omitted source names, space-separated and sorted.
pub const OMITTED_SETTING: &str = "omitted-sources";

/// The `os-release` field naming the omitted sources.
pub const OS_RELEASE_FIELD: &str = "HERMETIC_OMITTED";

/// Takes the sources `omit` names out of `recipe`, with everything built from them (see the
/// module's documentation); gives the names taken out (sorted), those read from an omitted
/// source included. Names the recipe does not declare are ignored here (see
/// [`check_declared`]).
pub fn omit_sources(recipe: &mut ResolvedRecipe, omit: &BTreeSet<String>) -> Vec<String> {
    let mut gone: BTreeSet<String> = omit
        .iter()
        .filter(|n| recipe.sources.contains_key(*n))
        .cloned()
        .collect();
    // A go-modules source is read from another source's tree: without it, it goes too.
    for (name, pin) in &recipe.sources {
        if let SourcePin::GoModules { source, .. } = pin
            && gone.contains(source)
        {
            gone.insert(name.clone());
        }
    }
    recipe.sources.retain(|name, _| !gone.contains(name));
    recipe.cargo.retain(|_, c| !gone.contains(&c.source));
    recipe.go.retain(|_, g| {
        !gone.contains(&g.source) && g.modules.as_ref().is_none_or(|m| !gone.contains(m))
    });
    recipe.steps.retain(|s| {
        !s.upstream.iter().any(|u| gone.contains(u))
            && !s
                .sources
                .iter()
                .any(|src| gone.contains(src.relative.trim_end_matches('/')))
    });
    gone.into_iter().collect()
}

/// Every name of `omit` must be a source some target declares (`declared`: the names of
/// their `[[sources]]`, parents' included).
pub fn check_declared(
    omit: &BTreeSet<String>,
    declared: &BTreeSet<String>,
    targets: &[String],
) -> Result<(), super::BuildError> {
    for name in omit {
        if !declared.contains(name) {
            return Err(super::BuildError::UnknownOmitted {
                name: name.clone(),
                targets: targets.join(", "),
                declared: if declared.is_empty() {
                    "none".into()
                } else {
                    declared.iter().cloned().collect::<Vec<_>>().join(", ")
                },
                suggestion: crate::suggest::did_you_mean(name, declared.iter().map(String::as_str)),
            });
        }
    }
    Ok(())
}

/// `lock` cut down to what the steps of `graph` need: the packages of its trees and kernels,
/// the tarballs and source packages its images stage, the upstream sources its images
/// declare (less those omitted) and the crates of its `[[cargo]]` builds. Suites and
/// recipes stay whole.
pub fn needed_pins(graph: &Graph, lock: &Lockfile) -> Lockfile {
    let mut debs = BTreeSet::new();
    let mut staged = BTreeSet::new();
    let mut crates_of: BTreeSet<(String, String, String)> = BTreeSet::new();
    for node in &graph.nodes {
        match &node.kind {
            NodeKind::Rootfs { debs: d, .. } => debs.extend(d.iter().map(|d| d.sha256.clone())),
            NodeKind::Kernel(k) => {
                debs.insert(k.source.sha256.clone());
                debs.extend(k.config.iter().map(|c| c.sha256.clone()));
            }
            NodeKind::Image { staged: s, .. } => {
                staged.extend(s.iter().map(|(_, sha)| sha.clone()))
            }
            NodeKind::Program(p) => {
                crates_of.insert((
                    p.build.source.clone(),
                    p.build.dir().to_string(),
                    p.source.content_hash().unwrap_or_default().to_string(),
                ));
            }
            NodeKind::Go(_) | NodeKind::Output { .. } => {}
        }
    }
    // The sources the images declare (parents' included, omitted ones not): those their
    // programs, `deb` installs and steps use, and any other the recipe pins.
    let declared: BTreeSet<&str> = graph
        .nodes
        .iter()
        .filter_map(|n| match &n.kind {
            NodeKind::Image { recipe, .. } => Some(recipe.sources.keys().map(String::as_str)),
            _ => None,
        })
        .flatten()
        .collect();
    let mut out = lock.clone();
    out.packages.retain(|p| debs.contains(&p.sha256));
    out.tarballs.retain(|t| staged.contains(&t.sha256));
    out.sources
        .retain(|s| s.files.iter().any(|f| staged.contains(&f.sha256)));
    out.upstream
        .retain(|u| declared.contains(u.pin.name()) && u.pin.content_hash().is_some());
    out.cargo
        .retain(|c| crates_of.contains(&(c.source.clone(), c.dir.clone(), c.source_hash.clone())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Project;

    /// `app` on `base`: a tree `mod-src` with its go-modules `mods`, a go build of them, a
    /// crate `rg` built by cargo, a deb `tool`, and steps listing `mod-src`, reading `rg`
    /// (`upstream`), and nothing.
    fn recipe() -> (tempfile::TempDir, ResolvedRecipe) {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            (
                "hermetic.toml",
                "[archive]\nsnapshot = \"20261121T000000Z\"\n",
            ),
            (
                "recipes/base.toml",
                "[[sources]]\nkind = \"deb\"\nname = \"tool\"\nurl = \"https://example.invalid/tool.deb\"\n",
            ),
            (
                "recipes/app.toml",
                "parent = \"base\"\n\
                 [[sources]]\nkind = \"file\"\nname = \"mod-src\"\nurls = [\"https://example.invalid/m.tar.gz\"]\n\
                 [[sources]]\nkind = \"go-modules\"\nname = \"mods\"\nsource = \"mod-src\"\n\
                 [[sources]]\nkind = \"file\"\nname = \"rg\"\nurls = [\"https://example.invalid/rg.crate\"]\n\
                 [[go]]\nname = \"hello\"\nsource = \"mod-src\"\nmodules = \"mods\"\ninstall = { \"hello\" = \"/usr/bin/hello\" }\n\
                 [[cargo]]\nname = \"rg\"\nsource = \"rg\"\ninstall = { \"rg\" = \"/usr/bin/rg\" }\n\
                 [[steps]]\nname = \"uses-tree\"\nscript = \"true\"\nsources = [\"mod-src/\"]\n\
                 [[steps]]\nname = \"reads-rg\"\nscript = \"true\"\nupstream = [\"rg\"]\n\
                 [[steps]]\nname = \"plain\"\nscript = \"true\"\n",
            ),
        ];
        for (path, text) in files {
            let p = dir.path().join(path);
            fs_err::create_dir_all(p.parent().unwrap()).unwrap();
            fs_err::write(p, text).unwrap();
        }
        fs_err::create_dir_all(dir.path().join("mod-src")).unwrap();
        let r = Project::load(dir.path()).unwrap().resolve("app").unwrap();
        (dir, r)
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn omitting_a_tree_takes_its_modules_builds_and_steps_with_it() {
        let (_dir, full) = recipe();
        let mut r = full.clone();
        let gone = omit_sources(&mut r, &set(&["mod-src"]));
        assert_eq!(gone, ["mod-src", "mods"]);
        assert_eq!(r.sources.keys().collect::<Vec<_>>(), ["rg", "tool"]);
        assert!(r.go.is_empty());
        assert_eq!(r.cargo.keys().collect::<Vec<_>>(), ["rg"]);
        assert_eq!(
            r.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["reads-rg", "plain"]
        );
    }

    #[test]
    fn omitting_a_parents_deb_or_a_crate_leaves_the_rest() {
        let (_dir, full) = recipe();
        let mut r = full.clone();
        assert_eq!(omit_sources(&mut r, &set(&["tool", "rg"])), ["rg", "tool"]);
        assert!(r.cargo.is_empty());
        assert_eq!(r.go.len(), 1);
        // The step naming `rg` in `upstream` goes with it.
        assert_eq!(
            r.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["uses-tree", "plain"]
        );
        assert_eq!(r.sources.keys().collect::<Vec<_>>(), ["mod-src", "mods"]);
        // Omitting nothing changes nothing.
        let mut same = full.clone();
        assert!(omit_sources(&mut same, &BTreeSet::new()).is_empty());
        assert_eq!(same, full);
    }

    #[test]
    fn a_name_no_target_declares_is_refused_with_the_declared_ones() {
        let declared = set(&["mod-src", "rg"]);
        assert!(check_declared(&set(&["rg"]), &declared, &["app".into()]).is_ok());
        let e = check_declared(&set(&["rgg"]), &declared, &["app".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--omit rgg"), "{e}");
        assert!(e.contains("did you mean `rg`?"), "{e}");
        assert!(e.contains("mod-src, rg"), "{e}");
    }
}
