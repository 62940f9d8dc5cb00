//! Account actions shared by the JSON API and the pages: register, log in, log out, change
//! password.

use std::net::IpAddr;

use super::{Accounts, Session, password, random_id};
use crate::error::{Error, Result};
use crate::events::now_ms;
use crate::ids::{UserId, normalize_username};
use crate::store::accounts::{SessionRecord, UserRecord};

/// A signed-in user and their new token.
pub struct SignedIn {
    /// The user.
    pub user_id: UserId,
    /// A fresh access token.
    pub token: String,
}

/// Creates an account and signs it in. Rate limited per client IP, an IPv6 client counted by
/// its /64 (well-formed attempts only).
pub async fn register(state: &Accounts, username: &str, pw: &str, ip: IpAddr) -> Result<SignedIn> {
    let name = normalize_username(username)?;
    password::check_rules(pw)?;
    state.registrations_per_ip.check(&crate::addrs::client_key(ip).to_string())?;
    if state.store.user(&name)?.is_some() {
        return Err(Error::Conflict("that username is taken".into()));
    }
    let user_id = UserId::new(&name, &state.server_name);
    let hash = password::hash(pw.to_string()).await?;
    let sid = random_id()?;
    let rec = UserRecord {
        user_id: user_id.to_string(),
        password_hash: hash,
        created_ts: now_ms(),
        disabled: false,
        admin: false,
        appear_offline: false,
        hide_receipts: false,
        display_name: None,
    };
    state.store.create_user(name, rec, sid.clone()).await?;
    let token = state.tokens.issue(user_id.as_str(), &sid)?;
    Ok(SignedIn { user_id, token })
}

/// Checks a password and opens a new session. Rate limited per client IP, per account and IP,
/// and per account from IPs it has not signed in from (so that guessing from one address, or
/// from many, cannot lock its owner out); unknown users and wrong passwords get the same answer.
/// An IPv6 client counts by its /64 for the limits.
pub async fn login(state: &Accounts, username: &str, pw: &str, ip: IpAddr) -> Result<SignedIn> {
    let client = crate::addrs::client_key(ip);
    state.logins_per_ip.check(&client.to_string())?;
    let bad = || Error::Unauthorized("wrong username or password".into());
    let name = normalize_username(username).map_err(|_| bad())?;
    state.logins_per_account.check(&format!("{name} {client}"))?;
    if !state.known_ips.contains(&name, ip) {
        state.logins_per_account_all_ips.check(&name)?;
    }
    if pw.len() > password::MAX_LEN {
        return Err(bad());
    }
    // An unknown user costs the same hash as a known one, so timing does not tell them apart.
    let user = state.store.user(&name)?;
    let known = user.as_ref().map(|u| u.password_hash.clone());
    state.password_checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let user = match (password::verify_or_dummy(pw.to_string(), known).await, user) {
        (true, Some(user)) => user,
        _ => return Err(bad()),
    };
    if user.disabled {
        return Err(Error::Forbidden("this account is disabled".into()));
    }
    let sid = random_id()?;
    let rec = SessionRecord { user_id: user.user_id.clone(), username: name.clone(), created_ts: now_ms() };
    state.store.create_session_if_unchanged(sid.clone(), rec, user.password_hash.clone()).await?;
    state.known_ips.remember(&name, ip);
    let token = state.tokens.issue(&user.user_id, &sid)?;
    let user_id = UserId::parse_or_local(&user.user_id, &state.server_name)?;
    Ok(SignedIn { user_id, token })
}

/// Ends the session: its tokens stop working (the caller closes its live connections).
pub async fn logout(state: &Accounts, session: &Session) -> Result<()> {
    state.store.delete_session(session.sid.clone()).await
}

/// Changes the password after checking the old one; every other session is revoked.
pub async fn change_password(state: &Accounts, session: &Session, old: &str, new: &str, ip: IpAddr) -> Result<()> {
    password::check_rules(new)?;
    let name = session.user.localpart().to_string();
    state.logins_per_account.check(&format!("{name} {ip}"))?;
    let user = state.store.user(&name)?.ok_or_else(|| Error::Unauthorized("account not found".into()))?;
    if old.len() > password::MAX_LEN || !password::verify(old.to_string(), user.password_hash.clone()).await {
        return Err(Error::Forbidden("current password is wrong".into()));
    }
    let hash = password::hash(new.to_string()).await?;
    state.store.set_password(name, hash, Some(session.sid.clone())).await?;
    Ok(())
}

/// A user's privacy settings.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Privacy {
    /// Others see this user as offline.
    pub appear_offline: bool,
    /// Read receipts are neither shown to others nor seen from others.
    pub hide_receipts: bool,
}

/// Reads a user's privacy settings.
pub fn privacy(state: &Accounts, session: &Session) -> Result<Privacy> {
    let user =
        state.store.user(session.user.localpart())?.ok_or_else(|| Error::Unauthorized("account not found".into()))?;
    Ok(Privacy { appear_offline: user.appear_offline, hide_receipts: user.hide_receipts })
}

/// Changes privacy settings (the caller tells the live channel, so that online contacts see
/// the effect at once).
pub async fn set_privacy(state: &Accounts, session: &Session, p: Privacy) -> Result<Privacy> {
    let user = state.store.set_privacy(session.user.localpart().to_string(), p.appear_offline, p.hide_receipts).await?;
    Ok(Privacy { appear_offline: user.appear_offline, hide_receipts: user.hide_receipts })
}
