//! API keys: their hashes as configured, and who presents one ([`Principal`]).

use sha2::{Digest, Sha256};
use tracing::info;

use crate::config::ApiRole;
use crate::error::ApiError;

/// The SHA-256 of an API key, lowercase hex: what `[[api.keys]] sha256` holds.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// One configured key.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) hash: [u8; 32],
    pub(crate) role: ApiRole,
    pub(crate) id: String,
    /// The CloudEvents source a source key speaks for.
    pub(crate) source: String,
}

impl Key {
    /// Who holds this key.
    pub(crate) fn principal(&self) -> Principal {
        let source = (self.role == ApiRole::Source).then(|| self.source.clone());
        Principal { role: self.role, id: self.id.clone(), source }
    }
}

/// The configured key whose hash is `presented`'s, comparing with every one of `keys` in constant
/// time (the first match counts).
pub(crate) fn find<'a>(keys: &'a [Key], presented: &str) -> Option<&'a Key> {
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for key in keys {
        if constant_time_eq(&key.hash, &digest) && found.is_none() {
            found = Some(key);
        }
    }
    found
}

pub(crate) fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Who is calling, from their key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// What the key allows.
    pub role: ApiRole,
    /// The dispatcher's or operator's name, or the department's id.
    pub id: String,
    /// For a source key, the CloudEvents source whose requests alone it may read and rate.
    pub source: Option<String>,
}

impl Principal {
    /// 403 unless this key's role is one of `roles`; `what` is what it tried, for the message.
    pub(crate) fn require(&self, roles: &[ApiRole], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        info!(role = self.role.as_str(), actor = %self.id, refused = what, "request refused for the key's role");
        Err(ApiError::Forbidden(format!("a {} key may not {what}", self.role.as_str())))
    }

    /// The department whose cases alone this key may see, if it is a department's.
    pub(crate) fn department(&self) -> Option<&str> {
        (self.role == ApiRole::Department).then_some(self.id.as_str())
    }
}
