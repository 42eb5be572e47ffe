//! The TOML examples of `docs/recipes.md` work as written: each one loads (parses, validates
//! and resolves, with each of its profiles) with the recipe loader, in a copy of this
//! repository's project.

mod project;

use std::path::Path;

/// The ```toml blocks of a Markdown text, with the line each starts on.
fn toml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some((i + 1, String::new())),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed ```toml block");
    blocks
}

/// A project made of `config` as `hermetic.toml`, this repository's recipes, kernel
/// fragments and overlays, and the files of a user's project that the recipe example names.
fn docs_project(config: &str) -> tempfile::TempDir {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    fs_err::write(dir.path().join("hermetic.toml"), config).unwrap();
    for sub in ["recipes", "kernel", "overlays", "scripts"] {
        project::copy_dir(&repo.join(sub), &dir.path().join(sub));
    }
    fs_err::create_dir_all(dir.path().join("scripts")).unwrap();
    // The `path` source of recipes/buildernet.toml: loading needs only the directory.
    fs_err::create_dir_all(dir.path().join("programs/render-config")).unwrap();
    fs_err::write(dir.path().join("scripts/gcp-disk.sh"), "#!/bin/sh\n").unwrap();
    fs_err::create_dir_all(dir.path().join("udev")).unwrap();
    fs_err::write(dir.path().join("udev/65-gce-disk-naming.rules"), "\n").unwrap();
    dir
}

/// Tools the examples' steps call, and the package of the tools tree that holds each.
const TOOLS: [(&str, &str); 1] = [("systemctl", "systemd")];

#[test]
fn every_toml_example_of_the_recipe_docs_loads_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = fs_err::read_to_string(repo.join("docs/recipes.md")).unwrap();
    let blocks = toml_blocks(&text);
    let (configs, recipes): (Vec<_>, Vec<_>) = blocks
        .into_iter()
        .partition(|(_, body)| body.contains("[archive]"));
    assert_eq!(configs.len(), 1, "one hermetic.toml example");
    assert!(recipes.len() >= 3, "{recipes:?}");
    let config = &configs[0].1;
    for (line, body) in &recipes {
        let dir = docs_project(config);
        let name = format!("docs-example-{line}");
        fs_err::write(dir.path().join(format!("recipes/{name}.toml")), body).unwrap();
        let loaded = hermetic::recipe::Project::load(dir.path())
            .unwrap_or_else(|e| panic!("docs/recipes.md, the example at line {line}: {e}"));
        let mut selections = vec![Vec::new()];
        selections.extend(loaded.profiles(&name).unwrap().into_iter().map(|p| vec![p]));
        for profiles in selections {
            let r = loaded.resolve_with_profiles(&name, &profiles).unwrap();
            for step in &r.steps {
                for (tool, package) in TOOLS {
                    if step.script.contains(tool) {
                        assert!(
                            r.build_packages.contains(package),
                            "docs/recipes.md line {line}: step `{}` calls {tool}, but the \
                             tools tree ({:?}) lacks {package}",
                            step.name,
                            r.build_packages
                        );
                    }
                }
            }
        }
    }
}
