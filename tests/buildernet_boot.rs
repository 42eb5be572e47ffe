//! The BuilderNet playground image, booted (issue 15's CI test): `hermetic build --profile
//! playground --profile devtools buildernet-qemu` in a temporary copy of this project, booted
//! under QEMU (TCG) with OVMF and swtpm, renders its configuration from a fake BuilderHub and
//! sets up its encrypted persistent disk; the test then checks inside the guest, on the serial
//! console where the playground profile logs root in, what came of it.
//!
//! The copy is this repository's recipes, overlays, scripts and programs unmodified, except
//! for the kernel, for CI time: `base` loses its `[kernel]` table (the seed's kernel built from
//! source takes about 20 minutes on two cores) and `buildernet-qemu` gains Debian's packaged
//! `linux-image-cloud-amd64`, which the UKI then takes from `/boot` (as boot_live does with its
//! own image). render-config is built in the sandbox by the recipe's `[[cargo]]` table. The
//! `devtools` profile is selected with `playground`, as the seed's own playground test does:
//! sshd (port 40192) is enabled only by it. The build runs with `--omit-unavailable`: the
//! upstream sources only GitHub or the Go module proxy serve (the attested-tls-proxy and
//! ntpd-rs debs, operator-api, acme.sh's files) cannot be had on the test machines, so the
//! image is built without them and names them in `HERMETIC_OMITTED` (checked in the guest).
//!
//! - The hub is a small HTTP server thread of this test on 127.0.0.1:7000, which the guest
//!   reaches as 10.0.2.2:7000 through QEMU's user networking. It serves
//!   `/api/l1-builder/v1/configuration` (tests/fixtures/buildernet/config.json with values of
//!   this test: a `#base64` disk key, a value with a literal `\n`) and the playground's chain
//!   files under `/playground/`.
//! - The persistent disk is a blank raw file on virtio-scsi at LUN 10 with the serial
//!   `persistent` (the playground's drop-in finds it by LUN, the QEMU flavor's by serial).
//! - Checked in the guest: the rendered files with their contents and modes, the `#base64`
//!   value decoded (unsafe template), the Go escape neutralised (safe template) and left
//!   alone (unsafe template), `/var/lib/persistent` mounted from a dm-crypt LUKS2 volume on
//!   that disk, the playground's chain files fetched into it, sshd listening on 40192, the
//!   masked units masked, and PCR 4, 9 and 11 (sha256) equal to `hermetic measure`'s prediction
//!   for the built `.efi`. From outside: the hub was asked by the guest, and the disk file
//!   starts with a LUKS2 header.
//!
//! Needs the archive through the host's apt mirror, the sandbox (root in CI), qemu-system-x86,
//! ovmf, swtpm, swtpm-tools, and port 7000 of 127.0.0.1 free. The store lives in the target's
//! temporary directory so that a second run finds the build cached. The guest runs under TCG
//! and is killed after [`GUEST_TIMEOUT`].

mod project;

use project::{Kernel, run};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// How long the guest may take from power-on to the end of the checks (TCG on two cores).
const GUEST_TIMEOUT: Duration = Duration::from_secs(1500);
/// Where the guest finds the hub (recipes/buildernet.toml's playground profile).
const HUB_ADDR: &str = "127.0.0.1:7000";
const CONFIG_PATH: &str = "/api/l1-builder/v1/configuration";
/// The disk key, served base64-encoded under `key#base64`.
const DISK_KEY: &str = "playground disk key: 7 words, no newline";
/// A value with a Go escape sequence (a backslash and `n`, not a newline).
const ESCAPED: &str = r"ghp_line\nbreak";
/// The playground's chain files (playground-config-fetch).
const CHAIN_FILES: &[&str] = &[
    "genesis.json",
    "testnet/config.yaml",
    "testnet/genesis.ssz",
    "testnet/genesis_validators_root.txt",
    "testnet/deploy_block.txt",
    "testnet/deposit_contract_block.txt",
    "testnet/boot_enr.yaml",
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn hermetic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hermetic"))
}

/// Copies `from` to `to`, leaving out cargo's `target` directories.
fn copy_tree(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&entry.path(), &dst);
            }
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs_err::read_link(entry.path()).unwrap(), dst).unwrap();
        } else {
            fs_err::copy(entry.path(), dst).unwrap();
        }
    }
}

/// The project: this repository's settings, keys, overlays, scripts, programs and BuilderNet
/// recipes, with Debian's cloud kernel instead of base's kernel built from source.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    fs_err::copy(repo().join("hermetic.toml"), p.join("hermetic.toml")).unwrap();
    for d in ["keys", "overlays", "scripts", "programs"] {
        copy_tree(&repo().join(d), &p.join(d));
    }
    fs_err::create_dir(p.join("recipes")).unwrap();
    fs_err::write(
        p.join("recipes/base.toml"),
        project::base_recipe(Kernel::Package),
    )
    .unwrap();
    fs_err::copy(
        repo().join("recipes/buildernet.toml"),
        p.join("recipes/buildernet.toml"),
    )
    .unwrap();
    // The committed content pins of the upstream sources, so that `lock` keeps them: those
    // only GitHub or the Go module proxy serve could not be pinned afresh here (the Debian
    // packages are locked afresh from the live mirror).
    let committed: toml::Table =
        toml::from_str(&fs_err::read_to_string(repo().join("pins.lock")).unwrap()).unwrap();
    let mut seed = toml::Table::new();
    for key in ["version", "upstream"] {
        seed.insert(key.into(), committed[key].clone());
    }
    fs_err::write(p.join("pins.lock"), toml::to_string(&seed).unwrap()).unwrap();
    let text = fs_err::read_to_string(repo().join("recipes/buildernet-qemu.toml")).unwrap();
    let mut qemu: toml::Table = toml::from_str(&text).unwrap();
    qemu.entry("packages")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
        .as_array_mut()
        .unwrap()
        .push("linux-image-cloud-amd64".into());
    fs_err::write(
        p.join("recipes/buildernet-qemu.toml"),
        toml::to_string(&qemu).unwrap(),
    )
    .unwrap();
    dir
}

/// The configuration the hub serves: the sample with every key, with this test's values.
fn configuration() -> Value {
    let text =
        fs_err::read_to_string(repo().join("tests/fixtures/buildernet/config.json")).unwrap();
    let mut c: Value = serde_json::from_str(&text).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    c["instance_name"] = json!("playground-boot-01");
    c["disk_encryption"] = json!({ "key#base64": b64.encode(DISK_KEY) });
    // Safe mode (gh_token.env) must neutralise it; unsafe mode (filter-rules.toml) keeps it.
    c["github_token"] = json!(ESCAPED);
    c["flowproxy"]["filter_rules_toml"] = json!(format!("# {ESCAPED}\n"));
    c["playground"] = json!({
        "artifacts_url": "http://10.0.2.2:7000/playground",
        "el_bootnode": "enode://00@10.0.2.2:30303",
        "cl_libp2p_addr": "/ip4/10.0.2.2/tcp/9000",
    });
    c
}

/// The fake BuilderHub: answers GETs of the configuration and of the chain files on
/// 127.0.0.1:7000, 404 to anything else; records every request line.
struct Hub {
    requests: Arc<Mutex<Vec<String>>>,
}

impl Hub {
    fn start(config: Value) -> Hub {
        let listener = TcpListener::bind(HUB_ADDR)
            .unwrap_or_else(|e| panic!("the fake BuilderHub cannot listen on {HUB_ADDR}: {e}"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let body = serde_json::to_vec(&config).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (log, body) = (log.clone(), body.clone());
                std::thread::spawn(move || serve(stream, &log, &body));
            }
        });
        Hub { requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn chain_file(name: &str) -> String {
    format!("playground chain file {name}\n")
}

fn serve(stream: TcpStream, log: &Mutex<Vec<String>>, config: &[u8]) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    // The headers, up to the blank line.
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h.trim().is_empty() => break,
            Ok(_) => {}
        }
    }
    let line = line.trim().to_string();
    log.lock().unwrap().push(line.clone());
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == CONFIG_PATH {
        ("200 OK", config.to_vec())
    } else if let Some(name) = path
        .strip_prefix("/playground/")
        .filter(|n| CHAIN_FILES.contains(n))
    {
        ("200 OK", chain_file(name).into_bytes())
    } else {
        ("404 Not Found", b"not found\n".to_vec())
    };
    let mut out = &stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = out.write_all(&body);
}

/// Kills a child process when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The guest's serial console through QEMU's unix-socket chardev: everything read is kept
/// (and written to `log`); commands are typed into root's shell.
struct Console {
    stream: UnixStream,
    seen: Arc<Mutex<Vec<u8>>>,
    next: u32,
}

impl Console {
    fn connect(socket: &Path, log: PathBuf, qemu: &mut Child) -> Console {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) => {
                    if let Ok(Some(status)) = qemu.try_wait() {
                        panic!("QEMU ended ({status}) before its console could be reached");
                    }
                    assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "no console socket {}: {e}",
                        socket.display()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (stream.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            let mut file = fs_err::File::create(log).unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let _ = file.write_all(&buf[..n]);
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Console {
            stream,
            seen,
            next: 0,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn send(&mut self, line: &str) {
        self.stream.write_all(line.as_bytes()).unwrap();
        self.stream.write_all(b"\n").unwrap();
    }

    /// Waits until `want` is in what the console printed after byte `from`.
    fn wait_for(&self, from: usize, want: &str, deadline: Instant) -> Option<usize> {
        loop {
            {
                let seen = self.seen.lock().unwrap();
                if let Some(i) =
                    memchr::memmem::find(&seen[from.min(seen.len())..], want.as_bytes())
                {
                    return Some(from + i);
                }
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for root's shell: a command typed into it until its output appears (the echo of
    /// the typed line holds `$((...))`, the output its value).
    fn wait_for_shell(&mut self, deadline: Instant) {
        loop {
            let from = self.seen.lock().unwrap().len();
            self.send("echo HERMETIC-SHELL-$((40+2))");
            if self
                .wait_for(
                    from,
                    "HERMETIC-SHELL-42",
                    Instant::now() + Duration::from_secs(15),
                )
                .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no root shell on the serial console; console:\n{}",
                self.text()
            );
        }
    }

    /// Runs `cmd` in root's shell; returns its output (standard output and error), the lines
    /// between the markers. The markers are made by the shell, so the echo of the typed line
    /// does not hold them.
    fn run(&mut self, cmd: &str, deadline: Instant) -> String {
        self.next += 1;
        let n = self.next;
        let (begin, end) = (format!("HERMETIC-BEGIN-{n}-"), format!("HERMETIC-END-{n}-"));
        let from = self.seen.lock().unwrap().len();
        self.send(&format!(
            "echo HERMETIC-BEGIN-{n}-$((0)); {cmd} 2>&1; echo HERMETIC-END-{n}-$((0))"
        ));
        let b = self
            .wait_for(from, &format!("{begin}0"), deadline)
            .unwrap_or_else(|| panic!("`{cmd}` did not start; console:\n{}", self.text()));
        let e = self
            .wait_for(b, &format!("{end}0"), deadline)
            .unwrap_or_else(|| panic!("`{cmd}` did not end; console:\n{}", self.text()));
        let seen = self.seen.lock().unwrap();
        let out = String::from_utf8_lossy(&seen[b..e]).replace('\r', "");
        // Drop the begin marker's line.
        let out = out.split_once('\n').map(|x| x.1).unwrap_or("").to_string();
        eprintln!("guest# {cmd}\n{out}");
        out
    }
}

/// Starts swtpm on a fresh state in `dir`; returns it and its control socket.
fn swtpm(dir: &Path) -> (Killed, PathBuf) {
    let state = dir.join("tpm");
    fs_err::create_dir_all(&state).unwrap();
    run(Command::new("swtpm_setup")
        .args(["--tpm2", "--pcr-banks", "sha1,sha256,sha384", "--createek"])
        .arg("--tpmstate")
        .arg(&state));
    let socket = dir.join("swtpm.sock");
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--terminate"])
        .arg("--tpmstate")
        .arg(format!("dir={}", state.display()))
        .arg("--ctrl")
        .arg(format!("type=unixio,path={}", socket.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("swtpm (apt-get install swtpm)");
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "swtpm did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Killed(child), socket)
}

/// The line of `out` that starts with `key` (after blanks), without it.
fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.trim_start().strip_prefix(key))
        .map(str::trim)
}

#[test]
fn the_playground_image_renders_its_hub_configuration_and_opens_its_luks_disk() {
    let started = Instant::now();
    let project = project();
    let p = project.path();
    let store = Path::new(env!("CARGO_TARGET_TMPDIR")).join("buildernet-boot-store");
    for args in [
        &["lock", "--allow-mirror-state"][..],
        // The upstream sources GitHub and the Go module proxy serve cannot be had here or in
        // CI: the build fetches what it can and leaves the rest out, saying so in the image
        // (checked below).
        &[
            "build",
            "--omit-unavailable",
            "--profile",
            "playground",
            "--profile",
            "devtools",
            "buildernet-qemu",
        ],
    ] {
        run(hermetic()
            .arg("-C")
            .arg(p)
            .arg("--store")
            .arg(&store)
            .args(args));
    }
    let efi = p.join("out/buildernet-qemu_latest.efi");
    assert!(efi.is_file(), "hermetic build wrote no {}", efi.display());
    eprintln!("built in {:.0} s", started.elapsed().as_secs_f64());
    let want_pcrs = project::predicted_pcrs(&efi, "sha256", false);

    let hub = Hub::start(configuration());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // The ESP QEMU shows the firmware (a directory as a FAT drive), as `hermetic boot` does.
    let boot_dir = w.join("esp/EFI/BOOT");
    fs_err::create_dir_all(&boot_dir).unwrap();
    fs_err::copy(&efi, boot_dir.join("BOOTX64.EFI")).unwrap();
    let vars = w.join("OVMF_VARS.fd");
    fs_err::copy("/usr/share/OVMF/OVMF_VARS_4M.fd", &vars).unwrap();
    // The persistent disk: blank, 1 GiB, sparse.
    let disk = w.join("persistent.raw");
    fs_err::File::create(&disk)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let (_swtpm, tpm_socket) = swtpm(w);
    let console_socket = w.join("console.sock");
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args([
        "-machine",
        "q35,accel=tcg",
        "-cpu",
        "max",
        "-smp",
        "2",
        "-m",
        "4096",
    ])
    .args(["-nodefaults", "-display", "none", "-no-reboot"])
    .arg("-chardev")
    .arg(format!(
        "socket,id=console,path={},server=on,wait=off",
        console_socket.display()
    ))
    .args(["-serial", "chardev:console"])
    .arg("-drive")
    .arg("if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd")
    .arg("-drive")
    .arg(format!("if=pflash,format=raw,file={}", vars.display()))
    .arg("-drive")
    .arg(format!(
        "format=raw,file=fat:rw:{}",
        w.join("esp").display()
    ))
    .args(["-device", "virtio-scsi-pci,id=scsi0"])
    .arg("-drive")
    .arg(format!(
        "if=none,id=persistent,format=raw,file={}",
        disk.display()
    ))
    .args([
        "-device",
        "scsi-hd,drive=persistent,bus=scsi0.0,channel=0,scsi-id=0,lun=10,serial=persistent",
    ])
    .args([
        "-netdev",
        "user,id=net0",
        "-device",
        "virtio-net-pci,netdev=net0",
    ])
    .arg("-chardev")
    .arg(format!("socket,id=tpm,path={}", tpm_socket.display()))
    .args(["-tpmdev", "emulator,id=tpm0,chardev=tpm"])
    .args(["-device", "tpm-crb,tpmdev=tpm0"])
    .stdin(Stdio::null());
    let mut qemu = Killed(
        qemu.spawn()
            .expect("qemu-system-x86_64 (apt-get install qemu-system-x86)"),
    );
    let boot_start = Instant::now();
    let deadline = boot_start + GUEST_TIMEOUT;
    let serial_log = std::env::temp_dir().join("buildernet-boot-serial.log");
    let mut c = Console::connect(&console_socket, serial_log.clone(), &mut qemu.0);
    c.wait_for_shell(deadline);
    eprintln!(
        "root shell after {:.0} s (serial log: {})",
        boot_start.elapsed().as_secs_f64(),
        serial_log.display()
    );
    c.run("dmesg -n 1; stty -echo cols 250", deadline);
    // The boot is over: multi-user.target reached. (Not `is-system-running --wait`: the
    // services of the absent upstream programs fail and restart, and keep it "starting".)
    c.run(
        "timeout 600 sh -c 'until systemctl -q is-active multi-user.target; do sleep 2; done'",
        deadline,
    );
    eprintln!(
        "boot finished after {:.0} s",
        boot_start.elapsed().as_secs_f64()
    );

    // render-config: fetched from the hub, every file rendered.
    let units = c.run(
        "systemctl show -P ActiveState -P Result render-config.service persistent-setup.service",
        deadline,
    );
    let journal = || "journalctl -b --no-pager -o cat -u render-config -u persistent-setup";
    assert!(
        units.lines().filter(|l| l.trim() == "success").count() == 2
            && units.lines().filter(|l| l.trim() == "active").count() == 2,
        "render-config and persistent-setup did not both succeed: {units}\n{}",
        c.run(journal(), deadline)
    );
    let asked: Vec<String> = hub
        .requests()
        .into_iter()
        .filter(|r| r.contains(CONFIG_PATH))
        .collect();
    assert!(
        !asked.is_empty(),
        "the guest never asked the hub: {:?}",
        hub.requests()
    );
    let modes = c.run(
        "stat -c '%a %n' /etc/hostname /etc/disk-encryption-key /etc/gh_token.env \
         /etc/flowproxy/filter-rules.toml /etc/flowproxy/api-keys.toml /etc/acme-le/acme-le.env \
         /etc/vector/vector.yaml /etc/haproxy/haproxy.cfg /etc/rbuilder-rebalancer/config.toml \
         /usr/local/bin/playground-config-fetch",
        deadline,
    );
    for (mode, path) in [
        ("644", "/etc/hostname"),
        ("600", "/etc/disk-encryption-key"),
        ("400", "/etc/gh_token.env"),
        ("400", "/etc/flowproxy/filter-rules.toml"),
        ("400", "/etc/flowproxy/api-keys.toml"),
        ("600", "/etc/acme-le/acme-le.env"),
        ("600", "/etc/vector/vector.yaml"),
        ("644", "/etc/haproxy/haproxy.cfg"),
        ("644", "/etc/rbuilder-rebalancer/config.toml"),
        ("755", "/usr/local/bin/playground-config-fetch"),
    ] {
        assert!(
            modes.lines().any(|l| l.trim() == format!("{mode} {path}")),
            "{path} is not {mode}:\n{modes}"
        );
    }
    let hostname = c.run("cat /etc/hostname; hostname", deadline);
    assert_eq!(
        hostname.lines().map(str::trim).collect::<Vec<_>>(),
        ["playground-boot-01", "playground-boot-01"],
        "the hostname"
    );
    // `#base64` decoded in unsafe mode, written as it is (no newline).
    let key = c.run("base64 -w0 /etc/disk-encryption-key; echo", deadline);
    let key = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&key), DISK_KEY, "the disk key");
    // The Go escape: doubled in safe mode, kept in unsafe mode.
    let token = c.run("cat /etc/gh_token.env", deadline);
    assert_eq!(token.trim(), r"GH_TOKEN=ghp_line\\nbreak", "safe mode");
    let rules = c.run("cat /etc/flowproxy/filter-rules.toml", deadline);
    assert_eq!(rules.trim(), r"# ghp_line\nbreak", "unsafe mode");
    let vector = c.run(
        "grep -c playground-boot-01 /etc/vector/vector.yaml",
        deadline,
    );
    assert_ne!(vector.trim(), "0", "vector.yaml names the instance");

    // The persistent disk: LUKS2 on the disk of serial `persistent`, ext4 mounted.
    let mount = c.run(
        "findmnt -n -o SOURCE,FSTYPE,OPTIONS /var/lib/persistent",
        deadline,
    );
    let f: Vec<&str> = mount.split_whitespace().collect();
    assert!(
        f.len() == 3 && f[0] == "/dev/mapper/persistent" && f[1] == "ext4",
        "/var/lib/persistent is not the ext4 of /dev/mapper/persistent: {mount}\n{}",
        c.run(journal(), deadline)
    );
    for opt in ["nosuid", "nodev", "noexec"] {
        assert!(f[2].split(',').any(|o| o == opt), "{opt} missing: {mount}");
    }
    let status = c.run("cryptsetup status persistent", deadline);
    assert_eq!(field(&status, "type:"), Some("LUKS2"), "{status}");
    let device = field(&status, "device:")
        .unwrap_or_else(|| panic!("no device in {status}"))
        .to_string();
    let serial = c.run(&format!("lsblk -ndo SERIAL,TYPE {device}"), deadline);
    assert_eq!(
        serial.split_whitespace().collect::<Vec<_>>(),
        ["persistent", "disk"],
        "the volume is on {device}"
    );
    let dump = c.run(&format!("cryptsetup luksDump {device}"), deadline);
    assert_eq!(field(&dump, "Version:"), Some("2"), "{dump}");
    let lsblk = c.run("lsblk -no TYPE /dev/mapper/persistent", deadline);
    assert_eq!(lsblk.trim(), "crypt", "dm-crypt");
    // The playground's chain files, fetched from the hub onto the disk.
    let chain = c.run(
        "systemctl show -P Result playground-config-fetch.service; \
         cat /var/lib/persistent/playground/testnet/boot_enr.yaml",
        deadline,
    );
    assert_eq!(
        chain.trim(),
        format!("success\n{}", chain_file("testnet/boot_enr.yaml").trim()),
        "playground-config-fetch"
    );

    // What the build left out is named in os-release, and only that is missing: acme.sh is
    // there exactly when its files could be had; render-config (built from this project) is
    // never left out.
    let omitted = c.run(
        ". /usr/lib/os-release; echo \"omitted:$HERMETIC_OMITTED\"; \
         test -x /usr/bin/acme.sh && echo acme:yes || echo acme:no; \
         test -x /usr/bin/render-config && echo render:yes",
        deadline,
    );
    let names: Vec<&str> = field(&omitted, "omitted:")
        .unwrap_or_else(|| panic!("{omitted}"))
        .split_whitespace()
        .collect();
    let declared = [
        "acme.sh",
        "acme.sh-deploy-haproxy.sh",
        "acme.sh-dnsapi-dns_cf.sh",
        "attested-tls-proxy",
        "ntpd-rs",
        "system-api",
        "system-api-modules",
        "vector",
    ];
    for n in &names {
        assert!(
            declared.contains(n),
            "omitted {n}, not an upstream source: {omitted}"
        );
    }
    let acme = if names.contains(&"acme.sh") {
        "no"
    } else {
        "yes"
    };
    assert_eq!(field(&omitted, "acme:"), Some(acme), "{omitted}");
    assert_eq!(field(&omitted, "render:"), Some("yes"), "{omitted}");

    // sshd on 40192 (devtools), the masked units.
    let ss = c.run("ss -Hltn", deadline);
    assert!(
        ss.lines().any(|l| l
            .split_whitespace()
            .nth(3)
            .is_some_and(|a| a.ends_with(":40192"))),
        "nothing listens on 40192:\n{ss}"
    );
    let masked = [
        "systemd-pcrphase.service",
        "systemd-pcrphase-initrd.service",
        "systemd-pcrphase-sysinit.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "dpkg-db-backup.timer",
        "systemd-confext.service",
        "systemd-sysext.service",
        "systemd-pstore.service",
    ];
    let enabled = c.run(
        &format!("systemctl is-enabled {}", masked.join(" ")),
        deadline,
    );
    let states: Vec<&str> = enabled.lines().map(str::trim).collect();
    assert_eq!(states, vec!["masked"; masked.len()], "{enabled}");

    // The PCRs the TPM holds are the predicted ones.
    let pcrs = c.run(
        "for n in 4 9 11; do echo \"PCR $n $(cat /sys/class/tpm/tpm0/pcr-sha256/$n)\"; done",
        deadline,
    );
    for (pcr, value) in &want_pcrs {
        let seen = field(&pcrs, &format!("PCR {pcr} "))
            .unwrap_or_else(|| panic!("no PCR {pcr} in {pcrs}"))
            .to_ascii_lowercase();
        assert_eq!(
            &seen,
            &value.to_ascii_lowercase(),
            "PCR {pcr} (sha256): the TPM says {seen}, hermetic measure predicts {value}"
        );
    }

    c.send("systemctl poweroff");
    let stop = Instant::now();
    while stop.elapsed() < Duration::from_secs(180) {
        if let Ok(Some(_)) = qemu.0.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(qemu);
    // From outside: the disk now starts with a LUKS2 header ("LUKS\xba\xbe", version 2).
    let mut head = [0u8; 8];
    fs_err::File::open(&disk)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_eq!(&head, b"LUKS\xba\xbe\x00\x02", "the disk's header");
    eprintln!(
        "checked in {:.0} s in all (guest {:.0} s); the hub answered {} requests",
        started.elapsed().as_secs_f64(),
        boot_start.elapsed().as_secs_f64(),
        hub.requests().len()
    );
}
