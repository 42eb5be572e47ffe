//! `hermetic shell`: a shell in the sandbox on the built tree of an image.

use std::process::ExitCode;

use super::Context;
use crate::build::BuildOptions;

/// Arguments of `hermetic shell`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = "\
The tree is the image's stored `image` step (packages, overlays, steps and clean-up; not the
output format), built first when the store lacks it, as `hermetic build` would (fetching
missing pins unless --offline). It is `/` in the build sandbox: read-only, no network,
subordinate ids so that files show their owners, HOME=/root, the image's name as host name.
With a terminal the shell gets a pseudo-terminal (job control, line editing, TERM passed);
otherwise standard input is passed as it is: `echo 'cat /etc/os-release' | hermetic shell base`.
--writable runs on a scratch copy in the store that is removed afterwards: the stored tree
never changes. The exit code is the command's.")]
pub struct Args {
    /// The image whose tree to enter (a recipe name, e.g. `base`).
    #[arg(value_name = "TARGET")]
    pub target: String,

    /// Select a profile of the recipe (repeatable), e.g. `devtools`.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,

    /// Work on a scratch copy of the tree, writable, thrown away when the shell ends.
    #[arg(long)]
    pub writable: bool,

    /// Never touch the network: fail if a pin the tree needs is not in the store.
    #[arg(long)]
    pub offline: bool,

    /// A Debian mirror to fetch missing pins from first (repeatable), as for `hermetic fetch`.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,

    /// The command to run instead of the tree's bash (or sh), with its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Runs `hermetic shell`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let (project, lock, store) = super::plan::load(ctx)?;
    crate::build::pipeline::prepare()?;
    let graph = crate::build::plan(
        &project,
        &lock,
        std::slice::from_ref(&args.target),
        &args.profiles,
    )?;
    let (graph, image) = crate::shell::image_graph(&graph, &args.target)?;
    if !graph.nodes.iter().all(|n| store.has_step(n.key.as_str())) {
        // Only what this image needs.
        crate::build::pipeline::fetch_missing(
            &store,
            &project,
            &lock,
            &graph,
            args.offline,
            &args.mirrors,
            &[],
            &ctx.reporter(),
        )?;
        // Nothing is copied out: the graph has no targets, the directory is scratch.
        let scratch = store.temp_dir()?;
        let opts = BuildOptions {
            output_dir: scratch.path().join("out"),
            keep_failed: false,
            rebuild: false,
            rebuild_only: Vec::new(),
            report: ctx.reporter(),
            jobs: None,
        };
        crate::build::build(&store, &graph, &opts)?;
    }
    let tree = store
        .step_path(graph.nodes[image].key.as_str())
        .join(crate::build::exec::TREE);
    let options = crate::shell::ShellOptions {
        writable: args.writable,
        command: args.command,
        hostname: args.target.clone(),
        report: ctx.reporter(),
    };
    let outcome = crate::shell::run(&store, &tree, &options)?;
    Ok(ExitCode::from((outcome.shell_code() & 0xff) as u8))
}
