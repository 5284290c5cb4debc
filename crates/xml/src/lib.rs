//! A small, bounded XML reader for the documents SIP carries (PIDF and RPID, C3P, conference-info,
//! MS-PRES categories): elements with resolved namespaces, attributes and text, into a tree; and a
//! [`Writer`] that builds documents with every value escaped.
//!
//! Enough of XML 1.0 for what SIP clients send: the XML declaration and processing instructions
//! (skipped), comments, CDATA, the five predefined entities and character references, single- and
//! double-quoted attributes, `xmlns` and `xmlns:prefix` declarations. Left out on purpose: DTDs and
//! user-defined entities (a `<!DOCTYPE` is an error, so no entity expansion attacks), and encodings other
//! than UTF-8. Every size is bounded ([`Limits`]); input never panics.

use std::collections::HashMap;

use thiserror::Error;

/// Why a document was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum XmlError {
    /// Not well-formed (or uses what this reader leaves out).
    #[error("malformed XML: {0}")]
    Malformed(&'static str),
    /// Beyond one of the [`Limits`].
    #[error("XML document too large: {0}")]
    TooLarge(&'static str),
}

/// Bounds on a document.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Deepest element nesting.
    pub max_depth: usize,
    /// Most elements in the document.
    pub max_elements: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Longest text of one element.
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_depth: 24, max_elements: 1024, max_attributes: 32, max_text: 4096 }
    }
}

/// An element: namespace name (empty when unbound), local name, attributes (local name, value; namespace
/// declarations left out), text (all text children, concatenated) and child elements.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    /// Namespace name the element's prefix (or the default namespace) resolves to.
    pub ns: String,
    /// Local name.
    pub name: String,
    /// Attributes by local name, in document order.
    pub attrs: Vec<(String, String)>,
    /// Text content with entities decoded.
    pub text: String,
    /// Child elements.
    pub children: Vec<Element>,
}

impl Element {
    /// The value of attribute `name` (local name).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Children in namespace `ns` named `name`.
    pub fn children_named<'a>(&'a self, ns: &'a str, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.ns == ns && c.name == name)
    }

    /// The first child in namespace `ns` named `name`.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.ns == ns && c.name == name)
    }
}

struct Reader<'a> {
    s: &'a str,
    pos: usize,
    limits: Limits,
    elements: usize,
}

fn err(what: &'static str) -> XmlError {
    XmlError::Malformed(what)
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        let r = self.rest();
        self.pos += r.len() - r.trim_start_matches([' ', '\t', '\r', '\n']).len();
    }

    /// Skips past `end`, or fails with `what`.
    fn skip_past(&mut self, end: &str, what: &'static str) -> Result<&'a str, XmlError> {
        let r = self.rest();
        let i = r.find(end).ok_or(err(what))?;
        self.pos += i + end.len();
        Ok(&r[..i])
    }

    fn name(&mut self) -> Result<&'a str, XmlError> {
        let r = self.rest();
        let len = r.find(|c: char| !is_name_char(c)).unwrap_or(r.len());
        if len == 0 || r.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') {
            return Err(err("bad element or attribute name"));
        }
        self.pos += len;
        Ok(&r[..len])
    }

    /// Skips the prolog and misc items (declaration, PIs, comments, whitespace) before or after the root.
    fn misc(&mut self) -> Result<(), XmlError> {
        loop {
            self.skip_ws();
            let r = self.rest();
            if r.starts_with("<?") {
                self.skip_past("?>", "unterminated processing instruction")?;
            } else if r.starts_with("<!--") {
                self.skip_past("-->", "unterminated comment")?;
            } else if r.starts_with("<!") {
                return Err(err("DTDs are not accepted"));
            } else {
                return Ok(());
            }
        }
    }

    fn document(&mut self) -> Result<Element, XmlError> {
        if self.rest().starts_with('\u{feff}') {
            self.pos += '\u{feff}'.len_utf8();
        }
        self.misc()?;
        if !self.rest().starts_with('<') {
            return Err(err("no root element"));
        }
        let scope = HashMap::new();
        let root = self.element(&scope, 1)?;
        self.misc()?;
        if !self.rest().is_empty() {
            return Err(err("content after the root element"));
        }
        Ok(root)
    }

    /// Reads one element starting at `<`.
    fn element(&mut self, parent: &HashMap<String, String>, depth: usize) -> Result<Element, XmlError> {
        if depth > self.limits.max_depth {
            return Err(XmlError::TooLarge("elements nested too deep"));
        }
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(XmlError::TooLarge("too many elements"));
        }
        self.pos += 1; // '<'
        let qname = self.name()?;
        let mut raw_attrs: Vec<(&str, String)> = Vec::new();
        let empty = loop {
            let before = self.pos;
            self.skip_ws();
            let r = self.rest();
            if r.starts_with("/>") {
                self.pos += 2;
                break true;
            }
            if r.starts_with('>') {
                self.pos += 1;
                break false;
            }
            if self.pos == before {
                return Err(err("expected whitespace between attributes"));
            }
            let name = self.name()?;
            self.skip_ws();
            if !self.rest().starts_with('=') {
                return Err(err("attribute without value"));
            }
            self.pos += 1;
            self.skip_ws();
            let quote = self.rest().chars().next().ok_or(err("unterminated tag"))?;
            if quote != '"' && quote != '\'' {
                return Err(err("attribute value not quoted"));
            }
            self.pos += 1;
            let r = self.rest();
            let end = r.find(quote).ok_or(err("unterminated attribute value"))?;
            let raw = &r[..end];
            if raw.contains('<') {
                return Err(err("'<' in attribute value"));
            }
            self.pos += end + 1;
            if raw_attrs.iter().any(|(n, _)| *n == name) {
                return Err(err("repeated attribute"));
            }
            if raw_attrs.len() >= self.limits.max_attributes {
                return Err(XmlError::TooLarge("too many attributes"));
            }
            raw_attrs.push((name, decode(raw, self.limits.max_text)?));
        };
        // Namespace scope of this element.
        let scope_owned: HashMap<String, String>;
        let scope = if raw_attrs.iter().any(|(n, _)| *n == "xmlns" || n.starts_with("xmlns:")) {
            let mut own = parent.clone();
            for (n, v) in &raw_attrs {
                if *n == "xmlns" {
                    own.insert(String::new(), v.clone());
                } else if let Some(p) = n.strip_prefix("xmlns:") {
                    own.insert(p.to_owned(), v.clone());
                }
            }
            scope_owned = own;
            &scope_owned
        } else {
            parent
        };
        let (prefix, local) = match qname.split_once(':') {
            Some((p, l)) => (p, l),
            None => ("", qname),
        };
        if local.is_empty() || local.contains(':') {
            return Err(err("bad qualified name"));
        }
        let ns = match scope.get(prefix) {
            Some(ns) => ns.clone(),
            None if prefix.is_empty() => String::new(),
            None => return Err(err("undeclared namespace prefix")),
        };
        let attrs = raw_attrs
            .into_iter()
            .filter(|(n, _)| *n != "xmlns" && !n.starts_with("xmlns:"))
            .map(|(n, v)| (n.rsplit(':').next().unwrap_or(n).to_owned(), v))
            .collect();
        let mut el = Element { ns, name: local.to_owned(), attrs, text: String::new(), children: Vec::new() };
        if empty {
            return Ok(el);
        }
        loop {
            let r = self.rest();
            if r.is_empty() {
                return Err(err("unterminated element"));
            }
            if let Some(after) = r.strip_prefix("</") {
                let len = after.find('>').ok_or(err("unterminated end tag"))?;
                if after[..len].trim_end() != qname {
                    return Err(err("mismatched end tag"));
                }
                self.pos += 2 + len + 1;
                return Ok(el);
            }
            if r.starts_with("<!--") {
                self.skip_past("-->", "unterminated comment")?;
            } else if r.starts_with("<![CDATA[") {
                self.pos += 9;
                let text = self.skip_past("]]>", "unterminated CDATA")?;
                push_text(&mut el.text, text, self.limits.max_text)?;
            } else if r.starts_with("<?") {
                self.skip_past("?>", "unterminated processing instruction")?;
            } else if r.starts_with("<!") {
                return Err(err("markup declaration inside an element"));
            } else if r.starts_with('<') {
                let child = self.element(scope, depth + 1)?;
                el.children.push(child);
            } else {
                let len = r.find('<').unwrap_or(r.len());
                let text = decode(&r[..len], self.limits.max_text)?;
                push_text(&mut el.text, &text, self.limits.max_text)?;
                self.pos += len;
            }
        }
    }
}

fn push_text(out: &mut String, text: &str, max: usize) -> Result<(), XmlError> {
    if out.len() + text.len() > max {
        return Err(XmlError::TooLarge("text too long"));
    }
    out.push_str(text);
    Ok(())
}

/// Decodes the predefined entities and character references.
fn decode(raw: &str, max: usize) -> Result<String, XmlError> {
    if raw.len() > max {
        return Err(XmlError::TooLarge("text too long"));
    }
    if !raw.contains('&') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').filter(|&e| e <= 10).ok_or(err("bad entity reference"))?;
        let name = &after[..end];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    return Err(err("unknown entity"));
                };
                code.and_then(char::from_u32).filter(|&c| c != '\0').ok_or(err("bad character reference"))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses a UTF-8 document into its root element.
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Element, XmlError> {
    let s = std::str::from_utf8(bytes).map_err(|_| err("not UTF-8"))?;
    Reader { s, pos: 0, limits, elements: 0 }.document()
}

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['<', '>', '&', '"', '\'']) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out.into()
}

/// Builds an XML document: elements, attributes and text, every value escaped. Start tags stay open for
/// attributes until content or the end of the element.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
    open: Vec<String>,
    in_start_tag: bool,
}

impl Writer {
    /// A document that starts with the XML declaration.
    pub fn new() -> Writer {
        Writer { out: String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"), ..Writer::default() }
    }

    /// A fragment without declaration.
    pub fn fragment() -> Writer {
        Writer::default()
    }

    fn close_start(&mut self) {
        if self.in_start_tag {
            self.out.push('>');
            self.in_start_tag = false;
        }
    }

    /// Opens element `name` (a qualified name, e.g. `msci:media`).
    pub fn start(&mut self, name: &str) -> &mut Writer {
        self.close_start();
        self.out.push('<');
        self.out.push_str(name);
        self.open.push(name.to_owned());
        self.in_start_tag = true;
        self
    }

    /// Adds an attribute to the element just opened.
    pub fn attr(&mut self, name: &str, value: &str) -> &mut Writer {
        debug_assert!(self.in_start_tag, "attribute {name} outside a start tag");
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        self.out.push_str(&escape(value));
        self.out.push('"');
        self
    }

    /// Text content.
    pub fn text(&mut self, text: &str) -> &mut Writer {
        self.close_start();
        self.out.push_str(&escape(text));
        self
    }

    /// Closes the innermost open element (`<a/>` when it has no content).
    pub fn end(&mut self) -> &mut Writer {
        let name = self.open.pop().expect("end() without an open element");
        if self.in_start_tag {
            self.out.push_str("/>");
            self.in_start_tag = false;
        } else {
            self.out.push_str("</");
            self.out.push_str(&name);
            self.out.push('>');
        }
        self
    }

    /// Markup built elsewhere (by another [`Writer::fragment`]), inserted as it is.
    pub fn raw(&mut self, markup: &str) -> &mut Writer {
        self.close_start();
        self.out.push_str(markup);
        self
    }

    /// `<name>text</name>`.
    pub fn leaf(&mut self, name: &str, text: &str) -> &mut Writer {
        self.start(name).text(text).end()
    }

    /// Closes every open element and returns the document.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.end();
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_entities_and_cdata() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
            <!-- c -->
            <p:a xmlns:p="urn:p" xmlns="urn:d" x='1 &amp; 2'>
              <b>t&lt;&#x41;&#66;<![CDATA[<raw>]]></b><p:c/><d xmlns="urn:e"/>
            </p:a>"#;
        let root = parse(doc, Limits::default()).unwrap();
        assert_eq!((root.ns.as_str(), root.name.as_str()), ("urn:p", "a"));
        assert_eq!(root.attr("x"), Some("1 & 2"));
        assert_eq!(root.child("urn:d", "b").unwrap().text, "t<AB<raw>");
        assert!(root.child("urn:p", "c").is_some());
        assert!(root.child("urn:e", "d").is_some());
    }

    #[test]
    fn malformed_and_oversized_documents_are_errors() {
        for bad in [
            &b""[..],
            b"<a>",
            b"<a></b>",
            b"<a x=1/>",
            b"<a x='1' x='2'/>",
            b"<p:a/>",
            b"<!DOCTYPE a [<!ENTITY x 'y'>]><a/>",
            b"<a>&foo;</a>",
            b"<a>&#0;</a>",
            b"<a/><b/>",
            b"<a\xff/>",
            b"<a x='<'/>",
            b"<1a/>",
        ] {
            assert!(parse(bad, Limits::default()).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert_eq!(parse(deep.as_bytes(), Limits::default()), Err(XmlError::TooLarge("elements nested too deep")));
        let wide = format!("<a>{}</a>", "<b/>".repeat(2000));
        assert_eq!(parse(wide.as_bytes(), Limits::default()), Err(XmlError::TooLarge("too many elements")));
    }

    #[test]
    fn writer_escapes_and_reads_back() {
        let mut w = Writer::new();
        w.start("a").attr("xmlns", "urn:a").attr("v", "1\"<2");
        w.leaf("b", "x & y").start("c").end();
        let doc = w.finish();
        assert!(doc.ends_with("<a xmlns=\"urn:a\" v=\"1&quot;&lt;2\"><b>x &amp; y</b><c/></a>"), "{doc}");
        let root = parse(doc.as_bytes(), Limits::default()).unwrap();
        assert_eq!(root.attr("v"), Some("1\"<2"));
        assert_eq!(root.child("urn:a", "b").unwrap().text, "x & y");
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(decode(&escape("x'<>&\""), 100).unwrap(), "x'<>&\"");
    }
}
