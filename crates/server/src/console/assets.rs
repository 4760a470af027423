//! The console's stylesheet and script, embedded in the binary (no CDN, no build step).

use axum::http::header;
use axum::response::IntoResponse;

const CSS: &str = include_str!("static/console.css");
const JS: &str = include_str!("static/console.js");

/// The console's stylesheet.
#[utoipa::path(get, path = "/console/assets/console.css", tag = "console",
    responses((status = 200, description = "Stylesheet", content_type = "text/css")))]
pub async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")], CSS)
}

/// The console's script: the board's self-refresh and small conveniences.
#[utoipa::path(get, path = "/console/assets/console.js", tag = "console",
    responses((status = 200, description = "Script", content_type = "text/javascript")))]
pub async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")], JS)
}
