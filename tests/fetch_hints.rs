//! The hint of a failed `hermetic fetch` fits its cause: a network failure is not a reason
//! to re-pin, a file every answering source lacks is.

mod support;

use std::net::TcpListener;

use support::{Fault, TestArchive, TestKey, TestProject, TestServer, standard_suites};

struct Fixture {
    _key: TestKey,
    archive: TestArchive,
    server: TestServer,
    project: TestProject,
}

fn locked() -> Fixture {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let project = TestProject::new(&[("base", "packages = [\"app\"]\n")], &server, &key.keyring);
    project.ok(&["lock"]);
    Fixture {
        _key: key,
        archive,
        server,
        project,
    }
}

fn closed_port_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/")
}

fn blobs(p: &TestProject) -> usize {
    fs_err::read_dir(p.store.path().join("v1/blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn no_network_gives_the_network_hint_not_the_relock_hint() {
    let mut f = locked();
    let before = blobs(&f.project);
    let lock = f.project.lock_text();
    // Every source is a closed port: the network is down.
    f.project.mirror = closed_port_url();
    let stderr = f.project.fails(&["fetch"]);
    assert!(stderr.contains("could not be downloaded"), "{stderr}");
    assert!(stderr.contains("no source could be reached"), "{stderr}");
    assert!(stderr.contains("check the network"), "{stderr}");
    assert!(stderr.contains("--mirror URL"), "{stderr}");
    assert!(!stderr.contains("lock --update"), "{stderr}");
    assert!(!stderr.contains("re-pin"), "{stderr}");
    assert_eq!(blobs(&f.project), before);
    assert_eq!(f.project.lock_text(), lock);
}

#[test]
fn a_file_gone_from_every_source_suggests_relocking_and_says_what_it_costs_attesters() {
    let mut f = locked();
    // No snapshot at all: the mirror is the only source, and it answers 404.
    f.project.snapshot_url = String::new();
    let libfoo = f.archive.debs["libfoo"].clone();
    fs_err::remove_file(f.archive.path(&libfoo.path)).unwrap();
    let stderr = f.project.fails(&["fetch"]);
    assert!(stderr.contains("HTTP 404"), "{stderr}");
    assert!(
        stderr.contains("every source that answered no longer has these files:"),
        "{stderr}"
    );
    assert!(!stderr.contains("could not be reached"), "{stderr}");
    assert!(
        stderr.contains("re-pin with `hermetic lock --update PKG...`"),
        "{stderr}"
    );
    assert!(stderr.contains("changes the image's bytes"), "{stderr}");
    assert!(stderr.contains("must rebuild from the new one"), "{stderr}");
    assert!(!f.project.blob(&libfoo.sha256).exists());
}

#[test]
fn a_404_next_to_an_unreachable_source_says_it_may_still_have_it() {
    let f = locked();
    // The snapshot stand-in is a closed port; the mirror answers 404.
    let libfoo = f.archive.debs["libfoo"].clone();
    fs_err::remove_file(f.archive.path(&libfoo.path)).unwrap();
    let stderr = f.project.fails(&["fetch"]);
    assert!(
        stderr.contains("some sources could not be reached and may still have them"),
        "{stderr}"
    );
}

#[test]
fn wrong_bytes_do_not_suggest_relocking() {
    let f = locked();
    let app = f.archive.debs["app"].clone();
    f.server.fault(&app.path, Fault::WrongBytes, usize::MAX);
    let stderr = f.project.fails(&["fetch"]);
    assert!(stderr.contains("served other bytes"), "{stderr}");
    assert!(!stderr.contains("lock --update"), "{stderr}");
    assert!(!stderr.contains("check the network"), "{stderr}");
}

#[test]
fn default_sources_all_down_give_the_network_hint_with_local_copies() {
    let mut f = locked();
    // No --mirror: the snapshot and the host's apt mirror are the sources, both down.
    f.project.mirror = String::new();
    let apt = f.project.apt_root.path().join("etc/apt");
    fs_err::create_dir_all(&apt).unwrap();
    let down = closed_port_url();
    fs_err::write(
        apt.join("sources.list"),
        format!("deb {down}debian trixie main\ndeb {down}debian-security trixie-security main\n"),
    )
    .unwrap();
    let stderr = f.project.fails(&["fetch"]);
    assert!(stderr.contains("no source could be reached"), "{stderr}");
    assert!(stderr.contains("--mirror DIR"), "{stderr}");
    assert!(!stderr.contains("re-pin"), "{stderr}");
    // Each pin names both sources it tried, in order: the snapshot first.
    let snapshot = stderr
        .find(&f.project.snapshot_url)
        .expect("snapshot tried");
    let apt_line = stderr.find(&format!("{down}debian")).expect("apt tried");
    assert!(snapshot < apt_line, "{stderr}");
}
