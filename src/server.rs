//! Starting and stopping the whole server: open the store, bind the listener, serve until the
//! shutdown token fires, then close live connections and commit what is queued.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::ratelimit::RateLimiter;
use crate::auth::{Accounts, AccountsInner, TokenKeys};
use crate::calls::turn::Relay;
use crate::calls::{Calls, CallsInner};
use crate::config::{Config, derive_server_name};
use crate::federation::{FedState, FedStateInner};
use crate::live::Hub;
use crate::live::{LiveState, LiveStateInner, Publisher};
use crate::rooms::{Rooms, RoomsInner};
use crate::state::{AppState, Inner};
use crate::store::{self, Store};
use crate::tls;

/// A server that has bound its listener and is serving.
pub struct Running {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Whether it serves HTTPS.
    pub https: bool,
    /// The plain-HTTP redirect listener's address, if any.
    pub redirect_addr: Option<SocketAddr>,
    /// The metrics listener's address, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// The TURN relay's address (UDP and TCP), if the relay runs.
    pub turn_addr: Option<SocketAddr>,
    /// The shared state, for programs that drive the services in-process (the federation
    /// benchmark). Tests observe the server through its API, live channel and `/metrics`.
    pub state: AppState,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    /// Waits for the server to stop (after the shutdown token is cancelled). Returns once the
    /// database is closed: the connections and every background task have ended and the writer
    /// has committed what was queued, so nothing holds the store but this handle's state,
    /// dropped here, and the same data directory can be opened again at once.
    pub async fn wait(self) -> Result<(), String> {
        let out = self.task.await.map_err(|e| format!("server task failed: {e}"))?;
        let store = self.state.store.clone();
        drop(self.state);
        if store.handles() > 1 {
            tracing::warn!(handles = store.handles(), "the database is still held after shutdown");
        }
        out
    }
}

/// Opens the store and binds the listener; serving runs in a task until `shutdown` fires.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Running, String> {
    let listener =
        TcpListener::bind(config.listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server_name = config.server_name.clone().unwrap_or_else(|| derive_server_name(addr));

    // Every background task belongs to `tasks`; shutdown closes it and waits for all of them.
    let tasks = TaskTracker::new();
    let hub = Hub::new(config.limits.live_queue, config.limits.max_sockets_per_user);
    let (notifier, alerts) = crate::live::notify::Notifier::channel();
    let (publisher, publisher_thread) = Publisher::start(hub.clone(), notifier);
    let outbox = Arc::new(crate::federation::sender::Outbox::new(std::time::Duration::from_secs(
        config.limits.federation_retry_max_secs,
    )));
    let wake = outbox.clone();
    let push_wake = Arc::new(tokio::sync::Notify::new());
    let wake_push = push_wake.clone();
    let search_wake = Arc::new(tokio::sync::Notify::new());
    let wake_search = search_wake.clone();
    let cache = usize::try_from(config.limits.store_cache_mib.saturating_mul(1024 * 1024)).ok();
    let (store, writer) = Store::open_with_cache(
        &config.data_dir,
        Box::new(move |batch, destinations| {
            // The writer thread only hands over: rendering and delivery run on the publisher.
            if batch.iter().any(|s| crate::push::is_notifying_kind(&s.event.kind)) {
                wake_push.notify_one();
            }
            publisher.committed(batch);
            wake.wake(destinations);
            wake_search.notify_one();
        }),
        cache,
    )?;
    store.set_local_server(server_name.as_str());
    if store::meta_text(&store, store::SERVER_NAME_KEY).ok().flatten().as_deref() != Some(server_name.as_str()) {
        store::set_meta_text(&store, store::SERVER_NAME_KEY, server_name.to_string())
            .await
            .map_err(|e| format!("cannot record the server name: {e}"))?;
    }
    let secret = store::token_secret(&store).await.map_err(|e| format!("cannot create token secret: {e}"))?;
    let certs = if config.tls.enabled() {
        let (cert, key) = match (&config.tls.cert, &config.tls.key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => tls::ensure_self_signed(
                &config.data_dir,
                &tls::self_signed_names(server_host(&server_name), addr.ip()),
            )?,
        };
        let certs = tls::Certs::load(cert, key)?;
        certs.clone().watch(&tasks, shutdown.clone());
        Some(certs)
    } else {
        None
    };
    let tls = certs.clone().map(tls::acceptor).transpose()?;
    let http_connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sfu = if config.sfu.enabled { Some(start_sfu(&config.sfu, addr.ip(), &tasks, &shutdown)?) } else { None };
    let turn = if config.turn.enabled {
        let turn_secret =
            store::secret(&store, "turn_secret").await.map_err(|e| format!("cannot create TURN secret: {e}"))?;
        // A new allocation needs the credential's session alive, the rule a token follows too:
        // sign-out, a password change and a disable all end sessions.
        let sessions_store = store.clone();
        let sessions: crate::calls::turn::SessionCheck = Arc::new(
            move |sid: &str, user: &str| matches!(sessions_store.session(sid), Ok(Some(s)) if s.user_id == user),
        );
        // Browsers that reach the media server only through the relay (TCP) are relayed to it.
        let media = sfu.as_ref().and_then(|s| s.addresses());
        Some(Arc::new(
            Relay::start(&config.turn, addr.ip(), turn_secret, server_name.to_string(), sessions, media).await?,
        ))
    } else {
        None
    };
    let federation = Arc::new(crate::federation::Federation::start(&store, &config, outbox).await?);
    let limits = config.limits.clone();
    let accounts = Accounts::new(AccountsInner {
        store: store.clone(),
        tokens: TokenKeys::new(&secret, limits.token_ttl_secs),
        server_name: server_name.clone(),
        logins_per_ip: RateLimiter::new(limits.logins_per_ip_per_minute),
        logins_per_account: RateLimiter::new(limits.logins_per_account_per_minute),
        logins_per_account_all_ips: RateLimiter::new(limits.logins_per_account_all_ips_per_minute),
        known_ips: Default::default(),
        registrations_per_ip: RateLimiter::new(limits.registrations_per_ip_per_minute),
        password_checks: Default::default(),
    });
    let rooms = Rooms::new(RoomsInner {
        store: store.clone(),
        server_name: server_name.clone(),
        limits: limits.clone(),
        messages_per_user: RateLimiter::new(limits.messages_per_user_per_minute),
        rooms_per_user: RateLimiter::per_hour(limits.rooms_per_user_per_hour),
    });
    let calls = Calls::new(CallsInner {
        store: store.clone(),
        server_name: server_name.clone(),
        pending: Default::default(),
        shutdown: shutdown.clone(),
        guest_tokens: sfu.is_some().then(|| accounts.tokens.clone()),
    });
    let media = crate::media::Media::open(store.clone(), &config.data_dir, server_name.clone(), &limits)?;
    tasks.spawn(media.clone().collect_forever(shutdown.clone()));
    let push = crate::push::Push::open(
        store.clone(),
        crate::push::PushSettings {
            private_endpoints: config.push_private_endpoints,
            contact: config.push_contact.clone().unwrap_or_else(|| format!("https://{server_name}")),
            retry_base_ms: limits.push_retry_base_ms,
            retry_max_ms: limits.push_retry_max_secs.saturating_mul(1000),
            give_up_ms: limits.push_give_up_secs.saturating_mul(1000),
            per_user: limits.push_devices_per_user as usize,
            max_retries: limits.push_retry_queue,
        },
        push_wake,
    )
    .await?;
    tasks.spawn(push.clone().run(shutdown.clone()));
    let search = match config.search {
        true => {
            let search = crate::search::Search::open(&config.data_dir, store.clone(), search_wake)?;
            tasks.spawn(search.clone().run(shutdown.clone()));
            Some(search)
        }
        false => None,
    };
    tasks.spawn(crate::live::notify::run(alerts, hub.clone(), push.clone(), store.clone(), shutdown.clone()));
    let (ephemeral_tx, ephemeral_rx) = tokio::sync::mpsc::channel(1024);
    let fed = FedState::new(FedStateInner {
        store: store.clone(),
        server_name: server_name.clone(),
        limits: limits.clone(),
        federation,
        shutdown: shutdown.clone(),
        rooms: rooms.clone(),
        calls: calls.clone(),
        tasks: tasks.clone(),
        ephemeral: ephemeral_tx,
        media: media.clone(),
    });
    let live = LiveState::new(LiveStateInner {
        store: store.clone(),
        hub: hub.clone(),
        limits: limits.clone(),
        shutdown: shutdown.clone(),
        rooms: rooms.clone(),
        calls: calls.clone(),
        tasks: tasks.clone(),
        fed: fed.clone(),
        sfu: sfu.clone(),
    });
    if let Some(sfu) = &sfu {
        let sfu = sfu.clone();
        let held = sfu.clone();
        let tab = |room: &crate::ids::RoomId, conf: &str, conn| crate::calls::sfu::Tab {
            conn,
            room: room.clone(),
            conf: conf.to_string(),
        };
        hub.use_media_server(
            config.sfu.call_participants,
            crate::live::hub::MediaServerHooks {
                left: Box::new(move |room, conf, conn| sfu.leave(&tab(room, conf, conn))),
                held: Box::new(move |room, conf, conn, off| held.hold(&tab(room, conf, conn), off)),
            },
        );
    }
    tasks.spawn(crate::live::show_remote(hub.clone(), ephemeral_rx, shutdown.clone()));
    let (presence_tx, presence_rx) = tokio::sync::mpsc::channel(1024);
    hub.send_presence_to(presence_tx);
    tasks.spawn(crate::live::send_presence(fed.clone(), presence_rx, shutdown.clone()));
    let (ended_tx, ended_rx) = tokio::sync::mpsc::channel(1024);
    hub.send_ended_calls_to(ended_tx);
    tasks.spawn(crate::live::record_calls(calls.clone(), ended_rx, shutdown.clone()));
    let (rosters_tx, rosters_rx) = tokio::sync::mpsc::channel(1024);
    hub.send_rosters_to(rosters_tx);
    tasks.spawn(crate::live::send_rosters(fed.clone(), rosters_rx, shutdown.clone()));
    let hostnames = crate::web::hostnames(&server_name, &config.extra_hostnames);
    let state = AppState::new(Inner {
        media,
        push,
        search,
        store,
        hub,
        server_name,
        limits,
        accounts,
        rooms,
        calls: calls.clone(),
        fed: fed.clone(),
        live,
        trusted_proxies: config.trusted_proxies.clone(),
        hostnames,
        shutdown: shutdown.clone(),
        turn: turn.clone(),
        https: tls.is_some(),
        hsts: tls.is_some() && !config.tls.self_signed,
        tls: certs,
        http_connections: http_connections.clone(),
        tasks: tasks.clone(),
    });
    crate::calls::load_pending(&calls).map_err(|e| format!("cannot read calls: {e}"))?;
    crate::calls::spawn_sweeper(calls, &tasks);
    tasks.spawn(crate::federation::sender::run(fed.clone()));
    tasks.spawn(crate::federation::receive::catch_up(fed));
    // Backups (and later admin commands) of a running server go through this socket; without
    // it they need the server stopped, which is worth a warning, not a refusal to start.
    if let Err(e) = crate::admin::serve(state.clone(), &config.data_dir) {
        tracing::warn!(error = %e, "admin socket unavailable: `chat backup` needs the server stopped");
    }

    // The hub's clock: typing notices expire and closed tabs turn offline after their grace;
    // other servers are told when a local user's notice ends that way.
    let ticker_hub = state.hub.clone();
    let ticker_fed = state.fed.clone();
    let ticker_stop = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = ticker_stop.cancelled() => return,
                _ = tick.tick() => {
                    for (user, room) in ticker_hub.tick(std::time::Instant::now()) {
                        if let (Ok(user), Ok(room)) = (crate::ids::UserId::parse(&user), crate::ids::RoomId::parse(&room)) {
                            crate::federation::ephemeral::typing(&ticker_fed, &user, &room, false);
                        }
                    }
                }
            }
        }
    });
    let app = crate::web::router(state.clone());
    let https = tls.is_some();
    let redirect_addr = match config.tls.redirect_listen {
        Some(at) => Some(redirect::start(at, addr.port(), shutdown.clone()).await?),
        None => None,
    };
    // The default metrics address may be taken (another chat on this machine): then warn and go
    // on without; an address that was asked for must work.
    let metrics_addr = match config.metrics_listen {
        Some(at) => match crate::metrics::start(at, state.clone()).await {
            Ok(a) => Some(a),
            Err(e) if Some(at) == crate::config::DEFAULT_METRICS_LISTEN.parse().ok() => {
                tracing::warn!(error = %e, "metrics not served");
                None
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let conn_limits = crate::web::serve::ConnLimits::from_limits(&config.limits, &config.trusted_proxies);
    let serving = match tls {
        Some(acceptor) => {
            let listener = tls::TlsListener::start(listener, acceptor, shutdown.clone()).map_err(|e| e.to_string())?;
            tokio::spawn(crate::web::serve::serve(
                listener,
                app,
                shutdown.clone(),
                conn_limits,
                http_connections.clone(),
            ))
        }
        None => {
            // Live frames are small and latency-bound: no Nagle delay (which, with delayed ACKs,
            // stalls request/response patterns by ~40 ms).
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
                let _ = tcp.set_nodelay(true);
            });
            tokio::spawn(crate::web::serve::serve(
                listener,
                app,
                shutdown.clone(),
                conn_limits,
                http_connections.clone(),
            ))
        }
    };
    let writer = Arc::new(std::sync::Mutex::new(Some(writer)));
    let tasks_at_end = tasks.clone();
    let task = tokio::spawn(async move {
        let tasks = tasks_at_end;
        serving.await.map_err(|e| format!("server task failed: {e}"))?;
        if let Some(relay) = turn {
            relay.close().await;
        }
        // Every background task watches the shutdown token: wait for them all (live connections
        // closing, the outbound lanes, the sweeper, the admin socket, /metrics).
        tasks.close();
        tasks.wait().await;
        // Every request has finished; commit whatever is still queued, then stop the writer.
        let w = writer.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = w {
            let _ = tokio::task::spawn_blocking(move || w.stop()).await;
        }
        // The writer let go of the publisher: it delivers what it holds and ends.
        let _ = tokio::task::spawn_blocking(move || publisher_thread.join()).await;
        Ok(())
    });
    tracing::info!(%addr, https, "listening");
    let turn_addr = state.turn.as_ref().map(|relay| relay.addr);
    Ok(Running { addr, https, redirect_addr, metrics_addr, turn_addr, state, task })
}

/// The host part of a server name (`chat.example.org:8448` -> `chat.example.org`,
/// `[::1]:8080` -> `::1`).
fn server_host(name: &crate::ids::ServerName) -> &str {
    let s = name.as_str();
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    s.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map(|(h, _)| h).unwrap_or(s)
}

/// The plain-HTTP listener that sends every request to HTTPS.
mod redirect {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::extract::{Request, State};
    use axum::http::{StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use tokio_util::sync::CancellationToken;

    /// Binds `at` and answers every request with `308` to the same host and path over HTTPS on
    /// `https_port`.
    pub async fn start(at: SocketAddr, https_port: u16, stop: CancellationToken) -> Result<SocketAddr, String> {
        let listener = tokio::net::TcpListener::bind(at)
            .await
            .map_err(|e| format!("http_redirect_listen: cannot listen on {at}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        let app = Router::new().fallback(redirect).with_state(https_port);
        tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).into_future());
        Ok(bound)
    }

    async fn redirect(State(port): State<u16>, req: Request) -> Response {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        // The host without its port; only characters a host name or IP literal may have.
        let host = if host.starts_with('[') {
            host.split_inclusive(']').next().unwrap_or_default()
        } else {
            host.split(':').next().unwrap_or_default()
        };
        let valid = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
        if !valid {
            return (StatusCode::BAD_REQUEST, "a Host header is required").into_response();
        }
        let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let target = if port == 443 { format!("https://{host}{path}") } else { format!("https://{host}:{port}{path}") };
        (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, target)]).into_response()
    }

    use std::future::IntoFuture;
}

/// Starts the media server on `cfg`'s address (by default the web listener's, or this
/// machine's first non-loopback IPv4 address when that listens on all addresses).
fn start_sfu(
    cfg: &crate::config::SfuConfig,
    web_ip: std::net::IpAddr,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> Result<crate::calls::sfu::Sfu, String> {
    let ip = match cfg.ip {
        Some(ip) => ip,
        None if !web_ip.is_unspecified() => web_ip,
        None => crate::calls::turn::guess_public_ip().ok_or(
            "sfu.ip: required when the web listener listens on all addresses and this machine has no \
             non-loopback IPv4 address; set it (CHAT_SFU_IP), or turn the media server off (CHAT_SFU_DISABLED=true)",
        )?,
    };
    let net = crate::calls::sfu::peer::Network {
        ip,
        public_ip: cfg.public_ip,
        ports: crate::calls::sfu::peer::Ports::new(cfg.ports.0..=cfg.ports.1),
        max_receive_bps: cfg.receive_kbps.saturating_mul(1000),
    };
    let limits = crate::calls::sfu::Limits {
        call_participants: cfg.call_participants,
        participants_total: cfg.participants_total,
        forward_bps_total: cfg.forward_mbps.saturating_mul(1_000_000),
    };
    Ok(crate::calls::sfu::Sfu::start(net, limits, tasks.clone(), shutdown.clone()))
}
