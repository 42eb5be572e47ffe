//! One runner per step kind. A planned [`Node`] describes its step completely; running it
//! needs only the node, the graph (for the store paths of its dependencies) and the store.
//! Adding a step kind means a variant of [`NodeKind`], its planning in `plan.rs`, a module
//! here and one arm in [`run`].

use std::path::{Path, PathBuf};

use crate::store::Store;

use super::BuildError;
use super::exec::BuildOptions;
use crate::build::plan::{Graph, Node, NodeKind};

mod image;
mod kernel;
mod output;
mod rootfs;

/// What a step's runner gets.
#[derive(Clone, Copy)]
pub(super) struct StepCx<'a> {
    pub store: &'a Store,
    pub graph: &'a Graph,
    pub node: &'a Node,
    /// The step's private temporary directory, published into the store when the run
    /// succeeds.
    pub temp: &'a Path,
    pub opts: &'a BuildOptions,
    /// The step's log, in `temp`.
    pub log: &'a Path,
}

impl StepCx<'_> {
    /// The store entry of the dependency with this role (`rootfs`, `tools`, `image`, …).
    pub fn dep(&self, role: &str) -> PathBuf {
        let i = self.node.deps[role];
        self.store.step_path(self.graph.nodes[i].key.as_str())
    }
}

/// Runs one step into `cx.temp`.
pub(super) fn run(cx: &StepCx<'_>) -> Result<(), BuildError> {
    match &cx.node.kind {
        NodeKind::Rootfs { debs, .. } => rootfs::run(cx, debs),
        NodeKind::Image {
            recipe,
            staged,
            architecture,
        } => image::run(cx, recipe, staged, architecture),
        NodeKind::Kernel(k) => kernel::run(cx, k),
        NodeKind::Program(p) => {
            super::program::run(cx.store, cx.graph, cx.node, p, cx.temp, cx.opts)
        }
        NodeKind::Go(g) => super::go::run(cx.store, cx.graph, cx.node, g, cx.temp, cx.opts),
        NodeKind::Output {
            format,
            stem,
            cmdline,
            identity,
        } => output::run(cx, format, stem, cmdline, identity),
    }
}
