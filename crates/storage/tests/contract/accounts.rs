//! The accounts contract: users, sessions, tokens and the sign-in throttle, each change with
//! its audit event, the same on every backend.

use chrono::Duration;
use steady_engine::accounts::{ApiToken, GlobalRole, Session, User};
use steady_engine::audit::AuditEvent;
use steady_engine::engine::now;
use steady_engine::run::Actor;
use steady_engine::store::{AuditFilter, StoreError};
use steady_storage::Database;
use uuid::Uuid;

fn user(name: &str, role: GlobalRole) -> User {
    User {
        name: name.to_owned(),
        roles: vec![role],
        password_hash: Some("$argon2id$v=19$not-a-real-hash".to_owned()),
        disabled: false,
        created_at: now(),
    }
}

fn session(id_hash: &str, user: &str) -> Session {
    Session {
        id_hash: id_hash.to_owned(),
        user: user.to_owned(),
        csrf_hash: format!("csrf-of-{id_hash}"),
        created_at: now(),
        last_seen: now(),
    }
}

fn token(label: &str, user: &str) -> ApiToken {
    ApiToken {
        id: Uuid::now_v7(),
        label: label.to_owned(),
        user: user.to_owned(),
        hash: format!("hash-of-{label}"),
        created_at: now(),
        revoked_at: None,
    }
}

fn admin() -> Actor {
    Actor::user("ada")
}

/// The audit events of one action, oldest first.
async fn events(database: &Database, action: &str) -> Vec<AuditEvent> {
    let filter = AuditFilter { action: Some(action.to_owned()), ..Default::default() };
    database.store.audit_events(&filter).await.unwrap()
}

/// The actions of the audit log, oldest first.
async fn actions(database: &Database) -> Vec<String> {
    let events = database.store.audit_events(&AuditFilter::default()).await.unwrap();
    events.iter().map(|event| event.action.as_str().to_owned()).collect()
}

pub(crate) async fn users_are_created_found_and_disabled(database: Database) {
    let accounts = &database.accounts;
    let ada = user("ada", GlobalRole::Admin);
    accounts.create_user(&ada, &Actor::local("setup")).await.unwrap();
    accounts.create_user(&user("bob", GlobalRole::Responder), &admin()).await.unwrap();
    let again = user("bob", GlobalRole::Auditor);
    assert!(
        matches!(accounts.create_user(&again, &admin()).await, Err(StoreError::Exists(name)) if name == "bob")
    );
    assert_eq!(accounts.user("ada").await.unwrap(), Some(ada));
    assert_eq!(accounts.user("nobody").await.unwrap(), None);
    let names: Vec<String> = accounts.users().await.unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["ada", "bob"]);
    assert_eq!(accounts.count_users().await.unwrap(), 2);
    assert!(database.store.enabled_user("bob").await.unwrap());
    assert!(!database.store.enabled_user("nobody").await.unwrap());

    assert!(!accounts.set_disabled("nobody", true, &admin()).await.unwrap(), "no such user");
    assert!(
        matches!(accounts.set_disabled("ada", true, &admin()).await, Err(StoreError::LockOut(_))),
        "nobody disables their own account"
    );
    assert!(
        matches!(
            accounts.set_disabled("ada", true, &Actor::user("bob")).await,
            Err(StoreError::LockOut(_))
        ),
        "the last enabled admin stays enabled"
    );
    assert!(accounts.set_disabled("bob", true, &admin()).await.unwrap());
    assert!(accounts.user("bob").await.unwrap().unwrap().disabled);
    assert!(!database.store.enabled_user("bob").await.unwrap());
    assert!(accounts.set_disabled("bob", false, &admin()).await.unwrap());
    assert!(database.store.enabled_user("bob").await.unwrap());
    assert_eq!(
        actions(&database).await,
        ["user.created", "user.created", "user.changed", "user.changed"],
        "refused changes leave no event"
    );
}

pub(crate) async fn sessions_open_are_seen_and_end(database: Database) {
    let accounts = &database.accounts;
    accounts.create_user(&user("ada", GlobalRole::Admin), &Actor::local("setup")).await.unwrap();
    accounts.create_user(&user("bob", GlobalRole::Responder), &admin()).await.unwrap();
    let first = session("s1", "bob");
    accounts.create_session(&first, "10.0.0.7").await.unwrap();
    assert_eq!(accounts.session("s1").await.unwrap(), Some(first.clone()));
    assert_eq!(accounts.session("s9").await.unwrap(), None);
    let later = now() + Duration::minutes(5);
    accounts.touch_session("s1", later).await.unwrap();
    assert_eq!(accounts.session("s1").await.unwrap().unwrap().last_seen, later);
    accounts.delete_session("s1").await.unwrap();
    assert_eq!(accounts.session("s1").await.unwrap(), None);

    accounts.create_session(&session("s2", "bob"), "10.0.0.7").await.unwrap();
    accounts.create_session(&session("s3", "bob"), "10.0.0.8").await.unwrap();
    accounts.create_session(&session("s4", "ada"), "10.0.0.9").await.unwrap();
    accounts.delete_sessions_of("bob").await.unwrap();
    assert_eq!(accounts.session("s2").await.unwrap(), None);
    assert_eq!(accounts.session("s3").await.unwrap(), None);
    assert!(accounts.session("s4").await.unwrap().is_some(), "another user's session stays");

    accounts.create_session(&session("s5", "bob"), "10.0.0.7").await.unwrap();
    accounts.set_disabled("bob", true, &admin()).await.unwrap();
    assert_eq!(accounts.session("s5").await.unwrap(), None, "disabling ends every session");
    let logins = events(&database, "login.succeeded").await;
    assert_eq!(logins.len(), 5);
    assert_eq!(
        (logins[0].data["user"].as_str(), logins[0].data["address"].as_str()),
        (Some("bob"), Some("10.0.0.7"))
    );
    let disabled = events(&database, "user.changed").await;
    assert_eq!(disabled[0].data["sessions_ended"], 1);
}

pub(crate) async fn tokens_are_stored_found_and_revoked(database: Database) {
    let accounts = &database.accounts;
    accounts.create_user(&user("ada", GlobalRole::Admin), &Actor::local("setup")).await.unwrap();
    accounts.create_user(&user("bob", GlobalRole::Responder), &admin()).await.unwrap();
    let deploy = token("deploy", "bob");
    accounts.create_token(&deploy, &admin()).await.unwrap();
    accounts.create_token(&token("backup", "ada"), &admin()).await.unwrap();
    accounts.create_token(&token("ci", "bob"), &admin()).await.unwrap();
    assert_eq!(accounts.token_by_hash("hash-of-deploy").await.unwrap(), Some(deploy.clone()));
    assert_eq!(accounts.token_by_hash("hash-of-nothing").await.unwrap(), None);
    let labels = |tokens: Vec<ApiToken>| tokens.into_iter().map(|t| t.label).collect::<Vec<_>>();
    assert_eq!(labels(accounts.tokens(Some("bob")).await.unwrap()), ["deploy", "ci"]);
    assert_eq!(labels(accounts.tokens(None).await.unwrap()), ["deploy", "backup", "ci"]);

    assert!(accounts.revoke_token(deploy.id, &admin()).await.unwrap());
    assert!(!accounts.revoke_token(deploy.id, &admin()).await.unwrap(), "already revoked");
    assert!(!accounts.revoke_token(Uuid::now_v7(), &admin()).await.unwrap(), "no such token");
    let revoked = accounts.token_by_hash("hash-of-deploy").await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some());

    accounts.set_disabled("bob", true, &admin()).await.unwrap();
    let bobs = accounts.tokens(Some("bob")).await.unwrap();
    assert!(bobs.iter().all(|t| t.revoked_at.is_some()), "disabling revokes every token");
    assert!(accounts.tokens(Some("ada")).await.unwrap()[0].revoked_at.is_none());
    let changed = events(&database, "user.changed").await;
    assert_eq!(changed[0].data["tokens_revoked"], 1, "the one still live");
    let revocations = events(&database, "token.revoked").await;
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0].data["token"], deploy.id.to_string());
}

pub(crate) async fn failed_sign_ins_are_counted_and_audited(database: Database) {
    let accounts = &database.accounts;
    let start = now();
    for (name, address) in [("bob", "10.0.0.7"), ("bob", "10.0.0.7"), ("eve", "10.0.0.7")] {
        accounts.record_login_failure(name, address, now()).await.unwrap();
    }
    accounts.record_login_failure("bob", "10.0.0.8", now()).await.unwrap();
    assert_eq!(accounts.login_failures("bob", "10.0.0.7", start).await.unwrap(), (2, 3));
    assert_eq!(accounts.login_failures("bob", "10.0.0.8", start).await.unwrap(), (1, 1));
    assert_eq!(accounts.login_failures("ada", "10.0.0.9", start).await.unwrap(), (0, 0));
    let later = now() + Duration::seconds(1);
    assert_eq!(accounts.login_failures("bob", "10.0.0.7", later).await.unwrap(), (0, 0));
    assert_eq!(actions(&database).await, ["login.failed"; 4], "every failure is audited");
}
