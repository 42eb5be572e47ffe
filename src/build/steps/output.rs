//! The `output` step: the image tree written in the recipe's format (directory, tar, or a
//! bootable format around the kernel), with the step's `SHA256SUMS`.

use std::io::Write as _;

use super::StepCx;
use crate::build::BuildError;
use crate::build::exec::{FILES, SUMS, TREE, sandbox_id_map};
use crate::recipe::OutputFormat;

pub(in crate::build) fn run(
    cx: &StepCx<'_>,
    format: &crate::recipe::OutputFormat,
    stem: &str,
    cmdline: &str,
    identity: &crate::recipe::IdentityConfig,
) -> Result<(), BuildError> {
    let StepCx {
        graph, node, temp, ..
    } = *cx;
    let dep = |role: &str| cx.dep(role);
    let tree = dep("image").join(TREE);
    let files = temp.join(FILES);
    fs_err::create_dir(&files).map_err(BuildError::io(&files))?;
    // Files the image's steps left in $OUTPUTDIR are outputs too (checked again: the
    // store entry may have been changed since).
    let step_files = dep("image").join(FILES);
    if step_files.is_dir() {
        let image = &graph.nodes[node.deps["image"]].name;
        crate::build::outputs::copy_step_files(image, &step_files, &files)?;
    }
    let mut link_name = None;
    match format {
        OutputFormat::Tar => {
            let path = files.join(format!("{stem}.tar"));
            let out = fs_err::File::create(&path).map_err(BuildError::io(&path))?;
            let mut out = std::io::BufWriter::new(out);
            let tar_opts = crate::treetar::TarOptions {
                source_date_epoch: node.source_date_epoch,
                owner: None,
                id_map: Some(sandbox_id_map()?),
            };
            crate::treetar::write_tree(&tree, &mut out, &tar_opts).map_err(|source| {
                BuildError::Tar {
                    path: path.clone(),
                    source,
                }
            })?;
            out.flush().map_err(BuildError::io(&path))?;
        }
        OutputFormat::Directory => {
            let name = crate::build::outputs::directory_link_name(stem);
            let link = files.join(&name);
            link_name = Some(name);
            // The directory output is the stored image tree itself; `out/` gets a copy.
            std::os::unix::fs::symlink(&tree, &link).map_err(BuildError::io(&link))?;
        }
        bootable => {
            let scratch = temp.join("scratch");
            fs_err::create_dir(&scratch).map_err(BuildError::io(&scratch))?;
            let (kernel, uname) = if node.deps.contains_key("kernel") {
                let built = dep("kernel").join(FILES);
                let (kernel, uname) = crate::build::bootable::built_kernel(&built)?;
                // The kernel and its configuration are outputs too.
                if *bootable != OutputFormat::Initrd {
                    let dir = crate::beneath::Beneath::open(&built)?;
                    for (from, to) in [
                        (
                            crate::build::bootable::KERNEL_BZIMAGE,
                            format!("{stem}.vmlinuz"),
                        ),
                        (
                            crate::build::bootable::KERNEL_CONFIG,
                            format!("{stem}.config"),
                        ),
                    ] {
                        crate::build::outputs::copy_beneath(&dir, from, &files.join(to))?;
                    }
                }
                (kernel, uname)
            } else {
                crate::build::bootable::find_kernel(
                    &dep("image").join(crate::build::bootable::KERNEL_DIR),
                )?
            };
            let inputs = crate::build::bootable::BootableInputs {
                format: *bootable,
                tree: &tree,
                kernel: &kernel,
                uname: &uname,
                cmdline,
                stem,
                source_date_epoch: node.source_date_epoch,
                identity,
                id_map: sandbox_id_map()?,
            };
            crate::build::bootable::write(&inputs, &files, &scratch)?;
            fs_err::remove_dir_all(&scratch).map_err(BuildError::io(&scratch))?;
        }
    }
    crate::build::outputs::write_sums(&node.name, &files, &temp.join(SUMS), link_name.as_deref())?;
    Ok(())
}
