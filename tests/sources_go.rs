//! Go modules pinned by their go.sum `h1:` hashes, with the host's real `go` (Debian's
//! golang-go): the test packs three modules itself (zips in the layout Go expects), serves
//! them as a GOPROXY on 127.0.0.1, and lets `go mod tidy` write the program's go.sum. Then
//! hermetic checks its own `h1:` against go's, fetches the modules into a store, lays out
//! the module cache, and `go build` runs twice in the sandbox (no network, GOPROXY=off, the
//! host's /usr read-only) at different paths: the binaries must be identical. The same for a
//! vendored copy (`go mod vendor`); a tampered zip on the proxy is refused by name.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use hermetic::http::Http;
use hermetic::sources::gomod::{
    GoBuild, GoModError, GoModule, GoModules, escape_path, fetch_modules, go_build_plan,
    go_modules, h1_go_mod, h1_zip, zip_key,
};
use hermetic::store::Store;
use support::TestServer;
use support::go::{GO, host_go, pack_zip, packed_modules, tar_gz_of, write_program, write_proxy};

/// The test's world: the proxy tree and its server, the program with its go.sum written by
/// `go mod tidy`.
struct Fixture {
    dir: tempfile::TempDir,
    server: TestServer,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        write_proxy(&dir.path().join("proxy"));
        let server = TestServer::start(&dir.path().join("proxy"));
        let f = Fixture { dir, server };
        write_program(&f.program());
        fs_err::create_dir(f.path("host-go")).unwrap();
        host_go(
            &f.program(),
            &f.path("host-go"),
            &f.proxy(),
            &["mod", "tidy"],
        );
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn program(&self) -> PathBuf {
        self.path("program")
    }

    fn proxy(&self) -> String {
        self.server.url().trim_end_matches('/').to_string()
    }

    fn proxied(&self) -> Vec<GoModule> {
        match go_modules(&self.program()).unwrap() {
            GoModules::Proxy { modules } => modules,
            other => panic!("expected proxy modules, got {other:?}"),
        }
    }
}

/// One `go build` in the sandbox: the tree read-only at `/<tag>-src`, the plan's module
/// cache, a fresh scratch directory, the host's /usr (its `go`) read-only, no network.
/// Gives the binary.
fn sandboxed_build(
    store: &Store,
    modules: &GoModules,
    tree: &Path,
    at: &Path,
    tag: &str,
) -> Vec<u8> {
    let binary = try_sandboxed_build(store, modules, tree, at, tag)
        .unwrap_or_else(|log| panic!("go build failed: {log}"));
    let out = Command::new(&binary).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello, world GO!\n");
    fs_err::read(binary).unwrap()
}

/// [`sandboxed_build`] that may fail: the binary's host path, or the build's log.
fn try_sandboxed_build(
    store: &Store,
    modules: &GoModules,
    tree: &Path,
    at: &Path,
    tag: &str,
) -> Result<PathBuf, String> {
    fs_err::create_dir_all(at).unwrap();
    let mut build = GoBuild::new(&["."], &format!("/{tag}-out/hello"));
    build.go = GO.into();
    build.modcache_dst = format!("/{tag}-modcache").into();
    build.work_dst = format!("/{tag}-work").into();
    let plan = go_build_plan(store, modules, &build, &at.join("modcache")).unwrap();
    assert_eq!(plan.env["GOPROXY"], "off");
    for dir in ["work", "out"] {
        fs_err::create_dir(at.join(dir)).unwrap();
    }
    let mut step = sandbox::Step::new(plan.argv.clone());
    step.mounts = plan.mounts.clone();
    step.mounts.push(sandbox::Mount::ReadOnly {
        src: tree.to_path_buf(),
        dst: format!("/{tag}-src").into(),
    });
    step.mounts.push(sandbox::Mount::Writable {
        src: at.join("work"),
        dst: build.work_dst.clone(),
    });
    step.mounts.push(sandbox::Mount::Writable {
        src: at.join("out"),
        dst: format!("/{tag}-out").into(),
    });
    step.env = plan.env.clone();
    step.cwd = format!("/{tag}-src").into();
    step.network = sandbox::Network::None;
    step.output = sandbox::Output::LogOnly;
    step.log = Some(at.join("build.log"));
    let outcome = sandbox::run(&step).unwrap();
    if !outcome.success() {
        return Err(fs_err::read_to_string(at.join("build.log")).unwrap_or_default());
    }
    Ok(at.join("out/hello"))
}

fn copy_tree(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for e in fs_err::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            fs_err::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn our_h1_is_gos_and_proxied_modules_build_identically_offline() {
    let f = Fixture::new();
    let modules = f.proxied();
    // go.sum as go wrote it: a zip and a go.mod hash for each of the three modules.
    assert_eq!(modules.len(), 3, "{modules:?}");
    for m in &modules {
        let dir = f.path("proxy").join(escape_path(&m.path)).join("@v");
        let zip = fs_err::File::open(dir.join(format!("{}.zip", m.version))).unwrap();
        assert_eq!(
            m.h1.as_deref(),
            Some(h1_zip(zip).unwrap().as_str()),
            "{m:?}"
        );
        let go_mod = fs_err::read(dir.join(format!("{}.mod", m.version))).unwrap();
        assert_eq!(
            m.mod_h1.as_deref(),
            Some(h1_go_mod(&go_mod).as_str()),
            "{m:?}"
        );
    }

    let store = Store::open(&f.path("store")).unwrap();
    let fetched = fetch_modules(&store, &Http::new(), &modules, &f.proxy()).unwrap();
    assert_eq!((fetched.fetched, fetched.already), (6, 0));
    let requests = f.server.requests();
    let again = fetch_modules(&store, &Http::new(), &modules, &f.proxy()).unwrap();
    assert_eq!((again.fetched, again.already), (0, 6));
    assert_eq!(f.server.requests(), requests, "the store had every file");
    // The upper-case module was asked for by its escaped path.
    assert!(
        f.server
            .log()
            .iter()
            .any(|p| p == "/example.com/!upper/caps/@v/v1.2.0.zip"),
        "{:?}",
        f.server.log()
    );

    // Two builds: different host paths for the tree, cache and output, different paths
    // inside the sandbox too.
    // Without the module cache the same build cannot get its modules anywhere (GOPROXY=off,
    // a read-only cache, no network in the sandbox): go tries and fails.
    let served = f.server.requests();
    let none = GoModules::Proxy {
        modules: Vec::new(),
    };
    let log = try_sandboxed_build(&store, &none, &f.program(), &f.path("empty"), "e")
        .expect_err("built without its modules");
    assert!(log.contains("example.com/greet"), "{log}");
    assert!(!f.path("empty/out/hello").exists());

    let proxied = GoModules::Proxy { modules };
    let tree_b = f.path("elsewhere/deeper/program");
    copy_tree(&f.program(), &tree_b);
    let a = sandboxed_build(&store, &proxied, &f.program(), &f.path("build-a"), "a");
    let b = sandboxed_build(&store, &proxied, &tree_b, &f.path("b/build"), "bb");
    assert_eq!(f.server.requests(), served, "a build reached the proxy");
    assert!(
        a == b,
        "the two builds differ ({} and {} bytes)",
        a.len(),
        b.len()
    );
    for leak in [
        f.dir.path().to_str().unwrap(),
        "/a-src",
        "/bb-src",
        "/a-modcache",
    ] {
        assert!(
            !contains(&a, leak),
            "the binary holds the build path {leak}"
        );
    }
    // The laid-out cache is what go expects: the download cache and the unpacked module.
    let cache = f.path("build-a/modcache");
    assert!(
        cache
            .join("cache/download/example.com/!upper/caps/@v/v1.2.0.ziphash")
            .is_file()
    );
    assert!(
        cache
            .join("example.com/!upper/caps@v1.2.0/caps.go")
            .is_file()
    );
}

#[test]
fn vendored_program_builds_identically_with_no_module_fetched() {
    let f = Fixture::new();
    host_go(
        &f.program(),
        &f.path("host-go"),
        &f.proxy(),
        &["mod", "vendor"],
    );
    let modules = go_modules(&f.program()).unwrap();
    let GoModules::Vendor { vendored } = &modules else {
        panic!("expected vendor mode, got {modules:?}");
    };
    assert_eq!(
        vendored,
        &[
            "example.com/Upper/caps@v1.2.0",
            "example.com/greet@v1.0.0",
            "example.com/strutil@v0.3.0"
        ]
    );
    // An empty store: vendor mode needs nothing from it.
    let store = Store::open(&f.path("store")).unwrap();
    let tree_b = f.path("other/program");
    copy_tree(&f.program(), &tree_b);
    let a = sandboxed_build(&store, &modules, &f.program(), &f.path("va"), "va");
    let b = sandboxed_build(&store, &modules, &tree_b, &f.path("x/vb"), "vb");
    assert!(a == b, "the two vendored builds differ");
    assert!(!contains(&a, f.dir.path().to_str().unwrap()));
    assert!(store.steps().unwrap().is_empty(), "nothing was fetched");
}

#[test]
fn tampered_zip_on_the_proxy_is_refused_and_nothing_of_it_stored() {
    let f = Fixture::new();
    let modules = f.proxied();
    // The proxy now serves another greet v1.0.0: a well-formed zip, one file changed.
    let (module, version, go_mod, _) = packed_modules().remove(0);
    let evil = pack_zip(
        module,
        version,
        &go_mod,
        &[(
            "greet.go",
            "package greet\n\nfunc Hello(n string) string { return \"pwned\" }\n",
        )],
    );
    let zip_path = f
        .path("proxy")
        .join(escape_path(module))
        .join(format!("@v/{version}.zip"));
    fs_err::write(&zip_path, &evil).unwrap();

    let store = Store::open(&f.path("store")).unwrap();
    let err = fetch_modules(&store, &Http::new(), &modules, &f.proxy()).unwrap_err();
    let greet = modules.iter().find(|m| m.path == module).unwrap();
    let expected = greet.h1.clone().unwrap();
    let actual = h1_zip(std::io::Cursor::new(&evil)).unwrap();
    match &err {
        GoModError::Mismatch {
            module: m,
            version: v,
            url,
            expected: e,
            actual: a,
            ..
        } => {
            assert_eq!((m.as_str(), v.as_str()), (module, version));
            assert_eq!(
                url,
                &format!("{}/example.com/greet/@v/v1.0.0.zip", f.proxy())
            );
            assert_eq!((e, a), (&expected, &actual));
        }
        other => panic!("expected a mismatch, got {other}"),
    }
    let msg = err.to_string();
    for part in [module, version, &expected, &actual, "nothing stored"] {
        assert!(msg.contains(part), "{msg}");
    }
    assert!(!store.has_step(&zip_key(&expected).unwrap()));
    assert!(!store.has_step(&zip_key(&actual).unwrap()));
    assert!(
        fs_err::read_dir(store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "a temporary file was left in the store"
    );
    // The module cache cannot be laid out without it: the build is refused before go runs.
    let plan = go_build_plan(
        &store,
        &GoModules::Proxy { modules },
        &GoBuild::new(&["."], "/out/hello"),
        &f.path("modcache"),
    );
    assert!(
        matches!(plan, Err(GoModError::Missing { ref module, .. }) if module == "example.com/greet"),
        "{plan:?}"
    );
}

#[test]
fn requirement_without_go_sum_line_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(
        dir.path().join("go.mod"),
        "module example.com/m\n\ngo 1.19\n\nrequire (\n\texample.com/a v1.0.0 // indirect\n\texample.com/b v0.1.0\n)\n",
    )
    .unwrap();
    let a = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    fs_err::write(
        dir.path().join("go.sum"),
        format!("example.com/a v1.0.0 {a}\nexample.com/a v1.0.0/go.mod {a}\n"),
    )
    .unwrap();
    let err = go_modules(dir.path()).unwrap_err();
    assert!(
        matches!(&err, GoModError::NotInGoSum { module, version, .. } if module == "example.com/b" && version == "v0.1.0"),
        "{err}"
    );
    assert!(err.to_string().contains("go mod tidy"), "{err}");
    // A hash that is not h1: is refused naming the line.
    fs_err::write(dir.path().join("go.sum"), "example.com/a v1.0.0 h2:abc\n").unwrap();
    let err = go_modules(dir.path()).unwrap_err().to_string();
    assert!(err.contains("go.sum:1") && err.contains("h2:abc"), "{err}");
}

#[test]
fn lock_records_go_modules_check_covers_them_fetch_fills_the_store() {
    use support::{TestArchive, TestKey, TestProject, standard_suites};
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let root = archive.root.path();
    write_proxy(&root.join("goproxy"));
    let server = TestServer::start(root);
    let url = server.url();
    let proxy = format!("{url}goproxy");
    // The program with go's own go.sum, packed as a release tarball.
    let work = tempfile::tempdir().unwrap();
    let program = work.path().join("hello");
    write_program(&program);
    fs_err::create_dir(work.path().join("host-go")).unwrap();
    host_go(
        &program,
        &work.path().join("host-go"),
        &proxy,
        &["mod", "tidy"],
    );
    let go_sum = fs_err::read_to_string(program.join("go.sum")).unwrap();
    fs_err::create_dir_all(root.join("upstream")).unwrap();
    fs_err::write(
        root.join("upstream/hello.tar.gz"),
        tar_gz_of(&program, "hello-1.0/"),
    )
    .unwrap();
    let recipe = format!(
        "packages = [\"app\"]\n\
         [[sources]]\nkind = \"file\"\nname = \"hello.tar.gz\"\nurls = [\"{url}upstream/hello.tar.gz\"]\n\
         [[sources]]\nkind = \"go-modules\"\nname = \"hello-modules\"\nsource = \"hello.tar.gz\"\nproxy = [\"{proxy}\"]\n"
    );
    let p = TestProject::new(&[("base", &recipe)], &server, &key.keyring);

    // lock: the module list is go's go.sum, line for line, one a line.
    p.ok(&["lock"]);
    let lock = p.lock_text();
    assert!(lock.contains("kind = \"go-modules\""), "{lock}");
    assert!(lock.contains("modules-sha256 = \""), "{lock}");
    assert_eq!(go_sum.lines().count(), 6, "{go_sum}");
    for line in go_sum.lines() {
        assert!(
            lock.contains(&format!("\n{line}\n")),
            "{line} missing:\n{lock}"
        );
    }
    p.ok(&["lock", "--check"]);
    // An unchanged lock reads nothing again.
    let before = server.requests();
    p.ok(&["lock"]);
    assert_eq!(
        server.requests(),
        before,
        "an unchanged lock touched the network"
    );

    // fetch: every module file into the store, then all there offline.
    let stderr = p.ok(&["fetch"]);
    assert!(
        stderr.contains("upstream sources: 1 fetched, 1 already"),
        "{stderr}"
    );
    let store = Store::open(p.store.path()).unwrap();
    let modules = match go_modules(&program).unwrap() {
        GoModules::Proxy { modules } => modules,
        other => panic!("{other:?}"),
    };
    for m in &modules {
        assert!(
            store.has_step(&zip_key(m.h1.as_ref().unwrap()).unwrap()),
            "{m:?}"
        );
    }
    let stderr = p.ok(&["fetch", "--offline"]);
    assert!(
        stderr.contains("upstream sources: 0 fetched, 2 already"),
        "{stderr}"
    );

    // --check: a module list edited in the lock, and a source re-pinned without relocking.
    let greet_h1 = modules[1].h1.clone().unwrap();
    assert_eq!(modules[1].path, "example.com/greet");
    let edited = lock.replacen(
        &greet_h1,
        "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        1,
    );
    fs_err::write(p.path("pins.lock"), &edited).unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr.contains("go modules `hello-modules`")
            && stderr.contains("module list in pins.lock hashes to"),
        "{stderr}"
    );
    let tarball_sha =
        support::sha256_hex(&fs_err::read(root.join("upstream/hello.tar.gz")).unwrap());
    let repinned = lock.replace(
        &format!("\nsha256 = \"{tarball_sha}\""),
        &format!("\nsha256 = \"{}\"", "0".repeat(64)),
    );
    assert_ne!(repinned, lock);
    fs_err::write(p.path("pins.lock"), repinned).unwrap();
    let stderr = p.fails(&["lock", "--check"]);
    assert!(
        stderr.contains(&format!(
            "were read from source `hello.tar.gz` at {tarball_sha}"
        )),
        "{stderr}"
    );
    fs_err::write(p.path("pins.lock"), &lock).unwrap();

    // Another store, the proxy's greet zip tampered: fetch refuses it by name, stores none.
    let q = TestProject::new(&[("base", &recipe)], &server, &key.keyring);
    fs_err::copy(p.path("pins.lock"), q.path("pins.lock")).unwrap();
    let (module, version, go_mod, _) = packed_modules().remove(0);
    fs_err::write(
        root.join("goproxy/example.com/greet/@v/v1.0.0.zip"),
        pack_zip(module, version, &go_mod, &[("greet.go", "package greet\n")]),
    )
    .unwrap();
    let stderr = q.fails(&["fetch"]);
    assert!(
        stderr.contains("module `example.com/greet v1.0.0`")
            && stderr.contains(&greet_h1)
            && stderr.contains(&format!("{proxy}/example.com/greet/@v/v1.0.0.zip")),
        "{stderr}"
    );
    let q_store = Store::open(q.store.path()).unwrap();
    assert!(!q_store.has_step(&zip_key(&greet_h1).unwrap()));
}

#[test]
fn module_zip_entries_outside_their_prefix_are_refused_when_the_cache_is_laid_out() {
    // go.sum pins whatever zip it was given: a zip whose entries escape the module's own
    // `<module>@<version>/` is stored (its hash matches) but never unpacked.
    let dir = tempfile::tempdir().unwrap();
    let proxy = dir.path().join("proxy");
    for (bad, why) in [
        (
            "example.com/evil@v1.0.0/../../escape.go",
            "not a plain relative path",
        ),
        (
            "example.com/other@v1.0.0/x.go",
            "outside `example.com/evil@v1.0.0/`",
        ),
    ] {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("example.com/evil@v1.0.0/go.mod", opts)
            .unwrap();
        w.write_all(b"module example.com/evil\n").unwrap();
        w.start_file(bad, opts).unwrap();
        w.write_all(b"package evil\n").unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let at = proxy.join("example.com/evil/@v");
        fs_err::create_dir_all(&at).unwrap();
        fs_err::write(at.join("v1.0.0.zip"), &bytes).unwrap();
        let server = TestServer::start(&proxy);
        let module = GoModule {
            path: "example.com/evil".into(),
            version: "v1.0.0".into(),
            h1: Some(h1_zip(std::io::Cursor::new(&bytes)).unwrap()),
            mod_h1: None,
        };
        let store = Store::open(&dir.path().join(format!("store-{}", why.len()))).unwrap();
        let url = server.url();
        fetch_modules(
            &store,
            &Http::new(),
            std::slice::from_ref(&module),
            url.trim_end_matches('/'),
        )
        .unwrap();
        let cache = dir.path().join(format!("cache-{}", why.len()));
        let err = go_build_plan(
            &store,
            &GoModules::Proxy {
                modules: vec![module],
            },
            &GoBuild::new(&["."], "/out/x"),
            &cache,
        )
        .unwrap_err();
        match &err {
            GoModError::Hostile {
                module,
                entry,
                why: w,
                ..
            } => {
                assert_eq!((module.as_str(), entry.as_str()), ("example.com/evil", bad));
                assert!(w.contains(why), "{err}");
            }
            other => panic!("expected a refused entry, got {other}"),
        }
        assert!(!dir.path().join("escape.go").exists());
        assert!(!cache.join("escape.go").exists());
    }
}
