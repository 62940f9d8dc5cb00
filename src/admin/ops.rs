//! Server administration: the operations behind `chat admin`, the admin socket and the admin
//! web page. They work on a [`Store`]; with a running server (a [`Hub`]), live connections hear
//! about the change too (a disabled user's tabs close, a deleted room's members are told).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{password, random_id};
use crate::error::{Error, Result};
use crate::events::now_ms;
use crate::ids::{RoomId, ServerName, UserId, normalize_username};
use crate::live::hub::Hub;
use crate::store::Store;
use crate::store::accounts::UserRecord;

/// One administration request, as `chat admin` sends it over the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Is a server there?
    Ping,
    /// Write a backup file (absolute path).
    Backup {
        /// Destination.
        path: std::path::PathBuf,
    },
    /// Create an account; a password is generated when none is given.
    UserCreate {
        /// Username.
        username: String,
        /// Password, or none to generate one.
        password: Option<String>,
        /// Make the account a server administrator.
        #[serde(default)]
        admin: bool,
    },
    /// List accounts.
    UserList,
    /// Set a new password (generated when none is given) and end every session.
    UserResetPassword {
        /// Username.
        username: String,
        /// Password, or none to generate one.
        password: Option<String>,
    },
    /// Disable (or enable again) an account; disabling ends its sessions.
    UserDisable {
        /// Username.
        username: String,
        /// False enables the account again.
        disabled: bool,
    },
    /// Grant (or revoke) server administration.
    UserMakeAdmin {
        /// Username.
        username: String,
        /// False revokes.
        admin: bool,
    },
    /// List rooms.
    RoomList,
    /// One room with its members.
    RoomShow {
        /// Room id.
        room_id: String,
    },
    /// Delete a room with its history.
    RoomDelete {
        /// Room id.
        room_id: String,
    },
}

/// What an administrator sees of an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserInfo {
    /// Canonical username.
    pub username: String,
    /// Full user id.
    pub user_id: String,
    /// Creation time, ms.
    pub created_ts: u64,
    /// Server administrator.
    pub admin: bool,
    /// Cannot log in.
    pub disabled: bool,
    /// Open sessions (signed-in browsers and API clients).
    pub sessions: usize,
    /// Bytes of the files they uploaded (their quota's use).
    #[serde(default)]
    pub file_bytes: u64,
}

/// A room's members: (user id, membership).
pub type Members = Vec<(String, String)>;

/// What an administrator sees of a room.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomInfo {
    /// Room id.
    pub room_id: RoomId,
    /// Name (empty for direct rooms).
    pub name: String,
    /// Topic.
    pub topic: String,
    /// `public` or `invite`.
    pub join_rule: String,
    /// Direct-message room.
    pub direct: bool,
    /// Creator.
    pub creator: String,
    /// Creation time, ms.
    pub created_ts: u64,
    /// Joined members.
    pub joined: u32,
    /// Joined members per server, ours included, as this server counts them from the room's
    /// state: every other server listed is sent the room's new events.
    #[serde(default)]
    pub servers: std::collections::BTreeMap<String, u32>,
    /// Known only from an invitation (no state here yet).
    #[serde(default)]
    pub partial: bool,
    /// The other servers this server sends the room's new events to (filled by `room show`).
    #[serde(default)]
    pub sends_to: Vec<String>,
}

/// Where the operations run: the store, the server's name, and the live hub when the server runs.
pub struct Ctx<'a> {
    /// The database.
    pub store: &'a Store,
    /// Names new accounts.
    pub server_name: &'a ServerName,
    /// Live connections, when the server is running.
    pub hub: Option<&'a Hub>,
}

impl Ctx<'_> {
    /// Runs `op` and gives its answer as JSON (`Backup` and `Ping` are the socket's own).
    pub async fn run(&self, op: Op) -> Result<Value> {
        Ok(match op {
            Op::Ping => json!({}),
            Op::Backup { .. } => return Err(Error::bad("backup is handled by the admin socket")),
            Op::UserCreate { username, password, admin } => {
                let (user, password) = self.create_user(&username, password, admin).await?;
                json!({ "user": user, "password": password })
            }
            Op::UserList => json!({ "users": self.list_users()? }),
            Op::UserResetPassword { username, password } => {
                let password = self.reset_password(&username, password).await?;
                json!({ "password": password })
            }
            Op::UserDisable { username, disabled } => json!({ "user": self.set_disabled(&username, disabled).await? }),
            Op::UserMakeAdmin { username, admin } => json!({ "user": self.set_admin(&username, admin).await? }),
            Op::RoomList => json!({ "rooms": self.list_rooms()? }),
            Op::RoomShow { room_id } => {
                let (room, members, events) = self.show_room(&named_room(&room_id)?)?;
                json!({ "room": room, "members": members, "events": events })
            }
            Op::RoomDelete { room_id } => json!({ "deleted": self.delete_room(&named_room(&room_id)?).await? }),
        })
    }

    /// Creates an account. Returns it and the password when one was generated.
    pub async fn create_user(
        &self,
        username: &str,
        password: Option<String>,
        admin: bool,
    ) -> Result<(UserInfo, Option<String>)> {
        let name = normalize_username(username)?;
        let (pw, generated) = chosen_or_generated(password)?;
        if self.store.user(&name)?.is_some() {
            return Err(Error::Conflict(format!("the username {name} is taken")));
        }
        let rec = UserRecord {
            user_id: UserId::new(&name, self.server_name).to_string(),
            password_hash: password::hash(pw).await?,
            created_ts: now_ms(),
            disabled: false,
            admin,
            appear_offline: false,
            hide_receipts: false,
            display_name: None,
        };
        self.store.create_account(name.clone(), rec.clone()).await?;
        Ok((self.info(name, rec)?, generated))
    }

    /// Every account, by username.
    pub fn list_users(&self) -> Result<Vec<UserInfo>> {
        self.store.users()?.into_iter().map(|(name, rec)| self.info(name, rec)).collect()
    }

    /// Sets a new password and ends every session. Returns the password when it was generated.
    pub async fn reset_password(&self, username: &str, password: Option<String>) -> Result<Option<String>> {
        let name = self.existing(username)?;
        let (pw, generated) = chosen_or_generated(password)?;
        let hash = password::hash(pw).await?;
        let rec = self.store.update_user(name, true, move |u| u.password_hash = hash).await?;
        self.close_connections(&rec.user_id);
        Ok(generated)
    }

    /// Disables an account (ending its sessions and closing its tabs) or enables it again.
    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<UserInfo> {
        let name = self.existing(username)?;
        let rec = self.store.update_user(name.clone(), disabled, move |u| u.disabled = disabled).await?;
        if disabled {
            self.close_connections(&rec.user_id);
        }
        self.info(name, rec)
    }

    /// Grants or revokes server administration.
    pub async fn set_admin(&self, username: &str, admin: bool) -> Result<UserInfo> {
        let name = self.existing(username)?;
        let rec = self.store.update_user(name.clone(), false, move |u| u.admin = admin).await?;
        self.info(name, rec)
    }

    /// Every room, newest activity first.
    pub fn list_rooms(&self) -> Result<Vec<RoomInfo>> {
        Ok(self.store.rooms()?.into_iter().map(room_info).collect())
    }

    /// A room, its members with their membership, and its number of events.
    pub fn show_room(&self, room_id: &RoomId) -> Result<(RoomInfo, Members, u64)> {
        let room = self.store.room(room_id)?.ok_or_else(|| Error::NotFound(format!("no room {room_id}")))?;
        let members =
            self.store.members(room_id)?.into_iter().map(|(u, m)| (u, m.as_str().to_string())).collect::<Vec<_>>();
        let events = self.store.room_event_count(room_id)?;
        let mut info = room_info(room);
        let local = self.server_name.as_str();
        if !info.partial {
            info.sends_to = info.servers.keys().filter(|s| s.as_str() != local).cloned().collect();
        }
        Ok((info, members, events))
    }

    /// Deletes a room and its history; its online members' clients are told.
    pub async fn delete_room(&self, room_id: &RoomId) -> Result<crate::store::admin::DeletedRoom> {
        let deleted = self.store.delete_room(room_id.clone()).await?;
        if let Some(hub) = self.hub {
            hub.forget_room(room_id);
        }
        Ok(deleted)
    }

    fn existing(&self, username: &str) -> Result<String> {
        let name = normalize_username(username).map_err(|_| Error::NotFound(format!("no user named {username}")))?;
        match self.store.user(&name)? {
            Some(_) => Ok(name),
            None => Err(Error::NotFound(format!("no user named {name}"))),
        }
    }

    fn close_connections(&self, user_id: &str) {
        if let Some(hub) = self.hub {
            hub.end_other_sessions(user_id, "");
        }
    }

    fn info(&self, username: String, rec: UserRecord) -> Result<UserInfo> {
        Ok(UserInfo {
            sessions: self.store.session_count(&rec.user_id)?,
            file_bytes: self.store.media_usage_of(&rec.user_id)?,
            username,
            user_id: rec.user_id,
            created_ts: rec.created_ts,
            admin: rec.admin,
            disabled: rec.disabled,
        })
    }
}

/// A room id given to an operation; a malformed one is a room that does not exist.
fn named_room(room_id: &str) -> Result<RoomId> {
    RoomId::parse(room_id).map_err(|_| Error::NotFound(format!("no room {room_id}")))
}

fn room_info(r: crate::store::rooms::RoomRecord) -> RoomInfo {
    RoomInfo {
        join_rule: serde_json::to_value(r.join_rule)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        room_id: r.room_id,
        name: r.name,
        topic: r.topic,
        direct: r.direct,
        creator: r.creator,
        created_ts: r.created_ts,
        joined: r.joined,
        servers: r.servers.into_iter().filter(|(_, n)| *n > 0).collect(),
        partial: r.partial,
        sends_to: Vec::new(),
    }
}

/// The given password after the rules, or a generated one (also returned, to show once).
fn chosen_or_generated(password: Option<String>) -> Result<(String, Option<String>)> {
    match password {
        Some(pw) => {
            password::check_rules(&pw)?;
            Ok((pw, None))
        }
        None => {
            let pw = random_id()?;
            Ok((pw.clone(), Some(pw)))
        }
    }
}
