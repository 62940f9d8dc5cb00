//! The web client's files (`assets/`: JS modules, CSS, icons), embedded in the binary with
//! rust-embed, with a gzip copy of each compressible one made at build time (`build.rs`).
//! Pages name them under a version (a hash of every asset's content), so a browser keeps
//! them until the next release changes one ([`url`]).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

/// The `assets/` directory, embedded at compile time.
#[derive(RustEmbed)]
#[folder = "assets/"]
pub struct Assets;

/// Gzip copies made by `build.rs`: (path under `assets/`, bytes).
static GZIPPED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/gzipped_assets.rs"));

/// The assets' version: the first 12 hex digits of a SHA-256 over every asset's path and
/// content hash.
pub static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut names: Vec<_> = Assets::iter().collect();
    names.sort();
    let mut h = Sha256::new();
    for name in names {
        h.update(name.as_bytes());
        if let Some(f) = Assets::get(&name) {
            h.update(f.metadata.sha256_hash());
        }
    }
    h.finalize()[..6].iter().map(|b| format!("{b:02x}")).collect()
});

/// Whether `s` has the form of a version (12 hex digits): a page of an older release names
/// its assets so.
pub fn is_version(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The app's colour (its icon's blue), for the browser's window and the manifest.
pub const THEME_COLOUR: &str = "#2f6fde";

/// The files a browser keeps to open the app offline: the page's own, the icons, and the
/// offline page.
pub fn shell() -> Vec<String> {
    let mut out: Vec<String> = Assets::iter()
        .filter(|p| !matches!(p.as_ref(), "sw.js") && !p.ends_with("emoji.js"))
        .map(|p| url(&p))
        .collect();
    out.sort();
    out.push("/offline".into());
    out
}

/// The URL of the asset at `path` (under `assets/`), with the version.
pub fn url(path: &str) -> String {
    format!("/assets/{}/{path}", *VERSION)
}

/// An asset: its bytes, and its gzip copy when there is one that matches them.
pub struct Asset {
    /// The bytes.
    pub data: std::borrow::Cow<'static, [u8]>,
    /// The bytes, gzipped.
    pub gzipped: Option<&'static [u8]>,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
}

/// The asset at `path`, if there is one.
pub fn get(path: &str) -> Option<Asset> {
    let file = Assets::get(path)?;
    let gzipped = GZIPPED
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, gz)| *gz)
        .filter(|gz| !cfg!(debug_assertions) || gzip_matches(gz, &file.data));
    Some(Asset { sha256: file.metadata.sha256_hash(), data: file.data, gzipped })
}

/// Whether a gzip copy is of `data`: its trailer's CRC-32 and length. Checked in debug builds
/// only (on every request): they read the assets from disk at run time, so one may have changed
/// since the build made its copy; a release build embeds the bytes the copies were made from.
fn gzip_matches(gz: &[u8], data: &[u8]) -> bool {
    let Some(trailer) = gz.len().checked_sub(8).map(|at| &gz[at..]) else { return false };
    let mut crc = flate2::Crc::new();
    crc.update(data);
    trailer[..4] == crc.sum().to_le_bytes() && trailer[4..] == (data.len() as u32).to_le_bytes()
}

static SERVED: AtomicU64 = AtomicU64::new(0);

/// Counts an asset response (`/metrics`: a browser that keeps its assets asks for none).
pub fn count_served() {
    SERVED.fetch_add(1, Ordering::Relaxed);
}

/// Asset responses (bodies and 304s) since start.
pub fn served() -> u64 {
    SERVED.load(Ordering::Relaxed)
}
