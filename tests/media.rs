//! Files through the API: upload and download with the real server and store (bytes equal,
//! stored once), the size limit and the quota, ranges, who may download, how hostile types
//! are served, file messages, and the collection of files no message shares any more.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::reqwest::{self, StatusCode};

use common::{TestServer, User};
use serde_json::{Value, json};

/// Uploads `bytes` as `name` with `content_type`; the status and the answer.
async fn upload(s: &TestServer, u: &User, name: &str, content_type: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let url = format!("{}/api/v1/media/upload?filename={}", s.url, chat::federation::urlencode(name));
    let req = s.http.post(url).bearer_auth(&u.token).header("content-type", content_type).body(bytes);
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

fn download_path(uri: &str) -> String {
    format!("/api/v1/media/download/{}", uri.strip_prefix("mxc://").unwrap())
}

async fn download(s: &TestServer, u: &User, uri: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = s.http.get(format!("{}{}", s.url, download_path(uri))).bearer_auth(&u.token);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.unwrap()
}

async fn send_file(s: &TestServer, u: &User, room: &str, uri: &str, caption: &str, txn: &str) -> (StatusCode, Value) {
    let body = json!({"txn_id": txn, "body": caption, "file": {"content_uri": uri, "w": 800, "h": 600}});
    s.post(Some(&u.token), &format!("/api/v1/rooms/{room}/messages"), body).await
}

/// Files under the data directory's blob store.
fn blob_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("media/blobs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() { stack.push(e.path()) } else { out.push(e.path()) }
        }
    }
    out
}

#[tokio::test]
async fn a_file_shared_in_a_room_is_downloaded_by_its_members_only() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let cara = s.register("cara").await;
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (st, up) = upload(&s, &ana, "photo.png", "image/png", bytes.clone()).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    let uri = up["content_uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("mxc://"), "{up}");
    assert_eq!((up["size"].as_u64(), up["content_type"].as_str()), (Some(300_000), Some("image/png")));
    // Not shared yet: the uploader may read it, nobody else.
    assert_eq!(download(&s, &ana, &uri, None).await.status(), StatusCode::OK);
    assert_eq!(download(&s, &ben, &uri, None).await.status(), StatusCode::NOT_FOUND);

    // Sent into the room: an m.image with its info; Ben now reads the same bytes.
    let (st, v) = send_file(&s, &ana, &room, &uri, "our garden", "f1").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["event_id"].as_str().unwrap().to_string();
    let (_, ev) = s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/events/{id}")).await;
    let c = &ev["content"];
    assert_eq!(
        (c["msgtype"].as_str(), c["url"].as_str(), c["body"].as_str()),
        (Some("m.image"), Some(uri.as_str()), Some("our garden"))
    );
    assert_eq!(
        (c["filename"].as_str(), c["info"]["size"].as_u64(), c["info"]["w"].as_u64()),
        (Some("photo.png"), Some(300_000), Some(800))
    );
    let res = download(&s, &ben, &uri, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-security-policy"].to_str().unwrap().starts_with("sandbox"));
    assert!(h["content-disposition"].to_str().unwrap().starts_with("inline"));
    assert_eq!(res.bytes().await.unwrap().as_ref(), bytes.as_slice());
    // Cara, in no room with it, gets nothing; she joins, and may.
    assert_eq!(download(&s, &cara, &uri, None).await.status(), StatusCode::NOT_FOUND);
    s.join(&cara, &room).await;
    assert_eq!(download(&s, &cara, &uri, None).await.status(), StatusCode::OK);
    // Signed out: 401.
    assert_eq!(s.http.get(format!("{}{}", s.url, download_path(&uri))).send().await.unwrap().status(), 401);

    // Ranges, for seeking.
    let res = download(&s, &ben, &uri, Some("bytes=1000-1999")).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.headers()["content-range"], "bytes 1000-1999/300000");
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[1000..2000]);
    let res = download(&s, &ben, &uri, Some("bytes=-10")).await;
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[299_990..]);
    let res = download(&s, &ben, &uri, Some("bytes=300000-")).await;
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(res.headers()["content-range"], "bytes */300000");

    // Ben may not send Ana's upload as his; nor an edit with a file; nor a made-up file.
    let (st, _) = send_file(&s, &ben, &room, &uri, "", "f2").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = send_file(&s, &ana, &room, &format!("{uri}x"), "", "f3").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = send_file(&s, &ana, &room, "mxc://elsewhere.example/abc", "", "f4").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let edit = json!({"txn_id": "f5", "body": "x", "replaces": id, "file": {"content_uri": uri}});
    assert_eq!(
        s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/messages"), edit).await.0,
        StatusCode::BAD_REQUEST
    );

    // The same bytes again: a second upload, one blob.
    let (st, again) = upload(&s, &ben, "copy.png", "image/png", bytes.clone()).await;
    assert_eq!(st, StatusCode::OK, "{again}");
    assert_ne!(again["content_uri"], up["content_uri"]);
    assert_eq!(blob_files(&s.dir).len(), 1);
    // The room page shows the image with its space reserved.
    let page = s.http.get(format!("{}/rooms/{room}", s.url)).header("cookie", format!("chat_token={}", ben.token));
    let page = page.send().await.unwrap().text().await.unwrap();
    let media_id = uri.rsplit('/').next().unwrap();
    assert!(page.contains(&format!("{media_id}\" alt=\"photo.png\"")), "no image on the page");
    assert!(page.contains("width=\"360\" height=\"270\""), "the image's size is not reserved");
    s.stop().await;
}

#[tokio::test]
async fn hostile_files_are_served_as_downloads_that_run_nothing() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let cases = [
        ("page.html", "text/html", "<script>alert(1)</script>"),
        ("pic.svg", "image/svg+xml", "<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>"),
        // A page claiming to be a PNG: served as a PNG, which a browser will not run.
        ("fake.png", "image/png", "<html><script>alert(1)</script></html>"),
        ("odd", "text/html, image/png", "x"),
        ("empty.txt", "text/plain", ""),
    ];
    for (i, (name, ty, body)) in cases.into_iter().enumerate() {
        let (st, up) = upload(&s, &ana, name, ty, body.as_bytes().to_vec()).await;
        assert_eq!(st, StatusCode::OK, "{name}: {up}");
        let uri = up["content_uri"].as_str().unwrap();
        let (st, v) = send_file(&s, &ana, &room, uri, "", &format!("h{i}")).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let res = download(&s, &ben, uri, None).await;
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        let disposition = h["content-disposition"].to_str().unwrap();
        assert!(h["content-security-policy"].to_str().unwrap().starts_with("sandbox"), "{name}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.get("x-evil").is_none());
        match name {
            "fake.png" => assert_eq!(h["content-type"], "image/png"),
            "empty.txt" => assert_eq!(
                (h["content-type"].to_str().unwrap(), h["content-length"].to_str().unwrap()),
                ("text/plain", "0")
            ),
            _ => {
                assert_eq!(h["content-type"], "application/octet-stream", "{name}");
                assert!(disposition.starts_with("attachment"), "{name}: {disposition}");
            }
        }
        assert_eq!(res.bytes().await.unwrap().as_ref(), body.as_bytes());
    }
    s.stop().await;
}

#[tokio::test]
async fn sizes_over_the_limit_and_the_quota_are_refused_and_store_nothing() {
    let s = TestServer::start_tuned(|c| {
        c.limits.max_upload_bytes = 100_000;
        c.limits.upload_quota_bytes = 250_000;
    })
    .await;
    let ana = s.register("ana").await;
    // At the limit: taken; one byte over: 413 with a clear message, before anything is kept.
    let (st, v) = upload(&s, &ana, "a.bin", "application/octet-stream", vec![1; 100_000]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = upload(&s, &ana, "b.bin", "application/octet-stream", vec![2; 100_001]).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["message"].as_str().unwrap().contains("larger than"), "{v}");
    // Without a Content-Length (a stream): cut off at the limit the same way.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..30).map(|_| Ok(vec![3u8; 5_000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let url = format!("{}/api/v1/media/upload?filename=s.bin", s.url);
    let res = s.http.post(url).bearer_auth(&ana.token).body(body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The quota: 100,000 used of 250,000; 100,000 more fits, then nothing does.
    let (st, _) = upload(&s, &ana, "c.bin", "application/octet-stream", vec![4; 100_000]).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = upload(&s, &ana, "d.bin", "application/octet-stream", vec![5; 60_000]).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["message"].as_str().unwrap().contains("quota"), "{v}");
    // Two blobs, and nothing half-written left behind.
    assert_eq!(blob_files(&s.dir).len(), 2);
    let leftovers = std::fs::read_dir(s.dir.join("media/tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "temporary files left");
    // Malformed requests: no file name needed, but a bad query is 400.
    let (st, v) = upload(&s, &ana, &"n".repeat(300), "text/plain", b"x".to_vec()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn a_deleted_file_message_lets_its_file_be_collected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // The same address each time: it is the server's name, which names its files.
    let config = |listen: std::net::SocketAddr| {
        let mut c = chat::Config::with_data_dir(&dir);
        common::relax_rates(&mut c);
        c.listen = listen;
        c.turn.listen = Some("127.0.0.1:0".parse().unwrap());
        c.metrics_listen = None;
        c.limits.unshared_upload_grace_secs = 0;
        c
    };
    let s = TestServer::start_at(config("127.0.0.1:0".parse().unwrap())).await;
    let addr = s.addr;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let (_, kept) = upload(&s, &ana, "kept.txt", "text/plain", b"kept".to_vec()).await;
    let (_, gone) = upload(&s, &ana, "gone.txt", "text/plain", b"gone".to_vec()).await;
    let (kept, gone) =
        (kept["content_uri"].as_str().unwrap().to_string(), gone["content_uri"].as_str().unwrap().to_string());
    send_file(&s, &ana, &room, &kept, "", "k1").await;
    let (_, v) = send_file(&s, &ana, &room, &gone, "", "g1").await;
    let id = v["event_id"].as_str().unwrap().to_string();
    let (st, _) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/redact"), json!({"event_id": id})).await;
    assert_eq!(st, StatusCode::OK);
    // Deleted: nobody may read it any more (Ana, its uploader, neither once it is collected).
    assert_eq!(download(&s, &ben, &gone, None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(blob_files(&dir).len(), 2);
    s.stop().await;
    // Collection runs at start: the deleted message's file is gone, the other stays.
    let s = TestServer::start_at(config(addr)).await;
    common::eventually!(10, "the file is collected", blob_files(&dir).len() == 1);
    assert_eq!(download(&s, &ana, &gone, None).await.status(), StatusCode::NOT_FOUND);
    let res = download(&s, &ben, &kept, None).await;
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"kept");
    s.stop().await;
}
