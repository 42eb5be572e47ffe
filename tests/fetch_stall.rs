//! `hermetic fetch` against mirrors that stall, never answer or fail, on 127.0.0.1: every
//! transfer is bounded, and a source that fails twice stops being asked first.
//!
//! The limits are set small through the environment so that each test takes seconds; the
//! time bounds asserted are generous, only there to prove that nothing hangs.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{TestArchive, TestKey, TestProject, TestServer, standard_suites};

/// No run of these tests may take longer than this (they take seconds).
const NO_HANG: Duration = Duration::from_secs(60);

/// How a [`BadMirror`] misbehaves.
#[derive(Debug, Clone)]
enum Behaviour {
    /// Accept the connection, read the request, never answer.
    Silent,
    /// Read the request, then close the connection without a word.
    HangUp,
    /// Answer every request with this status and an empty body.
    Status(u16),
    /// Serve the files under the root, but the one whose path ends with `.0` one byte per
    /// `.1` (announcing its full length).
    Trickle(String, Duration),
}

/// A misbehaving HTTP server that counts the connections and requests it gets.
struct BadMirror {
    port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl BadMirror {
    fn start(behaviour: Behaviour, root: &Path) -> BadMirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r, root) = (connections.clone(), requests.clone(), root.to_path_buf());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, root, behaviour) = (r.clone(), root.clone(), behaviour.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &behaviour, &root, &r);
                });
            }
        });
        BadMirror {
            port,
            connections,
            requests,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Reads one request head; returns its path, or `None` when the client closed.
fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    Ok(Some(
        line.split_whitespace().nth(1).unwrap_or("/").to_string(),
    ))
}

fn serve(
    stream: TcpStream,
    behaviour: &Behaviour,
    root: &Path,
    requests: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut stream = stream;
    while let Some(path) = read_request(&mut reader)? {
        requests.fetch_add(1, Ordering::SeqCst);
        match behaviour {
            Behaviour::Silent => {
                // Hold the connection open until the client gives up.
                let mut sink = Vec::new();
                let _ = reader.read_to_end(&mut sink);
                return Ok(());
            }
            Behaviour::HangUp => return Ok(()),
            Behaviour::Status(code) => {
                write!(
                    stream,
                    "HTTP/1.1 {code} Failing\r\nContent-Length: 0\r\n\r\n"
                )?;
            }
            Behaviour::Trickle(slow, every) => {
                let Ok(body) = fs_err::read(root.join(path.trim_start_matches('/'))) else {
                    stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
                    continue;
                };
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )?;
                if path.ends_with(slow.as_str()) {
                    for b in &body {
                        stream.write_all(&[*b])?;
                        stream.flush()?;
                        std::thread::sleep(*every);
                    }
                } else {
                    stream.write_all(&body)?;
                }
            }
        }
        stream.flush()?;
    }
    Ok(())
}

struct Fixture {
    _key: TestKey,
    archive: TestArchive,
    server: TestServer,
    project: TestProject,
}

/// A project locked against the good server: `app` (image), `big` + `tool` (tools), source
/// `hello`: more than ten pins.
fn locked() -> Fixture {
    let key = TestKey::generate("archive");
    let archive = TestArchive::build(&standard_suites(), &key);
    let server = TestServer::start(archive.root.path());
    let project = TestProject::new(
        &[(
            "base",
            "packages = [\"app\"]\nbuild-packages = [\"tool\", \"big\"]\nsource-packages = [\"hello\"]\n",
        )],
        &server,
        &key.keyring,
    );
    project.ok(&["lock"]);
    Fixture {
        _key: key,
        archive,
        server,
        project,
    }
}

/// The SHA-256 of every pin of the lock.
fn pinned(p: &TestProject) -> Vec<String> {
    let mut v: Vec<String> = p
        .lock_text()
        .lines()
        .filter(|l| !l.starts_with("inrelease-sha256"))
        .flat_map(|l| l.split("sha256 = \"").skip(1))
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .filter(|h| h.len() == 64)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Runs `hermetic fetch` with the mirrors `mirrors` (space-separated) and the environment
/// `env`; returns (success, stderr, time taken).
fn fetch(p: &TestProject, mirrors: &str, env: &[(&str, &str)]) -> (bool, String, Duration) {
    let mut cmd: Command = p.command(&["fetch"]);
    cmd.env("HERMETIC_MIRRORS", mirrors);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let took = start.elapsed();
    assert!(took < NO_HANG, "fetch took {took:?}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

fn tmp_is_empty(p: &TestProject) -> bool {
    let tmp: PathBuf = p.store.path().join("v1/tmp");
    !tmp.exists() || fs_err::read_dir(tmp).unwrap().next().is_none()
}

#[test]
fn silent_mirror_times_out_and_the_next_one_serves_every_pin() {
    let f = locked();
    let p = &f.project;
    let silent = BadMirror::start(Behaviour::Silent, f.archive.root.path());
    let before = f.server.requests();
    let (ok, stderr, _) = fetch(
        p,
        &format!("{} {}", silent.url(), f.server.url()),
        &[("HERMETIC_FETCH_RESPONSE_TIMEOUT", "1")],
    );
    assert!(ok, "{stderr}");
    for sha in pinned(p) {
        assert!(p.blob(&sha).is_file(), "{sha} missing:\n{stderr}");
    }
    // The silent mirror was given up on after the response timeout, twice, then demoted
    // with one line saying so; the good mirror served each pin once.
    assert!(silent.connections() <= 2, "{}", silent.connections());
    let warning = format!(
        "warning: {} failed 2 times (last: no response within 1 s)",
        silent.origin()
    );
    assert_eq!(stderr.matches(&warning).count(), 1, "{stderr}");
    assert_eq!(f.server.requests() - before, pinned(p).len());
}

#[test]
fn failing_mirror_is_asked_at_most_twice_however_it_fails() {
    let mut f = locked();
    let pins = pinned(&f.project).len();
    assert!(pins >= 5, "{pins}");
    for behaviour in [Behaviour::Silent, Behaviour::HangUp, Behaviour::Status(503)] {
        // A fresh store each time: every pin is fetched again.
        f.project.store = tempfile::tempdir().unwrap();
        let bad = BadMirror::start(behaviour.clone(), f.archive.root.path());
        let (ok, stderr, _) = fetch(
            &f.project,
            &format!("{} {}", bad.url(), f.server.url()),
            &[("HERMETIC_FETCH_RESPONSE_TIMEOUT", "1")],
        );
        assert!(ok, "{behaviour:?}: {stderr}");
        assert!(
            bad.requests() <= 2 && bad.connections() <= 2,
            "{behaviour:?}: {} requests, {} connections for {pins} pins\n{stderr}",
            bad.requests(),
            bad.connections()
        );
        assert!(
            stderr.contains(&format!("warning: {} failed 2 times", bad.origin())),
            "{behaviour:?}: {stderr}"
        );
        for sha in pinned(&f.project) {
            assert!(f.project.blob(&sha).is_file(), "{behaviour:?}: {sha}");
        }
    }
}

#[test]
fn mirror_missing_files_is_not_demoted() {
    let f = locked();
    let p = &f.project;
    let empty = BadMirror::start(Behaviour::Status(404), f.archive.root.path());
    let (ok, stderr, _) = fetch(p, &format!("{} {}", empty.url(), f.server.url()), &[]);
    assert!(ok, "{stderr}");
    // A 404 is that file missing there, not the mirror failing: it stays first for every pin.
    assert_eq!(empty.requests(), pinned(p).len(), "{stderr}");
    assert!(!stderr.contains("warning:"), "{stderr}");
}

#[test]
fn trickling_transfer_is_aborted_as_stalled_naming_the_url() {
    let f = locked();
    let p = &f.project;
    let big = f.archive.debs["big"].clone();
    let trickle = BadMirror::start(
        Behaviour::Trickle(big.path.clone(), Duration::from_secs(1)),
        f.archive.root.path(),
    );
    let (ok, stderr, took) = fetch(
        p,
        &trickle.url(),
        &[
            ("HERMETIC_FETCH_MIN_RATE", "1K"),
            ("HERMETIC_FETCH_STALL_WINDOW", "3"),
        ],
    );
    assert!(
        !ok,
        "a 2 MiB file trickling at 1 byte/s was accepted:\n{stderr}"
    );
    // The error names the URL, the reason and the bytes received.
    let url = format!("{}{}", trickle.url(), big.path);
    let line = stderr
        .lines()
        .find(|l| l.contains(&url))
        .unwrap_or_else(|| panic!("{url} not named:\n{stderr}"));
    assert!(line.contains(": stalled: "), "{line}");
    assert!(line.contains("minimum 1.0 KiB/s"), "{line}");
    assert!(line.contains("bytes received"), "{line}");
    assert!(stderr.contains("big 1.0-1"), "{stderr}");
    assert!(stderr.contains("HERMETIC_FETCH_MIN_RATE"), "{stderr}");
    // Given up on after about one window, not after the 24 days the file would take.
    assert!(took < Duration::from_secs(30), "{took:?}");
    // Nothing of it in the store; the other pins came through.
    assert!(!p.blob(&big.sha256).exists());
    assert!(tmp_is_empty(p));
    assert!(p.blob(&f.archive.debs["tool"].sha256).is_file());
}

#[test]
fn malformed_limit_is_refused_naming_the_variable() {
    let f = locked();
    let before = f.server.requests();
    let (ok, stderr, _) = fetch(
        &f.project,
        &f.server.url(),
        &[("HERMETIC_FETCH_STALL_WINDOW", "forever")],
    );
    assert!(!ok);
    assert!(
        stderr.contains("HERMETIC_FETCH_STALL_WINDOW=\"forever\" is not a duration"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: unset HERMETIC_FETCH_STALL_WINDOW"),
        "{stderr}"
    );
    assert_eq!(f.server.requests(), before, "fetched despite a bad limit");
}
