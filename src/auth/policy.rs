//! Who may read and write: the rules of the command line, and a caller identified by the
//! token it presented.

use std::time::SystemTime;

use subtle::ConstantTimeEq as _;

use super::token::{Rejected, Verified, Verifier};
use crate::config::Config;
use crate::domain::{Grants, Patterns};

/// The rules: the static publish token, the verifier of JSON Web Tokens, the public
/// topics. Built once at start-up.
#[derive(Debug)]
pub struct Policy {
    publish_token: Option<String>,
    verifier: Option<Verifier>,
    public: Patterns,
}

/// Who a request comes from, once its token is verified.
#[derive(Debug, Clone)]
pub struct Caller {
    who: Who,
    grants: Grants,
    /// When its token stops being accepted; `None` without a token, or with the static
    /// one, which does not expire.
    pub expires: Option<SystemTime>,
}

/// Who a caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    /// Nobody in particular: no token was presented, or the server asks for none.
    Anyone,
    /// The holder of the static `--publish-token`.
    Publisher,
    /// The holder of a verified JSON Web Token, with its `sub`.
    Subject(Option<String>),
}

/// Why a caller may not do what it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// It presented no token, and one is needed.
    NeedsToken,
    /// Its token does not grant it.
    NotGranted,
}

impl Policy {
    /// The rules of the command line. Reads the keys.
    ///
    /// # Errors
    /// A key that cannot be read or used; a `--public-topics` pattern that is not one.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let public = Patterns::parse_list(&config.public_topics)
            .map_err(|err| anyhow::anyhow!("--public-topics: {err}"))?;
        Ok(Self {
            publish_token: config.publish_token.clone(),
            verifier: Verifier::from_config(config)?,
            public,
        })
    }

    /// Whether tokens matter at all: with neither a publish token nor a key, everything
    /// is open and a presented token is not even looked at (as before tokens existed).
    pub fn checks_tokens(&self) -> bool {
        self.publish_token.is_some() || self.verifier.is_some()
    }

    /// Who may read and write, in a few words for the start-up line: a server that was
    /// meant to be private but is not (a misspelt variable) should say so where it is
    /// seen.
    pub fn describe(&self) -> String {
        if !self.checks_tokens() {
            return "open: anyone reads and appends".to_owned();
        }
        let reads = if self.public.matches_every_topic() {
            "anyone reads".to_owned()
        } else if self.public == Patterns::default() {
            "every read needs a token".to_owned()
        } else {
            format!("anyone reads {}, the rest needs a token", self.public)
        };
        let appends = match (&self.verifier, &self.publish_token) {
            (Some(verifier), Some(_)) => format!(
                "tokens verified with {}; appends need a publish grant or the static token",
                verifier.describe()
            ),
            (Some(verifier), None) => format!(
                "tokens verified with {}; appends need a publish grant",
                verifier.describe()
            ),
            (None, _) => "appends need the static token".to_owned(),
        };
        format!("{reads}; {appends}")
    }

    /// Whether every topic is readable without a token.
    pub fn everything_is_public(&self) -> bool {
        self.public.matches_every_topic()
    }

    /// The caller that presented `token` (none: `None`). A presented token that is not
    /// valid is refused, never taken for no token.
    ///
    /// # Errors
    /// [`Rejected`], saying why.
    pub fn identify(&self, token: Option<&[u8]>) -> Result<Caller, Rejected> {
        let Some(token) = token.filter(|_| self.checks_tokens()) else {
            return Ok(Caller::anyone());
        };
        // Constant time, so the comparison does not tell an attacker how much of a guess
        // was right.
        if let Some(publish) = &self.publish_token {
            if bool::from(token.ct_eq(publish.as_bytes())) {
                return Ok(Caller {
                    who: Who::Publisher,
                    grants: Grants {
                        publish: Patterns::all(),
                        subscribe: Patterns::default(),
                    },
                    expires: None,
                });
            }
        }
        let verifier = self.verifier.as_ref().ok_or(Rejected::Unknown)?;
        let text = std::str::from_utf8(token).map_err(|_| Rejected::Malformed)?;
        let Verified {
            sub,
            grants,
            expires,
        } = verifier.verify(text)?;
        Ok(Caller {
            who: Who::Subject(sub),
            grants,
            expires: Some(expires),
        })
    }

    /// Whether `caller` may read `topic`: it is public, or granted.
    ///
    /// # Errors
    /// [`Denied`], saying whether a token would help.
    pub fn may_read(&self, caller: &Caller, topic: &str) -> Result<(), Denied> {
        if self.public.matches(topic) || caller.grants.subscribe.matches(topic) {
            Ok(())
        } else {
            Err(caller.denied())
        }
    }

    /// Whether `caller` may read any topic at all: no public topic and no grant means
    /// nothing to list, which `GET /topics` then answers without reading the index.
    pub fn may_read_some(&self, caller: &Caller) -> bool {
        self.public != Patterns::default() || caller.grants.subscribe != Patterns::default()
    }

    /// Whether `caller` may read every topic at once: that needs `*`, public or granted,
    /// for it includes the topics nobody has named yet.
    ///
    /// # Errors
    /// [`Denied`], saying whether a token would help.
    pub fn may_read_every_topic(&self, caller: &Caller) -> Result<(), Denied> {
        if self.public.matches_every_topic() || caller.grants.subscribe.matches_every_topic() {
            Ok(())
        } else {
            Err(caller.denied())
        }
    }

    /// Whether `caller` may publish to `topic`: the server takes no token, or the caller's
    /// grants it (the static token grants every topic).
    ///
    /// # Errors
    /// [`Denied`], saying whether a token would help.
    pub fn may_publish(&self, caller: &Caller, topic: &str) -> Result<(), Denied> {
        if !self.checks_tokens() || caller.grants.publish.matches(topic) {
            Ok(())
        } else {
            Err(caller.denied())
        }
    }
}

impl Caller {
    /// A caller without a token.
    pub fn anyone() -> Self {
        Self {
            who: Who::Anyone,
            grants: Grants::default(),
            expires: None,
        }
    }

    /// The `sub` of its token, if it has one.
    pub fn sub(&self) -> Option<&str> {
        match &self.who {
            Who::Subject(sub) => sub.as_deref(),
            Who::Anyone | Who::Publisher => None,
        }
    }

    fn denied(&self) -> Denied {
        if self.who == Who::Anyone {
            Denied::NeedsToken
        } else {
            Denied::NotGranted
        }
    }
}
