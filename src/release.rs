//! What a release publishes next to the images of a build, per target:
//!
//! - `<target>.provenance.json`: an in-toto Statement v1 whose predicate is SLSA Provenance v1:
//!   the subjects are the target's output files with their SHA-256; the build definition names
//!   the target, its profiles, the project's git revision (and whether the work tree was dirty),
//!   `pins.lock`'s SHA-256 and every pinned input of the target's steps; the builder is hermetic
//!   with its version and commit.
//! - `<target>.spdx.json`: an SPDX 2.3 document listing every Debian package installed in the
//!   image once, with its version, source package, the pin's SHA-256, where it was downloaded
//!   from, the license Debian declares (DEP-5 `License:` fields of its copyright file in the
//!   tree) and a `pkg:deb` purl.
//! - `<target>.manifest.json`: the packages as mkosi's `ManifestFormat=json` lists them.
//!
//! Every file is byte-deterministic: keys are sorted (serde_json's map is ordered), no clock is
//! read (the SPDX `created` time is the project's `SOURCE_DATE_EPOCH`), and the SPDX namespace
//! is derived from the document's own content.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::beneath::Beneath;
use crate::build::{Graph, NodeKind};
use crate::lockfile::{Lockfile, PinnedPackage};
use crate::store::Store;

/// The `buildType` of our provenance: what the build definition's parameters mean (described
/// in docs/verify.md). A URN: the project has no web address of its own to point at yet.
pub const BUILD_TYPE: &str = "urn:hermetic:build-type:image:v1";
/// The builder's id.
pub const BUILDER_ID: &str = "urn:hermetic:builder";
/// Where pinned Debian files can always be downloaded from, by snapshot timestamp.
const SNAPSHOT_BASE: &str = "https://snapshot.debian.org";
/// hermetic's own version and the commit it was built from.
pub const HERMETIC_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+", env!("HERMETIC_COMMIT"));

/// Errors writing the release files.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("cannot read {path}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}", path = path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the outputs recorded in the store entry of {step}")]
    Entry {
        step: String,
        #[source]
        source: crate::beneath::BeneathError,
    },
    #[error(
        "{package} {version} is installed in {target} but not pinned in pins.lock\nhint: run `hermetic lock` and build again"
    )]
    Unpinned {
        target: String,
        package: String,
        version: String,
    },
}

/// The project's git revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRevision {
    pub commit: String,
    /// The work tree had changes not committed (ignored files aside).
    pub dirty: bool,
}

/// The git revision of `dir`, if it is in a git work tree and git runs.
pub fn git_revision(dir: &Path) -> Option<GitRevision> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let status = git(&["status", "--porcelain", "--untracked-files=no"])?;
    Some(GitRevision {
        commit,
        dirty: !status.is_empty(),
    })
}

/// What the release files of a build are made from.
pub struct ReleaseInputs<'a> {
    pub store: &'a Store,
    pub graph: &'a Graph,
    pub lock: &'a Lockfile,
    /// `pins.lock`'s SHA-256.
    pub lock_sha256: String,
    pub profiles: &'a [String],
    pub git: Option<GitRevision>,
    pub source_date_epoch: u64,
}

/// One file a release writes.
#[derive(Debug, Clone)]
pub struct ReleaseFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The release files of every target of the graph.
pub fn release_files(inputs: &ReleaseInputs) -> Result<Vec<ReleaseFile>, ReleaseError> {
    let mut files = Vec::new();
    for (target, out_node) in &inputs.graph.targets {
        let closure = closure(inputs.graph, *out_node);
        let subjects = subjects(inputs, *out_node)?;
        let provenance = provenance(inputs, target, &closure, &subjects);
        files.push(ReleaseFile {
            name: format!("{target}.provenance.json"),
            bytes: to_bytes(&provenance),
        });
        let packages = image_packages(inputs, target, &closure)?;
        let tree = image_tree(inputs, &closure);
        let sbom = spdx(inputs, target, &packages, tree.as_deref(), &subjects);
        files.push(ReleaseFile {
            name: format!("{target}.spdx.json"),
            bytes: to_bytes(&sbom),
        });
        files.push(ReleaseFile {
            name: format!("{target}.manifest.json"),
            bytes: to_bytes(&manifest(target, &packages)),
        });
    }
    Ok(files)
}

/// Writes the release files into `out_dir` (each through a temporary file and a rename);
/// returns their names and SHA-256.
pub fn write_release_files(
    inputs: &ReleaseInputs,
    out_dir: &Path,
) -> Result<Vec<(PathBuf, String)>, ReleaseError> {
    let mut written = Vec::new();
    for f in release_files(inputs)? {
        let path = out_dir.join(&f.name);
        let tmp = out_dir.join(format!(".{}.tmp", f.name));
        let werr = |p: &Path| {
            let p = p.to_path_buf();
            move |source| ReleaseError::Write { path: p, source }
        };
        // Whatever is left at the temporary name (a link too) is removed, never followed,
        // and the file is created afresh.
        let _ = fs_err::remove_file(&tmp);
        {
            use std::io::Write as _;
            let mut file = fs_err::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(werr(&tmp))?;
            file.write_all(&f.bytes).map_err(werr(&tmp))?;
        }
        fs_err::rename(&tmp, &path).map_err(werr(&path))?;
        written.push((PathBuf::from(&f.name), crate::hash::sha256_hex(&f.bytes)));
    }
    Ok(written)
}

fn to_bytes(v: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("JSON values serialize");
    b.push(b'\n');
    b
}

/// The nodes `root` builds on, itself included, in graph order.
fn closure(graph: &Graph, root: usize) -> Vec<usize> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(i) = todo.pop() {
        if seen.insert(i) {
            todo.extend(graph.nodes[i].deps.values().copied());
        }
    }
    seen.into_iter().collect()
}

/// The output files of a target as its store entry records them: name → SHA-256.
fn subjects(
    inputs: &ReleaseInputs,
    out_node: usize,
) -> Result<BTreeMap<String, String>, ReleaseError> {
    let node = &inputs.graph.nodes[out_node];
    let entry = inputs.store.step_path(node.key.as_str());
    let text = Beneath::open(&entry)
        .and_then(|b| b.read_to_string(crate::build::exec::SUMS))
        .map_err(|source| ReleaseError::Entry {
            step: node.name.clone(),
            source,
        })?;
    Ok(crate::verify::parse_sums(&text)
        .into_iter()
        .collect::<BTreeMap<_, _>>())
}

/// The image's installed packages, from its rootfs step, with their pins.
fn image_packages<'a>(
    inputs: &'a ReleaseInputs,
    target: &str,
    closure: &[usize],
) -> Result<Vec<&'a PinnedPackage>, ReleaseError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for &i in closure {
        let node = &inputs.graph.nodes[i];
        let NodeKind::Image { .. } = node.kind else {
            continue;
        };
        let Some(&rootfs) = node.deps.get("rootfs") else {
            continue;
        };
        let NodeKind::Rootfs { debs, .. } = &inputs.graph.nodes[rootfs].kind else {
            continue;
        };
        for deb in debs {
            let pin = inputs
                .lock
                .packages
                .iter()
                .find(|p| p.name == deb.name && p.version == deb.version && p.sha256 == deb.sha256)
                .ok_or_else(|| ReleaseError::Unpinned {
                    target: target.to_string(),
                    package: deb.name.clone(),
                    version: deb.version.clone(),
                })?;
            if seen.insert((&pin.name, &pin.architecture)) {
                out.push(pin);
            }
        }
    }
    out.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    Ok(out)
}

/// The stored tree of the image step (what the image holds), if it is stored.
fn image_tree(inputs: &ReleaseInputs, closure: &[usize]) -> Option<PathBuf> {
    closure.iter().find_map(|&i| {
        let node = &inputs.graph.nodes[i];
        matches!(node.kind, NodeKind::Image { .. }).then(|| {
            inputs
                .store
                .step_path(node.key.as_str())
                .join(crate::build::exec::TREE)
        })
    })
}

/// Where a pinned package can be downloaded: its file in the snapshot it was taken from (its
/// own, `[[archive.snapshot-package]]`), else in the snapshot of its suite. `None` when the
/// suite was read from a mirror's state, which names no lasting address.
pub fn package_url(lock: &Lockfile, p: &PinnedPackage) -> Option<String> {
    let snapshot = match &p.snapshot {
        Some(ts) => ts.as_str(),
        None => lock
            .suites
            .iter()
            .find(|s| s.name == p.suite)?
            .snapshot
            .as_deref()?,
    };
    Some(format!(
        "{SNAPSHOT_BASE}/archive/{}/{snapshot}/{}",
        crate::mirrors::archive_for_suite(&p.suite),
        p.filename
    ))
}

/// Every pinned input of the target's steps: (name, version, uri, sha256), sorted.
fn pinned_inputs(
    inputs: &ReleaseInputs,
    closure: &[usize],
) -> BTreeSet<(String, String, String, String)> {
    let lock = inputs.lock;
    let mut out = BTreeSet::new();
    let deb = |out: &mut BTreeSet<_>, d: &crate::build::plan::DebPin| {
        let uri = lock
            .packages
            .iter()
            .find(|p| p.sha256 == d.sha256)
            .and_then(|p| package_url(lock, p))
            .unwrap_or_default();
        out.insert((d.name.clone(), d.version.clone(), uri, d.sha256.clone()));
    };
    for &i in closure {
        match &inputs.graph.nodes[i].kind {
            NodeKind::Rootfs { debs, .. } => debs.iter().for_each(|d| deb(&mut out, d)),
            NodeKind::Kernel(k) => {
                deb(&mut out, &k.source);
                if let Some(c) = &k.config {
                    deb(&mut out, c);
                }
            }
            NodeKind::Image { staged, .. } => {
                for (name, sha) in staged {
                    let tarball = lock.tarballs.iter().find(|t| &t.sha256 == sha);
                    let source = lock
                        .sources
                        .iter()
                        .find_map(|s| s.files.iter().find(|f| &f.sha256 == sha).map(|f| (s, f)));
                    let (version, uri) = match (tarball, source) {
                        (Some(t), _) => (String::new(), t.url.clone()),
                        (None, Some((s, f))) => {
                            let archive = crate::mirrors::archive_for_suite(&s.suite);
                            let snapshot = lock
                                .suites
                                .iter()
                                .find(|x| x.name == s.suite)
                                .and_then(|x| x.snapshot.clone());
                            (
                                s.version.clone(),
                                snapshot
                                    .map(|snapshot| {
                                        format!(
                                            "{SNAPSHOT_BASE}/archive/{archive}/{snapshot}/{}/{}",
                                            s.directory, f.name
                                        )
                                    })
                                    .unwrap_or_default(),
                            )
                        }
                        (None, None) => (String::new(), String::new()),
                    };
                    out.insert((name.clone(), version, uri, sha.clone()));
                }
            }
            NodeKind::Program(p) => {
                let url = p.source.urls().into_iter().next().unwrap_or_default();
                let hash = p.source.content_hash().unwrap_or_default().to_string();
                out.insert((p.source.name().to_string(), String::new(), url, hash));
                for c in &p.crates {
                    let url = crate::sources::cargo::crate_url(
                        crate::sources::cargo::CRATES_IO_DOWNLOAD,
                        c,
                    );
                    out.insert((c.name.clone(), c.version.clone(), url, c.checksum.clone()));
                }
            }
            // The modules' go.sum `h1:` hashes are no file's SHA-256: the source only.
            NodeKind::Go(g) => {
                let url = g.source.urls().into_iter().next().unwrap_or_default();
                let hash = g.source.content_hash().unwrap_or_default().to_string();
                out.insert((g.source.name().to_string(), String::new(), url, hash));
            }
            NodeKind::Output { .. } => {}
        }
    }
    out
}

fn provenance(
    inputs: &ReleaseInputs,
    target: &str,
    closure: &[usize],
    subjects: &BTreeMap<String, String>,
) -> Value {
    let subject: Vec<Value> = subjects
        .iter()
        .map(|(name, sha)| json!({"name": name, "digest": {"sha256": sha}}))
        .collect();
    let mut deps = Vec::new();
    if let Some(git) = &inputs.git {
        deps.push(json!({
            "name": "project",
            "digest": {"gitCommit": git.commit},
            "annotations": {"dirty": git.dirty},
        }));
    }
    deps.push(
        json!({"name": crate::lockfile::FILE_NAME, "digest": {"sha256": inputs.lock_sha256}}),
    );
    for (name, version, uri, sha) in pinned_inputs(inputs, closure) {
        let mut d = json!({"name": name, "digest": {"sha256": sha}});
        if !uri.is_empty() {
            d["uri"] = json!(uri);
        }
        if !version.is_empty() {
            d["annotations"] = json!({"version": version});
        }
        deps.push(d);
    }
    let steps: BTreeMap<String, String> = closure
        .iter()
        .map(|&i| {
            let n = &inputs.graph.nodes[i];
            (n.name.clone(), n.key.as_str().to_string())
        })
        .collect();
    let mut external = json!({
        "target": target,
        "profiles": inputs.profiles,
    });
    if let Some(git) = &inputs.git {
        external["revision"] = json!({"commit": git.commit, "dirty": git.dirty});
    }
    // Built without some upstream sources (`--omit`): not the image the recipes describe.
    if let Some(names) = inputs.graph.omitted.get(target) {
        external["omittedSources"] = json!(names);
    }
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": subject,
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {
                    "sourceDateEpoch": inputs.source_date_epoch,
                    "steps": steps,
                },
                "resolvedDependencies": deps,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {"hermetic": HERMETIC_VERSION},
                },
            },
        },
    })
}

/// The licenses a DEP-5 copyright file declares (`License:` fields, first line of each), sorted
/// and deduplicated; `None` when it is not machine-readable.
pub fn dep5_licenses(text: &str) -> Option<BTreeSet<String>> {
    let first = text.lines().next().unwrap_or_default();
    if !first.starts_with("Format:") {
        return None;
    }
    let licenses: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("License:"))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    (!licenses.is_empty()).then_some(licenses)
}

/// A DEP-5 license name as an SPDX expression term: SPDX ids are kept, anything else becomes a
/// `LicenseRef-`.
fn spdx_license(expr: &BTreeSet<String>) -> String {
    let term = |name: &str| -> String {
        // Debian's short names are mostly SPDX's; `or`/`and` join alternatives.
        let mut parts = Vec::new();
        for word in name.split_whitespace() {
            match word.to_ascii_lowercase().as_str() {
                "or" => parts.push("OR".to_string()),
                "and" => parts.push("AND".to_string()),
                _ => parts.push(license_ref(word)),
            }
        }
        if parts.len() > 1 {
            format!("({})", parts.join(" "))
        } else {
            parts.concat()
        }
    };
    let terms: Vec<String> = expr.iter().map(|l| term(l)).collect();
    terms.join(" AND ")
}

fn license_ref(word: &str) -> String {
    let known = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+'));
    let well_known = [
        "GPL-2",
        "GPL-2+",
        "GPL-3",
        "GPL-3+",
        "LGPL-2",
        "LGPL-2+",
        "LGPL-2.1",
        "LGPL-2.1+",
        "LGPL-3",
        "LGPL-3+",
    ];
    if word == "Expat" {
        // Debian's name for what SPDX calls MIT.
        return "MIT".to_string();
    }
    if known && well_known.contains(&word) {
        // Debian writes GPL-2+ where SPDX writes GPL-2.0-or-later.
        let (base, later) = word.strip_suffix('+').map_or((word, false), |b| (b, true));
        let base = if base.contains('.') {
            base.to_string()
        } else {
            format!("{base}.0")
        };
        return format!("{base}-{}", if later { "or-later" } else { "only" });
    }
    let safe: String = word
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if known && SPDX_IDS.contains(&word) {
        word.to_string()
    } else {
        format!("LicenseRef-{safe}")
    }
}

/// SPDX license ids Debian's copyright files use under the same name.
const SPDX_IDS: &[&str] = &[
    "Apache-2.0",
    "Artistic-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSD-4-Clause",
    "BSL-1.0",
    "CC0-1.0",
    "ISC",
    "MIT",
    "MPL-1.1",
    "MPL-2.0",
    "OpenSSL",
    "Zlib",
    "0BSD",
    "Unlicense",
    "curl",
    "FSFAP",
    "FSFUL",
    "X11",
    "PSF-2.0",
    "Python-2.0",
];

/// The license of `package` as its copyright file in the image declares it, read beneath the
/// tree without following links; `NOASSERTION` when there is none to read.
fn package_license(tree: Option<&Beneath>, package: &str) -> String {
    let Some(tree) = tree else {
        return "NOASSERTION".to_string();
    };
    let rel = format!("usr/share/doc/{package}/copyright");
    match tree
        .read_to_string(&rel)
        .ok()
        .as_deref()
        .and_then(dep5_licenses)
    {
        Some(l) => spdx_license(&l),
        None => "NOASSERTION".to_string(),
    }
}

/// An SPDX id made of `name`'s safe characters.
fn spdx_id(prefix: &str, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-{prefix}-{safe}")
}

/// `SOURCE_DATE_EPOCH` as an RFC 3339 UTC time.
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn spdx(
    inputs: &ReleaseInputs,
    target: &str,
    packages: &[&PinnedPackage],
    tree: Option<&Path>,
    subjects: &BTreeMap<String, String>,
) -> Value {
    let tree = tree.and_then(|t| Beneath::open(t).ok());
    let mut spdx_packages = Vec::new();
    let mut relationships = Vec::new();
    let image_id = spdx_id("Image", target);
    let image = json!({
        "SPDXID": image_id,
        "name": target,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "comment": format!("the image {target}, built by hermetic; outputs: {}",
            subjects.keys().cloned().collect::<Vec<_>>().join(", ")),
    });
    spdx_packages.push(image);
    relationships.push(json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": image_id,
    }));
    for p in packages {
        let id = spdx_id("Package", &format!("{}-{}", p.name, p.architecture));
        let license = package_license(tree.as_ref(), &p.name);
        let purl = format!(
            "pkg:deb/debian/{}@{}?arch={}",
            p.name,
            purl_escape(&p.version),
            p.architecture
        );
        let mut source_info = format!(
            "built from the Debian source package {} {}",
            p.source, p.source_version
        );
        if p.source.is_empty() {
            source_info = "NOASSERTION".to_string();
        }
        spdx_packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "packageFileName": p.filename.rsplit('/').next().unwrap_or(&p.filename),
            "supplier": "Organization: Debian",
            "downloadLocation": package_url(inputs.lock, p).unwrap_or_else(|| "NOASSERTION".into()),
            "filesAnalyzed": false,
            "checksums": [{"algorithm": "SHA256", "checksumValue": p.sha256}],
            "licenseDeclared": license,
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "sourceInfo": source_info,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }],
        }));
        relationships.push(json!({
            "spdxElementId": image_id,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{target} (hermetic image)"),
        "creationInfo": {
            "created": rfc3339(inputs.source_date_epoch),
            "creators": [format!("Tool: hermetic-{HERMETIC_VERSION}")],
            "comment": "created is the build's SOURCE_DATE_EPOCH",
        },
        "documentDescribes": [image_id],
        "packages": spdx_packages,
        "relationships": relationships,
    });
    // The namespace must be unique per document: derive it from everything else in it.
    let hash = crate::hash::sha256_hex(&to_bytes(&doc));
    doc["documentNamespace"] = json!(format!(
        "https://spdx.org/spdxdocs/hermetic-{target}-{hash}"
    ));
    doc
}

/// Escapes a Debian version for a purl (`+` and `:` are percent-encoded, as purl asks).
fn purl_escape(v: &str) -> String {
    v.replace('%', "%25")
        .replace('+', "%2B")
        .replace(':', "%3A")
}

fn manifest(target: &str, packages: &[&PinnedPackage]) -> Value {
    let arch = packages
        .iter()
        .map(|p| p.architecture.as_str())
        .find(|a| *a != "all")
        .unwrap_or("all");
    let pkgs: Vec<Value> = packages
        .iter()
        .map(|p| {
            json!({
                "type": "deb",
                "name": p.name,
                "version": p.version,
                "architecture": p.architecture,
                "size": p.size,
                "source": p.source,
            })
        })
        .collect();
    json!({
        "manifest_version": 1,
        "config": {
            "name": target,
            "distribution": "debian",
            "architecture": arch,
        },
        "packages": pkgs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn dep5_licenses_are_read_and_mapped() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-2+\n text\n\nFiles: lib/*\nLicense: LGPL-2.1+ or MIT\n";
        let l = dep5_licenses(text).unwrap();
        assert_eq!(
            spdx_license(&l),
            "GPL-2.0-or-later AND (LGPL-2.1-or-later OR MIT)"
        );
        assert_eq!(
            dep5_licenses("This package was debianized by …\nLicense: x"),
            None
        );
        assert_eq!(license_ref("Expat"), "MIT");
        assert_eq!(license_ref("public-domain"), "LicenseRef-public-domain");
    }

    #[test]
    fn a_package_url_names_the_snapshot_the_pin_came_from() {
        use crate::lockfile::LockedSuite;
        let suite = |name: &str, snapshot: Option<&str>| LockedSuite {
            name: name.into(),
            archive: crate::mirrors::archive_for_suite(name).into(),
            index_source: None,
            index_url: None,
            snapshot: snapshot.map(String::from),
            date: String::new(),
            inrelease_sha256: String::new(),
            components: vec!["main".into()],
            architecture: "amd64".into(),
        };
        let lock = Lockfile {
            suites: vec![
                suite("trixie", Some("20261124T000000Z")),
                suite("trixie-security", None),
            ],
            ..Default::default()
        };
        let pin = |suite: &str, snapshot: Option<&str>| PinnedPackage {
            suite: suite.into(),
            filename: "pool/main/s/sd/sd_1_amd64.deb".into(),
            snapshot: snapshot.map(String::from),
            ..Default::default()
        };
        assert_eq!(
            package_url(&lock, &pin("trixie", None)).unwrap(),
            "https://snapshot.debian.org/archive/debian/20261124T000000Z/pool/main/s/sd/sd_1_amd64.deb"
        );
        assert_eq!(
            package_url(&lock, &pin("trixie", Some("20240314T094714Z"))).unwrap(),
            "https://snapshot.debian.org/archive/debian/20240314T094714Z/pool/main/s/sd/sd_1_amd64.deb"
        );
        // A mirror's state names no lasting address; a suite the project does not read
        // is found by the pin's own snapshot.
        assert_eq!(package_url(&lock, &pin("trixie-security", None)), None);
        assert!(
            package_url(&lock, &pin("sid", Some("20240314T094714Z")))
                .unwrap()
                .contains("/archive/debian/20240314T094714Z/")
        );
    }

    #[test]
    fn purl_versions_are_escaped() {
        assert_eq!(purl_escape("1:2.3+dfsg-1"), "1%3A2.3%2Bdfsg-1");
    }
}
