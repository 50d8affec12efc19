//! `GET /`: the live page, and `GET /factlog.js`: the client module it is built on, both
//! built into the binary (`assets/`): no build step, nothing loaded from elsewhere.

use poem_openapi::payload::{Html, PlainText};
use poem_openapi::{ApiResponse, OpenApi};

/// The live page and its module. Operations of the API because the API is nested at the
/// root, which leaves no room for routes of their own.
pub struct Page;

/// The page's HTML.
const INDEX_HTML: &str = include_str!("../../../assets/index.html");

/// The client module: also meant to be copied into an application as it is.
const FACTLOG_JS: &str = include_str!("../../../assets/factlog.js");

/// The module, with the type a browser requires of a module script.
#[derive(ApiResponse)]
enum Script {
    /// The module's text.
    #[oai(status = 200, content_type = "text/javascript; charset=utf-8")]
    Module(PlainText<&'static str>),
}

#[OpenApi]
impl Page {
    /// The live page: the log as it grows, in a browser.
    #[oai(path = "/", method = "get")]
    async fn index(&self) -> Html<&'static str> {
        Html(INDEX_HTML)
    }

    /// The client module the live page is built on.
    ///
    /// `import { follow } from "/factlog.js"`; also meant to be copied into an
    /// application as it is.
    #[oai(path = "/factlog.js", method = "get")]
    async fn module(&self) -> Script {
        Script::Module(PlainText(FACTLOG_JS))
    }
}
