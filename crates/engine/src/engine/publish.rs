//! Publishing runbooks: a new version when the content changed, and the server's folder read
//! without ever turning an older file back into the latest version.

use std::sync::Arc;

use crate::audit::sha256_hex;
use crate::run::*;
use crate::runbook::{self, Runbook};
use crate::store::Published;
use crate::testing::{self, CaseReport};

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

/// The tests a new version is published with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionTests<'a> {
    /// This test file: every case must pass.
    With(&'a str),
    /// The latest version's tests, run against the new source: what publishing without naming
    /// tests does, so that leaving a test file out never drops a runbook's tests unnoticed.
    Kept,
    /// None: the version is published without tests, dropping the latest version's on
    /// purpose.
    Without,
}

impl Engine {
    /// Stores a runbook's source as a new version when its content changed, with the latest
    /// version's tests, which must pass. The source must validate; warnings do not stop it.
    pub async fn publish(&self, source: &str, actor: &Actor) -> Result<Published, EngineError> {
        self.publish_with_tests(source, VersionTests::Kept, actor, None).await
    }

    /// [`Engine::publish`], keeping the author's message about what changed with the version.
    pub async fn publish_with_message(
        &self,
        source: &str,
        actor: &Actor,
        message: Option<&str>,
    ) -> Result<Published, EngineError> {
        self.publish_with_tests(source, VersionTests::Kept, actor, message).await
    }

    /// [`Engine::publish_with_message`] with the runbook's test file (`NAME.test.yaml`): every
    /// case must pass against this source before the version is stored, with the tests.
    /// A new version is stored when the source or the tests changed.
    ///
    /// Errors: `InvalidRunbook`, `InvalidTests` (with their line and column), `TestsFailed`
    /// (each failing case with its first difference).
    pub async fn publish_with_tests(
        &self,
        source: &str,
        tests: VersionTests<'_>,
        actor: &Actor,
        message: Option<&str>,
    ) -> Result<Published, EngineError> {
        let parsed = runbook::parse(source);
        let Some(runbook) = parsed.runbook else {
            return Err(EngineError::InvalidRunbook(parsed.diagnostics));
        };
        let tests = self.tests_to_publish(&runbook.name, tests).await?;
        if let Some(tests) = &tests {
            self.refuse_real_secrets(tests)?;
            run_tests(source, &runbook, tests).await?;
        }
        let store = &self.store;
        let published = store
            .publish_with_message(
                &runbook.name,
                source,
                actor,
                self.now(),
                message,
                tests.as_deref(),
            )
            .await?;
        // The version holds this very text, parsed already: a run started on it right away
        // (`steady run`) does not parse it again.
        let (Published::New(version) | Published::Unchanged(version)) = &published;
        if version.sha256 == sha256_hex(source.as_bytes()) {
            self.remember(version.version, Arc::new(runbook));
        }
        Ok(published)
    }

    /// The text of the tests to publish `name` with: the latest version's when they are kept.
    async fn tests_to_publish(
        &self,
        name: &str,
        tests: VersionTests<'_>,
    ) -> Result<Option<String>, EngineError> {
        Ok(match tests {
            VersionTests::With(tests) => Some(tests.to_owned()),
            VersionTests::Without => None,
            VersionTests::Kept => {
                self.store.runbook_version(name, None).await?.and_then(|latest| latest.tests)
            }
        })
    }

    /// A test file is stored and shown with its version: one that holds the real value of a
    /// secret this process has (pasted in by mistake) is refused, naming the secret, never
    /// showing the value.
    fn refuse_real_secrets(&self, tests: &str) -> Result<(), EngineError> {
        for (name, value) in &self.config.secrets {
            if value.len() < 4 {
                continue;
            }
            if let Some(at) = tests.find(value.as_str()) {
                let line = tests[..at].matches('\n').count() + 1;
                let column = at - tests[..at].rfind('\n').map_or(0, |newline| newline + 1) + 1;
                return Err(EngineError::InvalidTests(vec![crate::Diagnostic::error(
                    crate::Position { line, column },
                    format!(
                        "this is the real value of secret `{name}`: a test file is stored and \
                         shown with its version, so give a stand-in value instead"
                    ),
                )]));
            }
        }
        Ok(())
    }

    /// Publishes a runbook file from the server's folder (with the test file beside it, which
    /// must pass) unless its content is already one of the runbook's stored versions: a
    /// restart never turns an older file back into the latest version over an author's newer
    /// one.
    pub async fn publish_from_folder(
        &self,
        source: &str,
        tests: Option<&str>,
        actor: &Actor,
    ) -> Result<FolderFile, EngineError> {
        let parsed = runbook::parse(source);
        let Some(runbook) = parsed.runbook else {
            return Err(EngineError::InvalidRunbook(parsed.diagnostics));
        };
        let sha256 = sha256_hex(source.as_bytes());
        let versions = self.store.runbook_versions(&runbook.name).await?;
        let latest = versions.last();
        if let Some(latest) = latest.filter(|latest| latest.sha256 == sha256) {
            // Without a test file beside it, the stored tests are kept: nothing changed.
            if tests.is_none() || latest.tests.as_deref() == tests {
                return Ok(FolderFile::Latest(latest.clone()));
            }
        } else if let (Some(stored), Some(latest)) =
            (versions.iter().find(|version| version.sha256 == sha256), latest)
        {
            return Ok(FolderFile::Behind {
                name: runbook.name,
                file: stored.version,
                latest: latest.version,
            });
        }
        let tests = match tests {
            Some(tests) => Some(tests.to_owned()),
            None => self.tests_to_publish(&runbook.name, VersionTests::Kept).await?,
        };
        if let Some(tests) = &tests {
            self.refuse_real_secrets(tests)?;
            run_tests(source, &runbook, tests).await?;
        }
        let tests = tests.as_deref();
        let now = self.now();
        Ok(
            match self
                .store
                .publish_with_message(&runbook.name, source, actor, now, None, tests)
                .await?
            {
                Published::New(version) => FolderFile::Published(version),
                Published::Unchanged(version) => FolderFile::Latest(version),
            },
        )
    }
}

/// How long publishing lets a version's tests run in all: far more than a real test file
/// needs (a thousand cases of twenty steps take under two seconds).
pub const TEST_BUDGET: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs every case of the test file `tests` against `runbook` (parsed from `source`): `Ok`
/// with the reports when all passed. The cases run on a blocking thread, each file on a
/// runtime of its own whose clock is virtual.
///
/// Errors: `InvalidTests` when the file does not parse or does not fit the runbook,
/// `TestsFailed` when a case fails.
pub async fn run_tests(
    source: &str,
    runbook: &Runbook,
    tests: &str,
) -> Result<Vec<CaseReport>, EngineError> {
    let parsed = testing::parse(tests);
    let Some(file) = parsed.file else {
        return Err(EngineError::InvalidTests(parsed.diagnostics));
    };
    let problems = testing::check(runbook, &file);
    if !problems.is_empty() {
        return Err(EngineError::InvalidTests(problems));
    }
    let (source, runbook) = (source.to_owned(), runbook.clone());
    let reports = tokio::task::spawn_blocking(move || {
        testing::run_within(&source, &runbook, &file, Some(TEST_BUDGET))
    })
    .await
    .map_err(|error| {
        EngineError::TestsFailed(vec![CaseReport {
            name: "all cases".to_owned(),
            failure: Some(format!("the tests stopped: {error}")),
            took: std::time::Duration::ZERO,
        }])
    })?;
    if reports.iter().any(|case| !case.passed()) {
        return Err(EngineError::TestsFailed(
            reports.into_iter().filter(|c| !c.passed()).collect(),
        ));
    }
    Ok(reports)
}
