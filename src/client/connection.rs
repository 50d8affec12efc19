//! How a command reaches a server: its base URL, the certificates it trusts, the token.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use url::Url;

/// How long connecting may take before the attempt counts as failed (and is retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server is and how to present oneself to it.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The server's base URL, such as http://127.0.0.1:3001 (a path is kept, for a server
    /// behind a proxy under a prefix).
    pub url: Url,

    /// A token, sent as `Authorization: Bearer <token>`.
    #[arg(
        long,
        env = "FACTLOG_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,

    /// A file holding the token, read again before every request and reconnection, so that
    /// a token renewed in it is picked up.
    #[arg(long)]
    pub token_file: Option<PathBuf>,

    /// A PEM file of certificates to trust beside the system's (a private CA, a
    /// self-signed certificate).
    #[arg(long)]
    pub cacert: Option<PathBuf>,
}

/// A server, ready to be asked.
#[derive(Debug)]
pub struct Server {
    /// The HTTP client, with the trusted certificates.
    pub client: reqwest::Client,
    base: Url,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

impl Server {
    /// The server `args` names, with `read_timeout` as the longest silence tolerated on a
    /// response (`None`: none).
    ///
    /// # Errors
    /// When the URL is not http(s) or the certificate file cannot be read.
    pub fn new(args: &ServerArgs, read_timeout: Option<Duration>) -> anyhow::Result<Self> {
        if !matches!(args.url.scheme(), "http" | "https") {
            anyhow::bail!("{} is not an http:// or https:// URL", args.url);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("factlog/", env!("CARGO_PKG_VERSION")));
        if let Some(timeout) = read_timeout {
            builder = builder.read_timeout(timeout);
        }
        if let Some(path) = &args.cacert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read --cacert {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let mut base = args.url.clone();
        // `join` replaces the last segment unless the path ends with a slash.
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(Self {
            client: builder.build().context("cannot set up the HTTP client")?,
            base,
            token: args.token.clone(),
            token_file: args.token_file.clone(),
        })
    }

    /// The URL of `path` (no leading slash) on this server.
    ///
    /// # Errors
    /// When `path` does not make a URL.
    pub fn url(&self, path: &str) -> anyhow::Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("cannot make a URL of {path}"))
    }

    /// The token to present now: `--token`, or what `--token-file` holds now.
    ///
    /// # Errors
    /// When the token file cannot be read.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        match &self.token_file {
            Some(path) => {
                let token = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read --token-file {}", path.display()))?;
                Ok(Some(token.trim().to_owned()))
            }
            None => Ok(self.token.clone()),
        }
    }

    /// Whether the token can change between requests.
    pub fn token_renews(&self) -> bool {
        self.token_file.is_some()
    }
}

/// A refusal in one line: the status and the server's own `error` sentence.
pub async fn refusal(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let said = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.trim().chars().take(200).collect());
    format!("{status}: {said}")
}
