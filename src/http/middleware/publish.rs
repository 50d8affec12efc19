//! Who may publish. With `--publish-token`, an append needs `Authorization: Bearer
//! <token>`; without it, anyone may. Runs before the body is read, so a refused request
//! costs nothing more.

use poem::Request;
use poem::http::header;
use subtle::ConstantTimeEq as _;

use crate::http::error::AppError;
use crate::http::state::AppState;

/// Refuses a request without the publish token (401), when one is configured.
///
/// # Errors
/// [`AppError::Unauthorized`].
pub fn check(req: &Request) -> Result<(), AppError> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("AppState is not installed")))?;
    let Some(token) = &state.config.publish_token else {
        return Ok(());
    };
    // The scheme name is case-insensitive (RFC 9110); the token is not. The header's raw
    // bytes are compared: a value that is not valid text is a wrong token, never none.
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
        .map_or(&b""[..], |v| &v[7..]);
    // Constant time, so the comparison does not tell an attacker how much of a guess was
    // right.
    if bool::from(presented.ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(AppError::Unauthorized)
    }
}
