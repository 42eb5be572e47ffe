//! The `rootfs` step (also every tools tree): a package closure installed into an empty
//! tree like a Debian system, in the sandbox, then cleaned up deterministically.

use std::path::{Path, PathBuf};

use sandbox::Mount;

use super::StepCx;
use crate::build::BuildError;
use crate::build::exec::{TREE, clean_up, remove_mount_points, run_step, tree_step};
use crate::build::plan::deb_paths;
use crate::build::rootfs;

pub(in crate::build) fn run(
    cx: &StepCx<'_>,
    debs: &[crate::build::plan::DebPin],
) -> Result<(), BuildError> {
    let StepCx {
        store,
        node,
        temp,
        log,
        ..
    } = *cx;
    let paths = deb_paths(store, debs);
    let missing: Vec<&PathBuf> = paths.iter().filter(|p| !p.is_file()).collect();
    if let Some(example) = missing.first() {
        return Err(BuildError::MissingPins {
            count: missing.len(),
            store: store.root().to_path_buf(),
            example: example.display().to_string(),
        });
    }
    let tree = temp.join(TREE);
    fs_err::create_dir(&tree).map_err(BuildError::io(&tree))?;
    let infos = rootfs::read_debs(store, debs)?;
    rootfs::bootstrap_tree(store, &tree, &infos)?;
    let blobs = paths[0].parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut step = tree_step(node, &tree, log);
    step.argv = vec![
        "/bin/sh".into(),
        "-c".into(),
        rootfs::install_script(&infos),
    ];
    step.mounts.push(Mount::ReadOnly {
        src: blobs,
        dst: PathBuf::from(rootfs::DEBS_DIR),
    });
    run_step(node, &step, log, &cx.opts.report)?;
    remove_mount_points(&tree)?;
    // Every stored tree is a function of its inputs, so that `--rebuild` can check it.
    clean_up(node, &tree, log, &cx.opts.report)?;
    Ok(())
}
