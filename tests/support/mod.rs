//! Shared test helpers: a synthetic signed Debian archive, served on 127.0.0.1 by a tiny
//! HTTP server that can misbehave on demand, and a way to run the `hermetic` binary on it.
//!
//! The archive is made at test time with the real tools: `.deb`s by `dpkg-deb --build`,
//! `InRelease` by `gpg --clearsign` with a throwaway key made by `gpg --quick-gen-key` in a
//! temporary GNUPGHOME.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use hermetic::hash::sha256_hex;

pub mod go;

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A throwaway OpenPGP signing key in its own GNUPGHOME.
pub struct TestKey {
    pub home: tempfile::TempDir,
    /// Uppercase hex fingerprint.
    pub fingerprint: String,
    /// The public key, binary, as a keyring file.
    pub keyring: PathBuf,
}

impl TestKey {
    pub fn generate(name: &str) -> TestKey {
        let home = tempfile::tempdir().unwrap();
        let gpg = |args: &[&str]| {
            run(Command::new("gpg")
                .arg("--batch")
                .arg("--homedir")
                .arg(home.path())
                .args(args))
        };
        gpg(&[
            "--passphrase",
            "",
            "--quick-gen-key",
            &format!("{name} <{name}@hermetic.invalid>"),
            "ed25519",
            "sign",
            "never",
        ]);
        let listing = gpg(&["--with-colons", "--list-keys"]);
        let text = String::from_utf8(listing.stdout).unwrap();
        let fingerprint = text
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .unwrap()
            .to_string();
        let exported = gpg(&["--export", &fingerprint]);
        let keyring = home.path().join("public.pgp");
        fs_err::write(&keyring, exported.stdout).unwrap();
        TestKey {
            home,
            fingerprint,
            keyring,
        }
    }

    /// Clear-signs `text` (an InRelease).
    pub fn clearsign(&self, text: &str) -> Vec<u8> {
        let input = self.home.path().join("Release");
        let output = self.home.path().join("InRelease");
        let _ = fs_err::remove_file(&output);
        fs_err::write(&input, text).unwrap();
        run(Command::new("gpg")
            .arg("--batch")
            .arg("--homedir")
            .arg(self.home.path())
            .args([
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--digest-algo",
                "SHA256",
            ])
            .args(["--local-user", &self.fingerprint, "--clearsign", "-o"])
            .arg(&output)
            .arg(&input));
        fs_err::read(&output).unwrap()
    }
}

impl Drop for TestKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// A binary package of the synthetic archive.
#[derive(Debug, Clone, Default)]
pub struct DebSpec {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Extra control fields (`Depends`, `Provides`, `Essential`, `Priority`, ...).
    pub fields: Vec<(String, String)>,
    /// Bytes of an extra payload file (to make big packages).
    pub payload: usize,
    /// Extra files: path inside the package (relative, like `usr/bin/x`), content, mode.
    pub files: Vec<(String, Vec<u8>, u32)>,
}

pub fn deb(name: &str, version: &str) -> DebSpec {
    DebSpec {
        name: name.into(),
        version: version.into(),
        arch: "amd64".into(),
        ..Default::default()
    }
}

impl DebSpec {
    pub fn field(mut self, k: &str, v: &str) -> Self {
        self.fields.push((k.into(), v.into()));
        self
    }
    pub fn essential(self) -> Self {
        self.field("Essential", "yes").field("Priority", "required")
    }
    pub fn payload(mut self, bytes: usize) -> Self {
        self.payload = bytes;
        self
    }
    /// Adds a file to the package's data.
    pub fn file(mut self, path: &str, content: &[u8], mode: u32) -> Self {
        self.files.push((
            path.trim_start_matches('/').to_string(),
            content.to_vec(),
            mode,
        ));
        self
    }
}

/// A source package of the synthetic archive (a `.dsc` and an `.orig.tar.gz` of junk).
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub name: String,
    pub version: String,
}

/// One suite of the synthetic archive.
#[derive(Debug, Clone, Default)]
pub struct SuiteSpec {
    pub name: String,
    pub debs: Vec<DebSpec>,
    pub sources: Vec<SourceSpec>,
}

/// A pinned file of the archive, as the tests expect it.
#[derive(Debug, Clone)]
pub struct BuiltFile {
    /// Path below the server root (`debian/pool/...`).
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// A built archive: `root/debian/...` and `root/debian-security/...`.
pub struct TestArchive {
    pub root: tempfile::TempDir,
    /// Built `.deb`s by package name.
    pub debs: HashMap<String, BuiltFile>,
}

fn archive_of(suite: &str) -> &'static str {
    if suite.ends_with("-security") {
        "debian-security"
    } else {
        "debian"
    }
}

fn xz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn pool_dir(name: &str) -> String {
    let prefix = if name.starts_with("lib") && name.len() > 3 {
        &name[..4]
    } else {
        &name[..1]
    };
    format!("pool/main/{prefix}/{name}")
}

impl TestArchive {
    /// Builds the suites and signs each InRelease with `key`.
    pub fn build(suites: &[SuiteSpec], key: &TestKey) -> TestArchive {
        let root = tempfile::tempdir().unwrap();
        let mut debs = HashMap::new();
        for suite in suites {
            let archive = archive_of(&suite.name);
            let base = root.path().join(archive);
            let mut packages = String::new();
            for d in &suite.debs {
                let built = build_deb(&base, d);
                packages.push_str(&format!(
                    "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Test <t@hermetic.invalid>\n",
                    d.name, d.version, d.arch
                ));
                for (k, v) in &d.fields {
                    packages.push_str(&format!("{k}: {v}\n"));
                }
                packages.push_str(&format!(
                    "Description: test package {}\nFilename: {}\nSize: {}\nSHA256: {}\n\n",
                    d.name,
                    built.path.strip_prefix(&format!("{archive}/")).unwrap(),
                    built.size,
                    built.sha256
                ));
                debs.insert(d.name.clone(), built);
            }
            let mut sources = String::new();
            for s in &suite.sources {
                let dir = pool_dir(&s.name);
                fs_err::create_dir_all(base.join(&dir)).unwrap();
                let upstream = s.version.split('-').next().unwrap();
                let orig_name = format!("{}_{upstream}.orig.tar.gz", s.name);
                let orig = format!("orig tarball of {} {}\n", s.name, s.version).repeat(50);
                fs_err::write(base.join(&dir).join(&orig_name), &orig).unwrap();
                let dsc_name = format!("{}_{}.dsc", s.name, s.version);
                let dsc = format!(
                    "Format: 3.0 (quilt)\nSource: {}\nVersion: {}\nChecksums-Sha256:\n {} {} {orig_name}\n",
                    s.name,
                    s.version,
                    sha256_hex(orig.as_bytes()),
                    orig.len()
                );
                fs_err::write(base.join(&dir).join(&dsc_name), &dsc).unwrap();
                sources.push_str(&format!(
                    "Package: {}\nBinary: {}\nVersion: {}\nMaintainer: Test <t@hermetic.invalid>\nArchitecture: any\nFormat: 3.0 (quilt)\nDirectory: {dir}\nChecksums-Sha256:\n {} {} {dsc_name}\n {} {} {orig_name}\n\n",
                    s.name,
                    s.name,
                    s.version,
                    sha256_hex(dsc.as_bytes()),
                    dsc.len(),
                    sha256_hex(orig.as_bytes()),
                    orig.len()
                ));
            }
            let dists = base.join("dists").join(&suite.name);
            let pxz = xz(packages.as_bytes());
            let sxz = xz(sources.as_bytes());
            fs_err::create_dir_all(dists.join("main/binary-amd64")).unwrap();
            fs_err::create_dir_all(dists.join("main/source")).unwrap();
            fs_err::write(dists.join("main/binary-amd64/Packages.xz"), &pxz).unwrap();
            fs_err::write(dists.join("main/source/Sources.xz"), &sxz).unwrap();
            // by-hash copies, as the real archive has them.
            for (dir, bytes) in [("main/binary-amd64", &pxz), ("main/source", &sxz)] {
                let by_hash = dists.join(dir).join("by-hash/SHA256");
                fs_err::create_dir_all(&by_hash).unwrap();
                fs_err::write(by_hash.join(sha256_hex(bytes)), bytes).unwrap();
            }
            let release = format!(
                "Origin: Hermetic test\nLabel: Hermetic test\nSuite: {0}\nCodename: {0}\n\
                 Date: Tue, 24 Nov 2026 00:00:00 UTC\nValid-Until: Sat, 01 Dec 2096 00:00:00 UTC\n\
                 Acquire-By-Hash: yes\n\
                 Architectures: amd64\nComponents: main\nSHA256:\n {1} {2} main/binary-amd64/Packages.xz\n {3} {4} main/source/Sources.xz\n",
                suite.name,
                sha256_hex(&pxz),
                pxz.len(),
                sha256_hex(&sxz),
                sxz.len()
            );
            fs_err::write(dists.join("InRelease"), key.clearsign(&release)).unwrap();
        }
        TestArchive { root, debs }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }
}

fn build_deb(archive_root: &Path, d: &DebSpec) -> BuiltFile {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs_err::create_dir_all(tree.join("DEBIAN")).unwrap();
    let mut control = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Test <t@hermetic.invalid>\n",
        d.name, d.version, d.arch
    );
    for (k, v) in &d.fields {
        control.push_str(&format!("{k}: {v}\n"));
    }
    control.push_str(&format!("Description: test package {}\n", d.name));
    fs_err::write(tree.join("DEBIAN/control"), control).unwrap();
    let doc = tree.join("usr/share/doc").join(&d.name);
    fs_err::create_dir_all(&doc).unwrap();
    fs_err::write(doc.join("README"), format!("{} {}\n", d.name, d.version)).unwrap();
    if d.payload > 0 {
        // Incompressible, deterministic bytes.
        let mut data = Vec::with_capacity(d.payload);
        let mut block = Sha256::digest(d.name.as_bytes()).to_vec();
        while data.len() < d.payload {
            block = Sha256::digest(&block).to_vec();
            data.extend_from_slice(&block);
        }
        data.truncate(d.payload);
        fs_err::write(doc.join("payload.bin"), data).unwrap();
    }
    for (path, content, mode) in &d.files {
        let dest = tree.join(path);
        fs_err::create_dir_all(dest.parent().unwrap()).unwrap();
        fs_err::write(&dest, content).unwrap();
        fs_err::set_permissions(&dest, std::os::unix::fs::PermissionsExt::from_mode(*mode))
            .unwrap();
    }
    let source = d
        .fields
        .iter()
        .find(|(k, _)| k == "Source")
        .map(|(_, v)| v.split_whitespace().next().unwrap().to_string())
        .unwrap_or_else(|| d.name.clone());
    let rel_dir = pool_dir(&source);
    let file_version = d
        .version
        .split_once(':')
        .map(|(_, v)| v)
        .unwrap_or(&d.version);
    let file_name = format!("{}_{}_{}.deb", d.name, file_version, d.arch);
    let dest_dir = archive_root.join(&rel_dir);
    fs_err::create_dir_all(&dest_dir).unwrap();
    let dest = dest_dir.join(&file_name);
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Znone", "--build"])
        .arg(&tree)
        .arg(&dest));
    let bytes = fs_err::read(&dest).unwrap();
    let archive = archive_root.file_name().unwrap().to_str().unwrap();
    BuiltFile {
        path: format!("{archive}/{rel_dir}/{file_name}"),
        size: bytes.len() as u64,
        sha256: sha256_hex(&bytes),
    }
}

/// How the server misbehaves on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Announce the full length, send only half, close.
    HangUpHalfway,
    /// Send the right length of wrong bytes.
    WrongBytes,
    /// Answer 404.
    NotFound,
    /// Send half, then stall (until the client gives up or dies).
    StallHalfway,
    /// Wait this many milliseconds, then answer normally.
    Delay(u64),
}

/// A tiny HTTP/1.1 file server with keep-alive, request counting and faults.
pub struct TestServer {
    pub port: u16,
    requests: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
    faults: Arc<Mutex<HashMap<String, (Fault, usize)>>>,
}

impl TestServer {
    /// Serves the files under `root`.
    pub fn start(root: &Path) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let faults: Arc<Mutex<HashMap<String, (Fault, usize)>>> = Arc::default();
        let root = root.to_path_buf();
        {
            let (requests, log, faults) = (requests.clone(), log.clone(), faults.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (requests, log, faults, root) =
                        (requests.clone(), log.clone(), faults.clone(), root.clone());
                    std::thread::spawn(move || {
                        let _ = serve(stream, &root, &requests, &log, &faults);
                    });
                }
            });
        }
        TestServer {
            port,
            requests,
            log,
            faults,
        }
    }

    /// `http://127.0.0.1:PORT/` (a root holding `debian/` and `debian-security/`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Paths requested so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Misbehave on `path` (below the root, e.g. `debian/pool/...`) the next `times` times.
    pub fn fault(&self, path: &str, fault: Fault, times: usize) {
        self.faults
            .lock()
            .unwrap()
            .insert(format!("/{}", path.trim_start_matches('/')), (fault, times));
    }

    pub fn clear_faults(&self) {
        self.faults.lock().unwrap().clear();
    }
}

fn serve(
    stream: TcpStream,
    root: &Path,
    requests: &AtomicUsize,
    log: &Mutex<Vec<String>>,
    faults: &Mutex<HashMap<String, (Fault, usize)>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
                break;
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        requests.fetch_add(1, Ordering::SeqCst);
        log.lock().unwrap().push(path.clone());
        let fault = {
            let mut faults = faults.lock().unwrap();
            match faults.get_mut(&path) {
                Some((f, n)) if *n > 0 => {
                    *n -= 1;
                    Some(*f)
                }
                _ => None,
            }
        };
        let file = root.join(path.trim_start_matches('/'));
        let body = if path.contains("..") {
            None
        } else {
            fs_err::read(&file).ok()
        };
        let Some(mut body) = body.filter(|_| fault != Some(Fault::NotFound)) else {
            stream.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\nnot found",
            )?;
            continue;
        };
        if let Some(Fault::Delay(ms)) = fault {
            std::thread::sleep(Duration::from_millis(ms));
        }
        if fault == Some(Fault::WrongBytes) {
            for b in body.iter_mut() {
                *b = b.wrapping_add(1);
            }
        }
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
            body.len()
        )?;
        match fault {
            Some(Fault::HangUpHalfway) => {
                stream.write_all(&body[..body.len() / 2])?;
                stream.flush()?;
                return Ok(());
            }
            Some(Fault::StallHalfway) => {
                stream.write_all(&body[..body.len() / 2])?;
                stream.flush()?;
                std::thread::sleep(Duration::from_secs(120));
                return Ok(());
            }
            _ => stream.write_all(&body)?,
        }
        stream.flush()?;
    }
}

/// A project directory with `hermetic.toml` and recipes.
pub struct TestProject {
    pub dir: tempfile::TempDir,
    pub store: tempfile::TempDir,
    /// An empty apt configuration root, so the host's mirrors are never used.
    pub apt_root: tempfile::TempDir,
    pub keyring: PathBuf,
    pub mirror: String,
    pub snapshot_url: String,
}

pub const CONFIG: &str =
    "[archive]\nsnapshot = \"20261124T000000Z\"\nsuites = [\"trixie\", \"trixie-security\"]\n";

/// A project of `recipes` whose archive (the standard suites, signed by a fresh key) is served
/// on 127.0.0.1; the key, the archive and the server live as long as it.
pub struct ServedProject {
    pub project: TestProject,
    pub server: TestServer,
    pub archive: TestArchive,
    pub key: TestKey,
}

impl ServedProject {
    pub fn new(recipes: &[(&str, &str)]) -> ServedProject {
        let key = TestKey::generate("archive");
        let archive = TestArchive::build(&standard_suites(), &key);
        let server = TestServer::start(archive.root.path());
        let project = TestProject::new(recipes, &server, &key.keyring);
        ServedProject {
            project,
            server,
            archive,
            key,
        }
    }
}

impl std::ops::Deref for ServedProject {
    type Target = TestProject;
    fn deref(&self) -> &TestProject {
        &self.project
    }
}

impl TestProject {
    /// A project whose `recipes/<name>.toml` are `recipes`, pointed at `server`.
    pub fn new(recipes: &[(&str, &str)], server: &TestServer, keyring: &Path) -> TestProject {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("recipes")).unwrap();
        fs_err::write(dir.path().join("hermetic.toml"), CONFIG).unwrap();
        for (name, text) in recipes {
            fs_err::write(dir.path().join(format!("recipes/{name}.toml")), text).unwrap();
        }
        // A closed port stands in for snapshot.debian.org: refused at once.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        TestProject {
            dir,
            store: tempfile::tempdir().unwrap(),
            apt_root: tempfile::tempdir().unwrap(),
            keyring: keyring.to_path_buf(),
            mirror: server.url(),
            snapshot_url: format!("http://127.0.0.1:{closed}"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn lock_text(&self) -> String {
        fs_err::read_to_string(self.path("pins.lock")).unwrap()
    }

    /// The `hermetic` command, set up for this project (not yet run).
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_at(self.dir.path(), self.store.path(), args)
    }

    /// The `hermetic` command with this project's archive settings, on another copy of the
    /// project (`dir`, e.g. a clone) and another store.
    pub fn command_at(&self, dir: &Path, store: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermetic"));
        cmd.arg("-C")
            .arg(dir)
            .arg("--store")
            .arg(store)
            .args(args)
            .env("HERMETIC_MIRRORS", &self.mirror)
            .env("HERMETIC_SNAPSHOT_URL", &self.snapshot_url)
            .env("HERMETIC_APT_ROOT", self.apt_root.path())
            .env("HERMETIC_KEYRING", &self.keyring)
            .env_remove("HERMETIC_STORE");
        cmd
    }

    /// Runs `hermetic ARGS`; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.command(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs and asserts success; returns stderr.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(ok, "hermetic {args:?} failed:\n{stdout}\n{stderr}");
        stderr
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(!ok, "hermetic {args:?} succeeded:\n{stdout}\n{stderr}");
        stderr
    }

    /// Blob path in the project's store.
    pub fn blob(&self, sha256: &str) -> PathBuf {
        self.store.path().join("v1/blobs/sha256").join(sha256)
    }

    /// `(step, key)` of each step of `target`, as `hermetic plan --json` computes them.
    pub fn plan(&self, target: &str) -> Vec<(String, String)> {
        let out = self.command(&["--json", "plan", target]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["step"].as_str().unwrap().into(),
                    r["key"].as_str().unwrap().into(),
                )
            })
            .collect()
    }

    /// The store entry of a step.
    pub fn step_entry(&self, key: &str) -> PathBuf {
        self.store.path().join("v1/steps").join(key)
    }

    /// Publishes a copy of `tree` (e.g. [`host_tools_tree`]) as the store entry of every
    /// `rootfs` and `tools` step of `target`: what dpkg would have installed, for tests that
    /// run the image and output steps for real without installing packages.
    pub fn publish_fake_trees(&self, target: &str, tree: &Path) {
        for (step, key) in self.plan(target) {
            if step.ends_with("/rootfs") || step.ends_with("/tools") {
                let entry = self.step_entry(&key);
                fs_err::create_dir_all(&entry).unwrap();
                let st = Command::new("cp")
                    .arg("-a")
                    .arg(tree)
                    .arg(entry.join("tree"))
                    .status()
                    .unwrap();
                assert!(st.success());
                fs_err::write(entry.join(".hermetic-complete"), "").unwrap();
            }
        }
    }
}

/// The standard small archive of the tests:
/// - an essential base (`base-files`, `libc6`, `dash` Pre-Depends libc6),
/// - `app` depending on `libfoo (>= 1.0) | libbar` and `mail-transport-agent` (virtual),
/// - `libfoo` 1.0 in trixie, 1.1 in trixie-security,
/// - `tool` for build-packages, `big` (2 MiB) for transfer faults,
/// - `broken` -> `mid` -> `missing (>= 2)` (unsatisfiable),
/// - source package `hello`.
pub fn standard_suites() -> Vec<SuiteSpec> {
    vec![
        SuiteSpec {
            name: "trixie".into(),
            debs: vec![
                deb("base-files", "13.8").essential(),
                deb("libc6", "2.41-12").field("Priority", "required"),
                deb("dash", "0.5.12-12")
                    .essential()
                    .field("Pre-Depends", "libc6 (>= 2.34)"),
                deb("app", "1:2.0-1")
                    .field("Depends", "libfoo (>= 1.0) | libbar, mail-transport-agent")
                    .field("Priority", "optional"),
                deb("libfoo", "1.0-1").field("Depends", "libc6"),
                deb("libbar", "3.0-1"),
                deb("postfix", "3.9-1").field("Provides", "mail-transport-agent"),
                deb("tool", "0.9~rc1-1").field("Depends", "libc6").file(
                    "usr/bin/tool",
                    b"#!/bin/sh\necho tool\n",
                    0o755,
                ),
                deb("big", "1.0-1").payload(2 * 1024 * 1024),
                deb("broken", "1.0-1").field("Depends", "mid"),
                deb("mid", "1.0-1").field("Depends", "missing (>= 2)"),
                deb("missing", "1.0-1"),
            ],
            sources: vec![SourceSpec {
                name: "hello".into(),
                version: "2.10-3".into(),
            }],
        },
        SuiteSpec {
            name: "trixie-security".into(),
            debs: vec![deb("libfoo", "1.1-1~deb13u1").field("Depends", "libc6")],
            sources: vec![],
        },
    ]
}

/// The standard archive ([`standard_suites`]) signed by a fresh key and served on
/// 127.0.0.1: the fixture of the lock suites.
pub struct ServedArchive {
    pub key: TestKey,
    pub archive: TestArchive,
    pub server: TestServer,
}

/// Builds and serves a [`ServedArchive`].
pub fn served_standard_archive() -> ServedArchive {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    ServedArchive {
        key,
        archive,
        server,
    }
}

/// A stand-in for snapshot.debian.org: `/archive/<archive>/<timestamp>/` serves each
/// archive of each `(timestamp, archive)` state. Keep the directory as long as the server.
pub fn snapshot_service(states: &[(&str, &TestArchive)]) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    for (timestamp, archive) in states {
        for name in ["debian", "debian-security"] {
            let parent = dir.path().join("archive").join(name);
            fs_err::create_dir_all(&parent).unwrap();
            if archive.path(name).is_dir() {
                std::os::unix::fs::symlink(archive.path(name), parent.join(timestamp)).unwrap();
            }
        }
    }
    let server = TestServer::start(dir.path());
    (dir, server)
}

/// A tiny Debian-shaped root made of the host's own `sh`, coreutils and `find` with their
/// libraries (merged /usr, the usual empty directories and `extra_dirs`): enough for the image
/// step's copy, recipe steps and clean-up, for tests that publish a fake rootfs or tools
/// entry instead of installing packages from a mirror.
pub fn host_tools_tree(extra_dirs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path();
    for d in ["usr/bin", "usr/sbin", "usr/lib", "usr/lib64"] {
        fs_err::create_dir_all(t.join(d)).unwrap();
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        std::os::unix::fs::symlink(target, t.join(link)).unwrap();
    }
    let standard = [
        "etc",
        "var/log",
        "var/cache",
        "var/lib/dpkg",
        "var/tmp",
        "run",
        "root",
    ];
    for d in standard.iter().chain(extra_dirs) {
        fs_err::create_dir_all(t.join(d)).unwrap();
    }
    for tool in [
        "sh", "cp", "ln", "rm", "cat", "find", "touch", "mkdir", "printf", "head", "true",
    ] {
        let host = ["/usr/bin", "/bin", "/usr/sbin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{tool} is not on this host"));
        let host = fs_err::canonicalize(&host).unwrap();
        fs_err::copy(&host, t.join("usr/bin").join(tool)).unwrap();
        let ldd = Command::new("ldd").arg(&host).output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux… (0x…)`
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            let Some(path) = path.filter(|p| p.starts_with('/')) else {
                continue;
            };
            // Relative to the tree; the tree's own `lib` → `usr/lib` links resolve inside it.
            let dst = t.join(path.trim_start_matches('/'));
            if dst.exists() {
                continue;
            }
            fs_err::create_dir_all(dst.parent().unwrap()).unwrap();
            fs_err::copy(fs_err::canonicalize(path).unwrap(), &dst).unwrap();
        }
    }
    dir
}

/// Runs `script` with `sh -c` in `dir`, with a fixed git identity and no inherited git
/// repository settings; panics with its stderr on failure.
pub fn git_sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `git clone` of `repo` into `into/checkout` under `umask` (`"002"`, Debian's default, or
/// `"022"`); gives the checkout.
pub fn clone_under_umask(repo: &Path, umask: &str, into: &Path) -> PathBuf {
    fs_err::create_dir_all(into).unwrap();
    git_sh(
        into,
        &format!(
            "umask {umask} && git clone -q --no-hardlinks {} checkout",
            repo.display()
        ),
    );
    into.join("checkout")
}
