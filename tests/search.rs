//! Full-text search against the real server: who may find what, edits and deletions,
//! diacritics and CJK, filters and paging, clear errors; and the index after SIGKILL, damage
//! and time switched off (the real binary).
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::time::{Duration, Instant};

use common::{Binary, TestServer, User, post_json};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn enc(s: &str) -> String {
    chat::federation::urlencode(s)
}

async fn search(s: &TestServer, u: &User, query: &str) -> (StatusCode, Value) {
    s.get(Some(&u.token), &format!("/api/v1/search?{query}")).await
}

/// The bodies found for `q` (the whole query string after `q=`), newest first.
async fn found(s: &TestServer, u: &User, q: &str) -> Vec<String> {
    let (st, v) = search(s, u, &format!("q={}", enc(q))).await;
    assert_eq!(st, StatusCode::OK, "{q}: {v}");
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let ev = &r["event"];
            ev["content_now"]["body"].as_str().or(ev["content"]["body"].as_str()).unwrap_or_default().to_string()
        })
        .collect()
}

/// Waits until the index holds everything committed so far.
async fn indexed(s: &TestServer) {
    s.until_metric("chat_search_behind", |v| v == 0.0).await;
}

#[tokio::test]
async fn a_search_finds_only_what_the_asker_may_read_now() {
    let s = TestServer::start().await;
    let (ana, ben, general) = s.ana_and_ben_in_general().await;
    let cy = s.register("cy").await;
    let private = s.create_room(&cy, "Cy's notes", "private").await;
    s.send(&cy, &private, "the secret recipe is saffron", "c1").await;
    s.send(&ana, &general, "saffron is expensive", "a1").await;
    indexed(&s).await;

    // Each finds the term only in the rooms they are in; counts and snippets say nothing else.
    assert_eq!(found(&s, &ben, "saffron").await, ["saffron is expensive"]);
    assert_eq!(found(&s, &cy, "saffron").await, ["the secret recipe is saffron"]);
    let (_, v) = search(&s, &ben, "q=recipe").await;
    assert_eq!((v["count"].as_u64(), v["results"].as_array().unwrap().len()), (Some(0), 0), "{v}");
    // Naming a room one is not in is refused, by id or by `in:`.
    let (st, v) = search(&s, &ben, &format!("q=recipe&room={}", enc(&private))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = search(&s, &ben, &format!("q={}", enc(&format!("recipe in:{private}")))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, _) = search(&s, &ben, &format!("q={}", enc("recipe in:Cy's notes"))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a room one is not in is not found by its name");

    // After Ben leaves, the room's messages, earlier and later, are not found by him.
    let (st, _) = s.post(Some(&ben.token), &format!("/api/v1/rooms/{general}/leave"), json!({})).await;
    assert_eq!(st, StatusCode::OK);
    s.send(&ana, &general, "saffron again, after Ben left", "a2").await;
    indexed(&s).await;
    assert_eq!(found(&s, &ben, "saffron").await, Vec::<String>::new());
    assert_eq!(found(&s, &ana, "saffron").await, ["saffron again, after Ben left", "saffron is expensive"]);
    // Without a session: 401.
    let (st, _) = s.get(None, "/api/v1/search?q=saffron").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn edits_deletions_diacritics_cjk_filters_and_pages() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let other = s.create_room(&ben, "Other", "public").await;
    s.join(&ana, &other).await;
    let (_, v) = s.send(&ana, &room, "Meet me at the Café de Flore", "t1").await;
    let cafe = v["event_id"].as_str().unwrap().to_string();
    s.send(&ben, &room, "東京都に行きます", "t2").await;
    let (_, v) = s.send(&ben, &room, "this one will be deleted: ephemeral", "t3").await;
    let doomed = v["event_id"].as_str().unwrap().to_string();
    s.send(&ben, &other, "lunch at the café in the other room", "t4").await;
    // A reply: found by its own text only (one from another server may carry Matrix's quoted
    // fallback in its body; ours do not).
    let (_, v) = s.send(&ben, &other, "the quoted original", "t5").await;
    let reply = json!({"body": "reply text", "txn_id": "t6", "reply_to": v["event_id"]});
    let (st, v) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{other}/messages"), reply).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    indexed(&s).await;

    // Diacritics fold both ways; case does not matter.
    assert_eq!(found(&s, &ben, "cafe flore").await, ["Meet me at the Café de Flore"]);
    assert_eq!(found(&s, &ben, "CAFÉ in:General").await, ["Meet me at the Café de Flore"]);
    // CJK: a word of two or more characters, and a single character.
    assert_eq!(found(&s, &ana, "京都").await, ["東京都に行きます"]);
    assert_eq!(found(&s, &ana, "行").await, ["東京都に行きます"]);
    assert_eq!(found(&s, &ana, "都市").await, Vec::<String>::new());
    // Phrases keep their order.
    assert_eq!(found(&s, &ana, "\"de flore\"").await, ["Meet me at the Café de Flore"]);
    assert_eq!(found(&s, &ana, "\"flore de\"").await, Vec::<String>::new());
    // A reply is found by its own text, not by the quoted fallback.
    assert_eq!(found(&s, &ana, "quoted original").await, ["the quoted original"]);
    assert_eq!(found(&s, &ana, "reply").await.len(), 1);
    // Snippets mark the words found.
    let (_, v) = search(&s, &ana, &format!("q={}", enc("flore"))).await;
    let hits: Vec<&str> = v["results"][0]["snippet"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["hit"] == true)
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(hits, ["Flore"], "{v}");
    assert_eq!(v["results"][0]["room_name"], "General");

    // Edits: the newest text is found, the old one no more.
    let edit = json!({"body": "Meet me at the Bistro instead", "txn_id": "e1", "replaces": cafe});
    let (st, v) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/messages"), edit).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let edit_id = v["event_id"].as_str().unwrap().to_string();
    indexed(&s).await;
    assert_eq!(found(&s, &ben, "flore in:General").await, Vec::<String>::new());
    assert_eq!(found(&s, &ben, "bistro").await, ["Meet me at the Bistro instead"]);
    // Deleting the edit brings the message's own text back.
    let (st, _) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/redact"), json!({"event_id": edit_id})).await;
    assert_eq!(st, StatusCode::OK);
    indexed(&s).await;
    assert_eq!(found(&s, &ben, "bistro").await, Vec::<String>::new());
    assert_eq!(found(&s, &ben, "flore").await, ["Meet me at the Café de Flore"]);
    // A deleted message is found no more.
    assert_eq!(found(&s, &ana, "ephemeral").await, ["this one will be deleted: ephemeral"]);
    let (st, _) = s.post(Some(&ben.token), &format!("/api/v1/rooms/{room}/redact"), json!({"event_id": doomed})).await;
    assert_eq!(st, StatusCode::OK);
    indexed(&s).await;
    assert_eq!(found(&s, &ana, "ephemeral").await, Vec::<String>::new());

    // Filters: sender (by name or id), room, days, files.
    assert_eq!(found(&s, &ana, "café from:ben").await, ["lunch at the café in the other room"]);
    assert_eq!(found(&s, &ana, &format!("café from:{}", ana.id)).await, ["Meet me at the Café de Flore"]);
    let (_, v) = search(&s, &ana, &format!("q=cafe&room={}", enc(&other))).await;
    assert_eq!(v["count"], 1, "{v}");
    let (_, v) = search(&s, &ana, &format!("q=cafe&sender=ben&room={}", enc(&room))).await;
    assert_eq!(v["count"], 0, "{v}");
    assert_eq!(found(&s, &ana, "cafe before:2000-01-01").await, Vec::<String>::new());
    assert_eq!(found(&s, &ana, "cafe after:2000-01-01").await.len(), 2);
    let (_, v) = search(&s, &ana, "q=cafe&since=2000-01-01&until=2000-12-31").await;
    assert_eq!(v["count"], 0, "{v}");
    let url = format!("{}/api/v1/media/upload?filename=budget-2027.pdf", s.url);
    let up = s.http.post(url).bearer_auth(&ana.token).header("content-type", "application/pdf");
    let up: Value = up.body(b"%PDF-1.4 not really".to_vec()).send().await.unwrap().json().await.unwrap();
    let file = json!({"txn_id": "f1", "body": "", "file": {"content_uri": up["content_uri"]}});
    let (st, v) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/messages"), file).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    indexed(&s).await;
    assert_eq!(found(&s, &ben, "budget").await, ["budget-2027.pdf"]);
    assert_eq!(found(&s, &ben, "has:file").await, ["budget-2027.pdf"]);
    assert_eq!(found(&s, &ben, "cafe has:file").await, Vec::<String>::new());

    // Markdown is found, and shown, as the text it formats.
    s.send(&ana, &room, "bring **rhubarb** and _custard_", "md").await;
    indexed(&s).await;
    let (_, v) = search(&s, &ben, "q=rhubarb+custard").await;
    let shown: String =
        v["results"][0]["snippet"].as_array().unwrap().iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(shown, "bring rhubarb and custard", "{v}");

    // Pages: newest first, no result twice, to the end; relevance puts the best match first.
    for i in 0..45 {
        s.send(&ana, &room, &format!("paging note number {i}"), &format!("p{i}")).await;
    }
    s.send(&ana, &room, "note note note paging", "best").await;
    indexed(&s).await;
    let (mut seen, mut next) = (Vec::new(), Some("0".to_string()));
    while let Some(n) = next {
        let (st, v) = search(&s, &ben, &format!("q=paging+note&limit=20&next={n}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        assert_eq!(v["count"], 46);
        for r in v["results"].as_array().unwrap() {
            seen.push(r["event"]["content"]["body"].as_str().unwrap().to_string());
        }
        next = v["next"].as_str().map(str::to_string);
    }
    let mut want = vec!["note note note paging".to_string()];
    want.extend((0..45).rev().map(|i| format!("paging note number {i}")));
    assert_eq!(seen, want);
    let (_, v) = search(&s, &ben, "q=note&order=relevance&limit=1").await;
    assert_eq!(v["results"][0]["event"]["content"]["body"], "note note note paging", "{v}");

    // Clear errors for what cannot be read.
    for (query, why) in [
        ("q=", "nothing to search for"),
        ("q=%20%20", "blank"),
        ("q=has:cats", "unknown has:"),
        ("q=x+before:2026-02-30", "no such day"),
        ("q=x&since=yesterday", "not a date"),
        ("q=x&order=random", "unknown order"),
        ("q=x&limit=0", "limit 0"),
        ("q=x&limit=51", "limit over 50"),
        ("q=x&next=-1", "bad cursor"),
        ("q=x&next=100000", "cursor too far"),
        ("q=x+in:nowhere", "no room by that name"),
        ("q=x&sender=%40", "bad user id"),
    ] {
        let (st, v) = search(&s, &ana, query).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{why}: {query} -> {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{why}: {v}");
    }
    let (st, _) = search(&s, &ana, "q=x&room=nonsense").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a room id that cannot be: no such room, as elsewhere");
    // Text without a searchable word matches nothing (not everything).
    for q in ["%3F%3F%3F", "...", &"x".repeat(60)] {
        let (st, v) = search(&s, &ana, &format!("q={q}")).await;
        assert_eq!((st, v["count"].as_u64()), (StatusCode::OK, Some(0)), "{q}: {v}");
    }
    let long = "a".repeat(501);
    let (st, _) = search(&s, &ana, &format!("q={long}")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = search(&s, &ana, &format!("q={}", "a".repeat(500))).await;
    assert_eq!(st, StatusCode::OK);
    let errors = s.metric("chat_search_query_errors_total").await;
    assert_eq!(errors, Some(0.0));
    s.stop().await;
}

/// Searches the binary's API until `q` finds `want` messages and the index says it has caught
/// up; the count it reached.
async fn until_count(http: &reqwest::Client, url: &str, token: &str, q: &str, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let res = http.get(format!("{url}/api/v1/search?q={q}&limit=1")).bearer_auth(token).send().await;
        let got = match res {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.unwrap();
                (v["count"].as_u64().unwrap(), v["indexing"] == false)
            }
            _ => (0, false),
        };
        if got == (want, true) || Instant::now() > deadline {
            return got.0;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_is_complete_after_sigkill_damage_and_time_off() {
    let data = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let args = ["--server-name", "search.test"];
    let server = Binary::start(data.path(), "127.0.0.1:0", &args);
    let url = server.url.clone();
    let (_, v) = post_json(
        &http,
        &format!("{url}/api/v1/register"),
        None,
        json!({"username": "ana", "password": "password123"}),
    )
    .await;
    let token = v["token"].as_str().unwrap().to_string();
    let (_, v) =
        post_json(&http, &format!("{url}/api/v1/rooms"), Some(&token), json!({"name": "Log", "visibility": "private"}))
            .await;
    let room = v["room_id"].as_str().unwrap().to_string();

    // 2,000 messages from 8 senders at once, and SIGKILL as the last is acknowledged: the
    // index is mid-way (some committed, some buffered, some not read yet).
    const N: u64 = 2_000;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (http, url, token, room) = (http.clone(), url.clone(), token.clone(), room.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..N / 8 {
                let body = json!({"body": format!("needle {t} {i} haystack"), "txn_id": format!("{t}-{i}")});
                let (st, v) =
                    post_json(&http, &format!("{url}/api/v1/rooms/{room}/messages"), Some(&token), body).await;
                assert_eq!(st, StatusCode::OK, "{v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    server.kill();

    let server = Binary::start(data.path(), "127.0.0.1:0", &args);
    let (_, v) = post_json(
        &http,
        &format!("{}/api/v1/login", server.url),
        None,
        json!({"username": "ana", "password": "password123"}),
    )
    .await;
    let token = v["token"].as_str().unwrap().to_string();
    assert_eq!(until_count(&http, &server.url, &token, "needle", N).await, N, "after SIGKILL");
    assert_eq!(until_count(&http, &server.url, &token, "%22needle+3+7%22", 1).await, 1);
    server.kill();

    // Damaged: every file of the index overwritten with garbage. It is rebuilt while the
    // server runs.
    let dir = data.path().join("search");
    for f in std::fs::read_dir(&dir).unwrap() {
        std::fs::write(f.unwrap().path(), b"\x00garbage{not an index").unwrap();
    }
    let server = Binary::start(data.path(), "127.0.0.1:0", &args);
    assert_eq!(until_count(&http, &server.url, &token, "needle", N).await, N, "after damage");
    server.kill();

    // Missing: deleted, rebuilt.
    std::fs::remove_dir_all(&dir).unwrap();
    let server = Binary::start(data.path(), "127.0.0.1:0", &args);
    assert_eq!(until_count(&http, &server.url, &token, "needle", N).await, N, "after deletion");
    server.kill();

    // Switched off: searching says so; messages sent meanwhile are found once it is back on.
    let off = Binary::start(data.path(), "127.0.0.1:0", &["--server-name", "search.test", "--search-disabled"]);
    let res = http.get(format!("{}/api/v1/search?q=needle", off.url)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    for i in 0..20 {
        let body = json!({"body": format!("needle sent while search was off {i}"), "txn_id": format!("off-{i}")});
        let (st, _) = post_json(&http, &format!("{}/api/v1/rooms/{room}/messages", off.url), Some(&token), body).await;
        assert_eq!(st, StatusCode::OK);
    }
    off.kill();
    let server = Binary::start(data.path(), "127.0.0.1:0", &args);
    assert_eq!(until_count(&http, &server.url, &token, "needle", N + 20).await, N + 20, "after time off");
    assert_eq!(until_count(&http, &server.url, &token, "needle+off", 20).await, 20);
    server.kill();
}
