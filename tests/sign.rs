//! `hermetic sign` against Debian's `minisign`: what we sign, minisign verifies; what minisign
//! signs (with a key made by `minisign -G -W`), `hermetic verify --pubkey` checks; a tampered
//! file, a tampered trusted comment and the wrong key fail with errors naming the file; a
//! password-protected minisign key signs with its password only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hermetic(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn minisign(dir: &Path, args: &[&str]) -> Output {
    Command::new("minisign")
        .current_dir(dir)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("minisign is installed (scripts/setup.sh)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A directory with a key pair made by `hermetic sign --generate-key` and a file to sign.
fn signed_by_us() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = hermetic(d, &["sign", "--generate-key", "k.key"]);
    assert!(o.status.success(), "{}", text(&o));
    let file = d.join("gcp_1.efi");
    fs_err::write(&file, b"an image, byte for byte\n").unwrap();
    let o = hermetic(d, &["sign", "gcp_1.efi", "--key", "k.key"]);
    assert!(o.status.success(), "{}", text(&o));
    (dir, file)
}

#[test]
fn our_signature_verifies_with_minisign() {
    let (dir, _) = signed_by_us();
    let d = dir.path();
    let o = minisign(d, &["-Vm", "gcp_1.efi", "-p", "k.key.pub"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("Signature and comment signature verified"),
        "{out}"
    );
    // The default trusted comment names the file.
    assert!(out.contains("file:gcp_1.efi"), "{out}");
    // A prehashed signature: minisign -H (require prehashed) accepts it too.
    let o = minisign(d, &["-V", "-H", "-m", "gcp_1.efi", "-p", "k.key.pub"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn minisign_rejects_our_signature_of_a_tampered_file_or_comment() {
    let (dir, file) = signed_by_us();
    let d = dir.path();
    fs_err::write(&file, b"an image, byte for bytE\n").unwrap();
    let o = minisign(d, &["-Vm", "gcp_1.efi", "-p", "k.key.pub"]);
    assert!(!o.status.success(), "{}", text(&o));
    fs_err::write(&file, b"an image, byte for byte\n").unwrap();
    let sig = d.join("gcp_1.efi.minisig");
    let good = fs_err::read_to_string(&sig).unwrap();
    fs_err::write(&sig, good.replace("file:gcp_1.efi", "file:gcp_2.efi")).unwrap();
    let o = minisign(d, &["-Vm", "gcp_1.efi", "-p", "k.key.pub"]);
    assert!(!o.status.success(), "{}", text(&o));
}

#[test]
fn a_trusted_comment_is_kept_and_a_key_minisign_made_signs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = minisign(d, &["-G", "-W", "-p", "m.pub", "-s", "m.key"]);
    assert!(o.status.success(), "{}", text(&o));
    fs_err::write(d.join("f"), b"payload").unwrap();
    let o = hermetic(
        d,
        &[
            "sign",
            "f",
            "--key",
            "m.key",
            "--trusted-comment",
            "commit:abc release 7",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = minisign(d, &["-Vm", "f", "-p", "m.pub"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Trusted comment: commit:abc release 7"),
        "{}",
        text(&o)
    );
}

/// `hermetic verify` with a single `.minisig` as the source checks the rebuilt file against
/// it; here the library call does the same on the published file.
#[test]
fn a_minisign_signature_verifies_with_ours_and_tampering_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = minisign(d, &["-G", "-W", "-p", "m.pub", "-s", "m.key"]);
    assert!(o.status.success(), "{}", text(&o));
    let file = d.join("gcp_1.efi");
    fs_err::write(&file, b"released bytes").unwrap();
    for legacy in [false, true] {
        let mut args = vec![
            "-S",
            "-s",
            "m.key",
            "-m",
            "gcp_1.efi",
            "-t",
            "commit:0123 gcp",
        ];
        if legacy {
            args.push("-l");
        }
        let o = minisign(d, &args);
        assert!(o.status.success(), "{}", text(&o));
        let key = hermetic::sign::PublicKey::read(&d.join("m.pub")).unwrap();
        let sig = d.join("gcp_1.efi.minisig");
        let comment = hermetic::sign::verify_file(&file, &sig, &key, &d.join("m.pub")).unwrap();
        assert_eq!(comment, "commit:0123 gcp");

        // A tampered file.
        fs_err::write(&file, b"released bytez").unwrap();
        let err = hermetic::sign::verify_file(&file, &sig, &key, &d.join("m.pub")).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        assert!(err.to_string().contains("gcp_1.efi"), "{err}");
        fs_err::write(&file, b"released bytes").unwrap();

        // A tampered trusted comment.
        let good = fs_err::read_to_string(&sig).unwrap();
        fs_err::write(&sig, good.replace("commit:0123", "commit:9999")).unwrap();
        let err = hermetic::sign::verify_file(&file, &sig, &key, &d.join("m.pub")).unwrap_err();
        assert!(err.to_string().contains("trusted comment"), "{err}");
        assert!(err.to_string().contains("commit:9999"), "{err}");
        fs_err::write(&sig, good).unwrap();
    }
    // The wrong key.
    let o = hermetic(d, &["sign", "--generate-key", "other.key"]);
    assert!(o.status.success(), "{}", text(&o));
    let other = hermetic::sign::PublicKey::read(&d.join("other.key.pub")).unwrap();
    let err = hermetic::sign::verify_file(
        &file,
        &d.join("gcp_1.efi.minisig"),
        &other,
        &d.join("other.key.pub"),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("was made by the key") && msg.contains("other.key.pub"),
        "{msg}"
    );
}

#[test]
fn a_password_protected_minisign_key_signs_with_its_password_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // minisign reads the password from standard input when it is not a terminal.
    let mut child = Command::new("minisign")
        .current_dir(d)
        .args(["-G", "-p", "e.pub", "-s", "e.key"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"correct horse\ncorrect horse\n").unwrap();
    }
    assert!(child.wait().unwrap().success());
    fs_err::write(d.join("f"), b"x").unwrap();
    // No controlling terminal (setsid) and no password: refused with the hint.
    let sign = |password: Option<&str>| {
        let mut cmd = Command::new("setsid");
        cmd.current_dir(d)
            .arg(env!("CARGO_BIN_EXE_hermetic"))
            .args(["sign", "f", "--key", "e.key"])
            .stdin(std::process::Stdio::null())
            .env_remove("HERMETIC_SIGN_PASSWORD");
        if let Some(p) = password {
            cmd.env("HERMETIC_SIGN_PASSWORD", p);
        }
        cmd.output().unwrap()
    };
    let o = sign(None);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(
        out.contains("password-protected") && out.contains("HERMETIC_SIGN_PASSWORD"),
        "{out}"
    );
    assert!(!d.join("f.minisig").exists());
    let o = sign(Some("wrong horse"));
    assert!(!o.status.success());
    assert!(text(&o).contains("wrong password"), "{}", text(&o));
    assert!(!d.join("f.minisig").exists());
    let o = sign(Some("correct horse"));
    assert!(o.status.success(), "{}", text(&o));
    let o = minisign(d, &["-Vm", "f", "-p", "e.pub"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn generate_key_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs_err::write(d.join("k.key"), b"precious").unwrap();
    let o = hermetic(d, &["sign", "--generate-key", "k.key"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    assert_eq!(fs_err::read(d.join("k.key")).unwrap(), b"precious");
    assert!(!d.join("k.key.pub").exists());
}
