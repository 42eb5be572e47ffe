//! Projects and recipes: `hermetic.toml` and `recipes/*.toml`.
//!
//! A project is a directory holding `hermetic.toml` (project-wide settings such as the
//! `[archive]` table) and one recipe file per image under `recipes/`. An image may build on
//! another (`parent = "base"`), inheriting and extending its settings:
//!
//! - lists extend (`packages`, `build-packages`, `source-packages`, `tarballs`, `overlays`);
//! - maps merge, the child winning (`environment`);
//! - `steps` append after the parent's;
//! - single settings (`format`, `version`, `image-id`) are inherited when unset;
//! - `[[sources]]` and `[[cargo]]` entries are keyed by name: a child's entry replaces its
//!   parent's of the same name.
//!
//! `[profiles.NAME]` tables add to (or change) a recipe when the profile is selected; a
//! selected profile applies right after the recipe that defines it, before the recipe's child.
//! `docs/recipes.md` is the reference of the format.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors reading a project. Each names the file (and, where it can, the key).
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read {path}")]
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
    #[error("no recipe named `{name}` in {dir}")]
    UnknownRecipe {
        name: String,
        dir: PathBuf,
        known: String,
        /// `did you mean `X`? ` or empty.
        suggestion: String,
    },
    #[error("recipe `{recipe}` has no profile named `{profile}`")]
    UnknownProfile {
        recipe: String,
        profile: String,
        known: String,
        /// `did you mean `X`? ` or empty.
        suggestion: String,
    },
    #[error(
        "recipe `{recipe}` has more than {MAX_PINNING_PROFILES} profiles that add packages, source packages or tarballs ({profiles}); pins.lock holds a closure for every selection of them"
    )]
    TooManyPinningProfiles { recipe: String, profiles: String },
}

impl crate::error::Diagnostic for RecipeError {
    fn hints(&self) -> Vec<String> {
        match self {
            RecipeError::Read { .. } => vec![
                "run hermetic in a project (a directory holding hermetic.toml, or below one), \
                 or name it with -C DIR"
                    .into(),
            ],
            RecipeError::UnknownRecipe {
                known, suggestion, ..
            } => vec![format!("{suggestion}the recipes are: {known}")],
            RecipeError::UnknownProfile {
                recipe,
                known,
                suggestion,
                ..
            } => vec![format!(
                "{suggestion}the profiles of `{recipe}` and its parents are: {known}"
            )],
            RecipeError::TooManyPinningProfiles { recipe, .. } => vec![format!(
                "move some of these additions into recipes of their own (`parent = \"{recipe}\"`)"
            )],
            RecipeError::Parse { .. } | RecipeError::Invalid { .. } => Vec::new(),
        }
    }

    fn subject(&self) -> crate::error::Subject {
        use crate::error::Subject;
        match self {
            RecipeError::Read { path, .. }
            | RecipeError::Parse { path, .. }
            | RecipeError::Invalid { path, .. } => Subject::file(path),
            RecipeError::UnknownRecipe { name, dir, .. } => Subject {
                file: Some(dir.clone()),
                package: Some(name.clone()),
                url: None,
            },
            RecipeError::UnknownProfile { recipe, .. }
            | RecipeError::TooManyPinningProfiles { recipe, .. } => Subject::package(recipe),
        }
    }
}

/// Every selection of `items` (each a subset, in the order of `items`), the empty one first.
pub fn selections(items: &[String]) -> Vec<Vec<String>> {
    (0u32..1 << items.len())
        .map(|mask| {
            items
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, p)| p.clone())
                .collect()
        })
        .collect()
}

/// At most this many profiles of one lineage may add what the lock pins: the lock holds a
/// closure for each of their 2^N - 1 non-empty selections.
pub const MAX_PINNING_PROFILES: usize = 5;

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
    /// `[[archive.snapshot-package]]`: packages taken from another snapshot state than
    /// `snapshot`, each replacing its suite's version of that package in every closure
    /// that pulls it.
    #[serde(default, rename = "snapshot-package")]
    pub snapshot_packages: Vec<SnapshotPackage>,
}

/// One `[[archive.snapshot-package]]`: package `name` at exactly `version`, as suite
/// `suite` of snapshot.debian.org at `snapshot` lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SnapshotPackage {
    pub name: String,
    pub version: String,
    /// A snapshot.debian.org timestamp, `YYYYMMDDTHHMMSSZ`.
    pub snapshot: String,
    pub suite: String,
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

/// The `[build]` table of `hermetic.toml`: settings shared by every image of the project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BuildConfig {
    /// Every mtime in an output is clamped to this (seconds since 1970); steps see it as
    /// `$SOURCE_DATE_EPOCH`.
    #[serde(default)]
    pub source_date_epoch: u64,
}

/// The `[identity]` table of `hermetic.toml`: the fixed names, ids and times that outputs
/// carry where tools would otherwise put random or current ones. Every default is the seed's
/// value, so that the seed's bytes come out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct IdentityConfig {
    /// `KBUILD_BUILD_TIMESTAMP` of the kernel build (in `UTS_VERSION`, `uname -v`).
    pub kernel_build_timestamp: String,
    /// `KBUILD_BUILD_USER` of the kernel build.
    pub kernel_build_user: String,
    /// `KBUILD_BUILD_HOST` of the kernel build (and the host name of its sandbox).
    pub kernel_build_host: String,
    /// The GUID of the disks' GPT.
    pub disk_guid: String,
    /// The unique GUID of the ESP partition.
    pub esp_guid: String,
    /// The FAT volume serial number of the ESP, 8 hex digits.
    pub esp_volume_id: String,
    /// The string the VHD's unique id is derived from (the seed's `Seed=`).
    pub vhd_seed: String,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            kernel_build_timestamp: crate::kernel::build::BUILD_TIMESTAMP.into(),
            kernel_build_user: crate::kernel::build::BUILD_USER_HOST.into(),
            kernel_build_host: crate::kernel::build::BUILD_USER_HOST.into(),
            disk_guid: crate::image::disk::SEED_DISK_GUID.into(),
            esp_guid: crate::image::disk::SEED_ESP_GUID.into(),
            esp_volume_id: format!("{:08x}", crate::image::fat::SEED_VOLUME_ID),
            vhd_seed: crate::build::bootable::SEED.into(),
        }
    }
}

impl IdentityConfig {
    /// The ESP's volume serial (checked by [`Project::load`]).
    pub fn esp_volume_id(&self) -> u32 {
        u32::from_str_radix(&self.esp_volume_id, 16).unwrap_or(crate::image::fat::SEED_VOLUME_ID)
    }
}

/// `hermetic.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProjectConfig {
    pub archive: ArchiveConfig,
    #[serde(default)]
    pub build: BuildConfig,
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Shared caches to substitute from (see docs/cache.md).
    #[serde(default)]
    pub cache: crate::cache::CacheConfig,
}

/// A source tarball pinned by URL and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Tarball {
    pub name: String,
    pub url: String,
    pub sha256: String,
}

/// The Debian packages a `[[cargo]]` build's toolchain tree is made of when it names none:
/// Debian's Rust toolchain and the C toolchain its linker and build scripts call.
pub const DEFAULT_CARGO_BUILD_PACKAGES: &[&str] = &["cargo", "gcc", "libc6-dev", "rustc"];

fn default_cargo_profile() -> String {
    "release".to_string()
}

fn default_cargo_build_packages() -> Vec<String> {
    DEFAULT_CARGO_BUILD_PACKAGES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A `[[cargo]]` entry: a Rust program built with `cargo build --frozen --offline` from a
/// `[[sources]]` tree and the crates its `Cargo.lock` pins, in a toolchain tree of pinned
/// Debian packages, its files installed into the image (docs/recipes.md, *Rust programs*).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CargoBuild {
    /// Names the build (its step is `<image>/cargo-<name>`).
    pub name: String,
    /// The `[[sources]]` entry (`file` archive or `git` tree) holding the workspace.
    pub source: String,
    /// The directory of the workspace inside the source tree (after its single top-level
    /// directory, if any, is stripped); default: the tree's root.
    #[serde(default)]
    pub dir: Option<String>,
    /// `cargo build -p`.
    #[serde(default)]
    pub package: Option<String>,
    /// `cargo build --bin` (each).
    #[serde(default)]
    pub bins: Vec<String>,
    #[serde(default)]
    pub features: Vec<String>,
    #[serde(default)]
    pub no_default_features: bool,
    /// The cargo profile (`release`, `dev` or one of the workspace's).
    #[serde(default = "default_cargo_profile")]
    pub profile: String,
    /// Extra flags for rustc (besides the path remapping hermetic adds).
    #[serde(default)]
    pub rustflags: Vec<String>,
    /// Settings of the build's profile over the workspace's own (`lto = "thin"`,
    /// `codegen-units = 1`, `panic = "abort"`): `cargo build --config profile.<profile>.<key>=…`.
    /// Left out of the step key's options when empty, so builds without them keep their keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profile_settings: BTreeMap<String, ProfileValue>,
    /// The Debian packages of the toolchain tree ([`DEFAULT_CARGO_BUILD_PACKAGES`] if unset).
    #[serde(default = "default_cargo_build_packages")]
    pub build_packages: Vec<String>,
    /// What to install: a path under the profile's output directory (`target/<profile>/`,
    /// e.g. `rg`) to an absolute path in the image (`/usr/bin/rg`).
    pub install: BTreeMap<String, String>,
}

/// A value of a `[[cargo]]` table's `profile-settings`: what a cargo profile key takes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ProfileValue {
    Bool(bool),
    Integer(i64),
    String(String),
}

impl ProfileValue {
    /// The value as TOML, as `cargo --config` reads it.
    pub fn to_toml(&self) -> String {
        match self {
            ProfileValue::Bool(b) => b.to_string(),
            ProfileValue::Integer(i) => i.to_string(),
            // Checked by the recipe loader to hold only letters, digits and `._-`.
            ProfileValue::String(s) => format!("\"{s}\""),
        }
    }
}

impl CargoBuild {
    /// `dir`, or the empty path.
    pub fn dir(&self) -> &str {
        self.dir.as_deref().unwrap_or("")
    }

    /// The directory under `target/` cargo writes the profile's artifacts to.
    pub fn profile_dir(&self) -> &str {
        match self.profile.as_str() {
            "dev" | "test" => "debug",
            "bench" => "release",
            other => other,
        }
    }
}

/// The Debian packages a `[[go]]` build's toolchain tree is made of when it names none:
/// Debian trixie's Go 1.24 (its `golang-1.24-src` comes with it). A cgo build needs a C
/// toolchain as well (`gcc`, `libc6-dev`).
pub const DEFAULT_GO_BUILD_PACKAGES: &[&str] = &["golang-1.24-go"];

fn default_go_build_packages() -> Vec<String> {
    DEFAULT_GO_BUILD_PACKAGES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_go_packages() -> Vec<String> {
    vec![".".to_string()]
}

/// A `[[go]]` entry: a Go program built with `go build -trimpath` from a `[[sources]]` tree
/// and the modules a `go-modules` source pins (or the tree's `vendor/`), in a toolchain tree
/// of pinned Debian packages, with no network; its files installed into the image
/// (docs/recipes.md, *Go programs*).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GoProgram {
    /// Names the build (its step is `<image>/go-<name>`).
    pub name: String,
    /// The `[[sources]]` entry (`file` archive or `git` tree) holding the Go module.
    pub source: String,
    /// The `go-modules` `[[sources]]` entry pinning the module's dependencies; may be left
    /// out when the tree vendors them (`vendor/modules.txt`) or needs none.
    #[serde(default)]
    pub modules: Option<String>,
    /// The directory of the Go module (its `go.mod`) inside the source tree; default: the
    /// tree's root.
    #[serde(default)]
    pub dir: Option<String>,
    /// The packages to build (`go build` arguments, e.g. `./cmd/foo`); default `.`.
    #[serde(default = "default_go_packages")]
    pub packages: Vec<String>,
    /// Build tags (`-tags`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// More linker flags after `-buildid=` (e.g. `-s`, `-w`, `-X main.version=1.0`).
    #[serde(default)]
    pub ldflags: Vec<String>,
    /// `CGO_ENABLED=1` (off by default: a static pure-Go binary).
    #[serde(default)]
    pub cgo: bool,
    /// The Debian packages of the toolchain tree ([`DEFAULT_GO_BUILD_PACKAGES`] if unset).
    #[serde(default = "default_go_build_packages")]
    pub build_packages: Vec<String>,
    /// What to install: a file `go build -o <dir>/` wrote (a main package's binary, named
    /// after its directory, e.g. `foo` for `./cmd/foo`) to an absolute path in the image.
    pub install: BTreeMap<String, String>,
}

impl GoProgram {
    /// `dir`, or the empty path.
    pub fn dir(&self) -> &str {
        self.dir.as_deref().unwrap_or("")
    }

    /// The `go` command in the toolchain tree: Debian's versioned packages install it as
    /// `/usr/lib/go-X.Y/bin/go` (only `golang-go` adds `/usr/bin/go`), so the first
    /// `golang-X.Y-go` of the build-packages decides; otherwise `go` from `PATH`.
    pub fn go_command(&self) -> String {
        self.build_packages
            .iter()
            .find_map(|p| {
                let v = p.strip_prefix("golang-")?.strip_suffix("-go")?;
                v.chars()
                    .all(|c| c.is_ascii_digit() || c == '.')
                    .then(|| format!("/usr/lib/go-{v}/bin/go"))
            })
            .unwrap_or_else(|| "go".to_string())
    }
}

/// What an image is written out as. `directory` and `tar` are written by the build itself;
/// the others are the image writers' (the names are accepted now so recipes can say them).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// The image tree itself.
    #[default]
    Directory,
    /// A deterministic tar of the image tree (see `treetar`).
    Tar,
    /// A compressed cpio of the whole tree, to boot from RAM.
    Initrd,
    /// A Unified Kernel Image (kernel + initrd of the tree + command line).
    Uki,
    /// A GCP disk image (`disk.raw` in a `-import.tar.gz`).
    Gcp,
    /// An Azure fixed VHD.
    Azure,
    /// A qcow2 disk for QEMU.
    Qemu,
}

impl OutputFormat {
    /// The name as written in recipes.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Directory => "directory",
            OutputFormat::Tar => "tar",
            OutputFormat::Initrd => "initrd",
            OutputFormat::Uki => "uki",
            OutputFormat::Gcp => "gcp",
            OutputFormat::Azure => "azure",
            OutputFormat::Qemu => "qemu",
        }
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which tree a step may write to.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum StepTree {
    /// `$DESTDIR` (the image tree) is writable: what the step changes there is the image.
    #[default]
    Image,
    /// `$DESTDIR` is read-only; the step only leaves files in `$OUTPUTDIR`.
    Output,
}

/// One `[[steps]]` entry, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StepFile {
    /// Unique within the resolved image; used in logs and store names.
    pub name: String,
    /// The script text itself.
    #[serde(default)]
    pub script: Option<String>,
    /// Or a file holding the script, relative to the project directory.
    #[serde(default)]
    pub script_file: Option<String>,
    /// Variables for this step only (win over the image's `environment`).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// The tree the step writes to.
    #[serde(default)]
    pub tree: StepTree,
    /// Project files and directories (relative to the project) the step reads under `$SRCDIR`.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Upstream `file` sources (`[[sources]]` names of this recipe or its parents) the step
    /// reads under `$TARBALLDIR/sources/`: `hermetic build --omit` drops the step with them.
    #[serde(default)]
    pub upstream: Vec<String>,
}

/// One `[profiles.NAME]` table, as written: what selecting the profile adds or changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProfileFile {
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub build_packages: Vec<String>,
    #[serde(default)]
    pub source_packages: Vec<String>,
    #[serde(default)]
    pub tarballs: Vec<Tarball>,
    #[serde(default)]
    pub overlays: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    #[serde(default)]
    pub steps: Vec<StepFile>,
    #[serde(default)]
    pub format: Option<OutputFormat>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub cmdline: Option<String>,
    #[serde(default)]
    pub overlay_modes: BTreeMap<String, String>,
}

/// The `[kernel]` table of a recipe, as written: the kernel built from Debian's source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KernelFile {
    /// The Debian package holding the source tarball (`/usr/src/linux-source-*.tar.xz`),
    /// e.g. `linux-source-6.12`.
    pub source: String,
    /// The Debian package holding the base configs (`/usr/src/linux-config-*/*.xz`), e.g.
    /// `linux-config-6.12`; with `config-file`.
    #[serde(default)]
    pub config_package: Option<String>,
    /// The base config in `config-package`, without `.xz`, e.g.
    /// `config.amd64_none_cloud-amd64`.
    #[serde(default)]
    pub config_file: Option<String>,
    /// Or a configuration target of the kernel's Makefile as the base, e.g. `tinyconfig`.
    #[serde(default)]
    pub config_target: Option<String>,
    /// The project directory with `configs/` (fragments), `patches/` and `kernel.toml`
    /// (accepted drops); default `kernel`.
    #[serde(default)]
    pub dir: Option<String>,
    /// Debian packages of the tools tree the kernel is built in.
    #[serde(default)]
    pub build_packages: Vec<String>,
}

/// Where the base `.config` of a kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KernelBase {
    /// A file of a Debian `linux-config-*` package.
    Debian { package: String, file: String },
    /// A configuration target of the kernel's Makefile.
    Target(String),
}

/// The kernel a recipe builds, after inheritance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedKernel {
    /// The recipe whose `[kernel]` table this is.
    pub recipe: String,
    pub source: String,
    pub base: KernelBase,
    /// `dir` as written.
    pub dir_name: String,
    /// `<project>/<dir>`.
    pub dir: PathBuf,
    pub build_packages: BTreeSet<String>,
}

impl ResolvedKernel {
    /// Everything `hermetic lock` resolves for the kernel (tag `<recipe>:kernel`): the
    /// build-packages, the source package and the config package.
    pub fn lock_packages(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.build_packages.clone();
        all.insert(self.source.clone());
        if let KernelBase::Debian { package, .. } = &self.base {
            all.insert(package.clone());
        }
        all.into_iter().collect()
    }

    /// The packages of the kernel's closure that are inputs, not tools: the source and config
    /// packages.
    pub fn input_packages(&self) -> Vec<String> {
        let mut out = vec![self.source.clone()];
        if let KernelBase::Debian { package, .. } = &self.base {
            out.push(package.clone());
        }
        out
    }
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
    /// The name output files are called by (default: the recipe's name).
    #[serde(default)]
    pub image_id: Option<String>,
    /// The image version, in output names (`<image-id>_<version>.efi`) and `$IMAGE_VERSION`.
    #[serde(default)]
    pub version: Option<String>,
    /// The kernel command line of a bootable image (`.cmdline` of its UKI); inherited when
    /// unset.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// What the image is written out as (inherited when unset; default `directory`).
    #[serde(default)]
    pub format: Option<OutputFormat>,
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
    /// Upstream sources pinned by content (`kind = "file" | "git" | "deb"`); the hash may be
    /// left out for `hermetic lock` to compute (docs/recipes.md).
    #[serde(default)]
    pub sources: Vec<crate::sources::pin::SourcePin>,
    /// Rust programs built from `sources` and installed into the image.
    #[serde(default)]
    pub cargo: Vec<CargoBuild>,
    /// Go programs built from `sources` and installed into the image.
    #[serde(default)]
    pub go: Vec<GoProgram>,
    /// Directories under `overlays/` laid over the image tree, in order.
    #[serde(default)]
    pub overlays: Vec<String>,
    /// Modes of overlay paths that git cannot express (`"etc/sudoers.d/x" = "0440"`), as
    /// octal strings; see `docs/recipes.md`.
    #[serde(default)]
    pub overlay_modes: BTreeMap<String, String>,
    /// Variables every step of the image sees.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Scripts run in order in the sandbox, after the packages and overlays.
    #[serde(default)]
    pub steps: Vec<StepFile>,
    /// Named sets of additions, applied when selected.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileFile>,
    /// The kernel built from Debian's source for the bootable formats; a child's table
    /// replaces its parent's whole.
    #[serde(default)]
    pub kernel: Option<KernelFile>,
}

/// A recipe with its file path.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub path: PathBuf,
    pub file: RecipeFile,
}

/// An overlay directory of a resolved image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedOverlay {
    /// As written, relative to `overlays/`.
    pub name: String,
    /// `<project>/overlays/<name>`.
    pub path: PathBuf,
    /// The recipe that asked for it.
    pub recipe: String,
}

/// A project path a step reads (under `$SRCDIR`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedSource {
    /// As written, relative to the project (and to `$SRCDIR`).
    pub relative: String,
    /// `<project>/<relative>`.
    pub path: PathBuf,
}

/// A step of a resolved image, with its script read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedStep {
    pub name: String,
    /// The recipe that defines the step.
    pub recipe: String,
    /// The profile that added the step, if any.
    pub profile: Option<String>,
    /// The script text (read from `script-file` if that was given).
    pub script: String,
    /// `script-file`, resolved against the project, if the script came from a file.
    pub script_file: Option<PathBuf>,
    /// The step's own `environment` table (see [`ResolvedRecipe::step_environment`]).
    pub environment: BTreeMap<String, String>,
    pub tree: StepTree,
    pub sources: Vec<ResolvedSource>,
    /// The upstream `file` sources the step reads (`upstream`), checked to be declared.
    pub upstream: Vec<String>,
}

/// A recipe with everything inherited from its parents (and its selected profiles) merged in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedRecipe {
    pub name: String,
    /// This recipe first, then its parent, grandparent, ...
    pub lineage: Vec<String>,
    pub packages: BTreeSet<String>,
    pub build_packages: BTreeSet<String>,
    pub source_packages: BTreeSet<String>,
    pub tarballs: BTreeSet<Tarball>,
    /// Upstream sources by name; a recipe's entry replaces its parent's of the same name.
    pub sources: BTreeMap<String, crate::sources::pin::SourcePin>,
    /// Rust programs by name; a recipe's entry replaces its parent's of the same name.
    pub cargo: BTreeMap<String, CargoBuild>,
    /// Go programs by name; a recipe's entry replaces its parent's of the same name.
    pub go: BTreeMap<String, GoProgram>,
    /// The selected profiles, in the order they were asked for.
    pub profiles: Vec<String>,
    pub description: Option<String>,
    /// The name outputs are called by.
    pub image_id: String,
    pub version: Option<String>,
    /// The kernel command line of a bootable image, if any layer sets one.
    pub cmdline: Option<String>,
    pub format: OutputFormat,
    /// Overlays in the order they are laid (parents' first; a repeated one keeps its first place).
    pub overlays: Vec<ResolvedOverlay>,
    /// Modes of overlay paths (relative to the image's root) from the `[overlay-modes]`
    /// tables: parents' tables merged, the child winning.
    pub overlay_modes: BTreeMap<String, u32>,
    /// The image's environment: parents' tables merged, the child winning.
    pub environment: BTreeMap<String, String>,
    /// Steps in run order: the root ancestor's first.
    pub steps: Vec<ResolvedStep>,
    /// The kernel built from source, if a recipe of the lineage has a `[kernel]` table
    /// (otherwise a bootable image takes the kernel a package installed in `/boot`).
    pub kernel: Option<ResolvedKernel>,
}

impl ResolvedRecipe {
    /// Everything `hermetic lock` resolves for the `[[cargo]]` toolchains (tag
    /// `<recipe>:cargo`): the union of their build-packages; empty without `[[cargo]]`.
    pub fn cargo_packages(&self) -> Vec<String> {
        let all: BTreeSet<String> = self
            .cargo
            .values()
            .flat_map(|c| c.build_packages.iter().cloned())
            .collect();
        all.into_iter().collect()
    }

    /// Everything `hermetic lock` resolves for the `[[go]]` toolchains (tag `<recipe>:go`):
    /// the union of their build-packages; empty without `[[go]]`.
    pub fn go_packages(&self) -> Vec<String> {
        let all: BTreeSet<String> = self
            .go
            .values()
            .flat_map(|g| g.build_packages.iter().cloned())
            .collect();
        all.into_iter().collect()
    }

    /// The environment `step` runs with (besides the variables hermetic sets itself): the
    /// image's environment overlaid with the step's own table.
    pub fn step_environment(&self, step: &ResolvedStep) -> BTreeMap<String, String> {
        let mut env = self.environment.clone();
        env.extend(step.environment.clone());
        env
    }

    /// The stem of output file names: `<image-id>_<version>`, or `<image-id>` without a
    /// version.
    pub fn output_stem(&self) -> String {
        match &self.version {
            Some(v) => format!("{}_{}", self.image_id, v),
            None => self.image_id.clone(),
        }
    }
}

/// Variables hermetic sets for every step; recipes may not set them.
pub const RESERVED_VARIABLES: &[&str] = &[
    "SRCDIR",
    "BUILDDIR",
    "DESTDIR",
    "OUTPUTDIR",
    "TARBALLDIR",
    "SOURCE_DATE_EPOCH",
    "IMAGE_ID",
    "IMAGE_VERSION",
    "ARCHITECTURE",
    "PROFILES",
    "PATH",
    "HOME",
];

/// A loaded project.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub config: ProjectConfig,
    pub recipes: BTreeMap<String, Recipe>,
}

/// The file that marks a project's directory.
pub const PROJECT_FILE: &str = "hermetic.toml";

impl Project {
    /// The path of `hermetic.toml` in `root`.
    pub fn config_path(root: &Path) -> PathBuf {
        root.join(PROJECT_FILE)
    }

    /// Reads `hermetic.toml` and every `recipes/*.toml` of the project at `root`, and checks
    /// that each recipe (with each of its profiles) resolves.
    pub fn load(root: &Path) -> Result<Project, RecipeError> {
        let config_path = Self::config_path(root);
        let config: ProjectConfig = parse_toml(&config_path)?;
        validate_archive(&config_path, &config.archive)?;
        validate_identity(&config_path, &config.identity)?;
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
            let recipe = Recipe { name, path, file };
            validate_recipe(root, &recipe)?;
            recipes.insert(recipe.name.clone(), recipe);
        }
        let project = Project {
            root: root.to_path_buf(),
            config,
            recipes,
        };
        for name in project.recipes.keys() {
            project.resolve(name)?;
            for profile in project.profiles(name)? {
                project.resolve_with_profiles(name, &[profile])?;
            }
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
                suggestion: crate::suggest::did_you_mean(
                    name,
                    self.recipes.keys().map(String::as_str),
                ),
            })
    }

    /// The recipe and its ancestors, the recipe first.
    fn lineage(&self, name: &str) -> Result<Vec<&Recipe>, RecipeError> {
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
                None => return Ok(lineage),
                Some(parent) => {
                    current = self
                        .recipes
                        .get(parent)
                        .ok_or_else(|| RecipeError::Invalid {
                            path: current.path.clone(),
                            key: "parent".into(),
                            message: format!("no recipe named `{parent}` in recipes/"),
                        })?;
                }
            }
        }
    }

    /// Every profile the recipe or one of its ancestors defines.
    pub fn profiles(&self, name: &str) -> Result<BTreeSet<String>, RecipeError> {
        Ok(self
            .lineage(name)?
            .iter()
            .flat_map(|r| r.file.profiles.keys().cloned())
            .collect())
    }

    /// The profiles of the recipe's lineage that add something `pins.lock` pins (packages,
    /// build-packages, source packages or tarballs), sorted: each selection of them has a
    /// closure of its own in the lock.
    pub fn pinning_profiles(&self, name: &str) -> Result<Vec<String>, RecipeError> {
        let mut out = BTreeSet::new();
        for r in self.lineage(name)? {
            for (profile, f) in &r.file.profiles {
                if !(f.packages.is_empty()
                    && f.build_packages.is_empty()
                    && f.source_packages.is_empty()
                    && f.tarballs.is_empty())
                {
                    out.insert(profile.clone());
                }
            }
        }
        if out.len() > MAX_PINNING_PROFILES {
            return Err(RecipeError::TooManyPinningProfiles {
                recipe: name.to_string(),
                profiles: out.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
        Ok(out.into_iter().collect())
    }

    /// The name of the closure `pins.lock` holds for the recipe with the selected profiles:
    /// the recipe's name, then `/` and each selected profile that pins something, sorted
    /// (`gcp/devtools`). A `/` never occurs in a recipe's name.
    pub fn lock_name(&self, name: &str, profiles: &[String]) -> Result<String, RecipeError> {
        let pinning = self.pinning_profiles(name)?;
        let mut out = name.to_string();
        for p in &pinning {
            if profiles.contains(p) {
                out.push('/');
                out.push_str(p);
            }
        }
        Ok(out)
    }

    /// Merges a recipe with everything it inherits, no profile selected.
    pub fn resolve(&self, name: &str) -> Result<ResolvedRecipe, RecipeError> {
        self.resolve_with_profiles(name, &[])
    }

    /// Merges a recipe with everything it inherits and the selected profiles.
    ///
    /// Order: for each recipe from the root ancestor down, its own settings, then each
    /// selected profile it defines (in the order given). Lists extend, maps merge (the later
    /// wins), steps append, single settings are replaced by the later.
    pub fn resolve_with_profiles(
        &self,
        name: &str,
        profiles: &[String],
    ) -> Result<ResolvedRecipe, RecipeError> {
        let lineage = self.lineage(name)?;
        let mut selected: Vec<String> = Vec::new();
        for p in profiles {
            if !selected.contains(p) {
                selected.push(p.clone());
            }
        }
        let known = self.profiles(name)?;
        for p in &selected {
            if !known.contains(p) {
                return Err(RecipeError::UnknownProfile {
                    recipe: name.to_string(),
                    profile: p.clone(),
                    known: if known.is_empty() {
                        "(none)".into()
                    } else {
                        known.iter().cloned().collect::<Vec<_>>().join(", ")
                    },
                    suggestion: crate::suggest::did_you_mean(p, known.iter().map(String::as_str)),
                });
            }
        }
        let mut resolved = ResolvedRecipe {
            name: name.to_string(),
            lineage: lineage.iter().map(|r| r.name.clone()).collect(),
            packages: BTreeSet::new(),
            build_packages: BTreeSet::new(),
            source_packages: BTreeSet::new(),
            tarballs: BTreeSet::new(),
            sources: BTreeMap::new(),
            cargo: BTreeMap::new(),
            go: BTreeMap::new(),
            profiles: selected.clone(),
            description: lineage[0].file.description.clone(),
            image_id: name.to_string(),
            version: None,
            cmdline: None,
            format: OutputFormat::Directory,
            overlays: Vec::new(),
            overlay_modes: BTreeMap::new(),
            environment: BTreeMap::new(),
            steps: Vec::new(),
            kernel: None,
        };
        let mut format = None;
        for r in lineage.iter().rev() {
            let f = &r.file;
            for pin in &f.sources {
                resolved.sources.insert(pin.name().to_string(), pin.clone());
            }
            for c in &f.cargo {
                resolved.cargo.insert(c.name.clone(), c.clone());
            }
            for g in &f.go {
                resolved.go.insert(g.name.clone(), g.clone());
            }
            if let Some(id) = &f.image_id {
                resolved.image_id = id.clone();
            }
            if let Some(k) = &f.kernel {
                resolved.kernel = Some(resolve_kernel(&self.root, r, k)?);
            }
            let layer = Layer {
                packages: &f.packages,
                build_packages: &f.build_packages,
                source_packages: &f.source_packages,
                tarballs: &f.tarballs,
                overlays: &f.overlays,
                environment: &f.environment,
                steps: &f.steps,
                format: f.format,
                version: &f.version,
                cmdline: &f.cmdline,
                overlay_modes: &f.overlay_modes,
            };
            self.apply(&mut resolved, &mut format, r, None, &layer)?;
            for p in &selected {
                if let Some(pf) = f.profiles.get(p) {
                    let layer = Layer {
                        packages: &pf.packages,
                        build_packages: &pf.build_packages,
                        source_packages: &pf.source_packages,
                        tarballs: &pf.tarballs,
                        overlays: &pf.overlays,
                        environment: &pf.environment,
                        steps: &pf.steps,
                        format: pf.format,
                        version: &pf.version,
                        cmdline: &pf.cmdline,
                        overlay_modes: &pf.overlay_modes,
                    };
                    self.apply(&mut resolved, &mut format, r, Some(p), &layer)?;
                }
            }
        }
        resolved.format = format.unwrap_or_default();
        // A build's source must be a tree the image's lineage declares.
        for r in &lineage {
            for (i, c) in r.file.cargo.iter().enumerate() {
                if resolved.cargo.get(&c.name) != Some(c) {
                    continue;
                }
                let invalid = |message: String| RecipeError::Invalid {
                    path: r.path.clone(),
                    key: format!("cargo[{i}].source"),
                    message,
                };
                match resolved.sources.get(&c.source) {
                    None => {
                        return Err(invalid(format!(
                            "no `[[sources]]` entry named `{}` in recipe `{name}` or its parents",
                            c.source
                        )));
                    }
                    Some(crate::sources::pin::SourcePin::Deb { .. }) => {
                        return Err(invalid(format!(
                            "`{}` is a deb source; a cargo build needs a `file` archive, a `git` tree or a `path` directory",
                            c.source
                        )));
                    }
                    Some(_) => {}
                }
            }
            for (i, g) in r.file.go.iter().enumerate() {
                if resolved.go.get(&g.name) != Some(g) {
                    continue;
                }
                resolve_go_sources(&resolved, &r.path, i, g, name)?;
            }
        }
        Ok(resolved)
    }

    fn apply(
        &self,
        resolved: &mut ResolvedRecipe,
        format: &mut Option<OutputFormat>,
        recipe: &Recipe,
        profile: Option<&String>,
        layer: &Layer<'_>,
    ) -> Result<(), RecipeError> {
        resolved.packages.extend(layer.packages.iter().cloned());
        resolved
            .build_packages
            .extend(layer.build_packages.iter().cloned());
        resolved
            .source_packages
            .extend(layer.source_packages.iter().cloned());
        resolved.tarballs.extend(layer.tarballs.iter().cloned());
        for o in layer.overlays {
            if !resolved.overlays.iter().any(|x| &x.name == o) {
                resolved.overlays.push(ResolvedOverlay {
                    name: o.clone(),
                    path: self.root.join("overlays").join(o),
                    recipe: recipe.name.clone(),
                });
            }
        }
        resolved.environment.extend(
            layer
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        if layer.format.is_some() {
            *format = layer.format;
        }
        if layer.version.is_some() {
            resolved.version = layer.version.clone();
        }
        for (path, mode) in layer.overlay_modes {
            // Checked when the project was loaded.
            if let Some(mode) = parse_mode(mode) {
                let normal: Vec<String> = Path::new(path)
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
                        _ => None,
                    })
                    .collect();
                resolved.overlay_modes.insert(normal.join("/"), mode);
            }
        }
        if layer.cmdline.is_some() {
            resolved.cmdline = layer.cmdline.clone();
        }
        let prefix = match profile {
            Some(p) => format!("profiles.{p}.steps"),
            None => "steps".into(),
        };
        for (i, s) in layer.steps.iter().enumerate() {
            if let Some(prev) = resolved.steps.iter().find(|x| x.name == s.name) {
                return Err(RecipeError::Invalid {
                    path: recipe.path.clone(),
                    key: format!("{prefix}[{i}].name"),
                    message: format!(
                        "a step named `{}` is already defined by recipe `{}`; step names must be unique in an image",
                        s.name, prev.recipe
                    ),
                });
            }
            let (script, script_file) = match (&s.script, &s.script_file) {
                (Some(text), None) => (text.clone(), None),
                (None, Some(file)) => {
                    let path = self.root.join(file);
                    let text =
                        fs_err::read_to_string(&path).map_err(|source| RecipeError::Invalid {
                            path: recipe.path.clone(),
                            key: format!("{prefix}[{i}].script-file"),
                            message: format!("cannot read the script: {source}"),
                        })?;
                    (text, Some(path))
                }
                _ => {
                    return Err(RecipeError::Invalid {
                        path: recipe.path.clone(),
                        key: format!("{prefix}[{i}].script"),
                        message: "a step needs exactly one of `script` and `script-file`".into(),
                    });
                }
            };
            for (j, up) in s.upstream.iter().enumerate() {
                let message = match resolved.sources.get(up) {
                    Some(crate::sources::pin::SourcePin::File { .. }) => continue,
                    Some(_) => format!(
                        "`{up}` is not a `file` source; only `file` sources reach the steps (under $TARBALLDIR/sources/)"
                    ),
                    None => format!(
                        "no `[[sources]]` entry named `{up}` in recipe `{}` or its parents",
                        recipe.name
                    ),
                };
                return Err(RecipeError::Invalid {
                    path: recipe.path.clone(),
                    key: format!("{prefix}[{i}].upstream[{j}]"),
                    message,
                });
            }
            resolved.steps.push(ResolvedStep {
                name: s.name.clone(),
                recipe: recipe.name.clone(),
                profile: profile.cloned(),
                script,
                script_file,
                environment: s.environment.clone(),
                tree: s.tree,
                sources: s
                    .sources
                    .iter()
                    .map(|rel| ResolvedSource {
                        relative: rel.clone(),
                        path: self.root.join(rel),
                    })
                    .collect(),
                upstream: s.upstream.clone(),
            });
        }
        Ok(())
    }
}

/// The `[kernel]` table of `recipe`, checked and resolved against the project.
fn resolve_kernel(
    root: &Path,
    recipe: &Recipe,
    k: &KernelFile,
) -> Result<ResolvedKernel, RecipeError> {
    let invalid = |key: &str, message: String| RecipeError::Invalid {
        path: recipe.path.clone(),
        key: format!("kernel.{key}"),
        message,
    };
    let package_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    };
    if !package_ok(&k.source) {
        return Err(invalid(
            "source",
            format!("`{}` is not a Debian package name", k.source),
        ));
    }
    let base = match (&k.config_package, &k.config_file, &k.config_target) {
        (Some(package), Some(file), None) => {
            if !package_ok(package) {
                return Err(invalid(
                    "config-package",
                    format!("`{package}` is not a Debian package name"),
                ));
            }
            if !is_simple_name(file) {
                return Err(invalid(
                    "config-file",
                    format!("`{file}` is not a plain file name"),
                ));
            }
            KernelBase::Debian {
                package: package.clone(),
                file: file.clone(),
            }
        }
        (None, None, Some(target)) => {
            if !target.ends_with("config")
                || !target
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return Err(invalid(
                    "config-target",
                    format!(
                        "`{target}` is not a configuration target of the kernel's Makefile (e.g. `tinyconfig`, `defconfig`)"
                    ),
                ));
            }
            KernelBase::Target(target.clone())
        }
        _ => {
            return Err(invalid(
                "config-package",
                "the base config is either `config-package` with `config-file` (a Debian config, e.g. linux-config-6.12 and config.amd64_none_cloud-amd64) or `config-target` (e.g. tinyconfig)".into(),
            ));
        }
    };
    let dir_name = k.dir.clone().unwrap_or_else(|| "kernel".to_string());
    if !is_plain_relative(&dir_name) {
        return Err(invalid(
            "dir",
            format!("`{dir_name}` is not a relative path inside the project"),
        ));
    }
    let dir = root.join(&dir_name);
    if !dir.is_dir() {
        return Err(invalid(
            "dir",
            format!("{} is not a directory", dir.display()),
        ));
    }
    for (i, p) in k.build_packages.iter().enumerate() {
        if !package_ok(p) {
            return Err(invalid(
                &format!("build-packages[{i}]"),
                format!("`{p}` is not a Debian package name"),
            ));
        }
    }
    Ok(ResolvedKernel {
        recipe: recipe.name.clone(),
        source: k.source.clone(),
        base,
        dir_name,
        dir,
        build_packages: k.build_packages.iter().cloned().collect(),
    })
}

/// The additive part shared by a recipe and a profile.
struct Layer<'a> {
    packages: &'a [String],
    build_packages: &'a [String],
    source_packages: &'a [String],
    tarballs: &'a [Tarball],
    overlays: &'a [String],
    environment: &'a BTreeMap<String, String>,
    steps: &'a [StepFile],
    format: Option<OutputFormat>,
    version: &'a Option<String>,
    cmdline: &'a Option<String>,
    overlay_modes: &'a BTreeMap<String, String>,
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

fn validate_identity(path: &Path, id: &IdentityConfig) -> Result<(), RecipeError> {
    let invalid = |key: &str, message: String| RecipeError::Invalid {
        path: path.to_path_buf(),
        key: format!("identity.{key}"),
        message,
    };
    for (key, v) in [("disk-guid", &id.disk_guid), ("esp-guid", &id.esp_guid)] {
        if crate::image::gpt::Guid::parse(v).is_err() {
            return Err(invalid(
                key,
                format!("`{v}` is not a GUID like 12345678-1234-5678-1234-567812345678"),
            ));
        }
    }
    let hex8 =
        id.esp_volume_id.len() == 8 && id.esp_volume_id.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex8 {
        return Err(invalid(
            "esp-volume-id",
            format!("`{}` is not 8 hex digits like 12345678", id.esp_volume_id),
        ));
    }
    if id.kernel_build_timestamp.is_empty()
        || !id
            .kernel_build_timestamp
            .chars()
            .all(|c| c == ' ' || c.is_ascii_graphic())
    {
        return Err(invalid(
            "kernel-build-timestamp",
            "must be printable ASCII, not empty".into(),
        ));
    }
    // Both become host names or parts of `uname -v`: letters, digits, `-`, `_`, `.`.
    for (key, v) in [
        ("kernel-build-user", &id.kernel_build_user),
        ("kernel-build-host", &id.kernel_build_host),
    ] {
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return Err(invalid(
                key,
                format!("`{v}` must be 1 to 64 letters, digits, `-`, `_` or `.`"),
            ));
        }
    }
    if id.vhd_seed.is_empty() || id.vhd_seed.chars().any(char::is_control) {
        return Err(invalid(
            "vhd-seed",
            "must be a non-empty line of text".into(),
        ));
    }
    Ok(())
}

fn validate_archive(path: &Path, a: &ArchiveConfig) -> Result<(), RecipeError> {
    if !crate::archive::is_snapshot_timestamp(&a.snapshot) {
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
    for (i, p) in a.snapshot_packages.iter().enumerate() {
        let invalid = |message: String| RecipeError::Invalid {
            path: path.to_path_buf(),
            key: format!("archive.snapshot-package[{i}]"),
            message,
        };
        if !crate::archive::is_snapshot_timestamp(&p.snapshot) {
            return Err(invalid(format!(
                "`{}` is not a snapshot.debian.org timestamp like 20240314T094714Z",
                p.snapshot
            )));
        }
        if !is_simple_name(&p.name) || !is_simple_name(&p.suite) || p.version.trim().is_empty() {
            return Err(invalid(format!(
                "`{} {}` of suite `{}` is not a package name, version and suite",
                p.name, p.version, p.suite
            )));
        }
        if a.snapshot_packages[..i].iter().any(|q| q.name == p.name) {
            return Err(invalid(format!(
                "package `{}` is taken from another snapshot twice",
                p.name
            )));
        }
    }
    Ok(())
}

/// A name used in file names and logs: letters, digits, `.`, `_`, `-`, `+`, `~`, not
/// starting with `.` or `-`.
fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+~".contains(&b))
}

fn is_variable_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A relative path made only of normal components.
fn is_plain_relative(s: &str) -> bool {
    !s.is_empty()
        && Path::new(s)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        && Path::new(s)
            .components()
            .any(|c| matches!(c, Component::Normal(_)))
}

/// Checks a recipe's `[[sources]]`: simple unique names, well-formed hashes where given,
/// at least one URL (a `path` source: a directory of the project, without `..`).
fn validate_sources(
    root: &Path,
    sources: &[crate::sources::pin::SourcePin],
    invalid: &dyn Fn(String, String) -> RecipeError,
) -> Result<(), RecipeError> {
    use crate::sources::pin::SourcePin;
    let mut names = BTreeSet::new();
    for (i, pin) in sources.iter().enumerate() {
        let name = pin.name();
        if !is_simple_name(name) {
            return Err(invalid(
                format!("sources[{i}].name"),
                format!("`{name}` is not a simple name (letters, digits, `._-+~`)"),
            ));
        }
        if !names.insert(name) {
            return Err(invalid(
                format!("sources[{i}].name"),
                format!("`{name}` appears twice"),
            ));
        }
        let field = pin.hash_field();
        if let Some(h) = pin.content_hash()
            && !crate::hash::is_sha256(h)
        {
            return Err(invalid(
                format!("sources[{i}].{field}"),
                format!("`{h}` is not a SHA-256 (64 lowercase hex digits)"),
            ));
        }
        if let SourcePin::Git { commit, .. } = pin
            && (commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(invalid(
                format!("sources[{i}].commit"),
                format!("`{commit}` is not a full 40-digit commit id"),
            ));
        }
        if let SourcePin::Path { path, .. } = pin {
            if !is_plain_relative(path) {
                return Err(invalid(
                    format!("sources[{i}].path"),
                    format!("`{path}` must be relative to the project, without `..`"),
                ));
            }
            if !fs_err::metadata(root.join(path)).is_ok_and(|m| m.is_dir()) {
                return Err(invalid(
                    format!("sources[{i}].path"),
                    format!("{} is not a directory", root.join(path).display()),
                ));
            }
            continue;
        }
        if pin.urls().is_empty() {
            return Err(invalid(
                format!("sources[{i}].urls"),
                "a file source needs at least one URL".into(),
            ));
        }
    }
    Ok(())
}

/// Checks that the `[[go]]` build `g` (entry `i` of the recipe file `path`) names sources
/// the resolved recipe `recipe` (named `name`) declares: a tree, and a `go-modules` pin
/// read from that tree; and that no `[[cargo]]` build has its name (both install under it).
fn resolve_go_sources(
    recipe: &ResolvedRecipe,
    path: &Path,
    i: usize,
    g: &GoProgram,
    name: &str,
) -> Result<(), RecipeError> {
    use crate::sources::pin::SourcePin;
    let invalid = |k: &str, message: String| RecipeError::Invalid {
        path: path.to_path_buf(),
        key: format!("go[{i}].{k}"),
        message,
    };
    if recipe.cargo.contains_key(&g.name) {
        return Err(invalid(
            "name",
            format!(
                "`{}` also names a `[[cargo]]` build; give the programs different names",
                g.name
            ),
        ));
    }
    match recipe.sources.get(&g.source) {
        None => {
            return Err(invalid(
                "source",
                format!(
                    "no `[[sources]]` entry named `{}` in recipe `{name}` or its parents",
                    g.source
                ),
            ));
        }
        Some(SourcePin::File { .. } | SourcePin::Git { .. }) => {}
        Some(_) => {
            return Err(invalid(
                "source",
                format!(
                    "`{}` is not a `file` archive or a `git` tree, which a go build needs",
                    g.source
                ),
            ));
        }
    }
    if let Some(m) = &g.modules {
        match recipe.sources.get(m) {
            None => {
                return Err(invalid(
                    "modules",
                    format!("no `[[sources]]` entry named `{m}` in recipe `{name}` or its parents"),
                ));
            }
            Some(SourcePin::GoModules { source, dir, .. }) => {
                if source != &g.source || dir.trim_matches('/') != g.dir().trim_matches('/') {
                    return Err(invalid(
                        "modules",
                        format!(
                            "the go-modules source `{m}` reads `{source}` at `{dir}`, not `{}` at `{}`",
                            g.source,
                            g.dir()
                        ),
                    ));
                }
            }
            Some(_) => {
                return Err(invalid(
                    "modules",
                    format!("`{m}` is not a `go-modules` source"),
                ));
            }
        }
    }
    Ok(())
}

/// What `[[cargo]]` and `[[go]]` entries (`table`, entry `i`) share: a simple name not
/// used before in `names`, a relative `dir`, a toolchain of package names.
fn check_program<'a>(
    table: &str,
    i: usize,
    (name, dir): (&'a String, Option<&str>),
    build_packages: &[String],
    names: &mut BTreeSet<&'a String>,
    invalid: &dyn Fn(String, String) -> RecipeError,
) -> Result<(), RecipeError> {
    let key = |k: &str| format!("{table}[{i}].{k}");
    if !is_simple_name(name) {
        return Err(invalid(
            key("name"),
            format!("`{name}` is not a simple name (letters, digits, `._-+~`)"),
        ));
    }
    if !names.insert(name) {
        return Err(invalid(key("name"), format!("`{name}` appears twice")));
    }
    if let Some(d) = dir
        && !is_names_only(d)
    {
        return Err(invalid(
            key("dir"),
            format!("`{d}` is not a relative path inside the source tree"),
        ));
    }
    if build_packages.is_empty() {
        return Err(invalid(
            key("build-packages"),
            format!("a {table} build needs a toolchain; leave `build-packages` out for Debian's"),
        ));
    }
    for (j, p) in build_packages.iter().enumerate() {
        if p.is_empty() || p.contains(char::is_whitespace) {
            return Err(invalid(
                format!("{table}[{i}].build-packages[{j}]"),
                format!("`{p}` is not a package name"),
            ));
        }
    }
    Ok(())
}

/// A non-empty relative path of names only: no `..`, no `.`, no root (stricter than
/// [`is_plain_relative`], which allows `.`).
fn is_names_only(s: &str) -> bool {
    !s.is_empty()
        && Path::new(s)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Checks a recipe's `[[go]]` entries on their own: names, the module directory, package
/// patterns, tags and flags that `go build` would misread, the toolchain, and absolute
/// install destinations. (The sources are checked by [`Project::resolve`].)
fn validate_go(
    builds: &[GoProgram],
    invalid: &dyn Fn(String, String) -> RecipeError,
) -> Result<(), RecipeError> {
    let mut names = BTreeSet::new();
    for (i, g) in builds.iter().enumerate() {
        let key = |k: &str| format!("go[{i}].{k}");
        check_program(
            "go",
            i,
            (&g.name, g.dir.as_deref()),
            &g.build_packages,
            &mut names,
            invalid,
        )?;
        if g.packages.is_empty() {
            return Err(invalid(
                key("packages"),
                "nothing to build: name a package, e.g. `packages = [\"./cmd/foo\"]`".into(),
            ));
        }
        for p in &g.packages {
            let inside = p == "."
                || p.strip_prefix("./").is_some_and(|rest| {
                    let rest = rest.strip_suffix("/...").unwrap_or(rest);
                    rest.is_empty() || is_names_only(rest)
                });
            if !inside || p.contains(char::is_whitespace) {
                return Err(invalid(
                    key("packages"),
                    format!("`{p}` is not a package of the module (`.` or `./path`)"),
                ));
            }
        }
        let arg_ok = |s: &str| !s.is_empty() && !s.starts_with('-') && !s.contains([',', ' ']);
        if let Some(bad) = g.tags.iter().find(|t| !arg_ok(t)) {
            return Err(invalid(key("tags"), format!("`{bad}` is not a build tag")));
        }
        if let Some(bad) = g.ldflags.iter().find(|f| f.is_empty()) {
            return Err(invalid(key("ldflags"), format!("`{bad}` is an empty flag")));
        }
        if g.install.is_empty() {
            return Err(invalid(
                key("install"),
                "nothing to install: map a built binary to its path in the image, e.g. `install = { \"foo\" = \"/usr/bin/foo\" }`".into(),
            ));
        }
        for (from, to) in &g.install {
            if !is_names_only(from) || from.contains('/') {
                return Err(invalid(
                    key("install"),
                    format!("`{from}` is not the name of a built binary"),
                ));
            }
            check_install_destination(to, &key("install"), invalid)?;
        }
    }
    Ok(())
}

/// Checks a recipe's `[[cargo]]` entries on their own: names, relative paths inside the
/// source and the profile's directory, absolute install destinations, arguments that cargo
/// would take as options. (That `source` names a tree is checked by [`Project::resolve`].)
fn validate_cargo(
    builds: &[CargoBuild],
    invalid: &dyn Fn(String, String) -> RecipeError,
) -> Result<(), RecipeError> {
    let mut names = BTreeSet::new();
    for (i, c) in builds.iter().enumerate() {
        let key = |k: &str| format!("cargo[{i}].{k}");
        check_program(
            "cargo",
            i,
            (&c.name, c.dir.as_deref()),
            &c.build_packages,
            &mut names,
            invalid,
        )?;
        if !is_simple_name(&c.profile) {
            return Err(invalid(
                key("profile"),
                format!("`{}` is not a cargo profile name", c.profile),
            ));
        }
        // Keys as cargo's profiles spell them; string values plain words (`thin`, `abort`,
        // `s`), so that `--config profile.<profile>.<key>="<value>"` needs no quoting.
        let word = |s: &str, extra: &[char]| {
            !s.is_empty()
                && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
        };
        for (k, v) in &c.profile_settings {
            if !word(k, &['-']) || k.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(invalid(
                    key("profile-settings"),
                    format!("`{k}` is not a cargo profile setting (e.g. `lto`, `codegen-units`)"),
                ));
            }
            if let ProfileValue::String(s) = v
                && !word(s, &['.', '_', '-'])
            {
                return Err(invalid(
                    key("profile-settings"),
                    format!("`{k}`: `{s}` is not a plain word (letters, digits, `._-`)"),
                ));
            }
        }
        let arg_ok =
            |s: &str| !s.is_empty() && !s.starts_with('-') && !s.contains(char::is_whitespace);
        for (field, values) in [
            ("package", c.package.iter().collect::<Vec<_>>()),
            ("bins", c.bins.iter().collect()),
            ("features", c.features.iter().collect()),
        ] {
            if let Some(bad) = values.iter().find(|v| !arg_ok(v)) {
                return Err(invalid(
                    key(field),
                    format!("`{bad}` is not a package, binary or feature name"),
                ));
            }
        }
        if c.install.is_empty() {
            return Err(invalid(
                key("install"),
                "nothing to install: map a built file to its path in the image, e.g. `install = { \"rg\" = \"/usr/bin/rg\" }`".into(),
            ));
        }
        for (from, to) in &c.install {
            if !is_names_only(from) {
                return Err(invalid(
                    key("install"),
                    format!(
                        "`{from}` is not a relative path under target/{}/",
                        c.profile_dir()
                    ),
                ));
            }
            check_install_destination(to, &key("install"), invalid)?;
        }
    }
    Ok(())
}

/// An `install` destination of a program build (`key`) must be an absolute path of a file
/// in the image, not under one of merged /usr's links.
fn check_install_destination(
    to: &str,
    key: &str,
    invalid: &dyn Fn(String, String) -> RecipeError,
) -> Result<(), RecipeError> {
    let rest = to.strip_prefix('/').unwrap_or("");
    if !is_names_only(rest) {
        return Err(invalid(
            key.to_string(),
            format!("`{to}` is not an absolute path of a file in the image"),
        ));
    }
    // Merged /usr: these are links in the image, not directories.
    let first = rest.split('/').next().unwrap_or("");
    if ["bin", "sbin", "lib", "lib32", "lib64", "libx32"].contains(&first) {
        return Err(invalid(
            key.to_string(),
            format!(
                "`{to}` lies under /{first}, a link to /usr/{first} in the image; install to /usr/{first}/... instead"
            ),
        ));
    }
    Ok(())
}

/// Checks what can be checked in one recipe file alone: names, paths that must exist,
/// variables, steps. Inheritance is checked by [`Project::resolve`].
fn validate_recipe(root: &Path, recipe: &Recipe) -> Result<(), RecipeError> {
    let f = &recipe.file;
    let invalid = |key: String, message: String| RecipeError::Invalid {
        path: recipe.path.clone(),
        key,
        message,
    };
    if let Some(id) = &f.image_id
        && !is_simple_name(id)
    {
        return Err(invalid(
            "image-id".into(),
            format!("`{id}` is not a simple name (letters, digits, `._-+~`)"),
        ));
    }
    let layer = Layer {
        packages: &f.packages,
        build_packages: &f.build_packages,
        source_packages: &f.source_packages,
        tarballs: &f.tarballs,
        overlays: &f.overlays,
        environment: &f.environment,
        steps: &f.steps,
        format: f.format,
        version: &f.version,
        cmdline: &f.cmdline,
        overlay_modes: &f.overlay_modes,
    };
    validate_layer(root, "", &layer, &invalid)?;
    validate_sources(root, &f.sources, &invalid)?;
    validate_cargo(&f.cargo, &invalid)?;
    validate_go(&f.go, &invalid)?;
    if let Some(k) = &f.kernel {
        resolve_kernel(root, recipe, k)?;
    }
    for (name, p) in &f.profiles {
        if !is_simple_name(name) {
            return Err(invalid(
                format!("profiles.{name}"),
                "a profile name is letters, digits and `._-+~`".into(),
            ));
        }
        let layer = Layer {
            packages: &p.packages,
            build_packages: &p.build_packages,
            source_packages: &p.source_packages,
            tarballs: &p.tarballs,
            overlays: &p.overlays,
            environment: &p.environment,
            steps: &p.steps,
            format: p.format,
            version: &p.version,
            cmdline: &p.cmdline,
            overlay_modes: &p.overlay_modes,
        };
        validate_layer(root, &format!("profiles.{name}."), &layer, &invalid)?;
    }
    Ok(())
}

fn validate_layer(
    root: &Path,
    prefix: &str,
    l: &Layer<'_>,
    invalid: &dyn Fn(String, String) -> RecipeError,
) -> Result<(), RecipeError> {
    if let Some(v) = l.version
        && !is_simple_name(v)
    {
        return Err(invalid(
            format!("{prefix}version"),
            format!("`{v}` is not a simple version (letters, digits, `._-+~`)"),
        ));
    }
    for (key, list) in [
        ("packages", l.packages),
        ("build-packages", l.build_packages),
        ("source-packages", l.source_packages),
    ] {
        for (i, p) in list.iter().enumerate() {
            if p.trim().is_empty() || p.chars().any(char::is_whitespace) {
                return Err(invalid(
                    format!("{prefix}{key}[{i}]"),
                    format!("`{p}` is not a package name"),
                ));
            }
        }
    }
    let mut names = BTreeSet::new();
    for (i, t) in l.tarballs.iter().enumerate() {
        if !is_simple_name(&t.name) {
            return Err(invalid(
                format!("{prefix}tarballs[{i}].name"),
                format!("`{}` is not a simple file name", t.name),
            ));
        }
        if !names.insert(&t.name) {
            return Err(invalid(
                format!("{prefix}tarballs[{i}].name"),
                format!("`{}` appears twice", t.name),
            ));
        }
        if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                format!("{prefix}tarballs[{i}].sha256"),
                format!("`{}` is not a SHA-256 (64 hex digits)", t.sha256),
            ));
        }
    }
    for (i, o) in l.overlays.iter().enumerate() {
        let key = format!("{prefix}overlays[{i}]");
        if !is_plain_relative(o) {
            return Err(invalid(
                key,
                format!("`{o}` must be a directory relative to overlays/, without `..`"),
            ));
        }
        let path = root.join("overlays").join(o);
        if !fs_err::metadata(&path).is_ok_and(|m| m.is_dir()) {
            return Err(invalid(
                key,
                format!("{} is not a directory", path.display()),
            ));
        }
    }
    validate_environment(&format!("{prefix}environment"), l.environment, invalid)?;
    for (path, mode) in l.overlay_modes {
        let key = format!("{prefix}overlay-modes.\"{path}\"");
        if !is_plain_relative(path.trim_end_matches('/')) {
            return Err(invalid(
                key,
                format!("`{path}` must be a path relative to the image's root, without `..`"),
            ));
        }
        if parse_mode(mode).is_none() {
            return Err(invalid(
                key,
                format!("`{mode}` is not a file mode: 3 or 4 octal digits, e.g. \"0440\""),
            ));
        }
    }
    let mut step_names = BTreeSet::new();
    for (i, s) in l.steps.iter().enumerate() {
        let key = |k: &str| format!("{prefix}steps[{i}].{k}");
        if !is_simple_name(&s.name) {
            return Err(invalid(
                key("name"),
                format!(
                    "`{}` is not a simple name (letters, digits, `._-+~`)",
                    s.name
                ),
            ));
        }
        if !step_names.insert(&s.name) {
            return Err(invalid(
                key("name"),
                format!("a step named `{}` appears twice", s.name),
            ));
        }
        match (&s.script, &s.script_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    key("script"),
                    "give either `script` or `script-file`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    key("script"),
                    "a step needs `script` or `script-file`".into(),
                ));
            }
            (None, Some(file)) => {
                if !is_plain_relative(file) {
                    return Err(invalid(
                        key("script-file"),
                        format!("`{file}` must be relative to the project, without `..`"),
                    ));
                }
                if !fs_err::metadata(root.join(file)).is_ok_and(|m| m.is_file()) {
                    return Err(invalid(
                        key("script-file"),
                        format!("{} is not a file", root.join(file).display()),
                    ));
                }
            }
            (Some(_), None) => {}
        }
        validate_environment(&key("environment"), &s.environment, invalid)?;
        for (j, src) in s.sources.iter().enumerate() {
            let k = format!("{prefix}steps[{i}].sources[{j}]");
            if !is_plain_relative(src) {
                return Err(invalid(
                    k,
                    format!("`{src}` must be relative to the project, without `..`"),
                ));
            }
            if fs_err::symlink_metadata(root.join(src)).is_err() {
                return Err(invalid(
                    k,
                    format!("{} does not exist", root.join(src).display()),
                ));
            }
        }
    }
    Ok(())
}

/// An `[overlay-modes]` value: 3 or 4 octal digits (`"0440"`, `"755"`).
pub fn parse_mode(text: &str) -> Option<u32> {
    if !(3..=4).contains(&text.len()) || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(text, 8).ok()
}

fn validate_environment(
    key: &str,
    env: &BTreeMap<String, String>,
    invalid: &dyn Fn(String, String) -> RecipeError,
) -> Result<(), RecipeError> {
    for (name, value) in env {
        if !is_variable_name(name) {
            return Err(invalid(
                format!("{key}.{name}"),
                "a variable name is letters, digits and `_`, not starting with a digit".into(),
            ));
        }
        if RESERVED_VARIABLES.contains(&name.as_str()) {
            return Err(invalid(
                format!("{key}.{name}"),
                format!("`{name}` is set by hermetic for every step and cannot be overridden"),
            ));
        }
        if value.contains('\0') {
            return Err(invalid(
                format!("{key}.{name}"),
                "a value cannot contain a NUL byte".into(),
            ));
        }
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
            let path = dir.path().join(name);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            if name.ends_with('/') {
                fs_err::create_dir_all(&path).unwrap();
            } else {
                fs_err::write(path, text).unwrap();
            }
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
        assert_eq!(p.config.build.source_date_epoch, 0);
    }

    const BASE: &str = r#"
description = "base"
version = "1.0"
overlays = ["common"]
[environment]
KERNEL_VERSION = "6.12"
LOCALVERSION = "-base"
[[steps]]
name = "kernel"
script-file = "scripts/kernel.sh"
sources = ["kernel/configs"]
environment = { JOBS = "2" }
[[steps]]
name = "cleanup"
script = "rm -rf $DESTDIR/var/log/*"
[profiles.devtools]
packages = ["strace"]
environment = { DEVTOOLS = "1" }
[[profiles.devtools.steps]]
name = "enable-ssh"
script = "systemctl --root=$DESTDIR enable ssh"
"#;

    const CHILD: &str = r#"
parent = "base"
image-id = "buildernet-gcp"
format = "uki"
overlays = ["gcp", "common"]
packages = ["nvme-cli"]
[environment]
LOCALVERSION = "-cloud"
[[steps]]
name = "gcp-disk"
script = "make-disk $OUTPUTDIR"
tree = "output"
[profiles.devtools]
version = "dev"
"#;

    fn full_project() -> tempfile::TempDir {
        project(&[
            ("hermetic.toml", CONFIG),
            ("scripts/kernel.sh", "#!/bin/sh\nmake\n"),
            ("kernel/configs/", ""),
            ("overlays/common/", ""),
            ("overlays/gcp/", ""),
            ("recipes/base.toml", BASE),
            ("recipes/gcp.toml", CHILD),
        ])
    }

    #[test]
    fn inheritance_of_steps_env_overlays_format() {
        let dir = full_project();
        let p = Project::load(dir.path()).unwrap();
        let base = p.resolve("base").unwrap();
        assert_eq!(base.format, OutputFormat::Directory);
        assert_eq!(base.output_stem(), "base_1.0");
        assert_eq!(base.steps[0].script, "#!/bin/sh\nmake\n");
        assert_eq!(
            base.steps[0].script_file.as_deref(),
            Some(dir.path().join("scripts/kernel.sh").as_path())
        );
        assert_eq!(base.steps[0].sources[0].relative, "kernel/configs");

        let gcp = p.resolve("gcp").unwrap();
        assert_eq!(gcp.format, OutputFormat::Uki);
        assert_eq!(gcp.output_stem(), "buildernet-gcp_1.0");
        let steps: Vec<_> = gcp.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(steps, ["kernel", "cleanup", "gcp-disk"]);
        assert_eq!(gcp.steps[2].tree, StepTree::Output);
        assert_eq!(gcp.steps[2].recipe, "gcp");
        let overlays: Vec<_> = gcp.overlays.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(overlays, ["common", "gcp"]);
        assert_eq!(gcp.environment["LOCALVERSION"], "-cloud");
        assert_eq!(gcp.environment["KERNEL_VERSION"], "6.12");
        let env = gcp.step_environment(&gcp.steps[0]);
        assert_eq!(env["JOBS"], "2");
        assert_eq!(env["LOCALVERSION"], "-cloud");
        assert!(!gcp.packages.contains("strace"));
    }

    #[test]
    fn profiles_add_after_their_recipe() {
        let dir = full_project();
        let p = Project::load(dir.path()).unwrap();
        assert_eq!(
            p.profiles("gcp").unwrap().into_iter().collect::<Vec<_>>(),
            ["devtools"]
        );
        let gcp = p
            .resolve_with_profiles("gcp", &["devtools".to_string()])
            .unwrap();
        assert!(gcp.packages.contains("strace"));
        assert_eq!(gcp.environment["DEVTOOLS"], "1");
        assert_eq!(gcp.version.as_deref(), Some("dev"));
        assert_eq!(gcp.profiles, ["devtools"]);
        let steps: Vec<_> = gcp.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(steps, ["kernel", "cleanup", "enable-ssh", "gcp-disk"]);
        assert_eq!(gcp.steps[2].profile.as_deref(), Some("devtools"));

        let err = p
            .resolve_with_profiles("gcp", &["nope".to_string()])
            .unwrap_err();
        assert!(err.to_string().contains("no profile named `nope`"), "{err}");
        let hints = crate::error::Diagnostic::hints(&err);
        assert!(hints[0].starts_with("the profiles of `gcp`"), "{hints:?}");
        assert!(hints[0].contains("devtools"), "{hints:?}");
    }

    #[test]
    fn lock_names_list_the_selected_profiles_that_pin_something() {
        let base = format!(
            "[profiles.zz]\ntarballs = [{{ name = \"t\", url = \"http://x/t\", sha256 = \"{}\" }}]\n\
             [profiles.env]\nenvironment = {{ A = \"1\" }}\n",
            "0".repeat(64)
        );
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("recipes/base.toml", &base),
            (
                "recipes/gcp.toml",
                "parent = \"base\"\n[profiles.dev]\npackages = [\"strace\"]\n\
                 [profiles.src]\nsource-packages = [\"hello\"]\n",
            ),
        ]);
        let p = Project::load(dir.path()).unwrap();
        assert_eq!(p.pinning_profiles("gcp").unwrap(), ["dev", "src", "zz"]);
        assert_eq!(p.pinning_profiles("base").unwrap(), ["zz"]);
        let name = |r: &str, sel: &[&str]| {
            let sel: Vec<String> = sel.iter().map(|s| s.to_string()).collect();
            p.lock_name(r, &sel).unwrap()
        };
        assert_eq!(name("gcp", &[]), "gcp");
        assert_eq!(name("gcp", &["env"]), "gcp");
        // Sorted, whatever the order of selection; profiles that pin nothing left out.
        assert_eq!(name("gcp", &["zz", "env", "dev"]), "gcp/dev/zz");
        assert_eq!(name("base", &["zz"]), "base/zz");
    }

    #[test]
    fn too_many_pinning_profiles_is_an_error() {
        let mut text = String::new();
        for i in 0..=MAX_PINNING_PROFILES {
            text.push_str(&format!("[profiles.p{i}]\npackages = [\"pkg{i}\"]\n"));
        }
        let dir = project(&[("hermetic.toml", CONFIG), ("recipes/base.toml", &text)]);
        let p = Project::load(dir.path()).unwrap();
        let err = p.pinning_profiles("base").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("more than 5 profiles"), "{text}");
        assert!(text.contains("p0, p1, p2, p3, p4, p5"), "{text}");
        let hints = crate::error::Diagnostic::hints(&err);
        assert!(hints[0].contains("parent = \"base\""), "{hints:?}");
    }

    #[test]
    fn formats_accept_every_writer_name() {
        for name in ["directory", "tar", "initrd", "uki", "gcp", "azure", "qemu"] {
            let dir = project(&[
                ("hermetic.toml", CONFIG),
                ("recipes/x.toml", &format!("format = \"{name}\"\n")),
            ]);
            let p = Project::load(dir.path()).unwrap();
            assert_eq!(p.resolve("x").unwrap().format.as_str(), name);
        }
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("recipes/x.toml", "format = \"iso\"\n"),
        ]);
        let err = Project::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("x.toml"), "{err}");
        assert!(err.contains("iso"), "{err}");
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

        let dir = project(&[
            ("hermetic.toml", CONFIG),
            (
                "recipes/base.toml",
                "[[steps]]\nname = \"a\"\nscript = \"true\"\nscirpt-file = \"x\"\n",
            ),
        ]);
        let err = Project::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("scirpt-file"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    fn load_err(recipe: &str) -> String {
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("overlays/ok/", ""),
            ("recipes/r.toml", recipe),
        ]);
        Project::load(dir.path()).unwrap_err().to_string()
    }

    #[test]
    fn a_steps_upstream_names_a_file_source_of_its_lineage() {
        const BASE: &str = "[[sources]]\nkind = \"file\"\nname = \"f\"\nurls = [\"https://example.invalid/f\"]\n\
                            [[sources]]\nkind = \"deb\"\nname = \"d\"\nurl = \"https://example.invalid/d.deb\"\n";
        let with = |child: &str| {
            project(&[
                ("hermetic.toml", CONFIG),
                ("recipes/base.toml", BASE),
                ("recipes/c.toml", child),
            ])
        };
        let ok = with(
            "parent = \"base\"\n[[steps]]\nname = \"s\"\nscript = \"x\"\nupstream = [\"f\"]\n",
        );
        let p = Project::load(ok.path()).unwrap();
        assert_eq!(p.resolve("c").unwrap().steps[0].upstream, ["f"]);
        let cases = [
            (
                "parent = \"base\"\n[[steps]]\nname = \"s\"\nscript = \"x\"\nupstream = [\"f\", \"g\"]\n",
                "key `steps[0].upstream[1]`: no `[[sources]]` entry named `g` in recipe `c`",
            ),
            (
                "parent = \"base\"\n[profiles.p]\n[[profiles.p.steps]]\nname = \"s\"\nscript = \"x\"\nupstream = [\"d\"]\n",
                "key `profiles.p.steps[0].upstream[0]`: `d` is not a `file` source",
            ),
        ];
        for (child, want) in cases {
            let dir = with(child);
            let e = Project::load(dir.path()).unwrap_err().to_string();
            assert!(e.contains("c.toml") && e.contains(want), "{e}");
        }
    }

    #[test]
    fn overlay_modes_merge_child_and_profile_winning() {
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            (
                "recipes/base.toml",
                "[overlay-modes]\n\"etc/a\" = \"0440\"\n\"./etc/b/\" = \"0700\"\n",
            ),
            (
                "recipes/child.toml",
                "parent = \"base\"\n[overlay-modes]\n\"etc/a\" = \"0400\"\n\
                 [profiles.p.overlay-modes]\n\"etc/c\" = \"755\"\n",
            ),
        ]);
        let p = Project::load(dir.path()).unwrap();
        let plain = p.resolve("child").unwrap();
        assert_eq!(
            plain.overlay_modes,
            BTreeMap::from([("etc/a".to_string(), 0o400), ("etc/b".to_string(), 0o700)])
        );
        let with = p
            .resolve_with_profiles("child", &["p".to_string()])
            .unwrap();
        assert_eq!(with.overlay_modes.get("etc/c"), Some(&0o755));
        assert_eq!(parse_mode("0440"), Some(0o440));
        assert_eq!(parse_mode("7777"), Some(0o7777));
        for bad in ["44", "08", "04400", "rwx", ""] {
            assert_eq!(parse_mode(bad), None, "{bad}");
        }
    }

    #[test]
    fn semantic_errors_name_file_and_key() {
        let cases = [
            (
                "[[steps]]\nname = \"a\"\n",
                "r.toml: key `steps[0].script`: a step needs",
            ),
            (
                "[[steps]]\nname = \"a\"\nscript = \"x\"\nscript-file = \"y\"\n",
                "key `steps[0].script`: give either",
            ),
            (
                "[[steps]]\nname = \"a\"\nscript-file = \"missing.sh\"\n",
                "key `steps[0].script-file`",
            ),
            (
                "[[steps]]\nname = \"a\"\nscript = \"x\"\n[[steps]]\nname = \"a\"\nscript = \"y\"\n",
                "key `steps[1].name`",
            ),
            (
                "[[steps]]\nname = \"../a\"\nscript = \"x\"\n",
                "key `steps[0].name`",
            ),
            (
                "[[steps]]\nname = \"a\"\nscript = \"x\"\nsources = [\"../etc\"]\n",
                "key `steps[0].sources[0]`",
            ),
            ("overlays = [\"missing\"]\n", "key `overlays[0]`"),
            ("overlays = [\"../ok\"]\n", "key `overlays[0]`"),
            (
                "[environment]\nDESTDIR = \"/\"\n",
                "key `environment.DESTDIR`",
            ),
            ("[environment]\n\"1X\" = \"\"\n", "key `environment.1X`"),
            (
                "[profiles.dev]\noverlays = [\"nope\"]\n",
                "key `profiles.dev.overlays[0]`",
            ),
            (
                "[[tarballs]]\nname = \"a.tar\"\nurl = \"u\"\nsha256 = \"xyz\"\n",
                "key `tarballs[0].sha256`",
            ),
            ("version = \"1 0\"\n", "key `version`"),
            (
                "[overlay-modes]\n\"etc/x\" = \"0999\"\n",
                "key `overlay-modes.\"etc/x\"`: `0999` is not a file mode",
            ),
            (
                "[overlay-modes]\n\"../etc/x\" = \"0440\"\n",
                "key `overlay-modes.\"../etc/x\"`",
            ),
            (
                "[profiles.dev.overlay-modes]\n\"etc/x\" = \"44\"\n",
                "key `profiles.dev.overlay-modes.\"etc/x\"`",
            ),
        ];
        for (recipe, want) in cases {
            let err = load_err(recipe);
            assert!(err.contains(want), "{recipe:?}: {err}");
            assert!(err.contains("r.toml"), "{recipe:?}: {err}");
        }
        // The well-formed neighbour of those cases loads.
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("overlays/ok/", ""),
            (
                "recipes/r.toml",
                "overlays = [\"ok\"]\n[[steps]]\nname = \"a\"\nscript = \"x\"\n",
            ),
        ]);
        Project::load(dir.path()).unwrap();
    }

    #[test]
    fn child_step_with_parent_name_is_an_error() {
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            (
                "recipes/a.toml",
                "[[steps]]\nname = \"s\"\nscript = \"x\"\n",
            ),
            (
                "recipes/b.toml",
                "parent = \"a\"\n[[steps]]\nname = \"s\"\nscript = \"y\"\n",
            ),
        ]);
        let err = Project::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("b.toml: key `steps[0].name`"), "{err}");
        assert!(err.contains("already defined by recipe `a`"), "{err}");
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

    #[test]
    fn snapshot_packages_are_read_and_checked() {
        let entry = |name: &str, ts: &str| {
            format!(
                "[[archive.snapshot-package]]\nname = \"{name}\"\nversion = \"255.4-1\"\nsnapshot = \"{ts}\"\nsuite = \"trixie\"\n"
            )
        };
        let ok = format!("{CONFIG}{}", entry("systemd-boot-efi", "20240314T094714Z"));
        let dir = project(&[("hermetic.toml", &ok)]);
        let p = Project::load(dir.path()).unwrap();
        assert_eq!(p.config.archive.snapshot_packages.len(), 1);
        assert_eq!(
            p.config.archive.snapshot_packages[0].snapshot,
            "20240314T094714Z"
        );
        for (bad, says) in [
            (
                entry("a", "2024-03-14"),
                "is not a snapshot.debian.org timestamp",
            ),
            (
                format!(
                    "{}{}",
                    entry("a", "20240314T094714Z"),
                    entry("a", "20240101T000000Z")
                ),
                "taken from another snapshot twice",
            ),
            (entry("../x", "20240314T094714Z"), "is not a package name"),
        ] {
            let dir = project(&[("hermetic.toml", &format!("{CONFIG}{bad}"))]);
            let err = Project::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains("archive.snapshot-package["), "{err}");
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn build_table_in_project_config() {
        let dir = project(&[(
            "hermetic.toml",
            "[archive]\nsnapshot = \"20261121T000000Z\"\n[build]\nsource-date-epoch = 1700000000\n",
        )]);
        let p = Project::load(dir.path()).unwrap();
        assert_eq!(p.config.build.source_date_epoch, 1_700_000_000);
    }

    #[test]
    fn identity_defaults_to_the_seeds_and_is_checked() {
        let dir = project(&[(
            "hermetic.toml",
            "[archive]\nsnapshot = \"20261121T000000Z\"\n",
        )]);
        let id = Project::load(dir.path()).unwrap().config.identity;
        assert_eq!(id.disk_guid, "12345678-1234-5678-1234-567812345678");
        assert_eq!(id.esp_guid, "87654321-4321-8765-4321-876543218765");
        assert_eq!(id.esp_volume_id(), 0x1234_5678);
        assert_eq!(id.vhd_seed, "630b5f72-a36a-4e83-b23d-6ef47c82fd9c");
        assert_eq!(id.kernel_build_timestamp, "Fri Jun  5 15:58:00 CEST 1971");
        assert_eq!(
            (id.kernel_build_user.as_str(), id.kernel_build_host.as_str()),
            ("mkosi", "mkosi")
        );
        let dir = project(&[(
            "hermetic.toml",
            "[archive]\nsnapshot = \"20261121T000000Z\"\n[identity]\nesp-volume-id = \"0badcafe\"\nkernel-build-host = \"builder\"\n",
        )]);
        let id = Project::load(dir.path()).unwrap().config.identity;
        assert_eq!(id.esp_volume_id(), 0x0bad_cafe);
        assert_eq!(id.kernel_build_host, "builder");
        for (table, key) in [
            ("disk-guid = \"1234\"", "identity.disk-guid"),
            (
                "esp-guid = \"zz345678-1234-5678-1234-567812345678\"",
                "identity.esp-guid",
            ),
            ("esp-volume-id = \"123\"", "identity.esp-volume-id"),
            ("kernel-build-user = \"a b\"", "identity.kernel-build-user"),
            (
                "kernel-build-timestamp = \"\"",
                "identity.kernel-build-timestamp",
            ),
            ("vhd-seed = \"\"", "identity.vhd-seed"),
        ] {
            let dir = project(&[(
                "hermetic.toml",
                &format!("[archive]\nsnapshot = \"20261121T000000Z\"\n[identity]\n{table}\n"),
            )]);
            let err = Project::load(dir.path()).unwrap_err().to_string();
            assert!(err.contains(&format!("key `{key}`")), "{table}: {err}");
        }
    }

    #[test]
    fn kernel_table_is_inherited_and_replaced_whole() {
        let base = "packages = [\"systemd\"]\n[kernel]\nsource = \"linux-source-6.12\"\nconfig-package = \"linux-config-6.12\"\nconfig-file = \"config.amd64_none_cloud-amd64\"\nbuild-packages = [\"gcc\", \"make\"]\n";
        let small = "parent = \"base\"\n[kernel]\nsource = \"linux-source-6.12\"\nconfig-target = \"tinyconfig\"\ndir = \"kernel-test\"\n";
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("kernel/", ""),
            ("kernel-test/", ""),
            ("recipes/base.toml", base),
            ("recipes/gcp.toml", "parent = \"base\"\nformat = \"gcp\"\n"),
            ("recipes/small.toml", small),
        ]);
        let p = Project::load(dir.path()).unwrap();
        let gcp = p.resolve("gcp").unwrap().kernel.unwrap();
        assert_eq!(gcp.recipe, "base");
        assert_eq!(gcp.dir, dir.path().join("kernel"));
        assert_eq!(
            gcp.lock_packages(),
            ["gcc", "linux-config-6.12", "linux-source-6.12", "make"]
        );
        assert_eq!(
            gcp.input_packages(),
            ["linux-source-6.12", "linux-config-6.12"]
        );
        let small = p.resolve("small").unwrap().kernel.unwrap();
        assert_eq!(small.recipe, "small");
        assert_eq!(small.base, KernelBase::Target("tinyconfig".into()));
        // Replaced whole: the parent's build-packages do not carry over.
        assert!(small.build_packages.is_empty());
        assert_eq!(small.lock_packages(), ["linux-source-6.12"]);
        assert!(p.resolve("base").unwrap().kernel.is_some());
    }

    const RG_SOURCE: &str = "[[sources]]\nkind = \"file\"\nname = \"ripgrep\"\nurls = [\"https://static.crates.io/crates/ripgrep/ripgrep-14.1.1.crate\"]\n";

    #[test]
    fn cargo_builds_are_inherited_by_name_and_default_to_debians_toolchain() {
        let base = format!(
            "{RG_SOURCE}[[cargo]]\nname = \"rg\"\nsource = \"ripgrep\"\ninstall = {{ \"rg\" = \"/usr/bin/rg\" }}\n"
        );
        let child = "parent = \"base\"\n[[cargo]]\nname = \"rg\"\nsource = \"ripgrep\"\nprofile = \"dev\"\nbuild-packages = [\"rustc-web\", \"cargo-web\"]\ninstall = { \"rg\" = \"/usr/local/bin/rg\" }\n";
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("recipes/base.toml", &base),
            ("recipes/child.toml", child),
        ]);
        let p = Project::load(dir.path()).unwrap();
        let b = p.resolve("base").unwrap();
        let rg = &b.cargo["rg"];
        assert_eq!(rg.profile, "release");
        assert_eq!(rg.profile_dir(), "release");
        assert_eq!(b.cargo_packages(), ["cargo", "gcc", "libc6-dev", "rustc"]);
        let c = p.resolve("child").unwrap();
        assert_eq!(c.cargo.len(), 1);
        assert_eq!(c.cargo["rg"].profile_dir(), "debug");
        assert_eq!(c.cargo["rg"].install["rg"], "/usr/local/bin/rg");
        assert_eq!(c.cargo_packages(), ["cargo-web", "rustc-web"]);
    }

    #[test]
    fn cargo_profile_settings_load_as_toml_values() {
        let recipe = format!(
            "{RG_SOURCE}[[cargo]]\nname = \"rg\"\nsource = \"ripgrep\"\nprofile-settings = {{ lto = \"thin\", codegen-units = 1, debug = false }}\ninstall = {{ \"rg\" = \"/usr/bin/rg\" }}\n"
        );
        let dir = project(&[("hermetic.toml", CONFIG), ("recipes/r.toml", &recipe)]);
        let r = Project::load(dir.path()).unwrap().resolve("r").unwrap();
        let got: Vec<(String, String)> = r.cargo["rg"]
            .profile_settings
            .iter()
            .map(|(k, v)| (k.clone(), v.to_toml()))
            .collect();
        assert_eq!(
            got,
            [
                ("codegen-units".to_string(), "1".to_string()),
                ("debug".to_string(), "false".to_string()),
                ("lto".to_string(), "\"thin\"".to_string()),
            ]
        );
    }

    #[test]
    fn bad_cargo_tables_name_file_and_key() {
        let cases = [
            (
                "name = \"r g\"\nsource = \"ripgrep\"\ninstall = { \"rg\" = \"/usr/bin/rg\" }",
                "key `cargo[0].name`",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\ninstall = {}",
                "key `cargo[0].install`: nothing to install",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\ninstall = { \"../rg\" = \"/usr/bin/rg\" }",
                "`../rg` is not a relative path",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\ninstall = { \"rg\" = \"usr/bin/rg\" }",
                "`usr/bin/rg` is not an absolute path",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\ninstall = { \"rg\" = \"/\" }",
                "`/` is not an absolute path",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\ninstall = { \"rg\" = \"/bin/rg\" }",
                "install to /usr/bin/... instead",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\ndir = \"/abs\"\ninstall = { \"rg\" = \"/usr/bin/rg\" }",
                "key `cargo[0].dir`",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\nfeatures = [\"--locked\"]\ninstall = { \"rg\" = \"/usr/bin/rg\" }",
                "key `cargo[0].features`",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\nbuild-packages = []\ninstall = { \"rg\" = \"/usr/bin/rg\" }",
                "key `cargo[0].build-packages`",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\nprofile-settings = { lto = \"thin\\\" --x\" }\ninstall = { \"rg\" = \"/usr/bin/rg\" }",
                "key `cargo[0].profile-settings`: `lto`",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\nprofile-settings = { \"lto.x\" = true }\ninstall = { \"rg\" = \"/usr/bin/rg\" }",
                "`lto.x` is not a cargo profile setting",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\nprofile-settings = { LTO = true }\ninstall = { \"rg\" = \"/usr/bin/rg\" }",
                "`LTO` is not a cargo profile setting",
            ),
            (
                "name = \"rg\"\nsource = \"ripgrep\"\nprofile-settings = { lto = 1.5 }\ninstall = { \"rg\" = \"/usr/bin/rg\" }",
                "data did not match any variant of untagged enum ProfileValue",
            ),
        ];
        for (table, want) in cases {
            let err = load_err(&format!("{RG_SOURCE}[[cargo]]\n{table}\n"));
            assert!(err.contains(want), "{table:?}: {err}");
            assert!(err.contains("r.toml"), "{table:?}: {err}");
        }
        // The source must be a tree the lineage declares.
        for (sources, want) in [
            ("", "no `[[sources]]` entry named `ripgrep`"),
            (
                "[[sources]]\nkind = \"deb\"\nname = \"ripgrep\"\nurl = \"https://example.invalid/rg.deb\"\n",
                "`ripgrep` is a deb source",
            ),
        ] {
            let recipe = format!(
                "{sources}[[cargo]]\nname = \"rg\"\nsource = \"ripgrep\"\ninstall = {{ \"rg\" = \"/usr/bin/rg\" }}\n"
            );
            let dir = project(&[("hermetic.toml", CONFIG), ("recipes/r.toml", &recipe)]);
            let err = Project::load(dir.path())
                .and_then(|p| p.resolve("r"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("r.toml: key `cargo[0].source`"), "{err}");
            assert!(err.contains(want), "{err}");
        }
    }

    const HELLO_SOURCES: &str = "[[sources]]\nkind = \"file\"\nname = \"hello\"\nurls = [\"https://example.invalid/hello.tar.gz\"]\n[[sources]]\nkind = \"go-modules\"\nname = \"hello-mods\"\nsource = \"hello\"\n";

    #[test]
    fn go_builds_default_to_debians_go_and_are_inherited_by_name() {
        let base = format!(
            "{HELLO_SOURCES}[[go]]\nname = \"hello\"\nsource = \"hello\"\nmodules = \"hello-mods\"\ninstall = {{ \"hello\" = \"/usr/bin/hello\" }}\n"
        );
        let child = "parent = \"base\"\n[[go]]\nname = \"hello\"\nsource = \"hello\"\npackages = [\"./cmd/hello\", \"./tools/...\"]\ncgo = true\nbuild-packages = [\"golang-go\", \"gcc\"]\ninstall = { \"hello\" = \"/usr/local/bin/hello\" }\n";
        let dir = project(&[
            ("hermetic.toml", CONFIG),
            ("recipes/base.toml", &base),
            ("recipes/child.toml", child),
        ]);
        let p = Project::load(dir.path()).unwrap();
        let b = p.resolve("base").unwrap();
        assert_eq!(b.go["hello"].packages, ["."]);
        assert!(!b.go["hello"].cgo);
        assert_eq!(b.go_packages(), ["golang-1.24-go"]);
        assert_eq!(b.go["hello"].go_command(), "/usr/lib/go-1.24/bin/go");
        assert!(b.cargo_packages().is_empty());
        let c = p.resolve("child").unwrap();
        assert_eq!(c.go["hello"].modules, None);
        assert_eq!(c.go_packages(), ["gcc", "golang-go"]);
        assert_eq!(c.go["hello"].go_command(), "go");
    }

    #[test]
    fn bad_go_tables_name_file_and_key() {
        let ok = "name = \"hello\"\nsource = \"hello\"\n";
        let install = "install = { \"hello\" = \"/usr/bin/hello\" }";
        let cases = [
            (
                format!("{ok}{install}\nmodule = \"x\""),
                "unknown field `module`",
            ),
            (
                format!("{ok}{install}\ngoflags = [\"-x\"]"),
                "unknown field `goflags`",
            ),
            (ok.to_string(), "missing field `install`"),
            (
                format!("{ok}install = {{}}"),
                "key `go[0].install`: nothing to install",
            ),
            (
                format!("{ok}install = {{ \"cmd/hello\" = \"/usr/bin/hello\" }}"),
                "key `go[0].install`: `cmd/hello` is not the name of a built binary",
            ),
            (
                format!("{ok}install = {{ \"hello\" = \"usr/bin/hello\" }}"),
                "key `go[0].install`: `usr/bin/hello` is not an absolute path",
            ),
            (
                format!("{ok}install = {{ \"hello\" = \"/sbin/hello\" }}"),
                "install to /usr/sbin/... instead",
            ),
            (
                format!("name = \"a b\"\nsource = \"hello\"\n{install}"),
                "key `go[0].name`",
            ),
            (format!("{ok}dir = \"../up\"\n{install}"), "key `go[0].dir`"),
            (
                format!("{ok}packages = [\"github.com/x/y\"]\n{install}"),
                "key `go[0].packages`: `github.com/x/y` is not a package of the module",
            ),
            (
                format!("{ok}packages = []\n{install}"),
                "key `go[0].packages`",
            ),
            (
                format!("{ok}tags = [\"a,b\"]\n{install}"),
                "key `go[0].tags`",
            ),
            (
                format!("{ok}build-packages = []\n{install}"),
                "key `go[0].build-packages`",
            ),
        ];
        for (table, want) in cases {
            let err = load_err(&format!("{HELLO_SOURCES}[[go]]\n{table}\n"));
            assert!(err.contains(want), "{table:?}: {err}");
            assert!(err.contains("r.toml"), "{table:?}: {err}");
        }
        // The sources must be ones the lineage declares, of the right kinds.
        for (go, want) in [
            (
                "source = \"nope\"",
                "key `go[0].source`: no `[[sources]]` entry named `nope`",
            ),
            (
                "source = \"hello-mods\"",
                "key `go[0].source`: `hello-mods` is not a `file` archive or a `git` tree",
            ),
            (
                "source = \"hello\"\nmodules = \"mods\"",
                "key `go[0].modules`: no `[[sources]]` entry named `mods`",
            ),
            (
                "source = \"hello\"\nmodules = \"hello\"",
                "key `go[0].modules`: `hello` is not a `go-modules` source",
            ),
            (
                "source = \"hello\"\nmodules = \"hello-mods\"\ndir = \"sub\"",
                "key `go[0].modules`: the go-modules source `hello-mods` reads `hello` at ``",
            ),
        ] {
            let recipe = format!("{HELLO_SOURCES}[[go]]\nname = \"hello\"\n{go}\n{install}\n");
            let dir = project(&[("hermetic.toml", CONFIG), ("recipes/r.toml", &recipe)]);
            let err = Project::load(dir.path())
                .and_then(|p| p.resolve("r"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("r.toml: "), "{err}");
            assert!(err.contains(want), "{go:?}: {err}");
        }
        // A go build may not share its name with a cargo build (both install under it).
        let recipe = format!(
            "{HELLO_SOURCES}[[cargo]]\nname = \"hello\"\nsource = \"hello\"\ninstall = {{ \"hello\" = \"/usr/bin/h1\" }}\n[[go]]\n{ok}{install}\n"
        );
        let dir = project(&[("hermetic.toml", CONFIG), ("recipes/r.toml", &recipe)]);
        let err = Project::load(dir.path())
            .and_then(|p| p.resolve("r"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("r.toml: key `go[0].name`"), "{err}");
    }

    #[test]
    fn bad_kernel_tables_name_file_and_key() {
        let err =
            load_err("[kernel]\nsource = \"linux-source-6.12\"\nconfig-target = \"tinyconfig\"\n");
        assert!(err.contains("r.toml: key `kernel.dir`"), "{err}");
        assert!(err.contains("kernel is not a directory"), "{err}");
        let err = load_err("[kernel]\nsource = \"linux-source-6.12\"\ndir = \"overlays/ok\"\n");
        assert!(err.contains("key `kernel.config-package`"), "{err}");
        let err = load_err(
            "[kernel]\nsource = \"linux-source-6.12\"\ndir = \"overlays/ok\"\nconfig-target = \"tinyconfig\"\nconfig-file = \"x\"\n",
        );
        assert!(err.contains("key `kernel.config-package`"), "{err}");
        let err = load_err(
            "[kernel]\nsource = \"linux-source-6.12\"\ndir = \"overlays/ok\"\nconfig-target = \"rm -rf\"\n",
        );
        assert!(err.contains("key `kernel.config-target`"), "{err}");
        let err = load_err(
            "[kernel]\nsource = \"Linux Source\"\ndir = \"overlays/ok\"\nconfig-target = \"tinyconfig\"\n",
        );
        assert!(err.contains("key `kernel.source`"), "{err}");
        let err = load_err(
            "[kernel]\nsource = \"linux-source-6.12\"\ndir = \"../elsewhere\"\nconfig-target = \"tinyconfig\"\n",
        );
        assert!(
            err.contains("not a relative path inside the project"),
            "{err}"
        );
        let err = load_err(
            "[kernel]\nsource = \"linux-source-6.12\"\nconfig-target = \"tinyconfig\"\ndir = \"overlays/ok\"\nbuild-packages = [\"gcc make\"]\n",
        );
        assert!(err.contains("key `kernel.build-packages[0]`"), "{err}");
        let err = load_err(
            "[kernel]\nsource = \"linux-source-6.12\"\nconfig-target = \"tinyconfig\"\ndir = \"overlays/ok\"\njobs = 3\n",
        );
        assert!(err.contains("unknown field `jobs`"), "{err}");
    }
}
