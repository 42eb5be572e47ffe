//! The resolver against real apt on the real archive.
//!
//! Downloads trixie's and trixie-security's `main/binary-amd64/Packages.xz` from the mirror
//! this machine's apt configuration names, resolves the base set of a VM image with the
//! essential/required bootstrap base, and compares the result with what `apt-get install
//! --simulate --no-install-recommends` computes for the same request on an empty dpkg status,
//! in a private apt configuration that sees only trixie and trixie-security. Nothing here
//! names a version: the archive moves every week, the comparison does not care.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hermetic::debian::{PackageIndex, ResolveOptions, deb822, resolve};

const BASE: &[&str] = &[
    "ca-certificates",
    "e2fsprogs",
    "iproute2",
    "kmod",
    "openssl",
    "procps",
    "systemd",
    "systemd-boot-efi",
    "udhcpc",
    "util-linux",
];

/// The mirror URIs of this machine's apt configuration: (main archive, security archive).
fn mirrors() -> (String, String) {
    let mut uris = Vec::new();
    let dir = Path::new("/etc/apt/sources.list.d");
    if let Ok(entries) = fs_err::read_dir(dir) {
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "sources"))
        {
            let text = fs_err::read_to_string(f).unwrap();
            for line in text.lines() {
                if let Some(rest) = line.trim().strip_prefix("URIs:") {
                    uris.extend(rest.split_whitespace().map(str::to_string));
                }
            }
        }
    }
    if let Ok(text) = fs_err::read_to_string("/etc/apt/sources.list") {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.first() == Some(&"deb") {
                // `deb [options] URI suite components`
                if let Some(uri) = words[1..].iter().find(|w| w.contains("://")) {
                    uris.push(uri.to_string());
                }
            }
        }
    }
    let uris: Vec<String> = uris
        .into_iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect();
    let security = uris
        .iter()
        .find(|u| u.ends_with("debian-security"))
        .cloned();
    let main = uris
        .iter()
        .find(|u| !u.ends_with("debian-security"))
        .cloned()
        .expect(
            "no Debian mirror URI in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list",
        );
    let security = security.unwrap_or_else(|| format!("{main}-security"));
    (main, security)
}

/// Downloads and decompresses one `Packages.xz`.
fn packages(agent: &ureq::Agent, uri: &str, suite: &str) -> String {
    let url = format!("{uri}/dists/{suite}/main/binary-amd64/Packages.xz");
    let response = agent
        .get(&url)
        .call()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let mut text = String::new();
    liblzma::read::XzDecoder::new(response.into_body().into_reader())
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    text
}

/// Runs apt-get (or apt-cache) with the private configuration; returns stdout.
fn apt(config: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .env("APT_CONFIG", config)
        .env("LC_ALL", "C")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A private apt: its own state, cache, sources (trixie + trixie-security only) and an empty
/// dpkg status, so the host's bookworm configuration does not leak in.
struct PrivateApt {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl PrivateApt {
    fn new(main: &str, security: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["state/lists/partial", "cache/archives/partial", "empty"] {
            fs_err::create_dir_all(d.join(sub)).unwrap();
        }
        fs_err::write(d.join("state/status"), "").unwrap();
        fs_err::write(
            d.join("sources.list"),
            format!(
                "deb [arch=amd64 trusted=yes] {main} trixie main\n\
                 deb [arch=amd64 trusted=yes] {security} trixie-security main\n"
            ),
        )
        .unwrap();
        let p = |s: &str| d.join(s).display().to_string();
        let config = d.join("apt.conf");
        fs_err::write(
            &config,
            format!(
                "Dir::Etc::Parts \"{empty}\";\n\
                 Dir::Etc::main \"/dev/null\";\n\
                 Dir::State \"{state}\";\n\
                 Dir::State::status \"{status}\";\n\
                 Dir::Cache \"{cache}\";\n\
                 Dir::Etc::SourceList \"{sources}\";\n\
                 Dir::Etc::SourceParts \"{empty}\";\n\
                 Dir::Etc::Preferences \"/dev/null\";\n\
                 Dir::Etc::PreferencesParts \"{empty}\";\n\
                 Dir::Etc::Trusted \"/usr/share/keyrings/debian-archive-keyring.gpg\";\n\
                 APT::Architecture \"amd64\";\n\
                 APT::Architectures {{ \"amd64\"; }};\n\
                 Debug::NoLocking \"1\";\n\
                 Acquire::Languages \"none\";\n\
                 Acquire::GzipIndexes \"false\";\n\
                 Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled \"false\";\n",
                empty = p("empty"),
                state = p("state"),
                status = p("state/status"),
                cache = p("cache"),
                sources = p("sources.list"),
            ),
        )
        .unwrap();
        PrivateApt { dir, config }
    }

    /// `apt-get update`, then the Packages text apt stored for `suite`.
    fn update(&self) {
        apt(&self.config, "apt-get", &["update", "-q"]);
    }

    fn list(&self, suite: &str) -> String {
        let suffix = format!("_dists_{suite}_main_binary-amd64_Packages");
        let lists = self.dir.path().join("state/lists");
        let file = fs_err::read_dir(&lists)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(&suffix))
            .unwrap_or_else(|| {
                panic!(
                    "apt stored no list ending in {suffix} in {}",
                    lists.display()
                )
            });
        fs_err::read_to_string(file).unwrap()
    }
}

/// The `Inst name (version ...)` lines of a simulation, as name -> version.
fn inst_lines(output: &str) -> BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().unwrap().to_string();
            let version = words.next().unwrap().trim_start_matches('(').to_string();
            (name, version)
        })
        .collect()
}

#[test]
fn base_set_matches_apt() {
    let (main, security) = mirrors();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into();
    let apt_env = PrivateApt::new(&main, &security);

    // The mirror may publish between our download and apt's: retry until both saw the same.
    let mut attempt = 0;
    let (main_text, security_text) = loop {
        attempt += 1;
        let m = packages(&agent, &main, "trixie");
        let s = packages(&agent, &security, "trixie-security");
        apt_env.update();
        if apt_env.list("trixie") == m && apt_env.list("trixie-security") == s {
            break (m, s);
        }
        assert!(
            attempt < 3,
            "the mirror kept changing while the test downloaded its indexes"
        );
    };

    let started = Instant::now();
    let mut index = PackageIndex::new("amd64");
    index
        .add_packages("trixie", &deb822::parse(&main_text).unwrap())
        .unwrap();
    index
        .add_packages("trixie-security", &deb822::parse(&security_text).unwrap())
        .unwrap();
    let requests: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
    let ours = resolve(
        &index,
        &requests,
        &ResolveOptions {
            include_essential: true,
            ..Default::default()
        },
    )
    .unwrap();
    eprintln!(
        "indexed {} packages and resolved {} in {:?}",
        index.len(),
        ours.packages.len(),
        started.elapsed()
    );
    let ours: BTreeMap<String, String> = ours
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.to_string()))
        .collect();

    // apt's own idea of the essential/required base: every name that has such a paragraph
    // anywhere, kept when apt's candidate version is essential or required.
    let mut maybe_base = BTreeSet::new();
    for text in [&main_text, &security_text] {
        for para in text.split("\n\n") {
            let field = |f: &str| {
                para.lines()
                    .find_map(|l| l.strip_prefix(f).map(|v| v.trim().to_string()))
            };
            if field("Essential:").as_deref() == Some("yes")
                || field("Priority:").as_deref() == Some("required")
            {
                maybe_base.insert(field("Package:").unwrap());
            }
        }
    }
    let mut show_args = vec!["show", "--no-all-versions"];
    show_args.extend(maybe_base.iter().map(String::as_str));
    let shown = apt(&apt_env.config, "apt-cache", &show_args);
    let mut base: Vec<String> = Vec::new();
    for para in shown.split("\n\n") {
        let has = |l: &str| para.lines().any(|x| x == l);
        if has("Essential: yes") || has("Priority: required") {
            let name = para
                .lines()
                .find_map(|l| l.strip_prefix("Package: "))
                .unwrap();
            base.push(name.to_string());
        }
    }
    assert!(
        base.len() > 10,
        "apt found only {base:?} as the essential base"
    );

    let mut install = vec!["install", "-s", "-q", "--no-install-recommends"];
    install.extend(BASE);
    install.extend(base.iter().map(String::as_str));
    let theirs = inst_lines(&apt(&apt_env.config, "apt-get", &install));
    assert!(theirs.len() > BASE.len(), "apt installs nothing?");

    let mut report = String::new();
    for (name, version) in &ours {
        match theirs.get(name) {
            None => report.push_str(&format!("  only hermetic: {name} {version}\n")),
            Some(v) if v != version => {
                report.push_str(&format!("  version: {name} hermetic {version}, apt {v}\n"))
            }
            Some(_) => {}
        }
    }
    for (name, version) in &theirs {
        if !ours.contains_key(name) {
            report.push_str(&format!("  only apt: {name} {version}\n"));
        }
    }
    assert!(
        report.is_empty(),
        "hermetic and apt disagree on the base set ({} vs {} packages):\n{report}",
        ours.len(),
        theirs.len()
    );
}
