//! Just enough XML for D-Bus introspection data and bus policy files: elements and attributes,
//! no text content, no entities. Comments, `<?…?>` and `<!DOCTYPE …>` are skipped; unbalanced
//! tags are an error, so parsing doubles as a well-formedness check. Include with
//! `#[path = "common/xml.rs"] mod xml;`.

#![allow(dead_code)]

/// One element: its name, its attributes in document order, and its child elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elem {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Elem>,
}

impl Elem {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Child elements named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Elem> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element as one tag, e.g. `<arg name="x" type="s"/>` (without its children).
    pub fn open_tag(&self, close: bool) -> String {
        let mut s = format!("<{}", self.name);
        for (k, v) in &self.attrs {
            s.push_str(&format!(" {k}=\"{v}\""));
        }
        s.push_str(if close { "/>" } else { ">" });
        s
    }

    /// Indented, one element per line, empty elements self-closed.
    pub fn render(&self, indent: usize, out: &mut String) {
        let pad = "  ".repeat(indent);
        if self.children.is_empty() {
            out.push_str(&format!("{pad}{}\n", self.open_tag(true)));
        } else {
            out.push_str(&format!("{pad}{}\n", self.open_tag(false)));
            for c in &self.children {
                c.render(indent + 1, out);
            }
            out.push_str(&format!("{pad}</{}>\n", self.name));
        }
    }
}

/// Parses `text` into its root element.
pub fn parse(text: &str) -> Result<Elem, String> {
    let mut stack: Vec<Elem> = Vec::new();
    let mut root: Option<Elem> = None;
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let between = &rest[..start];
        if !between.trim().is_empty() {
            return Err(format!("unexpected text {:?}", between.trim()));
        }
        rest = &rest[start..];
        let skip_to = |rest: &str, end: &str| -> Result<usize, String> {
            rest.find(end)
                .map(|i| i + end.len())
                .ok_or_else(|| format!("unterminated {:?}", &rest[..rest.len().min(20)]))
        };
        if rest.starts_with("<!--") {
            rest = &rest[skip_to(rest, "-->")?..];
            continue;
        }
        if rest.starts_with("<?") {
            rest = &rest[skip_to(rest, "?>")?..];
            continue;
        }
        if rest.starts_with("<!") {
            rest = &rest[skip_to(rest, ">")?..];
            continue;
        }
        let end = skip_to(rest, ">")?;
        let tag = &rest[1..end - 1];
        rest = &rest[end..];
        if let Some(name) = tag.strip_prefix('/') {
            let name = name.trim();
            let elem = stack.pop().ok_or_else(|| format!("stray </{name}>"))?;
            if elem.name != name {
                return Err(format!("<{}> closed by </{name}>", elem.name));
            }
            attach(&mut stack, &mut root, elem)?;
            continue;
        }
        let (tag, empty) = match tag.strip_suffix('/') {
            Some(t) => (t, true),
            None => (tag, false),
        };
        let elem = open(tag)?;
        if empty {
            attach(&mut stack, &mut root, elem)?;
        } else {
            stack.push(elem);
        }
    }
    if !rest.trim().is_empty() {
        return Err(format!("unexpected text {:?}", rest.trim()));
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{}> is never closed", open.name));
    }
    root.ok_or_else(|| "no element".to_string())
}

fn attach(stack: &mut [Elem], root: &mut Option<Elem>, elem: Elem) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(elem),
        None if root.is_none() => *root = Some(elem),
        None => return Err(format!("a second root element <{}>", elem.name)),
    }
    Ok(())
}

/// `name a="1" b="2"` → the element (no children yet).
fn open(tag: &str) -> Result<Elem, String> {
    let tag = tag.trim();
    let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
    let name = tag[..name_end].to_string();
    if name.is_empty() {
        return Err(format!("a tag without a name: <{tag}>"));
    }
    let mut attrs = Vec::new();
    let mut rest = tag[name_end..].trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("<{name}>: attribute without a value near {rest:?}"))?;
        let key = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let quote = after
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| format!("<{name}>: unquoted value of {key}"))?;
        let close = after[1..]
            .find(quote)
            .ok_or_else(|| format!("<{name}>: unterminated value of {key}"))?;
        attrs.push((key, after[1..1 + close].to_string()));
        rest = after[close + 2..].trim_start();
    }
    Ok(Elem {
        name,
        attrs,
        children: Vec::new(),
    })
}

#[test]
fn parses_introspection_and_rejects_broken_xml() {
    let doc = parse(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE node PUBLIC \"x\"\n \"y\">\n<!-- c -->\n\
         <node><interface name='a.B'><method name=\"M\">\n</method>\
         <property name=\"P\" type=\"s\" access=\"read\"/></interface></node>",
    )
    .unwrap();
    assert_eq!(doc.name, "node");
    let iface = &doc.children[0];
    assert_eq!(iface.attr("name"), Some("a.B"));
    assert_eq!(iface.children.len(), 2);
    let mut out = String::new();
    doc.render(0, &mut out);
    assert_eq!(
        out,
        "<node>\n  <interface name=\"a.B\">\n    <method name=\"M\"/>\n    \
         <property name=\"P\" type=\"s\" access=\"read\"/>\n  </interface>\n</node>\n"
    );
    assert!(parse("<a><b></a>").is_err());
    assert!(parse("<a>").is_err());
    assert!(parse("<a/><b/>").is_err());
    assert!(parse("<a x=1/>").is_err());
}
