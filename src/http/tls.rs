//! HTTPS: the certificate and key (`--tls-cert`, `--tls-key`), read from PEM files, and
//! the TLS configuration every connection is accepted with: TLS 1.2 and 1.3 through rustls
//! with the `ring` provider (no C toolchain), HTTP/2 and HTTP/1.1 offered by ALPN.
//!
//! The certificate can be replaced while the server runs ([`Tls::reload`], on SIGHUP):
//! each handshake asks the resolver for the current one, so new connections get the new
//! certificate and open ones, with their streams, carry on untouched.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, anyhow};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// The ALPN name of HTTP/2.
pub const H2: &[u8] = b"h2";

/// The server's certificate, where it is read from, and the acceptor that uses it.
pub struct Tls {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    acceptor: TlsAcceptor,
}

impl Tls {
    /// Reads the certificate chain and the key, and checks that they belong together.
    ///
    /// # Errors
    /// When a file cannot be read, holds no certificate or key, or the key is not the
    /// certificate's.
    pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = certified_key(cert_path, key_path, &provider)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(key))));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .context("the TLS provider offers no protocol version")?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        // HTTP/2 first: a browser then keeps every stream of every tab on one connection.
        config.alpn_protocols = vec![H2.to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again and, if they hold a valid pair, serves it from the next
    /// handshake on. On an error the certificate in use stays.
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn reload(&self) -> anyhow::Result<()> {
        let key = certified_key(&self.cert_path, &self.key_path, &self.provider)?;
        // A poisoned lock only means a handshake panicked while cloning the pointer; the
        // pointer itself is whole.
        *self
            .current
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    /// What accepts each connection's handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }
}

/// The certificate handshakes are answered with: replaced whole on reload.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> anyhow::Result<CertifiedKey> {
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let cert_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            anyhow!(
                "{}: not a PEM certificate chain: {err}",
                cert_path.display()
            )
        })?;
    if chain.is_empty() {
        return Err(anyhow!("{}: no certificate in it", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?)
        .map_err(|err| anyhow!("{}: no PEM private key in it: {err}", key_path.display()))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|err| {
        anyhow!(
            "{} and {} are not a certificate and its key: {err}",
            cert_path.display(),
            key_path.display()
        )
    })
}
