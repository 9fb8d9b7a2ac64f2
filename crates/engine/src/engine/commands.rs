//! People's commands: starting a run, answering gates and manual steps, the commander's
//! decisions, roles, command, notes and cancelling. Each is a transition computed from a fresh
//! snapshot and retried when the run moved on under it.

//!
//! One file per family: `start` (a run created), `answers` (gates and manual steps), `decisions`
//! (the commander's answer to a run needing attention, cancelling) and `roles` (role holders,
//! command, notes). Here: how each command is committed ([`Engine::act`]) and what they share.

mod answers;
mod decisions;
mod roles;
mod start;

pub use start::StartRun;
pub(super) use start::lock_key;

use uuid::Uuid;

use crate::policy;
use crate::run::*;
use crate::runbook::Runbook;
use crate::secrets::Secrets;
use crate::store::StoreError;

use super::{Engine, EngineError};

impl Engine {
    /// Refuses anyone but an existing, enabled user as a role holder or commander, so that a
    /// typo can never be handed a run. The local operator at a terminal may name themselves.
    pub(in crate::engine) async fn check_person(
        &self,
        actor: &Actor,
        person: &Actor,
    ) -> Result<(), EngineError> {
        match policy::account_needed(actor, person)? {
            Some(name) if !self.store.enabled_user(name).await? => {
                Err(EngineError::NoSuchPerson(name.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// Applies a change people asked for, computed from a fresh snapshot each time the run
    /// moved on under it. `change` returns the transition to commit (if any) and the answer.
    pub(in crate::engine) async fn act<T>(
        &self,
        run_id: Uuid,
        change: impl Fn(
            &Runbook,
            &RunSnapshot,
            Timestamp,
        ) -> (Option<Transition>, Result<T, EngineError>),
    ) -> Result<T, EngineError> {
        self.act_then(run_id, Then::AnyDriver, change).await
    }

    /// [`Engine::act`], saying who drives the run on when the change lets it go on.
    async fn act_then<T>(
        &self,
        run_id: Uuid,
        then: Then,
        change: impl Fn(
            &Runbook,
            &RunSnapshot,
            Timestamp,
        ) -> (Option<Transition>, Result<T, EngineError>),
    ) -> Result<T, EngineError> {
        for _ in 0..20 {
            let (snapshot, runbook) = self.snapshot(run_id).await?;
            let (transition, answer) = change(&runbook, &snapshot, self.now());
            let Some(mut transition) = transition else { return answer };
            // Only a run that waited (and so held no lease) is taken: a run already running
            // is another driver's, whose lease stays its own.
            if then == Then::Here
                && snapshot.run.status != RunStatus::Running
                && let Some(change) = &mut transition.run
                && change.status == RunStatus::Running
            {
                change.lease = LeaseChange::Take(self.lease_here());
            }
            transition.make_storable();
            match self.store.commit(run_id, transition).await {
                Ok(()) => return answer,
                Err(StoreError::Conflict) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(EngineError::Busy)
    }

    /// What a person wrote (a comment, a note), with the run's secrets masked: someone who
    /// pastes a credential into a note must not write it into the append-only audit log.
    /// Pages also show a run's parameters through it, so a credential typed into one is not
    /// shown back.
    pub fn people_text(&self, runbook: &Runbook, text: &str) -> String {
        Secrets::available_for(runbook, &self.config.secrets).mask(text)
    }
}

/// Who drives a run on once a person's command lets it go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Whichever node takes it: a `steady serve` polling for work, or `steady resume`.
    AnyDriver,
    /// This node, which drives it next (a terminal answering its own question, `steady take`):
    /// the command takes this node's lease in the same commit, so that no server polling the
    /// same database drives the run first, with the server's environment and secrets. Only a
    /// run that was not running is taken: a running one's lease stays its driver's.
    Here,
}
