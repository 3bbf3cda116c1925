//! Answers that are not an API's: a body cut short, a proxy's HTML error page, and valid JSON
//! of the wrong shape, for the fault tests of every source (`FakeOptions::garble`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// How an answer is spoiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Garble {
    /// `200`, and the first half of the real JSON answer (a connection cut mid-body by a
    /// proxy with the length it forwarded).
    TruncatedBody,
    /// `502` with the HTML page an nginx proxy or load balancer serves.
    HtmlProxyPage,
    /// `200` with valid JSON whose fields have the wrong types for any resource the tool reads.
    WrongShape,
}

/// nginx's default 502 page, as corporate proxies and load balancers serve it.
pub const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// A body whose usual fields all have the wrong type.
pub const WRONG_SHAPE: &str = r#"{"name": 42, "bindings": {"role": 1}, "entries": "none", "uri": [], "spec": 5, "overallAccessState": 3, "nextPageToken": 9, "parent": 7, "etag": 1, "policies": 2, "pushConfig": "x", "httpTarget": 1}"#;

/// The spoiled response for the real answer `real` (its JSON text).
pub fn respond(g: Garble, real: &str) -> (u16, Response) {
    let json = HeaderValue::from_static("application/json; charset=UTF-8");
    match g {
        Garble::TruncatedBody => {
            let mut cut = real.len() / 2;
            while !real.is_char_boundary(cut) {
                cut -= 1;
            }
            let body = real[..cut].to_string();
            (
                200,
                (StatusCode::OK, [(header::CONTENT_TYPE, json)], body).into_response(),
            )
        }
        Garble::HtmlProxyPage => (
            502,
            (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))],
                NGINX_502,
            )
                .into_response(),
        ),
        Garble::WrongShape => (
            200,
            (StatusCode::OK, [(header::CONTENT_TYPE, json)], WRONG_SHAPE).into_response(),
        ),
    }
}
