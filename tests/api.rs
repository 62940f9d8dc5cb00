//! The JSON API against the real server: accounts, rooms, messages, access rules, bad input.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use common::TestServer;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn accounts_register_login_logout_and_password_change() {
    let s = TestServer::start().await;
    let ana = s.register("Ana").await;
    assert!(ana.id.starts_with("@ana:"), "{}", ana.id);

    // Usernames are unique case-insensitively; rules are enforced.
    let (st, v) = s.post(None, "/api/v1/register", json!({"username": "ANA", "password": "password123"})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, _) = s.post(None, "/api/v1/register", json!({"username": "a b", "password": "password123"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.post(None, "/api/v1/register", json!({"username": "bob", "password": "short"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Login, wrong password, token works, logout revokes exactly that token.
    let (st, _) = s.post(None, "/api/v1/login", json!({"username": "ana", "password": "nope-nope"})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v) = s.post(None, "/api/v1/login", json!({"username": "Ana", "password": "password123"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let second = v["token"].as_str().unwrap().to_string();
    let (st, v) = s.get(Some(&second), "/api/v1/me").await;
    assert_eq!((st, v["user_id"].as_str()), (StatusCode::OK, Some(ana.id.as_str())));
    let (st, _) = s.post(Some(&second), "/api/v1/logout", json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s.get(Some(&second), "/api/v1/me").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "token still valid after logout: {v}");
    let (st, _) = s.get(Some(&ana.token), "/api/v1/me").await;
    assert_eq!(st, StatusCode::OK, "logout revoked another session");

    // Password change: old password checked; other sessions revoked; the new password works.
    let (_, v) = s.post(None, "/api/v1/login", json!({"username": "ana", "password": "password123"})).await;
    let other = v["token"].as_str().unwrap().to_string();
    let (st, _) = s
        .post(
            Some(&ana.token),
            "/api/v1/password",
            json!({"old_password": "wrong-one", "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s
        .post(
            Some(&ana.token),
            "/api/v1/password",
            json!({"old_password": "password123", "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(s.get(Some(&other), "/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.get(Some(&ana.token), "/api/v1/me").await.0, StatusCode::OK);
    let (st, _) = s.post(None, "/api/v1/login", json!({"username": "ana", "password": "password123"})).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = s.post(None, "/api/v1/login", json!({"username": "ana", "password": "new-password-1"})).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn login_is_rate_limited_per_account() {
    let s = TestServer::start().await;
    s.register("cy").await;
    let mut limited = None;
    for i in 0..15 {
        let res = s
            .http
            .post(format!("{}/api/v1/login", s.url))
            .json(&json!({"username": "cy", "password": "wrong-password"}))
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            limited = Some((i, retry));
            break;
        }
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let (i, retry) = limited.expect("15 wrong passwords in a row were never limited");
    assert_eq!(i, 10, "limit should start after 10 attempts per minute");
    assert!(retry >= 1);
    // Even the right password is refused while limited.
    let (st, _) = s.post(None, "/api/v1/login", json!({"username": "cy", "password": "password123"})).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    s.stop().await;
}

#[tokio::test]
async fn rooms_membership_and_visibility() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let ben = s.register("ben").await;
    let cy = s.register("cy").await;

    let public = s.create_room(&ana, "General", "public").await;
    let private = s.create_room(&ana, "Secret", "private").await;

    // Directory lists the public room only.
    let (_, v) = s.get(Some(&cy.token), "/api/v1/rooms/public").await;
    let ids: Vec<&str> = v["rooms"].as_array().unwrap().iter().map(|r| r["room_id"].as_str().unwrap()).collect();
    assert!(ids.contains(&public.as_str()));
    assert!(!ids.contains(&private.as_str()), "private room listed");

    // Ben joins the public room; Cy may not join the private one, nor read or post in it.
    s.join(&ben, &public).await;
    let (st, _) = s.post(Some(&cy.token), &format!("/api/v1/rooms/{private}/join"), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(s.get(Some(&cy.token), &format!("/api/v1/rooms/{private}/messages")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.send(&cy, &private, "hi", "t1").await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.get(Some(&cy.token), &format!("/api/v1/rooms/{public}/messages")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.send(&cy, &public, "hi", "t1").await.0, StatusCode::FORBIDDEN);
    let (_, v) = s.get(Some(&cy.token), "/api/v1/rooms").await;
    assert!(v["rooms"].as_array().unwrap().is_empty(), "outsider sees rooms: {v}");

    // Invite Cy to the private room: it shows as an invitation, then Cy joins and can post.
    let (st, v) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{private}/invite"), json!({"user_id": "cy"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s.get(Some(&cy.token), "/api/v1/rooms").await;
    assert_eq!(v["rooms"][0]["membership"], "invite");
    s.join(&cy, &private).await;
    assert_eq!(s.send(&cy, &private, "thanks", "t2").await.0, StatusCode::OK);
    let (_, v) = s.get(Some(&ana.token), &format!("/api/v1/rooms/{private}/members")).await;
    assert_eq!(v["members"].as_array().unwrap().len(), 2);

    // Inviting unknown users, and members that are already in, fails clearly.
    let (st, _) =
        s.post(Some(&ana.token), &format!("/api/v1/rooms/{private}/invite"), json!({"user_id": "nobody"})).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{private}/invite"), json!({"user_id": "cy"})).await;
    assert_eq!(st, StatusCode::CONFLICT);

    // Leave: no more posting or reading.
    let (st, _) = s.post(Some(&ben.token), &format!("/api/v1/rooms/{public}/leave"), json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.send(&ben, &public, "still here?", "t3").await.0, StatusCode::FORBIDDEN);

    // Unknown room ids are 404, malformed ones too.
    let ghost = format!("!{}", "A".repeat(43));
    assert_eq!(s.send(&ana, &ghost, "x", "t4").await.0, StatusCode::NOT_FOUND);
    assert_eq!(s.send(&ana, "!nope", "x", "t5").await.0, StatusCode::NOT_FOUND);
    s.stop().await;
}

/// Rooms that take requests to join (`knock`) and rooms open to the members of another
/// (`restricted`), on one server: who may ask, join and answer, and what bad settings get.
#[tokio::test]
async fn knocks_and_rooms_open_to_another_rooms_members() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let ben = s.register("ben").await;
    let cy = s.register("cy").await;
    let post = async |u: &common::User, path: String, body: Value| s.post(Some(&u.token), &path, body).await;
    let membership = async |room: &str, user: &str| {
        let (_, v) = s.get(Some(&ana.token), &format!("/api/v1/rooms/{room}/members")).await;
        let m = v["members"].as_array().unwrap().iter().find(|m| m["user_id"] == user).cloned();
        m.map_or("leave".to_string(), |m| m["membership"].as_str().unwrap().to_string())
    };
    let (ben_id, cy_id) = (ben.id.clone(), cy.id.clone());

    // An invite-only room takes no requests; one set to `knock` does.
    let porch = s.create_room(&ana, "Porch", "private").await;
    let (st, v) = post(&ben, format!("/api/v1/knock/{porch}"), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = post(&ana, format!("/api/v1/rooms/{porch}/settings"), json!({"visibility": "knock"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s.get(Some(&ana.token), &format!("/api/v1/rooms/{porch}")).await;
    assert_eq!(v["join_rule"], "knock", "{v}");
    let (st, v) = post(&ben, format!("/api/v1/rooms/{porch}/join"), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "asking is not joining: {v}");
    let (st, v) = post(&ben, format!("/api/v1/knock/{porch}"), json!({"reason": "x".repeat(1001)})).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (st, v) = post(&ben, format!("/api/v1/knock/{porch}"), json!({"reason": 7})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(membership(&porch, &ben_id).await, "leave", "refused requests changed nothing");
    let (st, v) = post(&ben, format!("/api/v1/knock/{porch}"), json!({"reason": "hi, it is Ben"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = post(&ben, format!("/api/v1/knock/{porch}"), json!({})).await;
    assert_eq!(st, StatusCode::CONFLICT, "asked twice: {v}");
    assert_eq!(membership(&porch, &ben_id).await, "knock");
    let (_, v) = s.get(Some(&ben.token), "/api/v1/rooms").await;
    assert_eq!(v["rooms"][0]["membership"], "knock", "{v}");
    assert_eq!(s.send(&ben, &porch, "let me in", "k1").await.0, StatusCode::FORBIDDEN, "asking is not reading");
    assert_eq!(s.get(Some(&ben.token), &format!("/api/v1/rooms/{porch}/messages")).await.0, StatusCode::FORBIDDEN);
    // Cy asks and withdraws; Ben is let in by Ana and joins.
    let (st, _) = post(&cy, format!("/api/v1/knock/{porch}"), json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = post(&cy, format!("/api/v1/rooms/{porch}/leave"), json!({})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(membership(&porch, &cy_id).await, "leave");
    let (st, v) =
        post(&ana, format!("/api/v1/rooms/{porch}/requests"), json!({"user_id": cy_id, "accept": true})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "Cy withdrew: {v}");
    let (st, v) =
        post(&cy, format!("/api/v1/rooms/{porch}/requests"), json!({"user_id": ben_id, "accept": true})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "only moderators answer: {v}");
    let (st, v) =
        post(&ana, format!("/api/v1/rooms/{porch}/requests"), json!({"user_id": ben_id, "accept": true})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(membership(&porch, &ben_id).await, "invite");
    s.join(&ben, &porch).await;
    assert_eq!(s.send(&ben, &porch, "thanks", "k2").await.0, StatusCode::OK);
    // Cy asks again and is turned down: she may ask once more, not join.
    let (st, _) = post(&cy, format!("/api/v1/knock/{porch}"), json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) =
        post(&ana, format!("/api/v1/rooms/{porch}/requests"), json!({"user_id": cy_id, "accept": false})).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(membership(&porch, &cy_id).await, "leave");
    let bodies = s.bodies(&ana, &porch).await;
    assert!(bodies.contains(&"thanks".to_string()), "{bodies:?}");

    // A room open to the club's members.
    let club = s.create_room(&ana, "Club", "public").await;
    let back = s.create_room(&ana, "Back", "private").await;
    let settings = format!("/api/v1/rooms/{back}/settings");
    for (body, want) in [
        (json!({"visibility": "restricted"}), StatusCode::BAD_REQUEST),
        (json!({"visibility": "restricted", "allow": [back]}), StatusCode::BAD_REQUEST),
        (json!({"visibility": "private", "allow": [club]}), StatusCode::BAD_REQUEST),
        (json!({"allow": [club]}), StatusCode::BAD_REQUEST),
        (json!({"visibility": "restricted", "allow": ["!nope"]}), StatusCode::BAD_REQUEST),
        (json!({"visibility": "members"}), StatusCode::BAD_REQUEST),
        (json!({"visibility": "restricted", "allow": vec![club.clone(); 11]}), StatusCode::BAD_REQUEST),
    ] {
        let (st, v) = post(&ana, settings.clone(), body.clone()).await;
        assert_eq!(st, want, "{body}: {v}");
    }
    let (_, v) = s.get(Some(&ana.token), &format!("/api/v1/rooms/{back}")).await;
    assert_eq!(v["join_rule"], "invite", "bad settings changed nothing: {v}");
    // Ben may not open the room (no power), nor Ana open it to a room she is not in.
    let bens = s.create_room(&ben, "Ben's", "private").await;
    let (st, v) = post(&ana, settings.clone(), json!({"visibility": "restricted", "allow": [bens]})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (st, v) = post(&ana, settings.clone(), json!({"visibility": "restricted", "allow": [club]})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = post(&cy, format!("/api/v1/rooms/{back}/join"), json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "not in the club: {v}");
    s.join(&cy, &club).await;
    s.join(&cy, &back).await;
    assert_eq!(s.send(&cy, &back, "in through the club", "r1").await.0, StatusCode::OK);
    let (_, v) = s.get(Some(&ana.token), &format!("/api/v1/rooms/{back}/messages?limit=50")).await;
    let join = v["events"].as_array().unwrap().iter().rev().find(|e| e["state_key"] == cy_id.as_str()).cloned();
    let via = join.map(|j| j["content"]["join_authorised_via_users_server"].clone());
    assert_eq!(via, Some(json!(ana.id)), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn direct_messages_reuse_one_room() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let ben = s.register("ben").await;
    let (st, v) = s.post(Some(&ana.token), "/api/v1/dm", json!({"user_id": "ben"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let room = v["room_id"].as_str().unwrap().to_string();
    let (_, v) = s.post(Some(&ana.token), "/api/v1/dm", json!({"user_id": ben.id})).await;
    assert_eq!(v["room_id"], room.as_str(), "second DM opened a new room");
    // Ben opening a DM with Ana accepts the invitation into the same room.
    let (_, v) = s.post(Some(&ben.token), "/api/v1/dm", json!({"user_id": "ana"})).await;
    assert_eq!(v["room_id"], room.as_str());
    assert_eq!(s.send(&ben, &room, "hi ana", "d1").await.0, StatusCode::OK);
    let (_, v) = s.get(Some(&ana.token), "/api/v1/rooms").await;
    let r = &v["rooms"][0];
    assert_eq!(
        (r["direct"].as_bool(), r["peer"].as_str(), r["unread"].as_u64()),
        (Some(true), Some(ben.id.as_str()), Some(1))
    );
    // Nobody else can be invited into a direct room, and you cannot DM yourself.
    let cy = s.register("cy").await;
    let (st, _) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/invite"), json!({"user_id": cy.id})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.post(Some(&ana.token), "/api/v1/dm", json!({"user_id": "ana"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn messages_idempotent_paginated_and_unread() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;

    // A retried send with the same txn_id is one message with one id.
    let (st, first) = s.send(&ana, &room, "hello", "same-txn").await;
    assert_eq!(st, StatusCode::OK);
    let (_, again) = s.send(&ana, &room, "hello", "same-txn").await;
    assert_eq!(first["event_id"], again["event_id"]);
    assert_eq!(s.bodies(&ana, &room).await, vec!["hello"]);

    for i in 0..120 {
        let (st, _) = s.send(&ana, &room, &format!("m{i}"), &format!("t{i}")).await;
        assert_eq!(st, StatusCode::OK);
    }
    // Pages of 50, newest first, the cursor continuing without gaps or repeats.
    let (_, p1) = s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/messages?limit=50")).await;
    let evs = p1["events"].as_array().unwrap();
    assert_eq!(evs.len(), 50);
    assert_eq!(evs[0]["content"]["body"], "m119");
    let next = p1["next"].as_str().unwrap();
    let (_, p2) = s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/messages?limit=50&before={next}")).await;
    assert_eq!(p2["events"][0]["content"]["body"], "m69");
    let all = s.bodies(&ben, &room).await;
    assert_eq!(all.len(), 121);
    assert_eq!(all[0], "hello");
    assert_eq!(all[120], "m119");

    // Unread: Ben has 100+ (capped at 100) unread; reading the newest clears it. Ana has none.
    let (_, v) = s.get(Some(&ben.token), "/api/v1/rooms").await;
    assert_eq!(v["rooms"][0]["unread"], 100);
    let newest = evs[0]["event_id"].as_str().unwrap();
    let (st, _) = s.post(Some(&ben.token), &format!("/api/v1/rooms/{room}/read"), json!({"event_id": newest})).await;
    assert_eq!(st, StatusCode::OK);
    let (_, v) = s.get(Some(&ben.token), "/api/v1/rooms").await;
    assert_eq!(v["rooms"][0]["unread"], 0);
    let (_, v) = s.get(Some(&ana.token), "/api/v1/rooms").await;
    assert_eq!(v["rooms"][0]["unread"], 0);

    // Bad cursors and limits are 400.
    assert_eq!(
        s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/messages?before=x")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/messages?limit=0")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/messages?limit=9999")).await.0,
        StatusCode::BAD_REQUEST
    );
    s.stop().await;
}

/// A message opened in the middle of history (a link, a quote, a pin, a search result): the
/// events around it, then pages older and newer from there without gaps or repeats.
#[tokio::test]
async fn history_opens_at_a_message_and_pages_both_ways() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let mut ids = Vec::new();
    for i in 0..100 {
        let (st, v) = s.send(&ana, &room, &format!("m{i}"), &format!("t{i}")).await;
        assert_eq!(st, StatusCode::OK);
        ids.push(v["event_id"].as_str().unwrap().to_string());
    }
    let enc = |id: &str| id.replace('$', "%24");
    let bodies = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().filter_map(|e| e["content"]["body"].as_str().map(str::to_string)).collect()
    };
    let (st, c) = s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/context/{}?limit=5", enc(&ids[50]))).await;
    assert_eq!(st, StatusCode::OK, "{c}");
    assert_eq!(c["event"]["content"]["body"], "m50");
    assert_eq!(bodies(&c["before"]), ["m49", "m48", "m47", "m46", "m45"]);
    assert_eq!(bodies(&c["after"]), ["m51", "m52", "m53", "m54", "m55"]);
    // Newer pages from there, oldest first, to the newest.
    let mut newer = bodies(&c["after"]);
    let mut cursor = c["after_cursor"].as_str().map(str::to_string);
    while let Some(after) = cursor {
        let (st, p) = s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/messages?after={after}&limit=20")).await;
        assert_eq!(st, StatusCode::OK, "{p}");
        newer.extend(bodies(&p["events"]));
        cursor = p["next"].as_str().map(str::to_string);
    }
    assert_eq!(newer, (51..100).map(|i| format!("m{i}")).collect::<Vec<_>>());
    // Older pages, newest first, to the beginning (the room's setup events have no body).
    let mut older = bodies(&c["before"]);
    let mut cursor = c["before_cursor"].as_str().map(str::to_string);
    while let Some(before) = cursor {
        let (_, p) = s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/messages?before={before}&limit=20")).await;
        older.extend(bodies(&p["events"]));
        cursor = p["next"].as_str().map(str::to_string);
    }
    assert_eq!(older, (0..50).rev().map(|i| format!("m{i}")).collect::<Vec<_>>());
    // At the newest message, the newer side is complete.
    let (_, c) = s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/context/{}", enc(&ids[99]))).await;
    assert_eq!(bodies(&c["after"]), Vec::<String>::new());
    assert!(c["after_cursor"].is_null() && c["before_cursor"].is_string(), "{c}");
    assert_eq!(bodies(&c["before"]).len(), 10);

    // Only members; only this room's events; clear errors.
    let cy = s.register("cy").await;
    let at = |id: &str, q: &str| format!("/api/v1/rooms/{room}/context/{}{q}", enc(id));
    assert_eq!(s.get(Some(&cy.token), &at(&ids[1], "")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(s.get(Some(&ben.token), &at("$nothing:here", "")).await.0, StatusCode::BAD_REQUEST);
    let unknown = format!("${}", "A".repeat(ids[1].len() - 1));
    assert_eq!(s.get(Some(&ben.token), &at(&unknown, "")).await.0, StatusCode::NOT_FOUND);
    let other = s.create_room(&cy, "Elsewhere", "public").await;
    let (_, v) = s.send(&cy, &other, "not here", "o1").await;
    assert_eq!(s.get(Some(&ben.token), &at(v["event_id"].as_str().unwrap(), "")).await.0, StatusCode::NOT_FOUND);
    for q in ["?limit=0", "?limit=9999", "?limit=x"] {
        assert_eq!(s.get(Some(&ben.token), &at(&ids[1], q)).await.0, StatusCode::BAD_REQUEST, "{q}");
    }
    let both = format!("/api/v1/rooms/{room}/messages?before=5&after=3");
    assert_eq!(s.get(Some(&ben.token), &both).await.0, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_4xx_and_changes_nothing() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let room = s.create_room(&ana, "General", "public").await;
    let url = |p: &str| format!("{}{p}", s.url);
    let before = s.stream_pos().await;

    // Malformed JSON, wrong types, missing fields, wrong content type.
    for body in ["{", "[]", "{\"body\": 5, \"txn_id\": \"x\"}", "{\"body\": \"x\"}", "\u{0}"] {
        let res = s
            .http
            .post(url(&format!("/api/v1/rooms/{room}/messages")))
            .bearer_auth(&ana.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "body {body:?}");
        let v: serde_json::Value = res.json().await.unwrap();
        assert_eq!(v["error"], "bad_request");
        assert!(!v["message"].as_str().unwrap().is_empty());
    }
    let res = s.http.post(url("/api/v1/rooms")).bearer_auth(&ana.token).body("name=x").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let (st, _) = s.post(Some(&ana.token), "/api/v1/rooms", json!({"name": "x", "visibility": "sideways"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.post(Some(&ana.token), "/api/v1/rooms", json!({"name": "  ", "visibility": "public"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) =
        s.post(Some(&ana.token), "/api/v1/rooms", json!({"name": "x".repeat(101), "visibility": "public"})).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);

    // Oversize body (over 64 KiB) and oversize message (over 16 KiB).
    let huge = "x".repeat(70 * 1024);
    let (st, v) = s.send(&ana, &room, &huge, "big").await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (st, v) = s.send(&ana, &room, &"y".repeat(17 * 1024), "big2").await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (st, _) = s.send(&ana, &room, "   ", "blank").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.send(&ana, &room, "ok", &"t".repeat(65)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = s.send(&ana, &room, "ok", "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // Bad tokens: missing, garbage, tampered, wrong key, alg none (expired: see below).
    assert_eq!(s.get(None, "/api/v1/rooms").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.get(Some("garbage"), "/api/v1/rooms").await.0, StatusCode::UNAUTHORIZED);
    let mut parts: Vec<String> = ana.token.split('.').map(String::from).collect();
    let tampered_claims = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut c: serde_json::Value = serde_json::from_slice(&e.decode(&parts[1]).unwrap()).unwrap();
        c["sub"] = json!("@someone:else");
        e.encode(c.to_string())
    };
    parts[1] = tampered_claims.clone();
    assert_eq!(s.get(Some(&parts.join(".")), "/api/v1/rooms").await.0, StatusCode::UNAUTHORIZED);
    let none_token = {
        use base64::Engine;
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.", e.encode(r#"{"alg":"none","typ":"JWT"}"#), tampered_claims)
    };
    assert_eq!(s.get(Some(&none_token), "/api/v1/rooms").await.0, StatusCode::UNAUTHORIZED);
    let claims = json!({"sub": ana.id, "sid": "x", "iat": 1, "exp": 2});
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not the key"),
    )
    .unwrap();
    assert_eq!(s.get(Some(&forged), "/api/v1/rooms").await.0, StatusCode::UNAUTHORIZED);
    // Cookie-authenticated POST from another origin is refused.
    let res = s
        .http
        .post(url(&format!("/api/v1/rooms/{room}/messages")))
        .header("cookie", format!("chat_token={}", ana.token))
        .header("origin", "http://evil.example")
        .json(&json!({"body": "csrf", "txn_id": "csrf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = s
        .http
        .post(url(&format!("/api/v1/rooms/{room}/messages")))
        .header("cookie", format!("chat_token={}", ana.token))
        .json(&json!({"body": "no origin", "txn_id": "csrf2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // The same request from our own origin works.
    let res = s
        .http
        .post(url(&format!("/api/v1/rooms/{room}/messages")))
        .header("cookie", format!("chat_token={}", ana.token))
        .header("origin", s.url.clone())
        .json(&json!({"body": "same origin", "txn_id": "ok1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Unknown endpoints and wrong methods answer in the JSON error shape.
    assert_eq!(s.get(Some(&ana.token), "/api/v1/nope").await.0, StatusCode::NOT_FOUND);
    let (st, v) = s.get(Some(&ana.token), "/api/v1/register").await;
    assert_eq!((st, v["error"].as_str()), (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed")));

    // Exactly one event was added (the same-origin send); the server is healthy.
    assert_eq!(s.stream_pos().await, before + 1);
    assert_eq!(s.bodies(&ana, &room).await, vec!["same origin"]);
    let res = s.http.get(url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = s.http.get(url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "ready");
    s.stop().await;
}

/// A token the server issued, signed with its real key and with its session still there, is
/// refused once its lifetime is over, and says why. The lifetime is 1 s here (a configuration
/// file may not go under 60 s; the in-process config is not checked), plus the 5 s leeway.
#[tokio::test]
async fn an_expired_token_is_refused_as_expired() {
    let s = TestServer::start_tuned(|c| c.limits.token_ttl_secs = 1).await;
    let ana = s.register("ana").await;
    assert_eq!(s.get(Some(&ana.token), "/api/v1/me").await.0, StatusCode::OK, "control: fresh, valid");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let v = loop {
        let (st, v) = s.get(Some(&ana.token), "/api/v1/me").await;
        if st == StatusCode::UNAUTHORIZED {
            break v;
        }
        assert_eq!(st, StatusCode::OK, "{v}");
        assert!(std::time::Instant::now() < until, "the token never expired");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert_eq!(v["message"], "token expired");
    s.stop().await;
}
