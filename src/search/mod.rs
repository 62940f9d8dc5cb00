//! Full-text search of messages: an index (tantivy) in `data_dir/search`, fed from the store's
//! stream by its own task, and queries answered only from the rooms the asker is in now.
//!
//! The index holds one document per message that has text now: its stream position (the key),
//! room, sender, time, whether it is a file, and its words (not its text: a result's text is
//! read from the store, as it is now). The indexer follows the stream (`store::stream`): a
//! message is indexed as it says now (its newest edit); an edit, a deletion (redaction) or a
//! deleted edit indexes the message it changes again; a deleted room's row drops the room. Each
//! index commit records the last stream position it holds, so after a crash or restart the
//! indexer goes on from there; a commit and the work before it are idempotent, so replaying
//! rows changes nothing. A missing, unreadable or newer-than-the-database index is deleted
//! and rebuilt from the stream while the server runs; searches meanwhile answer from what is
//! indexed and say so (`indexing`).

pub mod query;
pub mod tokens;

use std::collections::BTreeSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, PhraseQuery, Query, RangeQuery, RegexQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, STRING, Schema, TantivyDocument, TextFieldIndexing, TextOptions,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, Term};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::events::{M_ROOM_MESSAGE, M_ROOM_REDACTION};
use crate::ids::{EventId, RoomId};
use crate::store::Store;
use crate::store::events::StoredEvent;
use crate::store::stream::StreamRow;

/// The folder of the index inside the data directory.
pub const DIR: &str = "search";
/// Version of what the index holds and how it splits words; an index of another version is
/// rebuilt.
const FORMAT: u32 = 1;
/// Memory the index writer buffers before it writes a segment.
const WRITER_HEAP: usize = 32 * 1024 * 1024;
/// Stream rows read at once.
const BATCH: usize = 2_000;
/// While catching up, a commit at least this often (rows) ...
const COMMIT_ROWS: usize = 100_000;
/// ... or this often (time).
const COMMIT_EVERY: Duration = Duration::from_secs(2);
/// Pause between a commit and the next round, so that a burst commits a few times a second,
/// not once per message: short after a round of a few messages (they are searchable at
/// once), longer after a big one (a flood of messages is indexed in bigger, cheaper batches,
/// leaving the cores to the writer).
const SETTLE: Duration = Duration::from_millis(150);
const SETTLE_BUSY: Duration = Duration::from_millis(1_000);
/// Rows in a round from which the indexer counts as busy.
const BUSY_ROWS: usize = 500;
/// Most results in one page, and how far pages go.
pub const MAX_LIMIT: usize = 50;
/// Furthest offset a page may start at.
pub const MAX_OFFSET: usize = 1_000;
/// Characters of a result's snippet.
const SNIPPET_CHARS: usize = 200;

/// The index's fields.
#[derive(Clone, Copy)]
struct Fields {
    pos: Field,
    room: Field,
    sender: Field,
    ts: Field,
    file: Field,
    body: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let pos = b.add_u64_field("pos", NumericOptions::default().set_indexed().set_fast());
    let room = b.add_text_field("room", STRING);
    let sender = b.add_text_field("sender", STRING);
    let ts = b.add_u64_field("ts", NumericOptions::default().set_fast());
    let file = b.add_u64_field("file", NumericOptions::default().set_indexed());
    let body = b.add_text_field(
        "body",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokens::ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        ),
    );
    (b.build(), Fields { pos, room, sender, ts, file, body })
}

/// The searchable index. Cheap to clone.
#[derive(Clone)]
pub struct Search {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    dir: PathBuf,
    fields: Fields,
    /// The index searches read; replaced when the index is rebuilt.
    reading: RwLock<Arc<Reading>>,
    /// Held by the indexer only.
    writer: Mutex<Option<IndexWriter>>,
    wake: Arc<tokio::sync::Notify>,
    indexed: AtomicU64,
    rebuild: AtomicBool,
    stats: Stats,
}

struct Reading {
    reader: IndexReader,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Stats {
    /// Messages written into the index (again after each change).
    pub docs_indexed: AtomicU64,
    /// Index commits.
    pub commits: AtomicU64,
    /// Times the index was deleted and started over.
    pub rebuilds: AtomicU64,
    /// Searches asked.
    pub queries: AtomicU64,
    /// Searches the index failed to answer.
    pub query_errors: AtomicU64,
}

impl Search {
    /// Opens the index in `data_dir/search`, or starts a new one (empty, to be built from the
    /// stream) when it is missing, unreadable, of another format, or ahead of the database.
    /// `wake` is notified when the store commits.
    pub fn open(data_dir: &Path, store: Store, wake: Arc<tokio::sync::Notify>) -> std::result::Result<Search, String> {
        let dir = data_dir.join(DIR);
        let (schema, fields) = schema();
        let newest = store.stream_last().map_err(|e| e.to_string())?;
        let (reading, writer, indexed) = match open_existing(&dir, &schema) {
            Ok((r, w, pos)) if pos <= newest => (r, w, pos),
            Ok(_) => {
                tracing::warn!("the search index is ahead of the database (a restored backup?): rebuilding it");
                create(&dir, &schema)?
            }
            Err(why) => {
                if dir.exists() {
                    tracing::warn!(error = %why, "the search index cannot be read: rebuilding it");
                }
                create(&dir, &schema)?
            }
        };
        let inner = Inner {
            store,
            dir,
            fields,
            reading: RwLock::new(Arc::new(reading)),
            writer: Mutex::new(Some(writer)),
            wake,
            indexed: AtomicU64::new(indexed),
            rebuild: AtomicBool::new(false),
            stats: Stats::default(),
        };
        Ok(Search { inner: Arc::new(inner) })
    }

    /// The last stream position the index holds.
    pub fn indexed(&self) -> u64 {
        self.inner.indexed.load(Ordering::Relaxed)
    }

    /// Its counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Indexes what the stream has beyond the index, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut settle = SETTLE;
        loop {
            let this = self.clone();
            let stop = shutdown.clone();
            match tokio::task::spawn_blocking(move || this.catch_up(&stop)).await {
                Ok(Ok(rows)) => settle = if rows >= BUSY_ROWS { SETTLE_BUSY } else { SETTLE },
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "search indexing failed; trying again");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                    continue;
                }
                Err(e) => tracing::error!(error = %e, "search indexer stopped"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(settle) => {}
            }
        }
    }

    /// Indexes the stream rows after the index's position, committing as it goes (blocking);
    /// how many rows it read.
    fn catch_up(&self, shutdown: &CancellationToken) -> std::result::Result<usize, String> {
        let inner = &self.inner;
        if inner.rebuild.swap(false, Ordering::Relaxed) {
            self.start_over()?;
        }
        let mut guard = inner.writer.lock().map_err(|_| "search writer lock poisoned".to_string())?;
        let Some(writer) = guard.as_mut() else { return Err("no search writer".into()) };
        let mut at = inner.indexed.load(Ordering::Relaxed);
        let (mut pending, mut since, mut read) = (0usize, Instant::now(), 0usize);
        loop {
            let rows = inner.store.stream_after(at, BATCH).map_err(|e| e.to_string())?;
            let done = rows.len() < BATCH;
            for row in &rows {
                match self.apply(writer, row) {
                    Ok(()) => {}
                    Err(Fail::Store(e)) => return Err(e.to_string()),
                    Err(Fail::Index(e)) => {
                        drop(guard);
                        tracing::warn!(error = %e, "the search index failed: rebuilding it");
                        inner.rebuild.store(true, Ordering::Relaxed);
                        return Err(e.to_string());
                    }
                }
                at = row.pos;
            }
            pending += rows.len();
            read += rows.len();
            let stop = shutdown.is_cancelled();
            if pending > 0 && (done || stop || pending >= COMMIT_ROWS || since.elapsed() >= COMMIT_EVERY) {
                if let Err(e) = self.commit(writer, at) {
                    drop(guard);
                    tracing::warn!(error = %e, "the search index cannot commit: rebuilding it");
                    inner.rebuild.store(true, Ordering::Relaxed);
                    return Err(e.to_string());
                }
                (pending, since) = (0, Instant::now());
            }
            if done || stop {
                return Ok(read);
            }
        }
    }

    fn commit(&self, writer: &mut IndexWriter, at: u64) -> tantivy::Result<()> {
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&format!("{FORMAT} {at}"));
        prepared.commit()?;
        self.inner.reading.read().map_err(|_| tantivy::TantivyError::Poisoned)?.reader.reload()?;
        self.inner.indexed.store(at, Ordering::Relaxed);
        self.inner.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes the index and starts an empty one, to be filled from the stream's start.
    fn start_over(&self) -> std::result::Result<(), String> {
        let inner = &self.inner;
        let mut guard = inner.writer.lock().map_err(|_| "search writer lock poisoned".to_string())?;
        // The old writer lets go of the folder's lock first.
        if let Some(old) = guard.take() {
            let _ = old.wait_merging_threads();
        }
        let (schema, _) = schema();
        let (reading, writer, _) = create(&inner.dir, &schema)?;
        *inner.reading.write().map_err(|_| "search reader lock poisoned".to_string())? = Arc::new(reading);
        *guard = Some(writer);
        inner.indexed.store(0, Ordering::Relaxed);
        inner.stats.rebuilds.fetch_add(1, Ordering::Relaxed);
        tracing::info!("search index started over; it is rebuilt from the database");
        Ok(())
    }

    /// What one stream row changes in the index.
    fn apply(&self, writer: &mut IndexWriter, row: &StreamRow) -> std::result::Result<(), Fail> {
        let f = self.inner.fields;
        if row.is_room_deletion() {
            writer.delete_term(Term::from_field_text(f.room, &row.room_id));
            return Ok(());
        }
        let Some(stored) = self.load(&row.event_id)? else {
            writer.delete_term(Term::from_field_u64(f.pos, row.pos));
            return Ok(());
        };
        let ev = &stored.event;
        if ev.kind == M_ROOM_MESSAGE {
            match crate::store::edits::edited_event_id(ev) {
                Some(original) => self.reindex_id(writer, original),
                None => self.index_new(writer, &stored),
            }
        } else if let Some(target) = (ev.kind == M_ROOM_REDACTION).then(|| ev.redacts()).flatten() {
            // The deleted event, and if it was an edit, the message it had changed.
            let deleted = self.load(target)?;
            let edited = match &deleted {
                Some(t) if t.hidden && t.event.kind == M_ROOM_MESSAGE => {
                    self.inner.store.edited_by(&row.room_id, target).map_err(Fail::Store)?
                }
                _ => None,
            };
            self.reindex_id(writer, target)?;
            match edited {
                Some(original) => self.reindex_id(writer, &original),
                None => Ok(()),
            }
        } else {
            Ok(())
        }
    }

    fn load(&self, event_id: &str) -> std::result::Result<Option<StoredEvent>, Fail> {
        let Ok(id) = EventId::parse(event_id) else { return Ok(None) };
        self.inner.store.event(&id).map_err(Fail::Store)
    }

    fn reindex_id(&self, writer: &mut IndexWriter, event_id: &str) -> std::result::Result<(), Fail> {
        match self.load(event_id)? {
            Some(stored) => self.reindex(writer, &stored),
            None => Ok(()),
        }
    }

    /// The message's document as the message is now: replaced, or gone if it has no text.
    fn reindex(&self, writer: &mut IndexWriter, stored: &StoredEvent) -> std::result::Result<(), Fail> {
        if stored.pos == 0 {
            return Ok(());
        }
        writer.delete_term(Term::from_field_u64(self.inner.fields.pos, stored.pos));
        self.index_new(writer, stored)
    }

    /// The document of a message read at its own stream row: the index cannot hold it yet (the
    /// rows before a commit are read once; a crash loses what was not committed), so nothing
    /// is deleted first. A queued delete costs about a kilobyte until the commit: skipping it
    /// keeps a rebuild's memory flat.
    fn index_new(&self, writer: &mut IndexWriter, stored: &StoredEvent) -> std::result::Result<(), Fail> {
        let f = self.inner.fields;
        if stored.pos == 0 {
            return Ok(());
        }
        let Some(text) = searchable_text(stored) else { return Ok(()) };
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.pos, stored.pos);
        doc.add_text(f.room, stored.event.room_id.as_str());
        doc.add_text(f.sender, stored.event.sender.as_str());
        doc.add_u64(f.ts, stored.event.origin_server_ts);
        if is_file(stored.content_now()) {
            doc.add_u64(f.file, 1);
        }
        doc.add_text(f.body, &text);
        writer.add_document(doc).map_err(Fail::Index)?;
        self.inner.stats.docs_indexed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Searches the messages of `rooms` (the asker's rooms that the request allows) for
    /// `ask`, newest first or by relevance (blocking: run it off the async threads).
    pub fn search(&self, ask: &Ask, rooms: &[RoomId]) -> Result<Found> {
        let inner = &self.inner;
        inner.stats.queries.fetch_add(1, Ordering::Relaxed);
        let reading = inner.reading.read().map_err(|_| Error::Internal("search reader lock poisoned".into()))?.clone();
        let searcher = reading.reader.searcher();
        let f = inner.fields;
        let behind = inner.store.stream_last()?.saturating_sub(inner.indexed.load(Ordering::Relaxed));
        let indexing = behind > 0;
        if rooms.is_empty() {
            return Ok(Found { hits: Vec::new(), count: 0, next: None, indexing, behind });
        }
        let text = self.text_query(&ask.parts);
        let has_text = text.is_some();
        // Words that hold nothing searchable (punctuation, a run too long to be a word) match
        // nothing, rather than everything.
        if !ask.parts.is_empty() && !has_text {
            return Ok(Found { hits: Vec::new(), count: 0, next: None, indexing, behind });
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        clauses.push((Occur::Must, text.unwrap_or_else(|| Box::new(AllQuery))));
        let filter =
            |q: Box<dyn Query>| -> (Occur, Box<dyn Query>) { (Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0))) };
        clauses
            .push(filter(Box::new(TermSetQuery::new(rooms.iter().map(|r| Term::from_field_text(f.room, r.as_str()))))));
        if let Some(sender) = &ask.sender {
            clauses.push(filter(Box::new(TermQuery::new(
                Term::from_field_text(f.sender, sender),
                IndexRecordOption::Basic,
            ))));
        }
        if ask.since_ms.is_some() || ask.until_ms.is_some() {
            let lower = ask.since_ms.map_or(Bound::Unbounded, |t| Bound::Included(Term::from_field_u64(f.ts, t)));
            let upper = ask.until_ms.map_or(Bound::Unbounded, |t| Bound::Excluded(Term::from_field_u64(f.ts, t)));
            let (lower, upper) = match (lower, upper) {
                (Bound::Unbounded, u) => (Bound::Included(Term::from_field_u64(f.ts, 0)), u),
                other => other,
            };
            clauses.push(filter(Box::new(RangeQuery::new(lower, upper))));
        }
        if ask.has_file {
            clauses.push(filter(Box::new(TermQuery::new(Term::from_field_u64(f.file, 1), IndexRecordOption::Basic))));
        }
        let query = BooleanQuery::new(clauses);
        let limit = ask.limit.clamp(1, MAX_LIMIT);
        let offset = ask.offset.min(MAX_OFFSET);
        let top = TopDocs::with_limit(limit + 1).and_offset(offset);
        let fail = |e: tantivy::TantivyError| {
            inner.stats.query_errors.fetch_add(1, Ordering::Relaxed);
            Error::Internal(format!("search: {e}"))
        };
        let (positions, count): (Vec<u64>, usize) = if ask.by_relevance && has_text {
            let (docs, count) = searcher.search(&query, &(top.order_by_score(), Count)).map_err(fail)?;
            let mut out = Vec::with_capacity(docs.len());
            for (_, addr) in docs {
                out.push(pos_of(&searcher, addr).map_err(fail)?);
            }
            (out, count)
        } else {
            let (docs, count) =
                searcher.search(&query, &(top.order_by_fast_field::<u64>("pos", Order::Desc), Count)).map_err(fail)?;
            (docs.into_iter().filter_map(|(p, _)| p).collect(), count)
        };
        let more = positions.len() > limit;
        let mut snippets = SnippetGenerator::create(&searcher, &query, f.body).map_err(fail)?;
        snippets.set_max_num_chars(SNIPPET_CHARS);
        let allowed: BTreeSet<&str> = rooms.iter().map(RoomId::as_str).collect();
        let mut hits = Vec::new();
        for row in inner.store.stream_rows(&positions[..positions.len().min(limit)])? {
            if row.is_room_deletion() || !allowed.contains(row.room_id.as_str()) {
                continue;
            }
            // What the message says now (the index may not have seen its last change yet).
            let Some(stored) = self.load(&row.event_id).map_err(|e| match e {
                Fail::Store(e) => e,
                Fail::Index(e) => fail(e),
            })?
            else {
                continue;
            };
            let Some(text) = searchable_text(&stored) else { continue };
            let snippet = snippets.snippet(&text);
            hits.push(Hit { snippet: pieces(&text, &snippet), stored });
        }
        let next = more.then_some(offset + limit).filter(|n| *n <= MAX_OFFSET);
        Ok(Found { hits, count, next, indexing, behind })
    }

    /// The words and phrases, each required: one term alone, several as a phrase; a lone
    /// CJK character (not a term of its own inside longer text) as any pair holding it.
    fn text_query(&self, parts: &[query::Part]) -> Option<Box<dyn Query>> {
        let body = self.inner.fields.body;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for part in parts {
            let (query::Part::Word(t) | query::Part::Phrase(t)) = part;
            let terms = tokens::terms(t);
            let q: Box<dyn Query> = match terms.as_slice() {
                [] => continue,
                [one] if one.chars().count() == 1 && one.chars().all(tokens::is_cjk) => {
                    let c = regex_escape(one);
                    match RegexQuery::from_pattern(&format!("{c}.?|.{c}"), body) {
                        Ok(q) => Box::new(q),
                        Err(_) => continue,
                    }
                }
                [one] => Box::new(TermQuery::new(Term::from_field_text(body, one), IndexRecordOption::WithFreqs)),
                many => Box::new(PhraseQuery::new(many.iter().map(|t| Term::from_field_text(body, t)).collect())),
            };
            clauses.push((Occur::Must, q));
        }
        (!clauses.is_empty()).then(|| Box::new(BooleanQuery::new(clauses)) as Box<dyn Query>)
    }
}

enum Fail {
    Store(Error),
    Index(tantivy::TantivyError),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Store(e)
    }
}

/// A search: what to find and where, as the web layer read it from the request.
#[derive(Debug, Default)]
pub struct Ask {
    /// Words and phrases, all required.
    pub parts: Vec<query::Part>,
    /// Sent by (a full user id).
    pub sender: Option<String>,
    /// Sent at or after (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Sent before (ms).
    pub until_ms: Option<u64>,
    /// Files only.
    pub has_file: bool,
    /// Best matches first (else newest first).
    pub by_relevance: bool,
    /// Results in the page.
    pub limit: usize,
    /// Results skipped (the page's start).
    pub offset: usize,
}

/// A page of results.
pub struct Found {
    /// The results of the page.
    pub hits: Vec<Hit>,
    /// Matches in all (in the asker's rooms).
    pub count: usize,
    /// Offset of the next page.
    pub next: Option<usize>,
    /// The index has not caught up with the database yet (a rebuild, or a burst of messages).
    pub indexing: bool,
    /// How far behind (stream positions): a moment's messages under load, everything in a
    /// rebuild.
    pub behind: u64,
}

/// One result: the message as it is now, and its snippet.
pub struct Hit {
    /// The message.
    pub stored: StoredEvent,
    /// Its text around the matched words.
    pub snippet: Vec<Piece>,
}

/// A piece of a snippet: matched words are `hit`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Piece {
    /// The text.
    pub text: String,
    /// Whether it is a matched word.
    pub hit: bool,
}

fn pieces(text: &str, snippet: &tantivy::snippet::Snippet) -> Vec<Piece> {
    let mut out = Vec::new();
    let fragment = snippet.fragment();
    if fragment.is_empty() {
        let cut: String = text.chars().take(SNIPPET_CHARS).collect();
        let more = cut.len() < text.len();
        out.push(Piece { text: if more { format!("{cut}…") } else { cut }, hit: false });
        return out;
    }
    let range = snippet.fragment_range();
    let mut at = 0;
    let plain = |s: &str, out: &mut Vec<Piece>| {
        if !s.is_empty() {
            out.push(Piece { text: s.to_string(), hit: false });
        }
    };
    // What the fragment leaves out at either end: shown if it is a few characters (the end's
    // punctuation), else an ellipsis.
    let short = |s: &str| s.chars().count() <= 12;
    let (head, tail) = (text.get(..range.start).unwrap_or_default(), text.get(range.end..).unwrap_or_default());
    if short(head) {
        plain(head, &mut out);
    } else {
        plain("…", &mut out);
    }
    for h in snippet.highlighted() {
        if h.start < at || h.end > fragment.len() {
            continue;
        }
        plain(&fragment[at..h.start], &mut out);
        out.push(Piece { text: fragment[h.start..h.end].to_string(), hit: true });
        at = h.end;
    }
    plain(&fragment[at..], &mut out);
    if short(tail) {
        plain(tail, &mut out);
    } else {
        plain("…", &mut out);
    }
    out
}

/// The stream position of a found document.
fn pos_of(searcher: &tantivy::Searcher, addr: DocAddress) -> tantivy::Result<u64> {
    let column = searcher.segment_reader(addr.segment_ord).fast_fields().u64("pos")?;
    Ok(column.first(addr.doc_id).unwrap_or(0))
}

/// The text a message is found by, as it is now: the text of its formatted body if it has one
/// (`**tomato**` is found, and shown, as `tomato`), else its plain body, either without a
/// reply's quoted fallback; and a file's name when the body is a caption. None for what has no
/// text (deleted, a reaction's or an edit's own row, not a message).
pub fn searchable_text(stored: &StoredEvent) -> Option<String> {
    if stored.event.kind != M_ROOM_MESSAGE || stored.hidden || stored.redacted_because.is_some() {
        return None;
    }
    let content = stored.content_now();
    let body = content.get("body").and_then(Value::as_str).unwrap_or_default();
    let mut text = match crate::format::formatted_html(content) {
        Some(html) => crate::format::html_text(html).trim().to_string(),
        None => crate::store::relations::strip_reply_fallback(body).trim().to_string(),
    };
    let body = body.trim();
    if let Some(name) = content.get("filename").and_then(Value::as_str).filter(|n| *n != body) {
        text.push('\n');
        text.push_str(name);
    }
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Whether a message's content is a shared file (image, video, audio or any file).
pub fn is_file(content: &Value) -> bool {
    matches!(content.get("msgtype").and_then(Value::as_str), Some("m.file" | "m.image" | "m.video" | "m.audio"))
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_alphanumeric() { vec![c] } else { vec!['\\', c] }).collect()
}

/// The existing index in `dir`, its reader and writer, and the last stream position it holds.
fn open_existing(dir: &Path, schema: &Schema) -> std::result::Result<(Reading, IndexWriter, u64), String> {
    if !dir.join("meta.json").exists() {
        return Err("no index yet".into());
    }
    let index = Index::open_in_dir(dir).map_err(|e| e.to_string())?;
    if index.schema() != *schema {
        return Err("the index has other fields".into());
    }
    let metas = index.load_metas().map_err(|e| e.to_string())?;
    let pos = match metas.payload.as_deref().map(|p| p.split_once(' ')) {
        Some(Some((format, pos))) if format == FORMAT.to_string() => pos.parse().map_err(|_| "bad position")?,
        Some(_) => return Err("an index of another format".into()),
        None if metas.segments.is_empty() => 0,
        None => return Err("the index does not say what it holds".into()),
    };
    let (reading, writer) = handles(index)?;
    // Reading every segment's files now finds a damaged index at start, not at a search.
    let searcher = reading.reader.searcher();
    for segment in searcher.segment_readers() {
        segment.fast_fields().u64("pos").map_err(|e| e.to_string())?;
        segment.inverted_index(schema.get_field("body").map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    Ok((reading, writer, pos))
}

/// A new empty index in `dir` (whatever was there is deleted).
fn create(dir: &Path, schema: &Schema) -> std::result::Result<(Reading, IndexWriter, u64), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot delete the search index {}: {e}", dir.display()))?;
    }
    crate::files::private_dir(dir).map_err(|e| format!("search index folder {}: {e}", dir.display()))?;
    let index =
        Index::create_in_dir(dir, schema.clone()).map_err(|e| format!("cannot create the search index: {e}"))?;
    let (reading, writer) = handles(index)?;
    Ok((reading, writer, 0))
}

fn handles(index: Index) -> std::result::Result<(Reading, IndexWriter), String> {
    index.tokenizers().register(tokens::ANALYZER, tokens::analyzer());
    let writer = index.writer_with_num_threads(1, WRITER_HEAP).map_err(|e| format!("search index writer: {e}"))?;
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(|e: tantivy::TantivyError| format!("search index reader: {e}"))?;
    Ok((Reading { reader }, writer))
}

/// Rooms by how a person may name them in `in:` (id, alias, name), among `rooms`.
pub fn room_named<'a>(
    name: &str,
    rooms: impl Iterator<Item = (&'a RoomId, &'a str)>,
    alias: impl Fn(&str) -> Result<Option<RoomId>>,
) -> Result<Option<RoomId>> {
    if name.starts_with('!') {
        return Ok(RoomId::parse(name).ok());
    }
    if name.starts_with('#') {
        return alias(&name.to_lowercase());
    }
    // An exact name first, else the first name that contains it.
    let want = name.to_lowercase();
    let mut partial = None;
    for (id, title) in rooms {
        let t = title.to_lowercase();
        if t == want {
            return Ok(Some(id.clone()));
        }
        if partial.is_none() && t.contains(&want) {
            partial = Some(id.clone());
        }
    }
    Ok(partial)
}
