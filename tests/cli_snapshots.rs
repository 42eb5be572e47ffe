//! Snapshots of what the command line prints: the help of every command, the errors of common
//! mistakes, the `--json` documents (errors included) and the head of each completion script,
//! each with the exit code. A change to any of them fails here until its snapshot under
//! `tests/snapshots/` is reviewed and accepted (`cargo insta review`, or
//! `INSTA_UPDATE=always cargo test --test cli_snapshots` and `git diff`).
//!
//! Volatile values are replaced before comparing: the temporary project and store directories
//! (`[PROJECT]`, `[STORE]`), SHA-256 digests (`[SHA256]`), ports of local servers (`[PORT]`),
//! sizes of generated files and durations.

mod support;

use std::path::Path;
use std::process::Command;

use clap::CommandFactory as _;

use support::ServedProject;

const BASE: &str = "packages = [\"app\"]\n";

/// `hermetic ARGS`, with a fixed help width and no store or project from the environment.
fn hermetic(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hermetic"));
    cmd.args(args)
        .env("COLUMNS", "100")
        .env_remove("HERMETIC_STORE")
        .env_remove("RUST_BACKTRACE");
    cmd
}

/// The exit code, standard output and standard error of `cmd`, with `dirs` (path, name)
/// replaced by their names.
fn outcome(cmd: &mut Command, dirs: &[(&Path, &str)]) -> String {
    let out = cmd.output().unwrap();
    let mut text = format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for (path, name) in dirs {
        // Canonical and as given (tempdirs may sit below a symlink).
        if let Ok(real) = path.canonicalize() {
            text = text.replace(real.to_str().unwrap(), name);
        }
        text = text.replace(path.to_str().unwrap(), name);
    }
    text
}

/// Runs `check` with the filters for values that change from run to run.
fn redacted(check: impl FnOnce()) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\b[0-9a-f]{64}\b", "[SHA256]");
    settings.add_filter(r"127\.0\.0\.1:[0-9]+", "127.0.0.1:[PORT]");
    settings.add_filter(r#""size": ?[0-9]+"#, "\"size\": [SIZE]");
    settings.add_filter(r"\b[0-9]+(\.[0-9]+)? ?(ms|s)\b", "[DURATION]");
    settings.bind(check);
}

/// Every command path below `hermetic`, parents first (`["cache"]`, `["cache", "gc"]`, …).
fn command_paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_string());
        out.push(path.clone());
        command_paths(sub, &path, out);
    }
}

#[test]
fn help_of_every_command() {
    let top = hermetic::cli::Cli::command();
    let mut paths = Vec::new();
    command_paths(&top, &[], &mut paths);
    assert!(paths.len() > 15, "{paths:?}");
    insta::assert_snapshot!("help", outcome(&mut hermetic(&["--help"]), &[]));
    // One snapshot per top-level command, holding the help of its subcommands too.
    let mut tops: Vec<&str> = paths.iter().map(|p| p[0].as_str()).collect();
    tops.dedup();
    for name in tops {
        let mut text = String::new();
        for path in paths.iter().filter(|p| p[0] == name) {
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.push("--help");
            text.push_str(&format!("$ hermetic {}\n", args.join(" ")));
            text.push_str(&outcome(&mut hermetic(&args), &[]));
            text.push('\n');
        }
        insta::assert_snapshot!(format!("help_{name}"), text);
    }
}

#[test]
fn mistakes_outside_a_project() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = [(dir.path(), "[DIR]")];
    let run = |args: &[&str]| {
        let mut cmd = hermetic(args);
        cmd.current_dir(dir.path())
            .env("HERMETIC_STORE", dir.path().join("store"));
        outcome(&mut cmd, &dirs)
    };
    insta::assert_snapshot!("no_project", run(&["build", "base"]));
    insta::assert_snapshot!("no_project_json", run(&["--json", "build", "base"]));
    insta::assert_snapshot!("unknown_flag", run(&["lock", "--no-such-flag"]));
    insta::assert_snapshot!(
        "unknown_flag_json",
        run(&["lock", "--no-such-flag", "--json"])
    );
    insta::assert_snapshot!("misspelt_flag", run(&["build", "--ofline", "base"]));
    insta::assert_snapshot!(
        "misspelt_flag_json",
        run(&["build", "--ofline", "base", "--json"])
    );
    insta::assert_snapshot!("unknown_command", run(&["biuld"]));
    insta::assert_snapshot!("missing_argument_json", run(&["--json", "why"]));
    let out = hermetic(&["--json", "cache"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(
        "missing_subcommand_json",
        String::from_utf8(out.stdout).unwrap()
    );
    // Help asked for is not an error, --json or not.
    let help = run(&["--json", "why", "--help"]);
    assert!(help.starts_with("exit: 0\n--- stdout\n"), "{help}");
}

#[test]
fn mistakes_in_a_project() {
    let p = ServedProject::new(&[("base", BASE), ("gcp", "parent = \"base\"\n")]);
    let dirs = [(p.dir.path(), "[PROJECT]"), (p.store.path(), "[STORE]")];
    let run = |args: &[&str]| outcome(p.command(args).env("COLUMNS", "100"), &dirs);
    redacted(|| {
        insta::assert_snapshot!("no_lock", run(&["build", "--offline", "base"]));
        insta::assert_snapshot!(
            "no_lock_json",
            run(&["--json", "build", "--offline", "base"])
        );
        insta::assert_snapshot!("lock_json", run(&["lock", "--json"]));
        insta::assert_snapshot!("unknown_target", run(&["build", "gpc"]));
        insta::assert_snapshot!("unknown_target_json", run(&["build", "gpc", "--json"]));
        insta::assert_snapshot!("unknown_profile", run(&["plan", "gcp", "--profile", "dve"]));
        insta::assert_snapshot!("plan_json", run(&["plan", "base", "--json"]));
        // (The pins `fetch --offline` lists come in an order that depends on the sizes of
        // the generated packages: its document is checked for shape, not snapshot.)
        let out = p
            .command(&["fetch", "--offline", "--json"])
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(6));
        assert_eq!(doc["error"]["kind"], "store", "{doc}");
        assert_eq!(doc["error"]["exit_code"], 6, "{doc}");
        assert!(
            doc["error"]["hints"][0]
                .as_str()
                .unwrap()
                .contains("--offline"),
            "{doc}"
        );

        fs_err::write(
            p.path("recipes/base.toml"),
            "packages = [\"app\", \"tool\"]\n",
        )
        .unwrap();
        insta::assert_snapshot!("stale_lock_check", run(&["lock", "--check"]));
        insta::assert_snapshot!("stale_lock_check_json", run(&["lock", "--check", "--json"]));
        insta::assert_snapshot!("stale_lock_build", run(&["build", "--offline", "base"]));
        insta::assert_snapshot!(
            "stale_lock_build_json",
            run(&["build", "--offline", "base", "--json"])
        );
    });
}

#[test]
fn every_json_error_is_one_document_with_the_exit_code() {
    // Whatever fails, standard output is one JSON document whose `exit_code` is the code.
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--json", "build", "base"][..],
        &["--json", "lock", "--bogus"],
        &["--json", "measure", "/nonexistent.efi"],
        &["--json", "diff", "/nonexistent-a", "/nonexistent-b"],
        &["--json", "why", "libc6"],
        &["--json", "cache", "gc"],
    ] {
        let out = hermetic(args)
            .current_dir(dir.path())
            .env("HERMETIC_STORE", dir.path().join("store"))
            .output()
            .unwrap();
        let code = out.status.code().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("hermetic {args:?}: {e}: {stdout:?}"));
        assert_ne!(code, 0, "hermetic {args:?}");
        assert_eq!(doc["error"]["exit_code"], code, "hermetic {args:?}: {doc}");
        assert!(
            doc["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "hermetic {args:?}: {doc}"
        );
        assert!(doc["error"]["kind"].is_string(), "hermetic {args:?}: {doc}");
        assert!(doc["error"]["hints"].is_array(), "hermetic {args:?}: {doc}");
        // The same error, as text, on standard error.
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with("error: "), "hermetic {args:?}: {stderr}");
    }
}

#[test]
fn completion_script_heads() {
    let mut text = String::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = hermetic(&["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        text.push_str(&format!("--- {shell}\n"));
        for line in script.lines().take(4) {
            text.push_str(line);
            text.push('\n');
        }
    }
    insta::assert_snapshot!("completions", text);
}
