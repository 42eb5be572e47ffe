//! `hermetic plan`: show the graph of steps and what would run.

use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::lockfile::Lockfile;
use crate::recipe::Project;
use crate::store::Store;

/// Arguments of `hermetic plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The images to plan (recipe names).
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Select a profile of the recipes (repeatable).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
}

/// Loads the project, its lock and the store.
pub(crate) fn load(ctx: &Context) -> anyhow::Result<(Project, Lockfile, Store)> {
    let project = Project::load(&ctx.project)?;
    let lock_path = Lockfile::path_in(&ctx.project);
    let lock =
        Lockfile::read(&lock_path)?.ok_or(crate::build::BuildError::NoLock { path: lock_path })?;
    let store = Store::open(&ctx.store)
        .with_context(|| format!("cannot open the store {}", ctx.store.display()))?;
    Ok((project, lock, store))
}

/// Runs `hermetic plan`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let (project, lock, store) = load(ctx)?;
    let graph = crate::build::plan(&project, &lock, &args.targets, &args.profiles)?;
    let rows: Vec<serde_json::Value> = graph
        .nodes
        .iter()
        .map(|n| {
            let cached = store.has_step(n.key.as_str());
            let deps: Vec<&str> = n
                .deps
                .values()
                .map(|&i| graph.nodes[i].name.as_str())
                .collect();
            serde_json::json!({
                "step": n.name,
                "kind": n.kind.word(),
                "key": n.key.as_str(),
                "cached": cached,
                "after": deps,
            })
        })
        .collect();
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (n, row) in graph.nodes.iter().zip(&rows) {
        let state = if row["cached"].as_bool() == Some(true) {
            "cached"
        } else {
            "would run"
        };
        let after: Vec<&str> = n
            .deps
            .iter()
            .map(|(role, &i)| {
                let _ = role;
                graph.nodes[i].name.as_str()
            })
            .collect();
        let after = if after.is_empty() {
            String::new()
        } else {
            format!("  after {}", after.join(", "))
        };
        println!(
            "{:<10} {:<20} {}{after}",
            state,
            n.name,
            &n.key.as_str()[..16]
        );
        if ctx.verbosity > 0
            && let crate::build::NodeKind::Rootfs { debs, .. } = &n.kind
        {
            println!("           {} packages", debs.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
