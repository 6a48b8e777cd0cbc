//! Unit names and kinds (DESIGN §1): `NAME.KIND`, 1–255 bytes of `[A-Za-z0-9:_.@-]`, never
//! `/` or `..`, never a leading `.` or `-` except the root slice `-.slice`.
//!
//! A [`UnitName`] is valid by construction, so it is safe to use as a cgroup path component and
//! in a D-Bus object path ([`UnitName::object_path_component`]). Slices nest by dash as in
//! systemd: `apps-batch.slice` is a child of `apps.slice`, a child of `-.slice`.
//!
//! Three kinds (DESIGN §9): services and slices, from unit files or over D-Bus; and scopes,
//! groups of processes corral did not start, created over D-Bus only (`org.freedesktop.systemd1`
//! `StartTransientUnit`). A scope lives in a slice as a service does: `kubepods.slice/x.scope`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// What a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    Slice,
    Scope,
}

impl Kind {
    /// Every kind, in the order messages list them.
    pub const ALL: [Kind; 3] = [Kind::Service, Kind::Slice, Kind::Scope];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Slice => "slice",
            Kind::Scope => "scope",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a unit name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("unit name is empty")]
    Empty,
    #[error("unit name {0:?} is longer than 255 bytes")]
    TooLong(String),
    #[error("unit name {0:?} contains \"/\"")]
    Slash(String),
    #[error("unit name {0:?} contains \"..\"")]
    DotDot(String),
    #[error("unit name {0:?} starts with {1:?}")]
    BadStart(String, char),
    #[error("unit name {0:?} contains {1:?}; allowed are letters, digits and \":_.@-\"")]
    BadChar(String, char),
    #[error(
        "unit name {0:?} has no known kind: it must end in \".service\", \".slice\" or \".scope\""
    )]
    UnknownKind(String),
    #[error("unit name {0:?} has an empty part between dashes")]
    EmptySlicePart(String),
    #[error(
        "unit name {0:?} has a dash after a dot: its parent slice would be named {parent:?}, \
         and a name never holds \"..\"",
        parent = format!("{}..slice", .0.split_once(".-").map_or("", |(p, _)| p))
    )]
    DotDashInSlice(String),
}

/// A validated unit name such as `web.service` or `apps-batch.slice`.
///
/// Shared, not copied: a name is held in many places (the unit set, the dependency graph's
/// maps and edges, every per-unit table of the manager), and a clone is a reference count,
/// not an allocation — with 10 000 units loaded that is megabytes (docs/PERFORMANCE.md
/// finding 7). Compares, orders and hashes as its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitName(Arc<str>);

/// The root slice: the cgroup root itself.
pub const ROOT_SLICE: &str = "-.slice";
/// Where services go when they name no slice.
pub const DEFAULT_SLICE: &str = "system.slice";

impl UnitName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.len() > 255 {
            return Err(NameError::TooLong(s.to_string()));
        }
        if s.contains('/') {
            return Err(NameError::Slash(s.to_string()));
        }
        if s.contains("..") {
            return Err(NameError::DotDot(s.to_string()));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && !":_.@-".contains(*c))
        {
            return Err(NameError::BadChar(s.to_string(), c));
        }
        if s == ROOT_SLICE {
            return Ok(UnitName(Arc::from(s)));
        }
        let first = s.chars().next().unwrap_or('.');
        if first == '.' || first == '-' {
            return Err(NameError::BadStart(s.to_string(), first));
        }
        let (stem, kind) = s
            .rsplit_once('.')
            .ok_or(NameError::UnknownKind(s.to_string()))?;
        match kind {
            "service" | "slice" | "scope" if !stem.is_empty() => {}
            _ => return Err(NameError::UnknownKind(s.to_string())),
        }
        if kind == "slice" && stem.split('-').any(str::is_empty) {
            return Err(NameError::EmptySlicePart(s.to_string()));
        }
        // `a.-b.slice` lives in `a..slice` (slices nest by dash): no such name can exist.
        if kind == "slice" && stem.contains(".-") {
            return Err(NameError::DotDashInSlice(s.to_string()));
        }
        Ok(UnitName(Arc::from(s)))
    }

    pub fn root_slice() -> Self {
        UnitName(Arc::from(ROOT_SLICE))
    }

    pub fn default_slice() -> Self {
        UnitName(Arc::from(DEFAULT_SLICE))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn kind(&self) -> Kind {
        if self.0.ends_with(".slice") {
            Kind::Slice
        } else if self.0.ends_with(".scope") {
            Kind::Scope
        } else {
            Kind::Service
        }
    }

    /// The name without its kind: `web` for `web.service`.
    pub fn stem(&self) -> &str {
        self.0.rsplit_once('.').map_or(&*self.0, |(stem, _)| stem)
    }

    pub fn is_root_slice(&self) -> bool {
        &*self.0 == ROOT_SLICE
    }

    /// The slice a slice lives in: `apps-batch.slice` → `apps.slice` → `-.slice` → none.
    /// Services and scopes have no implied parent (their `slice` says where they go).
    pub fn parent_slice(&self) -> Option<UnitName> {
        if self.kind() != Kind::Slice || self.is_root_slice() {
            return None;
        }
        Some(match self.stem().rsplit_once('-') {
            Some((parent, _)) => UnitName(Arc::from(format!("{parent}.slice"))),
            None => UnitName::root_slice(),
        })
    }

    /// The path of this unit's cgroup relative to the cgroup root, given the slice a service
    /// or scope lives in: `apps.slice/apps-batch.slice/job.service`. The root slice is the
    /// root itself.
    pub fn cgroup_path(&self, slice: Option<&UnitName>) -> PathBuf {
        let mut chain = Vec::new();
        let mut cur = match self.kind() {
            Kind::Slice => Some(self.clone()),
            Kind::Service | Kind::Scope => {
                chain.push(self.0.to_string());
                Some(slice.cloned().unwrap_or_else(UnitName::default_slice))
            }
        };
        while let Some(s) = cur {
            if s.is_root_slice() {
                break;
            }
            cur = s.parent_slice();
            chain.push(s.0.to_string());
        }
        chain.iter().rev().collect()
    }

    /// The unit's object path component, escaped as systemd does: every byte outside
    /// `[A-Za-z0-9]`, and a leading digit, becomes `_` and two lower-case hex digits.
    pub fn object_path_component(&self) -> String {
        let mut out = String::with_capacity(self.0.len() * 3);
        for (i, b) in self.0.bytes().enumerate() {
            if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
                out.push(b as char);
            } else {
                out.push_str(&format!("_{b:02x}"));
            }
        }
        out
    }

    /// The inverse of [`UnitName::object_path_component`]; `None` if the result is no unit name.
    pub fn from_object_path_component(s: &str) -> Option<UnitName> {
        UnitName::parse(&String::from_utf8(unescape_hex(s, b'_')?).ok()?).ok()
    }
}

/// Undoes an escape that writes a byte as `marker` and two hex digits (`_2e` in object paths,
/// `%20` in D-Bus addresses); `None` if a marker is not followed by two hex digits.
pub fn unescape_hex(s: &str, marker: u8) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == marker {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for UnitName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for s in [
            "web.service",
            "apps-batch.slice",
            "-.slice",
            "a:b_c@1.service",
            "x.slice",
            "cri-containerd-0123abcd.scope",
        ] {
            assert_eq!(UnitName::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(
            UnitName::parse("web.service").unwrap().kind(),
            Kind::Service
        );
        assert_eq!(UnitName::parse("web.service").unwrap().stem(), "web");
        assert_eq!(UnitName::parse("c.scope").unwrap().kind(), Kind::Scope);
        assert_eq!(UnitName::parse("c.scope").unwrap().parent_slice(), None);
    }

    #[test]
    fn invalid_names() {
        let cases = [
            ("", NameError::Empty),
            ("a/b.service", NameError::Slash("a/b.service".into())),
            ("../x.service", NameError::Slash("../x.service".into())),
            ("a..b.service", NameError::DotDot("a..b.service".into())),
            (
                ".web.service",
                NameError::BadStart(".web.service".into(), '.'),
            ),
            (
                "-web.service",
                NameError::BadStart("-web.service".into(), '-'),
            ),
            ("web.timer", NameError::UnknownKind("web.timer".into())),
            ("web", NameError::UnknownKind("web".into())),
            (".service", NameError::BadStart(".service".into(), '.')),
            (
                "web x.service",
                NameError::BadChar("web x.service".into(), ' '),
            ),
            ("a--b.slice", NameError::EmptySlicePart("a--b.slice".into())),
            ("a-.slice", NameError::EmptySlicePart("a-.slice".into())),
            // Its parent would be a..slice.
            ("a.-b.slice", NameError::DotDashInSlice("a.-b.slice".into())),
            (
                "x-a.-b.slice",
                NameError::DotDashInSlice("x-a.-b.slice".into()),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(UnitName::parse(s), Err(want), "{s:?}");
        }
        assert!(matches!(
            UnitName::parse(&"a".repeat(250).add_kind()),
            Err(NameError::TooLong(_))
        ));
        assert_eq!(
            UnitName::parse(".scope"),
            Err(NameError::BadStart(".scope".into(), '.'))
        );
        assert!(
            UnitName::parse("x.socket")
                .unwrap_err()
                .to_string()
                .contains("\".scope\""),
            "the message lists every kind"
        );
    }

    trait AddKind {
        fn add_kind(&self) -> String;
    }
    impl AddKind for String {
        fn add_kind(&self) -> String {
            format!("{self}.service")
        }
    }

    #[test]
    fn every_parent_slice_of_a_slice_is_a_name() {
        assert_eq!(
            UnitName::parse("a.-b.slice").unwrap_err().to_string(),
            "unit name \"a.-b.slice\" has a dash after a dot: its parent slice would be \
             named \"a..slice\", and a name never holds \"..\""
        );
        // A dot after a dash, and a dash-dot in a service, are fine.
        for s in ["a-.b.slice", "a.b-c.slice", "x.-y.service"] {
            let mut cur = Some(UnitName::parse(s).unwrap());
            while let Some(n) = cur {
                assert_eq!(UnitName::parse(n.as_str()), Ok(n.clone()), "{s}");
                cur = n.parent_slice();
            }
        }
    }

    #[test]
    fn slices_nest_by_dash() {
        let n = |s| UnitName::parse(s).unwrap();
        assert_eq!(n("apps-batch.slice").parent_slice(), Some(n("apps.slice")));
        assert_eq!(n("apps.slice").parent_slice(), Some(n("-.slice")));
        assert_eq!(n("-.slice").parent_slice(), None);
        assert_eq!(n("web.service").parent_slice(), None);
        assert_eq!(
            n("job.service").cgroup_path(Some(&n("apps-batch.slice"))),
            PathBuf::from("apps.slice/apps-batch.slice/job.service")
        );
        assert_eq!(
            n("web.service").cgroup_path(None),
            PathBuf::from("system.slice/web.service")
        );
        assert_eq!(
            n("a-b-c.slice").cgroup_path(None),
            PathBuf::from("a.slice/a-b.slice/a-b-c.slice")
        );
        assert_eq!(n("-.slice").cgroup_path(None), PathBuf::new());
        assert_eq!(
            n("x.service").cgroup_path(Some(&n("-.slice"))),
            PathBuf::from("x.service")
        );
        assert_eq!(
            n("c1.scope").cgroup_path(Some(&n("kubepods-besteffort-pod1.slice"))),
            PathBuf::from(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/c1.scope"
            )
        );
    }

    #[test]
    fn object_path_escaping() {
        let cases = [
            ("web.service", "web_2eservice"),
            ("-.slice", "_2d_2eslice"),
            ("1st.service", "_31st_2eservice"),
            ("a1@b:c_d.service", "a1_40b_3ac_5fd_2eservice"),
        ];
        for (name, esc) in cases {
            let n = UnitName::parse(name).unwrap();
            assert_eq!(n.object_path_component(), esc);
            assert_eq!(UnitName::from_object_path_component(esc), Some(n));
        }
        assert_eq!(
            UnitName::from_object_path_component("a_2fb_2eservice"),
            None
        );
        assert_eq!(UnitName::from_object_path_component("web_2"), None);
    }
}
