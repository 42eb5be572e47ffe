//! Shared caches on a real OCI registry (issue 17): Debian's `docker-registry` (distribution
//! 2.8) started on a free port of 127.0.0.1 by each test, with its storage in a temporary
//! directory; anonymous, with htpasswd basic auth, and with a token realm the test serves.
//!
//! The project is locked from the synthetic signed archive of tests/support on 127.0.0.1;
//! its `rootfs` and `tools` steps are published into the first store as a tiny tree of the
//! host's own tools (as tests/hostile_outputs.rs does), and the image and output steps run
//! for real in the sandbox. That store is pushed; other stores (other project directories on
//! "other machines") take pins and step outputs from the registry.

mod support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{TestArchive, TestKey, TestProject, TestServer, sha256_hex, standard_suites};

const RECIPE: &str = "format = \"tar\"\npackages = [\"app\", \"big\"]\nbuild-packages = [\"tool\"]\n\
                      [[steps]]\nname = \"mark\"\nscript = '''\nprintf 'built here\\n' > \"$DESTDIR/etc/marker\"\n'''\n";

/// A `docker-registry` process serving a temporary directory.
struct Registry {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
    log: PathBuf,
}

enum Auth {
    None,
    /// htpasswd file.
    Basic(PathBuf),
    /// realm URL, service, certificate bundle.
    Token(String, String, PathBuf),
}

fn registry_binary() -> &'static str {
    let bin = "/usr/bin/docker-registry";
    assert!(
        Path::new(bin).exists(),
        "{bin} is missing: install Debian's docker-registry package (scripts/setup.sh --tests)"
    );
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    fn start(auth: Auth) -> Registry {
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth_yaml = match &auth {
            Auth::None => String::new(),
            Auth::Basic(file) => format!(
                "auth:\n  htpasswd:\n    realm: hermetic-test\n    path: {}\n",
                file.display()
            ),
            Auth::Token(realm, service, bundle) => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: hermetic-test\n    rootcertbundle: {}\n",
                bundle.display()
            ),
        };
        let config = root.path().join("config.yml");
        fs_err::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  formatter: text\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: 127.0.0.1:{port}\n{auth_yaml}",
                root.path().join("data").display()
            ),
        )
        .unwrap();
        let log = root.path().join("registry.log");
        let out = fs_err::File::create(&log).unwrap();
        let child = Command::new(registry_binary())
            .arg("serve")
            .arg(&config)
            .stdout(out.try_clone().unwrap().into_file())
            .stderr(out.into_file())
            .spawn()
            .unwrap();
        let r = Registry {
            child,
            port,
            root,
            log,
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the registry did not start:\n{}",
                r.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn cache(&self, repo: &str) -> String {
        format!("127.0.0.1:{}/{repo}", self.port)
    }

    fn log_text(&self) -> String {
        fs_err::read_to_string(&self.log).unwrap_or_default()
    }

    /// The stored content of blob `sha256`.
    fn blob_data(&self, sha256: &str) -> PathBuf {
        self.root
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&sha256[..2])
            .join(sha256)
            .join("data")
    }

    /// The digests whose upload the registry completed (`PUT …?digest=` answered 201) in the
    /// access log lines `lines`.
    fn completed_uploads(lines: &[&str], repo: &str) -> Vec<String> {
        let put = format!("\"PUT /v2/{repo}/blobs/uploads/");
        lines
            .iter()
            .filter(|l| l.contains(&put) && l.contains("\" 201 "))
            .filter_map(|l| {
                let at = l.find("digest=sha256%3A")? + "digest=sha256%3A".len();
                Some(l[at..at + 64].to_string())
            })
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Fixture {
    _key: TestKey,
    _archive: TestArchive,
    server: TestServer,
    keyring: PathBuf,
    /// The machine that built and pushes.
    a: TestProject,
    mini: tempfile::TempDir,
    keys: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let key = TestKey::generate("archive");
        let archive = TestArchive::build(&standard_suites(), &key);
        let server = TestServer::start(archive.root.path());
        let a = TestProject::new(&[("img", RECIPE)], &server, &key.keyring);
        a.ok(&["lock"]);
        let keyring = key.keyring.clone();
        let f = Fixture {
            _key: key,
            _archive: archive,
            server,
            keyring,
            a,
            // With the mount points a Debian rootfs has, so that the sandbox makes none
            // (with a new mtime) and a rebuild on another machine is identical.
            mini: support::host_tools_tree(&["dev", "proc", "sys", "tmp"]),
            keys: tempfile::tempdir().unwrap(),
        };
        for (step, k) in f.plan(&f.a) {
            if step.ends_with("/rootfs") || step.ends_with("/tools") {
                f.fake_step(&f.a, &k);
            }
        }
        for name in ["trusted", "other"] {
            let out =
                f.a.command(&["sign", "--generate-key"])
                    .arg(f.keys.path().join(format!("{name}.key")))
                    .env_remove("HERMETIC_SIGN_PASSWORD")
                    .output()
                    .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        f
    }

    fn key(&self, name: &str) -> String {
        self.keys.path().join(name).display().to_string()
    }

    /// Another machine: the same project (recipes and pins.lock), another directory and store.
    fn machine(&self) -> TestProject {
        let p = TestProject::new(&[("img", RECIPE)], &self.server, &self.keyring);
        fs_err::copy(self.a.path("pins.lock"), p.path("pins.lock")).unwrap();
        p
    }

    fn plan(&self, p: &TestProject) -> Vec<(String, String)> {
        let rows = json(p, &["plan", "img"]);
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["step"].as_str().unwrap().to_string(),
                    r["key"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn fake_step(&self, p: &TestProject, key: &str) {
        let entry = p.store.path().join("v1/steps").join(key);
        fs_err::create_dir_all(&entry).unwrap();
        let status = Command::new("cp")
            .arg("-a")
            .arg(self.mini.path())
            .arg(entry.join("tree"))
            .status()
            .unwrap();
        assert!(status.success());
        fs_err::write(entry.join(".hermetic-complete"), "").unwrap();
    }

    /// Builds `img` on machine A (once) and returns the output tar's SHA-256.
    fn build_a(&self) -> String {
        let report = json(&self.a, &["build", "img", "--no-cache"]);
        output_hash(&self.a, &report)
    }
}

fn json(p: &TestProject, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = p.command(&all).output().unwrap();
    assert!(
        out.status.success(),
        "hermetic {all:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `hermetic --json ARGS`, with its standard error.
fn json_err(p: &TestProject, args: &[&str], envs: &[(&str, &str)]) -> (serde_json::Value, String) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let mut cmd = p.command(&all);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "hermetic {all:?} failed:\n{stderr}");
    (serde_json::from_slice(&out.stdout).unwrap(), stderr)
}

/// The SHA-256 of the image's tar output, checked against the file in `out/`.
fn output_hash(p: &TestProject, report: &serde_json::Value) -> String {
    let outputs = report["outputs"].as_array().unwrap();
    let (path, hash) = outputs
        .iter()
        .map(|o| (o[0].as_str().unwrap(), o[1].as_str().unwrap()))
        .find(|(path, _)| path.ends_with(".tar"))
        .unwrap_or_else(|| panic!("no tar output in {report}"));
    let bytes = fs_err::read(p.path("out").join(path)).unwrap();
    assert_eq!(sha256_hex(&bytes), hash);
    hash.to_string()
}

fn states(report: &serde_json::Value) -> Vec<(String, String)> {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

/// Builds `img` on machine `p` from `cache`, trusting the key A pushed with; asserts that no
/// step ran. Returns the build report and standard error.
fn build_from_cache(f: &Fixture, p: &TestProject, cache: &str) -> (serde_json::Value, String) {
    let trusted = f.key("trusted.key.pub");
    let (report, stderr) = json_err(
        p,
        &["build", "img", "--cache", cache, "--cache-key", &trusted],
        &[],
    );
    for (step, state) in states(&report) {
        assert_eq!(state, "cached", "{step} ran on another machine:\n{stderr}");
    }
    (report, stderr)
}

fn store_steps(p: &TestProject) -> Vec<String> {
    match fs_err::read_dir(p.store.path().join("v1/steps")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Every SHA-256 pins.lock pins.
fn pinned(p: &TestProject) -> BTreeSet<String> {
    p.lock_text()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("sha256 = \""))
        .map(|h| h.trim_end_matches('"').to_string())
        .collect()
}

fn store_blobs(p: &TestProject) -> BTreeSet<String> {
    fs_err::read_dir(p.store.path().join("v1/blobs/sha256"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_pushed_store_builds_elsewhere_without_running_a_step_or_the_mirror() {
    let f = Fixture::new();
    let reg = Registry::start(Auth::None);
    let cache = reg.cache("team/hermetic");
    let built_a = f.build_a();

    let (pushed, _) = json_err(
        &f.a,
        &["cache", "push", &cache, "--key", &f.key("trusted.key")],
        &[],
    );
    let pinned_a = pinned(&f.a);
    assert!(pinned_a.len() > 3);
    let pinned = pinned_a.len() as u64;
    assert_eq!(pushed["blobs_pushed"], pinned, "{pushed}");
    assert_eq!(pushed["steps_pushed"], 4, "{pushed}");
    assert_eq!(pushed["steps_failed"], 0, "{pushed}");
    // A second push sends nothing: every blob answers HEAD, every step manifest is there.
    let (again, _) = json_err(
        &f.a,
        &["cache", "push", &cache, "--key", &f.key("trusted.key")],
        &[],
    );
    assert_eq!(again["blobs_pushed"], 0, "{again}");
    assert_eq!(again["blobs_present"], pinned, "{again}");
    assert_eq!(again["steps_pushed"], 0, "{again}");
    assert_eq!(again["steps_present"], 4, "{again}");

    // Another repository of the same registry mounts the blobs instead of receiving them.
    let (mounted, _) = json_err(
        &f.a,
        &[
            "cache",
            "push",
            &reg.cache("team/other"),
            "--mount-from",
            "team/hermetic",
        ],
        &[],
    );
    assert_eq!(mounted["blobs_mounted"], pinned, "{mounted}");
    assert_eq!(mounted["blobs_pushed"], 0, "{mounted}");

    // Another machine: empty store, the registry as cache, the mirror never asked.
    let b = f.machine();
    let before = f.server.requests();
    let (report, stderr) = build_from_cache(&f, &b, &cache);
    assert_eq!(output_hash(&b, &report), built_a);
    assert_eq!(
        f.server.requests(),
        before,
        "machine B asked the mirror: {:?}",
        &f.server.log()[before..]
    );
    assert_eq!(store_blobs(&b), pinned_a);
    assert!(
        stderr.contains("pulled") && stderr.contains("img/image"),
        "{stderr}"
    );
    // The step that ran on A is the one B holds: its marker file came through the registry.
    let image_key = &f
        .plan(&b)
        .into_iter()
        .find(|(s, _)| s == "img/image")
        .unwrap()
        .1;
    let marker = b
        .store
        .path()
        .join("v1/steps")
        .join(image_key)
        .join("tree/etc/marker");
    assert_eq!(fs_err::read_to_string(marker).unwrap(), "built here\n");
    // `cache verify` accepts what was published from the registry.
    b.ok(&["cache", "verify"]);
}

#[test]
fn unsigned_and_wrongly_signed_step_outputs_are_refused() {
    let f = Fixture::new();
    let reg = Registry::start(Auth::None);
    f.build_a();
    let unsigned = reg.cache("unsigned");
    let other = reg.cache("other-key");
    f.a.ok(&["cache", "push", &unsigned]);
    f.a.ok(&["cache", "push", &other, "--key", &f.key("other.key")]);

    for (cache, expected) in [
        (&unsigned, "it is not signed"),
        (&other, "no trusted key signed it"),
    ] {
        let c = f.machine();
        let stderr = c.ok(&[
            "cache",
            "pull",
            cache,
            "--cache-key",
            &f.key("trusted.key.pub"),
        ]);
        assert!(
            stderr.contains("refused the output of img/image") && stderr.contains(expected),
            "{cache}: {stderr}"
        );
        assert!(store_steps(&c).is_empty(), "{cache}: {:?}", store_steps(&c));
        // Pinned files are checked by their hash: any cache may serve them.
        assert_eq!(store_blobs(&c), pinned(&f.a));
    }
    // The wrong key is named by its id.
    let c = f.machine();
    let stderr = c.ok(&[
        "cache",
        "pull",
        &other,
        "--cache-key",
        &f.key("trusted.key.pub"),
    ]);
    assert!(stderr.contains("was made by the key"), "{stderr}");

    // Trusting the key that signed: accepted.
    let d = f.machine();
    // (the cache and the key named by hermetic.toml's [cache] table)
    fs_err::copy(f.key("other.key.pub"), d.path("ci-cache.pub")).unwrap();
    let mut config = fs_err::read_to_string(d.path("hermetic.toml")).unwrap();
    config.push_str(&format!(
        "[cache]\nurls = [\"{other}\"]\ntrusted-keys = [\"ci-cache.pub\"]\n"
    ));
    fs_err::write(d.path("hermetic.toml"), config).unwrap();
    d.ok(&["cache", "pull"]);
    assert_eq!(store_steps(&d).len(), 4);

    // Signed, but its layer damaged in the registry: refused, named; the others are taken.
    let image_key = f
        .plan(&f.a)
        .into_iter()
        .find(|(s, _)| s == "img/image")
        .unwrap()
        .1;
    let link = reg
        .root
        .path()
        .join("data/docker/registry/v2/repositories/other-key/_manifests/tags")
        .join(format!("step-{image_key}"))
        .join("current/link");
    let manifest_digest = fs_err::read_to_string(link).unwrap();
    let manifest_hex = manifest_digest.trim().strip_prefix("sha256:").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs_err::read(reg.blob_data(manifest_hex)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let layer_hex = layer.strip_prefix("sha256:").unwrap();
    let data = reg.blob_data(layer_hex);
    let mut bytes = fs_err::read(&data).unwrap();
    let at = bytes.len() - 2000;
    bytes[at] ^= 0x01;
    fs_err::write(&data, &bytes).unwrap();
    // (the cache and the key named by the environment)
    let e = f.machine();
    let out = e
        .command(&["cache", "pull"])
        .env("HERMETIC_CACHES", &other)
        .env("HERMETIC_CACHE_KEYS", f.key("other.key.pub"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("refused the output of img/image")
            && stderr.contains(layer_hex)
            && stderr.contains("not the signed one"),
        "{stderr}"
    );
    let steps = store_steps(&e);
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert!(!steps.contains(&image_key));
}

/// The key of step `name` in `p`'s plan.
fn step_key(f: &Fixture, p: &TestProject, name: &str) -> String {
    f.plan(p)
        .into_iter()
        .find(|(s, _)| s == name)
        .unwrap_or_else(|| panic!("no step {name}"))
        .1
}

/// `/etc/marker` of the image step `key` in `p`'s store.
fn marker(p: &TestProject, key: &str) -> String {
    let path = p.store.path().join("v1/steps").join(key);
    fs_err::read_to_string(path.join("tree/etc/marker")).unwrap()
}

/// Another machine that built `rootfs` and `tools` itself (the same fake trees as A's) and
/// lacks the image and output steps.
fn machine_with_own_base(f: &Fixture) -> TestProject {
    let b = f.machine();
    for (step, k) in f.plan(&b) {
        if step.ends_with("/rootfs") || step.ends_with("/tools") {
            f.fake_step(&b, &k);
        }
    }
    b
}

#[test]
fn rebuild_verifies_an_unsigned_cached_output_by_building_it_here() {
    let f = Fixture::new();
    let reg = Registry::start(Auth::None);
    let built_a = f.build_a();
    let unsigned = reg.cache("unsigned");
    f.a.ok(&["cache", "push", &unsigned]);

    // B rebuilds the image and output steps; A's unsigned outputs are what they are compared with.
    let b = machine_with_own_base(&f);
    let (report, stderr) = json_err(
        &b,
        &[
            "build",
            "img",
            "--rebuild=img/image,img/output",
            "--cache",
            &unsigned,
        ],
        &[],
    );
    let rebuilt: Vec<_> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), &s["state"]))
        .collect();
    for (name, state) in &rebuilt {
        if name.ends_with("/rootfs") || name.ends_with("/tools") {
            assert_eq!(state.as_str(), Some("cached"), "{name}: {state}\n{stderr}");
        } else {
            assert_eq!(
                state["verified"]["cache"].as_str(),
                Some(unsigned.as_str()),
                "{name}: {state}\n{stderr}"
            );
            assert_eq!(state["verified"]["trust"], "unsigned", "{name}: {state}");
        }
    }
    assert_eq!(rebuilt.len(), 4, "{report}");
    assert!(
        stderr.contains("pulling  img/image")
            && stderr.contains("unsigned")
            && stderr.contains("to check it by building it here"),
        "{stderr}"
    );
    assert_eq!(output_hash(&b, &report), built_a);
    // The local output is the one stored, and it holds what the step wrote here.
    let image = step_key(&f, &b, "img/image");
    assert_eq!(marker(&b, &image), "built here\n");
    b.ok(&["cache", "verify"]);

    // A signed one is checked the same way under --rebuild; the signer is named.
    let signed = reg.cache("signed");
    f.a.ok(&["cache", "push", &signed, "--key", &f.key("trusted.key")]);
    let c = machine_with_own_base(&f);
    let trusted = f.key("trusted.key.pub");
    let (report, _) = json_err(
        &c,
        &[
            "build",
            "img",
            "--rebuild=img/image",
            "--cache",
            &signed,
            "--cache-key",
            &trusted,
        ],
        &[],
    );
    let image_state = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "img/image")
        .unwrap()["state"]
        .clone();
    assert_eq!(
        image_state["verified"]["trust"].as_str(),
        Some(format!("signed by {trusted}").as_str()),
        "{image_state}"
    );
    // (the output step, not rebuilt, is taken as signed)
    assert!(
        states(&report).contains(&("img/output".to_string(), "cached".to_string())),
        "{report}"
    );

    // A step the recipe does not have is named.
    let err = c.fails(&["build", "img", "--rebuild=img/kernel"]);
    assert!(
        err.contains("no step img/kernel") && err.contains("img/image"),
        "{err}"
    );
}

#[test]
fn rebuild_names_the_step_cache_and_file_of_a_tampered_cached_output() {
    let f = Fixture::new();
    let reg = Registry::start(Auth::None);
    let built_a = f.build_a();
    // The pusher serves an image step whose output is not what the step makes: a consistent
    // manifest and layer, unsigned.
    let image = step_key(&f, &f.a, "img/image");
    let entry = f.a.store.path().join("v1/steps").join(&image);
    fs_err::write(entry.join("tree/etc/marker"), "built elsewhere\n").unwrap();
    let tampered = reg.cache("tampered");
    f.a.ok(&["cache", "push", &tampered]);

    let b = machine_with_own_base(&f);
    let out = b
        .command(&["build", "img", "--rebuild=img/image", "--cache", &tampered])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit status 4: built, not bit-identical.
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "img/image: the rebuild differs from the output of cache {tampered} (unsigned), first at tree/etc/marker"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("the rebuild is NOT identical"), "{stderr}");
    assert!(
        stderr.contains("and 1 step outputs to check by rebuilding"),
        "{stderr}"
    );
    // The cache's output is kept to look at; the store has the one built here, and the image
    // is the one A built.
    let kept = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("the output of cache {tampered} is kept at "))
        })
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(
        fs_err::read_to_string(Path::new(kept).join("tree/etc/marker")).unwrap(),
        "built elsewhere\n"
    );
    assert_eq!(marker(&b, &image), "built here\n");
    let sums = fs_err::read_to_string(b.path("out/SHA256SUMS")).unwrap();
    assert!(sums.contains(&built_a), "{sums}");
}

#[test]
fn a_corrupt_blob_in_the_registry_is_refused_and_the_mirror_used() {
    let f = Fixture::new();
    let reg = Registry::start(Auth::None);
    let cache = reg.cache("corrupt");
    f.a.ok(&["fetch"]);
    f.a.ok(&["cache", "push", &cache]);
    // Damage the largest pinned file in the registry's storage (same length, other bytes).
    let (victim, _) = pinned(&f.a)
        .into_iter()
        .map(|h| {
            let n = fs_err::metadata(f.a.blob(&h)).unwrap().len();
            (h, n)
        })
        .max_by_key(|(_, n)| *n)
        .unwrap();
    let data = reg.blob_data(&victim);
    let mut bytes = fs_err::read(&data).unwrap();
    bytes[100] ^= 0xff;
    fs_err::write(&data, &bytes).unwrap();

    let c = f.machine();
    let before = f.server.log().len();
    let (summary, stderr) = json_err(&c, &["fetch", "--cache", &cache], &[]);
    assert!(
        stderr.contains("refused") && stderr.contains(&format!("sha256:{victim}")),
        "{stderr}"
    );
    // One request to the mirror: the refused file; every other pin came from the registry.
    assert_eq!(summary["requests"], 1, "{summary}");
    let asked: Vec<String> = f.server.log()[before..].to_vec();
    assert!(!asked.is_empty());
    assert!(
        asked.iter().all(|p| p == &asked[0]),
        "the mirror was asked for more than the refused file: {asked:?}"
    );
    assert_eq!(store_blobs(&c), pinned(&f.a));
    let good = fs_err::read(c.blob(&victim)).unwrap();
    assert_eq!(sha256_hex(&good), victim);

    // A cache that cannot be reached costs one warning; the mirror serves every pin.
    let d = f.machine();
    let closed = format!("127.0.0.1:{}/gone", free_port());
    let (summary, stderr) = json_err(&d, &["fetch", "--cache", &closed], &[]);
    assert_eq!(
        stderr.matches("is not asked again in this run").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains(&closed), "{stderr}");
    assert_eq!(
        summary["fetched"].as_u64().unwrap(),
        pinned(&f.a).len() as u64
    );
}

#[test]
fn an_interrupted_push_resumes_without_sending_finished_blobs_again() {
    let f = Fixture::new();
    let reg = Registry::start(Auth::None);
    let repo = "resume";
    let cache = reg.cache(repo);
    f.build_a();
    // Small chunks: the 2 MiB pin and the step archives take hundreds of PATCH requests.
    let mut child =
        f.a.command(&["cache", "push", &cache])
            .env("HERMETIC_CACHE_CHUNK_SIZE", "4096")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let start = Instant::now();
    loop {
        let patches = reg.log_text().matches("\"PATCH /v2/resume/").count();
        if patches >= 40 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push finished before it could be interrupted"
        );
        assert!(start.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(5));
    }
    // kill -9 mid-upload.
    nix_kill(child.id());
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let first = reg.log_text();
    let first_lines: Vec<&str> = first.lines().collect();
    let finished_first: BTreeSet<String> = Registry::completed_uploads(&first_lines, repo)
        .into_iter()
        .collect();

    let (report, _) = json_err(
        &f.a,
        &["cache", "push", &cache],
        &[("HERMETIC_CACHE_CHUNK_SIZE", "65536")],
    );
    let all = reg.log_text();
    let second_lines: Vec<&str> = all.lines().skip(first_lines.len()).collect();
    let finished_second = Registry::completed_uploads(&second_lines, repo);
    for d in &finished_second {
        assert!(
            !finished_first.contains(d),
            "blob {d} was uploaded again after its upload had finished"
        );
    }
    let unique: BTreeSet<&String> = finished_second.iter().collect();
    assert_eq!(
        unique.len(),
        finished_second.len(),
        "a blob was uploaded twice"
    );
    // The session the killed push left open was asked how far it got. distribution answers
    // 204 with its Range when the kill fell between two chunks; when it fell inside a chunk
    // the registry holds bytes its session token does not account for and refuses the
    // session (404): then the blob is sent again from the start, in a new session.
    let asked: Vec<&&str> = second_lines
        .iter()
        .filter(|l| l.contains("\"GET /v2/resume/blobs/uploads/"))
        .collect();
    assert!(
        !asked.is_empty(),
        "the upload session of the killed push was not asked where it stopped"
    );
    if asked.iter().any(|l| l.contains("\" 204 ")) {
        assert!(report["blobs_resumed"].as_u64().unwrap() >= 1, "{report}");
    } else {
        assert_eq!(report["blobs_resumed"], 0, "{report}");
    }
    let pinned_n = pinned(&f.a).len() as u64;
    assert_eq!(
        report["blobs_present"].as_u64().unwrap() + report["blobs_pushed"].as_u64().unwrap(),
        pinned_n,
        "{report}"
    );
    assert_eq!(report["steps_failed"], 0);
    // Everything is there now: a third push sends nothing.
    let (third, _) = json_err(&f.a, &["cache", "push", &cache], &[]);
    assert_eq!(third["blobs_pushed"], 0, "{third}");
    assert_eq!(third["steps_pushed"], 0, "{third}");
    // And what was resumed is whole: another machine gets every pin by its hash.
    let c = f.machine();
    let before = f.server.requests();
    c.ok(&["fetch", "--cache", &cache]);
    assert_eq!(store_blobs(&c), pinned(&f.a));
    assert_eq!(f.server.requests(), before, "the mirror was asked");
}

/// `hermetic cache push CACHE` as user `ci` with a wrong password: fails; its stderr.
fn push_with_wrong_password(p: &TestProject, cache: &str) -> String {
    let out = p
        .command(&["cache", "push", cache])
        .env("HERMETIC_REGISTRY_USER", "ci")
        .env("HERMETIC_REGISTRY_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn nix_kill(pid: u32) {
    let status = Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn basic_auth_takes_credentials_from_the_environment_or_the_docker_config() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "ci", "s3cret"])
        .output()
        .expect("htpasswd (apache2-utils) is needed");
    assert!(out.status.success());
    fs_err::write(&htpasswd, &out.stdout).unwrap();
    let reg = Registry::start(Auth::Basic(htpasswd));
    let cache = reg.cache("private");
    f.a.ok(&["fetch"]);

    let stderr = f.a.fails(&["cache", "push", &cache]);
    assert!(
        stderr.contains("asks for a user name and password") && stderr.contains("hint:"),
        "{stderr}"
    );
    let stderr = push_with_wrong_password(&f.a, &cache);
    assert!(
        stderr.contains("refused access") && stderr.contains("as ci"),
        "{stderr}"
    );

    json_err(
        &f.a,
        &["cache", "push", &cache],
        &[
            ("HERMETIC_REGISTRY_USER", "ci"),
            ("HERMETIC_REGISTRY_PASSWORD", "s3cret"),
        ],
    );
    // Another machine logged in with `docker login`: ~/.docker/config.json.
    let docker = tempfile::tempdir().unwrap();
    let auth = base64_encode(b"ci:s3cret");
    fs_err::write(
        docker.path().join("config.json"),
        format!(
            r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{auth}"}}}}}}"#,
            reg.port
        ),
    )
    .unwrap();
    let c = f.machine();
    let before = f.server.requests();
    let mut cmd = c.command(&["fetch", "--cache", &cache]);
    cmd.env("DOCKER_CONFIG", docker.path())
        .env_remove("HERMETIC_REGISTRY_USER");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(store_blobs(&c), pinned(&f.a));
    assert_eq!(f.server.requests(), before, "the mirror was asked");
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A token service for the registry's `auth.token` realm: answers every GET with a JWT
/// (RS256, its certificate in `x5c`) granting pull and push on `repo`, signed with the
/// `openssl` command; refuses (401) a request whose basic credentials are not `ci:s3cret`
/// (and gives anonymous requests a token too, as a public registry does). Records the
/// request lines.
struct TokenService {
    port: u16,
    seen: Seen,
    bundle: PathBuf,
    _dir: tempfile::TempDir,
}

const SERVICE: &str = "hermetic-test-registry";

/// The request paths a token service saw, with their `Authorization` header.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

impl TokenService {
    fn start(repo: &str) -> TokenService {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            ])
            .arg("/CN=hermetic test token issuer")
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl is needed");
        assert!(ok.success());
        let pem = fs_err::read_to_string(&cert).unwrap();
        let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = format!(r#"{{"typ":"JWT","alg":"RS256","x5c":["{der_b64}"]}}"#);
        let claims = format!(
            r#"{{"iss":"hermetic-test","sub":"ci","aud":"{SERVICE}","exp":{},"nbf":{},"iat":{},"jti":"1","access":[{{"type":"repository","name":"{repo}","actions":["pull","push"]}}]}}"#,
            now + 3600,
            now - 60,
            now - 60
        );
        let signing_input = format!(
            "{}.{}",
            base64url(header.as_bytes()),
            base64url(claims.as_bytes())
        );
        let input_file = dir.path().join("input");
        fs_err::write(&input_file, &signing_input).unwrap();
        let sig = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&key)
            .arg(&input_file)
            .output()
            .unwrap();
        assert!(sig.status.success());
        let token = format!("{signing_input}.{}", base64url(&sig.stdout));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let good = format!("Basic {}", base64_encode(b"ci:s3cret"));
        std::thread::spawn(move || {
            use std::io::{BufRead as _, Write as _};
            for stream in listener.incoming().flatten() {
                let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                let mut auth = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("authorization")
                    {
                        auth = Some(v.trim().to_string());
                    }
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let refused = auth.as_ref().is_some_and(|a| *a != good);
                log.lock().unwrap().push((path, auth));
                let mut stream = stream;
                let body = if refused {
                    String::from("{\"details\":\"bad credentials\"}")
                } else {
                    format!("{{\"token\":\"{token}\"}}")
                };
                let status = if refused {
                    "401 Unauthorized"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenService {
            port,
            seen,
            bundle: cert,
            _dir: dir,
        }
    }

    fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
}

fn base64url(data: &[u8]) -> String {
    base64_encode(data)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

#[test]
fn bearer_tokens_come_from_the_realm_the_registry_names() {
    let f = Fixture::new();
    let tokens = TokenService::start("tok");
    let reg = Registry::start(Auth::Token(
        tokens.realm(),
        SERVICE.into(),
        tokens.bundle.clone(),
    ));
    let cache = reg.cache("tok");
    f.build_a();

    // Wrong credentials: the token service refuses, and the error says whose.
    let stderr = push_with_wrong_password(&f.a, &cache);
    assert!(
        stderr.contains(&tokens.realm())
            && stderr.contains("HTTP status 401")
            && stderr.contains("as ci"),
        "{stderr}"
    );

    let (report, _) = json_err(
        &f.a,
        &["cache", "push", &cache, "--key", &f.key("trusted.key")],
        &[
            ("HERMETIC_REGISTRY_USER", "ci"),
            ("HERMETIC_REGISTRY_PASSWORD", "s3cret"),
        ],
    );
    assert_eq!(report["steps_pushed"], 4, "{report}");
    let seen = tokens.seen.lock().unwrap().clone();
    let good = format!("Basic {}", base64_encode(b"ci:s3cret"));
    assert!(
        seen.iter()
            .any(|(path, auth)| path.contains(&format!("service={SERVICE}"))
                && path.contains("scope=repository%3Atok%3Apull%2Cpush")
                && auth.as_deref() == Some(good.as_str())),
        "{seen:?}"
    );

    // Another machine pulls anonymously (the token service gives pull tokens to anyone).
    let b = f.machine();
    let before = tokens.seen.lock().unwrap().len();
    build_from_cache(&f, &b, &cache);
    let seen = tokens.seen.lock().unwrap().clone();
    assert!(
        seen[before..]
            .iter()
            .any(|(path, auth)| path.contains("scope=repository%3Atok%3Apull") && auth.is_none()),
        "{seen:?}"
    );
}
