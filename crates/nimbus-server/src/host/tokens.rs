//! Admin tokens of `nimbus server`: `STATE/tokens.json` keeps only each token's id and
//! SHA-256, so reading the file does not give anyone access.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

/// One token as stored: its public id, the hex SHA-256 of the whole token, when it was
/// made (Unix seconds).
#[derive(Clone)]
pub struct TokenRecord {
    pub id: String,
    pub sha256: String,
    pub created: u64,
}

/// Where the tokens of the server with state folder `state` are kept.
pub fn path(state: &Path) -> PathBuf {
    state.join("tokens.json")
}

/// The stored tokens; none when the file does not exist yet.
pub fn read(state: &Path) -> anyhow::Result<Vec<TokenRecord>> {
    let path = path(state);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let tokens = value["tokens"].as_array().cloned().unwrap_or_default();
    Ok(tokens
        .iter()
        .filter_map(|t| {
            Some(TokenRecord {
                id: t["id"].as_str()?.to_owned(),
                sha256: t["sha256"].as_str()?.to_owned(),
                created: t["created"].as_u64().unwrap_or(0),
            })
        })
        .collect())
}

/// Makes a new token, stores its hash and returns the token itself (`nmb_<id>_<secret>`),
/// which is shown once.
pub fn create(state: &Path) -> anyhow::Result<String> {
    let mut tokens = read(state)?;
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let token = format!("nmb_{id}_{secret}");
    tokens.push(TokenRecord {
        id,
        sha256: hash(&token),
        created: super::unix_now(),
    });
    write(state, &tokens)?;
    Ok(token)
}

/// Revokes the token given whole or by id; fails when none matches.
pub fn revoke(state: &Path, token_or_id: &str) -> anyhow::Result<String> {
    let mut tokens = read(state)?;
    let digest = hash(token_or_id);
    let Some(idx) = tokens
        .iter()
        .position(|t| t.id == token_or_id || t.sha256 == digest)
    else {
        anyhow::bail!("no token matches {token_or_id:?}; `nimbus server token ls` lists them");
    };
    let removed = tokens.remove(idx);
    write(state, &tokens)?;
    Ok(removed.id)
}

/// Whether `token` is one of the stored ones. Read from the file on every call, so a
/// revocation applies at once to a running server.
pub fn is_valid(state: &Path, token: &str) -> bool {
    let Ok(tokens) = read(state) else {
        return false;
    };
    let digest = hash(token);
    tokens
        .iter()
        .any(|t| constant_time_eq(t.sha256.as_bytes(), digest.as_bytes()))
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn write(state: &Path, tokens: &[TokenRecord]) -> anyhow::Result<()> {
    std::fs::create_dir_all(state).with_context(|| format!("creating {}", state.display()))?;
    let list: Vec<serde_json::Value> = tokens
        .iter()
        .map(|t| serde_json::json!({ "id": t.id, "sha256": t.sha256, "created": t.created }))
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "version": 1, "tokens": list }))?;
    super::write_atomic(&path(state), text.as_bytes())
}
