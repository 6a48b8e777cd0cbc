//! The corral unit being built, and its TOML text.
//!
//! Each key remembers the systemd directive it came from, so that a value corral's own
//! validation refuses can be dropped with a warning at that directive's line.

use std::path::Path;
use std::sync::Arc;

/// A TOML value of the subset unit files use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Val>),
    /// An inline table, keys in order.
    Inline(Vec<(String, Val)>),
}

impl Val {
    pub fn str(s: impl Into<String>) -> Self {
        Val::Str(s.into())
    }

    pub fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Self {
        Val::List(items.into_iter().map(|s| Val::Str(s.into())).collect())
    }

    fn render(&self, out: &mut String) {
        match self {
            Val::Str(s) => out.push_str(&quote(s)),
            Val::Int(i) => out.push_str(&i.to_string()),
            Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Val::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.render(out);
                }
                out.push(']');
            }
            Val::Inline(entries) => {
                if entries.is_empty() {
                    out.push_str("{}");
                    return;
                }
                out.push_str("{ ");
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&key(k));
                    out.push_str(" = ");
                    v.render(out);
                }
                out.push_str(" }");
            }
        }
    }
}

/// A TOML basic string (toml's own quoting).
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A key, bare when it can be.
fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

/// The systemd directive a corral key was made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: Arc<Path>,
    pub line: usize,
    pub section: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub table: &'static str,
    pub key: &'static str,
    pub val: Val,
    pub origin: Option<Origin>,
}

/// The tables in the order a unit file lists them.
const TABLES: [&str; 4] = ["unit", "service", "resources", "namespaces"];

/// A corral unit under construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    pub entries: Vec<Entry>,
    /// Comment lines for the head of the file (without `# `).
    pub comments: Vec<String>,
}

impl Draft {
    /// Sets a key, replacing an earlier value.
    pub fn set(
        &mut self,
        table: &'static str,
        key: &'static str,
        val: Val,
        origin: Option<Origin>,
    ) {
        let entry = Entry {
            table,
            key,
            val,
            origin,
        };
        match self
            .entries
            .iter_mut()
            .find(|e| e.table == table && e.key == key)
        {
            Some(e) => *e = entry,
            None => self.entries.push(entry),
        }
    }

    pub fn get(&self, table: &str, key: &str) -> Option<&Val> {
        self.entries
            .iter()
            .find(|e| e.table == table && e.key == key)
            .map(|e| &e.val)
    }

    /// Removes a key; returns what it was.
    pub fn remove(&mut self, table: &str, key: &str) -> Option<Entry> {
        let i = self
            .entries
            .iter()
            .position(|e| e.table == table && e.key == key)?;
        Some(self.entries.remove(i))
    }

    /// The unit file's text.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for c in &self.comments {
            for line in c.lines() {
                out.push_str("# ");
                out.push_str(line);
                out.push('\n');
            }
        }
        for table in TABLES {
            let entries: Vec<&Entry> = self.entries.iter().filter(|e| e.table == table).collect();
            if entries.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&format!("[{table}]\n"));
            for e in entries {
                out.push_str(&key(e.key));
                out.push_str(" = ");
                e.val.render(&mut out);
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_toml_that_toml_reads_back() {
        let mut d = Draft::default();
        d.comments.push("from x.service\nsecond line".into());
        d.set(
            "service",
            "exec",
            Val::strings(["/bin/sh", "-c", "a \"b\" \\ 'c'\n"]),
            None,
        );
        d.set("unit", "description", Val::str("Tab\there"), None);
        d.set(
            "service",
            "environment",
            Val::Inline(vec![
                ("A_B".into(), Val::str("1")),
                ("x.y".into(), Val::str("")),
            ]),
            None,
        );
        d.set("resources", "pids-max", Val::Int(64), None);
        d.set("namespaces", "private-tmp", Val::Bool(true), None);
        d.set("service", "exec", Val::strings(["/bin/true"]), None);
        let text = d.to_toml();
        assert!(
            text.starts_with("# from x.service\n# second line\n\n[unit]\n"),
            "{text}"
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["service"]["exec"][0].as_str(), Some("/bin/true"));
        assert_eq!(parsed["service"]["environment"]["x.y"].as_str(), Some(""));
        assert_eq!(parsed["unit"]["description"].as_str(), Some("Tab\there"));
        assert_eq!(parsed["resources"]["pids-max"].as_integer(), Some(64));
        assert!(d.remove("resources", "pids-max").is_some());
        assert!(!d.to_toml().contains("[resources]"));
    }
}
