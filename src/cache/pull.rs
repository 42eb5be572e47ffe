//! Substitution: pinned files and step outputs taken from the configured caches instead of
//! the mirrors and the sandbox.
//!
//! The command line installs one [`Substituter`] for the run ([`install`]); `fetch` asks it
//! for each missing pin before the mirrors ([`substitute_blob`]) and `build` for each step
//! before running it ([`substitute_step`]). Both are no-ops when no cache is configured.
//! A cache that cannot be reached is not asked again in the run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use oci_spec::image::ImageManifest;

use crate::archive::human_size;
use crate::fetch::error_text as chain;
use crate::sign::PublicKey;
use crate::store::{Store, StoreError, StoreTempDir};

use super::oci::Registry;
use super::{ANN_KEY, ANN_SIGNATURE, CacheError, STEP_ARTIFACT, STEP_LAYER};

/// The caches of a run, the keys it trusts, and what it took from them.
pub struct Substituter {
    caches: Vec<Cache>,
    trusted: Vec<(PathBuf, PublicKey)>,
    /// Print a line per refused or substituted item.
    pub verbose: bool,
    pub stats: PullStats,
}

struct Cache {
    registry: Registry,
    dead: AtomicBool,
}

/// What was taken from the caches (and refused).
#[derive(Debug, Default)]
pub struct PullStats {
    pub blobs: AtomicU64,
    pub blob_bytes: AtomicU64,
    pub steps: AtomicU64,
    pub step_bytes: AtomicU64,
    /// Items a cache served and that were refused (wrong hash, unsigned, untrusted key).
    pub refused: AtomicU64,
    /// Items asked for that no cache had.
    pub missed: AtomicU64,
    /// Step outputs pulled for `build --rebuild` to compare with (signed or not).
    pub checked: AtomicU64,
    pub checked_bytes: AtomicU64,
}

static ACTIVE: OnceLock<Substituter> = OnceLock::new();

/// Makes `substituter` the one of this process (the first call wins).
pub fn install(substituter: Substituter) {
    let _ = ACTIVE.set(substituter);
}

/// One line of figures, if caches are in use and anything was asked of them.
pub fn report() -> Option<String> {
    let s = ACTIVE.get()?;
    let st = &s.stats;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let requests: u64 = s.caches.iter().map(|c| c.registry.requests()).sum();
    if requests == 0 {
        return None;
    }
    let checked = match get(&st.checked) {
        0 => String::new(),
        n => format!(
            ", and {n} step outputs to check by rebuilding ({})",
            human_size(get(&st.checked_bytes))
        ),
    };
    Some(format!(
        "cache: pulled {} pinned files ({}) and {} step outputs ({}){checked}; {} refused, {} not in any cache; {} requests",
        get(&st.blobs),
        human_size(get(&st.blob_bytes)),
        get(&st.steps),
        human_size(get(&st.step_bytes)),
        get(&st.refused),
        get(&st.missed),
        requests
    ))
}

impl Substituter {
    pub fn new(registries: Vec<Registry>, trusted: Vec<(PathBuf, PublicKey)>) -> Substituter {
        Substituter {
            caches: registries
                .into_iter()
                .map(|registry| Cache {
                    registry,
                    dead: AtomicBool::new(false),
                })
                .collect(),
            trusted,
            verbose: true,
            stats: PullStats::default(),
        }
    }

    fn notice(&self, line: &str) {
        if self.verbose {
            eprintln!("{line}");
        }
    }

    /// Notes a failure of `cache` (unreachable, refused access, a server error): it is not
    /// asked again in this run, and that is said once.
    fn failed(&self, cache: &Cache, e: &CacheError) {
        if !cache.dead.swap(true, Ordering::Relaxed) {
            self.notice(&format!(
                "warning: {}; cache {} is not asked again in this run",
                chain(e),
                cache.registry.cache
            ));
        }
    }

    /// Brings blob `sha256` into the store from the first cache that has it with that hash.
    pub fn blob(
        &self,
        store: &Store,
        sha256: &str,
        size: Option<u64>,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Option<PathBuf> {
        let digest = format!("sha256:{sha256}");
        for cache in &self.caches {
            if cache.dead.load(Ordering::Relaxed) {
                continue;
            }
            let mut download = match cache.registry.get_blob(&digest, size) {
                Ok(Some(d)) => d,
                Ok(None) => continue,
                Err(e) => {
                    self.failed(cache, &e);
                    continue;
                }
            };
            let mut counted = Counted {
                inner: &mut download.reader,
                bytes: 0,
            };
            match store.put_blob_from_reader(sha256, size, &mut counted) {
                Ok(path) => {
                    on_bytes(counted.bytes);
                    self.stats.blobs.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .blob_bytes
                        .fetch_add(counted.bytes, Ordering::Relaxed);
                    return Some(path);
                }
                Err(e @ (StoreError::HashMismatch { .. } | StoreError::SizeMismatch { .. })) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    self.notice(&format!(
                        "warning: refused {} from cache {}: {e}; trying the next source",
                        cache.registry.blob_url(&digest),
                        cache.registry.cache
                    ));
                }
                Err(e) => self.notice(&format!(
                    "warning: {}: {}",
                    cache.registry.blob_url(&digest),
                    chain(&e)
                )),
            }
        }
        self.stats.missed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Publishes the output of step `key` (`name` for messages) from the first cache that has
    /// one signed by a trusted key. Returns whether the store now has it.
    pub fn step(&self, store: &Store, key: &str, name: &str) -> bool {
        if let Some((tree, bytes, _, cache)) = self.first_output(store, key, name, true) {
            match store.publish_step(key, tree) {
                Ok(_) => {
                    self.stats.steps.fetch_add(1, Ordering::Relaxed);
                    self.stats.step_bytes.fetch_add(bytes, Ordering::Relaxed);
                    self.notice(&format!("  pulled   {name}  ({})", human_size(bytes)));
                    return true;
                }
                Err(e) => self.failed(cache, &e.into()),
            }
        }
        self.stats.missed.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// `build --rebuild` of a step the store lacks: the output of `key` from the first cache
    /// that has one, signed or not, extracted into a temporary entry (never published) that
    /// the step's local output is compared with. Its signature is only reported.
    pub fn reference(&self, store: &Store, key: &str, name: &str) -> Option<Reference> {
        let (tree, bytes, trust, cache) = self.first_output(store, key, name, false)?;
        self.stats.checked.fetch_add(1, Ordering::Relaxed);
        self.stats.checked_bytes.fetch_add(bytes, Ordering::Relaxed);
        Some(Reference {
            tree,
            cache: cache.registry.cache.to_string(),
            trust,
        })
    }

    /// The extracted output of `key` from the first cache that has one (with `signed_only`,
    /// one signed by a trusted key), its size, what its signature says, and the cache.
    fn first_output(
        &self,
        store: &Store,
        key: &str,
        name: &str,
        signed_only: bool,
    ) -> Option<(StoreTempDir, u64, String, &Cache)> {
        for cache in &self.caches {
            if cache.dead.load(Ordering::Relaxed) {
                continue;
            }
            match self.download_step(store, &cache.registry, key, name, signed_only) {
                Ok(Some((tree, bytes, trust))) => return Some((tree, bytes, trust, cache)),
                Ok(None) => {}
                Err(Refusal::Untrusted(why)) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    let outcome = if signed_only {
                        "; the step runs here"
                    } else {
                        " (it cannot be compared)"
                    };
                    self.notice(&format!(
                        "warning: refused the output of {name} ({key}) from cache {}: {why}{outcome}",
                        cache.registry.cache
                    ));
                }
                Err(Refusal::Failed(e)) => self.failed(cache, &e),
            }
        }
        None
    }

    /// Downloads and extracts the output of `key` from `registry`; with `signed_only`, only
    /// one signed by a trusted key. Returns the extracted entry, the layer's size and what
    /// its signature says (`signed by KEY`, `unsigned`, …).
    fn download_step(
        &self,
        store: &Store,
        registry: &Registry,
        key: &str,
        name: &str,
        signed_only: bool,
    ) -> Result<Option<(StoreTempDir, u64, String)>, Refusal> {
        let Some(raw) = registry.get_manifest(&super::step_tag(key))? else {
            return Ok(None);
        };
        let manifest = ImageManifest::from_reader(&raw[..]).map_err(|e| {
            Refusal::Untrusted(format!("its manifest is not an OCI manifest ({e})"))
        })?;
        if manifest
            .artifact_type()
            .as_ref()
            .map(|t| t.to_string())
            .as_deref()
            != Some(STEP_ARTIFACT)
        {
            return Err(Refusal::Untrusted(format!(
                "its manifest is not of artifact type {STEP_ARTIFACT}"
            )));
        }
        let annotations = manifest.annotations().clone().unwrap_or_default();
        if annotations.get(ANN_KEY).map(String::as_str) != Some(key) {
            return Err(Refusal::Untrusted(format!(
                "its manifest is for the step key {:?}",
                annotations.get(ANN_KEY)
            )));
        }
        let [layer] = manifest.layers().as_slice() else {
            return Err(Refusal::Untrusted(
                "its manifest has not exactly one layer".into(),
            ));
        };
        if layer.media_type().to_string() != STEP_LAYER {
            return Err(Refusal::Untrusted(format!(
                "its layer is not of media type {STEP_LAYER}"
            )));
        }
        let digest = layer.digest().to_string();
        let Some(sha256) = digest
            .strip_prefix("sha256:")
            .filter(|h| crate::hash::is_sha256(h))
        else {
            return Err(Refusal::Untrusted(format!(
                "its layer digest {digest} is not SHA-256"
            )));
        };
        let size = layer.size();
        let (signed, trust) = match self.check_signature(&annotations, key, &digest, size) {
            Ok(signer) => (true, format!("signed by {}", signer.display())),
            Err(refusal) if signed_only => return Err(refusal),
            Err(_) if !annotations.contains_key(ANN_SIGNATURE) => (false, "unsigned".into()),
            Err(Refusal::Untrusted(why)) => (
                false,
                format!("signed, but {}", why.lines().next().unwrap_or_default()),
            ),
            Err(failed) => return Err(failed),
        };
        // A kernel's output is large: say what is coming before the wait.
        if signed_only {
            self.notice(&format!(
                "  pulling  {name}  ({}, signed) from {}",
                human_size(size),
                registry.cache
            ));
        } else {
            self.notice(&format!(
                "  pulling  {name}  ({}; {trust}) from {} to check it by building it here",
                human_size(size),
                registry.cache
            ));
        }
        // The layer's bytes are checked against the manifest's digest (the signed one, when
        // signed) while they stream into a temporary file of the store.
        let Some(mut download) = registry.get_blob(&digest, Some(size))? else {
            return Ok(None);
        };
        let mut tmp = store.temp_file().map_err(|e| Refusal::Failed(e.into()))?;
        let mut hashing = Hashing::new(&mut download.reader);
        std::io::copy(&mut hashing, &mut tmp).map_err(|source| {
            Refusal::Failed(CacheError::Io {
                path: tmp.path().to_path_buf(),
                source,
            })
        })?;
        let (actual, n) = hashing.finish();
        if actual != sha256 || n != size {
            return Err(Refusal::Untrusted(format!(
                "its layer {} has SHA-256 {actual} ({n} bytes), not the {} one",
                registry.blob_url(&digest),
                if signed { "signed" } else { "manifest's" }
            )));
        }
        let file = fs_err::File::open(tmp.path()).map_err(|source| {
            Refusal::Failed(CacheError::Io {
                path: tmp.path().to_path_buf(),
                source,
            })
        })?;
        let tree = super::step::extract(store, key, std::io::BufReader::new(file))
            .map_err(|e| Refusal::Untrusted(chain(&e)))?;
        Ok(Some((tree, n, trust)))
    }

    /// The signature annotation must verify, with one of the trusted keys, over the statement
    /// that the layer is the output of `key`.
    fn check_signature(
        &self,
        annotations: &std::collections::HashMap<String, String>,
        key: &str,
        digest: &str,
        size: u64,
    ) -> Result<PathBuf, Refusal> {
        let Some(signature) = annotations.get(ANN_SIGNATURE) else {
            return Err(Refusal::Untrusted(
                "it is not signed (step outputs are accepted only when signed by a trusted key: push with --key)".into(),
            ));
        };
        if self.trusted.is_empty() {
            return Err(Refusal::Untrusted(
                "no key is trusted\nhint: name the public key it was pushed with in --cache-key, HERMETIC_CACHE_KEYS or [cache] trusted-keys".into(),
            ));
        }
        let statement = super::statement(key, digest, size);
        let name = Path::new("manifest annotation dev.hermetic.signature");
        let mut problems = Vec::new();
        for (path, public) in &self.trusted {
            match crate::sign::verify_bytes(
                statement.as_bytes(),
                Path::new("the step statement"),
                signature,
                name,
                public,
                path,
            ) {
                Ok(comment) if comment == super::trusted_comment(key) => return Ok(path.clone()),
                Ok(comment) => problems.push(format!("its trusted comment is {comment:?}")),
                Err(e) => problems.push(e.to_string().lines().next().unwrap_or("").to_string()),
            }
        }
        Err(Refusal::Untrusted(format!(
            "no trusted key signed it: {}",
            problems.join("; ")
        )))
    }
}

/// A cache's output of a step, extracted to be compared with the step's local output.
pub struct Reference {
    /// The extracted entry (`tree/`, `files/`, the log); removed when dropped.
    pub tree: StoreTempDir,
    /// The cache it came from.
    pub cache: String,
    /// What its signature says: `signed by KEY`, `it is not signed …`, `no trusted key …`.
    pub trust: String,
}

enum Refusal {
    /// The cache has an output, and it is not accepted.
    Untrusted(String),
    /// The cache could not be asked.
    Failed(CacheError),
}

impl From<CacheError> for Refusal {
    fn from(e: CacheError) -> Self {
        Refusal::Failed(e)
    }
}

/// [`Substituter::blob`] of the installed substituter; `None` without one.
pub fn substitute_blob(
    store: &Store,
    sha256: &str,
    size: Option<u64>,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Option<PathBuf> {
    ACTIVE.get()?.blob(store, sha256, size, on_bytes)
}

/// [`Substituter::reference`] of the installed substituter; `None` without one.
pub fn reference_step(store: &Store, key: &str, name: &str) -> Option<Reference> {
    ACTIVE.get()?.reference(store, key, name)
}

/// [`Substituter::step`] of the installed substituter; `false` without one.
pub fn substitute_step(store: &Store, key: &str, name: &str) -> bool {
    ACTIVE.get().is_some_and(|s| s.step(store, key, name))
}

struct Counted<'a> {
    inner: &'a mut dyn Read,
    bytes: u64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A reader that hashes what passes.
struct Hashing<'a> {
    inner: &'a mut dyn Read,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<'a> Hashing<'a> {
    fn new(inner: &'a mut dyn Read) -> Hashing<'a> {
        use sha2::Digest as _;
        Hashing {
            inner,
            hasher: sha2::Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        use sha2::Digest as _;
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}
