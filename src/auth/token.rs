//! Verifying a JSON Web Token: the signature with a configured key and the configured
//! algorithm only, `exp` (required), `nbf`, `iss` and `aud`, then the grants.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;

use super::keys;
use crate::config::Config;
use crate::domain::{Grants, Patterns};

/// Why a presented token was refused: words for the log and the `401`'s body, never the
/// token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not three base64url parts of JSON, or claims of the wrong type.
    #[error("the token is malformed")]
    Malformed,
    /// Signed with another algorithm than the configured one (or `none`).
    #[error("the token is not signed with the accepted algorithm")]
    WrongAlgorithm,
    /// No configured key verifies the signature.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// Past `exp` (and the leeway).
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` (less the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A required claim (`exp`, or `iss`/`aud` when configured) is missing.
    #[error("the token lacks a required claim (exp, or the configured iss or aud)")]
    MissingClaim,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not the accepted one")]
    WrongIssuer,
    /// `aud` does not name the configured audience.
    #[error("the token's audience is not the accepted one")]
    WrongAudience,
    /// A pattern of `factlog.publish` or `factlog.subscribe` is not one.
    #[error("the token's grants hold a pattern that is not a topic name, `prefix.*` or `*`")]
    BadGrant,
    /// Not the static publish token, and no `--jwt-key` to verify a JSON Web Token with.
    #[error("the token is not accepted by this server")]
    Unknown,
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its `sub`, for the log.
    pub sub: Option<String>,
    /// What it grants.
    pub grants: Grants,
    /// When it stops being accepted: `exp` plus the leeway.
    pub expires: SystemTime,
}

/// The claims factlog reads; the others (`iss`, `aud`, `nbf`) are checked by the
/// validation, and unknown ones are ignored.
#[derive(Debug, Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    factlog: GrantClaims,
}

#[derive(Debug, Default, Deserialize)]
struct GrantClaims {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
}

/// Verifies tokens with the keys and rules of the command line. Built once at start-up.
pub struct Verifier {
    keys: Vec<DecodingKey>,
    validation: Validation,
    leeway: Duration,
}

impl std::fmt::Debug for Verifier {
    // The keys are secrets (HS256) and say nothing useful in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// The verifier of `--jwt-key` and its companions; `None` without a key.
    ///
    /// # Errors
    /// A key that cannot be read or is not of the algorithm's kind.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        if config.jwt_keys.is_empty() {
            return Ok(None);
        }
        let keys = config
            .jwt_keys
            .iter()
            .enumerate()
            .map(|(i, value)| {
                keys::decoding(config.jwt_alg, value)
                    .map_err(|err| err.context(format!("--jwt-key number {}", i + 1)))
            })
            .collect::<anyhow::Result<_>>()?;
        // The algorithm is the configured one only: a token's `alg` header never chooses,
        // so neither `none` nor an HS256 token signed with an RSA public key as its secret
        // is ever accepted.
        let mut validation = Validation::new(keys::algorithm(config.jwt_alg));
        validation.leeway = config.jwt_leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &config.jwt_issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        // Without a configured audience a token's `aud` is not checked (the library would
        // refuse every token that has one).
        validation.validate_aud = config.jwt_audience.is_some();
        if let Some(audience) = &config.jwt_audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Ok(Some(Self {
            keys,
            validation,
            leeway: Duration::from_secs(config.jwt_leeway_secs),
        }))
    }

    /// The keys and the algorithm, in a few words for the start-up line.
    pub fn describe(&self) -> String {
        let alg = self
            .validation
            .algorithms
            .first()
            .map_or_else(String::new, |alg| format!("{alg:?} "));
        match self.keys.len() {
            1 => format!("1 {alg}key"),
            n => format!("{n} {alg}keys"),
        }
    }

    /// Verifies `token` with each key in turn (a key being rotated out still verifies
    /// the tokens it signed).
    ///
    /// # Errors
    /// [`Rejected`], saying why.
    pub fn verify(&self, token: &str) -> Result<Verified, Rejected> {
        let mut outcome = Err(Rejected::BadSignature);
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Err(err) if *err.kind() == ErrorKind::InvalidSignature => {}
                decoded => {
                    outcome = decoded.map_err(|err| rejected(err.kind()));
                    break;
                }
            }
        }
        let claims = outcome?.claims;
        let grants = Grants {
            publish: Patterns::parse(&claims.factlog.publish).map_err(|_| Rejected::BadGrant)?,
            subscribe: Patterns::parse(&claims.factlog.subscribe)
                .map_err(|_| Rejected::BadGrant)?,
        };
        Ok(Verified {
            sub: claims.sub,
            grants,
            expires: UNIX_EPOCH + Duration::from_secs(claims.exp) + self.leeway,
        })
    }
}

/// Why the library refused a token, in our words.
fn rejected(kind: &ErrorKind) -> Rejected {
    match kind {
        ErrorKind::InvalidSignature => Rejected::BadSignature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => Rejected::WrongAlgorithm,
        ErrorKind::ExpiredSignature => Rejected::Expired,
        ErrorKind::ImmatureSignature => Rejected::NotYetValid,
        ErrorKind::MissingRequiredClaim(_) => Rejected::MissingClaim,
        ErrorKind::InvalidIssuer => Rejected::WrongIssuer,
        ErrorKind::InvalidAudience => Rejected::WrongAudience,
        _ => Rejected::Malformed,
    }
}
