//! `hermetic cache push`: the pinned files of the store and its step outputs into a registry.
//!
//! Nothing is sent twice: a blob the repository has (HEAD) is skipped, one another repository
//! of the registry has is mounted when `--mount-from` names it, and an upload a killed push
//! left open is resumed where the registry says it stopped (its session URL is kept under
//! `STORE/v1/cache-push/` while it is under way). A step output whose manifest is already
//! there (signed by the same key, when pushing with one) is not archived again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};

use crate::archive::human_size;
use crate::fetch::FetchItem;
use crate::sign::SecretKey;
use crate::store::Store;

use super::oci::{Registry, Uploaded};
use super::{
    ANN_KEY, ANN_NAME, ANN_RECIPE, ANN_SIGNATURE, ANN_VERSION, CacheError, PIN_LAYER,
    PINS_ARTIFACT, STEP_ARTIFACT, STEP_LAYER,
};

/// The empty JSON object every artifact manifest of ours has as its config.
const EMPTY_CONFIG: &[u8] = b"{}";

/// Parallel blob uploads.
const WORKERS: usize = 4;

/// One step output to push.
#[derive(Debug, Clone)]
pub struct StepToPush {
    pub key: String,
    /// `<recipe>/<step>`, when the project's plan names it.
    pub name: Option<String>,
}

/// What a push did.
#[derive(Debug, Default, serde::Serialize)]
pub struct PushReport {
    pub cache: String,
    /// Pinned files uploaded, and their bytes.
    pub blobs_pushed: u64,
    pub blob_bytes: u64,
    /// Of which resumed from an interrupted upload.
    pub blobs_resumed: u64,
    /// Pinned files the repository had already (skipped), or got by a mount.
    pub blobs_present: u64,
    pub blobs_mounted: u64,
    /// Pins missing from this store (not pushed).
    pub blobs_missing: u64,
    /// Step outputs pushed (manifests written), and the bytes of their layers sent.
    pub steps_pushed: u64,
    pub step_bytes: u64,
    /// Step outputs the repository had already.
    pub steps_present: u64,
    /// Step outputs that could not be archived (named on standard error).
    pub steps_failed: u64,
    /// HTTP requests made.
    pub requests: u64,
}

impl std::fmt::Display for PushReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pushed to {}: {} pinned files ({}, {} resumed), {} already there, {} mounted, {} not in the store; \
             {} step outputs ({}), {} already there, {} failed; {} requests",
            self.cache,
            self.blobs_pushed,
            human_size(self.blob_bytes),
            self.blobs_resumed,
            self.blobs_present,
            self.blobs_mounted,
            self.blobs_missing,
            self.steps_pushed,
            human_size(self.step_bytes),
            self.steps_present,
            self.steps_failed,
            self.requests
        )
    }
}

/// How to push.
pub struct PushOptions {
    /// Signs each step output.
    pub key: Option<SecretKey>,
    /// A line per item on standard error.
    pub progress: bool,
}

/// Pushes the pins of `pins` that the store has and the step entries `steps`.
pub fn push(
    store: &Store,
    registry: &Registry,
    pins: &[FetchItem],
    steps: &[StepToPush],
    opts: &PushOptions,
) -> Result<PushReport, CacheError> {
    let sessions = store
        .root()
        .join("cache-push")
        .join(&crate::hash::sha256_hex(registry.cache.to_string().as_bytes())[..16]);
    let report = Mutex::new(PushReport {
        cache: registry.cache.to_string(),
        ..PushReport::default()
    });
    let config_digest = format!("sha256:{}", crate::hash::sha256_hex(EMPTY_CONFIG));
    registry.upload_bytes(&config_digest, EMPTY_CONFIG)?;
    let config = Descriptor::new(
        MediaType::EmptyJSON,
        EMPTY_CONFIG.len() as u64,
        parse_digest(&config_digest)?,
    );

    // Pinned files, largest first, a few at a time.
    let mut todo: Vec<&FetchItem> = pins.iter().collect();
    todo.sort_by(|a, b| b.size.cmp(&a.size).then(a.sha256.cmp(&b.sha256)));
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<CacheError>> = Mutex::new(None);
    let layers: Mutex<Vec<(String, Descriptor)>> = Mutex::new(Vec::new());
    let bytes_sent = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    if first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .is_some()
                    {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = todo.get(i) else { return };
                    match push_pin(store, registry, item, &sessions) {
                        Ok(None) => {
                            report
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .blobs_missing += 1;
                        }
                        Ok(Some((outcome, layer))) => {
                            let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                            match outcome {
                                Uploaded::Present => r.blobs_present += 1,
                                Uploaded::Mounted => r.blobs_mounted += 1,
                                Uploaded::Sent { bytes, resumed } => {
                                    r.blobs_pushed += 1;
                                    r.blob_bytes += bytes;
                                    r.blobs_resumed += u64::from(resumed);
                                    bytes_sent.fetch_add(bytes, Ordering::Relaxed);
                                    if opts.progress {
                                        eprintln!(
                                            "  pushed   {} ({}{})",
                                            item.what,
                                            human_size(bytes),
                                            if resumed { ", resumed" } else { "" }
                                        );
                                    }
                                }
                            }
                            drop(r);
                            layers
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((item.sha256.clone(), layer));
                        }
                        Err(e) => {
                            first_error
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let mut layers = layers.into_inner().unwrap_or_else(|e| e.into_inner());
    layers.sort_by(|a, b| a.0.cmp(&b.0));
    if !layers.is_empty() {
        // One manifest names every pushed pin, so that the registry keeps them.
        let joined: String = layers.iter().map(|(h, _)| h.as_str()).collect();
        let tag = format!("pins-{}", &crate::hash::sha256_hex(joined.as_bytes())[..32]);
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .artifact_type(MediaType::Other(PINS_ARTIFACT.into()))
            .config(config.clone())
            .layers(layers.into_iter().map(|(_, d)| d).collect::<Vec<_>>())
            .annotations(HashMap::from([(
                ANN_VERSION.to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]))
            .build()
            .map_err(|e| manifest_error("the pins", e))?;
        let text = manifest
            .to_string()
            .map_err(|e| manifest_error("the pins", e))?;
        if registry.get_manifest(&tag)?.as_deref() != Some(text.as_bytes()) {
            registry.put_manifest(&tag, text.as_bytes())?;
        }
    }

    // Step outputs, one at a time (each is archived to a temporary file first).
    let mut report = report.into_inner().unwrap_or_else(|e| e.into_inner());
    for step in steps {
        match push_step(store, registry, step, &config, &sessions, opts) {
            Ok(StepPushed::Present) => report.steps_present += 1,
            Ok(StepPushed::Sent(bytes)) => {
                report.steps_pushed += 1;
                report.step_bytes += bytes;
            }
            Err(e @ CacheError::Step(_)) => {
                eprintln!("warning: not pushed: {}", crate::fetch::error_text(&e));
                report.steps_failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    report.requests = registry.requests();
    Ok(report)
}

fn parse_digest(digest: &str) -> Result<oci_spec::image::Digest, CacheError> {
    digest
        .parse()
        .map_err(|e: oci_spec::OciSpecError| manifest_error(digest, e))
}

fn manifest_error(what: &str, e: impl std::fmt::Display) -> CacheError {
    CacheError::Manifest {
        what: what.to_string(),
        problem: e.to_string(),
    }
}

/// Uploads one pin; `None` when the store does not have it.
fn push_pin(
    store: &Store,
    registry: &Registry,
    item: &FetchItem,
    sessions: &std::path::Path,
) -> Result<Option<(Uploaded, Descriptor)>, CacheError> {
    if !store.has_blob(&item.sha256) {
        return Ok(None);
    }
    // Never push what is not the pinned file.
    let path = store.verified_blob(&item.sha256, item.size, &item.what)?;
    let size = fs_err::metadata(&path)
        .map_err(|source| CacheError::Io {
            path: path.clone(),
            source,
        })?
        .len();
    let digest = format!("sha256:{}", item.sha256);
    let outcome = registry.upload_blob(&digest, &path, size, &sessions.join(&item.sha256))?;
    let mut layer = Descriptor::new(
        MediaType::Other(PIN_LAYER.into()),
        size,
        parse_digest(&digest)?,
    );
    layer.set_annotations(Some(HashMap::from([(
        "org.opencontainers.image.title".to_string(),
        item.what.clone(),
    )])));
    Ok(Some((outcome, layer)))
}

enum StepPushed {
    Present,
    Sent(u64),
}

fn push_step(
    store: &Store,
    registry: &Registry,
    step: &StepToPush,
    config: &Descriptor,
    sessions: &std::path::Path,
    opts: &PushOptions,
) -> Result<StepPushed, CacheError> {
    let tag = super::step_tag(&step.key);
    if let Some(existing) = registry.get_manifest(&tag)?
        && already_there(&existing, &step.key, opts.key.as_ref())
    {
        return Ok(StepPushed::Present);
    }
    let label = step.name.clone().unwrap_or_else(|| step.key.clone());
    let mut tmp = store.temp_file()?;
    let (sha256, size) = super::step::archive(store, &step.key, &mut tmp)?;
    tmp.as_file().sync_data().map_err(|source| CacheError::Io {
        path: tmp.path().to_path_buf(),
        source,
    })?;
    let digest = format!("sha256:{sha256}");
    let outcome = registry.upload_blob(&digest, tmp.path(), size, &sessions.join(&sha256))?;
    let sent = match outcome {
        Uploaded::Sent { bytes, .. } => bytes,
        _ => 0,
    };
    let mut annotations = HashMap::from([
        (ANN_KEY.to_string(), step.key.clone()),
        (
            ANN_VERSION.to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
    ]);
    if let Some(name) = &step.name {
        annotations.insert(ANN_NAME.to_string(), name.clone());
        if let Some((recipe, _)) = name.split_once('/') {
            annotations.insert(ANN_RECIPE.to_string(), recipe.to_string());
        }
    }
    if let Some(key) = &opts.key {
        let statement = super::statement(&step.key, &digest, size);
        let signature = key.sign(statement.as_bytes(), &super::trusted_comment(&step.key))?;
        annotations.insert(ANN_SIGNATURE.to_string(), signature);
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(STEP_ARTIFACT.into()))
        .config(config.clone())
        .layers(vec![Descriptor::new(
            MediaType::Other(STEP_LAYER.into()),
            size,
            parse_digest(&digest)?,
        )])
        .annotations(annotations)
        .build()
        .map_err(|e| manifest_error(&label, e))?;
    let text = manifest
        .to_string()
        .map_err(|e| manifest_error(&label, e))?;
    registry.put_manifest(&tag, text.as_bytes())?;
    if opts.progress {
        eprintln!(
            "  pushed   {label}  ({}{})",
            human_size(size),
            if opts.key.is_some() { ", signed" } else { "" }
        );
    }
    Ok(StepPushed::Sent(sent))
}

/// Whether the manifest found under a step's tag is one this push would not improve: for
/// the same key, and signed by our key when we sign.
fn already_there(manifest: &[u8], key: &str, signer: Option<&SecretKey>) -> bool {
    let Ok(m) = oci_spec::image::ImageManifest::from_reader(manifest) else {
        return false;
    };
    let annotations = m.annotations().clone().unwrap_or_default();
    if annotations.get(ANN_KEY).map(String::as_str) != Some(key) {
        return false;
    }
    let Some(signer) = signer else { return true };
    let (Some(sig), [layer]) = (annotations.get(ANN_SIGNATURE), m.layers().as_slice()) else {
        return false;
    };
    let statement = super::statement(key, layer.digest().as_ref(), layer.size());
    crate::sign::verify_bytes(
        statement.as_bytes(),
        std::path::Path::new("statement"),
        sig,
        std::path::Path::new("signature"),
        &signer.public(),
        std::path::Path::new("key"),
    )
    .is_ok()
}

/// Where the sessions of unfinished uploads are kept (for `cache push` messages).
pub fn sessions_dir(store: &Store) -> PathBuf {
    store.root().join("cache-push")
}
