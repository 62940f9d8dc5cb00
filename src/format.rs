//! Formatted messages: the Markdown a user types becomes Matrix's HTML
//! (`format: "org.matrix.custom.html"`, `formatted_body`), and every formatted body, ours or
//! another server's, passes one allow-list sanitiser before it reaches a page.
//!
//! Markdown is CommonMark (pulldown-cmark) with strikethrough: emphasis, strong, strike,
//! inline code, fenced and indented code blocks (with a `language-*` class), quotes, lists,
//! headings, rules, links and bare `http(s)://` URLs made links. Raw HTML in the text is shown
//! as text, and images become links to them. Line breaks inside a paragraph are kept, as a
//! chat user expects. A message whose Markdown changes nothing (plain words) has no
//! formatted body.
//!
//! The sanitiser (ammonia) keeps only the tags above with `href` on links (http, https and
//! mailto; no relative URLs), a `language-*` class on code and `start` on ordered lists; it
//! drops the content of `script`, `style` and Matrix's reply fallback (`mx-reply`), and every
//! link opens a new tab with `rel="noopener noreferrer nofollow"`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

/// The `format` of a Matrix HTML body.
pub const MATRIX_HTML: &str = "org.matrix.custom.html";

/// Link attributes: a new tab, no referrer, no endorsement.
const LINK_REL: &str = "noopener noreferrer nofollow";

/// The HTML for `body` read as Markdown; `None` when the Markdown formats nothing (the plain
/// body says it all). It holds only what the sanitiser allows, by construction: text is
/// escaped, raw HTML is text, links are made here (http, https and mailto only, the others
/// left as their text), code languages are checked; so sending needs no sanitiser pass (a
/// page still applies one to every formatted body, ours included).
pub fn markdown_to_html(body: &str) -> Option<String> {
    let events = formatted_events(body);
    if is_plain(&events, body) {
        return None;
    }
    let mut html = String::with_capacity(body.len() + body.len() / 2 + 16);
    pulldown_cmark::html::push_html(&mut html, events.into_iter());
    // One paragraph: no wrapper, as Matrix clients send it.
    let trimmed = html.trim_end();
    let html = match trimmed.strip_prefix("<p>").and_then(|s| s.strip_suffix("</p>")) {
        Some(inner) if !inner.contains("<p>") => inner.to_string(),
        _ => trimmed.to_string(),
    };
    Some(html)
}

/// Whether a link may point there: an absolute http, https or mailto URL.
fn allowed_url(url: &str) -> bool {
    let lower = url.trim_start().get(..8).unwrap_or(url.trim_start()).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:")
}

/// The opening tag of a link to `url` (escaped), or nothing if it may not be linked.
fn link_open(url: &str) -> Event<'static> {
    // `escape_href` percent-encodes quotes and angle brackets and writes `&` as `&amp;`.
    let mut href = String::new();
    if allowed_url(url) && pulldown_cmark_escape::escape_href(&mut href, url).is_ok() {
        return Event::InlineHtml(CowStr::from(format!("<a href=\"{href}\" target=\"_blank\" rel=\"{LINK_REL}\">")));
    }
    Event::InlineHtml(CowStr::from(""))
}

/// A code block's language, if it is a plain name (`rust`, `c++`, `objective-c`).
fn language(info: &str) -> Option<&str> {
    let lang = info.split_whitespace().next()?;
    ((1..=32).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'#')))
    .then_some(lang)
}

/// The parsed Markdown with our changes: raw HTML as text, images as links, soft breaks as
/// line breaks and bare URLs as links.
fn formatted_events(body: &str) -> Vec<Event<'_>> {
    let mut out = Vec::new();
    let mut in_link_or_code = 0usize;
    // The parser splits text at characters that might be markup (`_`, `*`, ...): adjacent
    // text is joined before URLs are looked for in it.
    let mut text: Option<CowStr<'_>> = None;
    // Whether each open link was written (its address allowed).
    let mut links: Vec<bool> = Vec::new();
    for ev in Parser::new_ext(body, Options::ENABLE_STRIKETHROUGH) {
        if let Event::Text(t) = &ev
            && in_link_or_code == 0
        {
            text = Some(match text.take() {
                None => t.clone(),
                Some(prev) => CowStr::from(format!("{prev}{t}")),
            });
            continue;
        }
        if let Some(t) = text.take() {
            linkify(t, &mut out);
        }
        match ev {
            Event::Html(t) | Event::InlineHtml(t) => out.push(Event::Text(t)),
            Event::Start(Tag::HtmlBlock) | Event::End(TagEnd::HtmlBlock) => {}
            // Links (and images, as links to them) are written here: see `link_open`.
            Event::Start(Tag::Image { dest_url, .. } | Tag::Link { dest_url, .. }) => {
                in_link_or_code += 1;
                let open = link_open(&dest_url);
                links.push(!matches!(&open, Event::InlineHtml(t) if t.is_empty()));
                out.push(open);
            }
            Event::End(TagEnd::Image | TagEnd::Link) => {
                in_link_or_code = in_link_or_code.saturating_sub(1);
                if links.pop() == Some(true) {
                    out.push(Event::InlineHtml(CowStr::from("</a>")));
                }
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                in_link_or_code += 1;
                let kind = match kind {
                    CodeBlockKind::Fenced(info) => match language(&info) {
                        Some(lang) => CodeBlockKind::Fenced(CowStr::from(lang.to_string())),
                        None => CodeBlockKind::Fenced(CowStr::from("")),
                    },
                    indented => indented,
                };
                out.push(Event::Start(Tag::CodeBlock(kind)));
            }
            Event::End(TagEnd::CodeBlock) => {
                in_link_or_code = in_link_or_code.saturating_sub(1);
                out.push(Event::End(TagEnd::CodeBlock));
            }
            Event::SoftBreak => out.push(Event::HardBreak),
            other => out.push(other),
        }
    }
    if let Some(t) = text.take() {
        linkify(t, &mut out);
    }
    out
}

/// Whether `events` only say `body` again: paragraphs of text and line breaks, reading the
/// same as the body (no escapes, entities or links).
fn is_plain(events: &[Event<'_>], body: &str) -> bool {
    let mut text = String::with_capacity(body.len());
    for ev in events {
        match ev {
            Event::Start(Tag::Paragraph) => {
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
            }
            Event::End(TagEnd::Paragraph) => {}
            Event::Text(t) => text.push_str(t),
            Event::HardBreak | Event::SoftBreak => text.push('\n'),
            _ => return false,
        }
    }
    let normal = |s: &str| s.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
    normal(&text) == normal(body)
}

/// Pushes `text` with each bare `http://` or `https://` URL in it made a link.
fn linkify<'a>(text: CowStr<'a>, out: &mut Vec<Event<'a>>) {
    let s: &str = &text;
    let mut rest_start = 0;
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(off) = s[i..].find("http") {
        let start = i + off;
        let tail = &s[start..];
        let scheme = if tail.starts_with("https://") {
            8
        } else if tail.starts_with("http://") {
            7
        } else {
            i = start + 4;
            continue;
        };
        // A URL starts a word, and runs to whitespace (or a bracket that is not its own), less
        // trailing punctuation.
        let starts_word = s[..start].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
        let mut end = start + tail.find(|c: char| c.is_whitespace() || c == '<' || c == '>').unwrap_or(tail.len());
        while end > start + scheme {
            let last = s[..end].chars().next_back().unwrap_or(' ');
            let unbalanced_paren =
                last == ')' && s[start..end].matches('(').count() < s[start..end].matches(')').count();
            if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '"' | '\'') || unbalanced_paren {
                end -= last.len_utf8();
            } else {
                break;
            }
        }
        if starts_word && end > start + scheme {
            found.push((start, end));
        }
        i = end.max(start + scheme);
    }
    if found.is_empty() {
        out.push(Event::Text(text));
        return;
    }
    for (start, end) in found {
        if start > rest_start {
            out.push(Event::Text(CowStr::from(s[rest_start..start].to_string())));
        }
        let url = s[start..end].to_string();
        out.push(link_open(&url));
        out.push(Event::Text(CowStr::from(url)));
        out.push(Event::InlineHtml(CowStr::from("</a>")));
        rest_start = end;
    }
    if rest_start < s.len() {
        out.push(Event::Text(CowStr::from(s[rest_start..].to_string())));
    }
}

/// The allow-list sanitiser, built once.
static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let tags: HashSet<&str> = [
        "p",
        "br",
        "strong",
        "b",
        "em",
        "i",
        "del",
        "s",
        "strike",
        "u",
        "code",
        "pre",
        "blockquote",
        "ul",
        "ol",
        "li",
        "a",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "sup",
        "sub",
    ]
    .into_iter()
    .collect();
    let attributes: HashMap<&str, HashSet<&str>> = [
        ("a", ["href"].into_iter().collect()),
        ("code", ["class"].into_iter().collect()),
        ("ol", ["start"].into_iter().collect()),
    ]
    .into_iter()
    .collect();
    let mut b = ammonia::Builder::empty();
    b.tags(tags)
        .tag_attributes(attributes)
        .url_schemes(["http", "https", "mailto"].into_iter().collect())
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some(LINK_REL))
        .set_tag_attribute_value("a", "target", "_blank")
        .clean_content_tags(["script", "style", "mx-reply"].into_iter().collect())
        .strip_comments(true)
        .attribute_filter(|tag, attr, value| match (tag, attr) {
            ("code", "class") => value
                .split_whitespace()
                .find(|c| {
                    c.strip_prefix("language-").is_some_and(|l| {
                        (1..=32).contains(&l.len())
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'#'))
                    })
                })
                .map(|c| Cow::Owned(c.to_string())),
            ("ol", "start") => value.parse::<u32>().ok().map(|n| Cow::Owned(n.to_string())),
            _ => Some(Cow::Borrowed(value)),
        });
    b
});

/// A message content's HTML (Matrix's `formatted_body` with `format:
/// org.matrix.custom.html`), as sent: not yet sanitised.
pub fn formatted_html(content: &serde_json::Value) -> Option<&str> {
    let html = content.get("formatted_body")?.as_str()?;
    (content.get("format").and_then(serde_json::Value::as_str) == Some(MATRIX_HTML)).then_some(html)
}

/// A message's HTML as a page shows it: a formatted body that is exactly what
/// [`markdown_to_html`] makes of the plain body (ours, or another server of ours) is safe by
/// construction and shown as it is (the render fuzz target checks the sanitiser would keep
/// all of it); any other goes through [`sanitize`]. Making the Markdown again costs a third of
/// sanitising it.
pub fn safe_formatted_html(content: &serde_json::Value) -> Option<std::borrow::Cow<'_, str>> {
    let html = formatted_html(content)?;
    let body = content.get("body").and_then(serde_json::Value::as_str).unwrap_or_default();
    if markdown_to_html(body).as_deref() == Some(html) {
        return Some(std::borrow::Cow::Borrowed(html));
    }
    Some(std::borrow::Cow::Owned(sanitize(html)))
}

/// `html` with everything the allow-list does not name removed.
pub fn sanitize(html: &str) -> String {
    SANITIZER.clean(html).to_string()
}

/// The text of an HTML fragment, as a one-line preview shows it (a reply's quote): tags left
/// out (a block's end and a line break become a space), Matrix's reply fallback
/// (`<mx-reply>…</mx-reply>`) dropped, the common character references decoded. Not a
/// sanitiser: what it returns is text, escaped again wherever it is shown.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut skipping = false; // inside <mx-reply>
    while let Some(lt) = rest.find('<') {
        if !skipping {
            decode_into(&rest[..lt], &mut out);
        }
        let Some(gt) = rest[lt..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[lt + 1..lt + gt].trim().to_ascii_lowercase();
        let name = tag.trim_start_matches('/').split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
        if name == "mx-reply" {
            skipping = !tag.starts_with('/');
        } else if !skipping
            && matches!(
                name,
                "br" | "p" | "li" | "div" | "pre" | "blockquote" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6"
            )
        {
            out.push(' ');
        }
        rest = &rest[lt + gt + 1..];
    }
    if !skipping {
        decode_into(rest, &mut out);
    }
    out
}

fn decode_into(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let end = after.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &after[..e];
            let c = match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                "nbsp" => ' ',
                _ => {
                    let n = name.strip_prefix('#')?;
                    let code = match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => n.parse().ok()?,
                    };
                    char::from_u32(code).filter(|c| !c.is_control())?
                }
            };
            Some((c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_text_is_the_words() {
        assert_eq!(html_text("see <strong>that</strong> &amp; <em>this</em>"), "see that & this");
        assert_eq!(
            html_text("<p>one</p><p>two<br/>three</p>").split_whitespace().collect::<Vec<_>>(),
            ["one", "two", "three"]
        );
        assert_eq!(html_text("<mx-reply><blockquote>old</blockquote></mx-reply>new"), "new");
        assert_eq!(html_text("x &lt;script&gt; &#65;&#x42; &bogus; & <unclosed"), "x <script> AB &bogus; & ");
    }

    #[test]
    fn plain_words_have_no_formatted_body() {
        for body in ["hello", "two\nlines", "para one\n\npara two", "  spaced  ", "1+1=2", "a - b"] {
            assert_eq!(markdown_to_html(body), None, "{body:?}");
        }
    }

    #[test]
    fn markdown_becomes_html() {
        let html = |b: &str| markdown_to_html(b).unwrap();
        assert_eq!(html("**bold** and *it* and ~~gone~~"), "<strong>bold</strong> and <em>it</em> and <del>gone</del>");
        assert_eq!(html("use `x < y`"), "use <code>x &lt; y</code>");
        assert_eq!(
            html("```rust\nfn main() {}\n```"),
            "<pre><code class=\"language-rust\">fn main() {}\n</code></pre>"
        );
        assert!(html("> quoted").starts_with("<blockquote>"));
        assert!(html("- a\n- b").starts_with("<ul>"));
        assert_eq!(html("3. c\n4. d"), "<ol start=\"3\">\n<li>c</li>\n<li>d</li>\n</ol>");
        assert_eq!(html("line *one*\nline two"), "line <em>one</em><br />\nline two");
    }

    #[test]
    fn links_open_in_a_new_tab_without_referrer() {
        let want = "see <a href=\"https://example.org/a_(b)\" target=\"_blank\" rel=\"noopener noreferrer nofollow\">https://example.org/a_(b)</a>.";
        assert_eq!(markdown_to_html("see https://example.org/a_(b).").unwrap(), want);
        let md = markdown_to_html("[docs](https://example.org/x?y=1&z=2)").unwrap();
        assert!(md.contains("href=\"https://example.org/x?y=1&amp;z=2\""), "{md}");
        assert!(md.contains("target=\"_blank\""), "{md}");
        // Not inside code, and not in the middle of a word.
        assert_eq!(markdown_to_html("`https://a.example`").unwrap(), "<code>https://a.example</code>");
        assert_eq!(markdown_to_html("xhttps://a.example"), None);
    }

    #[test]
    fn hostile_input_stays_inert() {
        let cases = [
            "[x](javascript:alert(1))",
            "[x](data:text/html;base64,PHNjcmlwdD4=)",
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "<a href=\"javascript:alert(1)\">x</a>",
            "![x](javascript:alert(1))",
            "[x](JaVaScRiPt:alert(1))",
            "<details open ontoggle=alert(1)>",
            "[x](/relative)",
            "<<script>script>alert(1)<</script>/script>",
            "[x](https://e.example/\"onmouseover=\"alert(1))",
            "https://e.example/\"><img src=x onerror=alert(1)>",
        ];
        let allowed = ["a", "p", "br", "em", "strong", "code", "pre", "del"];
        for c in cases {
            let out = markdown_to_html(c).unwrap_or_default();
            // Every tag (text is escaped: `<` only opens tags) is allowed, with safe attributes.
            for tag in out.split('<').skip(1).map(|t| t.split('>').next().unwrap_or_default().to_ascii_lowercase()) {
                let name = tag.trim_start_matches('/').split([' ', '/']).next().unwrap_or_default().to_string();
                assert!(allowed.contains(&name.as_str()), "{c:?} gave a <{tag}> tag: {out:?}");
                for bad in ["javascript:", "data:", " on", "href=\"/", "src="] {
                    assert!(!tag.contains(bad), "{c:?} gave <{tag}>: {out:?}");
                }
            }
            let clean = sanitize(&out);
            assert_eq!(sanitize(&clean), clean, "sanitising is stable");
        }
        // HTML from another server: only the allow-list stays.
        let remote = "<mx-reply><blockquote>old</blockquote></mx-reply><b onclick=\"x()\">hi</b>\
                      <iframe src=\"https://e.example\"></iframe><code class=\"language-js evil\">c</code>\
                      <a href=\"https://ok.example\" target=\"_self\">l</a><style>p{}</style>";
        assert_eq!(
            sanitize(remote),
            "<b>hi</b><code class=\"language-js\">c</code><a href=\"https://ok.example\" target=\"_blank\" \
             rel=\"noopener noreferrer nofollow\">l</a>"
        );
    }

    #[test]
    fn only_our_own_markdown_skips_the_sanitiser() {
        let ours =
            serde_json::json!({"body": "**hi**", "format": MATRIX_HTML, "formatted_body": "<strong>hi</strong>"});
        assert!(matches!(safe_formatted_html(&ours), Some(std::borrow::Cow::Borrowed("<strong>hi</strong>"))));
        // The same body with other HTML (another server's, or forged) is sanitised.
        let forged = serde_json::json!({"body": "**hi**", "format": MATRIX_HTML,
            "formatted_body": "<strong>hi</strong><img src=x onerror=alert(1)>"});
        assert_eq!(safe_formatted_html(&forged).as_deref(), Some("<strong>hi</strong>"));
        assert_eq!(safe_formatted_html(&serde_json::json!({"body": "hi"})), None);
    }
}
