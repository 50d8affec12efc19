//! `GET /`: the live page, built into the binary (`assets/index.html`): no build step,
//! nothing loaded from elsewhere.

use poem_openapi::OpenApi;
use poem_openapi::payload::Html;

/// The live page. An operation of the API (hidden from its description) because the API
/// is nested at the root, which leaves no room for a route of its own at `/`.
pub struct Page;

/// The page's HTML.
const INDEX_HTML: &str = include_str!("../../../assets/index.html");

#[OpenApi]
impl Page {
    /// The live page.
    #[oai(path = "/", method = "get", hidden)]
    async fn index(&self) -> Html<&'static str> {
        Html(INDEX_HTML)
    }
}
