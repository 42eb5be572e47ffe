//! "Did you mean …?" for names a user typed: recipes, profiles, packages.

/// The candidate closest to `typed`, if one is close enough to be what was meant: at most one
/// edit (a transposition counting as one) per three characters, at least one, or a
/// Jaro-Winkler similarity of at least 0.8 (clap's threshold for subcommands). The fewest
/// edits win, then the highest similarity, then the first name.
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let allowed = (typed.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::osa_distance(typed, c),
                strsim::jaro_winkler(typed, c),
                c,
            )
        })
        .filter(|(edits, score, _)| *edits <= allowed || *score >= 0.8)
        .min_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| b.1.total_cmp(&a.1))
                .then_with(|| a.2.cmp(b.2))
        })
        .map(|(_, _, c)| c)
}

/// `did you mean `X`? ` when a candidate is close, else nothing: to start a hint with.
pub fn did_you_mean<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(typed, candidates)
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_are_suggested_and_far_ones_not() {
        let recipes = ["azure", "base", "gcp", "qemu"];
        assert_eq!(closest("gpc", recipes), Some("gcp"));
        assert_eq!(closest("qmeu", recipes), Some("qemu"));
        assert_eq!(closest("bsae", recipes), Some("base"));
        assert_eq!(closest("kubernetes", recipes), None);
        assert_eq!(did_you_mean("x", recipes), "");
        assert_eq!(did_you_mean("azur", recipes), "did you mean `azure`? ");
    }
}
