//! The demo page and the browser client module, served by the HTTP port from the binary.

mod common;

use common::*;

#[tokio::test]
async fn demo_page_and_client_module_are_served_with_their_types() {
    let server = Server::start(&[]);
    for (path, content_type, needle) in [
        ("/", "text/html", "<script type=\"module\" src=\"/app.js\">"),
        ("/app.js", "text/javascript", "from '/switchboard.js'"),
        ("/style.css", "text/css", ".card"),
        (
            "/switchboard.js",
            "text/javascript",
            "export class SwitchboardClient",
        ),
    ] {
        let r = server
            .http_client()
            .get(server.http_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let headers = r.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}: {headers:?}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert!(headers.contains_key("content-security-policy"), "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(needle), "{path} lacks {needle}");
    }
    server.get("/other.js").await.assert_error(404, "NOT_FOUND");
    // Only GET: the page is not a write target.
    let r = server.post("/", &serde_json::json!({})).await;
    assert_eq!(r.status, 405, "{}", r.body);
}
