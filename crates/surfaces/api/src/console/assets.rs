//! The console's stylesheet and script, compiled into the binary (no CDN, no build
//! step): `assets/console.css` and `assets/console.js` beside this crate's sources.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

const CSS: &str = include_str!("../../assets/console.css");
const JS: &str = include_str!("../../assets/console.js");

/// An hour: assets change only with the binary.
const CACHE: &str = "public, max-age=3600";

/// `GET /assets/console.css`.
pub(super) async fn css() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, CACHE),
        ],
        CSS,
    )
}

/// `GET /assets/console.js`.
pub(super) async fn js() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, CACHE),
        ],
        JS,
    )
}
