//! The JSON of `nimbus server`'s admin API, and of each stage's `stage.json` (the same
//! shape): a versioned boundary, so these types are only what goes over the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A (service, stage)'s versions and aliases (`GET /v1/apps/{service}/{stage}/versions`,
/// the answer to every change, and `stage.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageView {
    /// The format's version: 1.
    #[serde(rename = "version", default = "format_one")]
    pub format: u32,
    /// Every version deployed, oldest first.
    #[serde(default)]
    pub versions: Vec<VersionView>,
    /// Each alias's targets; the first is the stable one, a second one a canary.
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<Target>>,
    /// The versions `live` pointed at fully, oldest first.
    #[serde(default)]
    pub live_history: Vec<u64>,
}

/// One deployed version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    /// Its number, from 1.
    pub version: u64,
    /// When it was deployed (Unix seconds).
    #[serde(default)]
    pub created: u64,
    /// The aliases pointing at it, with their weights.
    #[serde(default)]
    pub aliases: Vec<AliasShare>,
    /// The region it was deployed with (`nimbus deploy --region`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// An alias's share of a version's traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasShare {
    /// The alias.
    pub alias: String,
    /// Its weight on that version.
    pub weight: u32,
}

/// A version an alias points at, with its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// The version.
    pub version: u64,
    /// Its weight (100 when left out).
    #[serde(default = "full_weight")]
    pub weight: u32,
}

/// The answer to a deploy: the stage's record and the new version's number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployed {
    /// The stage as it is now.
    #[serde(flatten)]
    pub stage: StageView,
    /// The number the bundle got.
    pub deployed: u64,
}

/// The body of `PUT /v1/apps/{service}/{stage}/aliases/{alias}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AliasBody {
    /// One version, or two with weights.
    pub targets: Vec<Target>,
}

/// `GET /v1/apps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppList {
    /// Every (service, stage) deployed, in name order.
    pub apps: Vec<AppName>,
}

/// A deployed (service, stage).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppName {
    /// The service.
    pub service: String,
    /// The stage.
    pub stage: String,
}

/// The query of `POST /v1/deployments`; the body is the bundle.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeployQuery {
    /// The manifest's service.
    #[serde(default)]
    pub service: String,
    /// The stage it is deployed as.
    #[serde(default)]
    pub stage: String,
    /// A share of `live` for the new version (`10%` or `10`); all of it when left out.
    pub canary: Option<String>,
    /// The region the version resolves `provider.region` as.
    pub region: Option<String>,
}

/// Every failed admin call: a message, and a manifest's diagnostics when it was refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub message: String,
    /// `nimbus validate`'s diagnostics of a refused bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<String>,
}

fn format_one() -> u32 {
    1
}

fn full_weight() -> u32 {
    100
}
