//! The public room directory (audit finding 4, second part): paginated and searchable in the
//! API and on the rooms page, whatever the number of public rooms; a room leaves it when it
//! becomes private or is deleted. Everything is seen through HTTP, as a client sees it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashSet;

use chat_testkit as common;
use chat_testkit::reqwest;

use common::{TestServer, User};
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, ORIGIN};
use serde_json::{Value, json};

/// Creates `n` public rooms named `{prefix} {i:04}` (topic `topic {i}`) concurrently; returns
/// their ids in `i` order.
async fn many_rooms(s: &TestServer, u: &User, prefix: &str, n: usize) -> Vec<String> {
    futures_util::stream::iter(0..n)
        .map(|i| async move {
            let body =
                json!({"name": format!("{prefix} {i:04}"), "topic": format!("topic {i}"), "visibility": "public"});
            let (st, v) = s.post(Some(&u.token), "/api/v1/rooms", body).await;
            assert_eq!(st, StatusCode::OK, "{v}");
            v["room_id"].as_str().unwrap().to_string()
        })
        .buffered(16)
        .collect()
        .await
}

/// `GET /api/v1/rooms/public` with these query parameters (already encoded).
async fn directory(s: &TestServer, u: &User, query: &str) -> (StatusCode, Value) {
    s.get(Some(&u.token), &format!("/api/v1/rooms/public?{query}")).await
}

fn ids(page: &Value) -> Vec<String> {
    page["rooms"].as_array().unwrap().iter().map(|r| r["room_id"].as_str().unwrap().to_string()).collect()
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Follows `next_batch` from the first page to the end; returns every page.
async fn all_pages(s: &TestServer, u: &User, extra: &str) -> Vec<Value> {
    let mut pages = Vec::new();
    let mut since: Option<String> = None;
    loop {
        let q = match &since {
            Some(t) => format!("{extra}&since={}", enc(t)),
            None => extra.to_string(),
        };
        let (st, page) = directory(s, u, &q).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        since = page["next_batch"].as_str().map(str::to_string);
        pages.push(page);
        if since.is_none() {
            return pages;
        }
        assert!(pages.len() < 1000, "the tokens never end");
    }
}

/// Every room id the directory lists, through all its pages.
async fn listed(s: &TestServer, u: &User) -> HashSet<String> {
    all_pages(s, u, "").await.iter().flat_map(ids).collect()
}

async fn page_html(s: &TestServer, u: &User, path_and_query: &str) -> (StatusCode, String) {
    let res = s
        .http
        .get(format!("{}{path_and_query}", s.url))
        .header(COOKIE, format!("chat_token={}", u.token))
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

/// The room ids listed in the directory section of a rooms page, in order.
fn listed_on_page(html: &str) -> Vec<String> {
    let section = html.split("id=\"public-rooms\"").nth(1).unwrap().split("</ul>").next().unwrap();
    section
        .split("<a class=\"name\" href=\"/rooms/")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect()
}

/// The href of the page's link with `rel`, HTML entities of a query string undone.
fn link(html: &str, rel: &str) -> Option<String> {
    let at = html.find(&format!("rel=\"{rel}\" href=\""))?;
    let href = html[at..].split("href=\"").nth(1)?.split('"').next()?;
    Some(href.replace("&amp;", "&"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_pages_through_every_public_room_once_in_a_stable_order() {
    let s = TestServer::start().await;
    let flood = s.register("flood").await;
    let ben = s.register("ben").await;
    let reader = s.register("reader").await;
    let rooms = many_rooms(&s, &flood, "Room", 250).await;
    for i in 0..5 {
        s.create_room(&flood, &format!("Hidden {i}"), "private").await;
    }
    // Rooms with more members come first: Ben joins three of them.
    let bigger = [&rooms[7], &rooms[200], &rooms[31]];
    for r in bigger {
        s.join(&ben, r).await;
    }

    let pages = all_pages(&s, &reader, "limit=100").await;
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0]["prev_batch"], Value::Null);
    assert_eq!(pages[0]["total"], 250);
    let seen: Vec<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(seen.len(), 250, "a room listed twice or missing");
    assert_eq!(seen.iter().collect::<HashSet<_>>(), rooms.iter().collect::<HashSet<_>>());
    // Most members first, then by name.
    let first: HashSet<&String> = seen[..3].iter().collect();
    assert_eq!(first, bigger.into_iter().collect::<HashSet<_>>());
    let rest: Vec<String> = pages
        .iter()
        .flat_map(|p| p["rooms"].as_array().unwrap().clone())
        .skip(3)
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = rest.clone();
    sorted.sort();
    assert_eq!(rest, sorted);
    let room = &pages[0]["rooms"][0];
    assert_eq!((room["members"].as_u64(), room["visibility"].as_str()), (Some(2), Some("public")), "{room}");
    assert_eq!(room["creator"], flood.id.as_str());

    // The default page is 30 rooms, and the same token gives the same page.
    let by_30 = all_pages(&s, &reader, "").await;
    assert_eq!(by_30.len(), 9);
    assert!(by_30[..8].iter().all(|p| ids(p).len() == 30));
    assert_eq!(by_30.iter().flat_map(ids).collect::<Vec<_>>(), seen);
    let token = by_30[3]["next_batch"].as_str().unwrap();
    let again = directory(&s, &reader, &format!("since={}", enc(token))).await.1;
    assert_eq!(ids(&again), ids(&by_30[4]));
    // prev_batch goes back a page.
    let back = directory(&s, &reader, &format!("since={}", enc(again["prev_batch"].as_str().unwrap()))).await.1;
    assert_eq!(ids(&back), ids(&by_30[3]));
    let back = directory(&s, &reader, &format!("since={}", enc(by_30[1]["prev_batch"].as_str().unwrap()))).await.1;
    assert_eq!(ids(&back), ids(&by_30[0]));
    assert_eq!(back["prev_batch"], Value::Null);

    // Bad parameters are refused with a reason.
    for q in ["limit=0", "limit=101", "limit=ten", "since=garbage", "since=n%21%21", &format!("q={}", "x".repeat(101))]
    {
        let (st, v) = directory(&s, &reader, q).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}: {v}");
        assert!(!v["message"].as_str().unwrap_or_default().is_empty(), "{q}: {v}");
    }
    // Signed-out callers get nothing.
    assert_eq!(s.get(None, "/api/v1/rooms/public").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_rooms_by_name_topic_and_alias() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    many_rooms(&s, &ana, "Filler", 60).await;
    let create = |body: Value| {
        let s = &s;
        let ana = &ana;
        async move {
            let (st, v) = s.post(Some(&ana.token), "/api/v1/rooms", body).await;
            assert_eq!(st, StatusCode::OK, "{v}");
            v["room_id"].as_str().unwrap().to_string()
        }
    };
    let by_name = create(json!({"name": "Knitting Circle", "visibility": "public"})).await;
    let by_topic =
        create(json!({"name": "Crafts", "topic": "All about KNITTING needles", "visibility": "public"})).await;
    let by_alias = create(json!({"name": "Yarn", "visibility": "public", "alias": "knit-together"})).await;
    create(json!({"name": "Knitting secrets", "visibility": "private"})).await;

    let pages = all_pages(&s, &ana, "q=kNiT").await;
    let found: HashSet<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(found, [by_name.clone(), by_topic.clone(), by_alias.clone()].into_iter().collect::<HashSet<_>>());
    let alias = pages.iter().flat_map(|p| p["rooms"].as_array().unwrap().clone()).find(|r| r["room_id"] == by_alias);
    assert_eq!(alias.unwrap()["alias"], format!("#knit-together:{}", s.addr));
    // Searches page too, and a search for nothing matching finds nothing.
    let pages = all_pages(&s, &ana, "q=filler&limit=25").await;
    assert_eq!(pages.iter().map(|p| ids(p).len()).sum::<usize>(), 60);
    assert_eq!(pages.len(), 3);
    let (_, none) = directory(&s, &ana, "q=crochet").await;
    assert_eq!(ids(&none), Vec::<String>::new());
    assert_eq!(none["next_batch"], Value::Null);
    // A blank search is no search.
    let (_, all) = directory(&s, &ana, "q=%20%20&limit=100").await;
    assert_eq!(ids(&all).len(), 63);

    // The rooms page searches with a plain GET form.
    let (st, html) = page_html(&s, &ana, "/rooms?q=Knit").await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.contains("<form class=\"row search\" method=\"get\" action=\"/rooms#directory\""), "{html}");
    assert!(html.contains("value=\"Knit\""), "the search box forgets the search");
    let listed: HashSet<String> = listed_on_page(&html).into_iter().collect();
    assert_eq!(listed, [by_name, by_topic, by_alias].into_iter().collect::<HashSet<_>>());
}

/// A search examines a bounded number of rooms per request (1000); one that stops there says
/// where to go on, and going on finds what lies further.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_is_bounded_and_goes_on_with_a_token() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    many_rooms(&s, &ana, "Room", 1050).await;
    // Sorted after every "Room …": the 1051st row.
    let needle = s.create_room(&ana, "Zebra crossing", "public").await;
    let (st, first) = directory(&s, &ana, "q=zebra").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(ids(&first), Vec::<String>::new(), "more than 1000 rooms examined in one request");
    let token = first["next_batch"].as_str().expect("a cut search gives a token");
    let (_, next) = directory(&s, &ana, &format!("q=zebra&since={}", enc(token))).await;
    assert_eq!(ids(&next), [needle]);
    assert_eq!(next["next_batch"], Value::Null);
    // The rooms page says so and links on.
    let (_, html) = page_html(&s, &ana, "/rooms?q=zebra").await;
    assert!(html.contains("Search further"), "{html}");
    let further = link(&html, "next").unwrap();
    let (_, html) = page_html(&s, &ana, &further).await;
    assert!(html.contains("Zebra crossing"));
}

/// The rooms page shows one page of the directory, whatever the number of public rooms (it
/// grew with every room before: 54 KB with 250 rooms), with links through the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rooms_page_stays_small_with_many_public_rooms() {
    let s = TestServer::start().await;
    let flood = s.register("flood").await;
    let reader = s.register("reader").await;
    let rooms = many_rooms(&s, &flood, "Flood room", 250).await;
    let (st, html) = page_html(&s, &reader, "/rooms").await;
    assert_eq!(st, StatusCode::OK);
    assert!(html.len() < 20_000, "the rooms page is {} bytes with 250 public rooms", html.len());
    assert!(html.contains(">250 rooms<"), "the page does not say how many rooms there are");
    let mut seen = Vec::new();
    let mut html = html;
    loop {
        let page = listed_on_page(&html);
        assert!(!page.is_empty() && page.len() <= 30, "{} rooms on one page", page.len());
        seen.extend(page);
        match link(&html, "next") {
            Some(next) => {
                assert!(next.starts_with("/rooms?since="), "{next}");
                let (st, body) = page_html(&s, &reader, &next).await;
                assert_eq!(st, StatusCode::OK);
                assert!(link(&body, "prev").is_some(), "no way back");
                html = body;
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 250);
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), rooms.into_iter().collect::<HashSet<_>>());
    // The reader joins from the directory; the room then shows "View".
    let (_, html) = page_html(&s, &reader, "/rooms").await;
    let first = listed_on_page(&html).remove(0);
    assert!(html.contains(&format!("action=\"/rooms/{first}/join\"")));
    let res = s
        .http
        .post(format!("{}/rooms/{first}/join", s.url))
        .header(COOKIE, format!("chat_token={}", reader.token))
        .header(ORIGIN, &s.url)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, html) = page_html(&s, &reader, "/rooms").await;
    assert!(!html.contains(&format!("action=\"/rooms/{first}/join\"")), "still offered to join");
    // A bad token is a 400 page, not a server error.
    assert_eq!(page_html(&s, &reader, "/rooms?since=nope").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_leave_the_directory_when_made_private_or_deleted() {
    let s = TestServer::start().await;
    let ana = s.register("ana").await;
    let ben = s.register("ben").await;
    let kept = s.create_room(&ana, "Kept", "public").await;
    let private = s.create_room(&ana, "Goes private", "public").await;
    let deleted = s.create_room(&ben, "Deleted", "public").await;
    assert_eq!(listed(&s, &ben).await.len(), 3);

    let settings = |room: &str| format!("/api/v1/rooms/{room}/settings");
    // Only who may change the room's state may change its visibility.
    let (st, _) = s.post(Some(&ben.token), &settings(&private), json!({"visibility": "private"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, v) = s.post(Some(&ana.token), &settings(&private), json!({"visibility": "secret"})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, v) = s.post(Some(&ana.token), &settings(&private), json!({"visibility": "private"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(listed(&s, &ben).await, [kept.clone(), deleted.clone()].into_iter().collect::<HashSet<_>>());
    let (_, room) = s.get(Some(&ana.token), &format!("/api/v1/rooms/{private}")).await;
    assert_eq!(room["visibility"], "private");
    let (_, html) = page_html(&s, &ben, "/rooms").await;
    assert!(!html.contains("Goes private"));
    // Renamed, it moves in the directory; public again, it is back.
    let (st, _) =
        s.post(Some(&ana.token), &settings(&private), json!({"visibility": "public", "name": "Aardvark"})).await;
    assert_eq!(st, StatusCode::OK);
    let (_, page) = directory(&s, &ben, "").await;
    let names: Vec<&str> = page["rooms"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Aardvark", "Deleted", "Kept"]);
    // Ben joins "Kept": two members, first.
    s.join(&ben, &kept).await;
    let (_, page) = directory(&s, &ben, "").await;
    assert_eq!(ids(&page)[0], kept);
    assert_eq!(page["rooms"][0]["members"], 2);
    // When Ben leaves, it counts one member again.
    let (st, _) = s.post(Some(&ben.token), &format!("/api/v1/rooms/{kept}/leave"), json!({})).await;
    assert_eq!(st, StatusCode::OK);
    let (_, page) = directory(&s, &ben, "").await;
    assert_eq!(ids(&page)[2], kept);

    // The room's settings form does the same without JavaScript.
    let form = |visibility: &'static str| {
        s.http
            .post(format!("{}/rooms/{kept}/settings", s.url))
            .header(COOKIE, format!("chat_token={}", ana.token))
            .header(ORIGIN, &s.url)
            .form(&[("name", "Kept"), ("topic", ""), ("visibility", visibility)])
            .send()
    };
    let (_, html) = page_html(&s, &ana, &format!("/rooms/{kept}")).await;
    assert!(html.contains("name=\"visibility\" value=\"public\" checked"), "the form does not show the room public");
    assert_eq!(form("private").await.unwrap().status(), StatusCode::SEE_OTHER);
    assert!(!listed(&s, &ben).await.contains(&kept));
    let (_, html) = page_html(&s, &ana, &format!("/rooms/{kept}")).await;
    assert!(html.contains("name=\"visibility\" value=\"private\" checked"), "the form does not show the room private");
    assert!(html.contains("made the room invite-only"));
    assert_eq!(form("hidden").await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(form("public").await.unwrap().status(), StatusCode::SEE_OTHER);
    assert!(listed(&s, &ben).await.contains(&kept));

    // Deleted by the administrator: gone from the directory and its count.
    let o = common::cli_async(&s.dir, &["admin", "room", "delete", &deleted, "--yes"], None).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(listed(&s, &ben).await, [kept.clone(), private.clone()].into_iter().collect::<HashSet<_>>());
    assert_eq!(directory(&s, &ben, "").await.1["total"], 2);
    assert_eq!(directory(&s, &ben, "q=deleted").await.1["rooms"], json!([]));
}
