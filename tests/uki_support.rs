//! Real Debian trixie packages for the UKI and measurement tests: ukify, the systemd stub, a
//! cloud kernel, python3-pefile and systemd-measure (with the trixie libraries it needs).
//!
//! Everything comes from the Debian mirror of the host's apt configuration and is verified
//! down a chain of trust: `InRelease` by `gpgv` against the host's Debian archive keyring,
//! `Packages.xz` by the SHA-256 `InRelease` gives, each `.deb` by the SHA-256 of `Packages`.
//! Downloads are cached under `target/test-cache/trixie-v1/` (named by their SHA-256) and
//! reused; the extracted tree is made once per set of `.deb`s.
//!
//! Other test files include this one with `#[path = "uki_support.rs"] mod uki_support;`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

const SUITE: &str = "trixie";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

pub use hermetic::hash::sha256_hex;

/// The first non-security Debian URI of the host's apt sources (deb822 or one-line style).
pub fn parse_mirror(sources: &str) -> Option<String> {
    for line in sources.lines() {
        let line = line.trim();
        let uris = if let Some(rest) = line.strip_prefix("URIs:") {
            rest.split_whitespace().collect::<Vec<_>>()
        } else if let Some(rest) = line.strip_prefix("deb ") {
            rest.split_whitespace()
                .filter(|w| !w.starts_with('['))
                .take(1)
                .collect()
        } else {
            continue;
        };
        if let Some(u) = uris.into_iter().find(|u| !u.contains("security")) {
            return Some(u.trim_end_matches('/').to_string());
        }
    }
    None
}

pub fn mirror() -> String {
    let mut text = String::new();
    if let Ok(entries) = fs_err::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if let Ok(t) = fs_err::read_to_string(&p) {
                text.push_str(&t);
                text.push('\n');
            }
        }
    }
    if let Ok(t) = fs_err::read_to_string("/etc/apt/sources.list") {
        text.push_str(&t);
    }
    parse_mirror(&text).expect("no Debian mirror in the apt configuration")
}

pub fn cache_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-cache/trixie-v1");
    fs_err::create_dir_all(&d).unwrap();
    d
}

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .timeout_global(Some(std::time::Duration::from_secs(600)))
            .build()
            .into()
    })
}

fn download(url: &str) -> Vec<u8> {
    let resp = agent()
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("reading {url}: {e}"));
    out
}

/// Downloads `url` into the cache as `name` unless it is there with the right SHA-256.
fn cached(url: &str, sha256: &str) -> PathBuf {
    let path = cache_dir().join(sha256);
    if let Ok(b) = fs_err::read(&path)
        && sha256_hex(&b) == sha256
    {
        return path;
    }
    let bytes = download(url);
    assert_eq!(sha256_hex(&bytes), sha256, "{url} does not match its index");
    let tmp = path.with_extension("part");
    fs_err::write(&tmp, &bytes).unwrap();
    fs_err::rename(&tmp, &path).unwrap();
    path
}

/// One binary package of the index.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub filename: String,
    pub sha256: String,
    pub depends: String,
}

/// The verified trixie main/amd64 index, by package name.
pub fn index() -> &'static BTreeMap<String, Package> {
    static INDEX: OnceLock<BTreeMap<String, Package>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let base = mirror();
        let inrelease = download(&format!("{base}/dists/{SUITE}/InRelease"));
        let signed = cache_dir().join("InRelease.tmp");
        fs_err::write(&signed, &inrelease).unwrap();
        let out = Command::new("gpgv")
            .args(["--keyring", KEYRING, "--output", "-"])
            .arg(&signed)
            .output()
            .expect("gpgv");
        assert!(
            out.status.success(),
            "InRelease of {SUITE} is not signed by the Debian archive keyring: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let xz_sha = release_sha256(&text, "main/binary-amd64/Packages.xz")
            .expect("InRelease lists main/binary-amd64/Packages.xz");
        let xz = fs_err::read(cached(
            &format!("{base}/dists/{SUITE}/main/binary-amd64/Packages.xz"),
            &xz_sha,
        ))
        .unwrap();
        let mut packages = String::new();
        liblzma::read::XzDecoder::new(&xz[..])
            .read_to_string(&mut packages)
            .unwrap();
        parse_packages(&packages)
    })
}

/// The SHA-256 the `SHA256:` field of a Release file gives for `path`.
pub fn release_sha256(release: &str, path: &str) -> Option<String> {
    let mut in_sha = false;
    for line in release.lines() {
        if !line.starts_with(' ') {
            in_sha = line.starts_with("SHA256:");
            continue;
        }
        if in_sha {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 3 && f[2] == path {
                return Some(f[0].to_string());
            }
        }
    }
    None
}

pub fn parse_packages(text: &str) -> BTreeMap<String, Package> {
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let field = |k: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(": ")))
                .map(str::to_string)
        };
        let (Some(name), Some(filename), Some(sha256)) =
            (field("Package"), field("Filename"), field("SHA256"))
        else {
            continue;
        };
        out.insert(
            name.clone(),
            Package {
                name,
                version: field("Version").unwrap_or_default(),
                filename,
                sha256,
                depends: field("Depends").unwrap_or_default(),
            },
        );
    }
    out
}

/// The kernel image package the `linux-image-cloud-amd64` metapackage points to.
pub fn cloud_kernel_package() -> String {
    let meta = &index()["linux-image-cloud-amd64"];
    meta.depends
        .split(',')
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|d| d.starts_with("linux-image-") && d.ends_with("-cloud-amd64"))
        .expect("the cloud metapackage depends on a kernel image")
        .to_string()
}

/// Downloads, verifies and extracts `packages` into one tree; returns its root.
pub fn extract(packages: &[&str]) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let base = mirror();
    let idx = index();
    let mut debs: Vec<&Package> = packages
        .iter()
        .map(|p| {
            idx.get(*p)
                .unwrap_or_else(|| panic!("{p} is not in {SUITE}"))
        })
        .collect();
    debs.sort_by(|a, b| a.name.cmp(&b.name));
    let key = sha256_hex(
        debs.iter()
            .map(|d| d.sha256.as_str())
            .collect::<Vec<_>>()
            .join(",")
            .as_bytes(),
    );
    let root = cache_dir().join(format!("root-{}", &key[..16]));
    if root.join(".complete").exists() {
        return root;
    }
    let tmp = cache_dir().join(format!("root-{}.tmp", &key[..16]));
    let _ = fs_err::remove_dir_all(&tmp);
    fs_err::create_dir_all(&tmp).unwrap();
    for d in debs {
        let deb = cached(&format!("{base}/{}", d.filename), &d.sha256);
        let st = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&tmp)
            .status()
            .expect("dpkg-deb");
        assert!(st.success(), "dpkg-deb -x {} failed", d.name);
    }
    fs_err::write(tmp.join(".complete"), b"").unwrap();
    let _ = fs_err::remove_dir_all(&root);
    fs_err::rename(&tmp, &root).unwrap();
    root
}

/// The tools of one test run.
pub struct Trixie {
    pub root: PathBuf,
    pub stub: PathBuf,
    pub ukify: PathBuf,
    pub kernel: PathBuf,
    pub kernel_release: String,
}

/// ukify, the stub, python3-pefile and the cloud kernel.
pub fn ukify_tools() -> Trixie {
    let kernel_pkg = cloud_kernel_package();
    let root = extract(&[
        "systemd-ukify",
        "systemd-boot-efi",
        "python3-pefile",
        kernel_pkg.as_str(),
    ]);
    let release = kernel_pkg.trim_start_matches("linux-image-").to_string();
    Trixie {
        stub: root.join("usr/lib/systemd/boot/efi/linuxx64.efi.stub"),
        ukify: root.join("usr/lib/systemd/ukify"),
        kernel: root.join(format!("boot/vmlinuz-{release}")),
        kernel_release: release,
        root,
    }
}

/// Runs `ukify build ARGS` with Debian's python3 and the extracted pefile.
pub fn ukify(t: &Trixie, args: &[String]) {
    let out = Command::new("/usr/bin/python3")
        .arg(&t.ukify)
        .arg("build")
        .args(args)
        .env("PYTHONPATH", t.root.join("usr/lib/python3/dist-packages"))
        .output()
        .expect("/usr/bin/python3 (apt-get install python3)");
    assert!(
        out.status.success(),
        "ukify build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The trixie libraries systemd-measure links against (bookworm's glibc is too old for it).
pub const SYSTEMD_MEASURE_PACKAGES: &[&str] = &[
    "systemd",
    "libsystemd-shared",
    "libsystemd0",
    "libc6",
    "libssl3t64",
    "libcap2",
    "libcrypt1",
    "libmount1",
    "libblkid1",
    "libacl1",
    "libaudit1",
    "libcap-ng0",
    "libseccomp2",
    "libselinux1",
    "libpcre2-8-0",
    "libpam0g",
    "libapparmor1",
    "libzstd1",
    "liblzma5",
];

/// A `Command` running trixie's `systemd-measure` through trixie's dynamic loader.
pub fn systemd_measure() -> Command {
    let root = extract(SYSTEMD_MEASURE_PACKAGES);
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    let mut c = Command::new(lib.join("ld-linux-x86-64.so.2"));
    c.arg("--library-path")
        .arg(format!(
            "{}:{}",
            lib.display(),
            lib.join("systemd").display()
        ))
        .arg(root.join("usr/lib/systemd/systemd-measure"));
    c
}

/// `objcopy --dump-section NAME=OUT FILE` (binutils), returning the section bytes.
pub fn objcopy_section(file: &Path, name: &str, dir: &Path) -> Vec<u8> {
    let out = dir.join(format!("section{name}"));
    let tmp = dir.join("objcopy-scratch.efi");
    let st = Command::new("objcopy")
        .arg(format!("--dump-section={name}={}", out.display()))
        .arg(file)
        .arg(&tmp)
        .status()
        .expect("objcopy (binutils)");
    assert!(st.success(), "objcopy --dump-section {name} failed");
    fs_err::read(&out).unwrap()
}

/// The digest `pesign -h -i FILE` prints (hex).
pub fn pesign_hash(file: &Path) -> String {
    let out = Command::new("pesign")
        .args(["-h", "-i"])
        .arg(file)
        .output()
        .expect("pesign");
    assert!(
        out.status.success(),
        "pesign -h failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .strip_prefix("hash: ")
        .unwrap_or_else(|| panic!("unexpected pesign output {text:?}"))
        .to_string()
}

fn put16(d: &mut [u8], at: usize, v: u16) {
    d[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(d: &mut [u8], at: usize, v: u32) {
    d[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A stub as old toolchains left them: raw sizes not rounded to FileAlignment, sections
/// packed back to back after the first, `SizeOfHeaders` not rounded either, and a symbol +
/// string table at the end of the file. (`.sbat` comes first: pefile reads a section from its
/// `PointerToRawData` rounded down to 512, so ukify cannot read an unaligned `.sbat`.)
pub fn old_style_stub() -> Vec<u8> {
    let sbat = b"sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\n\
                 systemd-stub,1,The systemd Developers,systemd,252,https://systemd.io/\n";
    let sections: [(&str, Vec<u8>, u32); 3] = [
        (".sbat", sbat.to_vec(), 0x4000_0040),
        (".text", vec![0xC3; 0x123], 0x6000_0020),
        (
            ".sdmagic",
            b"#### LoaderInfo: systemd-stub 252.1 ####".to_vec(),
            0x4000_0040,
        ),
    ];
    let mut d = vec![0u8; 0x400];
    d[..2].copy_from_slice(b"MZ");
    put32(&mut d, 0x3c, 0x80);
    d[0x80..0x84].copy_from_slice(b"PE\0\0");
    let c = 0x84;
    put16(&mut d, c, 0x8664);
    put16(&mut d, c + 2, sections.len() as u16);
    put32(&mut d, c + 4, 0x5f5e_0ff1);
    put16(&mut d, c + 16, 240);
    put16(&mut d, c + 18, 0x206);
    let o = c + 20;
    put16(&mut d, o, 0x20b);
    put32(&mut d, o + 8, 0x400);
    put32(&mut d, o + 16, 0x2000); // AddressOfEntryPoint, in .text
    put32(&mut d, o + 32, 0x1000);
    put32(&mut d, o + 36, 0x200);
    put32(&mut d, o + 60, 0x3f0);
    put16(&mut d, o + 68, 10);
    put16(&mut d, o + 70, 0x160);
    put32(&mut d, o + 108, 16);
    let mut va = 0x1000;
    for (i, (name, data, flags)) in sections.iter().enumerate() {
        let h = o + 240 + i * 40;
        let ptr = d.len() as u32;
        d[h..h + name.len()].copy_from_slice(name.as_bytes());
        put32(&mut d, h + 8, data.len() as u32);
        put32(&mut d, h + 12, va);
        put32(&mut d, h + 16, data.len() as u32);
        put32(&mut d, h + 20, ptr);
        put32(&mut d, h + 36, *flags);
        d.extend_from_slice(data);
        va += 0x1000;
    }
    put32(&mut d, o + 56, va);
    // Two symbols and a 9-byte string table ("\x09\0\0\0abcde").
    let symtab = d.len() as u32;
    put32(&mut d, c + 8, symtab);
    put32(&mut d, c + 12, 2);
    d.extend_from_slice(&[0x55; 36]);
    d.extend_from_slice(&[9, 0, 0, 0]);
    d.extend_from_slice(b"abcde");
    d
}

#[cfg(test)]
mod support_tests {
    use super::*;

    #[test]
    fn mirror_is_read_from_deb822_and_one_line_sources() {
        let deb822 = "Types: deb\nURIs: http://m.example/debian-security\nSuites: x\n\n\
                      Types: deb\nURIs: http://m.example/debian/\nSuites: y\n";
        assert_eq!(
            parse_mirror(deb822).as_deref(),
            Some("http://m.example/debian")
        );
        let one = "deb [arch=amd64] http://o.example/debian bookworm main\n";
        assert_eq!(
            parse_mirror(one).as_deref(),
            Some("http://o.example/debian")
        );
        assert_eq!(parse_mirror("# nothing\n"), None);
    }

    #[test]
    fn release_and_packages_fields() {
        let rel = "Origin: Debian\nMD5Sum:\n 00 1 main/binary-amd64/Packages.xz\nSHA256:\n \
                   ab 10 main/binary-amd64/Packages\n cd 5 main/binary-amd64/Packages.xz\n";
        assert_eq!(
            release_sha256(rel, "main/binary-amd64/Packages.xz").as_deref(),
            Some("cd")
        );
        let p = parse_packages("Package: a\nVersion: 1\nFilename: pool/a.deb\nSHA256: ff\n\n");
        assert_eq!(p["a"].filename, "pool/a.deb");
    }
}
