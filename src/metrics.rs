//! `/metrics` in the Prometheus text format, on its own listener (loopback by default), so the
//! figures are not public with the web app.

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

/// Binds `at` and serves `GET /metrics` until shutdown; returns the bound address.
pub async fn start(at: SocketAddr, state: AppState) -> Result<SocketAddr, String> {
    let listener =
        tokio::net::TcpListener::bind(at).await.map_err(|e| format!("metrics_listen: cannot listen on {at}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop, tasks) = (state.shutdown.clone(), state.tasks.clone());
    let app = Router::new().route("/metrics", get(metrics)).with_state(state);
    tasks.spawn(std::future::IntoFuture::into_future(
        axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()),
    ));
    Ok(bound)
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = String::new();
    let hub = state.hub.gauges();
    metric(&mut out, "chat_users_online", "gauge", "Users with at least one live connection.", hub.users);
    metric(&mut out, "chat_connections", "gauge", "Open live WebSocket connections.", hub.connections);
    let http = state.http_connections.load(std::sync::atomic::Ordering::Relaxed);
    metric(&mut out, "chat_http_connections", "gauge", "HTTP connections being served (WebSockets not counted).", http);
    if let Some(certs) = &state.tls {
        metric(
            &mut out,
            "chat_tls_reloads_total",
            "counter",
            "TLS certificates reloaded since start.",
            certs.reloads(),
        );
        let failed = certs.reload_failures();
        metric(
            &mut out,
            "chat_tls_reload_failures_total",
            "counter",
            "TLS reloads that failed (the old certificate stayed).",
            failed,
        );
    }
    metric(&mut out, "chat_messages_total", "counter", "Messages committed and published since start.", hub.messages);
    metric(
        &mut out,
        "chat_live_lagged_total",
        "counter",
        "Times a connection's queue overflowed and it caught up from the store.",
        state.hub.lagged_total(),
    );
    metric(
        &mut out,
        "chat_password_checks_total",
        "counter",
        "Password checks (argon2) for sign-ins, unknown names included (they cost the same).",
        state.accounts.password_checks.load(std::sync::atomic::Ordering::Relaxed),
    );
    metric(
        &mut out,
        "chat_alerts_dropped_total",
        "counter",
        "Message alerts (desktop notifications) dropped because their queue was full.",
        crate::live::notify::dropped(),
    );
    let pc = &state.push.counters;
    for (name, kind, help, value) in [
        (
            "chat_push_delivered_total",
            "counter",
            "Web Pushes the push services took.",
            pc.delivered.load(Ordering::Relaxed),
        ),
        (
            "chat_push_retried_total",
            "counter",
            "Web Push attempts that failed and are tried again.",
            pc.retried.load(Ordering::Relaxed),
        ),
        (
            "chat_push_dropped_total",
            "counter",
            "Web Pushes refused by the push service, given up, or over the retry queue.",
            pc.dropped.load(Ordering::Relaxed),
        ),
        (
            "chat_push_gone_total",
            "counter",
            "Push subscriptions removed: gone at the push service, or their session ended.",
            pc.gone.load(Ordering::Relaxed),
        ),
    ] {
        metric(&mut out, name, kind, help, value);
    }
    let (pending, retries) = state.push.depths();
    metric(&mut out, "chat_push_pending", "gauge", "Messages waiting to be turned into Web Pushes.", pending);
    metric(&mut out, "chat_push_retry_queued", "gauge", "Web Pushes waiting to be tried again.", retries);
    metric(
        &mut out,
        "chat_asset_responses_total",
        "counter",
        "Responses for the web client's files (JS, CSS, icons), 304s included, since start.",
        crate::assets::served(),
    );
    metric(
        &mut out,
        "chat_media_remote_bytes",
        "gauge",
        "Bytes the copies of other servers' files take here (at the last fetch or collection).",
        state.media.remote_bytes.load(Ordering::Relaxed),
    );
    if let Some(search) = &state.search {
        let st = search.stats();
        let indexed = search.indexed();
        let behind = state.store.stream_last().unwrap_or(0).saturating_sub(indexed);
        for (name, kind, help, value) in [
            ("chat_search_indexed_position", "gauge", "The last stream position the search index holds.", indexed),
            (
                "chat_search_behind",
                "gauge",
                "Stream positions the search index has not taken in yet (0: up to date).",
                behind,
            ),
            (
                "chat_search_docs_indexed_total",
                "counter",
                "Messages written into the search index (again after an edit or deletion), since start.",
                st.docs_indexed.load(Ordering::Relaxed),
            ),
            (
                "chat_search_commits_total",
                "counter",
                "Search index commits, since start.",
                st.commits.load(Ordering::Relaxed),
            ),
            (
                "chat_search_rebuilds_total",
                "counter",
                "Times the search index was found damaged and started over while running.",
                st.rebuilds.load(Ordering::Relaxed),
            ),
            (
                "chat_search_queries_total",
                "counter",
                "Searches asked, since start.",
                st.queries.load(Ordering::Relaxed),
            ),
            (
                "chat_search_query_errors_total",
                "counter",
                "Searches the index failed to answer, since start.",
                st.query_errors.load(Ordering::Relaxed),
            ),
        ] {
            metric(&mut out, name, kind, help, value);
        }
    }
    let pos = state.store.stream_pos().unwrap_or(0);
    metric(&mut out, "chat_stream_position", "gauge", "Events committed in all (the stream position).", pos);
    let w = state.store.writer_stats();
    metric(
        &mut out,
        "chat_store_commits_total",
        "counter",
        "Write transactions committed (each one fsync).",
        w.commits,
    );
    metric(
        &mut out,
        "chat_store_jobs_total",
        "counter",
        "Write jobs committed; jobs/commits is the batch size.",
        w.jobs,
    );
    metric(
        &mut out,
        "chat_store_commit_seconds_total",
        "counter",
        "Time spent committing; divided by commits, the commit latency.",
        w.commit_time.as_secs_f64(),
    );
    metric(&mut out, "chat_calls_active", "gauge", "Calls with someone in them.", hub.calls);
    metric(&mut out, "chat_call_participants", "gauge", "People in calls.", hub.in_calls);
    metric(
        &mut out,
        "chat_call_invites_pending",
        "gauge",
        "Call invites waiting for an answer.",
        state.calls.pending.len(),
    );
    if let Some(sfu) = &state.live.sfu {
        let f = sfu.figures();
        metric(&mut out, "chat_sfu_calls", "gauge", "Calls on the media server.", f.calls);
        metric(&mut out, "chat_sfu_participants", "gauge", "Participants on the media server.", f.participants);
        metric(
            &mut out,
            "chat_sfu_forward_bits_per_second",
            "gauge",
            "Bits per second the media server forwards now.",
            f.forward_bps,
        );
        metric(
            &mut out,
            "chat_sfu_forwarded_packets_total",
            "counter",
            "RTP packets forwarded to receivers.",
            f.forwarded_packets,
        );
        metric(
            &mut out,
            "chat_sfu_forwarded_bytes_total",
            "counter",
            "RTP payload bytes forwarded to receivers.",
            f.forwarded_bytes,
        );
        metric(
            &mut out,
            "chat_sfu_received_packets_total",
            "counter",
            "RTP packets received from publishers.",
            f.received_packets,
        );
        metric(
            &mut out,
            "chat_sfu_lost_upstream_packets_total",
            "counter",
            "Packets lost on the way from publishers (sequence gaps).",
            f.lost_upstream,
        );
        metric(
            &mut out,
            "chat_sfu_downstream_loss_percent",
            "gauge",
            "The worst loss a receiver reported lately, percent.",
            f.loss_downstream_percent,
        );
        metric(
            &mut out,
            "chat_sfu_dropped_packets_total",
            "counter",
            "Packets dropped because a receiver's queue was full.",
            f.dropped_packets,
        );
        metric(
            &mut out,
            "chat_sfu_keyframe_requests_total",
            "counter",
            "Keyframe requests sent to publishers.",
            f.keyframe_requests,
        );
        metric(
            &mut out,
            "chat_sfu_layer_switches_total",
            "counter",
            "Simulcast layer switches made for receivers.",
            f.layer_switches,
        );
    }
    if let Some(relay) = &state.turn {
        let q = &relay.quotas;
        metric(&mut out, "chat_turn_allocations", "gauge", "Live TURN allocations.", q.allocations());
        let relayed = q.relayed_bytes.load(Ordering::Relaxed);
        metric(
            &mut out,
            "chat_turn_relayed_bytes_total",
            "counter",
            "Media bytes through the relay, both ways.",
            relayed,
        );
        let peers = q.refused_peers.load(Ordering::Relaxed);
        metric(&mut out, "chat_turn_refused_peers_total", "counter", "Packets refused by the peer policy.", peers);
        let auth = q.refused_auth.load(Ordering::Relaxed);
        metric(&mut out, "chat_turn_refused_auth_total", "counter", "Requests with bad or expired credentials.", auth);
        let bad = q.dropped_malformed.load(Ordering::Relaxed);
        metric(&mut out, "chat_turn_malformed_total", "counter", "Malformed or unanswered packets.", bad);
    }
    let _ = writeln!(
        out,
        "# HELP chat_federation_queued_events Events waiting to be sent to another server, per destination and lane (0 calls, 1 the rest).\n# TYPE chat_federation_queued_events gauge"
    );
    for (dest, lane, n) in state.store.queue_depths().unwrap_or_default() {
        let _ = writeln!(out, "chat_federation_queued_events{{destination=\"{dest}\",lane=\"{lane}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP chat_federation_destination_failing 1 while deliveries to that server fail.\n# TYPE chat_federation_destination_failing gauge"
    );
    for (dest, st) in state.federation().outbox.statuses() {
        let _ = writeln!(
            out,
            "chat_federation_destination_failing{{destination=\"{dest}\"}} {}",
            u8::from(st.failing_since.is_some())
        );
    }
    let c = &state.federation().budgets.counters;
    for (name, help, n) in [
        (
            "chat_federation_missing_fetches_total",
            "get_missing_events requests made to other servers.",
            &c.missing_fetches,
        ),
        (
            "chat_federation_missing_fetches_refused_total",
            "get_missing_events requests not made: the transaction's or the server's budget was spent (a gap stays).",
            &c.missing_fetches_refused,
        ),
        ("chat_federation_missing_events_total", "Events received in get_missing_events answers.", &c.missing_events),
        (
            "chat_federation_events_rate_limited_total",
            "Events from other servers refused or left out for a rate (server, sender or room).",
            &c.events_rate_limited,
        ),
        (
            "chat_federation_events_too_large_total",
            "Events from other servers refused for their size.",
            &c.events_too_large,
        ),
        ("chat_federation_invites_refused_total", "Invitations from other servers refused.", &c.invites_refused),
        (
            "chat_federation_requests_total",
            "Requests made to other servers.",
            &state.federation().client.counters.requests,
        ),
        (
            "chat_federation_connections_opened_total",
            "TLS connections opened to other servers (the rest of the requests reused one).",
            &state.federation().client.counters.opened,
        ),
        (
            "chat_federation_http2_connections_opened_total",
            "Of the connections opened to other servers, those speaking HTTP/2 (the peer offered it).",
            &state.federation().client.counters.opened_h2,
        ),
    ] {
        metric(&mut out, name, "counter", help, n.load(Ordering::Relaxed));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}
