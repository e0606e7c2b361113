//! `GET /`: the live status page, one static HTML page with a small script, embedded in the
//! binary (no build step, no assets to deploy).
//!
//! The page shows the node table (id, address, state, in flight, capacity, served, heartbeat
//! age), the cluster's totals and the last 100 membership events. It stays live without a
//! reload: it follows `GET /v1/events` (server-sent events, read with `fetch` so that it can send
//! a header) and re-reads `GET /v1/nodes` at every event and every second for the load figures.
//! Through a master restart it shows "master unreachable, retrying" and resumes by itself.
//!
//! **Decision — the cluster secret.** The page itself holds no data and is served to anyone; the
//! data comes from the `/v1/` API, which requires the secret as every other client does. The
//! page reads it from the URL *fragment* (`http://master:3000/#secret=...`: a fragment is never
//! sent to the server, so it stays out of access logs and `Referer` headers) or from a login
//! form when the master answers `401`, and sends it as `Authorization: Bearer`. It is kept in
//! the page's memory and the fragment only: nothing is stored in the browser.

use axum::http::header;
use axum::response::IntoResponse;

/// The page.
pub(crate) const PAGE: &str = include_str!("status.html");

/// `GET /`.
pub(crate) async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
