//! Password hashing with argon2id (the crate's defaults: 19 MiB, 2 passes), off the async threads.
//!
//! Hashes run on [`HASH_THREADS`] dedicated threads, whatever the number of requests: each hash
//! takes 19 MiB and a core, and the allocator keeps the memory a thread once used. Run on the
//! general blocking pool, a burst of 400 sign-ups left the server with 2.3 GB resident (one
//! arena per pool thread); on two fixed threads the memory stays bounded at about 2 x 19 MiB and
//! chat keeps CPU for everything else.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, LazyLock, Mutex};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 8;
/// Longest accepted password, in bytes (hashing cost grows with length).
pub const MAX_LEN: usize = 1024;

/// Checks the password rules.
pub fn check_rules(pw: &str) -> Result<()> {
    if pw.chars().count() < MIN_LEN {
        return Err(Error::bad(format!("password must be at least {MIN_LEN} characters")));
    }
    if pw.len() > MAX_LEN {
        return Err(Error::TooLarge(format!("password must be at most {MAX_LEN} bytes")));
    }
    Ok(())
}

/// Threads that compute password hashes, process-wide.
pub const HASH_THREADS: usize = 2;
/// Hash jobs waiting before callers wait too.
const HASH_QUEUE: usize = 1024;

type Job = Box<dyn FnOnce() + Send>;

// Process-wide on purpose: a thread pool bounds the process's memory and CPU whatever the number
// of servers in it, and holds no configuration or server state.
static POOL: LazyLock<Option<SyncSender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = sync_channel::<Job>(HASH_QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    let mut started = 0;
    for i in 0..HASH_THREADS {
        let rx: Arc<Mutex<Receiver<Job>>> = rx.clone();
        let spawned = std::thread::Builder::new().name(format!("chat-argon2-{i}")).spawn(move || {
            loop {
                // The lock is held only while taking the next job, never while hashing.
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
        started += usize::from(spawned.is_ok());
    }
    (started > 0).then_some(tx)
});

async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let pool = POOL.as_ref().ok_or_else(|| Error::Internal("no password hashing threads".into()))?.clone();
    let (done_tx, done_rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done_tx.send(f());
    });
    // A full queue blocks; do that wait off the async threads.
    tokio::task::spawn_blocking(move || pool.send(job))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|_| Error::Internal("password hashing threads stopped".into()))?;
    done_rx.await.map_err(|_| Error::Internal("password hashing failed".into()))
}

/// Hashes a password into a PHC string.
pub async fn hash(pw: String) -> Result<String> {
    run(move || {
        Argon2::default()
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("argon2: {e}")))
    })
    .await?
}

/// Checks a password against a stored PHC string.
pub async fn verify(pw: String, phc: String) -> bool {
    run(move || Argon2::default().verify_password(pw.as_bytes(), phc.as_str()).is_ok()).await.unwrap_or(false)
}

/// [`verify`] against `phc`, or, for an unknown account (`None`), the same work against a
/// stand-in hash, answering false: a wrong name and a wrong password take equally long.
pub async fn verify_or_dummy(pw: String, phc: Option<String>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    match phc {
        Some(phc) => verify(pw, phc).await,
        None => {
            let dummy = match DUMMY.get() {
                Some(h) => h.clone(),
                None => match hash(crate::auth::random_id().unwrap_or_default()).await {
                    Ok(h) => DUMMY.get_or_init(|| h).clone(),
                    Err(_) => return false,
                },
            };
            let _ = verify(pw, dummy).await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hash_then_verify() {
        let h = super::hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("correct horse".into(), h.clone()).await);
        assert!(!super::verify("wrong horse".into(), h).await);
    }
}
