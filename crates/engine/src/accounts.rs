//! People and how they prove who they are: user accounts with global roles, server-side
//! sessions and API tokens. The records and the `Accounts` trait a store implements;
//! [`credentials`] hashes passwords and secrets; [`AccountService`] is the one way to sign in,
//! create accounts and issue tokens. HTTP (cookies, headers) lives in `steady-web`.

pub mod credentials;
mod service;

pub use credentials::{csrf_token, hash_password, new_secret, secret_hash, valid_user_name};
pub use service::{AccountError, AccountService, SignedIn};

use async_trait::async_trait;
use uuid::Uuid;

use crate::run::{Actor, Timestamp};
use crate::store::StoreError;

crate::run::named_enum! {
    /// What a person may do anywhere, whatever run roles they hold.
    pub enum GlobalRole {
        /// Users, tokens, settings.
        Admin => "admin",
        /// Publishes runbooks.
        Author => "author",
        /// Starts runs, and acts where a run's roles make them eligible.
        Responder => "responder",
        /// Reads everything and acts on nothing.
        Auditor => "auditor",
        /// A service account of an alerting system: delivers alerts to `/api/v1/hooks/*` and
        /// may do nothing else. It is held alone, by an account that never signs in.
        Trigger => "trigger",
    }
}

/// Why a set of global roles cannot be held together, if it cannot: `trigger` is held alone,
/// so that a token an alerting system keeps can never do more than deliver alerts.
pub fn roles_refused(roles: &[GlobalRole]) -> Option<String> {
    (roles.contains(&GlobalRole::Trigger) && roles.len() > 1).then(|| {
        "the `trigger` role is held alone, by an alerting system's service account: \
         create a separate account for it"
            .to_owned()
    })
}

/// Why disabling `name` would lock people out, if it would: nobody disables their own account,
/// and the last enabled admin stays enabled. `enabled` holds every enabled user. Stores ask
/// this inside the transaction that disables, so two admins cannot disable each other at once.
pub fn disabling_locks_out(name: &str, by: &Actor, enabled: &[User]) -> Option<String> {
    if *by == Actor::user(name) {
        return Some("you cannot disable your own account: ask another admin".to_owned());
    }
    let admins: Vec<&User> = enabled.iter().filter(|user| user.has(GlobalRole::Admin)).collect();
    if admins.len() == 1 && admins[0].name == name {
        return Some(format!(
            "`{name}` is the last enabled admin: enable or create another admin first"
        ));
    }
    None
}

/// Why giving `name` these roles would lock people out, if it would: nobody takes away their
/// own admin role, and the last enabled admin stays an admin. `enabled` holds every enabled
/// user. Asked inside the transaction that changes the roles, like [`disabling_locks_out`].
pub fn role_change_locks_out(
    name: &str,
    roles: &[GlobalRole],
    by: &Actor,
    enabled: &[User],
) -> Option<String> {
    if roles.contains(&GlobalRole::Admin) {
        return None;
    }
    if *by == Actor::user(name) {
        return Some("you cannot take away your own admin role: ask another admin".to_owned());
    }
    let admins: Vec<&User> = enabled.iter().filter(|user| user.has(GlobalRole::Admin)).collect();
    if admins.len() == 1 && admins[0].name == name {
        return Some(format!("`{name}` is the last enabled admin: make another admin first"));
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// `[a-z][a-z0-9._-]*`: the account, `user:<name>` as an actor.
    pub name: String,
    pub roles: Vec<GlobalRole>,
    /// Argon2id PHC string; `None` for an account that only uses tokens.
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub created_at: Timestamp,
}

impl User {
    pub fn actor(&self) -> Actor {
        Actor::user(&self.name)
    }

    pub fn has(&self, role: GlobalRole) -> bool {
        self.roles.contains(&role)
    }
}

/// A signed-in browser. Only a hash of the session id is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id_hash: String,
    pub user: String,
    /// The SHA-256 of the CSRF token sent back with every state-changing request made with
    /// this session; the token itself is derived from the session id and never stored.
    pub csrf_hash: String,
    pub created_at: Timestamp,
    pub last_seen: Timestamp,
}

/// A bearer token for tools. Only a hash of the secret is stored; it is shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: Uuid,
    /// What the token is for, as its owner named it.
    pub label: String,
    pub user: String,
    pub hash: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[async_trait]
pub trait Accounts: Send + Sync + std::fmt::Debug {
    /// Creates a user, with its audit event; `Exists` when the name is taken.
    async fn create_user(&self, user: &User, by: &Actor) -> Result<(), StoreError>;
    async fn user(&self, name: &str) -> Result<Option<User>, StoreError>;
    async fn users(&self) -> Result<Vec<User>, StoreError>;
    /// Disables or enables a user, with its audit event; false when there is no such user.
    /// Disabling revokes every token of the user and ends every session, in the same
    /// transaction; enabling restores none of them. `LockOut` when [`disabling_locks_out`].
    async fn set_disabled(
        &self,
        name: &str,
        disabled: bool,
        by: &Actor,
    ) -> Result<bool, StoreError>;
    async fn count_users(&self) -> Result<u64, StoreError>;
    /// Gives a user exactly these global roles, with its audit event; false when there is no
    /// such user. `LockOut` when [`role_change_locks_out`].
    async fn set_roles(
        &self,
        name: &str,
        roles: &[GlobalRole],
        by: &Actor,
    ) -> Result<bool, StoreError>;
    /// Replaces a user's password hash and ends their sessions, with its audit event; false
    /// when there is no such user. Their tokens stay: they were not made with the password.
    async fn set_password_hash(
        &self,
        name: &str,
        hash: &str,
        by: &Actor,
    ) -> Result<bool, StoreError>;

    /// Opens a session at sign-in, with its audit event (`login.succeeded`, naming the address
    /// the person signed in from).
    async fn create_session(&self, session: &Session, address: &str) -> Result<(), StoreError>;
    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError>;
    async fn touch_session(&self, id_hash: &str, at: Timestamp) -> Result<(), StoreError>;
    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Ends every session of a user: after a password change or when the account is disabled.
    async fn delete_sessions_of(&self, user: &str) -> Result<(), StoreError>;

    /// Stores a token, with its audit event.
    async fn create_token(&self, token: &ApiToken, by: &Actor) -> Result<(), StoreError>;
    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError>;
    async fn tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, StoreError>;
    /// Revokes a token, with its audit event; false when there is no such live token.
    async fn revoke_token(&self, id: Uuid, by: &Actor) -> Result<bool, StoreError>;

    /// Records a failed sign-in in the audit log and the throttle's count.
    async fn record_login_failure(
        &self,
        name: &str,
        address: &str,
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// Failed sign-ins since `since`: for this account from this address, and from this
    /// address for any account.
    async fn login_failures(
        &self,
        name: &str,
        address: &str,
        since: Timestamp,
    ) -> Result<(u32, u32), StoreError>;
}
