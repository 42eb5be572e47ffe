//! Assembling a Debian tree from pinned .debs, the way a Debian system is installed.
//!
//! 1. Every package's `data.tar` is extracted by our own reader ([`crate::deb`]) into an
//!    empty tree, after the merged-/usr symlinks (`bin`, `sbin`, `lib`, `lib64` → `usr/…`)
//!    are made. This only makes the tree able to run `dpkg`; every file is unpacked again in
//!    step 2, by dpkg, with the owners the packages say.
//! 2. In the sandbox, with the tree as a writable `/` and subordinate ids (dpkg chowns files to
//!    system users), `dpkg --install` runs twice: first the Essential and Priority-required
//!    packages, then all the others, so maintainer scripts run as on a real system. No
//!    network; `policy-rc.d` refuses to start services. `dpkg --audit` must then be clean.
//!
//! The packages are passed in an order that puts each package's Pre-Depends and Depends
//! first where the relations allow (a cycle is broken by name order), so the order, and with
//! it every maintainer script's view of the tree, is a function of the pins alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::deb::{DebError, DebFile, ExtractOptions, Ownership, Pin};
use crate::store::Store;

use super::BuildError;
use super::plan::DebPin;

/// Where the .debs are visible inside the sandbox during installation.
pub const DEBS_DIR: &str = "/.hermetic-debs";

/// A .deb with the control fields installation order needs.
#[derive(Debug, Clone)]
pub struct DebInfo {
    pub path: PathBuf,
    /// The pin the file must match (checked at use: size when opened, SHA-256 when extracted).
    pub pin: Option<DebPin>,
    pub package: String,
    pub essential: bool,
    /// Package names this one Pre-Depends or Depends on (any alternative).
    pub needs: BTreeSet<String>,
    /// Package names this one Pre-Depends on (any alternative).
    pub pre_depends: BTreeSet<String>,
    /// Names this package provides, besides its own.
    pub provides: BTreeSet<String>,
}

/// Opens the .deb of a pin in the store, checking its size.
fn open_pinned(store: &Store, path: &Path, pin: Option<&DebPin>) -> Result<DebFile, BuildError> {
    let opened = match pin {
        Some(p) => DebFile::open_pinned(
            path,
            Pin {
                sha256: p.sha256.clone(),
                size: p.size,
            },
        ),
        None => DebFile::open(path),
    };
    opened.map_err(|e| deb_error(store, path, pin, e))
}

/// A .deb error; a stored file found not to be its pin is removed from the store, and the
/// error names it and the package.
fn deb_error(store: &Store, path: &Path, pin: Option<&DebPin>, source: DebError) -> BuildError {
    match (source, pin) {
        (DebError::NotPinned { problem, .. }, Some(p)) => store
            .reject_blob(
                &p.sha256,
                &format!("package {}_{}", p.name, p.version),
                problem,
            )
            .into(),
        (source, _) => BuildError::Deb {
            path: path.to_path_buf(),
            source: Box::new(source),
        },
    }
}

/// Reads the control fields of each pinned .deb in the store.
pub fn read_debs(store: &Store, pins: &[DebPin]) -> Result<Vec<DebInfo>, BuildError> {
    let mut out = Vec::with_capacity(pins.len());
    for pin in pins {
        let path = &store.blob_path(&pin.sha256);
        let deb = open_pinned(store, path, Some(pin))?;
        // A control.tar that cannot be read may be a changed file of the pinned size.
        let control = deb
            .control()
            .map_err(|e| match deb.check_pin() {
                Err(not_pinned @ DebError::NotPinned { .. }) => not_pinned,
                _ => e,
            })
            .map_err(|e| deb_error(store, path, Some(pin), e))?;
        let package = control.package().unwrap_or_default().to_string();
        let essential =
            control.get("Essential") == Some("yes") || control.get("Priority") == Some("required");
        // Every alternative of every relation: the order only needs to know what may be needed.
        let names = |field: &str| -> Result<BTreeSet<String>, BuildError> {
            let Some(v) = control.get(field) else {
                return Ok(BTreeSet::new());
            };
            let relations =
                crate::debian::relation::parse_relations(v).map_err(|e| BuildError::Control {
                    path: path.clone(),
                    message: format!("{field}: {e}"),
                })?;
            Ok(relations.into_iter().flatten().map(|r| r.name).collect())
        };
        let pre_depends = names("Pre-Depends")?;
        let mut needs = names("Depends")?;
        needs.extend(pre_depends.iter().cloned());
        out.push(DebInfo {
            path: path.clone(),
            pin: Some(pin.clone()),
            package,
            essential,
            needs,
            pre_depends,
            provides: names("Provides")?,
        });
    }
    out.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(out)
}

/// Orders packages so that what a package needs comes before it, where possible: a
/// depth-first walk in name order; a dependency cycle is broken where the walk meets it.
pub fn install_order(debs: &[DebInfo]) -> Vec<usize> {
    let by_name = names_to_index(debs);
    let mut state = vec![0u8; debs.len()]; // 0 new, 1 on the path, 2 done
    let mut order = Vec::with_capacity(debs.len());
    fn visit(
        i: usize,
        debs: &[DebInfo],
        by_name: &BTreeMap<&str, usize>,
        state: &mut [u8],
        order: &mut Vec<usize>,
    ) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        for need in &debs[i].needs {
            if let Some(&j) = by_name.get(need.as_str()) {
                visit(j, debs, by_name, state, order);
            }
        }
        state[i] = 2;
        order.push(i);
    }
    for i in 0..debs.len() {
        visit(i, debs, &by_name, &mut state, &mut order);
    }
    order
}

/// Package names (and names they provide) to their index; a real package wins over a
/// provider, and of several providers the first by name.
fn names_to_index(debs: &[DebInfo]) -> BTreeMap<&str, usize> {
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, d) in debs.iter().enumerate() {
        for p in &d.provides {
            by_name.entry(p.as_str()).or_insert(i);
        }
    }
    for (i, d) in debs.iter().enumerate() {
        by_name.insert(d.package.as_str(), i);
    }
    by_name
}

/// Splits the packages into the rounds of `dpkg --install` calls: first the Essential and
/// required packages with everything they need (installed with `--force-depends`, as they
/// depend on each other in cycles), then rounds in which every package's Pre-Depends were
/// configured by an earlier round. Each round lists packages in [`install_order`].
pub fn install_rounds(debs: &[DebInfo]) -> Vec<(bool, Vec<usize>)> {
    let by_name = names_to_index(debs);
    let order = install_order(debs);
    // The closure of the essential packages.
    let mut first = vec![false; debs.len()];
    let mut stack: Vec<usize> = (0..debs.len()).filter(|&i| debs[i].essential).collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut first[i], true) {
            continue;
        }
        for need in &debs[i].needs {
            if let Some(&j) = by_name.get(need.as_str())
                && !first[j]
            {
                stack.push(j);
            }
        }
    }
    let mut done = first.clone();
    let mut rounds = vec![(
        true,
        order
            .iter()
            .copied()
            .filter(|&i| first[i])
            .collect::<Vec<_>>(),
    )];
    loop {
        let remaining: Vec<usize> = order.iter().copied().filter(|&i| !done[i]).collect();
        if remaining.is_empty() {
            break;
        }
        // The largest set whose Pre-Depends are configured already and whose Depends are
        // configured or in the same set.
        let mut in_round: Vec<bool> = (0..debs.len())
            .map(|i| {
                !done[i]
                    && debs[i]
                        .pre_depends
                        .iter()
                        .all(|p| match by_name.get(p.as_str()) {
                            Some(&j) => done[j] || j == i,
                            None => true,
                        })
            })
            .collect();
        loop {
            let mut changed = false;
            for &i in &remaining {
                if in_round[i]
                    && !debs[i].needs.iter().all(|p| match by_name.get(p.as_str()) {
                        Some(&j) => done[j] || in_round[j],
                        None => true,
                    })
                {
                    in_round[i] = false;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let ready: Vec<usize> = remaining.iter().copied().filter(|&i| in_round[i]).collect();
        // A Pre-Depends cycle among the rest: install them all in one last round (with
        // `--force-depends`, see `install_script`).
        let (forced, round) = if ready.is_empty() {
            (true, remaining)
        } else {
            (false, ready)
        };
        for &i in &round {
            done[i] = true;
        }
        rounds.push((forced, round));
    }
    rounds.retain(|(_, r)| !r.is_empty());
    rounds
}

/// Step 1: the merged-/usr symlinks, every package's data extracted, and an empty dpkg
/// database. A package that is not its pin (checked while extracted) fails the step: the
/// caller discards `root`.
pub fn bootstrap_tree(store: &Store, root: &Path, debs: &[DebInfo]) -> Result<(), BuildError> {
    for dir in ["bin", "sbin", "lib", "lib64"] {
        let target = root.join("usr").join(dir);
        fs_err::create_dir_all(&target).map_err(BuildError::io(&target))?;
        let link = root.join(dir);
        std::os::unix::fs::symlink(format!("usr/{dir}"), &link).map_err(BuildError::io(&link))?;
    }
    let opts = ExtractOptions {
        ownership: Ownership::Never,
        ..ExtractOptions::debian_root()
    };
    for d in debs {
        let deb = open_pinned(store, &d.path, d.pin.as_ref())?;
        deb.extract_data(root, &opts)
            .map_err(|e| deb_error(store, &d.path, d.pin.as_ref(), e))?;
    }
    // The packages' data is hostile: a link they put at `var/lib/dpkg` (or below) must not
    // make the writes below land on the host.
    let dpkg = root.join("var/lib/dpkg");
    for dir in ["info", "updates", "triggers", "alternatives"] {
        real_dirs(root, &Path::new("var/lib/dpkg").join(dir))?;
    }
    for file in ["status", "available"] {
        new_file(&dpkg.join(file), b"")?;
    }
    let arch = dpkg.join("arch");
    new_file(&arch, b"amd64\n")?;
    // What this function made must not depend on the caller's umask.
    use std::os::unix::fs::PermissionsExt as _;
    let mut made = vec![root.to_path_buf(), arch];
    for dir in ["info", "updates", "triggers", "alternatives"] {
        made.push(dpkg.join(dir));
    }
    for file in ["status", "available"] {
        made.push(dpkg.join(file));
    }
    for p in made {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        fs_err::set_permissions(&p, std::fs::Permissions::from_mode(mode))
            .map_err(BuildError::io(&p))?;
    }
    Ok(())
}

/// Makes `rel` and its parents below `root` real directories: a component that exists as
/// anything else (a link a package made) is an error, never followed.
fn real_dirs(root: &Path, rel: &Path) -> Result<(), BuildError> {
    let mut path = root.to_path_buf();
    for c in rel.components() {
        path.push(c);
        match fs_err::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(BuildError::Io {
                    source: std::io::Error::other(
                        "a package made this a link or a file where dpkg's database directory belongs; hermetic does not write through it",
                    ),
                    path,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs_err::create_dir(&path).map_err(BuildError::io(&path))?;
            }
            Err(e) => return Err(BuildError::io(&path)(e)),
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` as a new file, replacing whatever a package put there (a link is
/// removed, not followed).
fn new_file(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    use std::io::Write as _;
    match fs_err::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(BuildError::io(path)(e)),
        _ => {}
    }
    let mut f = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(BuildError::io(path))?;
    f.write_all(bytes).map_err(BuildError::io(path))
}

/// Step 2's script: run by `/bin/sh` inside the sandbox.
pub fn install_script(debs: &[DebInfo]) -> String {
    let name = |d: &DebInfo| {
        format!(
            "{DEBS_DIR}/{}",
            d.path.file_name().unwrap_or_default().to_string_lossy()
        )
    };
    let mut s = String::from(
        "set -eu\n\
         # Services are never started while the image is built.\n\
         printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d\n\
         chmod 0755 /usr/sbin/policy-rc.d\n",
    );
    for (n, (forced, round)) in install_rounds(debs).iter().enumerate() {
        if n == 0 {
            s.push_str("echo '==> dpkg: the Essential and required packages and what they need'\n");
        } else {
            s.push_str(&format!("echo '==> dpkg: round {n}'\n"));
        }
        // The first round's packages depend on each other in cycles; a later round is forced
        // only when a Pre-Depends cycle left no clean way to form it.
        let force = if *forced { "--force-depends " } else { "" };
        s.push_str(&format!("dpkg {force}--install \\\n"));
        for &i in round {
            s.push_str(&format!("  {} \\\n", name(&debs[i])));
        }
        s.push_str("  </dev/null\n");
    }
    s.push_str(
        "dpkg --configure --pending </dev/null\n\
         problems=$(dpkg --audit)\n\
         if [ -n \"$problems\" ]; then echo \"$problems\" >&2; echo 'dpkg --audit found problems' >&2; exit 1; fi\n\
         rm -f /usr/sbin/policy-rc.d\n\
         echo '==> dpkg: done'\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, essential: bool, needs: &[&str]) -> DebInfo {
        DebInfo {
            path: PathBuf::from(format!("/x/{name}.deb")),
            pin: None,
            package: name.into(),
            essential,
            needs: needs.iter().map(|s| s.to_string()).collect(),
            pre_depends: BTreeSet::new(),
            provides: BTreeSet::new(),
        }
    }

    #[test]
    fn rounds_put_the_essential_closure_first_and_respect_pre_depends() {
        let mut debs = vec![
            info("coreutils", true, &["libc6"]),
            info("e2fsprogs", false, &["libblkid1"]),
            info("libblkid1", false, &["libc6"]),
            info("libc6", false, &[]),
            info("tool", false, &["e2fsprogs"]),
        ];
        debs[1].pre_depends.insert("libblkid1".into());
        let rounds: Vec<Vec<&str>> = install_rounds(&debs)
            .into_iter()
            .map(|(_, r)| r.into_iter().map(|i| debs[i].package.as_str()).collect())
            .collect();
        assert_eq!(
            rounds,
            vec![
                vec!["libc6", "coreutils"],
                vec!["libblkid1"],
                vec!["e2fsprogs", "tool"]
            ]
        );
    }

    #[test]
    fn dependencies_come_first_and_cycles_terminate() {
        let debs = vec![
            info("a", false, &["c"]),
            info("b", false, &["a", "missing"]),
            info("c", false, &["d"]),
            info("d", false, &["c"]),
        ];
        let order: Vec<&str> = install_order(&debs)
            .into_iter()
            .map(|i| debs[i].package.as_str())
            .collect();
        assert_eq!(order, ["d", "c", "a", "b"]);
    }

    #[test]
    fn a_package_link_at_the_dpkg_database_is_not_written_through() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(root.path().join("var/lib")).unwrap();
        std::os::unix::fs::symlink(host.path(), root.path().join("var/lib/dpkg")).unwrap();
        let e = real_dirs(root.path(), Path::new("var/lib/dpkg/info")).unwrap_err();
        assert!(e.to_string().contains("var/lib/dpkg"), "{e}");
        assert_eq!(fs_err::read_dir(host.path()).unwrap().count(), 0);
        // A link at a file is replaced, its target untouched.
        let victim = host.path().join("victim");
        fs_err::write(&victim, "precious").unwrap();
        let status = root.path().join("status");
        std::os::unix::fs::symlink(&victim, &status).unwrap();
        new_file(&status, b"").unwrap();
        assert_eq!(fs_err::read_to_string(&victim).unwrap(), "precious");
        assert!(fs_err::symlink_metadata(&status).unwrap().is_file());
    }

    #[test]
    fn script_installs_essential_first() {
        let debs = vec![info("libc6", true, &[]), info("systemd", false, &["libc6"])];
        let s = install_script(&debs);
        let e = s.find("/libc6.deb").unwrap();
        let o = s.find("/systemd.deb").unwrap();
        assert!(e < o, "{s}");
        assert!(s.contains("dpkg --audit"));
    }
}
