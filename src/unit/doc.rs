//! A unit's TOML as a tree that remembers where every key and value came from, so that the
//! main file and its drop-ins can be merged (tables key by key, recursively; arrays and scalars
//! replace) and a problem found after merging still names the file, line and column it is in.
//!
//! Why not serde structs with `deny_unknown_fields`: serde stops at the first error of a file,
//! and its errors lose the file once drop-ins are merged. Walking this tree lets validation
//! report every problem at once, each at its own place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use toml::de::{DeTable, DeValue};

use super::diag::{Diagnostic, LineIndex, Location};

/// One source file's path and text, shared by every node parsed from it.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    /// Built at the first location asked for (most files never need one).
    lines: OnceLock<LineIndex>,
}

impl Source {
    pub fn new(path: PathBuf, text: String) -> Self {
        Source {
            path,
            text,
            lines: OnceLock::new(),
        }
    }

    pub fn location(&self, offset: usize) -> Location {
        self.lines
            .get_or_init(|| LineIndex::new(&self.text))
            .location(&self.path, &self.text, offset)
    }
}

/// A value with the place it was written.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub source: Arc<Source>,
    /// Byte offset of the value in its source.
    pub offset: usize,
    /// Byte offset of the key that introduced it (equal to `offset` for array elements).
    pub key_offset: usize,
}

#[derive(Debug, Clone)]
pub enum Value {
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
    Datetime(String),
    Array(Vec<Node>),
    /// Keys in source order.
    Table(Vec<(String, Node)>),
}

impl Value {
    /// The TOML type name, for "expected …, got a boolean" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Datetime(_) => "a date-time",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

impl Node {
    pub fn location(&self) -> Location {
        self.source.location(self.offset)
    }

    pub fn key_location(&self) -> Location {
        self.source.location(self.key_offset)
    }

    /// Looks a key up in a table node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Table(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, n)| n),
            _ => None,
        }
    }

    /// Merges `over` into `self`: tables merge key by key, recursively; anything else replaces.
    pub fn merge(&mut self, over: Node) {
        match (&mut self.value, over.value) {
            (Value::Table(base), Value::Table(over_entries)) => {
                for (k, v) in over_entries {
                    match base.iter_mut().find(|(bk, _)| *bk == k) {
                        Some((_, existing)) => existing.merge(v),
                        None => base.push((k, v)),
                    }
                }
            }
            (_, value) => {
                *self = Node {
                    value,
                    source: over.source,
                    offset: over.offset,
                    key_offset: over.key_offset,
                };
            }
        }
    }
}

/// Parses one file into a table node; every TOML syntax error becomes a diagnostic.
pub fn parse(path: &Path, text: String) -> Result<Node, Vec<Diagnostic>> {
    let source = Arc::new(Source::new(path.to_path_buf(), text));
    let (table, errors) = DeTable::parse_recoverable(&source.text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| {
                let offset = e.span().map_or(0, |s| s.start);
                let message = e.message().trim().to_string();
                Diagnostic::error(
                    source.location(offset),
                    key_on_line(&source.text, offset),
                    format!("invalid TOML: {message}"),
                )
            })
            .collect());
    }
    let offset = table.span().start;
    let value = convert_table(&source, table.into_inner());
    Ok(Node {
        value,
        source,
        offset,
        key_offset: offset,
    })
}

/// For a syntax error, the key it is in, as `[table] key`: the key written on the line it
/// points at (`key = …`) under the nearest table header above, or the header itself.
fn key_on_line(text: &str, offset: usize) -> Option<String> {
    // The parser's spans fall on character boundaries, but nothing promises it: an offset
    // inside a multi-byte character is taken as that character's (slicing there panicked).
    let start = text[..text.floor_char_boundary(offset)]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or_default().trim();
    let header = |l: &str| {
        let l = l.trim();
        l.strip_prefix('[').map(|h| {
            let h = h.trim_start_matches('[');
            let end = h.find(']').unwrap_or(h.len());
            format!("[{}]", h[..end].trim())
        })
    };
    if let Some(h) = header(line) {
        return Some(h);
    }
    let table = text[..start]
        .lines()
        .rev()
        .find_map(header)
        .unwrap_or_default();
    let key = line
        .split_once('=')
        .map(|(k, _)| k)
        .or_else(|| line.split_whitespace().next())
        .map(|k| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && !k.starts_with('#'));
    match (table.is_empty(), key) {
        (_, Some(k)) if !table.is_empty() => Some(format!("{table} {k}")),
        (true, Some(k)) => Some(k.to_string()),
        (false, None) => Some(table),
        _ => None,
    }
}

fn convert_table(source: &Arc<Source>, table: DeTable<'_>) -> Value {
    let entries = table
        .into_iter()
        .map(|(k, v)| {
            let key_offset = k.span().start;
            let mut node = convert(source, v);
            node.key_offset = key_offset;
            (k.into_inner().into_owned(), node)
        })
        .collect();
    Value::Table(entries)
}

fn convert(source: &Arc<Source>, spanned: toml::Spanned<DeValue<'_>>) -> Node {
    let offset = spanned.span().start;
    let value = match spanned.into_inner() {
        DeValue::String(s) => Value::Str(s.into_owned()),
        DeValue::Integer(i) => {
            // Out of i128's range is out of every key's range too: saturate, validation refuses.
            Value::Int(i128::from_str_radix(i.as_str(), i.radix()).unwrap_or(i128::MAX))
        }
        DeValue::Float(f) => Value::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Bool(b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(a) => Value::Array(a.into_iter().map(|v| convert(source, v)).collect()),
        DeValue::Table(t) => convert_table(source, t),
    };
    Node {
        value,
        source: source.clone(),
        offset,
        key_offset: offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(path: &str, text: &str) -> Node {
        parse(Path::new(path), text.to_string()).unwrap()
    }

    #[test]
    fn merge_is_key_by_key_and_keeps_origin() {
        let mut base = doc(
            "a.toml",
            "[service]\nexec = [\"/bin/a\"]\nenvironment = { A = \"1\", B = \"2\" }\n",
        );
        let over = doc(
            "a.d/10.toml",
            "[service]\nenvironment = { B = \"3\" }\nexec = [\"/bin/b\"]\n",
        );
        base.merge(over);
        let svc = base.get("service").unwrap();
        let env = svc.get("environment").unwrap();
        let a = env.get("A").unwrap();
        let b = env.get("B").unwrap();
        assert!(matches!(&a.value, Value::Str(s) if s == "1"));
        assert!(matches!(&b.value, Value::Str(s) if s == "3"));
        assert_eq!(a.location().file, PathBuf::from("a.toml"));
        assert_eq!(b.location().to_string(), "a.d/10.toml:2:21");
        let exec = svc.get("exec").unwrap();
        assert_eq!(exec.location().to_string(), "a.d/10.toml:3:8");
        assert_eq!(exec.key_location().to_string(), "a.d/10.toml:3:1");
    }

    #[test]
    fn syntax_errors_are_located() {
        let errs = parse(
            Path::new("b.toml"),
            "[service]\nexec = [\"/bin/a\"\n".into(),
        )
        .unwrap_err();
        assert!(!errs.is_empty());
        assert_eq!(errs[0].location.file, PathBuf::from("b.toml"));
        assert!(errs[0].message.starts_with("invalid TOML"), "{}", errs[0]);
    }

    #[test]
    fn errors_among_multi_byte_characters_name_their_key() {
        // Every byte offset of a text full of 2-, 3- and 4-byte characters, the ones inside a
        // character included: the key is the one on that line, under its table.
        let text = "[unit]\ndescription = \"é€😀\"\n[service]\n😀 = \"€\"\né = [\"x\", 😀]\n";
        for offset in 0..=text.len() + 1 {
            let key = key_on_line(text, offset);
            let line = text[..text.floor_char_boundary(offset)]
                .matches('\n')
                .count()
                + 1;
            let want = match line {
                1 => "[unit]",
                2 => "[unit] description",
                3 => "[service]",
                4 => "[service] 😀",
                5 => "[service] é",
                _ => "[service]",
            };
            assert_eq!(key.as_deref(), Some(want), "offset {offset}");
        }
        let errs = parse(Path::new("d.toml"), text.into()).unwrap_err();
        let shown: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let bare_key = "invalid TOML: invalid unquoted key, expected letters, numbers, `-`, `_`";
        assert_eq!(
            shown,
            [
                format!("d.toml:4:1: error: [service] 😀: {bare_key}"),
                format!("d.toml:5:1: error: [service] é: {bare_key}"),
                "d.toml:5:11: error: [service] é: invalid TOML: string values must be quoted, \
                 expected literal string"
                    .to_string(),
            ],
        );
    }

    #[test]
    fn integers_in_every_radix() {
        let d = doc("c.toml", "a = 0o022\nb = 0x10\nc = 1_000\nd = -5\n");
        let get = |k| match d.get(k).unwrap().value {
            Value::Int(i) => i,
            _ => panic!("{k} not an integer"),
        };
        assert_eq!(
            (get("a"), get("b"), get("c"), get("d")),
            (0o22, 16, 1000, -5)
        );
    }
}
