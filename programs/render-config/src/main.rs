//! The render-config command: fetch the configuration, render the templates, say what happened
//! on stderr (the journal, under the unit), exit non-zero if anything failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use render_config::fetch::{self, HttpUrl, Retry};
use render_config::{Layout, render_all};

const DEFAULT_URL: &str = "http://localhost:7937/api/l1-builder/v1/configuration";
const DEFAULT_TEMPLATES: &str = "/usr/lib/mustache-templates";

const USAGE: &str = "\
Usage: render-config [OPTIONS]

Fetches the BuilderNet configuration from BuilderHub (through the attested-tls-proxy client) and
renders every template under the template directory to the same path under the root.
A template is named <dest>.mustache[_unsafe][_NNN]; see docs/buildernet.md.

Options:
  --url URL              where to GET the configuration [env RENDER_CONFIG_URL]
                         (default http://localhost:7937/api/l1-builder/v1/configuration)
  --config FILE          read the configuration from FILE instead of fetching it
  --templates DIR        the template directory [env RENDER_CONFIG_TEMPLATES]
                         (default /usr/lib/mustache-templates)
  --root DIR             where the rendered files go [env RENDER_CONFIG_ROOT] (default /)
  --attempts N           fetch attempts in all (default 10)
  --retry-delay-ms MS    wait after the first failed attempt; doubles up to 60 s (default 2000)
  --timeout-ms MS        time limit of a connect and of each read (default 30000)
  -h, --help             this text

Exit status: 0 all rendered; 1 the configuration could not be had, or a template failed (the
others are still rendered); 2 bad usage.";

struct Options {
    url: String,
    config: Option<PathBuf>,
    layout: Layout,
    retry: Retry,
}

fn parse_args() -> Result<Option<Options>, String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut url = env("RENDER_CONFIG_URL").unwrap_or_else(|| DEFAULT_URL.into());
    let mut templates = env("RENDER_CONFIG_TEMPLATES").unwrap_or_else(|| DEFAULT_TEMPLATES.into());
    let mut root = env("RENDER_CONFIG_ROOT").unwrap_or_else(|| "/".into());
    let mut config = None;
    let mut retry = Retry {
        attempts: 10,
        first_delay: Duration::from_millis(2000),
        max_delay: Duration::from_secs(60),
        timeout: Duration::from_millis(30_000),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: `{v}` is not a number"))
        };
        match flag.as_str() {
            "--url" => url = value()?,
            "--config" => config = Some(PathBuf::from(value()?)),
            "--templates" => templates = value()?,
            "--root" => root = value()?,
            "--attempts" => {
                retry.attempts = u32::try_from(number(value()?)?)
                    .map_err(|_| "--attempts: too large".to_string())?
            }
            "--retry-delay-ms" => retry.first_delay = Duration::from_millis(number(value()?)?),
            "--timeout-ms" => retry.timeout = Duration::from_millis(number(value()?)?),
            _ => return Err(format!("unknown argument `{arg}`")),
        }
    }
    Ok(Some(Options {
        url,
        config,
        layout: Layout {
            templates: templates.into(),
            root: root.into(),
        },
        retry,
    }))
}

fn log(line: &str) {
    eprintln!("render-config: {line}");
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            log(&format!("error: {e}"));
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match &options.config {
        Some(path) => std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display())),
        None => match HttpUrl::parse(&options.url) {
            Err(e) => {
                log(&format!("error: {e}"));
                return ExitCode::from(2);
            }
            Ok(url) => {
                log(&format!("fetching the configuration from {url}"));
                fetch::fetch_with_retries(&url, &options.retry, log).map_err(|e| {
                    format!(
                        "fetching the configuration from {url}: {e}\nhint: is attested-tls-proxy-client.service running, and does BuilderHub know this instance?"
                    )
                })
            }
        },
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            log(&format!("error: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match render_all(&options.layout, &config, &mut |line| log(line)) {
        Err(e) => {
            log(&format!("error: {e}"));
            ExitCode::FAILURE
        }
        Ok(summary) if !summary.failed.is_empty() => {
            log(&format!(
                "error: {} template(s) failed, {} rendered",
                summary.failed.len(),
                summary.rendered.len()
            ));
            ExitCode::FAILURE
        }
        Ok(summary) => {
            log(&format!(
                "all {} template(s) rendered",
                summary.rendered.len()
            ));
            ExitCode::SUCCESS
        }
    }
}
