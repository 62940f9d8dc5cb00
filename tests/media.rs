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

/// A PNG of w×h pixels (noise, so it does not compress away).
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 + y * 13) as u8, (x ^ y) as u8, (x * y) as u8]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// A JPEG of w×h (left half red, right half blue) with an EXIF segment that holds
/// `orientation` and a GPS position's text.
fn jpeg_with_exif(w: u32, h: u32, orientation: u16) -> Vec<u8> {
    let img = image::RgbImage::from_fn(
        w,
        h,
        |x, _| if x < w / 2 { image::Rgb([255, 0, 0]) } else { image::Rgb([0, 0, 255]) },
    );
    let mut plain = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90).encode_image(&img).unwrap();
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01".to_vec();
    tiff.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01]);
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    tiff.extend_from_slice(b"GPSLatitude 48.8584 N GPSLongitude 2.2945 E");
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = plain[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&plain[2..]);
    out
}

/// CRC-32 (as PNG chunks carry it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// The start of a PNG claiming `w` × `h` pixels (a valid header, no pixels).
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    png
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
    let bytes = png(1200, 900);
    let size = bytes.len() as u64;
    let (st, up) = upload(&s, &ana, "photo.png", "image/png", bytes.clone()).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    let uri = up["content_uri"].as_str().unwrap().to_string();
    assert!(uri.starts_with("mxc://"), "{up}");
    assert_eq!((up["size"].as_u64(), up["content_type"].as_str()), (Some(size), Some("image/png")));
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
    // The size the server measured, not the one the client said (800 × 600).
    assert_eq!((c["filename"].as_str(), c["info"]["size"].as_u64()), (Some("photo.png"), Some(size)));
    assert_eq!((c["info"]["w"].as_u64(), c["info"]["h"].as_u64()), (Some(1200), Some(900)));
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
    assert_eq!(res.headers()["content-range"], format!("bytes 1000-1999/{size}"));
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[1000..2000]);
    let res = download(&s, &ben, &uri, Some("bytes=-10")).await;
    assert_eq!(res.bytes().await.unwrap().as_ref(), &bytes[bytes.len() - 10..]);
    let res = download(&s, &ben, &uri, Some(&format!("bytes={size}-"))).await;
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(res.headers()["content-range"], format!("bytes */{size}"));
    // The timeline's thumbnail: at most 800 pixels a side, the same proportions.
    let thumb = s.http.get(format!("{}{}", s.url, download_path(&uri).replace("/download/", "/thumbnail/")));
    let res = thumb.bearer_auth(&ben.token).send().await.unwrap();
    assert_eq!((res.status(), res.headers()["content-type"].to_str().unwrap()), (StatusCode::OK, "image/jpeg"));
    let small = image::load_from_memory(&res.bytes().await.unwrap()).unwrap();
    assert_eq!((small.width(), small.height()), (800, 600));

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
    assert_eq!(blob_files(&s.dir).len(), 2, "the photo and its thumbnail, once");
    // The room page shows the image (its thumbnail) with its space reserved.
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
        // A page claiming to be a PNG: it does not decode, so it is a download like any file.
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
            // Not the image it claims to be: kept as a file, to download.
            "fake.png" => assert_eq!(h["content-type"], "application/octet-stream"),
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

#[tokio::test]
async fn photos_lose_their_location_are_turned_upright_and_bombs_are_refused() {
    let s = TestServer::start().await;
    let (ana, _ben, room) = s.ana_and_ben_in_general().await;
    // Upright, with a GPS position in its EXIF: stored without it, pixels as they were.
    let (st, up) = upload(&s, &ana, "here.jpg", "image/jpeg", jpeg_with_exif(64, 48, 1)).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    let uri = up["content_uri"].as_str().unwrap().to_string();
    let stored = download(&s, &ana, &uri, None).await.bytes().await.unwrap();
    assert!(!stored.windows(3).any(|w| w == b"GPS"), "the position is still in the stored photo");
    assert!(!stored.windows(4).any(|w| w == b"Exif"));
    let img = image::load_from_memory(&stored).unwrap();
    assert_eq!((img.width(), img.height()), (64, 48));
    // Taken turned (EXIF orientation 6): stored turned upright, 48 × 64, and sent as such.
    let (_, up) = upload(&s, &ana, "turned.jpg", "image/jpeg", jpeg_with_exif(64, 48, 6)).await;
    let turned = up["content_uri"].as_str().unwrap().to_string();
    let stored = download(&s, &ana, &turned, None).await.bytes().await.unwrap();
    let img = image::load_from_memory(&stored).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (48, 64));
    // The left half (red) is now the top half.
    assert!(img.get_pixel(24, 5)[0] > 200 && img.get_pixel(24, 58)[2] > 200, "not turned the camera's way");
    let send = json!({"txn_id": "t1", "body": "", "file": {"content_uri": turned}});
    let (_, v) = s.post(Some(&ana.token), &format!("/api/v1/rooms/{room}/messages"), send).await;
    let id = v["event_id"].as_str().unwrap();
    let (_, ev) = s.get(Some(&ana.token), &format!("/api/v1/rooms/{room}/events/{id}")).await;
    assert_eq!((ev["content"]["info"]["w"].as_u64(), ev["content"]["info"]["h"].as_u64()), (Some(48), Some(64)));
    // Its placeholder (a BlurHash, as Element sends it) is the picture blurred: red above, blue
    // below; the room page shows it under the picture.
    let hash = ev["content"]["info"]["xyz.amorgan.blurhash"].as_str().expect("a blurhash").to_string();
    let blur = image::load_from_memory(&chat::media::images::blurhash_png(&hash).unwrap()).unwrap().to_rgb8();
    let (top, bottom) = (blur.get_pixel(4, 0), blur.get_pixel(4, 5));
    assert!(top[0] > top[2] && bottom[2] > bottom[0], "{hash}: top {top:?}, bottom {bottom:?}");
    let page = s
        .http
        .get(format!("{}/rooms/{room}", s.url))
        .header("cookie", format!("chat_token={}", ana.token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<img class="ph" src="data:image/png;base64,"#), "no placeholder on the page");
    // A PNG that says it has 100,000 × 100,000 pixels: refused at once, nothing kept.
    let bomb = png_claiming(100_000, 100_000);
    let started = std::time::Instant::now();
    let (st, v) = upload(&s, &ana, "bomb.png", "image/png", bomb).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert!(v["message"].as_str().unwrap().contains("megapixels"), "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "the bomb took {:?}", started.elapsed());
    s.stop().await;
}

#[tokio::test]
async fn a_voice_message_carries_its_length_and_waveform() {
    let s = TestServer::start().await;
    let (ana, ben, room) = s.ana_and_ben_in_general().await;
    let (st, up) = upload(&s, &ana, "voice-message.ogg", "audio/ogg", b"OggS not really".to_vec()).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    let mut wave: Vec<u32> = (0..64).map(|i| i * 40).collect();
    wave[3] = 5000; // over the scale: kept at its top
    let file = json!({"content_uri": up["content_uri"], "duration": 7300, "waveform": wave});
    let (st, v) = s
        .post(Some(&ana.token), &format!("/api/v1/rooms/{room}/messages"), json!({"txn_id": "v1", "file": file}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let id = v["event_id"].as_str().unwrap();
    let (_, ev) = s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/events/{id}")).await;
    let c = &ev["content"];
    assert_eq!((c["msgtype"].as_str(), c["info"]["duration"].as_u64()), (Some("m.audio"), Some(7300)));
    assert_eq!(c["org.matrix.msc1767.audio"]["duration"], 7300);
    assert_eq!(c["org.matrix.msc1767.audio"]["waveform"][3], 1024);
    assert!(c["org.matrix.msc3245.voice"].is_object());
    // Too long a waveform: refused as a whole.
    let file = json!({"content_uri": up["content_uri"], "waveform": vec![1; 257]});
    let (st, v) = s
        .post(Some(&ana.token), &format!("/api/v1/rooms/{room}/messages"), json!({"txn_id": "v2", "file": file}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, ev) =
        s.get(Some(&ben.token), &format!("/api/v1/rooms/{room}/events/{}", v["event_id"].as_str().unwrap())).await;
    assert!(ev["content"].get("org.matrix.msc1767.audio").is_none(), "{ev}");
    let page = s.http.get(format!("{}/rooms/{room}", s.url)).header("cookie", format!("chat_token={}", ben.token));
    let page = page.send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Voice message · 0:08") && page.contains("<svg class=\"wave\""),
        "no voice player on the page"
    );
    s.stop().await;
}

/// `n` bytes that do not repeat (xorshift from `seed`).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Bytes of the files in the data directory's upload area (uploads on their way in).
fn tmp_bytes(dir: &std::path::Path) -> Vec<u64> {
    std::fs::read_dir(dir.join("media/tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_an_upload_keeps_the_files_acknowledged_and_nothing_of_the_cut_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let start = || common::Binary::start(dir, "127.0.0.1:0", &["--server-name", "crash.test"]);
    let http = reqwest::Client::new();
    let server = start();
    let (_, ana) = common::post_json(
        &http,
        &format!("{}/api/v1/register", server.url),
        None,
        json!({"username": "ana", "password": "correct horse battery"}),
    )
    .await;
    let token = ana["token"].as_str().unwrap().to_string();
    let (_, room) = common::post_json(
        &http,
        &format!("{}/api/v1/rooms", server.url),
        Some(&token),
        json!({"name": "files", "visibility": "private"}),
    )
    .await;
    let room = room["room_id"].as_str().unwrap().to_string();
    let post = |url: &str, bytes: reqwest::Body, len: usize| {
        http.post(format!("{url}/api/v1/media/upload?filename=f.bin"))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .header("content-length", len)
            .body(bytes)
    };

    // A file uploaded and sent: acknowledged, so it must survive.
    let kept = noise(1 << 20, 1);
    let res = post(&server.url, kept.clone().into(), kept.len()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let uri = res.json::<Value>().await.unwrap()["content_uri"].as_str().unwrap().to_string();
    let body = json!({"txn_id": "k", "body": "", "file": {"content_uri": uri}});
    let (st, v) =
        common::post_json(&http, &format!("{}/api/v1/rooms/{room}/messages", server.url), Some(&token), body).await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // An 8 MiB upload of which 3 MiB arrive, then nothing more: the server is killed then.
    let cut = noise(8 << 20, 2);
    let first: Vec<Result<Vec<u8>, std::io::Error>> = cut[..3 << 20].chunks(64 << 10).map(|c| Ok(c.to_vec())).collect();
    let stream = futures_util::StreamExt::chain(futures_util::stream::iter(first), futures_util::stream::pending());
    let cut_off = tokio::spawn(post(&server.url, reqwest::Body::wrap_stream(stream), cut.len()).send());
    common::eventually!(20, "the upload is being written", tmp_bytes(dir).iter().any(|n| *n >= 2 << 20));
    server.kill();
    assert!(cut_off.await.unwrap().is_err(), "the cut upload got an answer");
    assert_eq!(blob_files(dir).len(), 1, "only the acknowledged file is a blob");

    let server = start();
    // What the cut upload wrote is deleted at the start, and counts against nobody's quota.
    assert_eq!(tmp_bytes(dir), Vec::<u64>::new());
    assert_eq!(blob_files(dir).len(), 1);
    let o = common::cli_async(dir, &["admin", "user", "list", "--json"], None).await;
    let users: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ana = users.as_array().unwrap().iter().find(|u| u["username"] == "ana").unwrap();
    assert_eq!(ana["file_bytes"], json!(kept.len()), "{users}");
    // The acknowledged file is whole, and still in its message.
    let res = http.get(format!("{}{}", server.url, download_path(&uri))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.bytes().await.unwrap().as_ref() == kept.as_slice(), "the kept file changed");
    let (_, page) =
        common::answer(http.get(format!("{}/api/v1/rooms/{room}/messages", server.url)), Some(&token)).await;
    assert!(page.to_string().contains(&uri), "{page}");
    // Sent again whole, the cut file is stored and comes back equal.
    let res = post(&server.url, cut.clone().into(), cut.len()).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let again = res.json::<Value>().await.unwrap()["content_uri"].as_str().unwrap().to_string();
    let res = http.get(format!("{}{}", server.url, download_path(&again))).bearer_auth(&token).send().await.unwrap();
    assert!(res.bytes().await.unwrap().as_ref() == cut.as_slice(), "the file sent again differs");
    assert_eq!(blob_files(dir).len(), 2);
    server.kill();
}
