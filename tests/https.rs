//! HTTPS end to end: a self-signed certificate kept in the data directory, certificate files
//! reloaded without dropping an open WebSocket, the HTTP-to-HTTPS redirect, Secure cookies and
//! HSTS. The client side is rustls (ring) trusting exactly the certificate under test.
#![allow(clippy::unwrap_used, missing_docs)]

use chat_testkit as common;
use chat_testkit::tokio_tungstenite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A TLS client that trusts only the PEM certificate in `cert`.
fn connector(cert: &Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn tls(addr: std::net::SocketAddr, cert: &Path) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    connector(cert).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

/// One HTTP/1.1 request over TLS; returns (status, headers as text, body).
async fn request(
    addr: std::net::SocketAddr,
    cert: &Path,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String, String) {
    let mut s = tls(addr, cert).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        addr.port(),
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await; // a close_notify-less close is fine here
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), rest.to_string())
}

/// Opens `wss://…/ws` with a bearer token and waits for `ready`.
async fn wss(
    addr: std::net::SocketAddr,
    cert: &Path,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>> {
    let stream = tls(addr, cert).await.unwrap();
    let mut req = format!("wss://localhost:{}/ws", addr.port()).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        if m.to_text().unwrap().contains("\"t\":\"ready\"") {
            return ws;
        }
    }
}

async fn register(addr: std::net::SocketAddr, cert: &Path, name: &str) -> (String, String) {
    let (status, head, body) =
        request(addr, cert, "POST", "/api/v1/register", Some(json!({"username": name, "password": "password123"})))
            .await;
    assert_eq!(status, 200, "{head}\n{body}");
    let v: Value = serde_json::from_str(body.lines().last().unwrap_or(&body)).unwrap_or_else(|_| {
        // chunked body: the JSON is the line between the chunk sizes
        serde_json::from_str(body.lines().nth(1).unwrap()).unwrap()
    });
    (v["token"].as_str().unwrap().to_string(), head)
}

/// Sets a file's modification time `secs` seconds ahead.
fn touch_later(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(secs)).unwrap();
}

fn write_cert(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), name.to_string()]).unwrap();
    let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    std::fs::write(&c, made.cert.pem()).unwrap();
    std::fs::write(&k, made.signing_key.serialize_pem()).unwrap();
    (c, k)
}

#[tokio::test]
async fn self_signed_https_end_to_end() {
    let s = TestServer::start_tuned(|c| c.tls.self_signed = true).await;
    assert!(s.running().https);
    let (cert, key) = chat::tls::self_signed_paths(&s.dir);
    assert!(cert.exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "key readable by others");

    let (status, _, body) = request(s.addr, &cert, "GET", "/healthz", None).await;
    assert_eq!((status, body.trim()), (200, "ok"));
    // The sign-in form sets a Secure cookie; no HSTS for a self-signed certificate.
    let (status, head, _) = request(s.addr, &cert, "GET", "/login", None).await;
    assert_eq!(status, 200);
    assert!(!head.to_ascii_lowercase().contains("strict-transport-security"), "{head}");
    let (token, head) = register(s.addr, &cert, "ana").await;
    assert!(!head.to_ascii_lowercase().contains("strict-transport-security"));

    // Live chat over wss.
    let mut ws = wss(s.addr, &cert, &token).await;
    let (status, _, body) = request(s.addr, &cert, "GET", "/api/v1/me", None).await;
    assert_eq!(status, 401, "{body}");
    let _ = ws.send(Message::Ping(Default::default())).await;

    // Plain HTTP on the HTTPS port is not served.
    let mut plain = TcpStream::connect(s.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // A restart reuses the same certificate (browsers that accepted it keep accepting it).
    let before = std::fs::read(&cert).unwrap();
    let tmp = s.stop().await.unwrap();
    let mut cfg = chat::Config::with_data_dir(tmp.path());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.turn.enabled = false;
    cfg.tls.self_signed = true;
    let again = TestServer::start_at(cfg).await;
    assert_eq!(std::fs::read(&cert).unwrap(), before);
    let (status, _, _) = request(again.addr, &cert, "GET", "/healthz", None).await;
    assert_eq!(status, 200);
    again.stop().await;
}

#[tokio::test]
async fn cookies_are_secure_and_hsts_is_sent_with_a_real_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = write_cert(dir.path(), "first");
    let s = TestServer::start_tuned(|c| {
        c.tls.cert = Some(cert.clone());
        c.tls.key = Some(key.clone());
    })
    .await;
    let (_, head) = register(s.addr, &cert, "ana").await;
    assert!(head.to_ascii_lowercase().contains("strict-transport-security: max-age=31536000"), "{head}");
    // The form sign-up sets the session cookie, marked Secure.
    let mut st = tls(s.addr, &cert).await.unwrap();
    let form = "username=ben&password=password123";
    let req = format!(
        "POST /register HTTP/1.1\r\nHost: localhost:{p}\r\nOrigin: https://localhost:{p}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len(),
        p = s.addr.port()
    );
    st.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = st.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    let cookie = text.lines().find(|l| l.starts_with("set-cookie:")).unwrap_or_else(|| panic!("{text}"));
    assert!(cookie.contains("httponly") && cookie.contains("samesite=lax") && cookie.contains("; secure"), "{cookie}");
    s.stop().await;
}

#[tokio::test]
async fn certificate_files_reload_without_dropping_an_open_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let (cert1, key1) = write_cert(dir.path(), "first");
    let (live_cert, live_key) = (dir.path().join("live.crt"), dir.path().join("live.key"));
    std::fs::copy(&cert1, &live_cert).unwrap();
    std::fs::copy(&key1, &live_key).unwrap();
    let s = TestServer::start_tuned(|c| {
        c.tls.cert = Some(live_cert.clone());
        c.tls.key = Some(live_key.clone());
    })
    .await;
    let (token, _) = register(s.addr, &cert1, "ana").await;
    let (status, _, body) = request(s.addr, &cert1, "GET", "/api/v1/rooms", None).await;
    assert_eq!(status, 401, "{body}");
    let mut ws = wss(s.addr, &cert1, &token).await;

    // A renewed certificate replaces the files (as certbot would).
    let (cert2, key2) = write_cert(dir.path(), "second");
    std::fs::copy(&cert2, &live_cert).unwrap();
    std::fs::copy(&key2, &live_key).unwrap();
    // A modification time the watcher cannot have seen, even on a file system with coarse times.
    touch_later(&live_cert, 2);
    touch_later(&live_key, 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if tls(s.addr, &cert2).await.is_ok() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "new certificate not served within 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // New connections get the new certificate only.
    assert!(tls(s.addr, &cert1).await.is_err(), "old certificate still served");

    // The WebSocket opened before the reload still works: a message sent on it is acknowledged.
    let (token_status, _, _) = request(s.addr, &cert2, "GET", "/healthz", None).await;
    assert_eq!(token_status, 200);
    let room = {
        let (status, _, body) = {
            let mut st = tls(s.addr, &cert2).await.unwrap();
            let b = json!({"name": "Ops", "visibility": "public"}).to_string();
            let req = format!(
                "POST /api/v1/rooms HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
                 Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
            st.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = st.read_to_end(&mut out).await;
            let text = String::from_utf8_lossy(&out).to_string();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            (head.split_whitespace().nth(1).unwrap().to_string(), head.to_string(), body.to_string())
        };
        assert_eq!(status, "200", "{body}");
        let start = body.find("\"room_id\":\"").unwrap() + 11;
        body[start..start + body[start..].find('"').unwrap()].to_string()
    };
    let frame = json!({"t": "send", "room_id": room, "body": "still here", "txn_id": "t1"}).to_string();
    ws.send(Message::Text(frame.into())).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if v["t"] == "ack" {
            assert_eq!(v["txn_id"], "t1");
            break;
        }
    }

    // A broken renewal keeps the working certificate; the failed reload is counted.
    s.until_metric("chat_tls_reloads_total", |n| n == 1.0).await;
    // (A reload may have failed already, between the copies of the two files.)
    let failed = s.metric("chat_tls_reload_failures_total").await.unwrap();
    std::fs::write(&live_cert, "not a certificate").unwrap();
    touch_later(&live_cert, 4);
    s.until_metric("chat_tls_reload_failures_total", |n| n > failed).await;
    assert!(tls(s.addr, &cert2).await.is_ok(), "a bad file replaced the working certificate");
    s.stop().await;
}

#[tokio::test]
async fn plain_http_redirects_to_https() {
    let s = TestServer::start_tuned(|c| {
        c.tls.self_signed = true;
        c.tls.redirect_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let at = s.running().redirect_addr.unwrap();
    let res = s.http.get(format!("http://{at}/rooms/x?y=1")).header("host", "chat.example").send().await.unwrap();
    assert_eq!(res.status(), 308);
    let port = s.addr.port();
    assert_eq!(res.headers()["location"], format!("https://chat.example:{port}/rooms/x?y=1").as_str());
    let res = s.http.get(format!("http://{at}/")).header("host", "evil\"<x>").send().await.unwrap();
    assert_eq!(res.status(), 400);
    s.stop().await;
}

#[test]
fn bad_tls_settings_are_named() {
    let args = |f: &dyn Fn(&mut chat::config::ServeArgs)| {
        let mut a = chat::config::ServeArgs::default();
        f(&mut a);
        chat::Config::from_args(&a)
    };
    let e = args(&|a| {
        a.set("tls_cert", "/x.crt");
    })
    .unwrap_err();
    assert!(e.starts_with("tls_key:"), "{e}");
    let e = args(&|a| {
        a.set("tls_self_signed", "true").set("tls_cert", "/x.crt").set("tls_key", "/x.key");
    })
    .unwrap_err();
    assert!(e.starts_with("tls_self_signed:"), "{e}");
    let e = args(&|a| {
        a.set("http_redirect_listen", "127.0.0.1:0");
    })
    .unwrap_err();
    assert!(e.starts_with("http_redirect_listen:"), "{e}");
    // Unreadable files are reported at start with the setting's name.
    let e = chat::tls::load_pair(Path::new("/nonexistent.crt"), Path::new("/nonexistent.key")).unwrap_err();
    assert!(e.starts_with("tls_cert:"), "{e}");
}

/// Silent connections from one address cannot take HTTPS down: that address gets a few
/// handshake slots and a bounded queue for them, the rest of its connections are closed at
/// once, and a silent one is dropped when its first byte does not come; everybody else is
/// served meanwhile.
#[tokio::test]
async fn silent_connections_from_one_address_do_not_starve_the_others() {
    let s = TestServer::start_tuned(|c| c.tls.self_signed = true).await;
    let (cert, _) = chat::tls::self_signed_paths(&s.dir);
    // 300 connections from 127.0.0.2 that never say anything (more than all handshake slots).
    let mut silent = Vec::new();
    for _ in 0..300 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        silent.push(sock.connect(s.addr).await.unwrap());
    }
    // Someone else is served, promptly.
    let probe = tokio::time::timeout(Duration::from_secs(3), request(s.addr, &cert, "GET", "/healthz", None));
    let (status, _, body) = probe.await.expect("HTTPS starved by silent connections");
    assert_eq!((status, body.trim()), (200, "ok"));
    // Those beyond the address's slots and queue were closed at once; the rest go once their
    // first byte is late.
    let mut closed = 0;
    for c in &mut silent {
        let mut b = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(10), c.read(&mut b)).await {
            closed += 1;
        }
    }
    let kept = chat::tls::MAX_HANDSHAKES_PER_IP + chat::tls::MAX_WAITING_PER_IP;
    assert!(closed >= 300 - kept, "only {closed} of 300 closed");
    // The first, which got a slot, is closed when its ClientHello is late (3 s).
    let first = silent.first_mut().unwrap();
    let mut b = [0u8; 1];
    let n =
        tokio::time::timeout(Duration::from_secs(10), first.read(&mut b)).await.expect("a silent one kept its slot");
    assert!(matches!(n, Ok(0) | Err(_)));
}

/// A client that offers HTTP/2 gets it: one connection carries concurrent requests, pages and
/// forms work (the host comes from the request's authority), and the connection is closed
/// once no request has been in flight for `header_timeout`. One that offers only HTTP/1.1
/// keeps getting HTTP/1.1 (the other tests here).
#[tokio::test]
async fn http2_when_the_client_offers_it() {
    let s = TestServer::start_tuned(|c| {
        c.tls.self_signed = true;
        c.limits.header_timeout_secs = 1;
    })
    .await;
    let (cert, _) = chat::tls::self_signed_paths(&s.dir);
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let open = async || {
        let tcp = TcpStream::connect(s.addr).await.unwrap();
        connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap()
    };
    // A client that chooses HTTP/2 and then says nothing is closed like an idle one.
    let mut silent = open().await;
    assert_eq!(silent.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the server chose HTTP/2");
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), silent.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a silent HTTP/2 connection stayed open");
    let stream = open().await;
    let (sender, conn) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .handshake::<_, String>(hyper_util::rt::TokioIo::new(stream))
        .await
        .unwrap();
    let connection = tokio::spawn(conn);
    let url = |path: &str| format!("https://localhost:{}{path}", s.addr.port());
    let send = |req: hyper::Request<String>| {
        let mut sender = sender.clone();
        async move {
            let res = sender.send_request(req).await.unwrap();
            let (head, body) = res.into_parts();
            let body = axum::body::to_bytes(axum::body::Body::new(body), 1 << 20).await.unwrap();
            (head, String::from_utf8_lossy(&body).to_string())
        }
    };
    // 30 requests at once, on the one connection.
    let all = (0..30).map(|_| send(hyper::Request::get(url("/healthz")).body(String::new()).unwrap()));
    for (head, body) in futures_util::future::join_all(all).await {
        assert_eq!((head.status.as_u16(), head.version, body.trim()), (200, hyper::Version::HTTP_2, "ok"));
    }
    // An account through the API, then the sign-in form (a same-origin check on the host).
    let register = hyper::Request::post(url("/api/v1/register"))
        .header("content-type", "application/json")
        .body(json!({"username": "ana", "password": "password123"}).to_string())
        .unwrap();
    let (head, body) = send(register).await;
    assert_eq!(head.status, 200, "{body}");
    let login = hyper::Request::post(url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", url(""))
        .body("username=ana&password=password123".to_string())
        .unwrap();
    let (head, body) = send(login).await;
    assert_eq!(head.status, 303, "{body}");
    assert_eq!(head.headers["location"], "/rooms");
    let forged = hyper::Request::post(url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.test")
        .body("username=ana&password=password123".to_string())
        .unwrap();
    assert_eq!(send(forged).await.0.status, 403, "another origin's form is refused");
    // Unused for a second: the server closes the connection.
    tokio::time::timeout(Duration::from_secs(10), connection).await.expect("the idle connection was not closed").ok();
    assert!(sender.is_closed());
    s.stop().await;
}
