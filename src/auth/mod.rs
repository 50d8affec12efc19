//! Who may read and write: the keys of `--jwt-key`, the verification of a JSON Web Token,
//! the rules of the command line (the static publish token, the public topics) and a
//! caller's grants, and the minting of tokens for `factlog token`.
//!
//! Nothing here knows HTTP: `http/access.rs` finds a request's token and answers with
//! what this decides.

mod keys;
mod mint;
mod policy;
mod token;

pub use mint::mint;
pub use policy::{Caller, Denied, Policy};
pub use token::Rejected;
