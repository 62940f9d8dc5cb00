//! Accounts and sessions.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::tables::{SESSIONS, USER_SESSIONS, USERS};
use super::{Store, get_json, put_json};
use crate::error::{Error, Result};

/// A local account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    /// Full user id, `@name:server`.
    pub user_id: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Creation time, ms since epoch.
    pub created_ts: u64,
    /// Disabled accounts cannot log in.
    #[serde(default)]
    pub disabled: bool,
    /// Server administrator.
    #[serde(default)]
    pub admin: bool,
    /// Others see this user as offline.
    #[serde(default)]
    pub appear_offline: bool,
    /// This user's read receipts are not shown, and they see no one else's.
    #[serde(default)]
    pub hide_receipts: bool,
    /// The name others see (in the member events of the user's rooms); none: the username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

impl super::Tx<'_> {
    /// A local account's display name (by username).
    pub fn display_name_of(&self, username: &str) -> Result<Option<String>> {
        let user: Option<UserRecord> = get_json(&self.txn.open_table(USERS)?, username)?;
        Ok(user.and_then(|u| u.display_name))
    }

    /// Sets (or with `None` clears) a local account's display name.
    pub fn set_display_name(&mut self, username: &str, name: Option<String>) -> Result<()> {
        let mut users = self.txn.open_table(USERS)?;
        let mut user: UserRecord = get_json(&users, username)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
        user.display_name = name;
        put_json(&mut users, username, &user)
    }

    /// The rooms a user has joined.
    pub fn joined_room_ids(&self, user: &str) -> Result<Vec<String>> {
        let rooms = super::rooms::memberships(&self.txn.open_table(super::tables::USER_ROOMS)?, user)?;
        Ok(rooms.into_iter().filter(|(_, m)| *m == crate::events::Membership::Join).map(|(r, _)| r).collect())
    }
}

/// A login session; tokens name it by id and die with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Owner.
    pub user_id: String,
    /// Canonical username (key into `USERS`).
    pub username: String,
    /// Creation time, ms since epoch.
    pub created_ts: u64,
}

impl Store {
    /// Looks up an account by canonical username.
    pub fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        let r = self.read()?;
        get_json(&r.open_table(USERS)?, username)
    }

    /// Looks up a session by id.
    pub fn session(&self, sid: &str) -> Result<Option<SessionRecord>> {
        let r = self.read()?;
        get_json(&r.open_table(SESSIONS)?, sid)
    }

    /// Creates an account and its first session in one commit. `Conflict` if the name is taken.
    pub async fn create_user(&self, username: String, user: UserRecord, sid: String) -> Result<()> {
        self.write(move |tx| {
            let mut users = tx.txn.open_table(USERS)?;
            if users.get(username.as_str())?.is_some() {
                return Err(Error::Conflict("that username is taken".into()));
            }
            put_json(&mut users, &username, &user)?;
            insert_session(
                tx.txn,
                &sid,
                &SessionRecord {
                    user_id: user.user_id.clone(),
                    username: username.clone(),
                    created_ts: user.created_ts,
                },
            )
        })
        .await
    }

    /// Records a new session.
    pub async fn create_session(&self, sid: String, rec: SessionRecord) -> Result<()> {
        self.write(move |tx| insert_session(tx.txn, &sid, &rec)).await
    }

    /// Opens a session for a sign-in whose password was checked against `checked_hash`, only if
    /// the account, as it is when the session is written, is still enabled and still has that
    /// password: a disable, password change or reset that lands during the check wins.
    pub async fn create_session_if_unchanged(
        &self,
        sid: String,
        rec: SessionRecord,
        checked_hash: String,
    ) -> Result<()> {
        self.write(move |tx| {
            let user: Option<UserRecord> = get_json(&tx.txn.open_table(USERS)?, &rec.username)?;
            match user {
                Some(u) if u.disabled => Err(Error::Forbidden("this account is disabled".into())),
                Some(u) if u.password_hash == checked_hash => insert_session(tx.txn, &sid, &rec),
                _ => Err(Error::Unauthorized("wrong username or password".into())),
            }
        })
        .await
    }

    /// Deletes one session (logout). Deleting a missing session is not an error.
    pub async fn delete_session(&self, sid: String) -> Result<()> {
        self.write(move |tx| {
            let mut sessions = tx.txn.open_table(SESSIONS)?;
            let rec: Option<SessionRecord> = get_json(&sessions, &sid)?;
            if let Some(rec) = rec {
                sessions.remove(sid.as_str())?;
                tx.txn.open_table(USER_SESSIONS)?.remove((rec.user_id.as_str(), sid.as_str()))?;
            }
            Ok(())
        })
        .await
    }

    /// Changes privacy settings; returns the updated record.
    pub async fn set_privacy(&self, username: String, appear_offline: bool, hide_receipts: bool) -> Result<UserRecord> {
        self.write(move |tx| {
            let mut users = tx.txn.open_table(USERS)?;
            let mut user: UserRecord =
                get_json(&users, &username)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
            user.appear_offline = appear_offline;
            user.hide_receipts = hide_receipts;
            put_json(&mut users, &username, &user)?;
            Ok(user)
        })
        .await
    }

    /// Replaces the password hash and revokes every session of the user except `keep_sid`.
    pub async fn set_password(&self, username: String, hash: String, keep_sid: Option<String>) -> Result<()> {
        self.write(move |tx| {
            let mut users = tx.txn.open_table(USERS)?;
            let mut user: UserRecord =
                get_json(&users, &username)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
            user.password_hash = hash;
            put_json(&mut users, &username, &user)?;
            revoke_sessions(tx.txn, &user.user_id, keep_sid.as_deref())?;
            Ok(())
        })
        .await
    }
}

/// Ends every session of `user_id` except `keep`: their rows go, so their tokens stop working.
pub fn revoke_sessions(txn: &redb::WriteTransaction, user_id: &str, keep: Option<&str>) -> Result<()> {
    let mut index = txn.open_table(USER_SESSIONS)?;
    let mut sessions = txn.open_table(SESSIONS)?;
    let sids: Vec<String> = index
        .range((user_id, "")..)?
        .map_while(|r| r.ok())
        .map(|(k, _)| {
            let (u, s) = k.value();
            (u == user_id, s.to_string())
        })
        .take_while(|(same_user, _)| *same_user)
        .map(|(_, s)| s)
        .collect();
    for sid in sids {
        if keep == Some(sid.as_str()) {
            continue;
        }
        sessions.remove(sid.as_str())?;
        index.remove((user_id, sid.as_str()))?;
    }
    Ok(())
}

fn insert_session(txn: &redb::WriteTransaction, sid: &str, rec: &SessionRecord) -> Result<()> {
    put_json(&mut txn.open_table(SESSIONS)?, sid, rec)?;
    txn.open_table(USER_SESSIONS)?.insert((rec.user_id.as_str(), sid), ())?;
    Ok(())
}
