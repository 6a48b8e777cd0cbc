//! `%` specifiers (systemd.unit(5), "Specifiers"), resolved for the system manager.
//!
//! Those with one meaning for a unit are replaced: the unit's names (`%n %N %p %P %i %I %j %J
//! %f`), the system manager's directories (`%t` /run, `%S` /var/lib, `%C` /var/cache, `%L`
//! /var/log, `%E` /etc, `%T` /tmp, `%V` /var/tmp) and its user (`%u` root, `%U` 0, `%g` root,
//! `%G` 0, `%h` /root, `%s` /bin/sh — since systemd 249 these name the manager's user, not
//! `User=`), and `%%`. Those that depend on the machine or the boot (`%H`, `%m`, `%b`, `%v`, …)
//! or on systemd itself (`%d` credentials, `%y` the unit file) have no fixed value: they are left
//! as written and reported, as are `%i`/`%I` of a template with no instance.

/// The names a unit's specifiers are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The full unit name, e.g. `getty@tty1.service`.
    pub full: String,
    /// Without the type suffix: `getty@tty1`.
    pub stem: String,
    /// Before the `@` (the whole stem if none): `getty`.
    pub prefix: String,
    /// After the `@`, `None` for a plain unit, `Some("")` for a template.
    pub instance: Option<String>,
}

impl Names {
    pub fn new(full: &str) -> Self {
        let stem = full.rsplit_once('.').map_or(full, |(s, _)| s).to_string();
        let (prefix, instance) = match stem.split_once('@') {
            Some((p, i)) => (p.to_string(), Some(i.to_string())),
            None => (stem.clone(), None),
        };
        Names {
            full: full.to_string(),
            stem,
            prefix,
            instance,
        }
    }

    /// A template with no instance (`getty@.service`).
    pub fn is_template(&self) -> bool {
        self.instance.as_deref() == Some("")
    }
}

/// systemd's unit-name unescaping: `\xNN` becomes the byte (ASCII only here).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 2..i + 4);
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) if b.is_ascii() && b != 0 => {
                out.push(char::from(b));
                rest = &rest[i + 4..];
            }
            _ => {
                out.push_str("\\x");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The path form (`%f`): dashes are slashes, then unescaped, with a leading `/`.
fn unescape_path(s: &str) -> String {
    let p = unescape(&s.replace('-', "/"));
    if p.starts_with('/') {
        p
    } else {
        format!("/{p}")
    }
}

/// Replaces the specifiers of `s`. Returns the text and, for each specifier left as written,
/// why (one entry per distinct specifier).
pub fn resolve(s: &str, names: &Names) -> (String, Vec<String>) {
    if !s.contains('%') {
        return (s.to_string(), Vec::new());
    }
    let mut out = String::with_capacity(s.len());
    let mut problems: Vec<String> = Vec::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(spec) = chars.next() else {
            out.push('%');
            note(&mut problems, "a lone % at the end".into());
            break;
        };
        let instance = || -> Option<&str> { names.instance.as_deref().filter(|i| !i.is_empty()) };
        let value: Option<String> = match spec {
            '%' => Some("%".into()),
            'n' => Some(names.full.clone()),
            'N' => Some(names.stem.clone()),
            'p' => Some(names.prefix.clone()),
            'P' => Some(unescape(&names.prefix)),
            'i' => instance().map(String::from),
            'I' => instance().map(unescape),
            'j' => Some(last_dash(&names.prefix).to_string()),
            'J' => Some(unescape(last_dash(&names.prefix))),
            'f' => Some(unescape_path(instance().unwrap_or(&names.prefix))),
            't' => Some("/run".into()),
            'S' => Some("/var/lib".into()),
            'C' => Some("/var/cache".into()),
            'L' => Some("/var/log".into()),
            'E' => Some("/etc".into()),
            'T' => Some("/tmp".into()),
            'V' => Some("/var/tmp".into()),
            'u' | 'g' => Some("root".into()),
            'U' | 'G' => Some("0".into()),
            'h' => Some("/root".into()),
            's' => Some("/bin/sh".into()),
            _ => None,
        };
        match value {
            Some(v) => out.push_str(&v),
            None => {
                out.push('%');
                out.push(spec);
                let why = match spec {
                    'i' | 'I' => format!(
                        "%{spec} (a template with no instance: import an instance such as NAME@INSTANCE.service)"
                    ),
                    'H' | 'l' | 'q' | 'm' | 'b' | 'B' | 'v' | 'a' | 'A' | 'o' | 'w' | 'W' | 'M' => {
                        format!("%{spec} (depends on the machine or the boot)")
                    }
                    'd' | 'y' | 'Y' => format!("%{spec} (depends on systemd)"),
                    _ => format!("%{spec} (unknown specifier)"),
                };
                note(&mut problems, why);
            }
        }
    }
    (out, problems)
}

fn note(problems: &mut Vec<String>, why: String) {
    if !problems.contains(&why) {
        problems.push(why);
    }
}

fn last_dash(s: &str) -> &str {
    s.rsplit('-').next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_directories() {
        let n = Names::new("serial-getty@ttyS0.service");
        let (s, p) = resolve("%n %N %p %i %I %j %t/%S %u %U %h %%i", &n);
        assert_eq!(
            s,
            "serial-getty@ttyS0.service serial-getty@ttyS0 serial-getty ttyS0 ttyS0 getty /run//var/lib root 0 /root %i"
        );
        assert!(p.is_empty(), "{p:?}");
        let n = Names::new("systemd-fsck@dev-disk-by\\x2duuid-abc.service");
        assert_eq!(resolve("%I", &n).0, "dev-disk-by-uuid-abc");
        assert_eq!(resolve("%f", &n).0, "/dev/disk/by-uuid/abc");
        assert_eq!(resolve("%i", &n).0, "dev-disk-by\\x2duuid-abc");
    }

    #[test]
    fn unresolvable_ones_are_kept_and_reported_once() {
        let n = Names::new("getty@.service");
        assert!(n.is_template());
        let (s, p) = resolve("/sbin/agetty %I %I %H 50%", &n);
        assert_eq!(s, "/sbin/agetty %I %I %H 50%");
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("template"), "{p:?}");
        assert!(p[1].contains("machine"), "{p:?}");
        assert!(p[2].contains("lone"), "{p:?}");
        assert_eq!(resolve("%Z", &n).1, ["%Z (unknown specifier)"]);
        assert_eq!(resolve("no specifier", &n), ("no specifier".into(), vec![]));
    }
}
