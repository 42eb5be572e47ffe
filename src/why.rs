//! `hermetic why PKG [TARGET]`: the chains of dependencies that pull a pinned package into a
//! closure (like `cargo tree -i`), read from `pins.lock` alone: the `[[recipe]]` tables say what
//! each closure asked for, the `depends`/`pre-depends`/`provides` of the pins (format version
//! 2) how the pins hang together. No network, no store.
//!
//! Within one closure every name is pinned once, so a dependency group is taken as satisfied
//! by the pins of its first alternative that some pin satisfies (by name and version, or by
//! `Provides`), as the resolver chose it. The roots are the requested packages and the
//! essential base: the pins that no request reaches and no pin depends on. For each root
//! that reaches the package, the shortest chain is shown.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::debian::relation::{Alternatives, parse_relations};
use crate::debian::version::Version;
use crate::lockfile::{
    BUILD_TAG_SUFFIX, CARGO_TAG_SUFFIX, GO_TAG_SUFFIX, KERNEL_TAG_SUFFIX, Lockfile, PinnedPackage,
};

/// Errors of `hermetic why`.
#[derive(Debug, thiserror::Error)]
pub enum WhyError {
    #[error(
        "`{target}` is neither a recipe nor a closure of pins.lock (it has: {known})\nhint: {suggestion}name a recipe (`base`), a profile closure (`gcp/devtools`) or a closure tag (`base:build`, `base:kernel`)"
    )]
    UnknownTarget {
        target: String,
        known: String,
        /// `did you mean `X`? ` or nothing.
        suggestion: String,
    },
    #[error("no closure of {where_} pins `{package}`\nhint: {hint}")]
    NotPinned {
        package: String,
        where_: String,
        hint: String,
    },
    #[error(
        "pins.lock records no package relations (format version 1), so it cannot say why `{package}` is pinned\nhint: run `hermetic fetch` then `hermetic lock`, which adds them without moving any version"
    )]
    NoRelations { package: String },
}

/// Why a package is in one closure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Why {
    /// The closure tag: `base` (image), `base:build` (tools tree), `base:kernel`.
    pub closure: String,
    pub package: String,
    pub version: String,
    pub chains: Vec<Chain>,
}

/// One chain, from a root down to the package (both included).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Chain {
    /// `requested` (the root is asked for by the recipe) or `essential` (the essential base).
    pub root: &'static str,
    pub packages: Vec<String>,
}

/// What the closure `tag` is, for headings: `image of recipe `base``.
pub fn describe(tag: &str) -> String {
    if let Some(r) = tag.strip_suffix(BUILD_TAG_SUFFIX) {
        format!("tools tree of `{r}`")
    } else if let Some(r) = tag.strip_suffix(KERNEL_TAG_SUFFIX) {
        format!("kernel build of `{r}`")
    } else if let Some(r) = tag.strip_suffix(CARGO_TAG_SUFFIX) {
        format!("Rust toolchain of `{r}`")
    } else if let Some(r) = tag.strip_suffix(GO_TAG_SUFFIX) {
        format!("Go toolchain of `{r}`")
    } else {
        format!("image of `{tag}`")
    }
}

/// The closures `target` names (every closure without one), each with what it requested.
fn closures<'a>(
    lock: &'a Lockfile,
    target: Option<&str>,
) -> Result<Vec<(String, &'a [String])>, WhyError> {
    let mut all = Vec::new();
    for r in &lock.recipes {
        all.push((r.name.clone(), r.name.clone(), r.packages.as_slice()));
        all.push((
            r.name.clone(),
            format!("{}{BUILD_TAG_SUFFIX}", r.name),
            r.build_packages.as_slice(),
        ));
        all.push((
            r.name.clone(),
            format!("{}{KERNEL_TAG_SUFFIX}", r.name),
            r.kernel_packages.as_slice(),
        ));
        all.push((
            r.name.clone(),
            format!("{}{CARGO_TAG_SUFFIX}", r.name),
            r.cargo_packages.as_slice(),
        ));
        all.push((
            r.name.clone(),
            format!("{}{GO_TAG_SUFFIX}", r.name),
            r.go_packages.as_slice(),
        ));
    }
    let chosen: Vec<(String, &[String])> = all
        .into_iter()
        .filter(|(recipe, tag, _)| match target {
            None => true,
            Some(t) if t.contains(':') => tag == t,
            Some(t) => recipe == t,
        })
        .map(|(_, tag, req)| (tag, req))
        .collect();
    if chosen.is_empty()
        && let Some(t) = target
    {
        return Err(WhyError::UnknownTarget {
            target: t.to_string(),
            suggestion: crate::suggest::did_you_mean(
                t,
                lock.recipes.iter().map(|r| r.name.as_str()),
            ),
            known: lock
                .recipes
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(chosen)
}

/// The pins of one closure as a graph: pin index -> the pins its dependencies took.
struct Graph<'a> {
    pins: Vec<&'a PinnedPackage>,
    by_name: BTreeMap<&'a str, usize>,
    edges: Vec<BTreeSet<usize>>,
}

impl<'a> Graph<'a> {
    fn new(lock: &'a Lockfile, tag: &str) -> Graph<'a> {
        let pins: Vec<&PinnedPackage> = lock
            .packages
            .iter()
            .filter(|p| p.recipes.iter().any(|t| t == tag))
            .collect();
        let by_name: BTreeMap<&str, usize> = pins
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let mut providers: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, p) in pins.iter().enumerate() {
            if let Some(text) = &p.provides
                && let Ok(groups) = parse_relations(text)
            {
                for rel in groups.into_iter().flatten() {
                    providers.entry(rel.name).or_default().push(i);
                }
            }
        }
        let mut g = Graph {
            pins,
            by_name,
            edges: Vec::new(),
        };
        g.edges = (0..g.pins.len())
            .map(|i| {
                let p = g.pins[i];
                let mut to = BTreeSet::new();
                for text in [&p.pre_depends, &p.depends].into_iter().flatten() {
                    for group in parse_relations(text).unwrap_or_default() {
                        to.extend(g.solutions(&group, &providers));
                    }
                }
                to
            })
            .collect();
        g
    }

    /// The pins of the first alternative of `group` that a pin satisfies.
    fn solutions(
        &self,
        group: &Alternatives,
        providers: &BTreeMap<String, Vec<usize>>,
    ) -> Vec<usize> {
        for rel in group {
            let mut found: Vec<usize> = Vec::new();
            if let Some(&i) = self.by_name.get(rel.name.as_str())
                && self.pins[i]
                    .version
                    .parse::<Version>()
                    .is_ok_and(|v| rel.version_matches(&v))
            {
                found.push(i);
            }
            if let Some(ps) = providers.get(&rel.name) {
                found.extend(ps.iter().copied());
            }
            if !found.is_empty() {
                return found;
            }
        }
        Vec::new()
    }

    /// The pins a request names (by name, or the providers of a virtual package).
    fn request_roots(&self, requests: &[String]) -> Vec<usize> {
        let mut out = Vec::new();
        for r in requests {
            let name = r.split(['=', ':']).next().unwrap_or_default();
            if let Some(&i) = self.by_name.get(name) {
                out.push(i);
            } else {
                for (i, p) in self.pins.iter().enumerate() {
                    let provides = p
                        .provides
                        .as_deref()
                        .and_then(|t| parse_relations(t).ok())
                        .unwrap_or_default();
                    if provides.iter().flatten().any(|rel| rel.name == name) {
                        out.push(i);
                    }
                }
            }
        }
        out
    }

    /// Everything reachable from `from`.
    fn reach(&self, from: &[usize]) -> BTreeSet<usize> {
        let mut seen: BTreeSet<usize> = from.iter().copied().collect();
        let mut queue: VecDeque<usize> = from.iter().copied().collect();
        while let Some(i) = queue.pop_front() {
            for &j in &self.edges[i] {
                if seen.insert(j) {
                    queue.push_back(j);
                }
            }
        }
        seen
    }

    /// The shortest chain from `root` to `target`, both included.
    fn chain(&self, root: usize, target: usize) -> Option<Vec<usize>> {
        let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = VecDeque::from([root]);
        let mut seen = BTreeSet::from([root]);
        while let Some(i) = queue.pop_front() {
            if i == target {
                let mut path = vec![i];
                let mut at = i;
                while let Some(&p) = parent.get(&at) {
                    path.push(p);
                    at = p;
                }
                path.reverse();
                return Some(path);
            }
            for &j in &self.edges[i] {
                if seen.insert(j) {
                    parent.insert(j, i);
                    queue.push_back(j);
                }
            }
        }
        None
    }
}

/// Why `package` is pinned in the closures `target` names (every closure without one).
pub fn why(lock: &Lockfile, package: &str, target: Option<&str>) -> Result<Vec<Why>, WhyError> {
    let closures = closures(lock, target)?;
    let mut out = Vec::new();
    for (tag, requests) in closures {
        let g = Graph::new(lock, &tag);
        let Some(&pkg) = g.by_name.get(package) else {
            continue;
        };
        if g.pins.iter().all(|p| {
            p.depends.is_none()
                && p.pre_depends.is_none()
                && p.provides.is_none()
                && p.multi_arch.is_none()
        }) {
            return Err(WhyError::NoRelations {
                package: package.to_string(),
            });
        }
        let requested = g.request_roots(requests);
        let from_requests = g.reach(&requested);
        let depended_on: BTreeSet<usize> = g.edges.iter().flatten().copied().collect();
        let essential: Vec<usize> = (0..g.pins.len())
            .filter(|i| !from_requests.contains(i) && !depended_on.contains(i))
            .collect();
        let mut chains: Vec<Chain> = Vec::new();
        for (kind, roots) in [("requested", &requested), ("essential", &essential)] {
            for &root in roots {
                if let Some(path) = g.chain(root, pkg) {
                    let chain = Chain {
                        root: kind,
                        packages: path.iter().map(|&i| g.pins[i].name.clone()).collect(),
                    };
                    if !chains.contains(&chain) {
                        chains.push(chain);
                    }
                }
            }
        }
        if chains.is_empty() {
            // Only depended on within the essential base (a cycle of essential packages).
            chains.push(Chain {
                root: "essential",
                packages: vec![package.to_string()],
            });
        }
        out.push(Why {
            closure: tag,
            package: package.to_string(),
            version: g.pins[pkg].version.clone(),
            chains,
        });
    }
    if out.is_empty() {
        let pinned_elsewhere: Vec<String> = lock
            .packages
            .iter()
            .filter(|p| p.name == package)
            .flat_map(|p| p.recipes.iter().cloned())
            .collect();
        return Err(WhyError::NotPinned {
            package: package.to_string(),
            where_: match target {
                Some(t) => format!("`{t}`"),
                None => "pins.lock".into(),
            },
            hint: if pinned_elsewhere.is_empty() {
                format!(
                    "`{package}` is not in pins.lock: no recipe pulls it in (add it to a recipe's packages and run `hermetic lock`)"
                )
            } else {
                format!(
                    "it is pinned in {}; run `hermetic why {package}` without a target",
                    pinned_elsewhere.join(", ")
                )
            },
        });
    }
    Ok(out)
}
