//! tar archives, plain or gzip compressed (GCP's `-import.tar.gz` holds a sparse
//! `disk.raw`): entries by path, with their metadata, and the contents of the files that
//! differ compared as whatever they are.
//!
//! The entries' contents are copied to scratch files (keeping holes, so a sparse disk stays
//! small on the host) so that a large one can be read on demand like any file.

use std::collections::BTreeMap;
use std::io::{Read, Seek as _, SeekFrom, Write as _};
use std::path::PathBuf;

use super::{Blob, Collector, DiffError, Difference, Kind, Src, Structure, join};

/// One archive member; a file's content sits in a scratch file.
struct TarEntry {
    kind: String,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
    link: Option<String>,
    scratch: Option<PathBuf>,
}

fn describe(e: &TarEntry) -> String {
    format!(
        "{}, mode {:o}, {}:{}, {} bytes",
        e.kind, e.mode, e.uid, e.gid, e.size
    )
}

/// Reads every entry of the archive behind `r`; file contents go to files in `dir`.
fn read_entries(
    r: impl Read,
    name: &str,
    dir: &std::path::Path,
    side: &str,
) -> Result<Result<BTreeMap<String, TarEntry>, String>, DiffError> {
    let scratch_err = |source| DiffError::Scratch {
        name: name.to_string(),
        source,
    };
    let mut archive = tar::Archive::new(r);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut out = BTreeMap::new();
    for (i, entry) in entries.enumerate() {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let path = match entry.path() {
            Ok(p) => p.to_string_lossy().trim_start_matches("./").to_string(),
            Err(e) => return Ok(Err(e.to_string())),
        };
        let header = entry.header();
        let kind = entry.header().entry_type();
        let mut e = TarEntry {
            kind: format!("{kind:?}").to_lowercase(),
            mode: header.mode().unwrap_or(0),
            uid: header.uid().unwrap_or(0),
            gid: header.gid().unwrap_or(0),
            mtime: header.mtime().unwrap_or(0),
            size: entry.size(),
            link: entry
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned()),
            scratch: None,
        };
        if kind.is_file() || kind.is_gnu_sparse() || kind == tar::EntryType::Continuous {
            let path_out = dir.join(format!("{side}{i}"));
            let mut file = fs_err::File::create(&path_out).map_err(scratch_err)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = match entry.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) => return Ok(Err(format!("{path}: {err}"))),
                };
                if crate::image::sink::is_zero(&buf[..n]) {
                    file.seek(SeekFrom::Current(n as i64))
                        .map_err(scratch_err)?;
                } else {
                    file.write_all(&buf[..n]).map_err(scratch_err)?;
                }
                total += n as u64;
            }
            file.set_len(total).map_err(scratch_err)?;
            e.size = total;
            e.scratch = Some(path_out);
        }
        let mut key = path.clone();
        let mut n = 1;
        while out.contains_key(&key) {
            n += 1;
            key = format!("{path}#{n}");
        }
        out.insert(key, e);
    }
    Ok(Ok(out))
}

pub(crate) fn diff(
    a: &Src,
    b: &Src,
    gzip: bool,
    loc: &str,
    c: &mut Collector,
) -> Result<Structure, DiffError> {
    let dir = tempfile::tempdir().map_err(|source| DiffError::Scratch {
        name: a.name().to_string(),
        source,
    })?;
    let read = |src: &Src, side: &str| {
        if gzip {
            read_entries(
                flate2::read::MultiGzDecoder::new(src.reader()),
                src.name(),
                dir.path(),
                side,
            )
        } else {
            read_entries(src.reader(), src.name(), dir.path(), side)
        }
    };
    let ea = match read(a, "a")? {
        Ok(e) => e,
        Err(why) => return Ok(Structure::Unreadable(why)),
    };
    let eb = match read(b, "b")? {
        Ok(e) => e,
        Err(why) => return Ok(Structure::Unreadable(why)),
    };
    let loc = join(loc, "tar");
    let mut names: Vec<&String> = ea.keys().chain(eb.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let eloc = join(&loc, name);
        let (x, y) = match (ea.get(name), eb.get(name)) {
            (Some(x), Some(y)) => (x, y),
            (Some(x), None) => {
                c.push(Difference::only(&eloc, Kind::Removed, describe(x)));
                continue;
            }
            (None, Some(y)) => {
                c.push(Difference::only(&eloc, Kind::Added, describe(y)));
                continue;
            }
            (None, None) => continue,
        };
        let mut d = Difference::changed(&eloc);
        d.field("type", &x.kind, &y.kind);
        d.field("mode", format!("{:o}", x.mode), format!("{:o}", y.mode));
        d.field("uid", x.uid, y.uid);
        d.field("gid", x.gid, y.gid);
        d.field("mtime", x.mtime, y.mtime);
        d.field("size", x.size, y.size);
        d.field(
            "link",
            x.link.as_deref().unwrap_or("-"),
            y.link.as_deref().unwrap_or("-"),
        );
        let contents = match (&x.scratch, &y.scratch) {
            (Some(p), Some(q)) => Some((p, q)),
            _ => None,
        };
        let Some((p, q)) = contents else {
            c.push(d);
            continue;
        };
        let open = |p: &PathBuf| {
            fs_err::File::open(p)
                .map(|f| Blob::file(name, f.into_parts().0))
                .map_err(|source| DiffError::Scratch {
                    name: name.to_string(),
                    source,
                })
        };
        let (bx, by) = (open(p)?, open(q)?);
        let s = super::byte_summary(&bx.whole(), &by.whole())?;
        d.content_offset = s.first;
        c.push(d);
        if s.first.is_some() {
            let base = name.rsplit('/').next().unwrap_or(name);
            super::diff_nested(&bx.whole(), &by.whole(), base, &eloc, c, s)?;
        }
    }
    Ok(Structure::Parsed)
}
