//! `factlog token`: a signed token with the grants asked for, to try the server with.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Header, encode};
use serde_json::{Map, Value, json};

use super::keys;
use crate::config::TokenArgs;
use crate::domain::Patterns;

/// A token signed with the first key of `args`, valid from now for its time to live.
///
/// # Errors
/// A key that cannot be read or used, or a grant that is not a topic pattern.
pub fn mint(args: &TokenArgs) -> anyhow::Result<String> {
    // Checked here so that a typo is caught now, not when the server refuses the token.
    for (flag, patterns) in [
        ("--subscribe", &args.subscribe),
        ("--publish", &args.publish),
    ] {
        Patterns::parse(patterns).map_err(|err| anyhow::anyhow!("{flag}: {err}"))?;
    }
    let value = args
        .jwt_keys
        .first()
        .ok_or_else(|| anyhow::anyhow!("a --jwt-key is needed to sign with"))?;
    let key = keys::encoding(args.jwt_alg, value)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut claims = Map::new();
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now.saturating_add(args.ttl)));
    for (name, value) in [
        ("sub", &args.sub),
        ("iss", &args.jwt_issuer),
        ("aud", &args.jwt_audience),
    ] {
        if let Some(value) = value {
            claims.insert(name.into(), json!(value));
        }
    }
    claims.insert(
        "factlog".into(),
        json!({ "publish": args.publish, "subscribe": args.subscribe }),
    );
    let header = Header::new(keys::algorithm(args.jwt_alg));
    Ok(encode(&header, &Value::Object(claims), &key)?)
}
