//! render-config as the image runs it: the real binary, a real HTTP server on 127.0.0.1 standing
//! in for the attested-tls-proxy client, templates in a temporary root, files and modes read
//! back from disk.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const CONFIG_PATH: &str = "/api/l1-builder/v1/configuration";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The overlay's templates and the sample configuration, in the repository.
fn overlay_templates() -> PathBuf {
    manifest_dir().join("../../overlays/buildernet/usr/lib/mustache-templates")
}

fn fixture_config() -> Vec<u8> {
    std::fs::read(manifest_dir().join("../../tests/fixtures/buildernet/config.json"))
        .expect("the sample configuration")
}

/// A fresh directory under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "render-config-test-{}-{tag}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One canned answer: status and body.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: Vec<u8>,
    chunked: bool,
}

fn ok(body: &[u8]) -> Answer {
    Answer {
        status: 200,
        body: body.to_vec(),
        chunked: false,
    }
}

/// A hub on 127.0.0.1 that serves `answers` in turn (the last one again when they run out) and
/// records the paths it was asked for.
struct Hub {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    _thread: JoinHandle<()>,
}

impl Hub {
    fn start(answers: Vec<Answer>) -> Hub {
        Hub::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), answers)
    }

    fn start_on(listener: TcpListener, answers: Vec<Answer>) -> Hub {
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let thread = std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { continue };
                let answer = answers[i.min(answers.len() - 1)].clone();
                if let Some(path) = serve(stream, &answer) {
                    seen.lock().unwrap().push(path);
                }
            }
        });
        Hub {
            port,
            requests,
            _thread: thread,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}{CONFIG_PATH}", self.port)
    }
}

fn serve(stream: TcpStream, answer: &Answer) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split(' ').nth(1)?.to_string();
    let mut stream = stream;
    let head = if answer.chunked {
        format!(
            "HTTP/1.1 {} X\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            answer.status
        )
    } else {
        format!(
            "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            answer.status,
            answer.body.len()
        )
    };
    stream.write_all(head.as_bytes()).ok()?;
    if answer.chunked {
        for chunk in answer.body.chunks(7) {
            stream
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .ok()?;
            stream.write_all(chunk).ok()?;
            stream.write_all(b"\r\n").ok()?;
        }
        stream.write_all(b"0\r\n\r\n").ok()?;
    } else {
        stream.write_all(&answer.body).ok()?;
    }
    Some(path)
}

fn render_config(url: &str, templates: &Path, root: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_render-config"))
        .args([
            "--url",
            url,
            "--retry-delay-ms",
            "50",
            "--timeout-ms",
            "5000",
        ])
        .arg("--templates")
        .arg(templates)
        .arg("--root")
        .arg(root)
        .args(extra)
        .env_remove("RENDER_CONFIG_URL")
        .output()
        .expect("render-config runs")
}

/// A port on 127.0.0.1 that was free a moment ago (nobody listens on it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A template directory with the one template `x.mustache`: `{{x}}`.
fn x_template(tag: &str) -> TempDir {
    let templates = TempDir::new(tag);
    std::fs::write(templates.0.join("x.mustache"), "{{x}}").unwrap();
    templates
}

/// The run failed with status 1, said `needles`, and wrote nothing.
fn assert_failed_writing_nothing(out: &Output, root: &Path, needles: &[&str]) {
    let log = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    for needle in needles {
        assert!(log.contains(needle), "no `{needle}` in: {log}");
    }
    assert!(files_under(root).is_empty());
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn renders_every_overlay_template_with_the_sample_configuration() {
    let hub = Hub::start(vec![Answer {
        chunked: true,
        ..ok(&fixture_config())
    }]);
    let root = TempDir::new("overlay");
    let out = render_config(&hub.url(), &overlay_templates(), &root.0, &[]);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(*hub.requests.lock().unwrap(), vec![CONFIG_PATH.to_string()]);
    // The sample configuration has every key the templates use.
    assert!(!log.contains("warning"), "{log}");

    // One rendered file per template, at the same path without the suffix, with its mode.
    let templates = files_under(&overlay_templates());
    assert_eq!(
        templates.len(),
        18,
        "the seed renders 18 files: {templates:?}"
    );
    let mut expected = Vec::new();
    for t in &templates {
        let (dest, suffix) = t.rsplit_once(".mustache").unwrap();
        let want = suffix
            .rsplit('_')
            .next()
            .filter(|m| m.len() >= 3 && m.bytes().all(|b| b.is_ascii_digit()))
            .map_or(0o644, |m| u32::from_str_radix(m, 8).unwrap());
        assert_eq!(mode(&root.0.join(dest)), want, "{dest}");
        expected.push(dest.to_string());
    }
    expected.sort();
    assert_eq!(files_under(&root.0), expected);

    let etc = root.0.join("etc");
    assert_eq!(read(&etc.join("hostname")), "buildernet-test-01\n");
    // `#base64` decoded in unsafe mode; no newline added to the key.
    assert_eq!(
        read(&etc.join("disk-encryption-key")),
        "persistent disk passphrase for tests"
    );
    assert!(
        read(&etc.join("flowproxy/api-keys.toml"))
            .starts_with("[[api_keys]]\nname = \"searcher-a\"")
    );
    // Safe mode: a Go escape printed literally, HTML escaping, control characters removed.
    let env = read(&etc.join("flowproxy/flowproxy.env"));
    assert!(
        env.contains("CLICKHOUSE_PASSWORD=pa\\\\nss&amp;word\n"),
        "{env}"
    );
    assert!(
        env.contains("BUILDERNET_NODE_NAME=buildernet-test-01\n"),
        "{env}"
    );
    let rb_env = read(&etc.join("rbuilder-operator/rbuilder-operator.env"));
    assert!(rb_env.contains("TITAN_API_TOKEN=titantoken\n"), "{rb_env}");
    // Unsafe mode keeps raw TOML, with its newlines.
    let rb = read(&etc.join("rbuilder-operator/config.toml"));
    assert!(
        rb.contains("live_builders = [\"mgp-ordering\", \"mp-ordering\"]\n"),
        "{rb}"
    );
    assert!(rb.contains("[[relays]]\nname = \"flashbots\"\n"), "{rb}");
    assert!(
        rb.contains("evm_caching_enable = true\nsimulation_threads"),
        "{rb}"
    );
    assert_eq!(
        read(&etc.join("haproxy/bob_allowed_ips.map")),
        "192.0.2.10\n198.51.100.0/24\n"
    );
    assert_eq!(
        read(&etc.join("haproxy/privileged_ips.map")),
        "203.0.113.5 searcher-a\n203.0.113.6 searcher-b\n"
    );
    let haproxy = read(&etc.join("haproxy/haproxy.cfg"));
    assert!(
        haproxy.contains("sc0_conn_rate gt 100\n")
            && haproxy.contains("sc0_http_req_rate gt 2000\n")
    );
    assert!(!haproxy.contains("{{"), "{haproxy}");
    let aws = read(&etc.join("vector/aws-config"));
    assert_eq!(
        aws,
        "[cloudwatch]\naws_access_key_id=AKIACW\naws_secret_access_key=cw-secret\n\n\
         [amp]\naws_access_key_id=AKIAAMP\naws_secret_access_key=amp-secret\n\n"
    );
    let vector = read(&etc.join("vector/vector.yaml"));
    assert!(
        !vector.contains("<%") && !vector.contains("{{!"),
        "{vector}"
    );
    assert!(vector.contains(
        "      .tags.buildernet_org_network = \"testnet\"\n      .tags.operator = \"tests\"\n"
    ));
    assert!(vector.contains("  prometheus_amp:\n") && vector.contains("      profile: amp\n"));
    assert!(vector.contains("  prometheus_mimir:\n") && vector.contains("      user: metrics\n"));
    // VRL's own {{ }} survive the delimiter switch.
    assert!(vector.contains("status: \"{{haproxy_status}}\""));
}

#[test]
fn waits_for_a_hub_that_starts_late() {
    // Take a free port, let it go, and only listen on it after render-config has started.
    let port = free_port();
    let templates = TempDir::new("late-t");
    std::fs::write(
        templates.0.join("greeting.mustache_0640"),
        "hello {{who}}\n",
    )
    .unwrap();
    let root = TempDir::new("late-r");
    let url = format!("http://127.0.0.1:{port}{CONFIG_PATH}");
    let child = Command::new(env!("CARGO_BIN_EXE_render-config"))
        .args([
            "--url",
            &url,
            "--attempts",
            "30",
            "--retry-delay-ms",
            "100",
            "--timeout-ms",
            "2000",
        ])
        .arg("--templates")
        .arg(&templates.0)
        .arg("--root")
        .arg(&root.0)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let hub = Hub::start_on(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        vec![ok(br#"{"who":"world"}"#)],
    );
    let out = child.wait_with_output().unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("retrying"), "{log}");
    assert_eq!(hub.requests.lock().unwrap().len(), 1);
    assert_eq!(read(&root.0.join("greeting")), "hello world\n");
    assert_eq!(mode(&root.0.join("greeting")), 0o640);
}

#[test]
fn retries_server_errors_and_gives_up_on_client_errors() {
    let templates = x_template("retry-t");

    let busy = Answer {
        status: 503,
        body: b"busy".to_vec(),
        chunked: false,
    };
    let hub = Hub::start(vec![busy.clone(), busy, ok(br#"{"x":1}"#)]);
    let root = TempDir::new("retry-r");
    let out = render_config(&hub.url(), &templates.0, &root.0, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(hub.requests.lock().unwrap().len(), 3);
    assert_eq!(read(&root.0.join("x")), "1");

    let missing = Answer {
        status: 404,
        body: Vec::new(),
        chunked: false,
    };
    let hub = Hub::start(vec![missing]);
    let root = TempDir::new("retry-404");
    let out = render_config(&hub.url(), &templates.0, &root.0, &[]);
    assert_failed_writing_nothing(&out, &root.0, &["HTTP status 404", "hint:"]);
    assert_eq!(
        hub.requests.lock().unwrap().len(),
        1,
        "a 404 is not retried"
    );
}

#[test]
fn gives_up_after_its_attempts_when_nobody_listens() {
    let port = free_port();
    let templates = x_template("none-t");
    let root = TempDir::new("none-r");
    let url = format!("http://127.0.0.1:{port}{CONFIG_PATH}");
    let out = render_config(&url, &templates.0, &root.0, &["--attempts", "3"]);
    let addr = format!("127.0.0.1:{port}");
    assert_failed_writing_nothing(&out, &root.0, &[&addr, "hint:"]);
    assert_eq!(stderr(&out).matches("retrying").count(), 2);
}

#[test]
fn bad_json_renders_nothing() {
    let templates = x_template("json-t");
    let hub = Hub::start(vec![ok(b"{\"x\": 1,")]);
    let root = TempDir::new("json-r");
    let out = render_config(&hub.url(), &templates.0, &root.0, &[]);
    assert_failed_writing_nothing(&out, &root.0, &["not valid JSON", "no file was rendered"]);
}

#[test]
fn a_failing_template_leaves_its_file_alone_and_the_others_render() {
    let templates = TempDir::new("fail-t");
    let t = &templates.0;
    std::fs::create_dir_all(t.join("etc/app")).unwrap();
    std::fs::write(
        t.join("etc/app/good.conf.mustache_600"),
        "v={{v}} k={{{k}}}\n",
    )
    .unwrap();
    std::fs::write(
        t.join("etc/app/broken.conf.mustache"),
        "{{#v}}never closed\n",
    )
    .unwrap();
    std::fs::write(t.join("etc/app/odd.conf.mustache_rw"), "x\n").unwrap();
    std::fs::write(
        t.join("etc/app/secret.mustache_unsafe_400"),
        "{{{k}}}|{{{n.inner}}}",
    )
    .unwrap();
    std::fs::write(t.join("etc/app/notes.txt"), "not a template").unwrap();
    let root = TempDir::new("fail-r");
    let app = root.0.join("etc/app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("broken.conf"), "the old file\n").unwrap();

    let config = br#"{"v":"a\\tb\u0001c","k#base64":"c2VjcmV0","n":{"inner#base64":"AAE="}}"#;
    let hub = Hub::start(vec![ok(config)]);
    let out = render_config(&hub.url(), t, &root.0, &[]);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    // Each failure names its template and says what is wrong.
    assert!(
        log.contains(
            "broken.conf.mustache: not a valid template: line 1: section v has no closing tag"
        ),
        "{log}"
    );
    assert!(
        log.contains("odd.conf.mustache_rw: unknown suffix `_rw`"),
        "{log}"
    );
    assert!(log.contains("2 template(s) failed, 2 rendered"), "{log}");
    // The old file is untouched, nothing is half-written, no temporary file is left.
    assert_eq!(read(&app.join("broken.conf")), "the old file\n");
    assert_eq!(
        files_under(&root.0),
        ["etc/app/broken.conf", "etc/app/good.conf", "etc/app/secret"]
    );
    // Safe mode: `\t` printed literally, the control character gone, `k#base64` not decoded
    // (so `k` is missing there, and said so).
    assert_eq!(read(&app.join("good.conf")), "v=a\\\\tbc k=\n");
    assert!(
        log.contains("good.conf.mustache_600: key `k` is not in the configuration"),
        "{log}"
    );
    assert_eq!(mode(&app.join("good.conf")), 0o600);
    // Unsafe mode: decoded, bytes as they are.
    assert_eq!(
        std::fs::read(app.join("secret")).unwrap(),
        b"secret|\x00\x01"
    );
    assert_eq!(mode(&app.join("secret")), 0o400);
}
