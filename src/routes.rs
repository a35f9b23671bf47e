//! Every HTTP route in one filter: the API (`api`), the operational endpoints (`ops`), the
//! demo page (`web`) and the OpenAPI document, with CORS, the error shape for warp's own
//! rejections, the `Allow` header of a 405 and request logging.

use std::convert::Infallible;
use std::sync::Arc;

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::state::App;

/// The OpenAPI 3.1 document of this API, served at `GET /openapi.json`. `tests/openapi.rs`
/// and schemathesis (`scripts/test.sh`) keep it and the routes in step.
pub const OPENAPI_JSON: &str = include_str!("../docs/openapi.json");

/// The methods `docs/openapi.json` lists for `path`, for the `Allow` header that RFC 9110
/// requires on a 405. `None` for a path the document does not know.
fn allowed_methods(path: &str) -> Option<HeaderValue> {
    type Table = Vec<(Vec<String>, HeaderValue)>;
    static TABLE: std::sync::LazyLock<Table> = std::sync::LazyLock::new(|| {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap_or_default();
        let Some(paths) = doc["paths"].as_object() else {
            return Vec::new();
        };
        paths
            .iter()
            .filter_map(|(template, item)| {
                let methods: Vec<String> = item
                    .as_object()?
                    .keys()
                    .filter(|k| *k != "parameters")
                    .map(|k| k.to_uppercase())
                    .collect();
                let segments = template.split('/').map(str::to_owned).collect();
                Some((segments, HeaderValue::from_str(&methods.join(", ")).ok()?))
            })
            .collect()
    });
    let segments: Vec<&str> = path.split('/').collect();
    TABLE
        .iter()
        .find(|(template, _)| {
            template.len() == segments.len()
                && template
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()))
        })
        .map(|(_, allow)| allow.clone())
}

/// Every HTTP route, with CORS, error mapping and request logging (paths only, never
/// query strings, which could carry tokens).
pub fn all(app: Arc<App>) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let openapi = warp::path!("openapi.json").and(warp::get()).map(|| {
        let mut resp = Response::new(OPENAPI_JSON.into());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    });

    let cors = match &app.config.cors_origins {
        None => warp::cors().allow_any_origin(),
        Some(origins) => warp::cors().allow_origins(origins.iter().map(String::as_str)),
    }
    .allow_methods(["GET", "POST", "PUT", "DELETE", "OPTIONS"])
    .allow_headers(["content-type", "authorization"])
    .max_age(600);

    let every = crate::api::routes(app.clone())
        .or(openapi)
        .unify()
        .or(crate::probes::routes(app.clone()))
        .unify()
        .or(crate::ops::routes(app))
        .unify()
        .or(crate::web::routes())
        .unify()
        // Boxed: the combined filter type is otherwise deep enough to overflow the
        // compiler's trait recursion in release builds.
        .boxed();

    let answered = every
        .with(cors)
        .map(Reply::into_response)
        .recover(crate::http::recover)
        .unify();
    warp::path::full()
        .and(answered)
        .map(|path: warp::path::FullPath, mut resp: Response| {
            if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
                if let Some(allow) = allowed_methods(path.as_str()) {
                    resp.headers_mut().insert(header::ALLOW, allow);
                }
            }
            resp
        })
        .with(warp::log::custom(|info| {
            tracing::debug!(method = %info.method(), path = info.path(), status = info.status().as_u16(),
                elapsed_ms = info.elapsed().as_secs_f64() * 1000.0, "http request");
        }))
}
