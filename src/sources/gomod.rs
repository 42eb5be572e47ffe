//! Go modules pinned by the `h1:` hashes `go.sum` already carries: every module a source
//! tree's `go.sum` names is fetched from a GOPROXY into the store, its zip and `go.mod`
//! checked against those hashes (computed by us) before anything is stored, and laid out as
//! a read-only module cache that `go build` uses with `GOPROXY=off`. A tree with a
//! `vendor/modules.txt` needs no module at all: `-mod=vendor`.
//!
//! `h1:` is Go's `dirhash.Hash1`: SHA-256 over the lines `<sha256 hex>  <name>\n` of every
//! file, sorted by name, base64 (standard, padded) after `h1:`. For a module zip the names
//! are the zip's entry names (`<module>@<version>/<path>`); for a `go.mod` it is the one
//! name `go.mod`.
//!
//! In the store, a checked zip is the entry `steps/go-zip-<hex of its h1 digest>/module.zip`
//! and a checked `go.mod` `steps/go-mod-<hex>/go.mod`: any zip with the right files
//! satisfies the pin, so the store keeps the first one that matched (as for git trees).
//! Both are checked again when the module cache is laid out.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::http::Http;
use crate::sources::pin::SourcePin;
use crate::store::{Store, StoreError};

/// The public Go module proxy, the default `proxy` of a module fetch.
pub const DEFAULT_GOPROXY: &str = "https://proxy.golang.org";

/// Go's own limits (`cmd/go/internal/modfetch`): a module zip and its unpacked files at most
/// 500 MiB, a `go.mod` at most 16 MiB.
pub const MAX_ZIP: u64 = 500 << 20;
pub const MAX_GO_MOD: u64 = 16 << 20;

/// One module of a `go.sum`: its zip hash when go.sum has one (the module provides packages
/// to the build), and its `go.mod` hash (every module of the module graph).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GoModule {
    pub path: String,
    pub version: String,
    /// `h1:` of the module zip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h1: Option<String>,
    /// `h1:` of its `go.mod` (the `/go.mod` line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_h1: Option<String>,
}

impl GoModule {
    fn describe(&self) -> String {
        format!("{}@{}", self.path, self.version)
    }
}

/// Where a Go program's modules come from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum GoModules {
    /// The tree's `vendor/` directory (pinned with the tree): `-mod=vendor`, nothing fetched.
    /// `vendored` lists the `module@version`s its `vendor/modules.txt` names.
    Vendor { vendored: Vec<String> },
    /// The modules of `go.sum`, fetched through a GOPROXY and checked by their `h1:`.
    Proxy { modules: Vec<GoModule> },
}

/// What went wrong pinning, fetching or laying out Go modules.
#[derive(Debug, thiserror::Error)]
pub enum GoModError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}:{line}: {message}", .path.display())]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{}: module `{module} {version}` is required but go.sum has no line for it\nhint: run `go mod tidy` (or `go mod download {module}`) and commit go.sum; every module is pinned by its go.sum hash",
        .path.display()
    )]
    NotInGoSum {
        path: PathBuf,
        module: String,
        version: String,
    },
    #[error("{}: module `{module}`: {why}\nhint: hermetic only fetches module paths and versions that are safe as file names", .path.display())]
    BadModule {
        path: PathBuf,
        module: String,
        why: String,
    },
    #[error(
        "module `{module} {version}` from {url}: the {} has hash {actual}, go.sum says {expected}; nothing stored\nhint: the proxy served other content than the one go.sum pins; check the GOPROXY, and run `go mod tidy` only if the change is expected",
        if .url.ends_with(".zip") { "zip" } else { "go.mod" }
    )]
    Mismatch {
        module: String,
        version: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("module `{module} {version}`: cannot download {url}: {reason}")]
    Download {
        module: String,
        version: String,
        url: String,
        reason: String,
    },
    #[error("module `{module} {version}`: entry `{entry}` of its zip is refused: {why}")]
    Hostile {
        module: String,
        version: String,
        entry: String,
        why: String,
    },
    #[error(
        "module `{module} {version}` ({what}) is not in the store\nhint: run `hermetic fetch` to download it"
    )]
    Missing {
        module: String,
        version: String,
        what: &'static str,
    },
    #[error(
        "store entry {} of module `{module} {version}` has hash {actual}, not {expected}; it was removed\nhint: run `hermetic fetch` to download it again",
        .path.display()
    )]
    Corrupt {
        path: PathBuf,
        module: String,
        version: String,
        expected: String,
        actual: String,
    },
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} is not locked (no `modules-sha256`)\nhint: run `hermetic lock`")]
    NotLocked { what: String },
    #[error(
        "{what}: its module list in pins.lock hashes to {actual}, not its modules-sha256 {expected}\nhint: the list was edited; run `hermetic lock` to read it again from the source"
    )]
    ListMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{}: {message}", .archive.display())]
    Archive { archive: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

// ---------------------------------------------------------------------------------------
// h1: (dirhash Hash1)

/// `h1:` over `(name, sha256 of its content)` pairs: the lines `<hex>  <name>\n` in byte
/// order of the names, SHA-256, standard base64. A name holding a newline cannot be hashed.
pub fn hash1<'a>(files: impl IntoIterator<Item = (&'a str, [u8; 32])>) -> Result<String, String> {
    let mut files: Vec<(&str, [u8; 32])> = files.into_iter().collect();
    files.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Sha256::new();
    for (name, digest) in files {
        if name.contains('\n') {
            return Err(format!("file name {name:?} holds a newline"));
        }
        h.update(format!("{}  {name}\n", hex::encode(digest)));
    }
    Ok(format!(
        "h1:{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    ))
}

/// The `/go.mod h1:` of a `go.mod`'s bytes.
pub fn h1_go_mod(bytes: &[u8]) -> String {
    hash1([("go.mod", Sha256::digest(bytes).into())]).expect("no newline in `go.mod`")
}

/// The `h1:` of a module zip, as Go's `dirhash.HashZip` computes it: every entry of the
/// central directory by its name. A name occurring twice, an encrypted entry, or entries
/// unpacking to more than [`MAX_ZIP`] bytes are refused (Go refuses such zips too).
pub fn h1_zip(reader: impl Read + Seek) -> Result<String, String> {
    let mut reader = reader;
    let names = crate::sources::treehash::central_directory_names(&mut reader)
        .map_err(|e| format!("not a zip: {e}"))?;
    let mut seen = BTreeSet::new();
    for n in &names {
        if !seen.insert(n.as_slice()) {
            return Err(format!(
                "entry `{}` occurs twice",
                String::from_utf8_lossy(n)
            ));
        }
    }
    reader.rewind().map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| format!("not a zip: {e}"))?;
    if names.len() != zip.len() {
        return Err("entries the zip reader does not list".into());
    }
    let mut files = Vec::new();
    let mut total = 0u64;
    for i in 0..zip.len() {
        let file = zip.by_index(i).map_err(|e| e.to_string())?;
        let name = std::str::from_utf8(file.name_raw())
            .map_err(|_| format!("entry {:?} is not UTF-8", file.name_raw()))?
            .to_string();
        if file.encrypted() {
            return Err(format!("entry `{name}` is encrypted"));
        }
        let mut h = Sha256::new();
        let limit = MAX_ZIP - total;
        let n = io::copy(&mut file.take(limit + 1), &mut HashWriter(&mut h))
            .map_err(|e| format!("entry `{name}`: {e}"))?;
        total += n;
        if total > MAX_ZIP {
            return Err(format!("it unpacks to more than {MAX_ZIP} bytes"));
        }
        files.push((name, <[u8; 32]>::from(h.finalize())));
    }
    hash1(files.iter().map(|(n, d)| (n.as_str(), *d)))
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The 32 digest bytes of an `h1:` hash, as hex (a store key); `None` if it is not one.
pub fn h1_hex(h1: &str) -> Option<String> {
    let b64 = h1.strip_prefix("h1:")?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (bytes.len() == 32).then(|| hex::encode(bytes))
}

// ---------------------------------------------------------------------------------------
// go.sum, go.mod, vendor/modules.txt

/// The modules of the `go.sum` at `path`, sorted, one per `module version` with its zip
/// and `go.mod` hashes. Only `h1:` hashes are accepted.
pub fn parse_go_sum(path: &Path) -> Result<Vec<GoModule>, GoModError> {
    parse_go_sum_text(path, &read_text(path)?)
}

/// [`parse_go_sum`] of the text of a go.sum; `path` is named in messages.
pub fn parse_go_sum_text(path: &Path, text: &str) -> Result<Vec<GoModule>, GoModError> {
    let mut by_key: BTreeMap<(String, String), GoModule> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |message: String| GoModError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let [module, version, hash] = fields[..] else {
            return Err(bad(format!(
                "expected `module version h1:hash`, found {line:?}"
            )));
        };
        if h1_hex(hash).is_none() {
            return Err(bad(format!(
                "`{hash}` is not an `h1:` hash (h1: and 32 bytes in base64)"
            )));
        }
        let (version, is_mod) = match version.strip_suffix("/go.mod") {
            Some(v) => (v, true),
            None => (version, false),
        };
        check_module(path, module, version)?;
        let m = by_key
            .entry((module.to_string(), version.to_string()))
            .or_insert_with(|| GoModule {
                path: module.to_string(),
                version: version.to_string(),
                h1: None,
                mod_h1: None,
            });
        let slot = if is_mod { &mut m.mod_h1 } else { &mut m.h1 };
        match slot {
            Some(old) if old != hash => {
                return Err(bad(format!(
                    "`{module} {version}` has two different hashes"
                )));
            }
            _ => *slot = Some(hash.to_string()),
        }
    }
    Ok(by_key.into_values().collect())
}

/// What a `go.mod` says that pinning needs: its module path, its requirements and its
/// replacements (`old[@version]` → a module version, or a directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoMod {
    pub module: String,
    pub require: Vec<(String, String)>,
    pub replace: Vec<Replace>,
}

/// One `replace` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replace {
    pub old: String,
    pub old_version: Option<String>,
    /// A module version, or `None` with `dir` set for a directory replacement.
    pub new: Option<(String, String)>,
    pub dir: Option<String>,
}

/// Parses the directives of a `go.mod` that pinning needs (`module`, `require`, `replace`;
/// others are skipped), single-line and block forms, `//` comments, quoted paths.
pub fn parse_go_mod(path: &Path) -> Result<GoMod, GoModError> {
    parse_go_mod_text(path, &read_text(path)?)
}

/// [`parse_go_mod`] of the text of a go.mod; `path` is named in messages.
pub fn parse_go_mod_text(path: &Path, text: &str) -> Result<GoMod, GoModError> {
    let mut out = GoMod::default();
    let mut block: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let bad = |message: String| GoModError::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let line = raw.split("//").next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let words: Vec<String> = line
            .split_whitespace()
            .map(|w| w.trim_matches('"').to_string())
            .collect();
        let (verb, args): (String, &[String]) = match &block {
            Some(_) if line == ")" => {
                block = None;
                continue;
            }
            Some(b) => (b.clone(), &words[..]),
            None if words.len() == 2 && words[1] == "(" => {
                block = Some(words[0].clone());
                continue;
            }
            None => (words[0].clone(), &words[1..]),
        };
        match verb.as_str() {
            "module" => {
                out.module = args
                    .first()
                    .ok_or_else(|| bad("`module` without a path".into()))?
                    .clone()
            }
            "require" => match args {
                [m, v] => out.require.push((m.clone(), v.clone())),
                _ => return Err(bad(format!("cannot read requirement {line:?}"))),
            },
            "replace" => {
                let arrow = args
                    .iter()
                    .position(|w| w == "=>")
                    .ok_or_else(|| bad(format!("replace without `=>`: {line:?}")))?;
                let (old, new) = (&args[..arrow], &args[arrow + 1..]);
                let (old, old_version) = match old {
                    [m] => (m.clone(), None),
                    [m, v] => (m.clone(), Some(v.clone())),
                    _ => return Err(bad(format!("cannot read replacement {line:?}"))),
                };
                let (new, dir) = match new {
                    [d] => (None, Some(d.clone())),
                    [m, v] => (Some((m.clone(), v.clone())), None),
                    _ => return Err(bad(format!("cannot read replacement {line:?}"))),
                };
                out.replace.push(Replace {
                    old,
                    old_version,
                    new,
                    dir,
                });
            }
            _ => {}
        }
    }
    if out.module.is_empty() {
        return Err(GoModError::Malformed {
            path: path.to_path_buf(),
            line: 1,
            message: "no `module` directive".into(),
        });
    }
    Ok(out)
}

/// The `module@version`s a `vendor/modules.txt` lists (its `# module version` lines; a
/// `# old => new version` replacement counts as its replacement).
pub fn parse_modules_txt(path: &Path) -> Result<Vec<String>, GoModError> {
    Ok(parse_modules_txt_text(&read_text(path)?))
}

fn parse_modules_txt_text(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words[..] {
            [m, v] => out.push(format!("{m}@{v}")),
            [_, "=>", m, v] | [_, _, "=>", m, v] => out.push(format!("{m}@{v}")),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The modules of the Go module at `dir` (a directory of a source tree): `vendor/` when it
/// has a `vendor/modules.txt`, else the modules of its `go.sum`, each requirement of its
/// `go.mod` (after replacements) checked to have a go.sum line.
pub fn go_modules(dir: &Path) -> Result<GoModules, GoModError> {
    let read = |name: &str| -> Result<Option<String>, GoModError> {
        let path = dir.join(name);
        if path.is_file() {
            read_text(&path).map(Some)
        } else {
            Ok(None)
        }
    };
    let go_mod = read("go.mod")?.unwrap_or_default();
    let files = ModuleFiles {
        dir: dir.to_path_buf(),
        go_mod,
        go_sum: read("go.sum")?,
        modules_txt: read("vendor/modules.txt")?,
    };
    files.modules()
}

/// The files of a Go module that say which modules it needs.
#[derive(Debug, Clone, Default)]
struct ModuleFiles {
    /// Where they are (a directory, or `<archive>/<dir>`), for messages.
    dir: PathBuf,
    go_mod: String,
    go_sum: Option<String>,
    modules_txt: Option<String>,
}

impl ModuleFiles {
    fn modules(&self) -> Result<GoModules, GoModError> {
        if let Some(text) = &self.modules_txt {
            return Ok(GoModules::Vendor {
                vendored: parse_modules_txt_text(text),
            });
        }
        let go_mod = parse_go_mod_text(&self.dir.join("go.mod"), &self.go_mod)?;
        let go_sum_path = self.dir.join("go.sum");
        let modules = match &self.go_sum {
            Some(text) => parse_go_sum_text(&go_sum_path, text)?,
            None => Vec::new(),
        };
        check_required(&go_mod, &modules, go_sum_path)?;
        Ok(GoModules::Proxy { modules })
    }
}

/// Each requirement of `go_mod` (after replacements; a directory replacement needs no
/// module) has a line in go.sum.
fn check_required(
    go_mod: &GoMod,
    modules: &[GoModule],
    go_sum_path: PathBuf,
) -> Result<(), GoModError> {
    for (module, version) in &go_mod.require {
        let replaced = go_mod
            .replace
            .iter()
            .find(|r| &r.old == module && r.old_version.as_ref().is_none_or(|v| v == version));
        let (module, version) = match replaced {
            Some(Replace { dir: Some(_), .. }) => continue,
            Some(Replace {
                new: Some((m, v)), ..
            }) => (m, v),
            _ => (module, version),
        };
        if !modules
            .iter()
            .any(|m| &m.path == module && &m.version == version)
        {
            return Err(GoModError::NotInGoSum {
                path: go_sum_path,
                module: module.clone(),
                version: version.clone(),
            });
        }
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, GoModError> {
    fs_err::read_to_string(path).map_err(|source| GoModError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Refuses module paths and versions that could not safely become file names (every one
/// Go accepts passes: letters, digits, `-._~+/`, no empty, `.` or `..` element).
fn check_module(file: &Path, module: &str, version: &str) -> Result<(), GoModError> {
    let bad = |why: String| GoModError::BadModule {
        path: file.to_path_buf(),
        module: module.to_string(),
        why,
    };
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-._~+".contains(c);
    if module.is_empty()
        || module
            .split('/')
            .any(|e| e.is_empty() || e == "." || e == ".." || !e.chars().all(ok_char))
    {
        return Err(bad("not a valid module path".into()));
    }
    if !version.starts_with('v')
        || version == "."
        || version.contains("..")
        || !version.chars().all(ok_char)
    {
        return Err(bad(format!("`{version}` is not a valid version")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Fetching

/// Go's case escaping of module paths and versions in proxy URLs and cache paths: each
/// upper-case letter becomes `!` and its lower-case form.
pub fn escape_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_uppercase() {
            out.push('!');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `<proxy>/<escaped module>/@v/<escaped version>.<ext>`.
pub fn proxy_url(proxy: &str, module: &GoModule, ext: &str) -> String {
    format!(
        "{}/{}/@v/{}.{ext}",
        proxy.trim_end_matches('/'),
        escape_path(&module.path),
        escape_path(&module.version)
    )
}

/// The store entry of a module zip with this `h1:`.
pub fn zip_key(h1: &str) -> Option<String> {
    h1_hex(h1).map(|h| format!("go-zip-{h}"))
}

/// The store entry of a `go.mod` with this `h1:`.
pub fn mod_key(h1: &str) -> Option<String> {
    h1_hex(h1).map(|h| format!("go-mod-{h}"))
}

/// What [`fetch_modules`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GoFetch {
    /// Files (zips and `go.mod`s) stored by this run.
    pub fetched: usize,
    /// Files already in the store.
    pub already: usize,
}

/// Has every module's zip (when go.sum pins it) and `go.mod` in the store, downloaded from
/// `proxy` when missing. Each download is checked against its `h1:` before it is published;
/// one that does not match is an error naming the module, the URL and both hashes, and
/// nothing of it is stored.
pub fn fetch_modules(
    store: &Store,
    http: &Http,
    modules: &[GoModule],
    proxy: &str,
) -> Result<GoFetch, GoModError> {
    let mut done = GoFetch::default();
    for m in modules {
        for (h1, ext) in [(&m.mod_h1, "mod"), (&m.h1, "zip")] {
            let Some(h1) = h1 else { continue };
            let (key, file) = entry_of(m, h1, ext)?;
            if store.has_step(&key) {
                done.already += 1;
                continue;
            }
            let url = proxy_url(proxy, m, ext);
            let download_err = |reason: String| GoModError::Download {
                module: m.path.clone(),
                version: m.version.clone(),
                url: url.clone(),
                reason,
            };
            let mut download = http.get(&url, None).map_err(|e| download_err(e.reason()))?;
            let tmp = store.temp_dir()?;
            let path = tmp.path().join(file);
            let limit = if ext == "zip" { MAX_ZIP } else { MAX_GO_MOD };
            let mut out = fs_err::File::create(&path).map_err(|e| download_err(e.to_string()))?;
            let n = io::copy(&mut (&mut download.reader).take(limit + 1), &mut out)
                .map_err(|e| download_err(crate::http::body_error(&url, e).reason()))?;
            if n > limit {
                return Err(download_err(format!("larger than {limit} bytes")));
            }
            out.sync_all().map_err(|e| download_err(e.to_string()))?;
            drop(out);
            let actual = hash_file(&path, ext).map_err(download_err)?;
            if &actual != h1 {
                // `tmp` is dropped: nothing of the download stays.
                return Err(GoModError::Mismatch {
                    module: m.path.clone(),
                    version: m.version.clone(),
                    url,
                    expected: h1.clone(),
                    actual,
                });
            }
            use std::os::unix::fs::PermissionsExt as _;
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o444))
                .map_err(|e| download_err(e.to_string()))?;
            store.publish_step(&key, tmp)?;
            done.fetched += 1;
        }
    }
    Ok(done)
}

/// The store key and file name of one module file (`ext` `zip` or `mod`).
fn entry_of(m: &GoModule, h1: &str, ext: &str) -> Result<(String, &'static str), GoModError> {
    let key = if ext == "zip" {
        zip_key(h1)
    } else {
        mod_key(h1)
    };
    let key = key.ok_or_else(|| GoModError::BadModule {
        path: PathBuf::from("go.sum"),
        module: m.describe(),
        why: format!("`{h1}` is not an `h1:` hash"),
    })?;
    Ok((key, if ext == "zip" { "module.zip" } else { "go.mod" }))
}

fn hash_file(path: &Path, ext: &str) -> Result<String, String> {
    if ext == "zip" {
        let f = fs_err::File::open(path).map_err(|e| e.to_string())?;
        h1_zip(io::BufReader::new(f))
    } else {
        let bytes = fs_err::read(path).map_err(|e| e.to_string())?;
        Ok(h1_go_mod(&bytes))
    }
}

/// The checked store file of one module file, re-hashed now; a stored file that no longer
/// matches is removed and named.
fn stored_file(store: &Store, m: &GoModule, h1: &str, ext: &str) -> Result<PathBuf, GoModError> {
    let (key, file) = entry_of(m, h1, ext)?;
    let what = if ext == "zip" { "zip" } else { "go.mod" };
    if !store.has_step(&key) {
        return Err(GoModError::Missing {
            module: m.path.clone(),
            version: m.version.clone(),
            what,
        });
    }
    let path = store.step_path(&key).join(file);
    let actual = hash_file(&path, ext).unwrap_or_else(|e| format!("(unreadable: {e})"));
    if actual != h1 {
        let _ = store.remove_step(&key);
        return Err(GoModError::Corrupt {
            path,
            module: m.path.clone(),
            version: m.version.clone(),
            expected: h1.to_string(),
            actual,
        });
    }
    Ok(path)
}

// ---------------------------------------------------------------------------------------
// `go-modules` pins in pins.lock

/// `modules-sha256` of a `go-modules` pin: SHA-256 of `hermetic-go-modules-v1\n`, then
/// `vendor\n` for a vendored module, then each line of `modules` and `\n`, in order.
pub fn modules_sha256(vendored: bool, lines: &[String]) -> String {
    let mut text = String::from("hermetic-go-modules-v1\n");
    if vendored {
        text.push_str("vendor\n");
    }
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    crate::hash::sha256_hex(text.as_bytes())
}

/// The go.sum lines of `modules`, in go.sum order (by module and version, the zip line
/// before the `/go.mod` line).
pub fn go_sum_lines(modules: &[GoModule]) -> Vec<String> {
    let mut out = Vec::new();
    for m in modules {
        if let Some(h) = &m.h1 {
            out.push(format!("{} {} {h}", m.path, m.version));
        }
        if let Some(h) = &m.mod_h1 {
            out.push(format!("{} {}/go.mod {h}", m.path, m.version));
        }
    }
    out
}

/// `pin` (a `go-modules` pin) with what `hermetic lock` read from its source tree, whose
/// content hash is `source_hash`.
pub fn locked_pin(pin: &SourcePin, source_hash: &str, found: &GoModules) -> SourcePin {
    let mut pin = pin.clone();
    if let SourcePin::GoModules {
        source_hash: sh,
        vendored,
        modules,
        modules_sha256: hash,
        ..
    } = &mut pin
    {
        *sh = Some(source_hash.to_string());
        (*vendored, *modules) = match found {
            GoModules::Vendor { vendored } => (true, vendored.clone()),
            GoModules::Proxy { modules } => (false, go_sum_lines(modules)),
        };
        *hash = Some(modules_sha256(*vendored, modules));
    }
    pin
}

/// The modules a locked `go-modules` pin records, after checking its list against its
/// `modules-sha256` (a list edited by hand is refused).
pub fn pin_modules(pin: &SourcePin) -> Result<GoModules, GoModError> {
    let SourcePin::GoModules {
        vendored,
        modules,
        modules_sha256: Some(expected),
        ..
    } = pin
    else {
        return Err(GoModError::NotLocked {
            what: pin.describe(),
        });
    };
    let actual = modules_sha256(*vendored, modules);
    if &actual != expected {
        return Err(GoModError::ListMismatch {
            what: pin.describe(),
            expected: expected.clone(),
            actual,
        });
    }
    if *vendored {
        return Ok(GoModules::Vendor {
            vendored: modules.clone(),
        });
    }
    let modules = parse_go_sum_text(Path::new("pins.lock"), &(modules.join("\n") + "\n"))?;
    Ok(GoModules::Proxy { modules })
}

/// Whether every file a locked `go-modules` pin needs is in the store (a vendored one needs
/// none).
pub fn pin_in_store(store: &Store, pin: &SourcePin) -> bool {
    match pin_modules(pin) {
        Ok(GoModules::Vendor { .. }) => true,
        Ok(GoModules::Proxy { modules }) => modules.iter().all(|m| {
            [(&m.mod_h1, "mod"), (&m.h1, "zip")]
                .into_iter()
                .all(|(h, ext)| match h {
                    None => true,
                    Some(h) => entry_of(m, h, ext).is_ok_and(|(key, _)| store.has_step(&key)),
                })
        }),
        Err(_) => false,
    }
}

/// The store entries (`go-zip-<hex>`, `go-mod-<hex>`) the locked `go-modules` pins of
/// `lock` need: `hermetic cache gc` keeps them as it keeps the crates of `[[cargo]]` builds.
pub fn locked_module_entries(lock: &crate::lockfile::Lockfile) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for u in &lock.upstream {
        let Ok(GoModules::Proxy { modules }) = pin_modules(&u.pin) else {
            continue;
        };
        for m in &modules {
            out.extend(m.h1.as_deref().and_then(zip_key));
            out.extend(m.mod_h1.as_deref().and_then(mod_key));
        }
    }
    out
}

/// Has the modules of a locked `go-modules` pin in the store (see [`fetch_modules`]),
/// through its proxies in order: a proxy that cannot serve a file gives way to the next; a
/// file that does not match its hash is an error at once. With `offline` nothing is
/// downloaded and a missing file is an error.
pub fn fetch_pin(
    store: &Store,
    http: &Http,
    pin: &SourcePin,
    offline: bool,
) -> Result<GoFetch, GoModError> {
    let GoModules::Proxy { modules } = pin_modules(pin)? else {
        return Ok(GoFetch::default());
    };
    if offline {
        for m in &modules {
            for (h, ext) in [(&m.mod_h1, "mod"), (&m.h1, "zip")] {
                if let Some(h) = h {
                    stored_file(store, m, h, ext)?;
                }
            }
        }
        return Ok(GoFetch {
            fetched: 0,
            already: modules.len(),
        });
    }
    let mut last = None;
    for proxy in pin.urls() {
        match fetch_modules(store, http, &modules, &proxy) {
            Ok(done) => return Ok(done),
            Err(e @ GoModError::Download { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(GoModError::NotLocked {
        what: pin.describe(),
    }))
}

/// The modules of the Go module at `dir` (`/`-separated, empty for the root) of a source
/// archive (a tar in any compression, or a zip), read without unpacking it. As for the tree
/// hash, while one top-level directory holds every entry, it is stripped first.
pub fn go_modules_of_archive(archive: &Path, dir: &str) -> Result<GoModules, GoModError> {
    let dir: Vec<&str> = dir
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let dir = dir.join("/");
    let wanted = |rel: &str| -> bool {
        ["go.mod", "go.sum", "vendor/modules.txt"]
            .iter()
            .any(|f| rel == *f || rel.ends_with(&format!("/{f}")))
    };
    let aerr = |message: String| GoModError::Archive {
        archive: archive.to_path_buf(),
        message,
    };
    let mut paths: Vec<String> = Vec::new();
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    let mut take = |name: &[u8], reader: &mut dyn Read| -> Result<(), GoModError> {
        let name = String::from_utf8_lossy(name);
        let norm: Vec<&str> = name
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let norm = norm.join("/");
        if norm.is_empty() {
            return Ok(());
        }
        if wanted(&norm) {
            let mut text = String::new();
            reader
                .take(MAX_GO_MOD)
                .read_to_string(&mut text)
                .map_err(|e| aerr(format!("entry `{name}`: {e}")))?;
            texts.insert(norm.clone(), text);
        }
        paths.push(norm);
        Ok(())
    };
    let mut file = fs_err::File::open(archive).map_err(|source| GoModError::Read {
        path: archive.to_path_buf(),
        source,
    })?;
    let mut head = [0u8; 8];
    let n = file.read(&mut head).map_err(|e| aerr(e.to_string()))?;
    file.rewind().map_err(|e| aerr(e.to_string()))?;
    let kind = crate::sources::treehash::ArchiveKind::sniff(&head[..n]);
    if kind == crate::sources::treehash::ArchiveKind::Zip {
        let mut zip =
            zip::ZipArchive::new(io::BufReader::new(file)).map_err(|e| aerr(e.to_string()))?;
        for i in 0..zip.len() {
            let mut f = zip.by_index(i).map_err(|e| aerr(e.to_string()))?;
            if f.is_dir() {
                continue;
            }
            let name = f.name_raw().to_vec();
            take(&name, &mut f)?;
        }
    } else {
        let reader = crate::sources::treehash::decompressed(kind, io::BufReader::new(file))
            .map_err(|e| aerr(e.to_string()))?;
        let mut tar = tar::Archive::new(reader);
        for entry in tar.entries().map_err(|e| aerr(e.to_string()))? {
            let mut entry = entry.map_err(|e| aerr(e.to_string()))?;
            if !matches!(
                entry.header().entry_type(),
                tar::EntryType::Regular | tar::EntryType::Continuous
            ) {
                continue;
            }
            let name = entry.path_bytes().into_owned();
            take(&name, &mut entry)?;
        }
    }
    // While one top-level directory holds everything (GitHub's `<repo>-<commit>/`), it is
    // stripped: the tree hash's rule.
    let mut strip = String::new();
    while let Some((top, _)) = paths.first().and_then(|p| p[strip.len()..].split_once('/')) {
        let candidate = format!("{strip}{top}/");
        if !paths.iter().all(|p| p.starts_with(&candidate)) {
            break;
        }
        strip = candidate;
    }
    let get = |rel: &str| -> Option<String> {
        let full = if dir.is_empty() {
            format!("{strip}{rel}")
        } else {
            format!("{strip}{dir}/{rel}")
        };
        texts.get(&full).cloned()
    };
    let label = if dir.is_empty() {
        archive.to_path_buf()
    } else {
        archive.join(&dir)
    };
    let Some(go_mod) = get("go.mod") else {
        return Err(aerr(format!(
            "no go.mod at `{}`",
            if dir.is_empty() { "." } else { &dir }
        )));
    };
    ModuleFiles {
        dir: label,
        go_mod,
        go_sum: get("go.sum"),
        modules_txt: get("vendor/modules.txt"),
    }
    .modules()
}

// ---------------------------------------------------------------------------------------
// The module cache

/// Lays out `dest` (which must not exist) as a Go module cache (`GOMODCACHE`) from the
/// store: `cache/download/<escaped module>/@v/<version>.{mod,info}` for every module, plus
/// `.zip`, `.ziphash` and the unpacked `<escaped module>@<version>/` for those whose zip
/// go.sum pins. Every file is re-hashed against its `h1:` first. Files are made read-only
/// (the step mounts the whole cache read-only; go then never needs to write to it).
pub fn write_module_cache(
    store: &Store,
    modules: &[GoModule],
    dest: &Path,
) -> Result<(), GoModError> {
    let werr = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GoModError::Write { path, source }
    };
    fs_err::create_dir(dest).map_err(werr(dest))?;
    for m in modules {
        check_module(Path::new("go.sum"), &m.path, &m.version)?;
        let esc = escape_path(&m.path);
        let ver = escape_path(&m.version);
        let dl = dest.join("cache/download").join(&esc).join("@v");
        fs_err::create_dir_all(&dl).map_err(werr(&dl))?;
        let info = format!("{{\"Version\":\"{}\"}}\n", m.version);
        write_ro(&dl.join(format!("{ver}.info")), info.as_bytes())?;
        if let Some(h1) = &m.mod_h1 {
            let src = stored_file(store, m, h1, "mod")?;
            let bytes = fs_err::read(&src).map_err(werr(&src))?;
            write_ro(&dl.join(format!("{ver}.mod")), &bytes)?;
        }
        let Some(h1) = &m.h1 else { continue };
        let src = stored_file(store, m, h1, "zip")?;
        let zip_dest = dl.join(format!("{ver}.zip"));
        fs_err::copy(&src, &zip_dest).map_err(werr(&zip_dest))?;
        write_ro(&dl.join(format!("{ver}.ziphash")), h1.as_bytes())?;
        let unpacked = dest.join(format!("{esc}@{ver}"));
        if let Some(parent) = unpacked.parent() {
            fs_err::create_dir_all(parent).map_err(werr(parent))?;
        }
        fs_err::create_dir(&unpacked).map_err(werr(&unpacked))?;
        let file = fs_err::File::open(&zip_dest).map_err(werr(&zip_dest))?;
        unpack_module(m, file, &unpacked)?;
        // A go.mod-less module: go reads the synthesized one from the download cache.
    }
    Ok(())
}

fn write_ro(path: &Path, bytes: &[u8]) -> Result<(), GoModError> {
    use std::os::unix::fs::PermissionsExt as _;
    let werr = |source| GoModError::Write {
        path: path.to_path_buf(),
        source,
    };
    fs_err::write(path, bytes).map_err(werr)?;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o444)).map_err(werr)
}

/// Unpacks a checked module zip into `dir`: only regular files, each under the zip's
/// `<module>@<version>/` prefix, with relative plain paths; files read-only.
fn unpack_module(m: &GoModule, reader: impl Read + Seek, dir: &Path) -> Result<(), GoModError> {
    let prefix = format!("{}@{}/", m.path, m.version);
    let hostile = |entry: &str, why: &str| GoModError::Hostile {
        module: m.path.clone(),
        version: m.version.clone(),
        entry: entry.to_string(),
        why: why.to_string(),
    };
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| hostile("(archive)", &e.to_string()))?;
    for i in 0..zip.len() {
        let mut file = zip
            .by_index(i)
            .map_err(|e| hostile("(archive)", &e.to_string()))?;
        let name = String::from_utf8_lossy(file.name_raw()).into_owned();
        let Some(rel) = name.strip_prefix(&prefix) else {
            return Err(hostile(&name, &format!("outside `{prefix}`")));
        };
        let rel_path = Path::new(rel);
        if rel.is_empty()
            || rel.contains('\\')
            || !rel_path
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(hostile(&name, "not a plain relative path"));
        }
        let file_type = file.unix_mode().map(|m| m & 0o170000);
        if file.is_dir()
            || file.is_symlink()
            || !matches!(file_type, None | Some(0) | Some(0o100000))
        {
            return Err(hostile(&name, "not a regular file"));
        }
        let target = dir.join(rel_path);
        let io_err = |e: io::Error| hostile(&name, &format!("cannot unpack it: {e}"));
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent).map_err(io_err)?;
        }
        let mut out = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(io_err)?;
        io::copy(&mut (&mut file).take(MAX_ZIP), &mut out).map_err(io_err)?;
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(&target, std::fs::Permissions::from_mode(0o444)).map_err(io_err)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The build

/// What to build, and where things are inside the sandbox.
#[derive(Debug, Clone)]
pub struct GoBuild {
    /// The `go` command (a path inside the sandbox, or a name looked up in its `PATH`).
    pub go: String,
    /// Package patterns, e.g. `["."]` or `["./cmd/foo"]`.
    pub packages: Vec<String>,
    /// The output file inside the sandbox (`-o`).
    pub output: String,
    /// More `-ldflags` after `-buildid=` (e.g. `-s`, `-w`, `-X main.v=1`).
    pub ldflags: Vec<String>,
    /// Build tags (`-tags`).
    pub tags: Vec<String>,
    pub goos: String,
    pub goarch: String,
    /// `CGO_ENABLED=1`; off by default (a pure-Go static binary).
    pub cgo: bool,
    /// Where the assembled module cache is mounted inside the sandbox.
    pub modcache_dst: PathBuf,
    /// A writable directory inside the sandbox for go's build cache (`GOCACHE`), `GOPATH`
    /// and temporary files; the step's own scratch, never shared.
    pub work_dst: PathBuf,
}

impl GoBuild {
    /// A build of `packages` into `output` for linux/amd64, without cgo, with the module
    /// cache at `/gomodcache` and the scratch directory at `/gowork`.
    pub fn new(packages: &[&str], output: &str) -> GoBuild {
        GoBuild {
            go: "go".into(),
            packages: packages.iter().map(|p| p.to_string()).collect(),
            output: output.into(),
            ldflags: Vec::new(),
            tags: Vec::new(),
            goos: "linux".into(),
            goarch: "amd64".into(),
            cgo: false,
            modcache_dst: "/gomodcache".into(),
            work_dst: "/gowork".into(),
        }
    }
}

/// What a sandboxed step needs to run one `go build`: the mounts to add (the read-only
/// module cache), its environment and its command. The step runner adds the source tree
/// (working directory), the writable [`GoBuild::work_dst`], the output directory and the
/// toolchain, and runs it with no network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBuildPlan {
    pub mounts: Vec<sandbox::Mount>,
    pub env: BTreeMap<String, String>,
    pub argv: Vec<String>,
}

/// Prepares a `go build` of `modules`: in proxy mode the module cache is laid out at
/// `modcache_host` (which must not exist; see [`write_module_cache`]) and mounted
/// read-only; in vendor mode nothing is laid out and go uses the tree's `vendor/`.
///
/// The environment allows no module download and no checksum database: `GOPROXY=off`,
/// `GOSUMDB=off` (every hash was checked by us, and go still compares each module with
/// go.sum), `GOFLAGS=-mod=readonly` (a go.mod or go.sum that would need changing fails
/// instead of being rewritten) or `-mod=vendor`, `GOENV=off`, `GOWORK=off`,
/// `GOTOOLCHAIN=local`, `CGO_ENABLED=0` unless asked. The command is `go build -trimpath
/// -buildvcs=false -ldflags=-buildid=...`: no build path, VCS stamp or build id in the
/// binary.
pub fn go_build_plan(
    store: &Store,
    modules: &GoModules,
    build: &GoBuild,
    modcache_host: &Path,
) -> Result<GoBuildPlan, GoModError> {
    let work = build.work_dst.display().to_string();
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("GOPROXY", "off".into());
    set("GOSUMDB", "off".into());
    set("GONOSUMDB", "*".into());
    set("GOPRIVATE", String::new());
    set("GOENV", "off".into());
    set("GOWORK", "off".into());
    set("GOTOOLCHAIN", "local".into());
    set("GO111MODULE", "on".into());
    set("GOCACHE", format!("{work}/cache"));
    set("GOPATH", format!("{work}/gopath"));
    set("GOTMPDIR", String::new());
    set("HOME", format!("{work}/home"));
    set("GOOS", build.goos.clone());
    set("GOARCH", build.goarch.clone());
    set("CGO_ENABLED", if build.cgo { "1" } else { "0" }.into());
    let mut mounts = Vec::new();
    match modules {
        GoModules::Vendor { .. } => {
            set("GOFLAGS", "-mod=vendor".into());
            set("GOMODCACHE", format!("{work}/modcache"));
        }
        GoModules::Proxy { modules } => {
            write_module_cache(store, modules, modcache_host)?;
            set("GOFLAGS", "-mod=readonly".into());
            set("GOMODCACHE", build.modcache_dst.display().to_string());
            mounts.push(sandbox::Mount::ReadOnly {
                src: modcache_host.to_path_buf(),
                dst: build.modcache_dst.clone(),
            });
        }
    }
    let mut ldflags = vec!["-buildid=".to_string()];
    ldflags.extend(build.ldflags.iter().cloned());
    let mut argv = vec![
        build.go.clone(),
        "build".into(),
        "-trimpath".into(),
        "-buildvcs=false".into(),
        format!("-ldflags={}", ldflags.join(" ")),
    ];
    if !build.tags.is_empty() {
        argv.push(format!("-tags={}", build.tags.join(",")));
    }
    argv.push("-o".into());
    argv.push(build.output.clone());
    argv.extend(build.packages.iter().cloned());
    Ok(GoBuildPlan { mounts, env, argv })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_go() {
        assert_eq!(
            escape_path("github.com/BurntSushi/toml"),
            "github.com/!burnt!sushi/toml"
        );
        assert_eq!(escape_path("v1.0.0-RC1"), "v1.0.0-!r!c1");
    }

    #[test]
    fn go_mod_hash_is_hash1_of_one_file() {
        // By the definition: one line `<sha256 hex>  go.mod\n`, hashed, base64.
        let data = b"module example.com/m\n";
        let line = format!("{}  go.mod\n", hex::encode(Sha256::digest(data)));
        let want = format!(
            "h1:{}",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(line.as_bytes()))
        );
        assert_eq!(h1_go_mod(data), want);
        assert!(h1_hex(&want).is_some());
        assert!(h1_hex("h1:abc").is_none());
    }

    #[test]
    fn hash1_sorts_and_refuses_newlines() {
        let a = hash1([("b", [1; 32]), ("a", [2; 32])]).unwrap();
        let b = hash1([("a", [2; 32]), ("b", [1; 32])]).unwrap();
        assert_eq!(a, b);
        assert!(hash1([("a\nb", [0; 32])]).is_err());
    }

    #[test]
    fn go_mod_requirements_and_replacements() {
        let text = "// c\nmodule \"example.com/m\"\n\ngo 1.22\n\nrequire example.com/a v1.0.0\nrequire (\n\texample.com/b v0.1.0 // indirect\n\texample.com/local v0.0.0\n)\n\nreplace example.com/b v0.1.0 => example.com/b2 v0.2.0\nreplace (\n\texample.com/local => ./local\n)\n";
        let go_mod = parse_go_mod_text(Path::new("go.mod"), text).unwrap();
        assert_eq!(go_mod.module, "example.com/m");
        assert_eq!(go_mod.require.len(), 3);
        let sum = "example.com/a v1.0.0 h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\
                   example.com/b2 v0.2.0/go.mod h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";
        let modules = parse_go_sum_text(Path::new("go.sum"), sum).unwrap();
        // b is replaced by b2 (in go.sum), local by a directory (needs nothing).
        check_required(&go_mod, &modules, "go.sum".into()).unwrap();
        let without_b2 = &modules[..1];
        let err = check_required(&go_mod, without_b2, "go.sum".into()).unwrap_err();
        assert!(err.to_string().contains("`example.com/b2 v0.2.0`"), "{err}");
        // The lock's list round-trips through its hash.
        let lines = go_sum_lines(&modules);
        assert_eq!(
            lines.join("\n") + "\n",
            sum.replace("                   ", "")
        );
        assert_ne!(modules_sha256(false, &lines), modules_sha256(true, &lines));
    }

    #[test]
    fn module_files_are_read_from_a_tarball_or_zip_below_its_top_directory() {
        let go_mod = "module example.com/x\n\nrequire example.com/a v1.0.0\n";
        let go_sum = "example.com/a v1.0.0 h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";
        let files = [
            ("r-1/README", "hi\n"),
            ("r-1/cmd/x/go.mod", go_mod),
            ("r-1/cmd/x/go.sum", go_sum),
            ("r-1/cmd/x/main.go", "package main\n"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("src.tar.gz");
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            fs_err::File::create(&tgz).unwrap(),
            flate2::Compression::default(),
        ));
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            b.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        let zip_path = dir.path().join("src.zip");
        let mut z = zip::ZipWriter::new(fs_err::File::create(&zip_path).unwrap());
        for (name, body) in files {
            z.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            io::Write::write_all(&mut z, body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
        for archive in [&tgz, &zip_path] {
            let GoModules::Proxy { modules } = go_modules_of_archive(archive, "./cmd/x/").unwrap()
            else {
                panic!("not proxied");
            };
            assert_eq!(modules.len(), 1);
            assert_eq!(modules[0].path, "example.com/a");
            let err = go_modules_of_archive(archive, "").unwrap_err().to_string();
            assert!(err.contains("no go.mod at `.`"), "{err}");
        }
    }

    #[test]
    fn gc_keeps_the_entries_of_locked_module_lists_only() {
        let sum = "example.com/a v1.0.0 h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\
                   example.com/a v1.0.0/go.mod h1:PhqNz3tvweEBw1YLSdhkVt4pg8EINTBo/gTP6fXpeSQ=\n";
        let modules = parse_go_sum_text(Path::new("go.sum"), sum).unwrap();
        let pin = SourcePin::GoModules {
            name: "m".into(),
            source: "src".into(),
            dir: String::new(),
            proxy: Vec::new(),
            source_hash: None,
            vendored: false,
            modules: Vec::new(),
            modules_sha256: None,
        };
        let locked = locked_pin(&pin, "ab", &GoModules::Proxy { modules });
        let mut lock = crate::lockfile::Lockfile::default();
        for pin in [pin, locked] {
            lock.upstream.push(crate::lockfile::PinnedUpstream {
                pin,
                recipes: vec!["r".into()],
            });
        }
        let entries = locked_module_entries(&lock);
        let want: BTreeSet<String> = [
            zip_key("h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=").unwrap(),
            mod_key("h1:PhqNz3tvweEBw1YLSdhkVt4pg8EINTBo/gTP6fXpeSQ=").unwrap(),
        ]
        .into();
        assert_eq!(entries, want);
    }

    #[test]
    fn module_names_that_are_not_file_names_are_refused() {
        for (m, v) in [
            ("../x", "v1.0.0"),
            ("a//b", "v1.0.0"),
            ("a/b", "../v1"),
            ("a b", "v1"),
            ("a/b", "1.0.0"),
        ] {
            assert!(check_module(Path::new("go.sum"), m, v).is_err(), "{m} {v}");
        }
        check_module(
            Path::new("go.sum"),
            "github.com/Foo/bar.v2",
            "v2.0.0+incompatible",
        )
        .unwrap();
    }
}
