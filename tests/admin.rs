//! `chat admin` (the real binary, against a running server through its admin socket, and
//! against a stopped one on the same data dir) and the `/admin` page.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::{TestServer, User};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Runs `chat admin ARGS... --data-dir DIR`, with `stdin` on its standard input.
fn admin(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    common::cli(dir, &[&["admin"], args].concat(), stdin)
}

/// `admin` run on a blocking thread (the server runs on this test's runtime).
async fn admin_async(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    common::cli_async(dir, &[&["admin"], args].concat(), stdin).await
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// One account as `chat admin user list --json` shows it.
async fn account(dir: &Path, name: &str) -> Value {
    let o = admin_async(dir, &["user", "list", "--json"], None).await;
    assert!(o.status.success(), "{}", text(&o));
    let users: Value = serde_json::from_slice(&o.stdout).unwrap();
    users.as_array().unwrap().iter().find(|u| u["username"] == name).cloned().unwrap_or(Value::Null)
}

async fn login(s: &TestServer, name: &str, pw: &str) -> (StatusCode, Value) {
    s.post(None, "/api/v1/login", json!({"username": name, "password": pw})).await
}

#[tokio::test]
async fn offline_then_online_accounts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // Before the first start: no database yet, listing says so; creating the first admin works.
    let o = admin(dir, &["user", "list"], None);
    assert!(!o.status.success());
    assert!(text(&o).contains("no database"), "{}", text(&o));
    let o = admin(dir, &["user", "create", "Root", "--admin", "--password-stdin"], Some("rootpassword1\n"));
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("created @root:"), "{}", text(&o));
    let o = admin(dir, &["user", "create", "root", "--password-stdin"], Some("otherpassword\n"));
    assert!(!o.status.success(), "a taken name is refused: {}", text(&o));
    let o = admin(dir, &["user", "create", "shorty", "--password-stdin"], Some("short\n"));
    assert!(!o.status.success() && text(&o).contains("at least 8"), "{}", text(&o));

    // The server starts on that directory; the admin signs in with the password given.
    let s = TestServer::start_in(dir).await;
    let (st, v) = login(&s, "root", "rootpassword1").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Made before any server ran here, the account is named after the configured listen
    // address (the default, here), as `chat serve` with the same settings would name it.
    assert_eq!(v["user_id"], "@root:127.0.0.1:8080");

    // While it runs, the command goes through the admin socket. A generated password is shown once.
    let o = admin_async(dir, &["user", "create", "dora"], None).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let pw = out.lines().find_map(|l| l.split("password (shown once; ask them to change it): ").nth(1)).unwrap().trim();
    let (st, v) = login(&s, "dora", pw).await;
    assert_eq!(st, StatusCode::OK);
    // Made through the running server, it carries the server's name, as registration does.
    assert_eq!(v["user_id"], format!("@dora:{}", s.addr));
    let ben = s.register("ben").await;
    let o = admin_async(dir, &["user", "list", "--json"], None).await;
    let users: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["ben", "dora", "root"]);
    let root = users.as_array().unwrap().iter().find(|u| u["username"] == "root").unwrap();
    assert_eq!(root["admin"], true);
    assert_eq!(root["sessions"], 1);

    // Disabling ends Ben's sessions at once: his socket closes, his token dies, he cannot sign in.
    let mut ws = s.ws(&ben, None).await;
    let o = admin_async(dir, &["user", "disable", "ben"], None).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(ws.try_next(Duration::from_secs(5)).await.is_none() || ws.close_code().await.is_some());
    assert_eq!(s.get(Some(&ben.token), "/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    let (st, v) = login(&s, "ben", "password123").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let o = admin_async(dir, &["user", "disable", "ben", "--enable"], None).await;
    assert!(o.status.success(), "{}", text(&o));
    let (st, v) = login(&s, "ben", "password123").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ben_token = v["token"].as_str().unwrap().to_string();

    // A reset password signs Ben out; the new one works, the old one does not.
    let o = admin_async(dir, &["user", "reset-password", "ben", "--password-stdin"], Some("brandnewpass\n")).await;
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(s.get(Some(&ben_token), "/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&s, "ben", "password123").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&s, "ben", "brandnewpass").await.0, StatusCode::OK);

    // Unknown users are named in the error, exit code non-zero.
    let o = admin_async(dir, &["user", "make-admin", "nobody"], None).await;
    assert!(!o.status.success() && text(&o).contains("no user named nobody"), "{}", text(&o));
    let o = admin_async(dir, &["user", "make-admin", "ben"], None).await;
    assert!(o.status.success() && text(&o).contains("is a server administrator"), "{}", text(&o));
    assert_eq!(account(dir, "ben").await["admin"], true);

    // Stopped again: the same commands open the database directly.
    s.stop().await;
    let o = admin(dir, &["user", "make-admin", "ben", "--revoke"], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = admin(dir, &["user", "list", "--json"], None);
    let users: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ben = users.as_array().unwrap().iter().find(|u| u["username"] == "ben").unwrap();
    assert_eq!(ben["admin"], false);
}

#[tokio::test]
async fn room_delete_removes_history_and_tells_members() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let other = s.create_room(&ana, "Kept", "public").await;
    for i in 0..5 {
        s.send(&ana, &room, &format!("m{i}"), &format!("t{i}")).await;
    }
    s.send(&ana, &other, "stays", "k1").await;
    let mut ben_ws = s.ws(&ben, None).await;

    let o = admin_async(&s.dir, &["room", "show", &room], None).await;
    let out = text(&o);
    assert!(o.status.success() && out.contains("name: General") && out.contains("(join)"), "{out}");
    // Without --yes nothing goes.
    let o = admin_async(&s.dir, &["room", "delete", &room], None).await;
    assert!(!o.status.success() && text(&o).contains("nothing deleted"), "{}", text(&o));
    assert_eq!(s.bodies(&ana, &room).await.len(), 5);

    let o = admin_async(&s.dir, &["room", "delete", &room, "--yes"], None).await;
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("memberships"), "{}", text(&o));
    let f = ben_ws.next_of("room_deleted").await;
    assert_eq!(f["room_id"], room.as_str());

    // Gone for everyone: the room, its messages, its place in room lists; the other room stays.
    assert_eq!(s.get(Some(&ana.token), &format!("/api/v1/rooms/{room}")).await.0, StatusCode::NOT_FOUND);
    let (st, _) = s.get(Some(&ana.token), &format!("/api/v1/rooms/{room}/messages")).await;
    assert!(st == StatusCode::NOT_FOUND || st == StatusCode::FORBIDDEN, "{st}");
    let (_, mine) = s.get(Some(&ben.token), "/api/v1/rooms").await;
    assert!(!mine.to_string().contains(&room), "{mine}");
    let (_, mine) = s.get(Some(&ana.token), "/api/v1/rooms").await;
    assert!(!mine.to_string().contains(&room) && mine.to_string().contains(&other), "{mine}");
    assert_eq!(s.bodies(&ana, &other).await, ["stays"]);
    // Ben's live connection goes on: a message in a room he joins later still reaches him.
    s.join(&ben, &other).await;
    s.send(&ana, &other, "after", "k2").await;
    let m = ben_ws.next_message().await;
    assert_eq!(m["event"]["content"]["body"], "after");
    let o = admin_async(&s.dir, &["room", "list", "--json"], None).await;
    let rooms: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(rooms.as_array().unwrap().len(), 1, "{rooms}");
    // Deleting it again: not found.
    let o = admin_async(&s.dir, &["room", "delete", &room, "--yes"], None).await;
    assert!(!o.status.success() && text(&o).contains("no room"), "{}", text(&o));
}

/// A form post from the page itself (same origin, cookie session).
async fn form(s: &TestServer, u: &User, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
    let r = s
        .http
        .post(format!("{}{path}", s.url))
        .header("cookie", format!("chat_token={}", u.token))
        .header("origin", &s.url)
        .form(fields)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn page(s: &TestServer, u: Option<&User>, path: &str) -> (StatusCode, String) {
    let mut r = s.http.get(format!("{}{path}", s.url));
    if let Some(u) = u {
        r = r.header("cookie", format!("chat_token={}", u.token));
    }
    let r = r.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn admin_page_for_server_admins_only() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    // Nobody is an administrator yet: the page is refused (anonymous users go to sign in).
    assert_eq!(page(&s, None, "/admin").await.0, StatusCode::SEE_OTHER);
    assert_eq!(page(&s, Some(&ana), "/admin").await.0, StatusCode::FORBIDDEN);
    assert_eq!(form(&s, &ana, "/admin/users/ben/disabled", &[("on", "1")]).await.0, StatusCode::FORBIDDEN);
    // Ben is not disabled: his session still works.
    assert_eq!(s.get(Some(&ben.token), "/api/v1/me").await.0, StatusCode::OK);

    let o = admin_async(&s.dir, &["user", "make-admin", "ana"], None).await;
    assert!(o.status.success(), "{}", text(&o));
    // Ben keeps 3,072 bytes of files: the page shows it in his row.
    let up = s.http.post(format!("{}/api/v1/media/upload?filename=a.txt", s.url)).bearer_auth(&ben.token);
    let up = up.header("content-type", "text/plain").body(vec![b'x'; 3072]).send().await.unwrap();
    assert_eq!(up.status(), StatusCode::OK);
    let (st, html) = page(&s, Some(&ana), "/admin").await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains(r#"data-username="ben""#) && html.contains(&room), "{html}");
    let ben_row = html.split(r#"data-username="ben""#).nth(1).unwrap().split("</tr>").next().unwrap();
    assert!(ben_row.contains(r#"<td data-label="Files">3.0 KB</td>"#), "{ben_row}");
    let (_, settings) = page(&s, Some(&ana), "/settings").await;
    assert!(settings.contains(r#"href="/admin""#));
    let (_, settings) = page(&s, Some(&ben), "/settings").await;
    assert!(!settings.contains(r#"href="/admin""#));

    // A cross-origin form post is refused even for the admin.
    let r = s
        .http
        .post(format!("{}/admin/users/ben/disabled", s.url))
        .header("cookie", format!("chat_token={}", ana.token))
        .header("origin", "http://evil.test")
        .form(&[("on", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.get(Some(&ben.token), "/api/v1/me").await.0, StatusCode::OK);

    // Create an account with a generated password, shown once on the page.
    let (st, html) = form(&s, &ana, "/admin/users", &[("username", "cleo"), ("password", "")]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    let pw = html.split("Password (shown once): ").nth(1).unwrap().split('<').next().unwrap();
    assert_eq!(login(&s, "cleo", pw).await.0, StatusCode::OK);
    // Disable Ben, then Ben's token is dead; the admin cannot disable herself.
    let (st, html) = form(&s, &ana, "/admin/users/ben/disabled", &[("on", "1")]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_eq!(s.get(Some(&ben.token), "/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    let (st, _) = form(&s, &ana, "/admin/users/ana/disabled", &[("on", "1")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = form(&s, &ana, "/admin/users/ben/disabled", &[("on", "maybe")]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    // Reset Cleo's password: the new one is shown, the old one stops working.
    let (st, html) = form(&s, &ana, "/admin/users/cleo/password", &[]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    let new_pw = html.split("signed out everywhere): ").nth(1).unwrap().split('<').next().unwrap();
    assert_eq!(login(&s, "cleo", pw).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&s, "cleo", new_pw).await.0, StatusCode::OK);

    // Deleting a room needs the confirmation box.
    let path = format!("/admin/rooms/{room}/delete");
    let room_path = format!("/api/v1/rooms/{room}");
    assert_eq!(form(&s, &ana, &path, &[]).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(s.get(Some(&ana.token), &room_path).await.0, StatusCode::OK);
    let (st, html) = form(&s, &ana, &path, &[("confirm", "yes")]).await;
    assert_eq!(st, StatusCode::OK, "{html}");
    assert_eq!(s.get(Some(&ana.token), &room_path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(form(&s, &ana, "/admin/rooms/not-a-room/delete", &[("confirm", "yes")]).await.0, StatusCode::NOT_FOUND);
}

/// Sign-ins racing a disable: whatever the order, none of them leaves a working session once
/// the disable is done (the account is checked again where the session is written).
#[tokio::test]
async fn sign_ins_racing_a_disable_leave_no_session() {
    let s = TestServer::start_tuned(|c| c.limits.logins_per_account_per_minute = 1000).await;
    s.register("ben").await;
    let logins: Vec<_> = (0..10)
        .map(|_| {
            let (http, url) = (s.http.clone(), s.url.clone());
            tokio::spawn(async move {
                let body = json!({"username": "ben", "password": "password123"});
                common::post_json(&http, &format!("{url}/api/v1/login"), None, body).await
            })
        })
        .collect();
    let o = admin_async(&s.dir, &["user", "disable", "ben"], None).await;
    assert!(o.status.success(), "{}", text(&o));
    let mut tokens = Vec::new();
    for l in logins {
        let (status, v) = l.await.unwrap();
        if status == StatusCode::OK {
            tokens.push(v["token"].as_str().unwrap().to_string());
        }
    }
    for t in &tokens {
        let (st, _) = s.get(Some(t), "/api/v1/me").await;
        assert!(
            matches!(st, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
            "a sign-in that raced the disable works"
        );
    }
}

/// An unknown name costs a password check like a wrong password, so answer times do not tell
/// which names exist.
#[tokio::test]
async fn unknown_names_cost_a_password_check() {
    let s = TestServer::start().await;
    s.register("ana").await;
    let before = s.metric("chat_password_checks_total").await.unwrap();
    assert_eq!(login(&s, "nobody", "password123").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.metric("chat_password_checks_total").await, Some(before + 1.0));
    assert_eq!(login(&s, "ana", "wrong-password").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.metric("chat_password_checks_total").await, Some(before + 2.0));
}

/// Someone who may not moderate a room gets the same refusal whether the target is banned or
/// not, and the settings form refuses them whether or not the name and topic they send are
/// already the room's.
#[tokio::test]
async fn outsiders_learn_nothing_from_moderation_or_settings() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let eve = s.register("eve").await;
    let mallory = s.register("mallory").await;
    s.join(&mallory, &room).await;
    let (st, v) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/ban"), json!({"user_id": eve.id})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for caller in [&ben, &mallory] {
        for (action, target) in [("unban", &eve), ("unban", &ana), ("kick", &eve), ("kick", &ana)] {
            let path = format!("/api/v1/rooms/{room}/{action}");
            let (st, v) = s.post(Some(&caller.token), &path, json!({"user_id": target.id})).await;
            assert_eq!(st, StatusCode::FORBIDDEN, "{} {action} {}: {v}", caller.name, target.name);
        }
    }
    let outsider = s.register("olga").await;
    for (name, topic) in [("General", ""), ("Guess", "a guess")] {
        let (st, _) =
            form(&s, &outsider, &format!("/rooms/{room}/settings"), &[("name", name), ("topic", topic)]).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "settings form with {name:?}/{topic:?}");
    }
}
