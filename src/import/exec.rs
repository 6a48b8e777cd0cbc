//! systemd command lines (systemd.service(5), "Command lines") and `Environment=` words, and how
//! a command becomes a corral `exec` argv — or, only when it needs one, a `/bin/sh -c` script.
//!
//! Reading, as systemd does:
//! - words are split at whitespace; `"…"` and `'…'` quote (also in the middle of a word), and
//!   C escapes (`\n`, `\t`, `\\`, `\"`, `\'`, `\s`, `\xNN`, `\NNN` octal, `\uNNNN`,
//!   `\UNNNNNNNN`) are undone, an unknown escape keeping its character;
//! - a lone `;` separates commands in one directive (`\;` is a literal `;`);
//! - the first word may carry the prefixes `@` (the next word is argv[0]), `-` (failure is
//!   ignored), `:` (no variable expansion), `+`, `!`, `!!` (privileges);
//! - a word that is exactly `$NAME` expands to the variable's value split at whitespace (zero or
//!   more words), `${NAME}` anywhere in a word to its exact value, `$$` to `$`.
//!
//! Writing: a command whose variables are all set by the unit's own `Environment=` (and no
//! `EnvironmentFile=` can change them) is expanded here, into a plain argv. Otherwise — variables
//! from a file, several commands to run in turn, an `EnvironmentFile=` to read — the result is
//! `["/bin/sh", "-c", SCRIPT]`, where `$NAME` stays unquoted (split, with `set -f` so that no glob
//! expands) and `${NAME}` is double-quoted (one word), and the last command is `exec`ed so the
//! service's main process is still the program itself.

use std::collections::BTreeMap;

/// One word as read, and whether it was written bare (no quotes, no escapes): only a bare `;`
/// separates commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub bare: bool,
}

/// Splits a value into words with systemd's quoting and C escapes.
pub fn split_words(s: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut text = String::new();
        let mut bare = true;
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_ascii_whitespace() => break,
                (None, '"' | '\'') => {
                    quote = Some(c);
                    bare = false;
                }
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    bare = false;
                    match chars.next() {
                        Some(e) => unescape_one(e, &mut chars, &mut text)?,
                        // A trailing backslash stays (systemd's relaxed mode).
                        None => text.push('\\'),
                    }
                }
                (_, c) => text.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(format!("unterminated {q} quote"));
        }
        words.push(Word { text, bare });
    }
}

fn unescape_one(
    e: char,
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    out: &mut String,
) -> Result<(), String> {
    let mut hex = |n: usize, radix: u32| -> Result<u32, String> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let d = chars
                .next()
                .and_then(|c| c.to_digit(radix))
                .ok_or_else(|| format!("incomplete escape \\{e}"))?;
            v = v.saturating_mul(radix).saturating_add(d);
        }
        Ok(v)
    };
    let c = match e {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        's' => ' ',
        'x' => byte_char(hex(2, 16)?)?,
        'u' => char::from_u32(hex(4, 16)?).ok_or("invalid \\u escape")?,
        'U' => char::from_u32(hex(8, 16)?).ok_or("invalid \\U escape")?,
        '0'..='7' => {
            let rest = hex(2, 8)?;
            let v = (e as u32 - '0' as u32) * 64 + rest;
            byte_char(v)?
        }
        other => other,
    };
    if c == '\0' {
        return Err("an escape yields a NUL byte".into());
    }
    out.push(c);
    Ok(())
}

/// A byte from `\xNN` or an octal escape: ASCII only, since a lone byte ≥ 0x80 is not UTF-8.
fn byte_char(v: u32) -> Result<char, String> {
    if v < 0x80 {
        Ok(char::from(v as u8))
    } else {
        Err(format!(
            "escape for byte 0x{v:02x}, which alone is not UTF-8"
        ))
    }
}

/// A piece of a word: text, or a `${NAME}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Var(String),
}

/// One argument of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `$NAME` alone: the value split at whitespace.
    Split(String),
    /// Text with `${NAME}` references (none, for a plain word).
    Pieces(Vec<Piece>),
}

impl Arg {
    fn literal(s: &str) -> Self {
        Arg::Pieces(vec![Piece::Lit(s.to_string())])
    }

    /// The variables it refers to.
    pub fn vars(&self) -> Vec<&str> {
        match self {
            Arg::Split(v) => vec![v.as_str()],
            Arg::Pieces(p) => p
                .iter()
                .filter_map(|p| match p {
                    Piece::Var(v) => Some(v.as_str()),
                    Piece::Lit(_) => None,
                })
                .collect(),
        }
    }
}

/// The prefixes systemd allows before the program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prefixes {
    /// `@`: the word after the program is argv[0].
    pub argv0: bool,
    /// `-`: a failure exit is ignored.
    pub ignore_failure: bool,
    /// `:`: no variable expansion.
    pub no_expand: bool,
    /// `+`, `!` or `!!`: runs with more privileges than the unit's.
    pub privileged: Option<&'static str>,
}

/// One command of an `Exec*=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub prefixes: Prefixes,
    /// The program as written (absolute, or a bare name systemd looks up in its fixed `$PATH`).
    pub program: String,
    /// argv[1..] (argv[0] is the program, or with `@` the first of these, which is dropped).
    pub args: Vec<Arg>,
}

/// Reads an `Exec*=` value: one or more commands separated by a lone `;`.
pub fn parse_commands(value: &str) -> Result<Vec<Command>, String> {
    let words = split_words(value)?;
    let mut out = Vec::new();
    for chunk in words.split(|w| w.bare && w.text == ";") {
        if chunk.is_empty() {
            continue;
        }
        out.push(parse_command(chunk)?);
    }
    if out.is_empty() {
        return Err("no command".into());
    }
    Ok(out)
}

fn parse_command(words: &[Word]) -> Result<Command, String> {
    let first = &words[0].text;
    let mut prefixes = Prefixes::default();
    let mut rest = first.as_str();
    loop {
        if let Some(r) = rest.strip_prefix("!!") {
            prefixes.privileged = Some("!!");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('!') {
            prefixes.privileged = Some("!");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('+') {
            prefixes.privileged = Some("+");
            rest = r;
        } else if let Some(r) = rest.strip_prefix('@') {
            prefixes.argv0 = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix('-') {
            prefixes.ignore_failure = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix(':') {
            prefixes.no_expand = true;
            rest = r;
        } else {
            break;
        }
    }
    if rest.is_empty() {
        return Err(format!("{first:?} names no program"));
    }
    let mut args: Vec<Arg> = words[1..]
        .iter()
        .map(|w| {
            if prefixes.no_expand {
                Arg::literal(&w.text)
            } else {
                parse_arg(&w.text)
            }
        })
        .collect();
    if prefixes.argv0 {
        if args.is_empty() {
            return Err("the @ prefix needs an argv[0] word after the program".into());
        }
        args.remove(0);
    }
    Ok(Command {
        prefixes,
        program: rest.to_string(),
        args,
    })
}

/// A valid variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_var_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn parse_arg(w: &str) -> Arg {
    if let Some(name) = w.strip_prefix('$')
        && is_var_name(name)
    {
        return Arg::Split(name.to_string());
    }
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = w;
    while let Some(i) = rest.find('$') {
        lit.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            lit.push('$');
            rest = r;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
            && is_var_name(&body[..end])
        {
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Var(body[..end].to_string()));
            rest = &body[end + 1..];
        } else {
            lit.push('$');
            rest = after;
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Arg::Pieces(pieces)
}

/// Expands a command's arguments with known values; `None` if one is unknown.
pub fn expand_static(args: &[Arg], env: &BTreeMap<String, String>) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for a in args {
        match a {
            Arg::Split(v) => out.extend(env.get(v)?.split_ascii_whitespace().map(String::from)),
            Arg::Pieces(pieces) => {
                let mut s = String::new();
                for p in pieces {
                    match p {
                        Piece::Lit(l) => s.push_str(l),
                        Piece::Var(v) => s.push_str(env.get(v)?),
                    }
                }
                out.push(s);
            }
        }
    }
    Some(out)
}

/// A word quoted for `sh` so that it stays one literal word.
pub fn sh_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// An argument written for `sh`, variables expanded by the shell as systemd would expand them.
pub fn sh_arg(a: &Arg) -> String {
    match a {
        Arg::Split(v) => format!("${v}"),
        Arg::Pieces(p) if p.iter().all(|p| matches!(p, Piece::Lit(_))) => {
            let s: String = p
                .iter()
                .map(|p| match p {
                    Piece::Lit(l) => l.as_str(),
                    Piece::Var(_) => "",
                })
                .collect();
            sh_quote(&s)
        }
        Arg::Pieces(p) => {
            let mut s = String::from("\"");
            for piece in p {
                match piece {
                    Piece::Lit(l) => {
                        for c in l.chars() {
                            if matches!(c, '"' | '\\' | '$' | '`') {
                                s.push('\\');
                            }
                            s.push(c);
                        }
                    }
                    Piece::Var(v) => s.push_str(&format!("${{{v}}}")),
                }
            }
            s.push('"');
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        split_words(s)
            .unwrap()
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn quoting_and_escapes_as_systemd_reads_them() {
        assert_eq!(
            words(r#"/bin/echo "a b" 'c d' e\ f x"y z"w \x41\101\u00e9 \s"#),
            ["/bin/echo", "a b", "c d", "e f", "xy zw", "AAé", " "]
        );
        assert_eq!(
            words(r#""it's" 'say "hi"' "a\"b""#),
            ["it's", "say \"hi\"", "a\"b"]
        );
        assert_eq!(words("  a\t\tb  "), ["a", "b"]);
        assert!(split_words("\"open").unwrap_err().contains("unterminated"));
        assert!(split_words(r"\x4").is_err());
        assert!(split_words(r"\x00").is_err());
        assert!(split_words(r"\xff").is_err());
        assert_eq!(words(r"a\"), ["a\\"]);
    }

    #[test]
    fn commands_prefixes_and_separators() {
        let c = parse_commands("-/bin/true ; @/bin/busybox sh -c x \\; y").unwrap();
        assert_eq!(c.len(), 2);
        assert!(c[0].prefixes.ignore_failure);
        assert_eq!(c[0].program, "/bin/true");
        assert!(c[1].prefixes.argv0);
        assert_eq!(c[1].program, "/bin/busybox");
        assert_eq!(
            c[1].args,
            [
                Arg::literal("-c"),
                Arg::literal("x"),
                Arg::literal(";"),
                Arg::literal("y")
            ]
        );
        let c = parse_commands("+-:/bin/x $A").unwrap();
        assert_eq!(c[0].prefixes.privileged, Some("+"));
        assert!(c[0].prefixes.no_expand && c[0].prefixes.ignore_failure);
        assert_eq!(c[0].args, [Arg::literal("$A")]);
        assert_eq!(
            parse_commands("!!/bin/x").unwrap()[0].prefixes.privileged,
            Some("!!")
        );
        assert!(parse_commands("-").is_err());
        assert!(parse_commands(" ; ").is_err());
        assert!(parse_commands("@/bin/x").is_err());
    }

    #[test]
    fn variables() {
        let c = parse_commands("/bin/x $OPTS ${ONE} --a=${B}c $$HOME $ 5$ ${bad-name}").unwrap();
        assert_eq!(
            c[0].args,
            [
                Arg::Split("OPTS".into()),
                Arg::Pieces(vec![Piece::Var("ONE".into())]),
                Arg::Pieces(vec![
                    Piece::Lit("--a=".into()),
                    Piece::Var("B".into()),
                    Piece::Lit("c".into())
                ]),
                Arg::literal("$HOME"),
                Arg::literal("$"),
                Arg::literal("5$"),
                Arg::literal("${bad-name}"),
            ]
        );
        let env: BTreeMap<String, String> = [
            ("OPTS".to_string(), " -a  -b ".to_string()),
            ("ONE".to_string(), "x y".to_string()),
            ("B".to_string(), "".to_string()),
        ]
        .into();
        assert_eq!(
            expand_static(&c[0].args, &env).unwrap(),
            [
                "-a",
                "-b",
                "x y",
                "--a=c",
                "$HOME",
                "$",
                "5$",
                "${bad-name}"
            ]
        );
        assert!(expand_static(&[Arg::Split("NOPE".into())], &env).is_none());
        assert_eq!(
            c[0].args.iter().map(sh_arg).collect::<Vec<_>>(),
            [
                "$OPTS",
                "\"${ONE}\"",
                "\"--a=${B}c\"",
                "'$HOME'",
                "'$'",
                "'5$'",
                "'${bad-name}'"
            ]
        );
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("/usr/bin/x"), "/usr/bin/x");
    }
}
