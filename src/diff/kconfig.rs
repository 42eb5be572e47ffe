//! Kernel `.config` files, option by option (parsed by [`crate::kernel::config`]).

use std::path::Path;

use super::{Collector, DiffError, Difference, Kind, Src, Structure, join, text};
use crate::kernel::config::Fragment;

pub(crate) fn diff(a: &Src, b: &Src, loc: &str, c: &mut Collector) -> Result<Structure, DiffError> {
    let (Some(x), Some(y)) = (a.load()?, b.load()?) else {
        return Ok(Structure::Unreadable("too large to load".into()));
    };
    let (Ok(x), Ok(y)) = (String::from_utf8(x), String::from_utf8(y)) else {
        return Ok(Structure::Unreadable("not UTF-8 text".into()));
    };
    let fa = match Fragment::parse(Path::new(a.name()), &x) {
        Ok(f) => f,
        Err(e) => return Ok(Structure::Unreadable(e.to_string())),
    };
    let fb = match Fragment::parse(Path::new(b.name()), &y) {
        Ok(f) => f,
        Err(e) => return Ok(Structure::Unreadable(e.to_string())),
    };
    let loc = join(loc, "config");
    let before = c.count();
    let (va, vb) = (fa.values(), fb.values());
    let mut names: Vec<&&str> = va.keys().chain(vb.keys()).collect();
    names.sort();
    names.dedup();
    for option in names {
        let oloc = join(&loc, option);
        match (va.get(*option), vb.get(*option)) {
            (Some(p), Some(q)) => {
                let mut d = Difference::changed(&oloc);
                d.field("value", p, q);
                c.push(d);
            }
            (Some(p), None) => c.push(Difference::only(&oloc, Kind::Removed, format!("={p}"))),
            (None, Some(q)) => c.push(Difference::only(&oloc, Kind::Added, format!("={q}"))),
            (None, None) => {}
        }
    }
    if c.count() == before {
        // Same options; comments or order differ: show those lines.
        let mut d = text::diff_text(&loc, x.as_bytes(), y.as_bytes());
        d.note = Some("same options; comments or order differ".into());
        c.push(d);
    }
    Ok(Structure::Parsed)
}
