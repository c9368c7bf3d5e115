//! An axum extractor for [`AuthInfo`] (feature `axum`).
//!
//! A handler behind [`RequireBearerLayer`](super::RequireBearerLayer) takes `AuthInfo` as an
//! argument. On a route the layer does not cover, the extractor answers 401 with a Bearer
//! challenge rather than failing with a 500.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, StatusCode};

use crate::server::verify::AuthInfo;

impl<S: Send + Sync> FromRequestParts<S> for AuthInfo {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<AuthInfo>().cloned().ok_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
            )
                .into_response()
        })
    }
}
