//! Room aliases (`#name:server`): their syntax, and this server's aliases (table `aliases`).

use crate::error::{Error, Result};
use crate::ids::{RoomId, ServerName};
use crate::store::Store;

/// Longest alias local part.
pub const MAX_ALIAS: usize = 64;

/// Checks an alias local part: 1-64 of `a-z 0-9 . _ -` (upper case folded).
pub fn clean_alias_local(s: &str) -> Result<String> {
    let s = s.trim().trim_start_matches('#').to_ascii_lowercase();
    if s.is_empty() || s.len() > MAX_ALIAS || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(Error::bad(format!("an alias is 1-{MAX_ALIAS} characters of a-z, 0-9, '.', '_' and '-'")));
    }
    Ok(s)
}

/// `#name:server` -> (name, server).
pub fn parse_alias(s: &str) -> Result<(String, String)> {
    let rest = s.strip_prefix('#').ok_or_else(|| Error::bad("an alias starts with #"))?;
    let (local, server) = rest.split_once(':').ok_or_else(|| Error::bad("an alias is #name:server"))?;
    let server = ServerName::parse(server)?;
    Ok((clean_alias_local(local)?, server.to_string()))
}

/// The room id of this server's alias `#name:server`.
pub fn local_alias(store: &Store, server: &ServerName, name: &str) -> Result<Option<RoomId>> {
    store.alias(&format!("#{name}:{server}"))
}
