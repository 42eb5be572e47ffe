//! `hermetic doctor`: can this machine run the sandbox, and how to fix what it cannot.

use std::process::ExitCode;

use super::Context;

/// Check that this machine can run the sandbox, and say how to fix what cannot.
///
/// Checks user namespaces (including Ubuntu's kernel.apparmor_restrict_unprivileged_userns),
/// the other namespaces, seccomp, Landlock, newuidmap/newgidmap and the invoking user's
/// subordinate ids, then runs `true` in the sandbox. Exits with 1 when a required check fails.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `hermetic doctor`.
pub fn run(ctx: &Context, _args: Args) -> anyhow::Result<ExitCode> {
    let checks = sandbox::doctor();
    let failed = checks.iter().any(|c| c.required && !c.ok);
    if ctx.json {
        let list: Vec<_> = checks
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "ok": c.ok,
                    "required": c.required,
                    "detail": c.detail,
                    "hint": c.hint,
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "ok": !failed, "checks": list }));
    } else {
        for c in &checks {
            let mark = if c.ok { "✓" } else { "✗" };
            let optional = if !c.ok && !c.required {
                " (optional)"
            } else {
                ""
            };
            println!("{mark} {}{optional}: {}", c.name, c.detail);
            if let (false, Some(hint)) = (c.ok, &c.hint) {
                println!("  hint: {hint}");
            }
        }
    }
    Ok(if failed {
        crate::exit::Exit::Sandbox.into()
    } else {
        ExitCode::SUCCESS
    })
}
