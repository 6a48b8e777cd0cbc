//! `corralctl logs -f`: new lines of a unit's log as they arrive. The API's one way to read a
//! log is `GetUnitLog(unit, n)` — the last `n` lines — so following asks for a window of the
//! last [`WINDOW`] lines every [`INTERVAL`] and prints what the new window has beyond the
//! previous one. It works the same over the private socket and the bus, for any log the
//! daemon can read, across rotation (the new file's lines are all new).
//!
//! What can't be told apart without byte offsets: more than [`WINDOW`] lines between two looks
//! (some are skipped), and a new window whose new lines repeat the previous window's last ones
//! exactly (they look old).

use std::time::Duration;

/// How many lines each look fetches.
pub const WINDOW: u32 = 1000;
/// How often the client looks (the daemon never polls: each look is one call).
pub const INTERVAL: Duration = Duration::from_millis(200);

/// The lines of `new` after its overlap with `old`: the longest prefix of `new` that is a
/// suffix of `old` is what was already shown.
pub fn fresh<'a>(old: &[String], new: &'a [String]) -> &'a [String] {
    let longest = old.len().min(new.len());
    let shown = (0..=longest)
        .rev()
        .find(|&m| new[..m] == old[old.len() - m..])
        .unwrap_or(0);
    &new[shown..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_lines_beyond_the_previous_window_are_new() {
        // Appended.
        assert_eq!(fresh(&v(&["a", "b"]), &v(&["a", "b", "c"])), v(&["c"]));
        // The window slid: the oldest lines fell out.
        assert_eq!(
            fresh(&v(&["a", "b", "c"]), &v(&["c", "d", "e"])),
            v(&["d", "e"])
        );
        // Nothing new.
        assert!(fresh(&v(&["a", "b"]), &v(&["a", "b"])).is_empty());
        // Rotated (or more than a window between looks): all new.
        assert_eq!(fresh(&v(&["a", "b"]), &v(&["x", "y"])), v(&["x", "y"]));
        // From an empty log.
        assert_eq!(fresh(&[], &v(&["a"])), v(&["a"]));
        // Repeated lines: the longest overlap counts as shown.
        assert_eq!(fresh(&v(&["x", "x"]), &v(&["x", "x", "y"])), v(&["y"]));
    }
}
