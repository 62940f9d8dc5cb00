//! The `media` scenario: file upload and download throughput against `dd` on the same disk,
//! server memory during a large upload, and photos (12-megapixel JPEGs) processed per second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_testkit::reqwest;
use futures_util::StreamExt;
use serde_json::Value;

use super::{Res, Server, cpu_of, rss_kib_of};

const MIB: u64 = 1024 * 1024;

/// Runs the scenario: `mib` MiB up and down (three times each, medians), `big_mib` MiB up
/// while the server's memory is sampled, then `photos` photo uploads, two at a time.
pub async fn run(server: &Arc<Server>, mib: u64, big_mib: u64, photos: usize) -> Res<()> {
    println!("== media: {mib} MiB up and down vs dd, {big_mib} MiB up for memory, {photos} 12-megapixel photos");
    let token = server.users("media", 1).await?.remove(0);
    let dir = server.data_dir();

    // The disk, as dd sees it: the same bytes written and made durable (fsync at the end),
    // and read back past the page cache (O_DIRECT); and the same read from the page cache,
    // where a file just uploaded is served from. The disk of a virtual machine varies from
    // run to run, so dd and the server take turns, five rounds, and the medians are compared.
    let bytes = mib * MIB;
    let source = dir.join("dd-source.bin");
    let target = dir.join("dd.bin");
    {
        let mut f = tokio::fs::File::create(&source).await?;
        let mut chunks = std::pin::pin!(random_chunks(bytes, 7));
        while let Some(c) = chunks.next().await {
            tokio::io::AsyncWriteExt::write_all(&mut f, &c?).await?;
        }
    }
    let pid = server.pid;
    let cpu_secs = |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| (b - a).as_secs_f64());
    let (mut dd_w, mut dd_r, mut dd_c, mut up, mut down) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut up_cpu, mut down_cpu) = (vec![], vec![]);
    let (src, dst) = (format!("if={}", source.display()), format!("of={}", target.display()));
    for round in 0..5u64 {
        dd_w.push(dd(&[&src, &dst, "bs=1M", "conv=fsync"])?);
        dd_r.push(dd(&[&format!("if={}", target.display()), "of=/dev/null", "bs=1M", "iflag=direct"])?);
        dd_c.push(dd(&[&src, "of=/dev/null", "bs=1M"])?);
        let _ = std::fs::remove_file(&target);
        let (cpu0, started) = (pid.and_then(cpu_of), Instant::now());
        let uri = upload(server, &token, bytes, round + 1).await?;
        up.push(bytes as f64 / started.elapsed().as_secs_f64());
        up_cpu.extend(cpu_secs(cpu0, pid.and_then(cpu_of)));
        let (cpu0, started) = (pid.and_then(cpu_of), Instant::now());
        let got = download(server, &token, &uri).await?;
        down.push(bytes as f64 / started.elapsed().as_secs_f64());
        down_cpu.extend(cpu_secs(cpu0, pid.and_then(cpu_of)));
        if got != bytes {
            return Err(format!("downloaded {got} bytes of {bytes}").into());
        }
    }
    let _ = std::fs::remove_file(&source);
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::MAX, f64::min) / MIB as f64;
        let hi = v.iter().copied().fold(0.0, f64::max) / MIB as f64;
        format!("{lo:.0}-{hi:.0}")
    };
    let per_gib = |v: Vec<f64>| {
        if v.is_empty() { "n/a".to_string() } else { format!("{:.2} s CPU/GiB", median(v) / mib as f64 * 1024.0) }
    };
    let mb = |v: f64| v / MIB as f64;
    println!("  (MiB/s, medians of 5 rounds, range in brackets)");
    let (m_up, m_w) = (median(up.clone()), median(dd_w.clone()));
    println!(
        "  upload   {:>6.0} [{}]   dd write+fsync {:>6.0} [{}]   ratio {:.2}   server {}",
        mb(m_up),
        range(&up),
        mb(m_w),
        range(&dd_w),
        m_up / m_w,
        per_gib(up_cpu)
    );
    let (m_down, m_r, m_c) = (median(down.clone()), median(dd_r.clone()), median(dd_c.clone()));
    println!(
        "  download {:>6.0} [{}]   dd read direct {:>6.0} [{}]   ratio {:.2}   server {}",
        mb(m_down),
        range(&down),
        mb(m_r),
        range(&dd_r),
        m_down / m_r,
        per_gib(down_cpu)
    );
    println!("           dd read from the page cache {:>6.0} [{}]", mb(m_c), range(&dd_c));

    // Memory while a large file streams in.
    let pid = pid.ok_or("the server's pid is needed for memory figures (--server-pid)")?;
    let before = rss_kib_of(pid).unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib_of(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    upload(server, &token, big_mib * MIB, 100).await?;
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "  {big_mib} MiB upload in {secs:.1} s: server RSS {:.1} MiB before, peak {:.1} MiB, growth {:.1} MiB",
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(before) as f64 / 1024.0
    );

    // Photos: each upload is decoded, cleaned of metadata and thumbnailed on the server.
    let made = tokio::task::spawn_blocking(|| (0..4u32).map(photo).collect::<Res<Vec<_>>>()).await??;
    let photo_bytes = made.iter().map(Vec::len).sum::<usize>() / made.len();
    let made = Arc::new(made);
    let cpu0 = cpu_of(pid);
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (server, token, made, next) = (server.clone(), token.clone(), made.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= photos {
                    return Ok::<(), super::BoxError>(());
                }
                let photo = reqwest::Body::from(made[i % made.len()].clone());
                let v = post_file(&server, &token, photo, None, "image/jpeg", "photo.jpg").await?;
                let thumb = v["content_uri"].as_str().unwrap_or_default().trim_start_matches("mxc://").to_string();
                let resp = server
                    .http
                    .get(format!("{}/api/v1/media/thumbnail/{thumb}", server.url))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                if !resp.status().is_success() || resp.headers().get("content-type").is_none_or(|t| t != "image/jpeg") {
                    return Err(format!("thumbnail: {}", resp.status()).into());
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_of(pid)) {
        (Some(a), Some(b)) => format!("{:.2} s of CPU each", (b - a).as_secs_f64() / photos as f64),
        _ => "n/a".into(),
    };
    println!(
        "  photos: {photos} of 4000x3000 ({:.1} MiB each), 2 at a time: {:.2} photos/s ({cpu})",
        photo_bytes as f64 / MIB as f64,
        photos as f64 / secs
    );
    Ok(())
}

/// Seconds dd takes for `args`, as bytes per second of the file it wrote or read.
fn dd(args: &[&str]) -> Res<f64> {
    let started = Instant::now();
    let out = std::process::Command::new("dd").args(args).output()?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!("dd: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    // dd's last line: "N bytes (...) copied, ...".
    let err = String::from_utf8_lossy(&out.stderr);
    let bytes: f64 = err
        .lines()
        .find_map(|l| l.split_whitespace().next().and_then(|n| n.parse().ok()).filter(|_| l.contains("copied")))
        .ok_or("dd printed no byte count")?;
    Ok(bytes / secs)
}

/// Uploads `bytes` pseudo-random bytes (from `seed`), streamed; returns the file's
/// `server/id`.
async fn upload(server: &Server, token: &str, bytes: u64, seed: u64) -> Res<String> {
    let body = reqwest::Body::wrap_stream(random_chunks(bytes, seed));
    let v = post_file(server, token, body, Some(bytes), "application/octet-stream", "load.bin").await?;
    Ok(v["content_uri"].as_str().unwrap_or_default().trim_start_matches("mxc://").to_string())
}

/// `bytes` pseudo-random bytes (xorshift from `seed`) in 1 MiB chunks, made as they are read.
fn random_chunks(bytes: u64, seed: u64) -> impl futures_util::Stream<Item = std::io::Result<Vec<u8>>> {
    let start = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    futures_util::stream::unfold((0u64, start), move |(sent, mut x)| async move {
        if sent >= bytes {
            return None;
        }
        let n = (bytes - sent).min(MIB) as usize;
        let mut buf = Vec::with_capacity(n + 8);
        while buf.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.extend_from_slice(&x.to_le_bytes());
        }
        buf.truncate(n);
        Some((Ok(buf), (sent + n as u64, x)))
    })
}

/// Downloads `server/id`, counting the bytes as they come.
async fn download(server: &Server, token: &str, uri: &str) -> Res<u64> {
    let resp = server.http.get(format!("{}/api/v1/media/download/{uri}", server.url)).bearer_auth(token).send().await?;
    if !resp.status().is_success() {
        return Err(format!("download: {}", resp.status()).into());
    }
    let mut stream = resp.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        n += chunk?.len() as u64;
    }
    Ok(n)
}

/// Uploads `body` (`len` bytes, when known ahead) as `name` of type `ty`; the answer.
async fn post_file(
    server: &Server,
    token: &str,
    body: reqwest::Body,
    len: Option<u64>,
    ty: &str,
    name: &str,
) -> Res<Value> {
    let mut req = server
        .http
        .post(format!("{}/api/v1/media/upload?filename={name}", server.url))
        .bearer_auth(token)
        .header("content-type", ty);
    if let Some(len) = len {
        req = req.header("content-length", len);
    }
    let resp = req.body(body).send().await?;
    let status = resp.status();
    let v: Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("upload: {status} {v}").into());
    }
    Ok(v)
}

/// A 4000x3000 JPEG (quality 90) that compresses like a photo: smooth colour fields with
/// fine noise, different for each `seed`.
fn photo(seed: u32) -> Res<Vec<u8>> {
    let (w, h) = (4000u32, 3000u32);
    let mut x = 0x2545_F491u32.wrapping_add(seed.wrapping_mul(0x9E37_79B9)) | 1;
    let img = image::RgbImage::from_fn(w, h, |px, py| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let noise = (x & 0x1f) as f32 - 16.0;
        let fx = px as f32 / w as f32;
        let fy = py as f32 / h as f32;
        let s = seed as f32;
        let r = 128.0 + 100.0 * (fx * 6.0 + s).sin() * (fy * 3.0).cos() + noise;
        let g = 128.0 + 90.0 * (fy * 5.0 - s).sin() + noise;
        let b = 128.0 + 80.0 * ((fx + fy) * 4.0 + s * 0.5).cos() + noise;
        image::Rgb([r.clamp(0.0, 255.0) as u8, g.clamp(0.0, 255.0) as u8, b.clamp(0.0, 255.0) as u8])
    });
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    img.write_with_encoder(enc)?;
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
