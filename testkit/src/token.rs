//! Tokens for the tests of who may read and write: signed with the test secret or the
//! test keys of `tests/fixtures/keys/`, and the forged ones a server must refuse.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The HS256 secret the tests' servers take (`--jwt-key`).
pub const SECRET: &str = "factlog-test-secret-0123456789abcdef";

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Claims valid for `ttl` seconds from now (negative: expired), granting `subscribe` and
/// `publish`.
pub fn claims(ttl: i64, subscribe: &[&str], publish: &[&str]) -> Value {
    json!({
        "sub": "tester",
        "exp": now() + ttl,
        "factlog": { "subscribe": subscribe, "publish": publish },
    })
}

/// A token for `claims`, signed with HS256 and [`SECRET`].
pub fn hs256(claims: &Value) -> String {
    hs256_with(SECRET.as_bytes(), claims)
}

/// A token for `claims`, signed with HS256 and `secret`.
pub fn hs256_with(secret: &[u8], claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret).expect("a secret");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("signed")
}

/// A token valid for an hour, signed with HS256 and [`SECRET`], granting `subscribe`
/// and `publish`.
pub fn token(subscribe: &[&str], publish: &[&str]) -> String {
    hs256(&claims(3600, subscribe, publish))
}

/// The path of a test key: `rsa`, `ec` or `ed`, `-private.pem` or `-public.pem`.
pub fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/keys")
        .join(name)
}

/// A token for `claims`, signed with `alg` and the test private key of `kind` (`rsa`,
/// `ec`, `ed`).
pub fn signed(alg: Algorithm, kind: &str, claims: &Value) -> String {
    let pem = std::fs::read(key_path(&format!("{kind}-private.pem"))).expect("a test key");
    let key = match kind {
        "rsa" => EncodingKey::from_rsa_pem(&pem),
        "ec" => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_ed_pem(&pem),
    }
    .expect("a private key");
    jsonwebtoken::encode(&Header::new(alg), claims, &key).expect("signed")
}

/// An unsigned token, `alg: none`: what a server that let the token choose its algorithm
/// would accept.
pub fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}
