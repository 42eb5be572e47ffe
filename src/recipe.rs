//! Projects and recipes: `hermetic.toml` and `recipes/*.toml`.
//!
//! A project is a directory holding `hermetic.toml` (project-wide settings such as the
//! `[archive]` table) and one recipe file per image under `recipes/`. An image may build on
//! another (`parent = "base"`), inheriting and extending its package lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading a project. Each names the file (and, where it can, the key).
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read {path}\nhint: is `-C` pointing at a hermetic project directory?")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("no recipe named `{name}` in {dir}\nhint: the recipes are: {known}")]
    UnknownRecipe {
        name: String,
        dir: PathBuf,
        known: String,
    },
}

/// The `[archive]` table of `hermetic.toml`: where the Debian packages come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArchiveConfig {
    /// A snapshot.debian.org timestamp, `YYYYMMDDTHHMMSSZ`.
    pub snapshot: String,
    /// Suites, in increasing priority order is not implied: the highest version wins.
    #[serde(default = "default_suites")]
    pub suites: Vec<String>,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    #[serde(default = "default_architecture")]
    pub architecture: String,
}

fn default_suites() -> Vec<String> {
    vec!["trixie".into(), "trixie-security".into()]
}
fn default_components() -> Vec<String> {
    vec!["main".into()]
}
fn default_architecture() -> String {
    "amd64".into()
}

/// `hermetic.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectConfig {
    pub archive: ArchiveConfig,
}

/// A source tarball pinned by URL and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Tarball {
    pub name: String,
    pub url: String,
    pub sha256: String,
}

/// One `recipes/<name>.toml`, as written (before inheritance).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RecipeFile {
    #[serde(default)]
    pub description: Option<String>,
    /// The image this one builds on.
    #[serde(default)]
    pub parent: Option<String>,
    /// Debian packages installed in the image.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Debian packages that make up the tools tree the image's steps run in.
    #[serde(default)]
    pub build_packages: Vec<String>,
    /// Debian source packages to pin (`.dsc`, `.orig.tar.*`, `.debian.tar.*`).
    #[serde(default)]
    pub source_packages: Vec<String>,
    /// Plain source tarballs pinned by URL and SHA-256.
    #[serde(default)]
    pub tarballs: Vec<Tarball>,
}

/// A recipe with its file path.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub path: PathBuf,
    pub file: RecipeFile,
}

/// A recipe with everything inherited from its parents merged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRecipe {
    pub name: String,
    /// This recipe first, then its parent, grandparent, ...
    pub lineage: Vec<String>,
    pub packages: BTreeSet<String>,
    pub build_packages: BTreeSet<String>,
    pub source_packages: BTreeSet<String>,
    pub tarballs: BTreeSet<Tarball>,
}

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub config: ProjectConfig,
    pub recipes: BTreeMap<String, Recipe>,
}

impl Project {
    /// The path of `hermetic.toml` in `root`.
    pub fn config_path(root: &Path) -> PathBuf {
        root.join("hermetic.toml")
    }

    /// Reads `hermetic.toml` and every `recipes/*.toml` of the project at `root`.
    pub fn load(root: &Path) -> Result<Project, RecipeError> {
        let config_path = Self::config_path(root);
        let config: ProjectConfig = parse_toml(&config_path)?;
        validate_archive(&config_path, &config.archive)?;
        let dir = root.join("recipes");
        let entries = fs_err::read_dir(&dir).map_err(|source| RecipeError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut recipes = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| RecipeError::Read {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            let file: RecipeFile = parse_toml(&path)?;
            recipes.insert(name.clone(), Recipe { name, path, file });
        }
        let project = Project {
            root: root.to_path_buf(),
            config,
            recipes,
        };
        for name in project.recipes.keys() {
            project.resolve(name)?;
        }
        Ok(project)
    }

    /// Looks up a recipe by name.
    pub fn recipe(&self, name: &str) -> Result<&Recipe, RecipeError> {
        self.recipes
            .get(name)
            .ok_or_else(|| RecipeError::UnknownRecipe {
                name: name.to_string(),
                dir: self.root.join("recipes"),
                known: self.recipes.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Merges a recipe with everything it inherits.
    pub fn resolve(&self, name: &str) -> Result<ResolvedRecipe, RecipeError> {
        let mut lineage: Vec<&Recipe> = Vec::new();
        let mut current = self.recipe(name)?;
        loop {
            if lineage.iter().any(|r| r.name == current.name) {
                return Err(RecipeError::Invalid {
                    path: current.path.clone(),
                    key: "parent".into(),
                    message: format!(
                        "inheritance cycle: {} -> {}",
                        lineage
                            .iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(" -> "),
                        current.name
                    ),
                });
            }
            lineage.push(current);
            match &current.file.parent {
                None => break,
                Some(parent) => {
                    current = self.recipes.get(parent).ok_or_else(|| RecipeError::Invalid {
                        path: current.path.clone(),
                        key: "parent".into(),
                        message: format!("no recipe named `{parent}` in recipes/"),
                    })?;
                }
            }
        }
        let mut resolved = ResolvedRecipe {
            name: name.to_string(),
            lineage: lineage.iter().map(|r| r.name.clone()).collect(),
            packages: BTreeSet::new(),
            build_packages: BTreeSet::new(),
            source_packages: BTreeSet::new(),
            tarballs: BTreeSet::new(),
        };
        for r in lineage.iter().rev() {
            resolved.packages.extend(r.file.packages.iter().cloned());
            resolved
                .build_packages
                .extend(r.file.build_packages.iter().cloned());
            resolved
                .source_packages
                .extend(r.file.source_packages.iter().cloned());
            resolved.tarballs.extend(r.file.tarballs.iter().cloned());
        }
        Ok(resolved)
    }
}

fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RecipeError> {
    let text = fs_err::read_to_string(path).map_err(|source| RecipeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| RecipeError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

fn validate_archive(path: &Path, a: &ArchiveConfig) -> Result<(), RecipeError> {
    let ts = a.snapshot.as_bytes();
    let ok = ts.len() == 16
        && ts[8] == b'T'
        && ts[15] == b'Z'
        && ts[..8].iter().chain(&ts[9..15]).all(u8::is_ascii_digit);
    if !ok {
        return Err(RecipeError::Invalid {
            path: path.to_path_buf(),
            key: "archive.snapshot".into(),
            message: format!(
                "`{}` is not a snapshot.debian.org timestamp like 20261121T000000Z",
                a.snapshot
            ),
        });
    }
    if a.suites.is_empty() {
        return Err(RecipeError::Invalid {
            path: path.to_path_buf(),
            key: "archive.suites".into(),
            message: "at least one suite is needed".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("recipes")).unwrap();
        for (name, text) in files {
            fs_err::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const CONFIG: &str = "[archive]\nsnapshot = \"20261121T000000Z\"\n";

    #[test]
    fn inheritance_merges_lists() {
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("recipes/base.toml", "packages = [\"systemd\", \"kmod\"]\n"),
            (
                "recipes/gcp.toml",
                "parent = \"base\"\npackages = [\"nvme-cli\"]\nbuild-packages = [\"gcc\"]\n",
            ),
        ]);
        let p = Project::load(dir.path()).unwrap();
        let gcp = p.resolve("gcp").unwrap();
        assert_eq!(gcp.lineage, ["gcp", "base"]);
        assert_eq!(
            gcp.packages.iter().map(String::as_str).collect::<Vec<_>>(),
            ["kmod", "nvme-cli", "systemd"]
        );
        assert_eq!(p.config.archive.suites, ["trixie", "trixie-security"]);
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("recipes/base.toml", "packages = []\npackgaes = [\"x\"]\n"),
        ]);
        let err = Project::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("base.toml"), "{err}");
        assert!(err.contains("packgaes"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn cycle_and_missing_parent_are_errors() {
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("recipes/a.toml", "parent = \"b\"\n"),
            ("recipes/b.toml", "parent = \"a\"\n"),
        ]);
        let err = Project::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("inheritance cycle"), "{err}");
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("recipes/a.toml", "parent = \"zzz\"\n"),
        ]);
        let err = Project::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("a.toml: key `parent`"), "{err}");
    }

    #[test]
    fn bad_snapshot_is_rejected() {
        let dir = project(&[("hermetic.toml", "[archive]\nsnapshot = \"yesterday\"\n")]);
        let err = Project::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("archive.snapshot"), "{err}");
    }
}
