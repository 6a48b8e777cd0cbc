//! systemd's unit-file syntax (systemd.syntax(7)), read into an ordered list of directives that
//! remember their file and line.
//!
//! The rules followed, as systemd's own `config_parse()` has them:
//! - the text is UTF-8 (a leading byte-order mark is skipped); a NUL byte or invalid UTF-8 is
//!   an error naming the line: such a file is not a unit file;
//! - a line ending in an unescaped backslash continues on the next line, the backslash replaced
//!   by a space; comment lines inside a continued line are skipped;
//! - leading and trailing whitespace is stripped; empty lines and lines starting with `#` or
//!   `;` are comments;
//! - `[Section]` opens a section; `Key=Value` is a directive (key and value stripped, keys
//!   case-sensitive). Quoting and escapes inside a value are the business of each key (see
//!   [`super::exec`]), as in systemd;
//! - a logical line longer than 1 MiB is refused (systemd's `LONG_LINE_MAX`).
//!
//! Where systemd only logs and skips (a directive before any section, a line with no `=`, an
//! unterminated section header), this parser reports an error: a converted unit silently missing
//! a directive is worse than no unit. Everything is linear in the input and never panics.

use std::path::Path;
use std::sync::Arc;

/// systemd's `LONG_LINE_MAX`: the longest logical line it reads.
pub const LONG_LINE_MAX: usize = 1024 * 1024;

/// One `Key=Value` line, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub section: String,
    pub key: String,
    pub value: String,
    pub file: Arc<Path>,
    /// The line the directive starts on, from 1.
    pub line: usize,
}

/// A section header, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub line: usize,
}

/// One parsed file: its section headers and directives, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub headers: Vec<Header>,
    pub directives: Vec<Directive>,
}

/// Why a file can't be read as a unit file, and on which line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl SyntaxError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        SyntaxError {
            line,
            message: message.into(),
        }
    }
}

/// Parses one file's bytes.
pub fn parse(file: &Path, bytes: &[u8]) -> Result<Parsed, SyntaxError> {
    let file: Arc<Path> = Arc::from(file);
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut out = Parsed::default();
    let mut section: Option<String> = None;
    // A logical line being continued: its text so far and the line it started on.
    let mut pending: Option<(String, usize)> = None;
    let mut lineno = 0;
    for raw in bytes.split(|b| *b == b'\n') {
        lineno += 1;
        if raw.contains(&0) {
            return Err(SyntaxError::new(
                lineno,
                "contains a NUL byte: this is not a text file",
            ));
        }
        let text = std::str::from_utf8(raw).map_err(|e| {
            SyntaxError::new(
                lineno,
                format!(
                    "is not valid UTF-8 (at byte {}): this is not a unit file",
                    e.valid_up_to() + 1
                ),
            )
        })?;
        let stripped = text.trim_matches(is_space);
        if let Some((ref mut acc, start)) = pending {
            // Inside a continuation: comment lines are skipped, as systemd does.
            if stripped.starts_with(['#', ';']) {
                continue;
            }
            if acc.len() + stripped.len() > LONG_LINE_MAX {
                return Err(too_long(start));
            }
            acc.push_str(stripped);
        } else {
            if stripped.len() > LONG_LINE_MAX {
                return Err(too_long(lineno));
            }
            pending = Some((stripped.to_string(), lineno));
        }
        let Some((mut acc, start)) = pending.take() else {
            continue;
        };
        if ends_in_continuation(&acc) {
            acc.pop();
            acc.push(' ');
            pending = Some((acc, start));
            continue;
        }
        logical_line(&file, &acc, start, &mut section, &mut out)?;
    }
    if let Some((mut acc, start)) = pending {
        // A continuation at the end of the file ends there.
        let trimmed = acc.trim_end_matches(is_space).len();
        acc.truncate(trimmed);
        logical_line(&file, &acc, start, &mut section, &mut out)?;
    }
    Ok(out)
}

fn too_long(line: usize) -> SyntaxError {
    SyntaxError::new(
        line,
        format!(
            "is longer than {} KiB, systemd's limit for a line",
            LONG_LINE_MAX / 1024
        ),
    )
}

/// systemd's whitespace: space, tab, CR and LF.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// True when the text ends in a backslash that is not itself escaped.
fn ends_in_continuation(s: &str) -> bool {
    let trailing = s.bytes().rev().take_while(|b| *b == b'\\').count();
    trailing % 2 == 1
}

fn logical_line(
    file: &Arc<Path>,
    line: &str,
    lineno: usize,
    section: &mut Option<String>,
    out: &mut Parsed,
) -> Result<(), SyntaxError> {
    let line = line.trim_matches(is_space);
    if line.is_empty() || line.starts_with(['#', ';']) {
        return Ok(());
    }
    if let Some(rest) = line.strip_prefix('[') {
        let Some(name) = rest.strip_suffix(']') else {
            return Err(SyntaxError::new(
                lineno,
                format!("section header {line:?} has no closing \"]\""),
            ));
        };
        if name.is_empty() || name.contains(['[', ']']) {
            return Err(SyntaxError::new(
                lineno,
                format!("invalid section header {line:?}"),
            ));
        }
        *section = Some(name.to_string());
        out.headers.push(Header {
            name: name.to_string(),
            line: lineno,
        });
        return Ok(());
    }
    let Some((key, value)) = line.split_once('=') else {
        return Err(SyntaxError::new(
            lineno,
            format!("{:?} is not a directive: it has no \"=\"", shorten(line)),
        ));
    };
    let key = key.trim_matches(is_space);
    if key.is_empty() {
        return Err(SyntaxError::new(
            lineno,
            "a directive with no key before \"=\"",
        ));
    }
    let Some(section) = section else {
        return Err(SyntaxError::new(
            lineno,
            format!("{key}= comes before any [Section] header"),
        ));
    };
    out.directives.push(Directive {
        section: section.clone(),
        key: key.to_string(),
        value: value.trim_matches(is_space).to_string(),
        file: file.clone(),
        line: lineno,
    });
    Ok(())
}

/// The start of a long line, for messages.
pub fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Parsed, SyntaxError> {
        parse(Path::new("x.service"), text.as_bytes())
    }

    fn kv(parsed: &Parsed) -> Vec<(String, String, String, usize)> {
        parsed
            .directives
            .iter()
            .map(|d| (d.section.clone(), d.key.clone(), d.value.clone(), d.line))
            .collect()
    }

    #[test]
    fn sections_keys_comments_and_whitespace() {
        let parsed = p("\u{feff}# head\n[Unit]\n  Description = A  thing  \n; c\n\n[Service]\nExecStart=/bin/x a=b\nEnvironment=\n").unwrap();
        assert_eq!(
            kv(&parsed),
            [
                ("Unit".into(), "Description".into(), "A  thing".into(), 3),
                ("Service".into(), "ExecStart".into(), "/bin/x a=b".into(), 7),
                ("Service".into(), "Environment".into(), "".into(), 8),
            ]
        );
        assert_eq!(parsed.headers.len(), 2);
        assert_eq!(parsed.headers[1].line, 6);
    }

    #[test]
    fn continuation_joins_with_a_space_and_skips_comments() {
        let parsed =
            p("[Service]\nExecStart=/bin/x \\\n  -a \\\n# note\n  -b\nUser=u\\\\\n").unwrap();
        assert_eq!(
            kv(&parsed),
            [
                (
                    "Service".into(),
                    "ExecStart".into(),
                    "/bin/x  -a  -b".into(),
                    2
                ),
                ("Service".into(), "User".into(), "u\\\\".into(), 6),
            ]
        );
        // A continuation at the end of the file ends there.
        let parsed = p("[Service]\nUser=a\\").unwrap();
        assert_eq!(parsed.directives[0].value, "a");
        // CRLF line ends.
        let parsed = p("[Unit]\r\nDescription=x\r\n").unwrap();
        assert_eq!(parsed.directives[0].value, "x");
    }

    #[test]
    fn bad_input_is_a_located_error() {
        assert_eq!(p("[Unit]\nDescription\n").unwrap_err().line, 2);
        assert!(
            p("[Unit]\nDescription\n")
                .unwrap_err()
                .message
                .contains("no \"=\"")
        );
        assert_eq!(p("Description=x\n").unwrap_err().line, 1);
        assert_eq!(p("[Unit\n").unwrap_err().line, 1);
        assert_eq!(p("[]\n").unwrap_err().line, 1);
        assert_eq!(p("[Unit]\n=x\n").unwrap_err().line, 2);
        let e = parse(Path::new("x"), b"[Unit]\nA=\xff\xfe\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("UTF-8"), "{e}");
        let e = parse(Path::new("x"), b"\x7fELF\x02\x01\x01\0\0").unwrap_err();
        assert!(e.message.contains("NUL"), "{e}");
        let long = format!("[Unit]\nDescription={}\n", "x".repeat(LONG_LINE_MAX + 1));
        let e = p(&long).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("longer than 1024 KiB"), "{e}");
        // Continued lines count together.
        let half = "y".repeat(LONG_LINE_MAX / 2 + 1);
        let cont = format!("[Unit]\nDescription={half}\\\n{half}\n");
        assert_eq!(p(&cont).unwrap_err().line, 2);
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        for input in [
            &b""[..],
            b"\\",
            b"\\\\\n\\",
            b"[",
            b"]",
            b"[a]\n\\\n\\\n",
            b"[\xc3]",
            b"=",
            b"[a]b=c\\\n#\n;\\\n",
            b"\xEF\xBB",
        ] {
            let _ = parse(Path::new("x"), input);
        }
    }
}
