//! `hermetic why PKG [TARGET]`: chains of dependencies, from pins.lock alone.

mod support;

use std::path::Path;
use std::process::Command;

use support::{TestArchive, TestKey, TestProject, TestServer, standard_suites};

/// `hermetic -C dir --json why ARGS` with every network source a closed port.
fn why_json(dir: &Path, args: &[&str]) -> (bool, serde_json::Value, String) {
    let store = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .arg("-C")
        .arg(dir)
        .arg("--store")
        .arg(store.path())
        .arg("--json")
        .arg("why")
        .args(args)
        .env("HERMETIC_MIRRORS", "http://127.0.0.1:9/")
        .env("HERMETIC_SNAPSHOT_URL", "")
        .env("HERMETIC_APT_ROOT", store.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn chains(v: &serde_json::Value, closure: &str) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .find(|w| w["closure"] == closure)
        .unwrap_or_else(|| panic!("no closure {closure} in {v}"))["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let p: Vec<&str> = c["packages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect();
            (c["root"].as_str().unwrap().to_string(), p.join(" -> "))
        })
        .collect()
}

#[test]
fn why_names_the_chains_from_the_requests_and_the_essential_base() {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let p = TestProject::new(
        &[(
            "base",
            "packages = [\"app\"]\nbuild-packages = [\"tool\"]\n",
        )],
        &server,
        &key.keyring,
    );
    p.ok(&["lock"]);
    let before = server.requests();
    let (ok, v, err) = why_json(p.dir.path(), &["libc6", "base"]);
    assert!(ok, "{err}");
    assert_eq!(server.requests(), before, "why used the network");
    let image = chains(&v, "base");
    assert!(
        image.contains(&("requested".into(), "app -> libfoo -> libc6".into())),
        "{image:?}"
    );
    assert!(
        image.contains(&("essential".into(), "dash -> libc6".into())),
        "{image:?}"
    );
    // The alternative not taken (libbar) and packages that do not reach libc6 are absent.
    assert!(
        image.iter().all(|(_, c)| !c.contains("libbar")),
        "{image:?}"
    );
    assert!(image.iter().all(|(_, c)| !c.starts_with("base-files")));
    let tools = chains(&v, "base:build");
    assert!(
        tools.contains(&("requested".into(), "tool -> libc6".into())),
        "{tools:?}"
    );
    // One closure tag only.
    let (ok, v, err) = why_json(p.dir.path(), &["libfoo", "base:build"]);
    assert!(!ok, "{v}");
    assert!(
        err.contains("no closure of `base:build` pins `libfoo`"),
        "{err}"
    );
    assert!(err.contains("it is pinned in base"), "{err}");
    // Text output.
    let out = p.command(&["why", "libfoo"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("libfoo 1.1-1~deb13u1 is in `base` (image of `base`):"),
        "{text}"
    );
    assert!(text.contains("requested:  app -> libfoo"), "{text}");
    // Unknown package and target.
    let (ok, _, err) = why_json(p.dir.path(), &["nosuch"]);
    assert!(!ok);
    assert!(err.contains("`nosuch` is not in pins.lock"), "{err}");
    let (ok, _, err) = why_json(p.dir.path(), &["libc6", "nosuch"]);
    assert!(!ok);
    assert!(err.contains("`nosuch` is neither a recipe"), "{err}");
}

#[test]
fn why_on_the_committed_project_follows_recorded_relations() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lock = fs_err::read_to_string(repo.join("pins.lock")).unwrap();
    let (ok, v, err) = why_json(repo, &["libzstd1", "gcp"]);
    assert!(ok, "{err}");
    let image = chains(&v, "gcp");
    assert!(!image.is_empty());
    // gcp's requests, from its [[recipe]] table.
    let recipe = lock
        .split("\n[[")
        .find(|b| b.starts_with("recipe]]\nname = \"gcp\"\n"))
        .unwrap();
    let requested = recipe
        .lines()
        .find_map(|l| l.strip_prefix("packages = "))
        .unwrap();
    for (root, chain) in &image {
        let names: Vec<&str> = chain.split(" -> ").collect();
        assert_eq!(names.last(), Some(&"libzstd1"), "{chain}");
        if root == "requested" {
            assert!(requested.contains(&format!("\"{}\"", names[0])), "{chain}");
        }
        // Each step is a recorded Depends or Pre-Depends of the previous pin.
        for pair in names.windows(2) {
            let block = lock
                .split("\n[[")
                .find(|b| {
                    b.starts_with("package]]")
                        && b.contains(&format!("\nname = \"{}\"\n", pair[0]))
                        && b.contains("\"gcp\"")
                })
                .unwrap_or_else(|| panic!("{} not pinned for gcp", pair[0]));
            let rels: String = block
                .lines()
                .filter(|l| l.starts_with("depends = ") || l.starts_with("pre-depends = "))
                .collect();
            assert!(
                rels.split([',', '|', '"', ' '])
                    .any(|w| w == pair[1] || w.strip_suffix(":any") == Some(pair[1])),
                "{} does not depend on {} ({rels})",
                pair[0],
                pair[1]
            );
        }
    }
    assert!(
        image.contains(&("essential".into(), "dpkg -> libzstd1".into())),
        "{image:?}"
    );
}
