//! Who holds a run: its role holders, its commander, and the notes its participants add.

use uuid::Uuid;

use crate::audit::{AuditData, CommanderTransferred, NewEvent, NoteAdded, RoleHolder, new_id};
use crate::policy;
use crate::run::*;

use crate::engine::{Engine, EngineError, transition_from};

impl Engine {
    /// Gives a run role to a person, or takes it away. Only the commander may.
    pub async fn assign(
        &self,
        run_id: Uuid,
        actor: &Actor,
        role: &str,
        person: &Actor,
        change: RoleChange,
    ) -> Result<(), EngineError> {
        let assign = change == RoleChange::Assign;
        // Taking a role away from anyone is allowed: it cleans up after a departed person.
        if assign {
            self.check_person(actor, person).await?;
        }
        self.act(run_id, |runbook, snapshot, _| {
            if let Err(refusal) = policy::may_command(&snapshot.run, actor) {
                return (None, Err(refusal.into()));
            }
            if runbook.role(role).is_none() {
                return (None, Err(EngineError::NoSuchRole(role.to_owned())));
            }
            if snapshot.holds(person, role) == assign {
                return (None, Ok(()));
            }
            let mut transition = transition_from(snapshot);
            let assignment = Assignment { role: role.to_owned(), person: person.clone() };
            let holder = RoleHolder { role: role.to_owned(), person: person.clone() };
            let data = match change {
                RoleChange::Assign => AuditData::RoleAssigned(holder),
                RoleChange::Unassign => AuditData::RoleUnassigned(holder),
            };
            transition.events.push(NewEvent::typed(actor, Some(run_id), data));
            match change {
                RoleChange::Assign => transition.assign.push(assignment),
                RoleChange::Unassign => transition.unassign.push(assignment),
            }
            (Some(transition), Ok(()))
        })
        .await
    }

    /// Hands the run to another commander, who must be an existing, enabled user.
    pub async fn transfer_command(
        &self,
        run_id: Uuid,
        actor: &Actor,
        to: &Actor,
    ) -> Result<(), EngineError> {
        self.check_person(actor, to).await?;
        self.change_commander(run_id, actor, to, Authority::Commander).await
    }

    /// An admin takes command of an active run, whoever commands it, so that no run is ever
    /// left without a commander. The caller checked that `admin` holds the global role; it is
    /// audited as a transfer made by the admin.
    pub async fn take_command(&self, run_id: Uuid, admin: &Actor) -> Result<(), EngineError> {
        self.check_person(admin, admin).await?;
        self.change_commander(run_id, admin, admin, Authority::Admin).await
    }

    async fn change_commander(
        &self,
        run_id: Uuid,
        actor: &Actor,
        to: &Actor,
        authority: Authority,
    ) -> Result<(), EngineError> {
        self.act(run_id, |_, snapshot, _| {
            if snapshot.run.status == RunStatus::Proposed {
                return (None, Err(EngineError::RunNotActive { status: snapshot.run.status }));
            }
            match authority {
                Authority::Commander => {
                    if let Err(refusal) = policy::may_command(&snapshot.run, actor) {
                        return (None, Err(refusal.into()));
                    }
                }
                Authority::Admin if !snapshot.run.status.is_active() => {
                    return (None, Err(EngineError::RunNotActive { status: snapshot.run.status }));
                }
                Authority::Admin if snapshot.run.commander == *to => return (None, Ok(())),
                Authority::Admin => {}
            }
            let mut transition = transition_from(snapshot);
            let mut change = RunChange::from(&snapshot.run);
            change.commander = to.clone();
            transition.run = Some(change);
            let transferred = CommanderTransferred {
                from: snapshot.run.commander.clone(),
                to: to.clone(),
                taken_by_admin: matches!(authority, Authority::Admin),
            };
            transition.events.push(NewEvent::typed(
                actor,
                Some(run_id),
                AuditData::CommanderTransferred(transferred),
            ));
            (Some(transition), Ok(()))
        })
        .await
    }

    /// Adds a participant's note to the run's timeline.
    pub async fn add_note(
        &self,
        run_id: Uuid,
        actor: &Actor,
        step_id: Option<&str>,
        text: &str,
    ) -> Result<(), EngineError> {
        self.act(run_id, |runbook, snapshot, now| {
            let text = self.people_text(runbook, text);
            let text = text.as_str();
            if let Err(refusal) = policy::may_note(snapshot, actor) {
                return (None, Err(refusal.into()));
            }
            if let Some(step_id) = step_id
                && runbook.find_step(step_id).is_none()
            {
                return (None, Err(EngineError::NoSuchStep(step_id.to_owned())));
            }
            let mut transition = transition_from(snapshot);
            let note = Note {
                id: new_id(),
                step_id: step_id.map(str::to_owned),
                author: actor.clone(),
                text: text.to_owned(),
                at: now,
            };
            let added = NoteAdded { text: text.to_owned() };
            let mut event = NewEvent::typed(actor, Some(run_id), AuditData::NoteAdded(added));
            event.step_id = note.step_id.clone();
            transition.events.push(event);
            transition.notes.push(note);
            (Some(transition), Ok(()))
        })
        .await
    }
}

/// By what right someone changes a run's commander.
#[derive(Debug, Clone, Copy)]
enum Authority {
    /// The commander (or the local operator) hands command over.
    Commander,
    /// An admin takes command of a run, whoever commands it.
    Admin,
}
