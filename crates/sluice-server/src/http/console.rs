//! What a person opens in a browser: the web console at `/` (and `/ui/`) and the API reference
//! at `/docs/`, both from files embedded in the binary (no CDN, works offline).
//!
//! - **Console**: the files of `crates/sluice-server/assets/console/` (HTML, CSS, JavaScript and
//!   the vendored uPlot chart library), embedded by `rust-embed` in release builds (debug builds
//!   read them from the source tree, so editing them needs no rebuild). The console reads only
//!   through the public HTTP API with the user's own token, so these routes need no privileges:
//!   they are public, outside the authorization table and the OpenAPI document, like static
//!   files in front of an API. Its `Content-Security-Policy` allows only this origin.
//! - **API reference**: Swagger UI (from `utoipa-swagger-ui`'s vendored distribution) reading
//!   `/openapi.json`, the document this server serves with its own limits; "Try it out" sends
//!   requests with the bearer token entered under "Authorize" (kept in the page's memory).
//!
//! Every answer says `X-Content-Type-Options: nosniff` and refuses framing
//! (`X-Frame-Options: DENY`), so another site cannot overlay the console.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sluice_api::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

/// The console's files.
#[derive(rust_embed::RustEmbed)]
#[folder = "assets/console/"]
struct ConsoleFiles;

/// Only this origin, for scripts, styles, images and requests; no framing.
const CONSOLE_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The console and API reference routes (public; merged outside the guard).
pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(console_index))
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(console_index))
        .route("/ui/{*file}", get(console_file))
        .route("/docs", get(|| async { Redirect::permanent("/docs/") }))
        .route("/docs/", get(docs_index))
        .route("/docs/{*file}", get(docs_file))
}

async fn console_index() -> Response {
    console_answer("index.html")
}

async fn console_file(Path(file): Path<String>) -> Response {
    console_answer(&file)
}

fn console_answer(file: &str) -> Response {
    let Some(content) = ConsoleFiles::get(file) else {
        return missing(&format!("/ui/{file}"));
    };
    let mut response = file_response(content.data, content_type(file), file == "index.html");
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    response
}

/// Swagger UI (where people type tokens) loads and calls only this server; its components
/// set inline styles and its icons are `data:` SVGs.
const DOCS_CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Swagger UI's configuration: the served document, "Try it out" on, the token kept in memory.
static DOCS_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::new(["/openapi.json"])
            .try_it_out_enabled(true)
            .persist_authorization(false)
            .display_request_duration(true),
    )
});

async fn docs_index() -> Response {
    docs_answer("index.html")
}

async fn docs_file(Path(file): Path<String>) -> Response {
    docs_answer(&file)
}

fn docs_answer(file: &str) -> Response {
    match utoipa_swagger_ui::serve(file, DOCS_CONFIG.clone()) {
        Ok(Some(f)) => {
            let content_type = if f.content_type.starts_with("text/") {
                format!("{}; charset=utf-8", f.content_type)
            } else {
                f.content_type
            };
            let content_type = HeaderValue::from_str(&content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            let mut response = file_response(f.bytes, content_type, file == "index.html");
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DOCS_CSP),
            );
            response
        }
        Ok(None) => missing(&format!("/docs/{file}")),
        Err(e) => ApiError::internal(format!("serving /docs/{file}: {e}")).into_response(),
    }
}

fn file_response(body: Cow<'static, [u8]>, content_type: HeaderValue, page: bool) -> Response {
    // Pages are revalidated (a new server version shows at once); assets may be cached briefly.
    let cache = if page {
        "no-cache"
    } else {
        "public, max-age=300"
    };
    let mut response = (StatusCode::OK, body.into_owned()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn missing(path: &str) -> Response {
    ApiError::new(ErrorCode::NotFound, format!("no file {path}")).into_response()
}

fn content_type(file: &str) -> HeaderValue {
    let ext = file.rsplit_once('.').map_or("", |(_, e)| e);
    HeaderValue::from_static(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_file_has_a_known_type_and_the_page_loads_only_its_own_files() {
        let files: Vec<_> = ConsoleFiles::iter().collect();
        assert!(files.iter().any(|f| f == "index.html"), "{files:?}");
        for f in &files {
            assert_ne!(
                content_type(f),
                "application/octet-stream",
                "{f}: add its type"
            );
        }
        let index = ConsoleFiles::get("index.html").unwrap();
        let index = std::str::from_utf8(&index.data).unwrap();
        for needle in ["http://", "https://", "//cdn"] {
            assert!(!index.contains(needle), "index.html loads {needle}…");
        }
    }

    #[test]
    fn swagger_ui_reads_the_served_document() {
        let init = utoipa_swagger_ui::serve("swagger-initializer.js", DOCS_CONFIG.clone())
            .unwrap()
            .expect("swagger-initializer.js");
        let text = std::str::from_utf8(&init.bytes).unwrap();
        assert!(text.contains("/openapi.json"), "{text}");
        assert!(
            utoipa_swagger_ui::serve("index.html", DOCS_CONFIG.clone())
                .unwrap()
                .is_some()
        );
    }
}
