//! The keys of `--jwt-key`, read once at start-up: each is checked then, so that a wrong
//! path, an unreadable file or a key of the wrong kind stops the server with its reason
//! rather than refusing every token later.

use anyhow::{Context as _, bail};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};

use crate::config::JwtAlg;

/// The shortest HS256 secret accepted, in bytes: RFC 7518 (3.2) asks for a key at least as
/// long as the hash, and a shorter one can be guessed offline from any token.
pub const MIN_SECRET_BYTES: usize = 32;

/// The `jsonwebtoken` algorithm of a configured one.
pub fn algorithm(alg: JwtAlg) -> Algorithm {
    match alg {
        JwtAlg::Hs256 => Algorithm::HS256,
        JwtAlg::Rs256 => Algorithm::RS256,
        JwtAlg::Es256 => Algorithm::ES256,
        JwtAlg::EdDsa => Algorithm::EdDSA,
    }
}

/// Reads what a `--jwt-key` value names: for HS256, the secret itself, or the content of
/// `@path` without its trailing whitespace, at least [`MIN_SECRET_BYTES`] long; for the
/// others, the PEM file at the path (with or without `@`).
fn material(alg: JwtAlg, value: &str) -> anyhow::Result<Vec<u8>> {
    let path = value.strip_prefix('@');
    if alg != JwtAlg::Hs256 {
        let path = path.unwrap_or(value);
        return std::fs::read(path).with_context(|| format!("cannot read the PEM file {path}"));
    }
    let secret = match path {
        None => value.as_bytes().to_vec(),
        Some(path) => {
            let mut text = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
            let end = text
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |i| i + 1);
            text.truncate(end);
            text
        }
    };
    if secret.len() < MIN_SECRET_BYTES {
        bail!(
            "an HS256 secret must be at least {MIN_SECRET_BYTES} bytes long (`openssl rand -hex 32` makes one)"
        );
    }
    Ok(secret)
}

/// The key that verifies tokens, from one `--jwt-key` value. An error never holds the
/// secret.
///
/// # Errors
/// A file that cannot be read, a secret that is too short, a PEM that is not a public key
/// of the algorithm's kind.
pub fn decoding(alg: JwtAlg, value: &str) -> anyhow::Result<DecodingKey> {
    let bytes = material(alg, value)?;
    // The point of a key pair is that factlog never holds what signs: a private key given
    // by mistake is refused, with the command that makes the public one.
    if alg != JwtAlg::Hs256 && bytes.windows(11).any(|w| w == b"PRIVATE KEY") {
        bail!(
            "this is a private key: give factlog the public key (`openssl pkey -in private.pem -pubout -out public.pem`)"
        );
    }
    match alg {
        JwtAlg::Hs256 => DecodingKey::from_secret(&bytes),
        JwtAlg::Rs256 => DecodingKey::from_rsa_pem(&bytes),
        JwtAlg::Es256 => DecodingKey::from_ec_pem(&bytes),
        JwtAlg::EdDsa => DecodingKey::from_ed_pem(&bytes),
    }
    .map_err(|err| anyhow::anyhow!("not a key that verifies {alg:?} tokens: {err}"))
}

/// The key that signs tokens (`factlog token`), from one `--jwt-key` value: the HS256
/// secret, or for the other algorithms a PEM private key (PKCS#8).
///
/// # Errors
/// As [`decoding`], for a private key.
pub fn encoding(alg: JwtAlg, value: &str) -> anyhow::Result<EncodingKey> {
    let bytes = material(alg, value)?;
    match alg {
        JwtAlg::Hs256 => EncodingKey::from_secret(&bytes),
        JwtAlg::Rs256 => EncodingKey::from_rsa_pem(&bytes),
        JwtAlg::Es256 => EncodingKey::from_ec_pem(&bytes),
        JwtAlg::EdDsa => EncodingKey::from_ed_pem(&bytes),
    }
    .map_err(|err| anyhow::anyhow!("not a private key that signs {alg:?} tokens: {err}"))
}
