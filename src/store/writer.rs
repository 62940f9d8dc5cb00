//! The single writer with group commit.
//!
//! redb allows one write transaction at a time. Every write of the server is a job sent to one
//! thread, which takes all jobs waiting in its queue (up to [`MAX_BATCH`]), runs them in one
//! transaction, commits once (one fsync), runs the batch's after-commit work, hands the
//! committed events on (`OnCommit`: to the publisher thread, which renders and delivers them,
//! and to the federation outbox), and only then answers each waiter. It renders nothing.
//!
//! Invariant for jobs: a job does all its reads and checks first and writes only once it
//! cannot fail any more, except through a storage error. A job that returns an error has
//! therefore written nothing, and the other jobs of its batch commit normally. A storage error
//! or a panic inside a job aborts the whole batch and every waiter in it gets an error: nothing
//! of that batch is acknowledged, and nothing of it is stored.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{Database, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use super::events::StoredEvent;
use super::tables::META;
use crate::error::{Error, Result};

/// Most jobs committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Jobs queued for the writer before senders wait (back-pressure, not an unbounded buffer).
pub const QUEUE: usize = 8192;

/// Called on the writer thread after each successful commit with that batch's events (handed
/// over, in order) and the federation destinations the batch queued events for.
pub type OnCommit = Box<dyn Fn(Vec<Arc<StoredEvent>>, &[String]) + Send>;

type Completion = Box<dyn FnOnce(Option<&str>) + Send>;
/// A job runs inside the batch and returns its completion and whether it succeeded.
type Job = Box<dyn FnOnce(&mut Tx<'_>) -> (Completion, bool) + Send>;
/// Work a job leaves for after the commit of its batch (in-memory state that must follow only
/// what is stored).
type AfterCommit = Box<dyn FnOnce() + Send>;

enum Msg {
    Job(Job),
    Stop,
}

/// A write job's view of the open transaction.
pub struct Tx<'a> {
    /// The batch's transaction: private to the store, whose modules offer typed operations.
    pub(super) txn: &'a WriteTransaction,
    pos: &'a mut u64,
    committed: &'a mut Vec<Arc<StoredEvent>>,
    outbound: &'a mut Vec<String>,
    after: &'a mut Vec<AfterCommit>,
    /// This server's name (empty until the server has set it: offline admin commands), which
    /// tells local senders, whose events federation sends out, from remote ones.
    pub local: &'a str,
}

impl Tx<'_> {
    /// Hands out the next stream position. Positions are dense within a committed batch; an
    /// aborted batch gives its positions back.
    pub fn next_pos(&mut self) -> u64 {
        *self.pos += 1;
        *self.pos
    }

    /// Queues an event for live delivery once the batch has committed.
    pub fn publish(&mut self, ev: Arc<StoredEvent>) {
        self.committed.push(ev);
    }

    /// Runs `f` on the writer thread once the batch has committed, before the waiters are
    /// answered; never if the batch fails or this job returns an error. For in-memory state
    /// that must only ever reflect what is stored.
    pub fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.after.push(Box::new(f));
    }

    /// Notes that the batch queued federation work for `destination`; its sender is woken
    /// after commit.
    pub fn wake_destination(&mut self, destination: &str) {
        if !self.outbound.iter().any(|d| d == destination) {
            self.outbound.push(destination.to_string());
        }
    }
}

/// Statistics of the writer, for benchmarks and (later) metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: u64,
    /// Jobs committed.
    pub jobs: u64,
    /// Total time spent in `commit()`.
    pub commit_time: Duration,
}

/// Handle for sending jobs to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
    stats: Arc<std::sync::Mutex<WriterStats>>,
    local: Arc<std::sync::OnceLock<String>>,
}

/// The answer to a queued job, available once its batch has committed.
pub struct Committed<T>(oneshot::Receiver<Result<T>>);

impl<T> Committed<T> {
    /// Waits for the commit (or the failure) of the job's batch.
    pub async fn wait(self) -> Result<T> {
        self.0.await.map_err(|_| shutting_down())?
    }
}

/// Owns the writer thread; [`WriterThread::stop`] commits what is queued and joins it.
pub struct WriterThread {
    tx: mpsc::Sender<Msg>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl WriterThread {
    /// Finishes every job queued before this call, then stops the thread. Jobs sent afterwards
    /// fail with "shutting down".
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(handle) = self.handle.take() {
            let tx = self.tx.clone();
            let stop = move || {
                let _ = tx.blocking_send(Msg::Stop);
                let _ = handle.join();
            };
            // `blocking_send` panics on a runtime thread, which is where a server task dropped
            // at runtime shutdown (say, after a test panicked) drops its writer: stop from a
            // plain thread then.
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::spawn(stop).join();
            } else {
                stop();
            }
        }
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

impl Writer {
    /// Starts the writer thread on `db`. `start_pos` is the last stream position handed out.
    pub fn start(db: Arc<Database>, start_pos: u64, on_commit: OnCommit) -> (Writer, WriterThread) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(std::sync::Mutex::new(WriterStats::default()));
        let thread_stats = stats.clone();
        let local = Arc::new(std::sync::OnceLock::new());
        let thread_local = local.clone();
        let handle = std::thread::Builder::new()
            .name("chat-writer".into())
            .spawn(move || run(db, rx, start_pos, on_commit, thread_stats, thread_local))
            .ok();
        (Writer { tx: tx.clone(), stats, local }, WriterThread { tx, handle })
    }

    /// Tells the writer this server's name (once, at start).
    pub fn set_local_server(&self, name: &str) {
        let _ = self.local.set(name.to_string());
    }

    /// Runs `f` inside the next batch and returns its result once that batch has committed.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.submit(f).await?.wait().await
    }

    /// Queues `f` for the writer and returns as soon as it is queued. Jobs run and commit in the
    /// order they were queued, so a caller that submits in order (one live connection's sends)
    /// gets its writes committed in that order while still keeping several in flight.
    pub async fn submit<T, F>(&self, f: F) -> Result<Committed<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move |tx: &mut Tx<'_>| {
            let out = f(tx);
            let ok = out.is_ok();
            let completion: Completion = Box::new(move |commit_err: Option<&str>| {
                let res = match commit_err {
                    None => out,
                    Some(msg) => Err(Error::Internal(format!("commit failed: {msg}"))),
                };
                let _ = done_tx.send(res);
            });
            (completion, ok)
        });
        self.tx.send(Msg::Job(job)).await.map_err(|_| shutting_down())?;
        Ok(Committed(done_rx))
    }

    /// Whether the writer thread is still taking jobs.
    pub fn alive(&self) -> bool {
        !self.tx.is_closed()
    }

    /// A copy of the writer's counters.
    pub fn stats(&self) -> WriterStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }
}

fn shutting_down() -> Error {
    Error::Unavailable("the server is shutting down".into())
}

fn run(
    db: Arc<Database>,
    mut rx: mpsc::Receiver<Msg>,
    mut pos: u64,
    on_commit: OnCommit,
    stats: Arc<std::sync::Mutex<WriterStats>>,
    local: Arc<std::sync::OnceLock<String>>,
) {
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else { break };
        let mut jobs = Vec::new();
        match first {
            Msg::Job(j) => jobs.push(j),
            Msg::Stop => stopping = true,
        }
        while !stopping && jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Job(j)) => jobs.push(j),
                Ok(Msg::Stop) => stopping = true,
                Err(_) => break,
            }
        }
        if jobs.is_empty() {
            continue;
        }
        let n = jobs.len() as u64;
        let started = Instant::now();
        let mut out = Batch { committed: Vec::new(), outbound: Vec::new(), after: Vec::new() };
        let mut completions = Vec::with_capacity(jobs.len());
        let name = local.get().map(String::as_str).unwrap_or_default();
        let outcome = run_batch(&db, jobs, &mut pos, &mut out, name, &mut completions);
        match outcome {
            Ok(commit_time) => {
                for f in out.after.drain(..) {
                    f();
                }
                on_commit(std::mem::take(&mut out.committed), &out.outbound);
                for c in completions {
                    c(None);
                }
                if let Ok(mut s) = stats.lock() {
                    s.commits += 1;
                    s.jobs += n;
                    s.commit_time += commit_time;
                }
            }
            Err((start_pos, msg)) => {
                tracing::error!(error = %msg, jobs = n, "write batch failed; nothing of it was stored");
                pos = start_pos;
                for c in completions {
                    c(Some(&msg));
                }
            }
        }
        tracing::trace!(jobs = n, elapsed = ?started.elapsed(), "batch done");
    }
    // Refuse what is still queued after Stop: the receiver is dropped with the thread, so their
    // senders see "shutting down".
    rx.close();
}

/// What a batch hands on after commit.
struct Batch {
    committed: Vec<Arc<StoredEvent>>,
    outbound: Vec<String>,
    after: Vec<AfterCommit>,
}

/// Runs one batch. Returns the commit duration, or the start position and the error text.
fn run_batch(
    db: &Database,
    jobs: Vec<Job>,
    pos: &mut u64,
    out: &mut Batch,
    local: &str,
    completions: &mut Vec<Completion>,
) -> std::result::Result<Duration, (u64, String)> {
    let start_pos = *pos;
    let txn = db.begin_write().map_err(|e| (start_pos, e.to_string()))?;
    let mut panicked = false;
    for job in jobs {
        if panicked {
            // The transaction is abandoned; answer the remaining waiters without running them.
            completions.push(Box::new(|_| {}));
            continue;
        }
        let hooks = out.after.len();
        let mut tx = Tx {
            txn: &txn,
            pos,
            committed: &mut out.committed,
            outbound: &mut out.outbound,
            after: &mut out.after,
            local,
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut tx))) {
            Ok((c, ok)) => {
                if !ok {
                    // A failed job wrote nothing, so nothing of it may follow the commit.
                    out.after.truncate(hooks);
                }
                completions.push(c)
            }
            Err(_) => panicked = true,
        }
    }
    if panicked {
        return Err((start_pos, "a write job panicked".into()));
    }
    if *pos != start_pos {
        let saved = (|| -> Result<()> {
            let mut meta = txn.open_table(META)?;
            meta.insert("stream_pos", pos.to_le_bytes().as_slice())?;
            Ok(())
        })();
        saved.map_err(|e| (start_pos, e.to_string()))?;
    }
    let t = Instant::now();
    txn.commit().map_err(|e| (start_pos, e.to_string()))?;
    Ok(t.elapsed())
}

/// Reads the last handed-out stream position.
pub fn load_stream_pos(db: &Database) -> Result<u64> {
    use redb::ReadableDatabase;
    let r = db.begin_read()?;
    let meta = match r.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let v = meta.get("stream_pos")?;
    Ok(v.and_then(|v| v.value().try_into().ok()).map(u64::from_le_bytes).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A job's after-commit work runs only when its batch commits and the job succeeded: a job
    /// that fails, or a batch that fails (here: another job of it panics), leaves none.
    #[test]
    fn after_commit_work_follows_only_what_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _thread) = crate::store::Store::open(dir.path(), Box::new(|_, _| {})).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let hook = |ran: &Arc<AtomicUsize>, n: usize| {
            let ran = ran.clone();
            move || {
                ran.fetch_add(n, Ordering::SeqCst);
            }
        };
        rt.block_on(async {
            // Committed: runs.
            let h = hook(&ran, 1);
            store
                .write(move |tx| {
                    tx.after_commit(h);
                    Ok(())
                })
                .await
                .unwrap();
            assert_eq!(ran.load(Ordering::SeqCst), 1);
            // The job fails: does not run, though the batch commits.
            let h = hook(&ran, 10);
            let failed: Result<()> = store
                .write(move |tx| {
                    tx.after_commit(h);
                    Err(Error::bad("no"))
                })
                .await;
            assert!(failed.is_err());
            assert_eq!(ran.load(Ordering::SeqCst), 1);
            // The batch fails: the writer is held by a first job until a good job and a
            // panicking one are queued behind it, so those two share a batch.
            let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
            let held = store.submit(move |_| Ok(release_rx.recv().is_ok())).await.unwrap();
            let h = hook(&ran, 100);
            let good = store
                .submit(move |tx| {
                    tx.after_commit(h);
                    Ok(())
                })
                .await
                .unwrap();
            let bad = store.submit(|_| -> Result<()> { panic!("a job that panics") }).await.unwrap();
            release_tx.send(()).unwrap();
            // The held job may have shared the failed batch, or committed alone before it.
            let _ = held.wait().await;
            assert!(good.wait().await.is_err(), "the batch with the panicking job failed");
            assert!(bad.wait().await.is_err());
            assert_eq!(ran.load(Ordering::SeqCst), 1, "no after-commit work of a failed batch ran");
        });
    }
}
