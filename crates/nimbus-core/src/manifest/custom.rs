//! The plugin settings nimbus reads from `custom`: `custom.nimbus` and the parts of
//! serverless-offline's `custom.serverless-offline` that change what a request sees.

use crate::policy::StagePath;

use super::Cx;
use super::tree::Node;

impl Cx<'_> {
    /// Where REST routes answer: `custom.nimbus.stagePath` when set, else
    /// serverless-offline's `noPrependStageInUrl`, else both with and without the stage.
    pub(super) fn stage_path(&mut self, custom: Option<&Node>) -> StagePath {
        let Some(custom) = custom else {
            return StagePath::default();
        };
        let custom = self.read(custom, "custom");
        let mut stage_path = StagePath::default();
        if let Some(offline) = custom.get("serverless-offline") {
            let key = "custom.serverless-offline";
            let offline = self.read(&offline.value, key);
            if let Some(entry) = offline.get("noPrependStageInUrl") {
                let key = "custom.serverless-offline.noPrependStageInUrl";
                if self.boolean(&entry.value, key) == Some(true) {
                    stage_path = StagePath::Off;
                }
            }
        }
        if let Some(nimbus) = custom.get("nimbus") {
            let nimbus = self.read(&nimbus.value, "custom.nimbus");
            if let Some(entry) = nimbus.get("stagePath") {
                let key = "custom.nimbus.stagePath";
                let value = self.read(&entry.value, key);
                if let Some(text) = self.string(&value, key, "`optional`, `required` or `off`") {
                    match text.as_str() {
                        "optional" => stage_path = StagePath::Optional,
                        "required" => stage_path = StagePath::Required,
                        "off" => stage_path = StagePath::Off,
                        other => {
                            let message = format!(
                                "expected `optional` (REST routes answer at /{{stage}}/path and /path), `required` (only /{{stage}}/path) or `off` (only /path), got {other:?}"
                            );
                            self.error(value.pos, key, message);
                        }
                    }
                }
            }
        }
        stage_path
    }
}
