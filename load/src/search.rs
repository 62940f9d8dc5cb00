//! `chat-load search`: the full-text index on a large corpus.
//!
//! 1. `--messages` messages (default 1,000,000) from 32 users into 8 rooms, sent with search
//!    off: words drawn from a 20,000-word vocabulary with Zipf frequencies (as words are in
//!    language), 3-24 words a message. The raw text's size is counted.
//! 2. The server restarted with search on: the index is built from the stream. Prints the
//!    rate (messages/s), the peak RSS while indexing (and before), and the index's size on
//!    disk against the text's size.
//! 3. Query latency through the API (HTTP included), sequential: one-word, two-word and phrase
//!    queries limited to a room, and one-word queries over all the user's rooms; p50/p99 and
//!    the mean result count.
//! 4. The writer's throughput with indexing on against off: two fresh servers, alternating
//!    rounds of `--round` messages; the median of the rounds' ratios.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{BoxError, Cli, Res, Sender, Server, rss_kib_of};

/// A deterministic generator (the same corpus every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Pseudo-words from syllables, and Zipf-distributed draws from them.
struct Vocabulary {
    words: Vec<String>,
    cumulative: Vec<f64>,
}

impl Vocabulary {
    fn new(n: usize) -> Vocabulary {
        const SYLLABLES: [&str; 40] = [
            "ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "va", "de", "gu", "ba", "ze", "fi", "mo", "la", "pe", "ru",
            "so", "ni", "tor", "lan", "mes", "vir", "dal", "qua", "sen", "bor", "mil", "chu", "ver", "nas", "pol",
            "gri", "fel", "dor", "kin", "sar", "tum", "wey",
        ];
        let mut rng = Lcg(7);
        let mut seen = std::collections::HashSet::new();
        let mut words = Vec::with_capacity(n);
        while words.len() < n {
            let parts = 1 + rng.below(3) + usize::from(words.len() > 2_000);
            let w: String = (0..parts).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect();
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        Vocabulary { words, cumulative }
    }

    fn draw(&self, rng: &mut Lcg) -> &str {
        let total = self.cumulative[self.cumulative.len() - 1];
        let x = (rng.next() as f64 / (1u64 << 31) as f64) * total;
        let i = self.cumulative.partition_point(|c| *c < x).min(self.words.len() - 1);
        &self.words[i]
    }

    fn sentence(&self, rng: &mut Lcg) -> String {
        let n = 3 + rng.below(22);
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(self.draw(rng));
        }
        s
    }
}

const USERS: usize = 32;
const ROOMS: usize = 8;

/// Users and rooms: every user in two rooms (user i in rooms i % 8 and (i + 1) % 8).
async fn people(server: &Arc<Server>, prefix: &str) -> Res<(Vec<String>, Vec<String>)> {
    let tokens = server.users(prefix, USERS).await?;
    let mut rooms = Vec::new();
    for (r, owner) in tokens.iter().take(ROOMS).enumerate() {
        rooms.push(server.room(owner, &format!("{prefix}-room-{r}")).await?);
    }
    for (i, t) in tokens.iter().enumerate() {
        for r in [i % ROOMS, (i + 1) % ROOMS] {
            server.join_all(std::slice::from_ref(t), &rooms[r]).await?;
        }
    }
    Ok((tokens, rooms))
}

/// Sends `messages` from every user (8 in flight each) into their rooms; bodies from `make`.
/// Returns (messages/s, bytes of text).
async fn send(
    server: &Arc<Server>,
    tokens: &[String],
    rooms: &[String],
    messages: u64,
    tag: &str,
    make: Arc<dyn Fn(u64) -> String + Send + Sync>,
) -> Res<(f64, u64)> {
    let per = messages.div_ceil(tokens.len() as u64);
    let acked = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let ws = server.ws(t).await?;
        let my_rooms = [rooms[i % ROOMS].clone(), rooms[(i + 1) % ROOMS].clone()];
        let (acked, bytes, make, tag) = (acked.clone(), bytes.clone(), make.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let mut s = Sender::new(ws, acked);
            let (mut sent, mut outstanding) = (0u64, 0usize);
            while sent < per || outstanding > 0 {
                while outstanding < 8 && sent < per {
                    let n = sent * USERS as u64 + i as u64;
                    let body = make(n);
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    s.send(&my_rooms[(sent % 2) as usize], body, format!("{tag}-{i}-{sent}")).await?;
                    sent += 1;
                    outstanding += 1;
                }
                s.acks.recv().await.ok_or("connection closed")?;
                outstanding -= 1;
            }
            Ok::<(), BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let n = acked.load(Ordering::Relaxed);
    Ok((n as f64 / started.elapsed().as_secs_f64(), bytes.load(Ordering::Relaxed)))
}

/// Resident memory of a process in two parts, KiB: anonymous (heaps, caches) and file pages
/// mapped into it (the index's segments), which the kernel can take back.
fn rss_parts_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name));
        line.and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("RssAnon:"), field("RssFile:"))
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

async fn search(server: &Server, token: &str, query: &str) -> Res<(Duration, serde_json::Value)> {
    let started = Instant::now();
    let res = server.http.get(format!("{}/api/v1/search?{query}", server.url)).bearer_auth(token).send().await?;
    let status = res.status();
    let v: serde_json::Value = res.json().await?;
    if !status.is_success() {
        return Err(format!("search {query}: {status} {v}").into());
    }
    Ok((started.elapsed(), v))
}

fn enc(s: &str) -> String {
    s.replace(' ', "+").replace('"', "%22").replace('!', "%21").replace(':', "%3A")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

pub async fn run(cli: &Cli, messages: u64, queries: usize, round: u64) -> Res<()> {
    println!("== search: {messages} messages from {USERS} users in {ROOMS} rooms (Zipf words), then indexed");
    let vocab = Arc::new(Vocabulary::new(20_000));
    let dir = tempfile::Builder::new().prefix("chat-load-search-").tempdir()?;

    // 1. The corpus, sent with search off.
    let off = Server::start_in(cli, dir.path(), "search = false\n").await?;
    let (tokens, rooms) = people(&off, "sr").await?;
    let v = vocab.clone();
    let make = Arc::new(move |n: u64| v.sentence(&mut Lcg(n.wrapping_mul(2_654_435_761).wrapping_add(1))));
    let (rate, text_bytes) = send(&off, &tokens, &rooms, messages, "fill", make.clone()).await?;
    println!("search: corpus sent at {rate:.0} msg/s (search off); text {:.1} MiB", text_bytes as f64 / 1048576.0);
    off.stop();
    let db = dir_bytes(dir.path());

    // 2. Indexing it from the stream.
    let started = Instant::now();
    let on = Server::start_in(cli, dir.path(), "").await?;
    let pid = on.pid.ok_or("no pid")?;
    let rss_before = rss_kib_of(pid).unwrap_or(0);
    let (mut peak, mut peak_anon, mut peak_file) = (rss_before, 0, 0);
    loop {
        if let Some(r) = rss_kib_of(pid) {
            peak = peak.max(r);
        }
        let (anon, file) = rss_parts_kib(pid);
        (peak_anon, peak_file) = (peak_anon.max(anon), peak_file.max(file));
        if let Ok((_, v)) = search(&on, &tokens[0], "q=ka&limit=1").await
            && v["indexing"] == false
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let index = dir_bytes(&dir.path().join("search"));
    println!(
        "search: indexed {messages} messages in {secs:.1} s = {:.0} msg/s; RSS {:.0} MiB at start, peak {:.0} MiB while \
         indexing (peaks: {:.0} MiB anonymous, {:.0} MiB of mapped files)",
        messages as f64 / secs,
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak_anon as f64 / 1024.0,
        peak_file as f64 / 1024.0
    );
    println!(
        "search: index {:.1} MiB on disk = {:.2} x the text ({:.1} MiB); the database {:.1} MiB",
        index as f64 / 1048576.0,
        index as f64 / text_bytes as f64,
        text_bytes as f64 / 1048576.0,
        db as f64 / 1048576.0
    );

    // 3. Queries: words drawn as the corpus draws them, phrases taken from sent messages.
    let mut rng = Lcg(99);
    let mut kinds: Vec<(&str, Vec<String>)> = vec![
        ("one word, in a room", Vec::new()),
        ("two words, in a room", Vec::new()),
        ("phrase, in a room", Vec::new()),
        ("one word, all rooms", Vec::new()),
    ];
    for q in 0..queries {
        let user = rng.below(USERS);
        let room = &rooms[(user + rng.below(2)) % ROOMS];
        let r = format!("&room={}", enc(room));
        kinds[0].1.push(format!("{user} q={}{r}", vocab.draw(&mut rng)));
        kinds[1].1.push(format!("{user} q={}+{}{r}", vocab.draw(&mut rng), vocab.draw(&mut rng)));
        let sentence = make(rng.next() % messages.max(1) + q as u64);
        let words: Vec<&str> = sentence.split(' ').collect();
        let at = rng.below(words.len() - 1);
        kinds[2].1.push(format!("{user} q=%22{}+{}%22{r}", words[at], words[at + 1]));
        kinds[3].1.push(format!("{user} q={}", vocab.draw(&mut rng)));
    }
    for (name, list) in &kinds {
        let mut times = Vec::with_capacity(list.len());
        let mut found = 0u64;
        for entry in list {
            let (user, query) = entry.split_once(' ').unwrap_or(("0", entry));
            let token = &tokens[user.parse::<usize>().unwrap_or(0)];
            let (t, v) = search(&on, token, &format!("{query}&limit=20")).await?;
            found += v["count"].as_u64().unwrap_or(0);
            times.push(t);
        }
        times.sort_unstable();
        println!(
            "search: {name}: {} queries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.0} matches on average",
            list.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&times, 1.0),
            found as f64 / list.len() as f64
        );
    }
    on.stop();

    // 4. The writer with indexing on and off, alternating rounds on two fresh servers.
    let on_dir = tempfile::Builder::new().prefix("chat-load-search-on-").tempdir()?;
    let off_dir = tempfile::Builder::new().prefix("chat-load-search-off-").tempdir()?;
    let with = Server::start_in(cli, on_dir.path(), "").await?;
    let without = Server::start_in(cli, off_dir.path(), "search = false\n").await?;
    let (t_on, r_on) = people(&with, "wo").await?;
    let (t_off, r_off) = people(&without, "wf").await?;
    let mut ratios = Vec::new();
    for i in 0..3 {
        let (a, _) = send(&with, &t_on, &r_on, round, &format!("on{i}"), make.clone()).await?;
        let (b, _) = send(&without, &t_off, &r_off, round, &format!("off{i}"), make.clone()).await?;
        println!("search: round {i}: {a:.0} msg/s with indexing, {b:.0} without");
        ratios.push(a / b);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "search: writer throughput with indexing / without: {:.2} (median of {} rounds; range {:.2}-{:.2})",
        ratios[ratios.len() / 2],
        ratios.len(),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    with.stop();
    without.stop();
    Ok(())
}
