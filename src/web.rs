//! The demo page at `/` and the browser client module at `/switchboard.js`, compiled into
//! the binary (`include_str!`) so they are served from any working directory with no build
//! step.

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

/// A static file: its URL path (without the leading slash), content type and body.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: [Asset; 4] = [
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../web/index.html"),
    },
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../web/app.js"),
    },
    Asset {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../web/style.css"),
    },
    Asset {
        path: "switchboard.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../clients/js/switchboard.js"),
    },
];

/// The page may talk to this origin's API and to the signaling port (another port, hence
/// `ws:`/`wss:`), and run only its own scripts.
const CSP: &str = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn serve(asset: &Asset) -> Response {
    let mut resp = Response::new(asset.body.into());
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Small files that change with the binary: always revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

/// `GET /`, `/app.js`, `/style.css` and `/switchboard.js`; anything else is not found.
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let index = warp::path::end().and(warp::get()).map(|| serve(&ASSETS[0]));
    // The name is looked up before the method is checked: `POST /nothing` is 404, not 405.
    let file = warp::path::param::<String>()
        .and(warp::path::end())
        .and_then(|name: String| async move {
            ASSETS[1..]
                .iter()
                .position(|a| a.path == name)
                .map(|i| i + 1)
                .ok_or_else(warp::reject::not_found)
        })
        .and(warp::get())
        .map(|i: usize| serve(&ASSETS[i]));
    index.or(file).unify()
}
