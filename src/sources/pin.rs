//! A source pin: what a recipe's `[[sources]]` entry names and what makes it trusted.
//! `go-modules` pins are derived from another source's `go.sum` (see `sources::gomod`).

use serde::{Deserialize, Serialize};

/// The archive URL templates a git source is fetched from when it names none: GitHub's and
/// GitLab's/Forgejo's generated archives. `{repo}` is the repository URL without a trailing
/// `/` or `.git`, `{commit}` the commit.
pub const DEFAULT_GIT_ARCHIVES: &[&str] = &["{repo}/archive/{commit}.tar.gz"];

/// One upstream source, pinned by content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourcePin {
    /// A single file (a tarball, a script): any of `urls`, checked by SHA-256.
    #[serde(rename_all = "kebab-case")]
    File {
        name: String,
        urls: Vec<String>,
        /// `None` until `hermetic lock` computes it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
    /// A git tree at a commit, checked by its tree hash (`hermetic-tree-v1`), so any archive
    /// of that tree (or a checkout) satisfies it.
    #[serde(rename_all = "kebab-case")]
    Git {
        name: String,
        repo: String,
        commit: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tree_sha256: Option<String>,
        /// URL templates (`{repo}`, `{commit}`); [`DEFAULT_GIT_ARCHIVES`] when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        archive_urls: Vec<String>,
    },
    /// A `.deb` from outside the Debian archive, checked by SHA-256.
    #[serde(rename_all = "kebab-case")]
    Deb {
        name: String,
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        /// Install it without its maintainer scripts (`preinst`, `postinst`, ...).
        #[serde(default)]
        drop_maintainer_scripts: bool,
    },
    /// A directory of the project itself (`path`, relative to the project's root, without
    /// `..`), checked by the tree hash of the files git tracks there with the modes git
    /// records (see `crate::sources::path`). Nothing is fetched: `hermetic lock` hashes the
    /// directory, and a build copies the same files out of it and hashes them again.
    #[serde(rename_all = "kebab-case")]
    Path {
        name: String,
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tree_sha256: Option<String>,
    },
    /// The Go modules of the Go module at `dir` of the source `source` (another
    /// `[[sources]]` entry of the recipe), pinned by the `h1:` hashes of its `go.sum`, or its
    /// `vendor/` directory (then nothing is fetched). `hermetic lock` reads them from the
    /// source tree and records `source-hash` (the source's content hash they were read at),
    /// `vendored`, `modules` (go.sum lines, or the vendored `module@version`s) and
    /// `modules-sha256`, the hash of that list (`crate::sources::gomod::modules_sha256`).
    #[serde(rename_all = "kebab-case")]
    GoModules {
        name: String,
        source: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        dir: String,
        /// GOPROXY URLs, tried in order; `https://proxy.golang.org` when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        proxy: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_hash: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        vendored: bool,
        /// Written as one multi-line string, an entry a line (go.sum's own layout).
        #[serde(default, skip_serializing_if = "Vec::is_empty", with = "lines")]
        modules: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        modules_sha256: Option<String>,
    },
}

impl SourcePin {
    /// The name steps see the source under.
    pub fn name(&self) -> &str {
        match self {
            SourcePin::File { name, .. }
            | SourcePin::Git { name, .. }
            | SourcePin::Deb { name, .. }
            | SourcePin::Path { name, .. }
            | SourcePin::GoModules { name, .. } => name,
        }
    }

    /// The content pin: the file SHA-256, or the tree hash of a git or path source.
    pub fn content_hash(&self) -> Option<&str> {
        match self {
            SourcePin::File { sha256, .. } | SourcePin::Deb { sha256, .. } => sha256.as_deref(),
            SourcePin::Git { tree_sha256, .. } | SourcePin::Path { tree_sha256, .. } => {
                tree_sha256.as_deref()
            }
            SourcePin::GoModules { modules_sha256, .. } => modules_sha256.as_deref(),
        }
    }

    /// The recipe key of [`SourcePin::content_hash`].
    pub fn hash_field(&self) -> &'static str {
        match self {
            SourcePin::File { .. } | SourcePin::Deb { .. } => "sha256",
            SourcePin::Git { .. } | SourcePin::Path { .. } => "tree-sha256",
            SourcePin::GoModules { .. } => "modules-sha256",
        }
    }

    /// The same pin with its content hash set.
    pub fn with_content_hash(&self, hash: String) -> SourcePin {
        let mut pin = self.clone();
        match &mut pin {
            SourcePin::File { sha256, .. } | SourcePin::Deb { sha256, .. } => *sha256 = Some(hash),
            SourcePin::Git { tree_sha256, .. } | SourcePin::Path { tree_sha256, .. } => {
                *tree_sha256 = Some(hash)
            }
            SourcePin::GoModules { modules_sha256, .. } => *modules_sha256 = Some(hash),
        }
        pin
    }

    /// Every URL the source can be downloaded from, in order.
    pub fn urls(&self) -> Vec<String> {
        match self {
            SourcePin::File { urls, .. } => urls.clone(),
            SourcePin::Deb { url, .. } => vec![url.clone()],
            // Part of the project: nothing to download.
            SourcePin::Path { .. } => Vec::new(),
            SourcePin::GoModules { proxy, .. } if proxy.is_empty() => {
                vec![crate::sources::gomod::DEFAULT_GOPROXY.to_string()]
            }
            SourcePin::GoModules { proxy, .. } => proxy.clone(),
            SourcePin::Git {
                repo,
                commit,
                archive_urls,
                ..
            } => {
                let repo = repo.trim_end_matches('/');
                let repo = repo.strip_suffix(".git").unwrap_or(repo);
                let templates: Vec<&str> = if archive_urls.is_empty() {
                    DEFAULT_GIT_ARCHIVES.to_vec()
                } else {
                    archive_urls.iter().map(String::as_str).collect()
                };
                templates
                    .iter()
                    .map(|t| t.replace("{repo}", repo).replace("{commit}", commit))
                    .collect()
            }
        }
    }

    /// What messages call it: `git source mustache (https://...@5229524)`.
    pub fn describe(&self) -> String {
        match self {
            SourcePin::File { name, .. } => format!("file source `{name}`"),
            SourcePin::Deb { name, .. } => format!("deb source `{name}`"),
            SourcePin::Path { name, path, .. } => format!("path source `{name}` ({path})"),
            SourcePin::Git {
                name, repo, commit, ..
            } => format!("git source `{name}` ({repo} at {commit})"),
            SourcePin::GoModules {
                name, source, dir, ..
            } if dir.is_empty() => format!("go modules `{name}` (of source `{source}`)"),
            SourcePin::GoModules {
                name, source, dir, ..
            } => format!("go modules `{name}` (of `{dir}` in source `{source}`)"),
        }
    }
}

/// A list of lines as one string, each line ended by `\n`: long lists stay readable and
/// diff line by line in `pins.lock`. Blank lines are ignored when reading.
mod lines {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        let mut text = String::new();
        for l in v {
            text.push_str(l);
            text.push('\n');
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let text = String::deserialize(d)?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }
}
