//! User and group id mappings: who root inside the sandbox is on the host.
//!
//! Both modes map root inside to the invoking user. [`IdMapping::SingleUser`] needs nothing
//! more: the sandboxed process writes its own one-line maps. [`IdMapping::Subordinate`] maps
//! ids 1..=65535 inside to a range the administrator delegated to the user in `/etc/subuid` and
//! `/etc/subgid`, which only the setuid helpers `newuidmap` and `newgidmap` may install.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::step::{IdMapping, SUBORDINATE_IDS};

/// The first host id of a subordinate range and how many ids it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub start: u32,
    pub count: u32,
}

/// The invoking user, as the id files name them.
#[derive(Debug, Clone)]
pub struct Invoker {
    pub uid: u32,
    pub gid: u32,
    /// The login name, when the password database knows it.
    pub name: Option<String>,
}

impl Invoker {
    /// The real user and group of this process, with the login name (which the
    /// subordinate id files may use).
    pub fn current() -> Invoker {
        let name = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name);
        Invoker {
            name,
            ..Invoker::ids_only()
        }
    }

    /// The real user and group of this process, without asking the user database (enough
    /// for [`IdMapping::SingleUser`]).
    pub fn ids_only() -> Invoker {
        Invoker {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            name: None,
        }
    }
}

/// Errors setting up id mappings.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("cannot read {path}", path = path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} gives {who} no range of {SUBORDINATE_IDS} ids{found}\nhint: run `sudo usermod --add-subuids {free}-{last} --add-subgids {free}-{last} {who}` (the first ids past every range /etc/subuid and /etc/subgid give), or `bash scripts/setup.sh` in a hermetic checkout",
        path = path.display(),
        found = if *found == 0 { String::new() } else { format!(" (the largest has {found})") },
        last = *free + u64::from(SUBORDINATE_IDS) - 1
    )]
    NoRange {
        path: PathBuf,
        who: String,
        found: u32,
        /// The first id past every range of the file (at least 100000): where a new range
        /// overlaps no other user's.
        free: u64,
    },
    #[error("cannot run {tool}\nhint: install it with `sudo apt-get install uidmap`")]
    HelperMissing {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error(
        "{tool} {args} failed: {stderr}\nhint: check that {tool} is setuid root (`ls -l $(command -v {tool})`) and that the ranges in /etc/subuid and /etc/subgid belong to this user"
    )]
    HelperFailed {
        tool: &'static str,
        args: String,
        stderr: String,
    },
}

/// Finds the first range of at least [`SUBORDINATE_IDS`] ids for `invoker` in the contents of
/// an `/etc/subuid`-style file (`name-or-id:start:count` lines).
pub fn find_range(contents: &str, invoker: &Invoker, own_id: u32) -> Result<SubRange, u32> {
    let mut largest = 0;
    for line in contents.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split(':');
        let (Some(who), Some(start), Some(count)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let is_me = invoker.name.as_deref() == Some(who) || who.parse::<u32>().ok() == Some(own_id);
        let (Ok(start), Ok(count)) = (start.parse::<u32>(), count.parse::<u32>()) else {
            continue;
        };
        if !is_me {
            continue;
        }
        // Ids 1..=65535 inside need 65535 host ids; root inside is the invoker itself.
        if count >= SUBORDINATE_IDS - 1 {
            return Ok(SubRange { start, count });
        }
        largest = largest.max(count);
    }
    Err(largest)
}

/// The subordinate uid and gid ranges of `invoker`, read from `/etc/subuid` and `/etc/subgid`.
pub fn subordinate_ranges(invoker: &Invoker) -> Result<(SubRange, SubRange), IdMapError> {
    let uids = range_from(Path::new("/etc/subuid"), invoker, invoker.uid)?;
    let gids = range_from(Path::new("/etc/subgid"), invoker, invoker.gid)?;
    Ok((uids, gids))
}

fn range_from(path: &Path, invoker: &Invoker, own_id: u32) -> Result<SubRange, IdMapError> {
    let contents = match fs_err::read_to_string(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(IdMapError::Read {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let who = invoker.name.clone().unwrap_or_else(|| own_id.to_string());
    find_range(&contents, invoker, own_id).map_err(|found| {
        // The fix names one range for both files, so it must be free in both: past every
        // range of this file and of the other one (an unreadable other file counts as empty).
        let other = if path == Path::new("/etc/subuid") {
            "/etc/subgid"
        } else {
            "/etc/subuid"
        };
        let other = fs_err::read_to_string(other).unwrap_or_default();
        IdMapError::NoRange {
            path: path.to_path_buf(),
            who,
            found,
            free: first_free(&contents).max(first_free(&other)),
        }
    })
}

/// The first id past every range of an `/etc/subuid`-style file, and at least 100000 (the
/// `SUB_UID_MIN` of login.defs): a range starting there is nobody else's.
pub fn first_free(contents: &str) -> u64 {
    contents
        .lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let (_, start, count) = (f.next()?, f.next()?, f.next()?);
            Some(start.parse::<u64>().ok()? + count.parse::<u64>().ok()?)
        })
        .fold(100_000, u64::max)
}

/// The argument list of `newuidmap`/`newgidmap` for process `pid`: root inside is `own`,
/// 1..=65535 inside come from `range`.
pub fn helper_args(pid: i32, own: u32, range: SubRange) -> Vec<String> {
    [pid as u32, 0, own, 1, 1, range.start, SUBORDINATE_IDS - 1]
        .iter()
        .map(u32::to_string)
        .collect()
}

/// Installs the subordinate maps on process `pid` (which has just created its user
/// namespace) by running `newuidmap` and `newgidmap`.
pub fn install_subordinate(
    pid: i32,
    invoker: &Invoker,
    ranges: (SubRange, SubRange),
) -> Result<(), IdMapError> {
    run_helper("newuidmap", &helper_args(pid, invoker.uid, ranges.0))?;
    run_helper("newgidmap", &helper_args(pid, invoker.gid, ranges.1))
}

fn run_helper(tool: &'static str, args: &[String]) -> Result<(), IdMapError> {
    let out = Command::new(tool)
        .args(args)
        .env_clear()
        .output()
        .map_err(|source| IdMapError::HelperMissing { tool, source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(IdMapError::HelperFailed {
            tool,
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The lines the sandboxed process writes to its own `uid_map` and `gid_map` in
/// [`IdMapping::SingleUser`] mode.
pub fn single_user_maps(invoker: &Invoker) -> (String, String) {
    (
        format!("0 {} 1\n", invoker.uid),
        format!("0 {} 1\n", invoker.gid),
    )
}

/// A one-line description for reports: which mapping a step got.
pub fn describe(mapping: IdMapping, invoker: &Invoker) -> String {
    match mapping {
        IdMapping::SingleUser => format!("root inside is uid {} (single id)", invoker.uid),
        IdMapping::Subordinate => {
            format!(
                "root inside is uid {}, ids 1-65535 from /etc/subuid",
                invoker.uid
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Invoker {
        Invoker {
            uid: 1000,
            gid: 1000,
            name: Some("alice".into()),
        }
    }

    #[test]
    fn finds_range_by_name_or_id() {
        let file = "bob:100000:65536\n# comment\nalice:200000:1000\nalice:300000:65536\n";
        assert_eq!(
            find_range(file, &alice(), 1000),
            Ok(SubRange {
                start: 300000,
                count: 65536
            })
        );
        let by_id = "1000:400000:70000\n";
        assert_eq!(
            find_range(by_id, &alice(), 1000),
            Ok(SubRange {
                start: 400000,
                count: 70000
            })
        );
    }

    #[test]
    fn reports_largest_too_small_range() {
        let file = "alice:200000:1000\nalice:garbage\nbob:1:99999\n";
        assert_eq!(find_range(file, &alice(), 1000), Err(1000));
        assert_eq!(find_range("", &alice(), 1000), Err(0));
    }

    #[test]
    fn helper_arguments_map_root_to_invoker() {
        let args = helper_args(
            42,
            1000,
            SubRange {
                start: 100000,
                count: 65536,
            },
        );
        assert_eq!(args, ["42", "0", "1000", "1", "1", "100000", "65535"]);
    }

    #[test]
    fn missing_range_error_has_hint() {
        let taken = "root:100000:65536\nbob:300000:65536\n# comment\nbad line\n";
        assert_eq!(first_free(taken), 365_536);
        assert_eq!(first_free(""), 100_000);
        let err = IdMapError::NoRange {
            path: "/etc/subuid".into(),
            who: "alice".into(),
            found: 0,
            free: first_free(taken),
        };
        let text = err.to_string();
        assert!(
            text.starts_with("/etc/subuid gives alice no range of 65536 ids\nhint: "),
            "{text}"
        );
        assert!(
            text.contains("usermod --add-subuids 365536-431071 --add-subgids 365536-431071 alice"),
            "{text}"
        );
    }
}
