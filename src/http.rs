//! What every HTTP route shares: the error type and its `{"error": {"code", "message"}}`
//! shape (also for warp's own rejections), JSON answers, bounded request bodies, Bearer
//! credentials and the checks of identifiers and names. It depends on no other module of
//! this crate, so route modules and the shared state can all build on it.

use std::convert::Infallible;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use switchboard_signaling::ids::{display_name, is_valid_id};
use switchboard_signaling::ErrorCode;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// An HTTP error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with any status and code; the code must be listed in `docs/openapi.json`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// `400 INVALID_INPUT`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_INPUT", message)
    }

    /// `401 UNAUTHORIZED`: credentials missing or not valid.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// `403 FORBIDDEN`: valid credentials that do not allow the call.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    fn into_response(self) -> Response {
        json_response(
            self.status,
            &json!({"error": {"code": self.code, "message": self.message}}),
        )
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        let status = match code {
            ErrorCode::RoomFull | ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RoomNotFound => StatusCode::NOT_FOUND,
            ErrorCode::RoomExists => StatusCode::CONFLICT,
            ErrorCode::RoomClosed => StatusCode::GONE,
            ErrorCode::TooManyRooms => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::InvalidPassword => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, code.as_str(), code.to_string())
    }
}

/// What a handler answers: a response, or an error that [`finish`] turns into one.
pub type ApiResult = Result<Response, ApiError>;

/// `body` as JSON with `status`.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(bytes.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `200` with `body` as JSON.
pub fn ok<T: Serialize>(body: &T) -> ApiResult {
    Ok(json_response(StatusCode::OK, body))
}

/// The response of a handler's result, errors in their JSON shape.
pub fn finish(result: ApiResult) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

/// A JSON request body, or `400 INVALID_INPUT` saying what is wrong with it.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("request body: {e}")))
}

/// The `Authorization` header, if the request has one.
pub fn authorization() -> impl Filter<Extract = (Option<String>,), Error = Rejection> + Copy {
    warp::header::optional::<String>("authorization")
}

/// The credential of an `Authorization: Bearer …` header.
pub fn bearer(authorization: &Option<String>) -> Option<&str> {
    authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

/// `400 INVALID_INPUT` unless `id` is a valid room or user id.
pub fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{field} must be 1-128 characters of A-Z a-z 0-9 . _ : @ -"
        )))
    }
}

/// A room id taken from a URL path, where warp leaves it percent-encoded: decoded, then
/// checked like any id (`docs/protocol.md#7-rooms-over-http`).
pub fn path_id(field: &str, raw: &str) -> Result<String, ApiError> {
    let id = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::invalid(format!("{field} is not UTF-8 once decoded")))?;
    check_id(field, &id)?;
    Ok(id.into_owned())
}

/// A display name, trimmed, or `400 INVALID_INPUT`; `None` stays `None`.
pub fn check_name(field: &str, name: Option<&str>) -> Result<Option<String>, ApiError> {
    name.map(|n| {
        display_name(n)
            .ok_or_else(|| ApiError::invalid(format!("{field} must be 1-100 printable characters")))
    })
    .transpose()
}

/// A fresh id for a room or user the request did not name.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[derive(Debug)]
struct BodyTooLarge;
impl warp::reject::Reject for BodyTooLarge {}

#[derive(Debug)]
struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

/// Refused bodies up to this size are still read to their end, and only then answered with
/// 413: a server that closes with request bytes unread makes the kernel reset the
/// connection, and the client can lose the answer to the reset while it is still sending.
/// Larger bodies are refused unread.
const DRAIN_LIMIT: u64 = 1024 * 1024;

/// The request body, at most [`MAX_BODY_BYTES`] (413 beyond), whether it comes with a
/// `Content-Length`, chunked, or not at all (empty).
pub fn limited_body() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(|len: Option<u64>| async move {
            match len {
                Some(n) if n > DRAIN_LIMIT => Err(warp::reject::custom(BodyTooLarge)),
                _ => Ok(()),
            }
        })
        .untuple_one()
        .and(warp::body::stream())
        .and_then(collect_body)
}

async fn collect_body<S, B>(stream: S) -> Result<Bytes, Rejection>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use bytes::BufMut;
    use futures_util::StreamExt;
    let mut stream = Box::pin(stream);
    let mut body = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| warp::reject::custom(BodyUnreadable))?;
        seen += chunk.remaining() as u64;
        if seen > DRAIN_LIMIT {
            return Err(warp::reject::custom(BodyTooLarge));
        }
        if seen > MAX_BODY_BYTES {
            // Too large: read on (and drop) to the end, then refuse.
            body.clear();
            chunk.advance(chunk.remaining());
            continue;
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.put_slice(part);
            chunk.advance(n);
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(warp::reject::custom(BodyTooLarge));
    }
    Ok(body.freeze())
}

/// Maps warp's own rejections (unknown route, wrong method, body limits, CORS) to the
/// error shape.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let err = if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
    } else if rejection.find::<BodyTooLarge>().is_some()
        || rejection.find::<warp::reject::PayloadTooLarge>().is_some()
    {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "request body exceeds 64 KiB",
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "INVALID_INPUT",
            "a Content-Length header is required",
        )
    } else if rejection.find::<BodyUnreadable>().is_some() {
        ApiError::invalid("the request body could not be read")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed on this endpoint",
        )
    } else if rejection
        .find::<warp::filters::cors::CorsForbidden>()
        .is_some()
    {
        ApiError::forbidden("origin not allowed")
    } else {
        ApiError::invalid("bad request")
    };
    Ok(err.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_ids_are_decoded_before_they_are_checked() {
        assert_eq!(path_id("roomId", "a%3Ab").unwrap(), "a:b");
        assert_eq!(
            path_id("roomId", "room-1_a.b:c@d").unwrap(),
            "room-1_a.b:c@d"
        );
        for bad in ["bad%20id", "%FF", "a%2Fb", "", "%"] {
            assert!(path_id("roomId", bad).is_err(), "{bad:?}");
        }
    }
}
