//! `chat-load`: the load tool. Starts a `chat` server (or targets one), registers users, opens
//! WebSockets, sends, and prints figures: durable messages/s, send→receive latency
//! percentiles, server RSS and CPU. Talks only to the address it is given (loopback by default).
//!
//! Scenarios: `throughput`, `fanout`, `idle`, `compare`, `ephemeral`, `turn`, `markdown`,
//! `render`, `media`, `push`, `search`, `all`. See `--help`.

mod media;
mod push;
mod search;
mod turn;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chat_testkit::WsStream;
use chat_testkit::reqwest;
use chat_testkit::tokio_tungstenite::tungstenite::Message;
use clap::{Parser, Subcommand};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore, mpsc};
type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

#[derive(Parser)]
#[command(name = "chat-load", about = "Load tool for chat: prints throughput, latency and memory figures")]
struct Cli {
    /// Target an already running server instead of starting one (no RSS/CPU figures unless
    /// --server-pid is given).
    #[arg(long)]
    url: Option<String>,
    /// PID of the server given by --url, for RSS and CPU figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The `chat` binary to start [default: the `chat` next to this program].
    #[arg(long)]
    server: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Clone)]
enum Scenario {
    /// Committed messages/s with many sends in flight.
    Throughput {
        /// Sends in flight at once.
        #[arg(long, default_value_t = 256)]
        in_flight: usize,
        /// Messages to send.
        #[arg(long, default_value_t = 50_000)]
        messages: u64,
        /// Every other message Markdown (bold, italic, code, a link), the rest plain.
        #[arg(long)]
        markdown: bool,
    },
    /// Delivery latency into one big room at a fixed send rate.
    Fanout {
        /// Connected members of the room.
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Messages per second sent into the room.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Server memory per idle authenticated connection.
    Idle {
        /// Connections to open.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
    /// The fixed comparison workload: 20 users in one room, 4 senders with one send in flight
    /// each, 2,000 messages.
    Compare {
        /// Every other message Markdown (bold, italic, code, a link), the rest plain.
        #[arg(long)]
        markdown: bool,
    },
    /// `throughput` and `compare` with plain bodies and with Markdown ones (every other message
    /// formatted), each on a fresh server, and the Markdown/plain ratios.
    Markdown {
        /// Messages for the throughput runs.
        #[arg(long, default_value_t = 50_000)]
        messages: u64,
    },
    /// Ephemeral load: many users in many rooms, a share of them typing, while messages flow;
    /// message latency without and then with typing, and presence memory per online user.
    Ephemeral {
        /// Connected users (one connection each).
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        /// Rooms; users are spread evenly.
        #[arg(long, default_value_t = 500)]
        rooms: usize,
        /// Percent of users typing at any time.
        #[arg(long, default_value_t = 10)]
        typing_percent: usize,
        /// Messages per second across all rooms.
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Seconds per phase (without typing, then with).
        #[arg(long, default_value_t = 15)]
        seconds: u64,
    },
    /// TURN relay throughput, round trip and CPU, ours and coturn's side by side.
    Turn {
        /// Allocations (clients), each with a channel to an echo peer.
        #[arg(long, default_value_t = 300)]
        allocations: usize,
        /// Packets in flight per allocation.
        #[arg(long, default_value_t = 4)]
        window: usize,
        /// Seconds of load per relay.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// coturn's `turnserver` (Debian package `coturn`), for the comparison.
        #[arg(long, default_value = "/usr/bin/turnserver")]
        coturn: String,
    },
    /// The room page in headless Chromium: a room of `messages` messages (every other one
    /// Markdown, every tenth edited, every fifth with two reactions, every twentieth a reply):
    /// a first visit, repeat visits and loading all its history (tests/browser/render_bench.mjs;
    /// needs `npm ci` in tests/browser).
    Render {
        /// Messages in the room.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Visits of each kind; medians are printed.
        #[arg(long, default_value_t = 3)]
        runs: u32,
    },
    /// Files: upload and download throughput against `dd` on the same disk, server memory
    /// during a large upload, and 12-megapixel photos processed (cleaned and thumbnailed) per
    /// second.
    Media {
        /// MiB up and down for the throughput figures.
        #[arg(long, default_value_t = 200)]
        mib: u64,
        /// MiB of the upload during which the server's memory is sampled.
        #[arg(long, default_value_t = 1024)]
        big_mib: u64,
        /// Photos uploaded.
        #[arg(long, default_value_t = 24)]
        photos: usize,
    },
    /// Web Push: the writer's throughput into a room whose members all have push on, against
    /// one where none has (ratio); then pushes/s (encrypted, signed) to a loopback push
    /// service with everyone taking every message.
    Push {
        /// Members of the room (each with one device).
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Messages per throughput round (three rounds per server).
        #[arg(long, default_value_t = 20_000)]
        messages: u64,
        /// Messages sent to everyone for the push throughput (each makes members - 1 pushes).
        #[arg(long, default_value_t = 20)]
        pushed: u64,
    },
    /// Full-text search: a corpus sent with search off, then indexed from the stream (rate,
    /// memory, size against the text), query latency for one-word, two-word and phrase
    /// queries, and the writer's throughput with indexing on against off.
    Search {
        /// Messages in the corpus.
        #[arg(long, default_value_t = 1_000_000)]
        messages: u64,
        /// Queries of each kind.
        #[arg(long, default_value_t = 500)]
        queries: usize,
        /// Messages per throughput round (three rounds with indexing, three without).
        #[arg(long, default_value_t = 30_000)]
        round: u64,
    },
    /// Every scenario with its defaults, each on a fresh server.
    All,
}

fn main() -> Res<()> {
    let cli = Cli::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let scenarios = match cli.scenario.clone() {
            Scenario::All => vec![
                Scenario::Throughput { in_flight: 256, messages: 50_000, markdown: false },
                Scenario::Fanout { members: 1000, rate: 200, seconds: 10 },
                Scenario::Idle { connections: 10_000 },
                Scenario::Compare { markdown: false },
                Scenario::Ephemeral { users: 10_000, rooms: 500, typing_percent: 10, rate: 100, seconds: 15 },
                Scenario::Turn { allocations: 300, window: 4, seconds: 10, coturn: "/usr/bin/turnserver".into() },
                Scenario::Media { mib: 200, big_mib: 1024, photos: 24 },
                Scenario::Push { members: 1000, messages: 20_000, pushed: 20 },
            ],
            one => vec![one],
        };
        for sc in scenarios {
            let server = Server::start(&cli).await?;
            let out = match sc {
                Scenario::Throughput { in_flight, messages, markdown } => {
                    throughput(&server, in_flight, messages, markdown).await.map(|_| ())
                }
                Scenario::Fanout { members, rate, seconds } => fanout(&server, members, rate, seconds).await,
                Scenario::Idle { connections } => idle(&server, connections).await,
                Scenario::Compare { markdown } => compare(&server, markdown).await.map(|_| ()),
                Scenario::Markdown { messages } => markdown_ratios(&cli, server.clone(), messages).await,
                Scenario::Render { messages, runs } => render(&server, messages, runs).await,
                Scenario::Ephemeral { users, rooms, typing_percent, rate, seconds } => {
                    ephemeral(&server, users, rooms, typing_percent, rate, seconds).await
                }
                Scenario::Turn { allocations, window, seconds, coturn } => {
                    turn::compare(&server, allocations, window, seconds, &coturn).await
                }
                Scenario::Media { mib, big_mib, photos } => media::run(&server, mib, big_mib, photos).await,
                Scenario::Push { members, messages, pushed } => {
                    push::run(&cli, server.clone(), members, messages, pushed).await
                }
                Scenario::Search { messages, queries, round } => search::run(&cli, messages, queries, round).await,
                Scenario::All => Ok(()),
            };
            server.stop();
            out?;
        }
        Ok(())
    })
}

/// The server under test: started by us (with a temporary data dir) or given by URL.
struct Server {
    url: String,
    host: String,
    pid: Option<u32>,
    child: std::sync::Mutex<Option<Child>>,
    _dir: Option<tempfile::TempDir>,
    http: reqwest::Client,
}

impl Server {
    async fn start(cli: &Cli) -> Res<Arc<Server>> {
        let http = reqwest::Client::builder().pool_max_idle_per_host(512).build()?;
        if let Some(url) = &cli.url {
            let url = url.trim_end_matches('/').to_string();
            let host = url.trim_start_matches("http://").to_string();
            return Ok(Arc::new(Server {
                url,
                host,
                pid: cli.server_pid,
                child: Default::default(),
                _dir: None,
                http,
            }));
        }
        let dir = tempfile::Builder::new().prefix("chat-load-").tempdir()?;
        let mut server = Server::start_in(cli, dir.path(), "").await?;
        if let Some(s) = Arc::get_mut(&mut server) {
            s._dir = Some(dir);
        }
        Ok(server)
    }

    /// Starts a server of ours on the data directory `data` (kept when it stops), with
    /// `extra` added to the top of its settings file.
    async fn start_in(cli: &Cli, data: &std::path::Path, extra: &str) -> Res<Arc<Server>> {
        let http = reqwest::Client::builder().pool_max_idle_per_host(512).build()?;
        let bin = cli.server.clone().unwrap_or_else(chat_testkit::chat_bin);
        let dir = data;
        // The relay serves the load tool's many allocations and its loopback echo peer; the
        // load comes from one IP and few users, far above a person's send and sign-up rates.
        let config = dir.join("chat.toml");
        std::fs::write(
            &config,
            extra.to_string()
                + "push_private_endpoints = true\n[turn]\nallow_private_peers = true\nallocations_per_user = 100000\nallocations_total = 100000\n\
             [limits]\nmessages_per_user_per_minute = 1000000000\nregistrations_per_ip_per_minute = 1000000\n\
             logins_per_ip_per_minute = 1000000\nrooms_per_user_per_hour = 1000000\n\
             max_upload_bytes = 4294967296\nupload_quota_bytes = 1099511627776\n",
        )?;
        let data = dir.to_path_buf();
        let (child, url) = tokio::task::spawn_blocking(move || {
            let args: [&std::ffi::OsStr; 10] = [
                "--listen".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--turn-listen".as_ref(),
                "127.0.0.1:0".as_ref(),
                "--metrics-listen".as_ref(),
                "off".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "--data-dir".as_ref(),
                data.as_os_str(),
            ];
            chat_testkit::spawn_serve(&bin, &args, &[("CHAT_LOG", "warn,turn=off")])
        })
        .await??;
        let host = url.trim_start_matches("http://").to_string();
        let pid = Some(child.id());
        let child = std::sync::Mutex::new(Some(child));
        Ok(Arc::new(Server { url, host, pid, child, _dir: None, http }))
    }

    /// The server's data directory when we started it, else the temporary directory: the
    /// disk that disk figures are measured on.
    fn data_dir(&self) -> PathBuf {
        self._dir.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_else(std::env::temp_dir)
    }

    fn stop(&self) {
        let child = self.child.lock().ok().and_then(|mut c| c.take());
        if let Some(mut c) = child {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    async fn post(&self, token: Option<&str>, path: &str, body: Value) -> Res<Value> {
        let req = self.http.post(format!("{}{path}", self.url)).json(&body);
        let (status, v) = chat_testkit::try_answer(req, token).await?;
        if !status.is_success() {
            return Err(format!("POST {path}: {status} {v}").into());
        }
        Ok(v)
    }

    /// Registers `n` users (8 at a time) named `{prefix}{i}`; returns their tokens.
    async fn users(self: &Arc<Self>, prefix: &str, n: usize) -> Res<Vec<String>> {
        let sem = Arc::new(Semaphore::new(8));
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let (me, sem, name) = (self.clone(), sem.clone(), format!("{prefix}{i}"));
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await?;
                let v = me
                    .post(None, "/api/v1/register", json!({"username": name, "password": "load-test-password"}))
                    .await?;
                Ok::<String, BoxError>(v["token"].as_str().unwrap_or_default().to_string())
            }));
        }
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            out.push(t.await??);
        }
        Ok(out)
    }

    async fn room(&self, token: &str, name: &str) -> Res<String> {
        let v = self.post(Some(token), "/api/v1/rooms", json!({"name": name, "visibility": "public"})).await?;
        Ok(v["room_id"].as_str().unwrap_or_default().to_string())
    }

    async fn join_all(self: &Arc<Self>, tokens: &[String], room: &str) -> Res<()> {
        let sem = Arc::new(Semaphore::new(32));
        let mut tasks = Vec::new();
        for t in tokens {
            let (me, sem, t, room) = (self.clone(), sem.clone(), t.clone(), room.to_string());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await?;
                // Already a member (the creator) is fine.
                let _ = me.post(Some(&t), &format!("/api/v1/rooms/{room}/join"), json!({})).await;
                Ok::<(), BoxError>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    }

    /// Opens a live connection and waits for `ready`.
    async fn ws(&self, token: &str) -> Res<WsStream> {
        let mut ws = chat_testkit::live_connect(&self.host, token, "", None).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"t\":\"ready\"") => return Ok(ws),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
                None => return Err("closed before ready".into()),
            }
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        rss_kib_of(self.pid?)
    }

    /// Server CPU time (user + system) so far.
    fn cpu(&self) -> Option<Duration> {
        cpu_of(self.pid?)
    }
}

/// Resident memory of a process, KiB.
fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of a process so far.
fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10)) // CLK_TCK is 100 on Linux.
}

fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Latency samples: (send time, latency), both in microseconds.
#[derive(Default)]
struct Latencies(Vec<(u64, u64)>);

impl Latencies {
    fn pct(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable_by_key(|(_, l)| *l);
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i].1 as f64 / 1000.0
    }

    fn summary(&mut self) -> String {
        format!(
            "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} deliveries)",
            self.pct(0.50),
            self.pct(0.95),
            self.pct(0.99),
            self.pct(1.0),
            self.0.len()
        )
    }

    /// The samples of messages sent in `[from, to)` (microseconds since the epoch).
    fn sent_between(&self, from: u64, to: u64) -> Latencies {
        Latencies(self.0.iter().copied().filter(|(s, _)| (from..to).contains(s)).collect())
    }
}

/// Reads a connection until `expect` messages carrying a load stamp arrived (or `deadline`),
/// recording send→receive latency from the stamp `L<micros>:` at the start of the body.
///
/// To keep the load tool's own CPU small next to the server's on a shared machine, this reads
/// the raw socket after the handshake and scans for stamps (server frames are unmasked text);
/// a stamp split across two reads is found in the kept tail.
async fn receive(ws: WsStream, expect: u64, deadline: Instant, lat: Arc<Mutex<Latencies>>) -> u64 {
    use tokio::io::AsyncReadExt;
    const MARK: &[u8] = b"\"body\":\"L";
    let mut sock = match ws.into_inner() {
        chat_testkit::tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
        _ => return 0,
    };
    let mut got = 0;
    let mut local = Vec::with_capacity(expect.min(1 << 16) as usize);
    let mut buf = vec![0u8; 64 * 1024];
    let mut keep = 0usize;
    let mut last_ping = Instant::now();
    while got < expect {
        // The raw reader answers no server pings, so it shows it is alive with its own
        // `{"t":"ping"}` frame (masked, as client frames must be; a zero mask keeps it plain).
        if last_ping.elapsed() > Duration::from_secs(15) {
            use tokio::io::AsyncWriteExt;
            const PING: &[u8] = b"{\"t\":\"ping\"}";
            let mut frame = vec![0x81, 0x80 | PING.len() as u8, 0, 0, 0, 0];
            frame.extend_from_slice(PING);
            if sock.write_all(&frame).await.is_err() {
                break;
            }
            last_ping = Instant::now();
        }
        let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(5));
        if left.is_zero() {
            break;
        }
        let n = match tokio::time::timeout(left, sock.read(&mut buf[keep..])).await {
            Ok(Ok(n)) if n > 0 => n,
            Ok(_) => break,
            Err(_) => continue,
        };
        let now = now_micros();
        let data = &buf[..keep + n];
        let mut at = 0;
        let mut consumed = 0;
        while let Some(i) = find(&data[at..], MARK) {
            let start = at + i + MARK.len();
            let Some(colon) = data[start..].iter().position(|b| *b == b':') else { break };
            if let Some(sent) =
                std::str::from_utf8(&data[start..start + colon]).ok().and_then(|t| t.parse::<u64>().ok())
            {
                local.push((sent, now.saturating_sub(sent)));
                got += 1;
            }
            at = start + colon;
            consumed = at;
        }
        // Keep a tail that may hold the start of a split stamp.
        let tail_from = consumed.max(data.len().saturating_sub(64));
        let tail = data.len() - tail_from;
        buf.copy_within(tail_from..tail_from + tail, 0);
        keep = tail;
    }
    lat.lock().await.0.extend(local);
    got
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A sender on one live connection: keeps up to `window` sends in flight.
struct Sender {
    sink: SplitSink<WsStream, Message>,
    acks: mpsc::Receiver<()>,
}

impl Sender {
    /// Splits `ws`: acks are counted from its stream (which also receives room events).
    fn new(ws: WsStream, acked: Arc<AtomicU64>) -> Sender {
        let (sink, mut stream) = ws.split();
        let (tx, acks) = mpsc::channel(1024);
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m {
                    if t.starts_with("{\"t\":\"ack\"") || t.contains("\"t\":\"ack\"") {
                        acked.fetch_add(1, Ordering::Relaxed);
                        if tx.send(()).await.is_err() {
                            break;
                        }
                    } else if t.contains("\"t\":\"error\"") {
                        eprintln!("send refused: {t}");
                    }
                }
            }
        });
        Sender { sink, acks }
    }

    async fn send(&mut self, room: &str, body: String, txn: String) -> Res<()> {
        let frame = json!({"t": "send", "room_id": room, "body": body, "txn_id": txn}).to_string();
        self.sink.send(Message::Text(frame.into())).await?;
        Ok(())
    }
}

/// A message body: with `markdown`, every other one formatted (bold, italic, inline code and a
/// bare link); the others, and all without `markdown`, plain words of the same length.
fn body(prefix: String, n: u64, markdown: bool) -> String {
    match (markdown, n % 2) {
        (true, 0) => format!("{prefix} **bold** and _it_ with `code` at https://example.org/{n}"),
        _ => format!("{prefix} plain words and with some text at example dot org {n}"),
    }
}

/// Runs throughput and compare with plain bodies and with Markdown ones, alternating, three
/// rounds, each run on a fresh server (the first on `first`), and prints the ratios of the
/// medians (one compare run is under a second: single runs vary by ±15%).
async fn markdown_ratios(cli: &Cli, first: Arc<Server>, messages: u64) -> Res<()> {
    let mut first = Some(first);
    let mut fresh = async || -> Res<Arc<Server>> {
        match first.take() {
            Some(s) => Ok(s),
            None => Server::start(cli).await,
        }
    };
    let (mut tp, mut cmp) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for _round in 0..3 {
        for (k, markdown) in [false, true].into_iter().enumerate() {
            let s = fresh().await?;
            tp[k].push(throughput(&s, 256, messages, markdown).await?);
            s.stop();
            let s = fresh().await?;
            cmp[k].push(compare(&s, markdown).await?);
            s.stop();
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (tp_plain, tp_md) = (median(&mut tp[0]), median(&mut tp[1]));
    let (cmp_plain, cmp_md) = (median(&mut cmp[0]), median(&mut cmp[1]));
    println!(
        "markdown (medians of 3): throughput {tp_md:.0} / {tp_plain:.0} msg/s = {:.2}; compare {cmp_md:.0} / {cmp_plain:.0} sends/s = {:.2}",
        tp_md / tp_plain,
        cmp_md / cmp_plain
    );
    Ok(())
}

async fn throughput(server: &Arc<Server>, in_flight: usize, messages: u64, markdown: bool) -> Res<f64> {
    let conns = in_flight.div_ceil(8).max(1);
    let window = in_flight.div_ceil(conns);
    let kind = if markdown { "half Markdown" } else { "plain" };
    println!("== throughput: {in_flight} sends in flight ({conns} connections x {window}), {messages} {kind} messages");
    let tokens = server.users("tp", conns).await?;
    let rooms_n = conns.div_ceil(4);
    let mut rooms = Vec::new();
    for r in 0..rooms_n {
        let room = server.room(&tokens[r * 4 % tokens.len()], &format!("tp-{r}")).await?;
        server.join_all(&tokens[(r * 4).min(tokens.len())..((r + 1) * 4).min(tokens.len())], &room).await?;
        rooms.push(room);
    }
    let acked = Arc::new(AtomicU64::new(0));
    let per_conn = messages.div_ceil(conns as u64);
    let cpu0 = server.cpu();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let ws = server.ws(t).await?;
        let room = rooms[i / 4].clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Sender::new(ws, acked);
            let mut sent = 0u64;
            let mut outstanding = 0usize;
            while sent < per_conn || outstanding > 0 {
                while outstanding < window && sent < per_conn {
                    s.send(&room, body(format!("x{i}-{sent}"), sent, markdown), format!("c{i}-{sent}")).await?;
                    sent += 1;
                    outstanding += 1;
                }
                if s.acks.recv().await.is_none() {
                    return Err::<(), BoxError>("connection closed".into());
                }
                outstanding -= 1;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = acked.load(Ordering::Relaxed);
    println!("throughput: {n} messages acknowledged (committed) in {secs:.2} s = {:.0} msg/s", n as f64 / secs);
    if let (Some(a), Some(b)) = (cpu0, server.cpu()) {
        println!("throughput: server CPU {:.3} ms per message", (b - a).as_secs_f64() * 1000.0 / n as f64);
    }
    Ok(n as f64 / secs)
}

async fn fanout(server: &Arc<Server>, members: usize, rate: u64, seconds: u64) -> Res<()> {
    println!("== fanout: {members} connected members, {rate} msg/s for {seconds} s");
    let tokens = server.users("fo", members).await?;
    let room = server.room(&tokens[0], "fanout").await?;
    server.join_all(&tokens, &room).await?;
    let total = rate * seconds;
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let acked = Arc::new(AtomicU64::new(0));
    for (i, t) in tokens.iter().enumerate() {
        let ws = server.ws(t).await?;
        if i < 4 {
            // The first four members send (and receive through their ack stream only).
            senders.push(Sender::new(ws, acked.clone()));
        } else {
            receivers.push(tokio::spawn(receive(ws, total, deadline, lat.clone())));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0 = server.cpu();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for n in 0..total {
        tick.tick().await;
        let s = &mut senders[(n % 4) as usize];
        s.send(&room, format!("L{}:{n}", now_micros()), format!("f{n}")).await?;
        // Drain acks without blocking so the senders' windows never fill.
        while s.acks.try_recv().is_ok() {}
    }
    let send_secs = started.elapsed().as_secs_f64();
    let mut delivered = 0;
    for r in receivers {
        delivered += r.await?;
    }
    let expected = total * (members as u64 - 4);
    println!(
        "fanout: sent {total} in {send_secs:.2} s ({:.0} msg/s); delivered {delivered} of {expected}",
        total as f64 / send_secs
    );
    println!("fanout: delivery latency {}", lat.lock().await.summary());
    if let (Some(a), Some(b)) = (cpu0, server.cpu()) {
        let cpu = (b - a).as_secs_f64();
        println!("fanout: server CPU {:.1}% of one core over the run", cpu / started.elapsed().as_secs_f64() * 100.0);
    }
    Ok(())
}

async fn idle(server: &Arc<Server>, connections: usize) -> Res<()> {
    println!("== idle: {connections} authenticated connections");
    let rss_start = server.rss_kib();
    let per_user = 25;
    let users = connections.div_ceil(per_user);
    // The users share no room, so no presence traffic flows: this measures the connection alone
    // (the `ephemeral` scenario measures online users with presence and typing).
    let tokens = server.users("idle", users).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = server.rss_kib();
    let sem = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let (srv, sem, t) = (server.clone(), sem.clone(), tokens[i % users].clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await?;
            srv.ws(&t).await
        }));
    }
    let mut open = Vec::with_capacity(connections);
    for t in tasks {
        open.push(t.await??);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server.rss_kib();
    println!("idle: {} connections open", open.len());
    if let (Some(s), Some(b), Some(a)) = (rss_start, rss_before, rss_after) {
        println!("idle: server RSS at start {s} KiB, with {users} users registered {b} KiB, with connections {a} KiB");
        println!(
            "idle: {:.2} KiB per idle authenticated connection",
            (a.saturating_sub(b)) as f64 / connections as f64
        );
    }
    drop(open);
    Ok(())
}

async fn compare(server: &Arc<Server>, markdown: bool) -> Res<f64> {
    let (users, senders_n, total) = (20usize, 4usize, 2000u64);
    let kind = if markdown { "half Markdown" } else { "plain" };
    println!(
        "== compare: {users} users in one room, {senders_n} senders with one send in flight each, {total} {kind} messages"
    );
    let tokens = server.users("cmp", users).await?;
    let room = server.room(&tokens[0], "compare").await?;
    server.join_all(&tokens, &room).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let acked = Arc::new(AtomicU64::new(0));
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let ws = server.ws(t).await?;
        if i < senders_n {
            senders.push(Sender::new(ws, acked.clone()));
        } else {
            receivers.push(tokio::spawn(receive(ws, total, deadline, lat.clone())));
        }
    }
    let cpu0 = server.cpu();
    let started = Instant::now();
    let per = total / senders_n as u64;
    let mut tasks = Vec::new();
    for (i, mut s) in senders.into_iter().enumerate() {
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per {
                s.send(&room, body(format!("L{}:{i}-{n}", now_micros()), n, markdown), format!("cmp{i}-{n}")).await?;
                if s.acks.recv().await.is_none() {
                    return Err::<(), BoxError>("connection closed".into());
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    for r in receivers {
        r.await?;
    }
    println!("compare: {total} sends in {secs:.2} s = {:.0} sends/s", total as f64 / secs);
    if let (Some(a), Some(b)) = (cpu0, server.cpu()) {
        println!("compare: server CPU {:.3} ms per message", (b - a).as_secs_f64() * 1000.0 / total as f64);
    }
    println!("compare: delivery latency {}", lat.lock().await.summary());
    Ok(total as f64 / secs)
}

async fn render(server: &Arc<Server>, messages: u64, runs: u32) -> Res<()> {
    println!(
        "== render: a room of {messages} messages (half Markdown, 1 in 10 edited, 1 in 5 with reactions, 1 in 20 a reply) in headless Chromium"
    );
    let tokens = server.users("render", 2).await?;
    let (ana, ben) = (&tokens[0], &tokens[1]);
    let room = server.room(ana, "render").await?;
    server.join_all(&tokens, &room).await?;
    let path = format!("/api/v1/rooms/{room}/messages");
    let started = Instant::now();
    let mut previous = String::new();
    for n in 0..messages {
        let token = if n % 3 == 0 { ben } else { ana };
        let mut m = json!({"body": body(format!("message {n}"), n, true), "txn_id": format!("m{n}")});
        if n % 20 == 19 && !previous.is_empty() {
            m["reply_to"] = json!(previous);
        }
        let v = server.post(Some(token), &path, m).await?;
        let id = v["event_id"].as_str().unwrap_or_default().to_string();
        if n % 10 == 0 {
            let edit = json!({"body": format!("message {n}, **edited**"), "txn_id": format!("e{n}"), "replaces": id});
            server.post(Some(token), &path, edit).await?;
        }
        if n % 5 == 0 {
            for (k, (who, key)) in [(ana, "👍"), (ben, "🎉")].into_iter().enumerate() {
                let r = json!({"event_id": id, "key": key, "txn_id": format!("r{n}-{k}")});
                server.post(Some(who), &format!("/api/v1/rooms/{room}/reactions"), r).await?;
            }
        }
        previous = id;
    }
    println!("render: room filled in {:.1} s", started.elapsed().as_secs_f64());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/browser/render_bench.mjs");
    let (url, ana, room) = (server.url.clone(), ana.clone(), room.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node").args([script, &url, &ana, &room, &runs.to_string()]).output()
    })
    .await??;
    if !out.status.success() {
        return Err(format!("render_bench.mjs failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    for visit in ["first", "repeat"] {
        let f = &v[visit];
        println!(
            "render: {visit} visit: HTML {} ms, DOM ready {} ms, load {} ms, live {} ms ({} messages on the page, {} bytes); \
             {} other files, {} fetched over the network ({} bytes)",
            f["html_ms"],
            f["dom_ready_ms"],
            f["load_ms"],
            f["live_ms"],
            f["rows"],
            f["bytes"],
            f["resources"],
            f["fetched"],
            f["fetched_bytes"]
        );
    }
    let h = &v["history"];
    println!("render: the whole history: {} ms in {} loads ({} messages)", h["ms"], h["loads"], h["rows"]);
    Ok(())
}

async fn ephemeral(
    server: &Arc<Server>,
    users: usize,
    rooms_n: usize,
    typing_percent: usize,
    rate: u64,
    seconds: u64,
) -> Res<()> {
    println!(
        "== ephemeral: {users} connected users in {rooms_n} rooms, {typing_percent}% typing, {rate} msg/s, {seconds} s per phase"
    );
    let per_room = users.div_ceil(rooms_n);
    println!("ephemeral: registering {users} users (argon2id, two at a time; this takes a while)");
    let tokens = server.users("eph", users).await?;
    let mut rooms = Vec::with_capacity(rooms_n);
    for r in 0..rooms_n {
        let members = &tokens[(r * per_room).min(users)..((r + 1) * per_room).min(users)];
        if members.is_empty() {
            break;
        }
        let room = server.room(&members[0], &format!("eph-{r}")).await?;
        server.join_all(members, &room).await?;
        rooms.push(room);
    }
    // One connection per user. In each room the first member sends; the next few type.
    let typists_per_room = (per_room * typing_percent).div_ceil(100);
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let mut senders = Vec::new();
    let mut typists = Vec::new();
    let mut receiving = Vec::new();
    let acked = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(64));
    // Two waves: the RSS difference between them, per user of the second wave, is the memory
    // cost of one more online user (connection, presence and room sets), free of start-up noise.
    let half = users / 2;
    let mut rss = Vec::new();
    for wave in [0..half, half..users] {
        let mut opened = Vec::with_capacity(wave.len());
        for i in wave.clone() {
            let (srv, sem, t) = (server.clone(), sem.clone(), tokens[i].clone());
            opened.push((
                i,
                tokio::spawn(async move {
                    let _p = sem.acquire().await?;
                    srv.ws(&t).await
                }),
            ));
        }
        for (i, task) in opened {
            let ws = task.await??;
            let (room_idx, slot) = (i / per_room, i % per_room);
            let Some(room) = rooms.get(room_idx).cloned() else { continue };
            if slot == 0 {
                senders.push((room, Sender::new(ws, acked.clone())));
            } else if slot <= typists_per_room {
                // Typists only write; their own deliveries are not measured.
                typists.push((room, ws.split().0));
            } else {
                receiving.push(ws);
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        rss.push(server.rss_kib());
    }
    if let [Some(a), Some(b)] = rss[..] {
        println!(
            "ephemeral: server RSS {a} KiB with {half} online users, {b} KiB with {users}: {:.2} KiB per online user (connection + presence)",
            b.saturating_sub(a) as f64 / (users - half) as f64
        );
    }
    // The three phases, the pauses around them and a margin: receivers stop reading then.
    let end = Instant::now() + Duration::from_secs(seconds * 3 + 30);
    let receivers: Vec<_> =
        receiving.into_iter().map(|ws| tokio::spawn(receive(ws, u64::MAX, end, lat.clone()))).collect();
    let senders = Arc::new(Mutex::new(senders));
    let typists_n = typists.len();
    let run_phase = |typing: bool| {
        let senders = senders.clone();
        async move {
            let cpu0 = server.cpu();
            let started = now_micros();
            let t0 = Instant::now();
            let total = rate * seconds;
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            let mut s = senders.lock().await;
            let n_senders = s.len();
            for n in 0..total {
                tick.tick().await;
                let (room, sender) = &mut s[(n as usize * 7919) % n_senders];
                sender.send(room, format!("L{}:{n}", now_micros()), format!("e{started}-{n}")).await?;
                while sender.acks.try_recv().is_ok() {}
            }
            let secs = t0.elapsed().as_secs_f64();
            let cpu = match (cpu0, server.cpu()) {
                (Some(a), Some(b)) => format!("{:.1}% of one core", (b - a).as_secs_f64() / secs * 100.0),
                _ => "n/a".into(),
            };
            let label = if typing { format!("with {typists_n} typing") } else { "without typing".into() };
            println!("ephemeral: phase {label}: {total} messages in {secs:.1} s, server CPU {cpu}");
            Ok::<(u64, u64), BoxError>((started, now_micros()))
        }
    };
    // Let the server settle (the second wave's presence announcements) before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (a0, a1) = run_phase(false).await?;
    // Typists: each renews "typing" every 3 s (as the browser client does), staggered.
    let stop = Arc::new(AtomicU64::new(0));
    let mut typing_tasks = Vec::new();
    for (i, (room, mut sink)) in typists.into_iter().enumerate() {
        let stop = stop.clone();
        typing_tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((i as u64 * 37) % 3000)).await;
            while stop.load(Ordering::Relaxed) == 0 {
                let frame = json!({"t": "typing", "room_id": room, "typing": true}).to_string();
                if sink.send(Message::Text(frame.into())).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (b0, b1) = run_phase(true).await?;
    stop.store(1, Ordering::Relaxed);
    for t in typing_tasks {
        t.abort();
    }
    // Typing notices expire within 6 s; then the same load without typing once more, so the
    // comparison is not against one possibly disturbed phase.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (c0, c1) = run_phase(false).await?;
    for r in receivers {
        r.await?;
    }
    let all = lat.lock().await;
    let (mut before, mut with, mut after) =
        (all.sent_between(a0, a1), all.sent_between(b0, b1), all.sent_between(c0, c1));
    println!("ephemeral: message delivery without typing (before): {}", before.summary());
    println!("ephemeral: message delivery with typing:             {}", with.summary());
    println!("ephemeral: message delivery without typing (after):  {}", after.summary());
    let baseline = (before.pct(0.99) + after.pct(0.99)) / 2.0;
    println!("ephemeral: p99 with typing / mean p99 without: {:.2}", with.pct(0.99) / baseline);
    Ok(())
}
