//! Canonical encoding of step inputs and the step key.
//!
//! A step's key ([`StepKey`], also called [`DerivationKey`]) is the SHA-256 (lowercase hex) of
//! the canonical encoding of everything that goes into the step ([`StepInputs`]). Same key,
//! same output: a stored output is reused; any change to an input gives another key.
//!
//! # The encoding (version [`ENCODING_VERSION`])
//!
//! A length-prefixed binary encoding, chosen over canonical JSON because it needs no
//! escaping rules, carries arbitrary bytes (file names, contents) as they are, and cannot
//! be ambiguous:
//!
//! - `bytes`/`str`: the length as 8 bytes big-endian, then the bytes;
//! - `u64`: 8 bytes big-endian; `bool`: one byte 0 or 1; `Option`: `bool` then the value;
//! - `list`: the count as `u64`, then the items in their (meaningful) order;
//! - `map`: the count as `u64`, then key and value pairs sorted by key bytes (maps are
//!   `BTreeMap`s, so the order in which they were filled does not matter);
//! - `record`: each field as its name (`str`) followed by its value, in a fixed order.
//!
//! The whole starts with the magic `hermetic-step-inputs\0`, [`ENCODING_VERSION`] and
//! [`STEP_SEMANTICS_VERSION`] (each `u64`), then the record of [`StepInputs`]:
//! `kind`, `name`, `pins` (map), `overlays` (list of `name` + tree), `scripts` (list of
//! `name` + `content`), `environment` (map), `dependencies` (map of role to `key` +
//! optional `output`), `settings` (map).
//!
//! A tree ([`TreeManifest`]) is a list of entries sorted by path bytes, each a record of
//! `path`, `type`, `mode`, then by type `sha256` + `size` (files), `target` (symlinks),
//! `major` + `minor` (devices), then `uid` + `gid` and `mtime` if the manifest was asked to
//! include them (each as an `Option`).
//!
//! Bump [`STEP_SEMANTICS_VERSION`] whenever what a step does with the same inputs changes
//! (the sandbox, the clean-up list, the tar writer, ...): every key changes with it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::treetar::{EntryType, TreeTarError, manifest_dir};

/// The version of what hermetic does with a step's inputs. Part of every key.
pub const STEP_SEMANTICS_VERSION: u64 = 3;

/// The version of the encoding described in the module documentation.
pub const ENCODING_VERSION: u64 = 1;

const MAGIC: &[u8] = b"hermetic-step-inputs\0";

/// Errors computing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot hash the tree {root}")]
    Tree {
        root: std::path::PathBuf,
        #[source]
        source: TreeTarError,
    },
    #[error("`{value}` is not a step key (64 lowercase hex digits)")]
    BadKey { value: String },
}

/// The key a step's output is stored under: SHA-256 of its inputs' encoding, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StepKey(String);

/// The Nix name for the same thing.
pub type DerivationKey = StepKey;

impl StepKey {
    /// Parses a key written as 64 lowercase hex digits.
    pub fn from_hex(value: &str) -> Result<StepKey, KeyError> {
        if value.len() == 64
            && value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(StepKey(value.to_string()))
        } else {
            Err(KeyError::BadKey {
                value: value.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StepKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One entry of a [`TreeManifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeEntry {
    /// Relative to the tree's root, bytes as on disk (`""` is the root).
    #[serde(serialize_with = "lossy")]
    pub path: Vec<u8>,
    #[serde(serialize_with = "entry_type")]
    pub kind: EntryType,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Files: SHA-256 of the content (hex) and size.
    pub sha256: Option<String>,
    pub size: Option<u64>,
    /// Symlinks: the target, bytes as on disk.
    #[serde(serialize_with = "lossy_opt")]
    pub target: Option<Vec<u8>>,
    /// Devices: major and minor.
    pub device: Option<(u64, u64)>,
    /// Only when [`TreeHashOptions::owners`].
    pub owner: Option<(u64, u64)>,
    /// Only when [`TreeHashOptions::mtimes`].
    pub mtime: Option<i64>,
}

fn lossy<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(v))
}
fn lossy_opt<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_some(&String::from_utf8_lossy(v)),
        None => s.serialize_none(),
    }
}
fn entry_type<S: serde::Serializer>(v: &EntryType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

/// A directory tree as it enters a key: entries sorted by path bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TreeManifest {
    pub entries: Vec<TreeEntry>,
}

/// What [`tree_manifest`] records besides paths, types, modes, contents, symlink targets and
/// devices.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeHashOptions {
    pub owners: bool,
    pub mtimes: bool,
}

/// Reads the tree at `root` (never following symlinks). The order does not depend on the
/// order the directory entries were created or read in.
pub fn tree_manifest(root: &Path, opts: TreeHashOptions) -> Result<TreeManifest, KeyError> {
    let m = manifest_dir(root).map_err(|source| KeyError::Tree {
        root: root.to_path_buf(),
        source,
    })?;
    let entries = m
        .into_iter()
        .map(|(path, e)| TreeEntry {
            path,
            kind: e.kind,
            mode: e.mode,
            sha256: e.sha256.map(hex::encode),
            size: (e.kind == EntryType::File).then_some(e.size),
            target: e.target,
            device: e.device,
            owner: opts.owners.then_some((e.uid, e.gid)),
            mtime: opts.mtimes.then_some(e.mtime),
        })
        .collect();
    Ok(TreeManifest { entries })
}

/// The SHA-256 (hex) of a tree's canonical encoding: see the module documentation.
pub fn hash_tree(root: &Path, opts: TreeHashOptions) -> Result<String, KeyError> {
    let m = tree_manifest(root, opts)?;
    let mut enc = Encoder::default();
    enc.bytes(b"hermetic-tree\0");
    enc.u64(ENCODING_VERSION);
    enc.tree(&m);
    Ok(hex::encode(Sha256::digest(&enc.out)))
}

/// An overlay directory as a step input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverlayInput {
    pub name: String,
    pub tree: TreeManifest,
}

/// A script as a step input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptInput {
    pub name: String,
    #[serde(serialize_with = "lossy")]
    pub content: Vec<u8>,
}

/// A step this one depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependencyInput {
    pub key: StepKey,
    /// The SHA-256 of its output, when known (content addressing: two keys with the same
    /// output then give the same key downstream).
    pub output: Option<String>,
}

/// Everything that goes into a step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StepInputs {
    /// What the step does: `bootstrap`, `install`, `overlay`, `script`, `output`, ...
    pub kind: String,
    /// The step's name in its image.
    pub name: String,
    /// Pinned files, by an identifier the caller chooses (`deb:systemd_257.9-1_amd64`,
    /// `tarball:linux-6.12.tar.xz`), to their SHA-256.
    pub pins: BTreeMap<String, String>,
    /// Overlays in the order they are laid.
    pub overlays: Vec<OverlayInput>,
    /// Scripts in the order they run.
    pub scripts: Vec<ScriptInput>,
    pub environment: BTreeMap<String, String>,
    /// Steps this one builds on, by role (`base`, `tools`, ...).
    pub dependencies: BTreeMap<String, DependencyInput>,
    /// Any other setting that changes the output (`format`, `source-date-epoch`,
    /// `architecture`, ...).
    pub settings: BTreeMap<String, String>,
}

impl StepInputs {
    /// The canonical encoding (see the module documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.out.extend_from_slice(MAGIC);
        e.u64(ENCODING_VERSION);
        e.u64(STEP_SEMANTICS_VERSION);
        e.field("kind");
        e.str(&self.kind);
        e.field("name");
        e.str(&self.name);
        e.field("pins");
        e.map(&self.pins, |e, v| e.str(v));
        e.field("overlays");
        e.list(&self.overlays, |e, o| {
            e.field("name");
            e.str(&o.name);
            e.field("tree");
            e.tree(&o.tree);
        });
        e.field("scripts");
        e.list(&self.scripts, |e, s| {
            e.field("name");
            e.str(&s.name);
            e.field("content");
            e.bytes(&s.content);
        });
        e.field("environment");
        e.map(&self.environment, |e, v| e.str(v));
        e.field("dependencies");
        e.map(&self.dependencies, |e, d| {
            e.field("key");
            e.str(d.key.as_str());
            e.field("output");
            e.opt(&d.output, |e, v| e.str(v));
        });
        e.field("settings");
        e.map(&self.settings, |e, v| e.str(v));
        e.out
    }

    /// The step's key.
    pub fn key(&self) -> StepKey {
        StepKey(hex::encode(Sha256::digest(self.encode())))
    }

    /// What differs between two sets of inputs, one line per difference (`pins: deb:x
    /// changed`, `overlays[0] common: etc/hostname changed`, ...): the answer to "why does
    /// this step run again?". Empty when the keys are equal.
    pub fn explain_difference(&self, new: &StepInputs) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != new.kind {
            out.push(format!("kind: {} -> {}", self.kind, new.kind));
        }
        if self.name != new.name {
            out.push(format!("name: {} -> {}", self.name, new.name));
        }
        map_diff(&mut out, "pins", &self.pins, &new.pins);
        map_diff(&mut out, "environment", &self.environment, &new.environment);
        map_diff(&mut out, "settings", &self.settings, &new.settings);
        map_diff(
            &mut out,
            "dependencies",
            &self.dependencies,
            &new.dependencies,
        );
        let names = |v: &[ScriptInput]| v.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        if names(&self.scripts) != names(&new.scripts) {
            out.push(format!(
                "scripts: [{}] -> [{}]",
                names(&self.scripts).join(", "),
                names(&new.scripts).join(", ")
            ));
        } else {
            for (a, b) in self.scripts.iter().zip(&new.scripts) {
                if a.content != b.content {
                    out.push(format!("scripts: {} changed", a.name));
                }
            }
        }
        let names = |v: &[OverlayInput]| v.iter().map(|o| o.name.clone()).collect::<Vec<_>>();
        if names(&self.overlays) != names(&new.overlays) {
            out.push(format!(
                "overlays: [{}] -> [{}]",
                names(&self.overlays).join(", "),
                names(&new.overlays).join(", ")
            ));
        } else {
            for (i, (a, b)) in self.overlays.iter().zip(&new.overlays).enumerate() {
                let index = |t: &TreeManifest| {
                    t.entries
                        .iter()
                        .map(|e| (e.path.clone(), e.clone()))
                        .collect::<BTreeMap<_, _>>()
                };
                let (x, y) = (index(&a.tree), index(&b.tree));
                for p in x
                    .keys()
                    .chain(y.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    let what = match (x.get(p), y.get(p)) {
                        (Some(_), None) => "removed",
                        (None, Some(_)) => "added",
                        (Some(e), Some(f)) if e != f => "changed",
                        _ => continue,
                    };
                    out.push(format!(
                        "overlays[{i}] {}: {} {what}",
                        a.name,
                        String::from_utf8_lossy(p)
                    ));
                }
            }
        }
        out
    }
}

fn map_diff<V: PartialEq>(
    out: &mut Vec<String>,
    what: &str,
    a: &BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
) {
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (a.get(k), b.get(k)) {
            (Some(_), None) => out.push(format!("{what}: {k} removed")),
            (None, Some(_)) => out.push(format!("{what}: {k} added")),
            (Some(x), Some(y)) if x != y => out.push(format!("{what}: {k} changed")),
            _ => {}
        }
    }
}

/// Writes the encoding of the module documentation.
#[derive(Default)]
struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.out.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn field(&mut self, name: &str) {
        self.str(name);
    }
    fn bool(&mut self, b: bool) {
        self.out.push(u8::from(b));
    }
    fn opt<T>(&mut self, v: &Option<T>, f: impl FnOnce(&mut Self, &T)) {
        self.bool(v.is_some());
        if let Some(v) = v {
            f(self, v);
        }
    }
    fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.u64(items.len() as u64);
        for i in items {
            f(self, i);
        }
    }
    fn map<V>(&mut self, m: &BTreeMap<String, V>, mut f: impl FnMut(&mut Self, &V)) {
        self.u64(m.len() as u64);
        for (k, v) in m {
            self.str(k);
            f(self, v);
        }
    }
    fn tree(&mut self, t: &TreeManifest) {
        // Sorted here too, so that a manifest built by hand encodes the same.
        let mut entries: Vec<&TreeEntry> = t.entries.iter().collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        self.u64(entries.len() as u64);
        for e in entries {
            self.field("path");
            self.bytes(&e.path);
            self.field("type");
            self.str(e.kind.as_str());
            self.field("mode");
            self.u64(u64::from(e.mode));
            match e.kind {
                EntryType::File => {
                    self.field("sha256");
                    self.str(e.sha256.as_deref().unwrap_or(""));
                    self.field("size");
                    self.u64(e.size.unwrap_or(0));
                }
                EntryType::Symlink => {
                    self.field("target");
                    self.bytes(e.target.as_deref().unwrap_or(b""));
                }
                EntryType::CharDevice | EntryType::BlockDevice => {
                    let (major, minor) = e.device.unwrap_or((0, 0));
                    self.field("major");
                    self.u64(major);
                    self.field("minor");
                    self.u64(minor);
                }
                _ => {}
            }
            self.field("owner");
            self.opt(&e.owner, |s, (u, g)| {
                s.u64(*u);
                s.u64(*g);
            });
            self.field("mtime");
            self.opt(&e.mtime, |s, m| s.u64(*m as u64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sample() -> StepInputs {
        let mut s = StepInputs {
            kind: "script".into(),
            name: "kernel".into(),
            ..Default::default()
        };
        s.pins
            .insert("deb:gcc-14_14.2.0-19_amd64".into(), "aa".repeat(32));
        s.pins
            .insert("tarball:linux-6.12.tar.xz".into(), "bb".repeat(32));
        s.overlays.push(OverlayInput {
            name: "common".into(),
            tree: TreeManifest {
                entries: vec![
                    TreeEntry {
                        path: b"etc/hostname".to_vec(),
                        kind: EntryType::File,
                        mode: 0o644,
                        sha256: Some("cc".repeat(32)),
                        size: Some(9),
                        target: None,
                        device: None,
                        owner: None,
                        mtime: None,
                    },
                    TreeEntry {
                        path: b"bin".to_vec(),
                        kind: EntryType::Symlink,
                        mode: 0o777,
                        sha256: None,
                        size: None,
                        target: Some(b"usr/bin".to_vec()),
                        device: None,
                        owner: None,
                        mtime: None,
                    },
                ],
            },
        });
        s.scripts.push(ScriptInput {
            name: "build".into(),
            content: b"make -j2\n".to_vec(),
        });
        s.scripts.push(ScriptInput {
            name: "install".into(),
            content: b"make install\n".to_vec(),
        });
        s.environment
            .insert("KBUILD_BUILD_USER".into(), "hermetic".into());
        s.environment.insert("LOCALVERSION".into(), "-cloud".into());
        s.dependencies.insert(
            "tools".into(),
            DependencyInput {
                key: StepKey("11".repeat(32)),
                output: Some("22".repeat(32)),
            },
        );
        s.settings.insert("source-date-epoch".into(), "0".into());
        s
    }

    /// Every way of changing one input; each must change the key.
    type Mutation = Box<dyn Fn(&mut StepInputs)>;

    fn mutations() -> Vec<(&'static str, Mutation)> {
        vec![
            ("kind", Box::new(|s| s.kind = "install".into())),
            ("name", Box::new(|s| s.name = "kernel2".into())),
            (
                "pin hash",
                Box::new(|s| {
                    *s.pins.get_mut("tarball:linux-6.12.tar.xz").unwrap() = "bc".repeat(32)
                }),
            ),
            (
                "pin added",
                Box::new(|s| {
                    s.pins.insert("deb:make".into(), "dd".repeat(32));
                }),
            ),
            (
                "pin removed",
                Box::new(|s| {
                    s.pins.remove("deb:gcc-14_14.2.0-19_amd64");
                }),
            ),
            (
                "overlay content",
                Box::new(|s| s.overlays[0].tree.entries[0].sha256 = Some("cd".repeat(32))),
            ),
            (
                "overlay mode",
                Box::new(|s| s.overlays[0].tree.entries[0].mode = 0o600),
            ),
            (
                "overlay path",
                Box::new(|s| s.overlays[0].tree.entries[0].path = b"etc/hostnam".to_vec()),
            ),
            (
                "overlay symlink target",
                Box::new(|s| s.overlays[0].tree.entries[1].target = Some(b"usr/sbin".to_vec())),
            ),
            (
                "overlay type",
                Box::new(|s| s.overlays[0].tree.entries[1].kind = EntryType::File),
            ),
            (
                "overlay name",
                Box::new(|s| s.overlays[0].name = "other".into()),
            ),
            (
                "overlay added",
                Box::new(|s| {
                    s.overlays.push(OverlayInput {
                        name: "empty".into(),
                        tree: TreeManifest::default(),
                    })
                }),
            ),
            (
                "script content",
                Box::new(|s| s.scripts[0].content = b"make -j3\n".to_vec()),
            ),
            ("script order", Box::new(|s| s.scripts.swap(0, 1))),
            (
                "script name",
                Box::new(|s| s.scripts[1].name = "inst".into()),
            ),
            (
                "env value",
                Box::new(|s| {
                    s.environment.insert("LOCALVERSION".into(), "-gcp".into());
                }),
            ),
            (
                "env added",
                Box::new(|s| {
                    s.environment.insert("A".into(), String::new());
                }),
            ),
            (
                "dependency key",
                Box::new(|s| {
                    s.dependencies.get_mut("tools").unwrap().key = StepKey("12".repeat(32))
                }),
            ),
            (
                "dependency output",
                Box::new(|s| s.dependencies.get_mut("tools").unwrap().output = None),
            ),
            (
                "dependency role",
                Box::new(|s| {
                    let d = s.dependencies.remove("tools").unwrap();
                    s.dependencies.insert("base".into(), d);
                }),
            ),
            (
                "setting",
                Box::new(|s| {
                    s.settings.insert("source-date-epoch".into(), "1".into());
                }),
            ),
        ]
    }

    #[test]
    fn any_change_changes_the_key() {
        let base = sample().key();
        let mut seen = std::collections::BTreeSet::new();
        seen.insert(base.clone());
        for (what, mutate) in mutations() {
            let mut s = sample();
            mutate(&mut s);
            let k = s.key();
            assert_ne!(k, base, "{what} did not change the key");
            assert!(seen.insert(k), "{what} collides with another mutation");
        }
    }

    #[test]
    fn differences_are_explained() {
        let a = sample();
        assert!(a.explain_difference(&a.clone()).is_empty());
        let mut b = sample();
        b.pins.insert("deb:make".into(), "dd".repeat(32));
        b.environment.insert("LOCALVERSION".into(), "-gcp".into());
        b.scripts[1].content = b"x".to_vec();
        b.overlays[0].tree.entries[1].target = Some(b"x".to_vec());
        b.dependencies.get_mut("tools").unwrap().output = None;
        assert_eq!(
            a.explain_difference(&b),
            [
                "pins: deb:make added",
                "environment: LOCALVERSION changed",
                "dependencies: tools changed",
                "scripts: install changed",
                "overlays[0] common: bin changed",
            ]
        );
        // Every mutation that changes the key is explained.
        for (what, mutate) in mutations() {
            let mut m = sample();
            mutate(&mut m);
            assert!(!a.explain_difference(&m).is_empty(), "{what} unexplained");
        }
    }

    #[test]
    fn map_insertion_order_and_manifest_order_do_not_matter() {
        let a = sample();
        let mut b = sample();
        b.environment = a
            .environment
            .iter()
            .rev()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        b.pins = BTreeMap::new();
        for (k, v) in a.pins.iter().rev() {
            b.pins.insert(k.clone(), v.clone());
        }
        b.overlays[0].tree.entries.reverse();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), a.clone().key());
    }

    #[test]
    fn boundaries_are_unambiguous() {
        let mut a = StepInputs::default();
        let mut b = StepInputs::default();
        a.environment.insert("a".into(), "bc".into());
        b.environment.insert("ab".into(), "c".into());
        assert_ne!(a.key(), b.key());
        let mut a = StepInputs::default();
        let mut b = StepInputs::default();
        a.kind = "ab".into();
        b.kind = "a".into();
        b.name = "b".into();
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn the_encoding_is_stable() {
        // A fixed input's key. If this changes, the encoding changed: that must be deliberate,
        // with ENCODING_VERSION or STEP_SEMANTICS_VERSION bumped.
        let k = sample().key();
        assert_eq!(StepKey::from_hex(k.as_str()).unwrap(), k);
        let enc = sample().encode();
        assert!(enc.starts_with(MAGIC));
        assert_eq!(
            &enc[MAGIC.len()..MAGIC.len() + 8],
            &ENCODING_VERSION.to_be_bytes()
        );
        // The value below is for STEP_SEMANTICS_VERSION 3: a bump changes every key, this one
        // too, and the value is then updated with it.
        assert_eq!(STEP_SEMANTICS_VERSION, 3, "update the expected key below");
        assert_eq!(
            k.as_str(),
            "f71ab314196c2084dcf72014723fa3fc7c766d9429e8f712b27604f036749282",
        );
        assert!(StepKey::from_hex("ABC").is_err());
    }

    #[test]
    fn encoding_follows_the_documented_layout() {
        let mut s = StepInputs {
            kind: "k".into(),
            ..Default::default()
        };
        s.environment.insert("A".into(), "b".into());
        let be = |n: u64| n.to_be_bytes().to_vec();
        let str = |t: &str| [be(t.len() as u64), t.as_bytes().to_vec()].concat();
        let want = [
            b"hermetic-step-inputs\0".to_vec(),
            be(ENCODING_VERSION),
            be(STEP_SEMANTICS_VERSION),
            str("kind"),
            str("k"),
            str("name"),
            str(""),
            str("pins"),
            be(0),
            str("overlays"),
            be(0),
            str("scripts"),
            be(0),
            str("environment"),
            be(1),
            str("A"),
            str("b"),
            str("dependencies"),
            be(0),
            str("settings"),
            be(0),
        ]
        .concat();
        assert_eq!(s.encode(), want);
        assert_eq!(s.key().as_str(), hex::encode(Sha256::digest(&want)));
    }

    fn mk(root: &Path, order: &[usize]) {
        let files: [(&str, &[u8], u32); 4] = [
            ("b", b"2", 0o644),
            ("a", b"1", 0o755),
            ("d/x", b"x", 0o600),
            ("c", b"3", 0o644),
        ];
        fs_err::create_dir(root.join("d")).unwrap();
        for &i in order {
            let (p, data, mode) = files[i];
            fs_err::write(root.join(p), data).unwrap();
            fs_err::set_permissions(root.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        fs_err::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o755)).unwrap();
        fs_err::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn tree_hash_ignores_creation_order_and_mtimes() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        mk(one.path(), &[0, 1, 2, 3]);
        mk(two.path(), &[3, 2, 1, 0]);
        let t = filetime_now_minus(two.path().join("a").as_path());
        let opts = TreeHashOptions::default();
        let h1 = hash_tree(one.path(), opts).unwrap();
        assert_eq!(h1, hash_tree(two.path(), opts).unwrap());
        // ... unless mtimes are asked for.
        let with = TreeHashOptions {
            mtimes: true,
            owners: false,
        };
        assert_ne!(
            hash_tree(one.path(), with).unwrap(),
            hash_tree(two.path(), with).unwrap(),
            "mtime {t} not seen"
        );
        // Modes, contents, targets, types count.
        fs_err::set_permissions(two.path().join("c"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let h2 = hash_tree(two.path(), opts).unwrap();
        assert_ne!(h1, h2);
        fs_err::set_permissions(two.path().join("c"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert_eq!(h1, hash_tree(two.path(), opts).unwrap());
        fs_err::write(two.path().join("d/x"), b"y").unwrap();
        assert_ne!(h1, hash_tree(two.path(), opts).unwrap());
        fs_err::write(two.path().join("d/x"), b"x").unwrap();
        fs_err::remove_file(two.path().join("link")).unwrap();
        std::os::unix::fs::symlink("b", two.path().join("link")).unwrap();
        assert_ne!(h1, hash_tree(two.path(), opts).unwrap());
        fs_err::remove_file(two.path().join("link")).unwrap();
        fs_err::write(two.path().join("link"), b"a").unwrap();
        assert_ne!(h1, hash_tree(two.path(), opts).unwrap());
    }

    /// Sets the mtime of `path` to an hour ago; returns it.
    fn filetime_now_minus(path: &Path) -> i64 {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        let f = fs_err::File::open(path).unwrap();
        f.file()
            .set_times(std::fs::FileTimes::new().set_modified(t))
            .unwrap();
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }
}
