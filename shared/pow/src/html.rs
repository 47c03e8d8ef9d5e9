//! Finding a widget's start tag and its attributes in a page's HTML without
//! running scripts: a small tokenizer that skips comments, doctype and the
//! contents of raw-text elements (`<script>`, `<style>`, `<textarea>`,
//! `<title>`), and decodes the common character references in values.

/// A start tag's attributes, names lowercased, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tag {
    pub attrs: Vec<(String, String)>,
}

impl Tag {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The first start tag named `name` (ASCII case-insensitive) outside
/// comments and raw-text elements.
pub fn find_tag(html: &str, name: &str) -> Option<Tag> {
    let b = html.as_bytes();
    let mut i = 0;
    while let Some(off) = memchr(b'<', &b[i..]) {
        i += off;
        let rest = &html[i..];
        if rest.starts_with("<!--") {
            i = rest.find("-->").map_or(b.len(), |e| i + e + 3);
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") || rest.starts_with("</") {
            i = rest.find('>').map_or(b.len(), |e| i + e + 1);
            continue;
        }
        let name_len = rest[1..].bytes().take_while(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_').count();
        if name_len == 0 {
            i += 1;
            continue;
        }
        let tag_name = rest[1..1 + name_len].to_ascii_lowercase();
        let (attrs, end) = parse_attrs(&html[i + 1 + name_len..]);
        let after = i + 1 + name_len + end;
        if tag_name == name {
            return Some(Tag { attrs });
        }
        i = after;
        if matches!(tag_name.as_str(), "script" | "style" | "textarea" | "title" | "xmp") {
            let close = format!("</{tag_name}");
            i = find_ci(&html[i..], &close).map_or(b.len(), |e| i + e);
        }
    }
    None
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&c| c == needle)
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len()).find(|&k| h[k..k + n.len()].eq_ignore_ascii_case(n))
}

/// Parses attributes up to the tag's `>`; returns them and the offset just past `>`.
fn parse_attrs(s: &str) -> (Vec<(String, String)>, usize) {
    let b = s.as_bytes();
    let mut attrs = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() {
            return (attrs, b.len());
        }
        if b[i] == b'>' {
            return (attrs, i + 1);
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = s[start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                let ve = memchr(q, &b[vs..]).map_or(b.len(), |e| vs + e);
                value = decode_entities(&s[vs..ve]);
                i = (ve + 1).min(b.len());
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                    i += 1;
                }
                value = decode_entities(&s[vs..i]);
            }
        }
        if !name.is_empty() && !attrs.iter().any(|(n, _): &(String, String)| *n == name) {
            attrs.push((name, value));
        }
    }
}

/// Decodes `&amp; &lt; &gt; &quot; &apos; &#NN; &#xNN;`; leaves others as they are.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let semi = rest.as_bytes()[..rest.len().min(12)].iter().position(|&c| c == b';');
        let decoded = semi.and_then(|e| {
            let ent = &rest[1..e];
            let c = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ if ent.starts_with("#x") || ent.starts_with("#X") => {
                    u32::from_str_radix(&ent[2..], 16).ok().and_then(char::from_u32)
                }
                _ if ent.starts_with('#') => ent[1..].parse::<u32>().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_widget_attributes() {
        let html = r#"<!doctype html><html><head>
<script>document.write('<altcha-widget challenge="/evil">')</script>
<!-- <altcha-widget challenge="/commented"> -->
</head><body><form><ALTCHA-WIDGET Challenge='/altcha/challenge?a=1&amp;b=2' name=altcha hidefooter></altcha-widget></form>"#;
        let t = find_tag(html, "altcha-widget").expect("widget");
        assert_eq!(t.get("challenge"), Some("/altcha/challenge?a=1&b=2"));
        assert_eq!(t.get("name"), Some("altcha"));
        assert_eq!(t.get("hidefooter"), Some(""));
        assert!(find_tag(html, "cap-widget").is_none());
    }

    #[test]
    fn entities() {
        assert_eq!(decode_entities("a&amp;b&#38;c&#x26;d&unknown;e&"), "a&b&c&d&unknown;e&");
        assert_eq!(decode_entities("&quot;{}&quot;"), "\"{}\"");
    }

    #[test]
    fn unterminated_input_does_not_panic() {
        for s in ["<", "<a", "<a b", "<a b=", "<a b='x", "<!--", "<script>", "<cap-widget data-x=\"é", "&#xffffffff;"]
        {
            let _ = find_tag(s, "cap-widget");
            let _ = decode_entities(s);
        }
    }
}
