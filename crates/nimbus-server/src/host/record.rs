//! The record of one (service, stage) on a `nimbus server`: its numbered versions and
//! where its aliases point, kept in `stage.json` (`"version": 1`), and the moves deploy,
//! promote, rollback and `alias set` make on it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;

use super::wire::{AliasShare, StageView, Target, VersionView};

/// The alias a plain request reaches.
pub(crate) const LIVE: &str = "live";

/// Versions and aliases of one (service, stage).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct StageRecord {
    /// Every version deployed, oldest first: number and time (Unix seconds).
    pub(crate) versions: Vec<(u64, u64)>,
    /// Each alias's targets: version and weight. The first target is the stable one; a
    /// second one is a canary.
    pub(crate) aliases: BTreeMap<String, Vec<(u64, u32)>>,
    /// The versions `live` pointed at fully, oldest first, so rollback can go back.
    pub(crate) live_history: Vec<u64>,
    /// The region each version was deployed with (`nimbus deploy --region`); a version
    /// without one resolves `provider.region` as the manifest gives it.
    pub(crate) regions: BTreeMap<u64, String>,
}

impl StageRecord {
    pub(crate) fn read(path: &Path) -> anyhow::Result<StageRecord> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let view: StageView =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(StageRecord::from_view(view))
    }

    pub(crate) fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.view())?;
        super::write_atomic(path, text.as_bytes())
    }

    /// The record as the admin API and `stage.json` show it.
    pub(crate) fn view(&self) -> StageView {
        let versions = self
            .versions
            .iter()
            .map(|&(number, created)| {
                let aliases = self
                    .aliases
                    .iter()
                    .flat_map(|(name, targets)| {
                        targets.iter().filter(move |(v, _)| *v == number).map(
                            move |&(_, weight)| AliasShare {
                                alias: name.clone(),
                                weight,
                            },
                        )
                    })
                    .collect();
                VersionView {
                    version: number,
                    created,
                    aliases,
                    region: self.regions.get(&number).cloned(),
                }
            })
            .collect();
        let aliases = self
            .aliases
            .iter()
            .map(|(name, targets)| {
                let targets = targets
                    .iter()
                    .map(|&(version, weight)| Target { version, weight })
                    .collect();
                (name.clone(), targets)
            })
            .collect();
        StageView {
            format: 1,
            versions,
            aliases,
            live_history: self.live_history.clone(),
        }
    }

    pub(crate) fn from_view(view: StageView) -> StageRecord {
        StageRecord {
            versions: view
                .versions
                .iter()
                .map(|v| (v.version, v.created))
                .collect(),
            regions: view
                .versions
                .iter()
                .filter_map(|v| Some((v.version, v.region.clone()?)))
                .collect(),
            aliases: view
                .aliases
                .into_iter()
                .map(|(name, targets)| {
                    let targets = targets.iter().map(|t| (t.version, t.weight)).collect();
                    (name, targets)
                })
                .collect(),
            live_history: view.live_history,
        }
    }

    /// The number the next version gets.
    pub(crate) fn next_version(&self) -> u64 {
        self.versions.iter().map(|(n, _)| *n).max().unwrap_or(0) + 1
    }

    /// Every version some alias points at.
    pub(crate) fn referenced(&self) -> Vec<u64> {
        let mut referenced: Vec<u64> = self.aliases.values().flatten().map(|(v, _)| *v).collect();
        referenced.sort_unstable();
        referenced.dedup();
        referenced
    }

    /// Adds version `number`; `live` points at it fully, or, with a canary percentage
    /// and a version already live, sends it that share beside the stable version.
    pub(crate) fn add(&mut self, number: u64, created: u64, canary: Option<u32>) {
        self.versions.push((number, created));
        let stable = self.aliases.get(LIVE).and_then(|t| t.first()).map(|t| t.0);
        match (canary, stable) {
            (Some(percent), Some(stable)) if percent < 100 => {
                self.aliases.insert(
                    LIVE.to_owned(),
                    vec![(stable, 100 - percent), (number, percent)],
                );
            }
            _ => self.point_live(number),
        }
    }

    /// Moves `live` fully to its canary.
    pub(crate) fn promote(&mut self) -> anyhow::Result<u64> {
        let Some(&[_, (canary, _)]) = self.aliases.get(LIVE).map(Vec::as_slice) else {
            anyhow::bail!("live has no canary to promote");
        };
        self.point_live(canary);
        Ok(canary)
    }

    /// Drops the canary of `live`, or points it back at the version it pointed at
    /// before. Returns the version `live` points at now.
    pub(crate) fn rollback(&mut self) -> anyhow::Result<u64> {
        match self.aliases.get(LIVE).map(Vec::as_slice) {
            Some(&[(stable, _), _]) => {
                self.aliases.insert(LIVE.to_owned(), vec![(stable, 100)]);
                Ok(stable)
            }
            Some(&[(current, _)]) => {
                let Some(idx) = self.live_history.iter().rposition(|v| *v == current) else {
                    anyhow::bail!("no earlier version to roll back to");
                };
                let Some(previous) = idx.checked_sub(1).map(|i| self.live_history[i]) else {
                    anyhow::bail!(
                        "version {current} is the first live version: nothing to roll back to"
                    );
                };
                self.live_history.truncate(idx);
                self.aliases.insert(LIVE.to_owned(), vec![(previous, 100)]);
                Ok(previous)
            }
            _ => anyhow::bail!("nothing is live yet"),
        }
    }

    /// Points `alias` at `targets` (version, weight), which must be deployed versions.
    pub(crate) fn set_alias(
        &mut self,
        alias: &str,
        targets: Vec<(u64, u32)>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(
            !targets.is_empty() && targets.len() <= 2,
            "an alias points at one version or two with weights"
        );
        for (version, _) in &targets {
            anyhow::ensure!(
                self.versions.iter().any(|(n, _)| n == version),
                "there is no version {version}"
            );
        }
        anyhow::ensure!(
            targets.iter().map(|(_, w)| *w).sum::<u32>() > 0,
            "the weights add up to 0"
        );
        if alias == LIVE && targets.len() == 1 {
            self.point_live(targets[0].0);
        } else {
            self.aliases.insert(alias.to_owned(), targets);
        }
        Ok(())
    }

    fn point_live(&mut self, version: u64) {
        self.aliases.insert(LIVE.to_owned(), vec![(version, 100)]);
        if self.live_history.last() != Some(&version) {
            self.live_history.push(version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(record: &StageRecord) -> Vec<(u64, u32)> {
        record.aliases.get(LIVE).cloned().unwrap_or_default()
    }

    #[test]
    fn deploys_point_live_at_the_newest_and_rollback_goes_back_one() {
        let mut record = StageRecord::default();
        record.add(1, 10, None);
        record.add(2, 20, None);
        assert_eq!(live(&record), [(2, 100)]);
        assert_eq!(record.rollback().ok(), Some(1));
        assert_eq!(live(&record), [(1, 100)]);
        assert!(record.rollback().is_err());
        record.add(3, 30, None);
        assert_eq!(record.rollback().ok(), Some(1));
        assert_eq!(record.referenced(), [1]);
    }

    #[test]
    fn a_canary_shares_live_until_promoted_or_dropped() {
        let mut record = StageRecord::default();
        record.add(1, 10, Some(10));
        assert_eq!(live(&record), [(1, 100)], "nothing to canary against");
        record.add(2, 20, Some(10));
        assert_eq!(live(&record), [(1, 90), (2, 10)]);
        assert_eq!(record.rollback().ok(), Some(1));
        assert_eq!(live(&record), [(1, 100)]);
        record.add(3, 30, Some(25));
        assert_eq!(record.promote().ok(), Some(3));
        assert_eq!(live(&record), [(3, 100)]);
        assert!(record.promote().is_err());
        assert_eq!(record.rollback().ok(), Some(1));
    }

    #[test]
    fn the_record_survives_a_round_trip() {
        let mut record = StageRecord::default();
        record.add(1, 10, None);
        record.add(2, 20, Some(10));
        record
            .set_alias("staging", vec![(1, 100)])
            .expect("alias set");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("stage.json");
        record.write(&path).expect("write");
        assert_eq!(StageRecord::read(&path).expect("read"), record);
        assert!(record.set_alias("x", vec![(9, 100)]).is_err());
    }
}
