//! The `image` step: the rootfs copied, the overlays laid over it, the recipe's steps run in
//! the tools tree, os-release completed, a bootable tree prepared, then the clean-up.

use std::path::PathBuf;

use sandbox::{Mount, RootSpec};

use super::StepCx;
use crate::build::BuildError;
use crate::build::exec::{
    FILES, TREE, clean_up, copy_plain, log_line, remove_mount_points, run_step, run_step_named,
    tree_step,
};
use crate::recipe::StepTree;

pub(in crate::build) fn run(
    cx: &StepCx<'_>,
    recipe: &crate::recipe::ResolvedRecipe,
    staged: &[(String, String)],
    architecture: &str,
) -> Result<(), BuildError> {
    let StepCx {
        store,
        node,
        temp,
        log,
        ..
    } = *cx;
    let dep = |role: &str| cx.dep(role);
    // The overlays as the key saw them; a setting without a value fails the build before
    // anything runs.
    let overlays = crate::build::overlay::from_key(recipe, &node.inputs.overlays);
    crate::build::overlay::check_placeholders(&overlays, &recipe.environment)?;
    let tree = temp.join(TREE);
    fs_err::create_dir(&tree).map_err(BuildError::io(&tree))?;
    let files = temp.join(FILES);
    fs_err::create_dir(&files).map_err(BuildError::io(&files))?;
    let rootfs_tree = dep("rootfs").join(TREE);
    // Copy the rootfs with the tree's own cp, inside the sandbox, so that files of
    // every owner are copied as they are, whoever runs hermetic.
    let mut copy = tree_step(node, &rootfs_tree, log);
    copy.root = RootSpec::ReadOnly(rootfs_tree.clone());
    copy.argv = vec![
        "/bin/cp".into(),
        "-a".into(),
        "--no-target-directory".into(),
        "/.hermetic-src".into(),
        "/.hermetic-dest".into(),
    ];
    copy.mounts = vec![
        Mount::ReadOnly {
            src: rootfs_tree.clone(),
            dst: PathBuf::from("/.hermetic-src"),
        },
        Mount::Writable {
            src: tree.clone(),
            dst: PathBuf::from("/.hermetic-dest"),
        },
    ];
    run_step(node, &copy, log, &cx.opts.report)?;
    // Laid by hermetic itself, beneath the tree's root: modes from the recipe and git,
    // build-time settings substituted (overlay.rs).
    crate::build::overlay::lay(&tree, &overlays, &recipe.environment)?;
    crate::build::program::install_into_image(store, cx.graph, node, &tree, cx.opts)?;
    remove_mount_points(&tree)?;
    // Pinned tarballs and source packages, hard-linked from the store (same file
    // system) under their names.
    let tarballs = temp.join("tarballs");
    fs_err::create_dir(&tarballs).map_err(BuildError::io(&tarballs))?;
    for (name, sha) in staged {
        let blob = store.blob_path(sha);
        if !blob.is_file() {
            return Err(BuildError::MissingPins {
                count: 1,
                store: store.root().to_path_buf(),
                example: format!("{name} ({})", blob.display()),
            });
        }
        store.verified_blob(sha, None, name)?;
        let dst = tarballs.join(name);
        if let Some(parent) = dst.parent() {
            fs_err::create_dir_all(parent).map_err(BuildError::io(parent))?;
        }
        if fs_err::hard_link(&blob, &dst).is_err() {
            fs_err::copy(&blob, &dst).map_err(BuildError::io(&dst))?;
        }
    }
    for s in &recipe.steps {
        let tools = dep("tools").join(TREE);
        let sources = temp.join("src");
        let build = temp.join("build");
        for d in [&sources, &build] {
            let _ = fs_err::remove_dir_all(d);
            fs_err::create_dir(d).map_err(BuildError::io(d))?;
        }
        for src in &s.sources {
            copy_plain(&src.path, &sources.join(&src.relative))?;
        }
        let script = temp.join("script");
        fs_err::write(&script, &s.script).map_err(BuildError::io(&script))?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .map_err(BuildError::io(&script))?;
        }
        let mut step = tree_step(node, &tools, log);
        step.root = RootSpec::ReadOnly(tools.clone());
        step.argv = if s.script.starts_with("#!") {
            vec!["/work/script".into()]
        } else {
            vec!["/bin/sh".into(), "-eu".into(), "/work/script".into()]
        };
        step.env = recipe.step_environment(s);
        for (k, v) in [
            ("SRCDIR", "/work/src"),
            ("BUILDDIR", "/work/build"),
            ("DESTDIR", "/work/dest"),
            ("OUTPUTDIR", "/work/out"),
            ("TARBALLDIR", "/work/tarballs"),
            ("HOME", "/root"),
        ] {
            step.env.insert(k.into(), v.into());
        }
        step.env.insert("IMAGE_ID".into(), recipe.image_id.clone());
        step.env.insert(
            "IMAGE_VERSION".into(),
            recipe.version.clone().unwrap_or_default(),
        );
        step.env
            .insert("ARCHITECTURE".into(), architecture.to_string());
        step.env
            .insert("PROFILES".into(), recipe.profiles.join(" "));
        step.cwd = PathBuf::from("/work/build");
        let dest = if s.tree == StepTree::Image {
            Mount::Writable {
                src: tree.clone(),
                dst: PathBuf::from("/work/dest"),
            }
        } else {
            Mount::ReadOnly {
                src: tree.clone(),
                dst: PathBuf::from("/work/dest"),
            }
        };
        step.mounts = vec![
            Mount::Tmpfs {
                dst: PathBuf::from("/work"),
            },
            Mount::ReadOnly {
                src: script.clone(),
                dst: PathBuf::from("/work/script"),
            },
            Mount::ReadOnly {
                src: sources.clone(),
                dst: PathBuf::from("/work/src"),
            },
            Mount::ReadOnly {
                src: tarballs.clone(),
                dst: PathBuf::from("/work/tarballs"),
            },
            Mount::Writable {
                src: build.clone(),
                dst: PathBuf::from("/work/build"),
            },
            dest,
            Mount::Writable {
                src: files.clone(),
                dst: PathBuf::from("/work/out"),
            },
        ];
        // Only a step that writes the image tree may make set-id files (the tree needs
        // them; it is kept in the store's private step directories), and even then
        // nothing in its outputs keeps the bits.
        step.allow_setid = s.tree == StepTree::Image;
        let name = format!("{} ({})", node.name, s.name);
        log_line(log, &format!("==> step {}", s.name))?;
        run_step_named(&name, &step, log, &cx.opts.report)?;
        if step.allow_setid {
            sandbox::setid::strip(&files).map_err(|e| BuildError::Sandbox {
                step: name.clone(),
                source: Box::new(e.into()),
            })?;
        }
        // What the step left in $OUTPUTDIR is checked now, naming the step.
        crate::build::outputs::check_step_files(&name, &files)?;
        let _ = fs_err::remove_dir_all(&build);
        let _ = fs_err::remove_dir_all(&sources);
        let _ = fs_err::remove_file(&script);
    }
    let _ = fs_err::remove_dir_all(&tarballs);
    // os-release names the image, as mkosi does.
    let mut osrel = tree_step(node, &tree, log);
    osrel.argv = vec![
        "/bin/sh".into(),
        "-euc".into(),
        "if [ -f /usr/lib/os-release ]; then printf 'IMAGE_ID=%s\\n' \"$IMAGE_ID\" >> /usr/lib/os-release; if [ -n \"$IMAGE_VERSION\" ]; then printf 'IMAGE_VERSION=%s\\n' \"$IMAGE_VERSION\" >> /usr/lib/os-release; fi; if [ -n \"$HERMETIC_OMITTED\" ]; then printf 'HERMETIC_OMITTED=\"%s\"\\n' \"$HERMETIC_OMITTED\" >> /usr/lib/os-release; fi; fi".into(),
    ];
    osrel.env.insert("IMAGE_ID".into(), recipe.image_id.clone());
    osrel.env.insert(
        "IMAGE_VERSION".into(),
        recipe.version.clone().unwrap_or_default(),
    );
    // An image built without some upstream sources says so (the key holds the same list).
    osrel.env.insert(
        crate::build::omit::OS_RELEASE_FIELD.into(),
        node.inputs
            .settings
            .get(crate::build::omit::OMITTED_SETTING)
            .cloned()
            .unwrap_or_default(),
    );
    run_step(node, &osrel, log, &cx.opts.report)?;
    if crate::build::bootable::is_bootable(recipe.format) {
        let kernel = temp.join(crate::build::bootable::KERNEL_DIR);
        fs_err::create_dir(&kernel).map_err(BuildError::io(&kernel))?;
        let mut prep = tree_step(node, &tree, log);
        let script = if recipe.kernel.is_some() {
            crate::build::bootable::PREPARE_SCRIPT_BUILT_KERNEL
        } else {
            crate::build::bootable::PREPARE_SCRIPT
        };
        prep.argv = vec!["/bin/sh".into(), "-c".into(), script.into()];
        prep.mounts.push(Mount::Writable {
            src: kernel.clone(),
            dst: PathBuf::from("/.hermetic-kernel"),
        });
        log_line(log, "==> bootable: /init and the kernel")?;
        run_step(node, &prep, log, &cx.opts.report)?;
        remove_mount_points(&tree)?;
    }
    clean_up(node, &tree, log, &cx.opts.report)?;
    Ok(())
}
