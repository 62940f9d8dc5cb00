//! Server-rendered pages and the no-JavaScript form flows, with cookies as a browser sends them.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest;

use common::TestServer;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};

fn token_from(res: &reqwest::Response) -> String {
    let c = res.headers()[SET_COOKIE].to_str().unwrap();
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");
    c.split(';').next().unwrap().strip_prefix("chat_token=").unwrap().to_string()
}

#[tokio::test]
async fn forms_work_without_javascript() {
    let s = TestServer::start().await;
    let url = |p: &str| format!("{}{p}", s.url);

    // Signed-out visitors are sent to the sign-in page.
    let res = s.http.get(url("/rooms")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[LOCATION], "/login");
    let res = s.http.get(url("/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    assert!(html.contains("<form class=\"signin\" method=\"post\" action=\"/login\""));

    // Register with the form: a cookie and a redirect to the rooms page.
    let res = s
        .http
        .post(url("/register"))
        .header(ORIGIN, &s.url)
        .form(&[("username", "Ana"), ("password", "password123")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let token = token_from(&res);
    let cookie = format!("chat_token={token}");

    // Create a room with the form; the page shows it.
    let res = s
        .http
        .post(url("/rooms"))
        .header(COOKIE, &cookie)
        .header(ORIGIN, &s.url)
        .form(&[("name", "Garden"), ("topic", "Roses & <tulips>"), ("visibility", "public")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let room_path = res.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(room_path.starts_with("/rooms/!"));
    let html = s.http.get(url(&room_path)).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("Garden") && html.contains("Roses &amp; &lt;tulips&gt;"), "topic not escaped");
    let txn = html.split("name=\"txn_id\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();

    // Send with the plain form (twice, as a double-submitted form would): one message.
    for _ in 0..2 {
        let res = s
            .http
            .post(url(&format!("{room_path}/send")))
            .header(COOKIE, &cookie)
            .header(ORIGIN, &s.url)
            .form(&[("body", "<b>bold?</b>"), ("txn_id", txn.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    let html = s.http.get(url(&room_path)).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    let timeline = &html[html.find("id=\"timeline\"").expect("a timeline")..];
    assert_eq!(timeline.matches("&lt;b&gt;bold?&lt;/b&gt;").count(), 1, "message missing, doubled or unescaped");
    assert!(!html.contains("<b>bold?</b>"));
    // The room list previews it, escaped too.
    assert!(html.contains("You: &lt;b&gt;bold?&lt;/b&gt;"), "no preview in the room list");

    // The creator renames the room with the settings form; the topic stays as it was.
    let res = s
        .http
        .post(url(&format!("{room_path}/settings")))
        .header(COOKIE, &cookie)
        .header(ORIGIN, &s.url)
        .form(&[("name", "Rose garden"), ("topic", "Roses & <tulips>")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let html = s.http.get(url(&room_path)).header(COOKIE, &cookie).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("named the room “Rose garden”"), "rename not in the timeline");
    assert_eq!(html.matches("set the topic:").count(), 1, "an unchanged topic was set again");

    // The same form from another origin is refused and stores nothing.
    let before = s.stream_pos().await;
    let res = s
        .http
        .post(url(&format!("{room_path}/send")))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "http://evil.example")
        .form(&[("body", "csrf"), ("txn_id", "csrf-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = s
        .http
        .post(url("/login"))
        .header(ORIGIN, "http://evil.example")
        .form(&[("username", "ana"), ("password", "password123")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.stream_pos().await, before);

    // Infinite scroll fragment: older events behind a cursor.
    let res = s.http.get(url(&format!("{room_path}/history?before=3"))).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let frag = res.text().await.unwrap();
    assert!(frag.starts_with("<template") && frag.contains("created the room"), "{frag}");

    // Security headers on pages.
    let res = s.http.get(url("/login")).send().await.unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");

    // Sign out: the cookie is cleared and the token no longer works.
    let res = s.http.post(url("/logout")).header(COOKIE, &cookie).header(ORIGIN, &s.url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(res.headers()[SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    let res = s.http.get(url("/rooms")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(res.headers()[LOCATION], "/login");

    // Wrong password on the form: the page says so, with 401.
    let res = s
        .http
        .post(url("/login"))
        .header(ORIGIN, &s.url)
        .form(&[("username", "ana"), ("password", "wrong-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.text().await.unwrap().contains("wrong username or password"));
    s.stop().await;
}

#[tokio::test]
async fn assets_are_versioned_gzipped_and_kept() {
    let s = TestServer::start().await;
    let page = s.http.get(format!("{}/login", s.url)).send().await.unwrap().text().await.unwrap();
    // Pages name the client's files under a version: a hash of their content.
    let at = page.find("/assets/").unwrap() + "/assets/".len();
    let version = &page[at..at + 12];
    assert!(version.bytes().all(|b| b.is_ascii_hexdigit()), "{version}");
    let app = format!("{}/assets/{version}/app.js", s.url);
    assert!(page.contains(&format!(r#"src="/assets/{version}/app.js""#)));
    let get = |url: String, enc: &'static str| s.http.get(url).header("accept-encoding", enc).send();
    let plain = get(app.clone(), "identity").await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert!(plain.headers()["content-type"].to_str().unwrap().contains("javascript"));
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.headers()["cache-control"], "public, max-age=31536000, immutable");
    let plain = plain.bytes().await.unwrap();
    // Gzipped for a browser that takes it (made at build time), and the same bytes unzipped.
    let res = get(app.clone(), "gzip, deflate, br").await.unwrap();
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert_eq!(res.headers()["vary"], "accept-encoding");
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    let zipped = res.bytes().await.unwrap();
    assert!(zipped.len() * 2 < plain.len(), "{} of {}", zipped.len(), plain.len());
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut unzipped).unwrap();
    assert!(unzipped == plain.as_ref(), "the gzip copy is of other bytes");
    // `q=0` refuses gzip.
    let res = get(app.clone(), "gzip;q=0").await.unwrap();
    assert!(res.headers().get("content-encoding").is_none());
    let res = s.http.get(app.clone()).header("accept-encoding", "gzip").header("if-none-match", &etag).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::NOT_MODIFIED);
    // Without the version, or under another one (a page of the last release): revalidated.
    for old in [format!("{}/assets/app.js", s.url), format!("{}/assets/0123456789ab/app.js", s.url)] {
        let res = get(old, "identity").await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["cache-control"], "no-cache");
        assert!(res.bytes().await.unwrap() == plain);
    }
    // The icon is there too; nothing outside the assets is served.
    let res = get(format!("{}/assets/{version}/icon.svg", s.url), "gzip").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for bad in ["../Cargo.toml", "{version}/../../Cargo.toml", "{version}/nope.js", "{version}/"] {
        let url = format!("{}/assets/{}", s.url, bad.replace("{version}", version));
        assert_eq!(get(url, "gzip").await.unwrap().status(), StatusCode::NOT_FOUND, "{bad}");
    }
    s.stop().await;
}

#[tokio::test]
async fn the_app_has_a_manifest_a_service_worker_and_an_offline_page() {
    let s = TestServer::start().await;
    let res = s.http.get(format!("{}/manifest.webmanifest", s.url)).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "application/manifest+json");
    let m: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        (m["name"].as_str(), m["start_url"].as_str(), m["display"].as_str()),
        (Some("chat"), Some("/rooms"), Some("standalone"))
    );
    // Every icon is there, PNGs at the size they claim, one of them maskable.
    for icon in m["icons"].as_array().unwrap() {
        let res = s.http.get(format!("{}{}", s.url, icon["src"].as_str().unwrap())).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{icon}");
        if icon["type"] == "image/png" {
            let img = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
            assert_eq!(format!("{}x{}", img.width(), img.height()), icon["sizes"].as_str().unwrap());
        }
    }
    assert!(m["icons"].as_array().unwrap().iter().any(|i| i["purpose"] == "maskable"));
    // The worker names this release's shell: the versioned assets and the offline page.
    let page = s.http.get(format!("{}/login", s.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"<link rel="manifest" href="/manifest.webmanifest">"#));
    let at = page.find("/assets/").unwrap() + "/assets/".len();
    let version = &page[at..at + 12];
    let res = s.http.get(format!("{}/sw.js", s.url)).send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "no-cache");
    let sw = res.text().await.unwrap();
    assert!(sw.contains(&format!("const VERSION = '{version}';")), "{sw}");
    assert!(sw.contains(&format!(r#""/assets/{version}/app.js""#)) && sw.contains(r#""/offline""#), "{sw}");
    assert!(!sw.contains("__SHELL__") && !sw.contains("__VERSION__"));
    let res = s.http.get(format!("{}/offline", s.url)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("You are offline"));
    s.stop().await;
}

/// A page as the browser gets it: status, the redirect if any, the HTML.
async fn visit(s: &TestServer, token: Option<&str>, path: &str) -> (StatusCode, String, String) {
    let mut r = s.http.get(format!("{}{path}", s.url));
    if let Some(t) = token {
        r = r.header(COOKIE, format!("chat_token={t}"));
    }
    let res = r.send().await.unwrap();
    let to = res.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
    (res.status(), to, res.text().await.unwrap())
}

async fn form(s: &TestServer, token: Option<&str>, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
    let mut r = s.http.post(format!("{}{path}", s.url)).header(ORIGIN, &s.url).form(fields);
    if let Some(t) = token {
        r = r.header(COOKIE, format!("chat_token={t}"));
    }
    let res = r.send().await.unwrap();
    let to = res.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
    (res.status(), to)
}

#[tokio::test]
async fn links_survive_sign_in_and_closed_rooms_say_why() {
    use serde_json::json;
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let room = s.create_room(&ana, "Secret", "private").await;
    let room_path = format!("/rooms/{room}");

    // A link to the room opened while signed out: sign-in, then the room.
    let (st, to, _) = visit(&s, None, &room_path).await;
    assert_eq!((st, to.as_str()), (StatusCode::SEE_OTHER, format!("/login?next={room_path}").as_str()));
    let (_, _, html) = visit(&s, None, &to).await;
    assert!(html.contains(&format!("name=\"next\" value=\"{room_path}\"")), "{html}");
    assert!(html.contains(&format!("href=\"/register?next={room_path}\"")));
    let login = [("username", "ana"), ("password", "password123"), ("next", room_path.as_str())];
    assert_eq!(form(&s, None, "/login", &login).await, (StatusCode::SEE_OTHER, room_path.clone()));
    // Only paths of this site: another site, however written, lands on the room list.
    for evil in ["//evil.example/x", "https://evil.example/", "/\\evil.example", "rooms"] {
        let login = [("username", "ana"), ("password", "password123"), ("next", evil)];
        assert_eq!(form(&s, None, "/login", &login).await, (StatusCode::SEE_OTHER, "/rooms".into()), "{evil}");
    }
    // A failed sign-in keeps where it was going.
    let wrong = [("username", "ana"), ("password", "wrong-password"), ("next", room_path.as_str())];
    let res = s.http.post(format!("{}/login", s.url)).header(ORIGIN, &s.url).form(&wrong).send().await.unwrap();
    assert!(res.text().await.unwrap().contains(&format!("name=\"next\" value=\"{room_path}\"")));

    // Someone never in the private room learns that it is private, not its name.
    let ben = s.register("ben").await;
    let (st, _, html) = visit(&s, Some(&ben.token), &room_path).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(html.contains("This room is private") && !html.contains("Secret"), "{html}");

    // Invited: who invited, the room's name and topic, how many are in it.
    s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/settings"), json!({"name": "Secret", "topic": "Plans"}))
        .await;
    let (st, _) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/invite"), json!({"user_id": ben.id})).await;
    assert_eq!(st, StatusCode::OK);
    let (_, _, html) = visit(&s, Some(&ben.token), &room_path).await;
    assert!(html.contains("invited you to <strong>Secret</strong>"), "{html}");
    assert!(html.contains(">ana</strong>") && html.contains("Plans") && html.contains("1 member<"), "{html}");

    // Joining a room one is in just opens it, by its page's button or by its address.
    let join = format!("{room_path}/join");
    assert_eq!(form(&s, Some(&ben.token), &join, &[]).await, (StatusCode::SEE_OTHER, room_path.clone()));
    assert_eq!(form(&s, Some(&ben.token), &join, &[]).await, (StatusCode::SEE_OTHER, room_path.clone()));
    assert_eq!(
        form(&s, Some(&ben.token), "/join", &[("room", &room)]).await,
        (StatusCode::SEE_OTHER, room_path.clone())
    );

    // Left, removed, banned: each says so, with the way back.
    form(&s, Some(&ben.token), &format!("{room_path}/leave"), &[]).await;
    let (st, _, html) = visit(&s, Some(&ben.token), &room_path).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(html.contains("You left Secret") && html.contains("invite you again"), "{html}");
    s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/invite"), json!({"user_id": ben.id})).await;
    form(&s, Some(&ben.token), &join, &[]).await;
    let (st, v) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/kick"), json!({"user_id": ben.id})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, _, html) = visit(&s, Some(&ben.token), &room_path).await;
    assert!(html.contains("You were removed from Secret") && html.contains("ana removed you"), "{html}");
    s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/ban"), json!({"user_id": ben.id})).await;
    let (_, _, html) = visit(&s, Some(&ben.token), &room_path).await;
    assert!(html.contains("You are banned from Secret"), "{html}");
    s.stop().await;
}
