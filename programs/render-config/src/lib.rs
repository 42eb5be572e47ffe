//! render-config: the BuilderNet image's boot-time configuration.
//!
//! At boot the image knows nothing about its operator. render-config asks BuilderHub (through
//! the attested-tls-proxy client on 127.0.0.1:7937) for the configuration JSON and renders every
//! mustache template under /usr/lib/mustache-templates to the same path under /:
//!
//! - [`fetch`]: one HTTP GET with retries; the JSON stays in memory, never on disk;
//! - [`data`]: the JSON as safe-mode and unsafe-mode templates see it;
//! - [`mustache`]: the renderer, agreeing with cbroglie/mustache 1.4.0 (the seed's);
//! - [`templates`]: template names (`<dest>.mustache[_unsafe][_NNN]`) and atomic writes.
//!
//! A template that fails (bad name, bad syntax, data it cannot have, a write error) is logged
//! and skipped; the others are still rendered, and the run reports failure at the end.
//! docs/buildernet.md describes it for operators.

pub mod data;
pub mod fetch;
pub mod mustache;
pub mod templates;

use std::path::{Path, PathBuf};

use crate::mustache::{Template, Value};
use crate::templates::{Found, TemplateName};

/// Where templates come from and where the files go.
#[derive(Debug, Clone)]
pub struct Layout {
    pub templates: PathBuf,
    pub root: PathBuf,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Destination paths written.
    pub rendered: Vec<PathBuf>,
    /// Templates that failed.
    pub failed: Vec<PathBuf>,
}

/// Renders every template under `layout.templates` with `config` (the JSON as fetched).
/// Every message goes to `log`, one line each. Errors: the config is not JSON (then nothing is
/// written), or the template root cannot be read.
pub fn render_all(
    layout: &Layout,
    config: &[u8],
    log: &mut dyn FnMut(&str),
) -> Result<Summary, String> {
    let json = data::parse(config).map_err(|e| format!("{e}; no file was rendered"))?;
    let safe = data::safe(&json);
    let unsafe_data = data::unsafe_data(&json);
    let found = templates::find(&layout.templates, &mut |path, why| {
        log(&format!("warning: {}: skipped: {why}", path.display()))
    })
    .map_err(|e| format!("reading the templates: {e}"))?;
    if found.is_empty() {
        log(&format!(
            "warning: no template under {}",
            layout.templates.display()
        ));
    }
    let mut summary = Summary::default();
    for template in found {
        match render_one(layout, &template, &safe, &unsafe_data, log) {
            Ok(dest) => summary.rendered.push(dest),
            Err(e) => {
                log(&format!("error: template {}: {e}", template.path.display()));
                summary.failed.push(template.path);
            }
        }
    }
    Ok(summary)
}

fn render_one(
    layout: &Layout,
    found: &Found,
    safe: &Value,
    unsafe_data: &Result<Value, data::DataError>,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, String> {
    let name: &TemplateName = found.name.as_ref().map_err(|e| e.to_string())?;
    let source = std::fs::read(&found.path).map_err(|e| format!("reading it: {e}"))?;
    let template = Template::parse(&source).map_err(|e| format!("not a valid template: {e}"))?;
    let data = if name.unsafe_mode {
        unsafe_data
            .as_ref()
            .map_err(|e| format!("the configuration cannot be used in unsafe mode: {e}"))?
    } else {
        safe
    };
    let rendered = template.render(data);
    for key in &rendered.missing {
        log(&format!(
            "warning: template {}: key `{key}` is not in the configuration; rendered as empty",
            found.path.display()
        ));
    }
    let dest = destination(&layout.root, &found.rel_dir, &name.dest);
    templates::write_atomic(&dest, &rendered.output, name.mode)
        .map_err(|e| format!("writing: {e}"))?;
    log(&format!(
        "rendered {} (mode {:04o}, {})",
        dest.display(),
        name.mode,
        if name.unsafe_mode { "unsafe" } else { "safe" }
    ));
    Ok(dest)
}

fn destination(root: &Path, rel_dir: &Path, dest: &str) -> PathBuf {
    root.join(rel_dir).join(dest)
}
