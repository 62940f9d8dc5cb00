//! The admin socket: how `chat backup` and `chat admin` reach a running server.
//!
//! redb lets one process open the database, so while the server runs, commands run *inside*
//! it: the server listens on a Unix socket in its data directory (`admin.sock`, mode 0600, so
//! only the server's user and root can use it). A command connects, sends one JSON line, and
//! reads one JSON line back. When nothing answers there, the command opens the database itself.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::ids::ServerName;
use crate::state::AppState;

pub mod ops;

pub use ops::{Ctx, Op};

/// Largest request line.
const MAX_REQUEST: usize = 64 * 1024;

/// Where the admin socket of a data directory is.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Serves the admin socket until shutdown. A stale socket file (no server behind it) is
/// replaced; a live one means another server uses the directory (the store lock refuses that
/// before we get here).
pub fn serve(state: AppState, data_dir: &Path) -> Result<(), String> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict {}: {e}", path.display()))?;
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = state.shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let state = state.clone();
            state.tasks.clone().spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                let mut rd = tokio::io::BufReader::new(rd).take(MAX_REQUEST as u64);
                let reply = match rd.read_line(&mut line).await {
                    Ok(_) => match serde_json::from_str::<Value>(&line) {
                        Ok(req) => handle(&state, req).await,
                        Err(e) => json!({ "ok": false, "error": format!("invalid request: {e}") }),
                    },
                    Err(e) => json!({ "ok": false, "error": e.to_string() }),
                };
                let _ = wr.write_all(format!("{reply}\n").as_bytes()).await;
            });
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

async fn handle(state: &AppState, req: Value) -> Value {
    let op = match serde_json::from_value::<Op>(req) {
        Ok(op) => op,
        Err(e) => return json!({ "ok": false, "error": format!("invalid request: {e}") }),
    };
    let answer = match op {
        Op::Backup { path } => backup(state, path).await,
        op => Ctx { store: &state.store, server_name: &state.server_name, hub: Some(&state.hub) }.run(op).await,
    };
    match answer {
        Ok(Value::Object(mut fields)) => {
            fields.insert("ok".into(), Value::Bool(true));
            Value::Object(fields)
        }
        Ok(other) => json!({ "ok": true, "result": other }),
        Err(e) => json!({ "ok": false, "error": e.to_string(), "status": e.status().as_u16() }),
    }
}

async fn backup(state: &AppState, dest: PathBuf) -> crate::error::Result<Value> {
    if !dest.is_absolute() {
        return Err(crate::error::Error::bad("backup path must be absolute"));
    }
    let store = state.store.clone();
    let blobs = state.media.dir.join("blobs");
    // No file is collected while the backup links them (uploads wait to be put in place).
    let _files = state.media.blobs.lock().await;
    let stats = tokio::task::spawn_blocking(move || store.backup_to(&dest, Some(&blobs)))
        .await
        .map_err(|e| crate::error::Error::Internal(e.to_string()))??;
    Ok(json!({ "backup": stats }))
}

/// Sends one request to the server running on `data_dir`. `Ok(None)`: no server answers there.
pub fn request(data_dir: &Path, req: &Value) -> Result<Option<Value>, String> {
    let path = socket_path(data_dir);
    let mut stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(format!("cannot reach the server at {}: {e}", path.display())),
    };
    stream.write_all(format!("{req}\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).map_err(|e| e.to_string())?;
    serde_json::from_str(&line).map(Some).map_err(|e| format!("bad answer from the server: {e}"))
}

/// Runs `op` on the data directory itself, for when no server is running there. The database
/// must exist, except to create an account (an administrator before the first start). Accounts
/// are named with the server name the server last ran under, else `fallback_name`.
pub fn run_offline(data_dir: &Path, fallback_name: &ServerName, op: Op) -> Result<Value, String> {
    let db = data_dir.join(crate::store::DB_FILE);
    if !db.exists() && !matches!(op, Op::UserCreate { .. }) {
        return Err(format!("no database at {} (is the data directory right?)", db.display()));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (store, writer) = crate::store::Store::open(data_dir, Box::new(|_, _| {})).map_err(|e| {
            if e.contains("already in use") {
                format!("{e}, but no server answered on {}: stop it and try again", socket_path(data_dir).display())
            } else {
                e
            }
        })?;
        let name = match crate::store::meta_text(&store, crate::store::SERVER_NAME_KEY).map_err(|e| e.to_string())? {
            Some(n) => ServerName::parse(&n).map_err(|e| format!("stored server name {n}: {e}"))?,
            None => fallback_name.clone(),
        };
        let out = Ctx { store: &store, server_name: &name, hub: None }.run(op).await.map_err(|e| e.to_string());
        drop(store);
        writer.stop();
        out
    })
}

/// Human-readable text of an answer to `op`, for the command line. `dry_delete`: the answer is
/// a `room show` standing in for a `room delete` without `--yes`.
pub fn describe(op: &Op, a: &Value, dry_delete: bool) -> String {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let yes_no = |v: &Value| if v.as_bool().unwrap_or(false) { "yes" } else { "no" };
    let generated = |a: &Value| match a["password"].as_str() {
        Some(pw) => format!("password (shown once; ask them to change it): {pw}\n"),
        None => String::new(),
    };
    match op {
        Op::Ping | Op::Backup { .. } => format!("{a}\n"),
        Op::UserCreate { .. } => {
            let u = &a["user"];
            let role = if u["admin"].as_bool().unwrap_or(false) { " (server administrator)" } else { "" };
            format!("created {}{role}\n{}", s(&u["user_id"]), generated(a))
        }
        Op::UserResetPassword { username, .. } => {
            format!("password of {username} changed; every session signed out\n{}", generated(a))
        }
        Op::UserDisable { .. } => {
            let u = &a["user"];
            if u["disabled"].as_bool().unwrap_or(false) {
                format!("{} disabled; its sessions are signed out\n", s(&u["user_id"]))
            } else {
                format!("{} enabled\n", s(&u["user_id"]))
            }
        }
        Op::UserMakeAdmin { .. } => {
            let u = &a["user"];
            if u["admin"].as_bool().unwrap_or(false) {
                format!("{} is a server administrator\n", s(&u["user_id"]))
            } else {
                format!("{} is no longer a server administrator\n", s(&u["user_id"]))
            }
        }
        Op::UserList => {
            let mut out = format!(
                "{:<24} {:<36} {:<6} {:<9} {:>8} {:>9}\n",
                "USERNAME", "USER ID", "ADMIN", "DISABLED", "SESSIONS", "FILES"
            );
            for u in a["users"].as_array().into_iter().flatten() {
                out += &format!(
                    "{:<24} {:<36} {:<6} {:<9} {:>8} {:>9}\n",
                    s(&u["username"]),
                    s(&u["user_id"]),
                    yes_no(&u["admin"]),
                    yes_no(&u["disabled"]),
                    u["sessions"],
                    crate::store::media::human_bytes(u["file_bytes"].as_u64().unwrap_or(0))
                );
            }
            out
        }
        Op::RoomList => {
            let mut out = format!("{:<46} {:<24} {:<7} {:>7}\n", "ROOM ID", "NAME", "KIND", "JOINED");
            for r in a["rooms"].as_array().into_iter().flatten() {
                let kind = if r["direct"].as_bool().unwrap_or(false) { "direct".into() } else { s(&r["join_rule"]) };
                out += &format!("{:<46} {:<24} {:<7} {:>7}\n", s(&r["room_id"]), s(&r["name"]), kind, r["joined"]);
            }
            out
        }
        Op::RoomShow { .. } => {
            let r = &a["room"];
            let mut out = format!(
                "room {}\nname: {}\ntopic: {}\nkind: {}\ncreator: {}\nevents: {}\nmembers:\n",
                s(&r["room_id"]),
                s(&r["name"]),
                s(&r["topic"]),
                if r["direct"].as_bool().unwrap_or(false) { "direct".into() } else { s(&r["join_rule"]) },
                s(&r["creator"]),
                a["events"]
            );
            for m in a["members"].as_array().into_iter().flatten() {
                out += &format!("  {} ({})\n", s(&m[0]), s(&m[1]));
            }
            out += &room_servers(r);
            if dry_delete {
                out += "nothing deleted: run again with --yes to delete this room, its messages and memberships for good\n";
            }
            out
        }
        Op::RoomDelete { room_id } => {
            let d = &a["deleted"];
            format!("deleted {room_id}: {} events, {} memberships\n", d["events"], d["members"])
        }
    }
}

/// The servers part of `room show`: joined members per server as this server counts them, and
/// the other servers it sends the room's events to (none: a stuck room shows here).
fn room_servers(r: &Value) -> String {
    if r["partial"].as_bool().unwrap_or(false) {
        return "servers: none yet (known only from an invitation; the room's state is not here)\n".into();
    }
    let servers = r["servers"].as_object().cloned().unwrap_or_default();
    let mut out = String::from("joined members per server:\n");
    for (server, n) in &servers {
        out += &format!("  {server}: {n}\n");
    }
    let to: Vec<&str> = r["sends_to"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if to.is_empty() {
        out += "sends new events to: no other server\n";
    } else {
        out += &format!("sends new events to: {}\n", to.join(", "));
    }
    out
}
