//! Message bodies and other event content rendered to HTML: `render::event_item` (the timeline
//! row, used by the page and by the live `event` frame), `render::auth_page` (which shows the
//! username typed into the sign-in form) and `render::receipt_avatar`.
//!
//! Input: a JSON object `{"type", "sender", "state_key"?, "content"}` for any event, or else the
//! raw text of an `m.room.message` body from `@ana:chat.test`.
//!
//! Checks that no markup comes from the input: the same render with every `<`, `>` and `"` in the
//! input replaced by a harmless character must have exactly as many `<`, `>` and `"` (so all of
//! them come from our templates), there is never a `<script` in an event row, a message body
//! appears escaped, and the live frame carries the same HTML as the page. Content with HTML
//! (`formatted_body`, also inside an edit's `m.new_content`) is markup by design: its row must
//! hold no script, event handler or `javascript:` link. The raw text read as Markdown gives
//! HTML the sanitiser keeps whole. A reply's quote text of any content is one bounded line.

#![no_main]

use chat::events::{Event, NewEvent, Parents, text_message};
use chat::live::frames;
use chat::render;
use chat::store::events::StoredEvent;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const ROOM: &str = "!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

struct Input {
    kind: String,
    sender: String,
    state_key: Option<String>,
    content: Value,
}

fn input(data: &str) -> Input {
    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(data) {
        let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        return Input {
            kind: text("type").unwrap_or_else(|| "m.room.message".into()),
            sender: text("sender").unwrap_or_else(|| "@ana:chat.test".into()),
            state_key: text("state_key"),
            content: m.get("content").cloned().unwrap_or(Value::Null),
        };
    }
    Input {
        kind: "m.room.message".into(),
        sender: "@ana:chat.test".into(),
        state_key: None,
        content: text_message(data),
    }
}

/// The same string with the characters that could make markup replaced by one that cannot.
fn defang(s: &str) -> String {
    s.replace(['<', '>', '"'], "\u{1}")
}

fn defang_value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(defang(s)),
        Value::Array(a) => Value::Array(a.iter().map(defang_value).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (defang(k), defang_value(v))).collect()),
        other => other.clone(),
    }
}

fn stored(i: &Input) -> StoredEvent {
    let new = NewEvent { kind: i.kind.clone(), state_key: i.state_key.clone(), content: i.content.clone() };
    let parents = Parents { prev_events: vec![], auth_events: vec![], depth: 7 };
    let room = chat::ids::RoomId::parse(ROOM).expect("a room id");
    StoredEvent::new(42, Event::build(Some(&room), &i.sender, new, parents, 1_800_000_000_000), None)
}

/// Whether every link in a tag (its `href` values, lower-cased) goes to the web or to mail: a
/// `javascript:` or `data:` link never does (the words may appear later in a web address).
fn safe_links(tag: &str) -> bool {
    tag.split("href=\"").skip(1).all(|v| ["http://", "https://", "mailto:"].iter().any(|s| v.starts_with(s)))
}

fn counts(html: &str) -> [usize; 3] {
    [b'<', b'>', b'"'].map(|c| html.bytes().filter(|b| *b == c).count())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let i = input(text);
    let safe = Input {
        kind: defang(&i.kind),
        sender: defang(&i.sender),
        state_key: i.state_key.as_deref().map(defang),
        content: defang_value(&i.content),
    };

    let ev = stored(&i);
    let html = render::event_item(&ev).into_string();
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"), "script in {html}");
    let has_html = |c: &Value| {
        c.get("formatted_body").is_some() && c.get("format").and_then(Value::as_str) == Some(chat::format::MATRIX_HTML)
    };
    let formatted = has_html(&i.content) || i.content.get("m.new_content").is_some_and(has_html);
    if formatted {
        // The body as rendered (the new content of an edit). Text is escaped, so every `<`
        // opens one of the sanitiser's tags.
        let content = i.content.get("m.new_content").filter(|c| has_html(c)).unwrap_or(&i.content);
        let body = render::message_body(content).into_string().to_ascii_lowercase();
        for tag in body.split('<').skip(1).map(|t| t.split('>').next().unwrap_or_default()) {
            for bad in ["img", "iframe", "style", "svg", "math", "form"] {
                assert!(!tag.starts_with(bad), "<{tag}> in {html}");
            }
            // Attribute names: the word before each `="` (quotes in values are `&quot;`).
            for part in tag.split("=\"").collect::<Vec<_>>().iter().rev().skip(1) {
                let name = part.rsplit([' ', '"']).next().unwrap_or_default();
                assert!(["href", "target", "rel", "class", "start"].contains(&name), "attribute {name} in <{tag}>: {body}");
            }
            assert!(safe_links(tag), "a script link in <{tag}>: {body}");
        }
    } else {
        let safe_html = render::event_item(&stored(&safe)).into_string();
        assert_eq!(counts(&html), counts(&safe_html), "markup from the input in {html}");
        if ev.event.kind == "m.room.message"
            && chat::store::edits::edited_event_id(&ev.event).is_none()
            && let Some(body) = ev.event.content.get("body").and_then(Value::as_str)
        {
            // A reply shows its body without Matrix's reply fallback.
            let reply = ev.event.content.get("m.relates_to").and_then(|r| r.get("m.in_reply_to")).is_some();
            let body = if reply { chat::store::relations::strip_reply_fallback(body) } else { body };
            assert!(html.contains(&escape(body)), "body not shown escaped in {html}");
        }
    }

    // A quote's text of any HTML or content: no panic, one line, bounded.
    let quoted = chat::store::relations::quote_text(&i.content);
    assert!(quoted.chars().count() <= chat::store::relations::QUOTE_CHARS + 1 && !quoted.contains('\n'), "{quoted:?}");
    let _ = chat::format::html_text(text);

    // Markdown: what it makes, the sanitiser keeps (as many tags), with no script link in a
    // tag (text may say anything: its `<` is escaped).
    if let Some(md) = chat::format::markdown_to_html(text) {
        let clean = chat::format::sanitize(&md);
        assert_eq!(md.matches('<').count(), clean.matches('<').count(), "the sanitiser cut {md} to {clean}");
        let lower = md.to_ascii_lowercase();
        for tag in lower.split('<').skip(1).map(|t| t.split('>').next().unwrap_or_default()) {
            assert!(safe_links(tag), "a script link in <{tag}>: {md}");
        }
    }

    // The live update carries exactly the row the page shows.
    let frame: Value = serde_json::from_str(&frames::event_frame(&ev)).expect("event frame is JSON");
    assert_eq!(frame["html"].as_str(), Some(html.as_str()));

    // A failed sign-in shows the typed username (and our error text) again, and keeps the page
    // to go to afterwards (`next`, in a hidden field and the sign-up link).
    let (next, safe_next) = (format!("/{}", i.sender), format!("/{}", safe.sender));
    let page = render::auth_page(false, Some("wrong username or password"), &i.sender, &next).into_string();
    let safe_page = render::auth_page(false, Some("wrong username or password"), &safe.sender, &safe_next).into_string();
    assert_eq!(counts(&page), counts(&safe_page), "markup from the username in the sign-in page");
    assert_eq!(page.to_ascii_lowercase().matches("<script").count(), 1, "only the app's own script");

    let avatar = render::receipt_avatar(&i.sender).into_string();
    assert_eq!(counts(&avatar), counts(&render::receipt_avatar(&safe.sender).into_string()));
});
