//! Conversations: formatted messages, edits and deletes through the API and the live channel,
//! with their rules (only one's own messages are edited; a moderator may delete anyone's), and
//! what a reload and a reconnecting tab show.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest::StatusCode;

use common::TestServer;
use serde_json::{Value, json};

async fn event(s: &TestServer, token: &str, room: &str, id: &str) -> (StatusCode, Value) {
    s.get(Some(token), &format!("/api/v1/rooms/{room}/events/{id}")).await
}

/// The room page as a signed-in browser gets it.
async fn page(s: &TestServer, token: &str, room: &str) -> String {
    let res = s.http.get(format!("{}/rooms/{room}", s.url)).header("cookie", format!("chat_token={token}")).send();
    res.await.unwrap().text().await.unwrap()
}

async fn edit(s: &TestServer, token: &str, room: &str, id: &str, body: &str, txn: &str) -> (StatusCode, Value) {
    s.post(Some(token), &format!("/api/v1/rooms/{room}/messages"), json!({"body": body, "txn_id": txn, "replaces": id}))
        .await
}

#[tokio::test]
async fn markdown_is_sent_as_matrix_html_and_plain_text_stays_plain() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let (st, v) = s.send(&ana, &room, "**bold** and `code` at https://example.org", "f1").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, ev) = event(&s, &ben.token, &room, v["event_id"].as_str().unwrap()).await;
    let c = &ev["content"];
    assert_eq!(c["body"], "**bold** and `code` at https://example.org", "the body keeps what was typed");
    assert_eq!(c["format"], "org.matrix.custom.html");
    assert_eq!(
        c["formatted_body"],
        "<strong>bold</strong> and <code>code</code> at <a href=\"https://example.org\" \
         target=\"_blank\" rel=\"noopener noreferrer nofollow\">https://example.org</a>"
    );
    let (_, v) = s.send(&ana, &room, "just words, 1 + 1 = 2", "f2").await;
    let (_, ev) = event(&s, &ben.token, &room, v["event_id"].as_str().unwrap()).await;
    assert!(ev["content"].get("formatted_body").is_none(), "plain text has no HTML: {ev}");
    // The page shows the markup (sanitised), and hostile links not at all.
    s.send(&ana, &room, "[x](javascript:alert(1)) <script>alert(2)</script>", "f3").await;
    let page = page(&s, &ben.token, &room).await;
    assert!(page.contains("<strong>bold</strong>"), "formatted on the page");
    // (The room list's preview shows the text as typed, as text.)
    let timeline = &page[page.find("id=\"timeline\"").unwrap()..];
    assert!(
        !timeline.contains("javascript:") && !page.contains("href=\"javascript:"),
        "no javascript: link on the page"
    );
    assert!(page.contains("&lt;script&gt;alert(2)&lt;/script&gt;"), "raw HTML shows as text");
    // An event over the size limit once formatted is refused with a clear error.
    let long = "*a* ".repeat(3000);
    let (st, v) = s.send(&ana, &room, &long, "f4").await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["message"].as_str().unwrap().contains("once formatted"), "{v}");
}

#[tokio::test]
async fn a_message_is_edited_by_its_sender_only_live_and_after_a_reload() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let mut ben_ws = s.ws(&ben, None).await;
    let (_, v) = s.send(&ana, &room, "meet at 3", "e1").await;
    let original = v["event_id"].as_str().unwrap().to_string();
    ben_ws.next_message().await;
    let unread_before = s.get(Some(&ben.token), "/api/v1/rooms").await.1["rooms"][0]["unread"].clone();

    let (st, v) = edit(&s, &ana.token, &room, &original, "meet at **4**", "e2").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let edit_id = v["event_id"].as_str().unwrap().to_string();
    // The same transaction id again: the same edit, not a second one.
    let (st, again) = edit(&s, &ana.token, &room, &original, "meet at **4**", "e2").await;
    assert_eq!((st, again["event_id"].as_str()), (StatusCode::OK, Some(edit_id.as_str())));

    // Live: Ben's tab gets the edit, its row naming the message it replaces, with the new body.
    let f = ben_ws.next_message().await;
    assert_eq!(f["event"]["event_id"], edit_id.as_str());
    assert_eq!(f["event"]["content"]["m.relates_to"], json!({"rel_type": "m.replace", "event_id": original}));
    assert_eq!(f["event"]["content"]["m.new_content"]["body"], "meet at **4**");
    let html = f["html"].as_str().unwrap();
    assert!(html.contains(&format!("data-replaces=\"{original}\"")) && html.contains("<strong>4</strong>"), "{html}");

    // An edit is no new message: Ben's unread count did not move.
    let unread_after = s.get(Some(&ben.token), "/api/v1/rooms").await.1["rooms"][0]["unread"].clone();
    assert_eq!((unread_before, unread_after), (json!(1), json!(1)));

    // The API and a reloaded page show the newest text, marked edited.
    let (_, ev) = event(&s, &ben.token, &room, &original).await;
    assert_eq!(ev["content_now"]["body"], "meet at **4**", "{ev}");
    assert_eq!(ev["unsigned"]["m.relations"]["m.replace"]["event_id"], edit_id.as_str());
    assert_eq!(ev["content"]["body"], "meet at 3", "the original event is unchanged");
    let page = page(&s, &ben.token, &room).await;
    assert!(page.contains("meet at <strong>4</strong>") && page.contains("(edited)"), "edited on the page");
    assert!(!page.contains("meet at 3"), "the old text is not on the page");

    // Ben may not edit Ana's message; nobody edits an edit, a deleted message or what is not there.
    let (st, v) = edit(&s, &ben.token, &room, &original, "hijacked", "b1").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = edit(&s, &ana.token, &room, &edit_id, "edit of an edit", "e3").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = edit(&s, &ana.token, &room, "$notthere", "x", "e4").await;
    assert!(st == StatusCode::NOT_FOUND || st == StatusCode::BAD_REQUEST, "{st} {v}");
    // Over the live channel too: Ben's attempt gets an error for its transaction.
    ben_ws.send(json!({"t": "send", "room_id": room, "body": "hijacked", "txn_id": "w1", "replaces": original})).await;
    let err = ben_ws.next_of("error").await;
    assert_eq!(err["txn_id"], "w1", "{err}");

    // A second edit over the live channel; a tab reconnecting from before both gets both, in order.
    let mut ana_ws = s.ws(&ana, None).await;
    ana_ws.send(json!({"t": "send", "room_id": room, "body": "meet at 5", "txn_id": "w2", "replaces": original})).await;
    let ack = ana_ws.next_of("ack").await;
    assert_eq!(ack["txn_id"], "w2");
    let (_, ev) = event(&s, &ben.token, &room, &original).await;
    assert_eq!(ev["content_now"]["body"], "meet at 5");
    let (_late, frames) = s.raw_until_ready(&ben, ben_ws.ready.unwrap()).await;
    let edits: Vec<&str> = frames
        .iter()
        .filter(|f| f["t"] == "event" && f["event"]["content"]["m.relates_to"]["rel_type"] == "m.replace")
        .filter_map(|f| f["event"]["content"]["m.new_content"]["body"].as_str())
        .collect();
    assert_eq!(edits, ["meet at **4**", "meet at 5"]);

    // Deleting the message takes its edits' text with it.
    let (st, v) =
        s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/redact"), json!({"event_id": original})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, ev) = event(&s, &ben.token, &room, &original).await;
    assert!(ev.get("content_now").is_none() && ev["content"] == json!({}), "{ev}");
    let (_, ev) = event(&s, &ben.token, &room, &edit_id).await;
    assert_eq!(ev["content"], json!({}), "the edit's text went too: {ev}");
}

#[tokio::test]
async fn deleting_the_newest_edit_shows_the_one_before() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let (_, v) = s.send(&ana, &room, "v1", "d1").await;
    let original = v["event_id"].as_str().unwrap().to_string();
    edit(&s, &ana.token, &room, &original, "v2", "d2").await;
    let (_, v) = edit(&s, &ana.token, &room, &original, "v3", "d3").await;
    let newest = v["event_id"].as_str().unwrap().to_string();
    let (_, ev) = event(&s, &ben.token, &room, &original).await;
    assert_eq!(ev["content_now"]["body"], "v3");
    let (st, v) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/redact"), json!({"event_id": newest})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, ev) = event(&s, &ben.token, &room, &original).await;
    assert_eq!(ev["content_now"]["body"], "v2", "{ev}");
    // Ben, no moderator, may not delete Ana's message; Ana makes him one, and he may.
    let (st, _) =
        s.post(Some(&ben.token), &format!("/api/v1/rooms/{room}/redact"), json!({"event_id": original})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) =
        s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/power"), json!({"user_id": ben.id, "level": 50})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) =
        s.post(Some(&ben.token), &format!("/api/v1/rooms/{room}/redact"), json!({"event_id": original})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, ev) = event(&s, &ana.token, &room, &original).await;
    assert_eq!(ev["content"], json!({}));
}

async fn react(s: &TestServer, token: &str, room: &str, id: &str, key: &str, txn: &str) -> (StatusCode, Value) {
    s.post(Some(token), &format!("/api/v1/rooms/{room}/reactions"), json!({"event_id": id, "key": key, "txn_id": txn}))
        .await
}

async fn redact(s: &TestServer, token: &str, room: &str, id: &str) -> (StatusCode, Value) {
    s.post(Some(token), &format!("/api/v1/rooms/{room}/redact"), json!({"event_id": id})).await
}

/// (key, count, senders) of a message's reactions, as the API shows them.
async fn reactions_of(s: &TestServer, token: &str, room: &str, id: &str) -> Vec<(String, u64, Vec<String>)> {
    let (_, ev) = event(s, token, room, id).await;
    let list = ev["reactions"].as_array().cloned().unwrap_or_default();
    list.iter()
        .map(|r| {
            let senders = r["senders"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
            (r["key"].as_str().unwrap().to_string(), r["count"].as_u64().unwrap(), senders)
        })
        .collect()
}

#[tokio::test]
async fn reactions_count_once_per_person_and_key_live_and_after_a_reload() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let (_, v) = s.send(&ana, &room, "lunch?", "m1").await;
    let msg = v["event_id"].as_str().unwrap().to_string();
    let mut ana_ws = s.ws(&ana, None).await;

    let (st, v) = react(&s, &ben.token, &room, &msg, "👍", "r1").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let bens = v["event_id"].as_str().unwrap().to_string();
    // The same transaction again is the same reaction; the same key again is refused.
    let (st, again) = react(&s, &ben.token, &room, &msg, "👍", "r1").await;
    assert_eq!((st, again["event_id"].as_str()), (StatusCode::OK, Some(bens.as_str())));
    let (st, v) = react(&s, &ben.token, &room, &msg, "👍", "r2").await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    react(&s, &ana.token, &room, &msg, "👍", "r3").await;
    react(&s, &ana.token, &room, &msg, "🎉", "r4").await;
    assert_eq!(
        reactions_of(&s, &ben.token, &room, &msg).await,
        [("👍".into(), 2, vec![ben.id.clone(), ana.id.clone()]), ("🎉".into(), 1, vec![ana.id.clone()])]
    );

    // Live: Ana's tab gets Ben's reaction as a row naming the message, the key and the sender.
    let f = ana_ws.next_of("event").await;
    assert_eq!(f["event"]["type"], "m.reaction");
    assert_eq!(
        f["event"]["content"]["m.relates_to"],
        json!({"rel_type": "m.annotation", "event_id": msg, "key": "👍"})
    );
    let html = f["html"].as_str().unwrap();
    assert!(html.contains(&format!("data-reacts-to=\"{msg}\"")) && html.contains("data-key=\"👍\""), "{html}");
    // A reaction is no new message: nothing unread for Ana, who sent the message.
    let rooms = s.get(Some(&ana.token), "/api/v1/rooms").await.1;
    assert_eq!(rooms["rooms"][0]["unread"], 0, "{rooms}");

    // The page counts them under the message.
    let page = page(&s, &ana.token, &room).await;
    assert!(page.contains("class=\"reaction\" type=\"button\" data-key=\"👍\""), "a 👍 button on the page");
    assert!(page.contains("<span class=\"count\">2</span>"), "counted twice");

    // Taking one back is redacting it; the count follows, and Ben may react with 👍 again.
    let (st, v) = redact(&s, &ben.token, &room, &bens).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        reactions_of(&s, &ben.token, &room, &msg).await,
        [("👍".into(), 1, vec![ana.id.clone()]), ("🎉".into(), 1, vec![ana.id.clone()])]
    );
    let (st, v) = react(&s, &ben.token, &room, &msg, "👍", "r5").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Ben may not take back Ana's reaction.
    let anas = event(&s, &ana.token, &room, &msg).await.1["reactions"][0]["event_ids"][0].as_str().unwrap().to_string();
    let (st, _) = redact(&s, &ben.token, &room, &anas).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Bad reactions: an empty or long key, a missing message, a reaction to a reaction.
    for (key, target, txn) in [("", msg.as_str(), "b1"), (&"x".repeat(65), msg.as_str(), "b2"), ("👍", "$nope", "b3")]
    {
        let (st, v) = react(&s, &ben.token, &room, target, key, txn).await;
        assert!(st == StatusCode::BAD_REQUEST || st == StatusCode::NOT_FOUND, "{key:?} {target}: {st} {v}");
    }
    let (st, v) = react(&s, &ben.token, &room, &anas, "👍", "b4").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");

    // A tab reconnecting from before gets every reaction and the redaction, in order.
    let (_late, frames) = s.raw_until_ready(&ana, ana_ws.ready.unwrap()).await;
    let kinds: Vec<&str> =
        frames.iter().filter(|f| f["t"] == "event").filter_map(|f| f["event"]["type"].as_str()).collect();
    assert_eq!(kinds, ["m.reaction", "m.reaction", "m.reaction", "m.room.redaction", "m.reaction"]);

    // Deleting the message takes its reactions with it.
    redact(&s, &ana.token, &room, &msg).await;
    assert!(reactions_of(&s, &ben.token, &room, &msg).await.is_empty());
    let (st, _) = react(&s, &ben.token, &room, &msg, "😢", "r6").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "no reactions to a deleted message");
}

#[tokio::test]
async fn a_reply_quotes_the_message_it_answers_as_it_is_now() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let (_, v) = s.send(&ana, &room, "who brings the cake?", "q1").await;
    let question = v["event_id"].as_str().unwrap().to_string();
    let send_reply = |body: &'static str, txn: &'static str, to: String| {
        let (s, token, room) = (&s, ben.token.clone(), room.clone());
        async move {
            s.post(
                Some(&token),
                &format!("/api/v1/rooms/{room}/messages"),
                json!({"body": body, "txn_id": txn, "reply_to": to}),
            )
            .await
        }
    };
    let (st, v) = send_reply("I do", "a1", question.clone()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let answer = v["event_id"].as_str().unwrap().to_string();

    // The reply names the message in Matrix's shape and mentions its sender; Ana's mention
    // count sees it.
    let (_, ev) = event(&s, &ana.token, &room, &answer).await;
    assert_eq!(ev["content"]["m.relates_to"], json!({"m.in_reply_to": {"event_id": question}}), "{ev}");
    assert_eq!(ev["content"]["m.mentions"]["user_ids"], json!([ana.id]), "{ev}");
    assert_eq!(ev["quote"]["sender"], ana.id.as_str());
    assert_eq!(ev["quote"]["text"], "who brings the cake?");
    let rooms = s.get(Some(&ana.token), "/api/v1/rooms").await.1;
    assert_eq!(rooms["rooms"][0]["mentions"], 1, "{rooms}");
    let shown = page(&s, &ana.token, &room).await;
    assert!(shown.contains(&format!("data-quote-of=\"{question}\"")), "the quote on the page");

    // Ana edits her question: the quote follows. She deletes it: the quote loses its text.
    edit(&s, &ana.token, &room, &question, "who brings the **pie**?", "q2").await;
    let (_, ev) = event(&s, &ben.token, &room, &answer).await;
    assert_eq!(ev["quote"]["text"], "who brings the pie?", "{ev}");
    redact(&s, &ana.token, &room, &question).await;
    let (_, ev) = event(&s, &ben.token, &room, &answer).await;
    assert_eq!((ev["quote"]["deleted"].as_bool(), ev["quote"]["text"].as_str()), (Some(true), Some("")), "{ev}");
    let page = page(&s, &ben.token, &room).await;
    assert!(!page.contains("cake") && !page.contains("pie"), "the deleted text is not quoted on the page");

    // No reply to a deleted message, nor to one not in the room; over the live channel too.
    let (st, v) = send_reply("late", "a2", question.clone()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = send_reply("nowhere", "a3", "$missing".into()).await;
    assert!(st == StatusCode::NOT_FOUND || st == StatusCode::BAD_REQUEST, "{st} {v}");
    let mut ws = s.ws(&ben, None).await;
    ws.send(json!({"t": "send", "room_id": room, "body": "x", "txn_id": "w1", "reply_to": question})).await;
    assert_eq!(ws.next_of("error").await["txn_id"], "w1");
    // A reply sent over the live channel quotes in its live row.
    let (_, v) = s.send(&ana, &room, "second question", "q3").await;
    let second = v["event_id"].as_str().unwrap().to_string();
    ws.send(json!({"t": "send", "room_id": room, "body": "yes", "txn_id": "w2", "reply_to": second})).await;
    // The ack and the reply's own frame, in either order.
    let (mut ack, mut events) = (None::<Value>, Vec::new());
    let f = loop {
        let f = ws.next().await;
        match f["t"].as_str() {
            Some("ack") if f["txn_id"] == "w2" => ack = Some(f),
            Some("event") => events.push(f),
            _ => {}
        }
        if let Some(a) = &ack
            && let Some(e) = events.iter().find(|e| e["event"]["event_id"] == a["event_id"])
        {
            break e.clone();
        }
    };
    let html = f["html"].as_str().unwrap();
    assert!(html.contains(&format!("data-quote-of=\"{second}\"")) && html.contains("second question"), "{html}");
}

#[tokio::test]
async fn mentions_name_people_here_and_on_other_servers_and_room_needs_power() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let cara = s.register("cara").await;
    s.post(Some(&cara.token), &format!("/api/v1/rooms/{room}/join"), json!({})).await;
    let mentions = |u: &common::User| {
        let (s, token) = (&s, u.token.clone());
        async move {
            let (_, v) = s.get(Some(&token), "/api/v1/rooms").await;
            v["rooms"][0]["mentions"].as_u64().unwrap()
        }
    };
    // "@ben" and his full id name him; a name that is nobody's names no one.
    let (_, v) = s.send(&ana, &room, &format!("@ben and {} and @nobody", ben.id), "m1").await;
    let (_, ev) = event(&s, &ben.token, &room, v["event_id"].as_str().unwrap()).await;
    assert_eq!(ev["content"]["m.mentions"], json!({"user_ids": [ben.id]}), "{ev}");
    assert_eq!(mentions(&ben).await, 1);
    // @room from Ben (level 0) is words only; from Ana (the creator) it mentions everyone.
    let (_, v) = s.send(&ben, &room, "hey @room", "m2").await;
    let (_, ev) = event(&s, &ana.token, &room, v["event_id"].as_str().unwrap()).await;
    assert!(ev["content"].get("m.mentions").is_none(), "{ev}");
    assert_eq!(mentions(&cara).await, 0);
    let (_, v) = s.send(&ana, &room, "@room: dinner at 8", "m3").await;
    let ev_id = v["event_id"].as_str().unwrap().to_string();
    let (_, ev) = event(&s, &ben.token, &room, &ev_id).await;
    assert_eq!(ev["content"]["m.mentions"]["room"], true, "{ev}");
    assert_eq!((mentions(&ben).await, mentions(&cara).await), (2, 1));
    let page = page(&s, &cara.token, &room).await;
    assert!(page.contains("data-mentions=\"@room\""), "the row says whom it mentions");
    // Deleting it takes the mentions back.
    s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/redact"), json!({"event_id": ev_id})).await;
    assert_eq!((mentions(&ben).await, mentions(&cara).await), (1, 0));
    // "@room" inside a word or an address is no mention.
    for (i, text) in ["email me@room.org", "@roomy", "x@room"].iter().enumerate() {
        let (_, v) = s.send(&ana, &room, text, &format!("w{i}")).await;
        let (_, ev) = event(&s, &ben.token, &room, v["event_id"].as_str().unwrap()).await;
        assert!(ev["content"]["m.mentions"].get("room").is_none(), "{text}: {ev}");
    }
}

#[tokio::test]
async fn moderators_pin_messages_to_the_header() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let (_, v) = s.send(&ben, &room, "the address is **12 Oak St**", "p1").await;
    let msg = v["event_id"].as_str().unwrap().to_string();
    let pin = |u: &common::User, id: String, pinned: bool| {
        let (s, token, room) = (&s, u.token.clone(), room.clone());
        async move {
            s.post(Some(&token), &format!("/api/v1/rooms/{room}/pins"), json!({"event_id": id, "pinned": pinned})).await
        }
    };
    // Ben (level 0) may not pin; Ana (the creator) may, once.
    let (st, v) = pin(&ben, msg.clone(), true).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = pin(&ana, msg.clone(), true).await;
    assert_eq!((st, &v["pinned"]), (StatusCode::OK, &json!([msg])), "{v}");
    let (st, v) = pin(&ana, msg.clone(), true).await;
    assert_eq!((st, &v["pinned"]), (StatusCode::OK, &json!([msg])), "pinning twice pins once: {v}");
    let (st, _) = pin(&ana, "$nope".into(), true).await;
    assert!(st == StatusCode::NOT_FOUND || st == StatusCode::BAD_REQUEST);
    // Both see it in the header, its text without Markdown; the room's timeline notes it.
    let shown = page(&s, &ben.token, &room).await;
    assert!(shown.contains(&format!("data-pinned=\"{msg}\"")) && shown.contains("the address is 12 Oak St"), "pinned");
    assert!(shown.contains("changed the pinned messages (1 pinned)"), "noted");
    // Edited, the header follows; deleted, it leaves the header; unpinned, the list is empty.
    edit(&s, &ben.token, &room, &msg, "the address is 14 Oak St", "p2").await;
    assert!(page(&s, &ben.token, &room).await.contains("the address is 14 Oak St"));
    let (_, v) = s.send(&ana, &room, "second", "p3").await;
    let second = v["event_id"].as_str().unwrap().to_string();
    pin(&ana, second.clone(), true).await;
    s.post(Some(&ben.token), &format!("/api/v1/rooms/{room}/redact"), json!({"event_id": msg})).await;
    let shown = page(&s, &ben.token, &room).await;
    assert!(!shown.contains("Oak St") && shown.contains(&format!("data-pinned=\"{second}\"")), "the deleted one left");
    let (st, v) = pin(&ana, second.clone(), false).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(!v["pinned"].as_array().unwrap().contains(&json!(second)), "{v}");
}

#[tokio::test]
async fn a_display_name_shows_in_every_room_and_travels_in_member_events() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    s.send(&ana, &room, "hello", "n1").await;
    let mut ben_ws = s.ws(&ben, None).await;
    let (st, v) = s.put(Some(&ana.token), "/api/v1/profile", json!({"display_name": "  Ana López\u{7}  "})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"display_name": "Ana López", "rooms": 1}), "trimmed, control characters gone");
    // Ben's tab gets the member event with the name; his reloaded page shows it on her
    // messages and notes the change.
    let f = ben_ws.next_of("event").await;
    assert_eq!(
        (f["event"]["type"].as_str(), f["event"]["content"]["displayname"].as_str()),
        (Some("m.room.member"), Some("Ana López"))
    );
    let shown = page(&s, &ben.token, &room).await;
    assert!(shown.contains(&format!("data-name-of=\"{}\">Ana López</span>", ana.id)), "her name on her message");
    assert!(shown.contains("ana set their name to Ana López"), "the change noted");
    // A room she makes later has her name in her join; a second change is noted as one.
    let (_, v) = s.post(Some(&ana.token), "/api/v1/rooms", json!({"name": "Later", "visibility": "private"})).await;
    let later = v["room_id"].as_str().unwrap().to_string();
    let (_, page_v) = s.get(Some(&ana.token), &format!("/api/v1/rooms/{later}/messages")).await;
    let join = page_v["events"].as_array().unwrap().iter().find(|e| e["type"] == "m.room.member").unwrap().clone();
    assert_eq!(join["content"]["displayname"], "Ana López", "{join}");
    s.put(Some(&ana.token), "/api/v1/profile", json!({"display_name": "Ana L."})).await;
    assert!(page(&s, &ben.token, &room).await.contains("Ana López changed their name to Ana L."));
    // Too long is refused and changes nothing; empty clears it.
    let (st, _) = s.put(Some(&ana.token), "/api/v1/profile", json!({"display_name": "x".repeat(65)})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(page(&s, &ben.token, &room).await.contains("Ana L."));
    let (st, v) = s.put(Some(&ana.token), "/api/v1/profile", json!({"display_name": ""})).await;
    assert_eq!((st, &v["display_name"]), (StatusCode::OK, &Value::Null), "{v}");
    assert!(page(&s, &ben.token, &room).await.contains("Ana L. removed their name"));
}

/// Whether the bytes of `needle` are anywhere in the database file of `dir`.
fn in_db_file(dir: &std::path::Path, needle: &str) -> bool {
    let bytes = std::fs::read(dir.join(chat::store::DB_FILE)).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn deleted_text_leaves_the_database_file_by_the_next_start() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let (_, v) = s.send(&ana, &room, "the code is zebra-4711-okapi", "z1").await;
    let secret = v["event_id"].as_str().unwrap().to_string();
    edit(&s, &ana.token, &room, &secret, "the code is quagga-0815-tapir", "z2").await;
    let reply = json!({"body": "noted", "txn_id": "z3", "reply_to": secret});
    let (st, v) = s.post(Some(&ben.token), &format!("/api/v1/rooms/{room}/messages"), reply).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    s.send(&ana, &room, "kept: giraffe-2024-lemur", "z4").await;
    let (st, v) = redact(&s, &ana.token, &room, &secret).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let dir = s.dir.clone();
    let tmp = s.stop().await;
    // redb leaves replaced pages as they were until it uses them again: the text may still be
    // in the file now. The next start copies what is live into a fresh file.
    let s = TestServer::start_in(&dir).await;
    for gone in ["zebra-4711-okapi", "quagga-0815-tapir"] {
        assert!(!in_db_file(&dir, gone), "{gone} is still in the database file");
    }
    assert!(in_db_file(&dir, "giraffe-2024-lemur"), "the scrub lost a live message");
    let (st, v) = s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/messages?limit=10")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let bodies: Vec<&str> =
        v["events"].as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str()).collect();
    assert!(bodies.contains(&"kept: giraffe-2024-lemur") && bodies.contains(&"noted"), "{bodies:?}");
    // Marked once, scrubbed once: the start after that keeps the file (its inode) as it is.
    use std::os::unix::fs::MetadataExt;
    let inode = || std::fs::metadata(dir.join(chat::store::DB_FILE)).unwrap().ino();
    let scrubbed = inode();
    s.stop().await;
    let s = TestServer::start_in(&dir).await;
    assert_eq!(inode(), scrubbed, "the database was copied again with nothing deleted");
    s.stop().await;
    drop(tmp);
}
