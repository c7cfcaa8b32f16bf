//! Bearer tokens: loaded from a file, a JSON environment value or a single token, kept only as
//! SHA-256 digests, and looked up in constant time.
//!
//! Forms: `{"actor": "token"}` (admin everywhere) or
//! `{"actor": {"token": "…", "roles": {"*": "reader", "db1": "writer"}}}`. A token written as
//! `sha256:<64 hex>` is a digest already (`sluice token hash` prints it), so the file need not
//! hold secrets in the clear.
//!
//! Lookup hashes the presented token and compares it with every stored digest using
//! `subtle`'s constant-time equality, without stopping at a match: the time taken does not
//! depend on which digest (if any) matched or how many bytes of it did.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::{Actor, Role, Roles};

pub type TokenDigest = [u8; 32];

/// The SHA-256 of a token.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// `sha256:<hex>` for a token (what `sluice token hash` prints).
pub fn hashed_form(token: &str) -> String {
    let mut s = String::from("sha256:");
    for b in digest(token) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Plain(String),
    Full {
        token: String,
        #[serde(default)]
        roles: Option<BTreeMap<String, Role>>,
    },
}

/// Every configured token.
#[derive(Default)]
pub struct TokenTable {
    entries: Vec<(TokenDigest, Arc<Actor>)>,
}

impl TokenTable {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds the tokens of a JSON document (`source` names it in errors).
    pub fn add_json(&mut self, json: &str, source: &str) -> Result<(), String> {
        let map: BTreeMap<String, Entry> =
            serde_json::from_str(json).map_err(|e| format!("{source}: {e}"))?;
        for (actor, entry) in map {
            let (token, roles) = match entry {
                Entry::Plain(t) => (t, None),
                Entry::Full { token, roles } => (token, roles),
            };
            let roles = match roles {
                Some(r) => {
                    Roles::from_map(r).map_err(|e| format!("{source}: actor {actor:?}: {e}"))?
                }
                None => Roles::admin_everywhere(),
            };
            self.add(&actor, &token, roles)
                .map_err(|e| format!("{source}: actor {actor:?}: {e}"))?;
        }
        Ok(())
    }

    /// Adds one token (plain or `sha256:<hex>`).
    pub fn add(&mut self, actor: &str, token: &str, roles: Roles) -> Result<(), String> {
        if actor.is_empty() {
            return Err("empty actor name".into());
        }
        let d = match token.strip_prefix("sha256:") {
            Some(hex) => parse_hex_digest(hex)?,
            None if token.len() < 16 => {
                return Err("token shorter than 16 characters; use a long random token".into());
            }
            None => digest(token),
        };
        if self.entries.iter().any(|(e, _)| *e == d) {
            return Err("the same token is configured twice".into());
        }
        self.entries.push((
            d,
            Arc::new(Actor {
                name: actor.to_string(),
                roles,
                expires_at: None,
            }),
        ));
        Ok(())
    }

    /// The actor whose token this is, compared in constant time over every entry.
    pub fn lookup(&self, token: &str) -> Option<Arc<Actor>> {
        let presented = digest(token);
        let mut found: u32 = u32::MAX;
        for (i, (stored, _)) in self.entries.iter().enumerate() {
            let hit = stored.ct_eq(&presented);
            found = u32::conditional_select(&found, &(i as u32), hit);
        }
        self.entries.get(found as usize).map(|(_, a)| a.clone())
    }
}

fn parse_hex_digest(hex: &str) -> Result<TokenDigest, String> {
    let bad = || "sha256: must be followed by 64 hex digits".to_string();
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_and_lookup() {
        let mut t = TokenTable::default();
        let hashed = hashed_form("hashed-token-0123456789");
        t.add_json(
            &format!(
                r#"{{"ops": "ops-token-0123456789",
                    "ro": {{"token": "ro-token-0123456789", "roles": {{"*": "reader", "db1": "writer"}}}},
                    "h": "{hashed}"}}"#
            ),
            "test",
        )
        .unwrap();
        let ops = t.lookup("ops-token-0123456789").unwrap();
        assert_eq!(ops.name, "ops");
        assert_eq!(ops.roles.on("anything"), Some(Role::Admin));
        let ro = t.lookup("ro-token-0123456789").unwrap();
        assert_eq!(ro.roles.on("db2"), Some(Role::Reader));
        assert_eq!(ro.roles.on("db1"), Some(Role::Writer));
        assert_eq!(t.lookup("hashed-token-0123456789").unwrap().name, "h");
        assert!(t.lookup("ops-token-012345678").is_none());
        assert!(t.lookup("").is_none());
        assert!(
            t.lookup(&hashed).is_none(),
            "the digest itself is not a token"
        );
    }

    #[test]
    fn bad_tables_are_refused() {
        for bad in [
            r#"{"a": "short"}"#,
            r#"{"a": "sha256:abc"}"#,
            r#"{"a": {"token": "long-enough-token-1", "roles": {"*": "owner"}}}"#,
            r#"{"a": "long-enough-token-1", "b": "long-enough-token-1"}"#,
            r#"["a"]"#,
        ] {
            assert!(TokenTable::default().add_json(bad, "t").is_err(), "{bad}");
        }
    }
}
