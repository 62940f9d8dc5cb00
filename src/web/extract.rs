//! Extractors whose rejections are our [`Error`]: bad JSON, forms and paths get a clear 4xx in
//! our error shape instead of the framework's plain-text bodies.

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// A JSON body.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::TooLarge("request body too large".into()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Error::bad("expected Content-Type: application/json")),
            Err(e) => Err(Error::bad(e.body_text())),
        }
    }
}

/// A form body.
pub struct Form<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Form<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Form(v)),
            Err(FormRejection::BytesRejection(e)) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Error::TooLarge("request body too large".into()))
            }
            Err(e) => Err(Error::bad(e.body_text())),
        }
    }
}

/// The `{room_id}` path segment, shape-checked.
pub struct RoomPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for RoomPath {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let axum::extract::Path(id) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::bad(e.body_text()))?;
        crate::ids::parse_room_id(&id)?;
        Ok(RoomPath(id))
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}
