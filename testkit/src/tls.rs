//! HTTPS in tests: a self-signed certificate made on the spot, and clients that trust it.

use std::path::{Path, PathBuf};

/// A certificate and its key, written as PEM files.
pub struct TestCert {
    /// The certificate's file.
    pub cert: PathBuf,
    /// The key's file.
    pub key: PathBuf,
    /// The certificate, as PEM.
    pub pem: Vec<u8>,
    /// The SHA-256 of its public key (SubjectPublicKeyInfo), in base64: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes to trust this one certificate.
    pub spki_sha256: String,
}

impl TestCert {
    /// Makes a new self-signed certificate for `127.0.0.1` and `localhost` with the common
    /// name `name`, and writes it to `cert.pem` and `key.pem` in `dir` (replacing what is
    /// there, as a renewal would).
    pub fn write(dir: &Path, name: &str) -> TestCert {
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("certificate parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("a key pair");
        let cert = params.self_signed(&key).expect("a self-signed certificate");
        let test_cert = TestCert {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            pem: cert.pem().into_bytes(),
            spki_sha256: {
                use base64::Engine as _;
                use sha2::Digest as _;
                base64::engine::general_purpose::STANDARD
                    .encode(sha2::Sha256::digest(key.public_key_der()))
            },
        };
        std::fs::write(&test_cert.cert, &test_cert.pem).expect("the certificate is written");
        std::fs::write(&test_cert.key, key.serialize_pem()).expect("the key is written");
        test_cert
    }
}

/// A client builder that trusts only the certificate `pem` and offers HTTP/2 and HTTP/1.1
/// by ALPN, as a browser does.
pub fn builder_trusting(pem: &[u8]) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pem).expect("a PEM certificate"))
}

/// A client that trusts only the certificate `pem` and offers HTTP/2 and HTTP/1.1 by ALPN.
pub fn client_trusting(pem: &[u8]) -> reqwest::Client {
    builder_trusting(pem).build().expect("a client")
}

/// As [`client_trusting`], but HTTP/1.1 only.
pub fn http1_client_trusting(pem: &[u8]) -> reqwest::Client {
    builder_trusting(pem)
        .http1_only()
        .build()
        .expect("a client")
}

/// Waits until `client` gets an answer from `base` (after a certificate reload: until the
/// certificate it trusts is served); fails the test after [`WAIT`](crate::WAIT).
pub async fn until_served(client: &reqwest::Client, base: &str) {
    let started = std::time::Instant::now();
    while client.get(format!("{base}/status")).send().await.is_err() {
        assert!(
            started.elapsed() < crate::WAIT,
            "{base} never answered a client trusting only its new certificate"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
