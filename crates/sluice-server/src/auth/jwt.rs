//! JWT bearer tokens (HS256, RS256, ES256) mapped to an actor and roles.
//!
//! Every configured key carries its algorithm: an HS256 secret, RS256/ES256 public keys in
//! PEM files, or the keys of a JWKS file (each must name its `alg`). A token is checked only
//! against keys whose algorithm equals the token header's, and `jsonwebtoken` refuses a key of
//! another family, so algorithm confusion (an HS256 token "signed" with an RSA public key) and
//! `alg: none` (not even a parseable header) are rejected. `exp` is required; `exp` and `nbf`
//! are checked with `leeway_sec`; `iss` and `aud` are checked when configured.
//!
//! Claims: the actor is `actor_claim` (default `sub`); roles are `roles_claim` (default
//! `roles`), either one role for every database (`"reader"`) or an object like the token
//! file's (`{"*": "reader", "db1": "writer"}`). A token without roles authenticates but may do
//! nothing that needs a role.

use std::collections::BTreeMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{Actor, Role, Roles};
use crate::config::JwtConfig;

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

pub struct JwtVerifier {
    keys: Vec<Key>,
    issuer: Option<String>,
    audience: Option<String>,
    actor_claim: String,
    roles_claim: String,
    leeway_sec: u64,
}

impl JwtVerifier {
    /// The verifier the configuration describes; `None` when it configures no key.
    pub fn from_config(c: &JwtConfig) -> Result<Option<JwtVerifier>, String> {
        let mut keys = Vec::new();
        if !c.hs256_secret.is_empty() {
            if c.hs256_secret.len() < 32 {
                return Err("auth.jwt.hs256_secret must be at least 32 bytes".into());
            }
            keys.push(Key {
                kid: None,
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(c.hs256_secret.as_bytes()),
            });
        }
        for (file, alg) in [
            (&c.rs256_public_key_file, Algorithm::RS256),
            (&c.es256_public_key_file, Algorithm::ES256),
        ] {
            if file.is_empty() {
                continue;
            }
            let pem = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
            let key = match alg {
                Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                _ => DecodingKey::from_ec_pem(&pem),
            }
            .map_err(|e| format!("{file}: {e}"))?;
            keys.push(Key {
                kid: None,
                alg,
                key,
            });
        }
        if !c.jwks_file.is_empty() {
            let file = &c.jwks_file;
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            let set: jsonwebtoken::jwk::JwkSet =
                serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?;
            for jwk in &set.keys {
                let kid = jwk.common.key_id.clone();
                let alg = jwk
                    .common
                    .key_algorithm
                    .and_then(|a| a.to_string().parse::<Algorithm>().ok())
                    .ok_or_else(|| format!("{file}: key {kid:?} names no supported \"alg\""))?;
                if !matches!(alg, Algorithm::HS256 | Algorithm::RS256 | Algorithm::ES256) {
                    return Err(format!(
                        "{file}: key {kid:?}: algorithm {alg:?} is not supported"
                    ));
                }
                let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{file}: {e}"))?;
                keys.push(Key { kid, alg, key });
            }
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        Ok(Some(JwtVerifier {
            keys,
            issuer: non_empty(&c.issuer),
            audience: non_empty(&c.audience),
            actor_claim: c.actor_claim.clone(),
            roles_claim: c.roles_claim.clone(),
            leeway_sec: c.leeway_sec,
        }))
    }

    /// The actor of a valid token, or why it is not valid (for the log, not the client).
    pub fn verify(&self, token: &str) -> Result<Actor, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let mut last_error = format!("no key for algorithm {:?}", header.alg);
        for key in self.keys.iter().filter(|k| {
            k.alg == header.alg
                && match (&k.kid, &header.kid) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        }) {
            let mut v = Validation::new(key.alg);
            v.leeway = self.leeway_sec;
            v.validate_exp = true;
            v.validate_nbf = true;
            v.set_required_spec_claims(&["exp"]);
            match &self.issuer {
                Some(iss) => v.set_issuer(&[iss]),
                None => v.iss = None,
            }
            match &self.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
                token, &key.key, &v,
            ) {
                Ok(data) => return self.actor(&data.claims),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(last_error)
    }

    fn actor(&self, claims: &serde_json::Map<String, serde_json::Value>) -> Result<Actor, String> {
        let name = claims
            .get(&self.actor_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("claim {:?} missing or not a string", self.actor_claim))?;
        let roles = match claims.get(&self.roles_claim) {
            None | Some(serde_json::Value::Null) => Roles::none(),
            Some(v) => {
                let map: BTreeMap<String, Role> = match v {
                    serde_json::Value::String(_) => {
                        let role: Role = serde_json::from_value(v.clone())
                            .map_err(|e| format!("claim {:?}: {e}", self.roles_claim))?;
                        BTreeMap::from([("*".to_string(), role)])
                    }
                    _ => serde_json::from_value(v.clone())
                        .map_err(|e| format!("claim {:?}: {e}", self.roles_claim))?,
                };
                Roles::from_map(map)?
            }
        };
        Ok(Actor {
            name: format!("jwt:{name}"),
            roles,
            expires_at: claims.get("exp").and_then(serde_json::Value::as_u64),
        })
    }
}
