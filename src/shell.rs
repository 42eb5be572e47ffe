//! `hermetic shell`: a shell (or any command) in the sandbox on the built tree of an image,
//! like `mkosi shell`, to look around what a recipe made.
//!
//! The tree is the store's entry of the image's `image` step (overlays, steps and clean-up
//! done; the output step is not needed and not built). It is `/`, read-only, with subordinate
//! ids so that files show their owners; no network. `--writable` works on a scratch copy in
//! the store's private `tmp/`, removed afterwards: the stored tree never changes.

use std::path::{Path, PathBuf};

use sandbox::{IdMapping, Input, Mount, Network, Outcome, RootSpec, Step};

use crate::build::{Graph, NodeKind};
use crate::store::{Store, StoreError};

/// Errors of [`run`].
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the graph of `{target}` has no image step")]
    NoImage { target: String },
    #[error("cannot {what} {tree}", tree = tree.display())]
    Sandbox {
        what: &'static str,
        tree: PathBuf,
        source: Box<sandbox::SandboxError>,
    },
    #[error(
        "cannot {what} {tree}: `{command}` exited with {status}{output}\nhint: the image tree needs `cp` and `find` (coreutils, findutils) for --writable",
        tree = tree.display()
    )]
    Helper {
        what: &'static str,
        tree: PathBuf,
        command: String,
        status: i32,
        /// The last lines it wrote, indented, after a newline; or nothing.
        output: String,
    },
    #[error("cannot create {path}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How [`run`] runs.
#[derive(Debug, Clone, Default)]
pub struct ShellOptions {
    /// Work on a scratch copy of the tree, writable, thrown away afterwards.
    pub writable: bool,
    /// The command; empty: `bash` where the tree has it, else `sh`.
    pub command: Vec<String>,
    /// The host name inside (the image's name).
    pub hostname: String,
    /// `-vv`: the sandbox's command and mounts on standard error.
    pub report: crate::report::Reporter,
}

/// Where the writable scratch copy is mounted inside the helper steps ...
const SCRATCH: &str = "/.hermetic-scratch";
/// ... and the stored tree, read-only, to copy from.
const SOURCE: &str = "/.hermetic-src";

/// The command run when none is given: the tree's own bash, or its `sh`.
const DEFAULT_SHELL: &str = "if [ -x /bin/bash ]; then exec /bin/bash; fi; exec /bin/sh";

/// The part of `graph` (the graph of one image) that makes the image's tree: its steps up
/// to the `image` step, without the output step (nor a kernel), and no targets to copy out.
pub fn image_graph(graph: &Graph, target: &str) -> Result<(Graph, usize), ShellError> {
    let no_image = || ShellError::NoImage {
        target: target.to_string(),
    };
    let (_, output) = graph.targets.first().ok_or_else(no_image)?;
    let image = *graph.nodes[*output]
        .deps
        .get("image")
        .ok_or_else(no_image)?;
    if !matches!(graph.nodes[image].kind, NodeKind::Image { .. }) {
        return Err(no_image());
    }
    // Nodes are ordered dependencies first, so the image's are all before it.
    let nodes = graph.nodes[..=image].to_vec();
    Ok((
        Graph {
            nodes,
            targets: Vec::new(),
            source_date_epoch: graph.source_date_epoch,
            omitted: Default::default(),
        },
        image,
    ))
}

/// The sandbox's standard input for an interactive command: a pseudo-terminal when ours is
/// a terminal, else ours as it is when `pass` (a pipe: `echo ls | hermetic shell base`),
/// else nothing.
pub fn input_mode(pass: bool) -> Input {
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        Input::Terminal
    } else if pass {
        Input::Inherit
    } else {
        Input::Null
    }
}

/// Passes the caller's `TERM` (for a pseudo-terminal), unless the step declares one.
pub fn pass_term(step: &mut Step) {
    if let Ok(term) = std::env::var("TERM")
        && !term.is_empty()
        && !term.contains('\0')
    {
        step.env.entry("TERM".into()).or_insert(term);
    }
}

/// A step on `tree` with the settings every step of [`run`] shares.
fn base_step(root: RootSpec, hostname: &str) -> Step {
    let mut step = Step::new(["/bin/true"]);
    step.root = root;
    step.ids = IdMapping::Subordinate;
    step.network = Network::None;
    step.hostname = if hostname.is_empty()
        || hostname.len() > 64
        || !hostname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        "hermetic".into()
    } else {
        hostname.into()
    };
    step.env.insert("HOME".into(), "/root".into());
    step
}

/// Runs a helper step (copy, removal) on the scratch tree; fails naming it unless it succeeds.
fn helper(
    what: &'static str,
    mut step: Step,
    scratch: &Path,
    tree: &Path,
    argv: &[&str],
) -> Result<(), ShellError> {
    step.argv = argv.iter().map(|a| a.to_string()).collect();
    step.stdin = Input::Null;
    step.output = sandbox::Output::LogOnly;
    step.mounts = vec![
        Mount::ReadOnly {
            src: tree.to_path_buf(),
            dst: PathBuf::from(SOURCE),
        },
        Mount::Writable {
            src: scratch.to_path_buf(),
            dst: PathBuf::from(SCRATCH),
        },
    ];
    // The tree carries Debian's set-id programs; the scratch copy lives in the store's
    // private `tmp/` (0700) and is removed afterwards, as a build's image tree is.
    step.allow_setid = true;
    let mut output = Vec::new();
    let outcome = sandbox::run_with(&step, &mut |_, bytes| output.extend_from_slice(bytes))
        .map_err(|e| ShellError::Sandbox {
            what,
            tree: tree.to_path_buf(),
            source: Box::new(e),
        })?;
    if !outcome.success() {
        let text = String::from_utf8_lossy(&output);
        let lines: Vec<&str> = text.lines().collect();
        let tail: String = lines[lines.len().saturating_sub(10)..]
            .iter()
            .map(|l| format!("\n  {l}"))
            .collect();
        return Err(ShellError::Helper {
            what,
            tree: tree.to_path_buf(),
            command: argv.join(" "),
            status: outcome.shell_code(),
            output: tail,
        });
    }
    Ok(())
}

/// Runs the shell (or `options.command`) in the sandbox on the stored image tree `tree` and
/// returns how it ended. The command's standard input is ours (a pseudo-terminal when ours
/// is a terminal); its output is copied to ours.
pub fn run(store: &Store, tree: &Path, options: &ShellOptions) -> Result<Outcome, ShellError> {
    // `hermetic cache gc` waits until the shell is over.
    let _in_use = store.use_guard()?;
    let mut scratch_dir = None;
    let root = if options.writable {
        let temp = store.temp_dir()?;
        let scratch = temp.path().join("tree");
        fs_err::create_dir(&scratch).map_err(|source| ShellError::Io {
            path: scratch.clone(),
            source,
        })?;
        // Copied with the tree's own cp, in the sandbox, so that files of every owner are
        // copied as they are, whoever runs hermetic.
        helper(
            "copy",
            base_step(RootSpec::ReadOnly(tree.to_path_buf()), &options.hostname),
            &scratch,
            tree,
            &["cp", "-a", "--no-target-directory", SOURCE, SCRATCH],
        )?;
        scratch_dir = Some((temp, scratch.clone()));
        RootSpec::Writable(scratch)
    } else {
        RootSpec::ReadOnly(tree.to_path_buf())
    };
    let mut step = base_step(root, &options.hostname);
    step.argv = if options.command.is_empty() {
        vec!["/bin/sh".into(), "-c".into(), DEFAULT_SHELL.into()]
    } else {
        options.command.clone()
    };
    step.stdin = input_mode(true);
    if step.stdin == Input::Terminal {
        pass_term(&mut step);
    }
    // A scratch tree may receive set-id files like an image step's tree (see `helper`).
    step.allow_setid = options.writable;
    options.report.debug_line(format_args!(
        "sandbox: {:?} in root {:?}, mounts {:?}, stdin {:?}, host name {}",
        step.argv, step.root, step.mounts, step.stdin, step.hostname
    ));
    let outcome = sandbox::run_with(&step, &mut |stream, bytes| {
        use std::io::Write as _;
        // Flushed at once: a prompt has no newline.
        let _ = match stream {
            sandbox::Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            sandbox::Stream::Stderr => std::io::stderr().lock().write_all(bytes),
        };
    });
    if let Some((temp, scratch)) = scratch_dir {
        // Files of subordinate owners are removed from inside, where root may.
        let removed = helper(
            "remove the scratch copy of",
            base_step(RootSpec::ReadOnly(tree.to_path_buf()), &options.hostname),
            &scratch,
            tree,
            &["find", SCRATCH, "-mindepth", "1", "-delete"],
        );
        drop(temp);
        let outcome = outcome.map_err(|e| ShellError::Sandbox {
            what: "run the shell on",
            tree: tree.to_path_buf(),
            source: Box::new(e),
        })?;
        removed?;
        return Ok(outcome);
    }
    outcome.map_err(|e| ShellError::Sandbox {
        what: "run the shell on",
        tree: tree.to_path_buf(),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_name_is_the_image_name_when_it_can_be_one() {
        assert_eq!(base_step(RootSpec::HostUsr, "gcp").hostname, "gcp");
        assert_eq!(base_step(RootSpec::HostUsr, "a_b").hostname, "hermetic");
        assert_eq!(base_step(RootSpec::HostUsr, "").hostname, "hermetic");
        let step = base_step(RootSpec::HostUsr, "base");
        assert_eq!(step.ids, IdMapping::Subordinate);
        assert_eq!(step.network, Network::None);
        assert_eq!(step.stdin, Input::Null, "only the shell itself reads stdin");
        step.validate().unwrap();
    }
}
