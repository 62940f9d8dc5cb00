//! Notification settings and Web Push subscriptions: the JSON API and the settings forms.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::member_room;
use super::extract::{Form, Json, PageSession, RoomPath};
use super::pages::{or_error_page, settings_after};
use crate::auth::Session;
use crate::error::{Error, Result};
use crate::push::rules;
use crate::state::AppState;
use crate::store::push::Level;

/// `GET /notifications`: the caller's notification settings.
pub async fn get_prefs(State(state): State<AppState>, session: Session) -> Result<Json<Value>> {
    Ok(Json(json!(*state.push.prefs(session.user.as_str())?)))
}

/// `POST /notifications` body: what to change (absent fields stay).
#[derive(Deserialize)]
pub struct PrefsBody {
    dnd: Option<bool>,
    sound: Option<bool>,
    preview: Option<bool>,
    keywords: Option<Vec<String>>,
}

/// `POST /notifications {dnd?, sound?, preview?, keywords?}`: changes the caller's settings.
pub async fn set_prefs(
    State(state): State<AppState>,
    session: Session,
    Json(b): Json<PrefsBody>,
) -> Result<Json<Value>> {
    let keywords = match b.keywords {
        Some(k) => {
            if k.iter().any(|w| w.contains([',', '\n'])) {
                return Err(Error::bad("a keyword cannot contain a comma or a line break"));
            }
            Some(rules::parse_keywords(&k.join("\n")).map_err(Error::BadRequest)?)
        }
        None => None,
    };
    let prefs = state
        .push
        .update_prefs(session.user.as_str(), move |p| {
            p.dnd = b.dnd.unwrap_or(p.dnd);
            p.sound = b.sound.unwrap_or(p.sound);
            p.preview = b.preview.unwrap_or(p.preview);
            if let Some(k) = keywords {
                p.keywords = k;
            }
            Ok(())
        })
        .await?;
    Ok(Json(json!(prefs)))
}

/// `POST /rooms/{id}/notifications` body.
#[derive(Deserialize)]
pub struct LevelBody {
    level: Level,
    /// With `mute`: seconds until the mute ends; absent: until changed.
    mute_for_secs: Option<u64>,
}

/// `POST /rooms/{id}/notifications {level: default|all|mentions|mute, mute_for_secs?}`.
pub async fn set_room_level(
    State(state): State<AppState>,
    session: Session,
    RoomPath(id): RoomPath,
    Json(b): Json<LevelBody>,
) -> Result<Json<Value>> {
    member_room(&state, &session, &id)?;
    let ms = b.mute_for_secs.map(|s| s.min(366 * 24 * 3600) * 1000);
    let prefs = state.push.set_room_level(session.user.as_str(), &id, b.level, ms).await?;
    Ok(Json(json!(prefs.rooms.get(id.as_str()).copied().unwrap_or_default())))
}

/// `GET /push`: the key to subscribe with, and the caller's devices with push on.
pub async fn push_info(State(state): State<AppState>, session: Session) -> Result<Json<Value>> {
    let devices = state.push.devices(session.user.as_str(), &session.sid)?;
    Ok(Json(json!({"public_key": state.push.public_key(), "devices": devices})))
}

/// A subscription's keys, as the browser's `PushSubscription.toJSON()` gives them.
#[derive(Deserialize)]
pub struct SubKeys {
    p256dh: String,
    auth: String,
}

/// `POST /push/subscriptions` body: `PushSubscription.toJSON()` and a label for the device.
#[derive(Deserialize)]
pub struct SubBody {
    endpoint: String,
    keys: SubKeys,
    #[serde(default)]
    label: String,
}

/// `POST /push/subscriptions {endpoint, keys: {p256dh, auth}, label?}` → `{id}`: push on for
/// this device.
pub async fn subscribe(State(state): State<AppState>, session: Session, Json(b): Json<SubBody>) -> Result<Json<Value>> {
    let id = state
        .push
        .subscribe(session.user.as_str(), &session.sid, &b.endpoint, &b.keys.p256dh, &b.keys.auth, &b.label)
        .await?;
    Ok(Json(json!({ "id": id })))
}

/// `POST /push/subscriptions/{id}/delete`: push off for one of the caller's devices.
pub async fn unsubscribe(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    if !state.push.unsubscribe(session.user.as_str(), &id).await? {
        return Err(Error::NotFound("no such device".into()));
    }
    Ok(Json(json!({})))
}

/// The notifications form of the settings page: unchecked boxes are absent.
#[derive(Deserialize)]
pub struct PrefsForm {
    dnd: Option<String>,
    sound: Option<String>,
    preview: Option<String>,
    #[serde(default)]
    keywords: String,
}

/// `POST /settings/notifications`.
pub async fn set_prefs_form(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    form: Result<Form<PrefsForm>>,
) -> Response {
    let out = async {
        let Form(f) = form?;
        let keywords = rules::parse_keywords(&f.keywords).map_err(Error::BadRequest)?;
        state
            .push
            .update_prefs(s.user.as_str(), move |p| {
                p.dnd = f.dnd.is_some();
                p.sound = f.sound.is_some();
                p.preview = f.preview.is_some();
                p.keywords = keywords;
                Ok(())
            })
            .await
            .map(|_| ())
    }
    .await;
    settings_after(&state, &s, out, "Notification settings saved.")
}

/// `POST /settings/push/{id}/delete`.
pub async fn unsubscribe_form(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    Path(id): Path<String>,
) -> Response {
    let out = match state.push.unsubscribe(s.user.as_str(), &id).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::NotFound("no such device".into())),
        Err(e) => Err(e),
    };
    settings_after(&state, &s, out, "Push is off for that device.")
}

/// The room's notification menu: a level, and for `mute` how long (`1h`, `8h`, `1d`, `1w`, or
/// empty: until changed).
#[derive(Deserialize)]
pub struct LevelForm {
    level: Level,
    #[serde(default)]
    mute_for: String,
}

/// `POST /rooms/{id}/notifications`: back to the room.
pub async fn set_room_level_form(
    State(state): State<AppState>,
    PageSession(s): PageSession,
    RoomPath(id): RoomPath,
    form: Result<Form<LevelForm>>,
) -> Response {
    or_error_page(
        async {
            let Form(f) = form?;
            member_room(&state, &s, &id)?;
            let hours = match f.mute_for.as_str() {
                "" => None,
                "1h" => Some(1),
                "8h" => Some(8),
                "1d" => Some(24),
                "1w" => Some(24 * 7),
                _ => return Err(Error::bad("mute_for must be 1h, 8h, 1d, 1w or empty")),
            };
            let ms = hours.map(|h: u64| h * 3600 * 1000);
            state.push.set_room_level(s.user.as_str(), &id, f.level, ms).await?;
            Ok(Redirect::to(&format!("/rooms/{id}")).into_response())
        }
        .await,
    )
}
