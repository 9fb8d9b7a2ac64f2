//! Publishing runbooks: a new version when the content changed, and the server's folder read
//! without ever turning an older file back into the latest version.

use crate::audit::sha256_hex;
use crate::run::*;
use crate::runbook;
use crate::store::Published;

use super::{Engine, EngineError};

/// What publishing a file of the server's runbooks folder did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderFile {
    /// Its content was new: stored as this version.
    Published(RunbookVersion),
    /// It is the latest version already.
    Latest(RunbookVersion),
    /// It is an older stored version than the latest: nothing was stored.
    Behind { name: String, file: u32, latest: u32 },
}

impl Engine {
    /// Stores a runbook's source as a new version when its content changed. The source must
    /// validate; warnings do not stop it.
    pub async fn publish(&self, source: &str, actor: &Actor) -> Result<Published, EngineError> {
        self.publish_with_message(source, actor, None).await
    }

    /// [`Engine::publish`], keeping the author's message about what changed with the version.
    pub async fn publish_with_message(
        &self,
        source: &str,
        actor: &Actor,
        message: Option<&str>,
    ) -> Result<Published, EngineError> {
        let parsed = runbook::parse(source);
        let Some(runbook) = parsed.runbook else {
            return Err(EngineError::InvalidRunbook(parsed.diagnostics));
        };
        let store = &self.store;
        Ok(store.publish_with_message(&runbook.name, source, actor, self.now(), message).await?)
    }

    /// Publishes a runbook file from the server's folder unless its content is already one of
    /// the runbook's stored versions: a restart never turns an older file back into the latest
    /// version over an author's newer one.
    pub async fn publish_from_folder(
        &self,
        source: &str,
        actor: &Actor,
    ) -> Result<FolderFile, EngineError> {
        let parsed = runbook::parse(source);
        let Some(runbook) = parsed.runbook else {
            return Err(EngineError::InvalidRunbook(parsed.diagnostics));
        };
        let sha256 = sha256_hex(source.as_bytes());
        let versions = self.store.runbook_versions(&runbook.name).await?;
        let (Some(stored), Some(latest)) =
            (versions.iter().find(|version| version.sha256 == sha256), versions.last())
        else {
            return Ok(
                match self.store.publish(&runbook.name, source, actor, self.now()).await? {
                    Published::New(version) => FolderFile::Published(version),
                    Published::Unchanged(version) => FolderFile::Latest(version),
                },
            );
        };
        if stored.version == latest.version {
            Ok(FolderFile::Latest(latest.clone()))
        } else {
            Ok(FolderFile::Behind {
                name: runbook.name,
                file: stored.version,
                latest: latest.version,
            })
        }
    }
}
