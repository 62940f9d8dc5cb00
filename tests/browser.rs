//! Browser end-to-end: real headless Chromium (driven by playwright-core from npm) against the
//! real server. Needs Debian's `chromium` and `npm ci` in `tests/browser` (scripts/test does both).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::Command;

use common::TestServer;

fn run_script(script: &str, url: &str) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(dir).join("node_modules/playwright-core").exists(),
        "playwright-core missing: run `npm ci` in tests/browser (scripts/test does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} missing: apt-get install chromium (scripts/test does)"
    );
    let shots = concat!(env!("CARGO_MANIFEST_DIR"), "/target/browser-shots");
    let out = Command::new("node").arg(format!("{dir}/{script}")).arg(url).arg(shots).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_live() {
    let s = TestServer::start().await;
    let url = s.url.clone();
    tokio::task::spawn_blocking(move || run_script("chat_live.mjs", &url)).await.unwrap();
    s.stop().await;
}
