//! Live test of `[[go]]` builds: a small Go program the test writes (main package in
//! `./cmd/hello`), packed as a release tarball and pinned as a `file` source, depending on
//! modules the test packs and serves as a GOPROXY on 127.0.0.1 (go.sum written by the
//! host's `go mod tidy`), built with Debian's golang-1.24-go from the host's apt mirror in
//! the real sandbox.
//!
//! The program is built twice, in two projects at different paths with two stores; the
//! second build runs `--offline` after the local server is stopped. The two binaries and
//! the two image tars must be byte-identical, hold no path of either project or store nor
//! the sandbox's build directories, and the binary must run (it is static: on the host).
//!
//! It locks afresh into temporary projects, as the mirror drops superseded versions.

mod project;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use project::{contains, hermetic_in, run, tar_member, write_recipe_project};
use support::TestServer;
use support::go::{host_go, tar_gz_of, write_program, write_proxy};

fn sha256(bytes: &[u8]) -> String {
    support::sha256_hex(bytes)
}

#[test]
fn go_program_builds_bit_identically_from_proxied_modules_offline() {
    // The served tree: the GOPROXY and the program's release tarball.
    let served = tempfile::tempdir().unwrap();
    write_proxy(&served.path().join("goproxy"));
    let work = tempfile::tempdir().unwrap();
    let program = work.path().join("hello");
    write_program(&program);
    fs_err::create_dir_all(program.join("cmd/hello")).unwrap();
    fs_err::rename(program.join("main.go"), program.join("cmd/hello/main.go")).unwrap();
    let server = TestServer::start(served.path());
    let url = server.url();
    let proxy = format!("{url}goproxy");
    fs_err::create_dir(work.path().join("host-go")).unwrap();
    host_go(
        &program,
        &work.path().join("host-go"),
        &proxy,
        &["mod", "tidy"],
    );
    assert!(program.join("go.sum").is_file());
    fs_err::create_dir(served.path().join("upstream")).unwrap();
    fs_err::write(
        served.path().join("upstream/hello-1.0.tar.gz"),
        tar_gz_of(&program, "hello-1.0/"),
    )
    .unwrap();
    let recipe = format!(
        "format = \"tar\"\npackages = [\"base-files\"]\n\n\
         [[sources]]\nkind = \"file\"\nname = \"hello-src\"\nurls = [\"{url}upstream/hello-1.0.tar.gz\"]\n\n\
         [[sources]]\nkind = \"go-modules\"\nname = \"hello-modules\"\nsource = \"hello-src\"\nproxy = [\"{proxy}\"]\n\n\
         [[go]]\nname = \"hello\"\nsource = \"hello-src\"\nmodules = \"hello-modules\"\n\
         packages = [\"./cmd/hello\"]\nldflags = [\"-X\", \"main.unused=1\"]\n\
         install = {{ \"hello\" = \"/usr/bin/hello\" }}\n"
    );

    let root_a = tempfile::tempdir().unwrap();
    let root_b = tempfile::tempdir().unwrap();
    let a = root_a.path().join("first-project");
    let b = root_b.path().join("elsewhere/second");
    let store_a = tempfile::tempdir().unwrap();
    let store_b = tempfile::tempdir().unwrap();
    write_recipe_project(&a, "hello", &recipe);

    // Lock: the toolchain from the host's mirror, the source's SHA-256 and the modules of
    // its go.sum from the local server.
    run(hermetic_in(&a, store_a.path()).args(["lock", "--allow-mirror-state"]));
    run(hermetic_in(&a, store_a.path()).args(["lock", "--check"]));
    let lock = hermetic::lockfile::Lockfile::read(&a.join("pins.lock"))
        .unwrap()
        .unwrap();
    let toolchain: Vec<&str> = lock
        .packages
        .iter()
        .filter(|p| p.recipes.iter().any(|r| r == "hello:go"))
        .map(|p| p.name.as_str())
        .collect();
    for p in ["golang-1.24-go", "golang-1.24-src"] {
        assert!(
            toolchain.contains(&p),
            "{p} not in the hello:go closure: {toolchain:?}"
        );
    }
    let modules = lock
        .upstream
        .iter()
        .find(|u| u.pin.name() == "hello-modules")
        .expect("the go-modules pin is locked");
    assert!(modules.pin.content_hash().is_some());

    let started = Instant::now();
    run(hermetic_in(&a, store_a.path())
        .args(["build", "hello", "--output"])
        .arg(a.join("out")));
    let first = started.elapsed();

    // The second project: the same recipe and lock at another path, another store; its
    // inputs fetched, then the server stopped and the build run offline.
    write_recipe_project(&b, "hello", &recipe);
    fs_err::copy(a.join("pins.lock"), b.join("pins.lock")).unwrap();
    run(hermetic_in(&b, store_b.path()).arg("fetch"));
    drop(server);
    let started = Instant::now();
    run(hermetic_in(&b, store_b.path())
        .args(["build", "hello", "--offline", "--output"])
        .arg(b.join("out")));
    let second = started.elapsed();

    let tar_a = a.join("out/hello.tar");
    let tar_b = b.join("out/hello.tar");
    let bin_a = tar_member(&tar_a, "./usr/bin/hello");
    let bin_b = tar_member(&tar_b, "./usr/bin/hello");
    eprintln!(
        "hello: {} ({} bytes), first build {:.0}s, second build {:.0}s",
        sha256(&bin_a),
        bin_a.len(),
        first.as_secs_f64(),
        second.as_secs_f64()
    );
    eprintln!("second hello: {}", sha256(&bin_b));
    assert!(bin_a.len() > 100_000, "hello is {} bytes", bin_a.len());
    assert_eq!(sha256(&bin_a), sha256(&bin_b), "the two binaries differ");
    assert_eq!(
        sha256(&fs_err::read(&tar_a).unwrap()),
        sha256(&fs_err::read(&tar_b).unwrap()),
        "the two image tars differ"
    );
    let listing = run(Command::new("tar").arg("-tvf").arg(&tar_a)).stdout;
    let listing = String::from_utf8_lossy(&listing);
    let line = listing
        .lines()
        .find(|l| l.ends_with(" ./usr/bin/hello"))
        .unwrap_or_else(|| panic!("no ./usr/bin/hello in the image:\n{listing}"));
    assert!(line.starts_with("-rwxr-xr-x"), "{line}");

    // No path of the host, the projects, the stores or the sandbox's build directories.
    let home = std::env::var("HOME").unwrap_or_else(|_| "/nonexistent-home".into());
    let paths: Vec<PathBuf> = vec![
        a.clone(),
        b.clone(),
        store_a.path().to_path_buf(),
        store_b.path().to_path_buf(),
        PathBuf::from(&home),
    ];
    for p in &paths {
        assert!(
            !contains(&bin_a, &p.display().to_string()),
            "hello holds {}",
            p.display()
        );
    }
    for sandbox_dir in ["/work/src", "/work/modcache", "/work/gowork", "/work/out"] {
        assert!(!contains(&bin_a, sandbox_dir), "hello holds {sandbox_dir}");
    }
    // -trimpath: module paths instead of directories.
    assert!(contains(&bin_a, "example.com/greet"));

    // It runs: a static pure-Go binary, on the host.
    let bin = root_a.path().join("hello");
    fs_err::write(&bin, &bin_a).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = run(&mut Command::new(&bin));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello, world GO!\n");
}
