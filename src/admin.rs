//! The admin socket: how `chat backup` (and later admin commands) reach a running server.
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

use crate::state::AppState;

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
    tokio::spawn(async move {
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
            tokio::spawn(async move {
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
    match req.get("op").and_then(Value::as_str) {
        Some("backup") => {
            let Some(dest) = req.get("path").and_then(Value::as_str).map(PathBuf::from) else {
                return json!({ "ok": false, "error": "backup needs a path" });
            };
            if !dest.is_absolute() {
                return json!({ "ok": false, "error": "backup path must be absolute" });
            }
            let store = state.store.clone();
            match tokio::task::spawn_blocking(move || store.backup_to(&dest)).await {
                Ok(Ok(stats)) => json!({ "ok": true, "backup": stats }),
                Ok(Err(e)) => json!({ "ok": false, "error": e.to_string() }),
                Err(e) => json!({ "ok": false, "error": e.to_string() }),
            }
        }
        _ => json!({ "ok": false, "error": "unknown op" }),
    }
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
