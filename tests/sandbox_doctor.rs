//! `hermetic doctor` tells the truth about this machine.

#[path = "sandbox/common.rs"]
mod common;

use std::process::Command;

use common::*;

fn doctor_as(user: Option<&str>) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_hermetic");
    let mut c = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", bin]);
            c
        }
        None => Command::new(bin),
    };
    c.current_dir("/").arg("doctor").output().unwrap()
}

#[test]
fn doctor_json_is_consistent_with_what_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_hermetic"))
        .args(["doctor", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    let by_name = |n: &str| {
        checks
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("no check {n}: {v}"))
    };
    // The suites of this directory run sandboxes, so these must hold wherever they pass.
    for name in [
        "user namespaces",
        "mount, pid, net, uts, ipc, cgroup namespaces",
        "seccomp",
        "sandbox (single id)",
    ] {
        assert_eq!(by_name(name)["ok"], true, "{name}: {v}");
    }
    // The sandbox really runs (independently of doctor's own probe).
    assert_eq!(ok(sandbox(&[], &["true"])), "");
    // Exit status and `ok` agree with the required checks.
    let failed = checks
        .iter()
        .any(|c| c["required"] == true && c["ok"] == false);
    assert_eq!(v["ok"], !failed);
    assert_eq!(out.status.success(), !failed);
    // Every failed check says how to fix it.
    for c in checks.iter().filter(|c| c["ok"] == false) {
        assert!(c["hint"].is_string(), "{c}");
    }
}

#[test]
fn doctor_reports_a_missing_subordinate_range_with_a_hint() {
    if !is_root() {
        // As an ordinary user, check our own line instead: it must match /etc/subuid.
        let out = doctor_as(None);
        let text = stdout(&out);
        let line = text
            .lines()
            .find(|l| l.contains("subordinate ids"))
            .unwrap();
        let me = std::env::var("USER").unwrap_or_default();
        let listed = fs_err::read_to_string("/etc/subuid")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{me}:")));
        assert_eq!(line.starts_with('✓'), listed, "{text}");
        return;
    }
    // `nobody` has no range in /etc/subuid.
    let out = doctor_as(Some("nobody"));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(7), "{text}");
    // 7: this machine cannot run the sandbox (src/exit.rs).
    assert!(
        text.contains("✗ subordinate ids: /etc/subuid gives nobody no range of 65536 ids"),
        "{text}"
    );
    assert!(
        text.contains("hint: run `sudo usermod --add-subuids"),
        "{text}"
    );
    // Everything else still works for nobody.
    assert!(text.contains("✓ sandbox (single id)"), "{text}");
}
