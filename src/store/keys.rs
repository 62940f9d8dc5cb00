//! Signing keys: this server's (bytes in `meta`) and other servers' (`server_keys`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Store;
use super::tables::{META, SERVER_KEYS};
use crate::error::Result;

/// A key of another server as cached.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedKey {
    /// Unpadded base64 public key.
    pub key: String,
    /// Until when the server vouched for it, ms (for `old_verify_keys`: when it expired).
    pub valid_until_ts: u64,
    /// Listed under `old_verify_keys`: good only for what was signed before it expired.
    pub old: bool,
}

impl Store {
    /// This server's signing key as (PKCS#8 DER, version), made with `generate` and stored on
    /// first start. Called once at start, before anything else writes the key.
    pub async fn signing_key(&self, generate: impl FnOnce() -> Result<(Vec<u8>, String)>) -> Result<(Vec<u8>, String)> {
        let existing = {
            let r = self.read()?;
            let meta = r.open_table(META)?;
            let doc = meta.get("signing_key")?.map(|v| v.value().to_vec());
            let version = meta.get("signing_key_version")?.map(|v| String::from_utf8_lossy(v.value()).into_owned());
            doc.zip(version)
        };
        if let Some(found) = existing {
            return Ok(found);
        }
        let (doc, version) = generate()?;
        let (d, v) = (doc.clone(), version.clone());
        self.write(move |tx| {
            let mut meta = tx.txn.open_table(META)?;
            meta.insert("signing_key", d.as_slice())?;
            meta.insert("signing_key_version", v.as_bytes())?;
            Ok(())
        })
        .await?;
        Ok((doc, version))
    }

    /// A cached key of `server`.
    pub fn server_key(&self, server: &str, key_id: &str) -> Result<Option<CachedKey>> {
        let r = self.read()?;
        let t = r.open_table(SERVER_KEYS)?;
        match t.get((server, key_id))? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    /// Stores checked keys of `server` (a newer document replaces what it lists; keys it no
    /// longer lists stay, for old events).
    pub async fn put_server_keys(&self, server: String, keys: BTreeMap<String, CachedKey>) -> Result<()> {
        self.write(move |tx| {
            let mut t = tx.txn.open_table(SERVER_KEYS)?;
            for (id, k) in &keys {
                let bytes = serde_json::to_vec(k)?;
                t.insert((server.as_str(), id.as_str()), bytes.as_slice())?;
            }
            Ok(())
        })
        .await
    }
}
