//! `AccountService`: the one way in for signing in, creating accounts and issuing API tokens,
//! shared by the API, the pages and the CLI. It checks names, roles and passwords, throttles
//! failed sign-ins, and hashes on the blocking pool so that argon2 never holds an async
//! worker. It knows neither HTTP nor SQL: cookies are the server's business, rows the store's.

use std::sync::Arc;

use super::credentials::{self, LoginTurns};
use super::{Accounts, ApiToken, GlobalRole, Session, User};
use crate::clock::{Clock, SystemClock};
use crate::run::Actor;
use crate::store::StoreError;

/// Failed sign-ins tolerated in the throttle's window for one account from one address (so
/// that nobody elsewhere can lock an account out).
const MAX_FAILURES_PER_ACCOUNT: u32 = 5;
/// Failed sign-ins tolerated in the window from one address, whatever the account.
const MAX_FAILURES_PER_ADDRESS: u32 = 20;
/// The throttle's window, in minutes.
const FAILURE_WINDOW_MINUTES: i64 = 15;

/// Why an account operation was refused. Messages are for people and say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A new account's name is not `[a-z][a-z0-9._-]*` of at most 64 characters.
    #[error("a user name starts with a-z and uses a-z, 0-9, `.`, `_` and `-`")]
    InvalidName,
    /// A role that is not one of the global roles.
    #[error("unknown role `{0}`: use admin, author, responder, auditor or trigger")]
    UnknownRole(String),
    /// Roles that cannot be held together (`trigger` with any other); the text says why.
    #[error("{0}")]
    RolesRefused(String),
    /// A new password the policy refuses; the text says why.
    #[error("{0}")]
    WeakPassword(String),
    /// Sign-in refused: no such account, a wrong password, or a disabled account. Which of
    /// them is deliberately not said.
    #[error("wrong name or password")]
    WrongPassword,
    /// An alerting system's `trigger` account: it delivers alerts with its token and never
    /// signs in.
    #[error("a `trigger` account only delivers alerts with its token: it cannot sign in")]
    ServiceAccount,
    /// Too many failed sign-ins for this account from this address, or from this address.
    #[error("too many failed sign-ins: wait a few minutes")]
    Throttled,
    /// The account named does not exist.
    #[error("no user `{0}`")]
    NoSuchUser(String),
    /// Argon2 could not hash a password, or the hashing task died.
    #[error("cannot hash the password: {0}")]
    Hashing(String),
    /// The store failed or refused (`Exists` when a name is taken).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A successful sign-in: the account and its new session's secrets, for the caller to hand to
/// the browser. Only their hashes were stored.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The account signed into, enabled.
    pub user: User,
    /// The new session's id: 64 hex digits, the value of the session cookie.
    pub session_id: String,
    /// The session's CSRF token (derived from its id by [`credentials::csrf_token`]).
    pub csrf_token: String,
}

/// Accounts as people use them, over a store's [`Accounts`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccountService {
    accounts: Arc<dyn Accounts>,
    /// Serialises sign-in attempts per name, so the throttle counts every failure.
    turns: Arc<LoginTurns>,
    /// When sessions begin and failures count from: the server's engine's clock.
    clock: Arc<dyn Clock>,
}

impl AccountService {
    /// The service over a store's accounts. Sign-in turns are per service: a server keeps one.
    pub fn new(accounts: Arc<dyn Accounts>) -> AccountService {
        AccountService::with_clock(accounts, Arc::new(SystemClock))
    }

    /// The service reading the time from `clock` (the engine's, so that sessions and runs
    /// keep one time).
    pub fn with_clock(accounts: Arc<dyn Accounts>, clock: Arc<dyn Clock>) -> AccountService {
        AccountService { accounts, turns: Arc::default(), clock }
    }

    /// Checks a name and password under the throttle and opens a new session for the account,
    /// recorded as coming from `address` (an IP address, or `unknown`).
    ///
    /// # Errors
    ///
    /// [`AccountError::WrongPassword`] for a name no account could have, an unknown name, a
    /// wrong password or a disabled account (each failure after the first is counted and
    /// audited); [`AccountError::Throttled`] when too many failed recently;
    /// [`AccountError::Store`] when the store fails.
    pub async fn sign_in(
        &self,
        name: &str,
        password: &str,
        address: &str,
    ) -> Result<SignedIn, AccountError> {
        // Only names an account could have are counted and audited: nothing else reaches the log.
        if !credentials::valid_user_name(name) {
            return Err(AccountError::WrongPassword);
        }
        let _turn = self.turns.turn(name).await;
        let since = self.clock.now() - chrono::Duration::minutes(FAILURE_WINDOW_MINUTES);
        let (by_account_here, by_address) =
            self.accounts.login_failures(name, address, since).await?;
        if by_account_here >= MAX_FAILURES_PER_ACCOUNT || by_address >= MAX_FAILURES_PER_ADDRESS {
            return Err(AccountError::Throttled);
        }
        let user = self.accounts.user(name).await?;
        // Spend the same time whether or not the name exists, so that timing does not tell.
        let hash = user.as_ref().and_then(|user| user.password_hash.clone());
        let exists = hash.is_some();
        let password = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || {
            let hash = hash.as_deref().unwrap_or_else(|| credentials::dummy_hash());
            credentials::verify_password(hash, &password)
        })
        .await
        .unwrap_or(false);
        let Some(user) = user.filter(|user| exists && verified && !user.disabled) else {
            self.accounts.record_login_failure(name, address, self.clock.now()).await?;
            return Err(AccountError::WrongPassword);
        };
        if user.has(GlobalRole::Trigger) {
            return Err(AccountError::ServiceAccount);
        }
        // Always a new session id at sign-in, so that no id planted before it is worth anything.
        let session_id = credentials::new_secret();
        let csrf_token = credentials::csrf_token(&session_id);
        let session = Session {
            id_hash: credentials::secret_hash(&session_id),
            user: user.name.clone(),
            csrf_hash: credentials::secret_hash(&csrf_token),
            created_at: self.clock.now(),
            last_seen: self.clock.now(),
        };
        self.accounts.create_session(&session, address).await?;
        Ok(SignedIn { user, session_id, csrf_token })
    }

    /// Creates an account with global roles (by name: `admin`, `author`, `responder`,
    /// `auditor`) and, unless it only uses tokens, a password, audited as done `by`.
    ///
    /// # Errors
    ///
    /// [`AccountError::InvalidName`], [`AccountError::UnknownRole`] or
    /// [`AccountError::WeakPassword`], checked in that order; `Store(Exists)` when the name
    /// is taken.
    pub async fn create_account(
        &self,
        by: &Actor,
        name: &str,
        roles: &[String],
        password: Option<&str>,
    ) -> Result<User, AccountError> {
        if !credentials::valid_user_name(name) {
            return Err(AccountError::InvalidName);
        }
        let roles = parse_roles(roles)?;
        let password_hash = match password {
            Some(password) => match credentials::password_problem(password) {
                Some(problem) => return Err(AccountError::WeakPassword(problem)),
                None => Some(hash(password).await?),
            },
            None => None,
        };
        let user = User {
            name: name.to_owned(),
            roles,
            password_hash,
            disabled: false,
            created_at: self.clock.now(),
        };
        self.accounts.create_user(&user, by).await?;
        Ok(user)
    }

    /// Creates the account `admin` with `password` when the database has no account at all,
    /// so that a new installation can be signed into. The operator chose the password (or it
    /// was generated), so the password policy is not applied, as before this service existed.
    /// Returns whether it created the account: false when accounts exist, or when another
    /// node starting on the same database created it first.
    ///
    /// # Errors
    ///
    /// [`AccountError::Hashing`] or [`AccountError::Store`].
    pub async fn create_first_admin(
        &self,
        by: &Actor,
        password: &str,
    ) -> Result<bool, AccountError> {
        if self.accounts.count_users().await? > 0 {
            return Ok(false);
        }
        let user = User {
            name: "admin".into(),
            roles: vec![GlobalRole::Admin],
            password_hash: Some(hash(password).await?),
            disabled: false,
            created_at: self.clock.now(),
        };
        match self.accounts.create_user(&user, by).await {
            Ok(()) => Ok(true),
            Err(StoreError::Exists(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Gives an account exactly these global roles (by name), audited as done `by`; returns
    /// the account as it is now.
    ///
    /// # Errors
    ///
    /// [`AccountError::UnknownRole`], [`AccountError::NoSuchUser`], or `Store(LockOut)` when
    /// it would leave no admin or take away the caller's own admin role.
    pub async fn set_roles(
        &self,
        by: &Actor,
        name: &str,
        roles: &[String],
    ) -> Result<User, AccountError> {
        let roles = parse_roles(roles)?;
        let missing = || AccountError::NoSuchUser(name.to_owned());
        if !self.accounts.set_roles(name, &roles, by).await? {
            return Err(missing());
        }
        self.accounts.user(name).await?.ok_or_else(missing)
    }

    /// Sets a new password for an account (an admin's reset), under the password policy,
    /// hashed on the blocking pool, audited as done `by`; the account's sessions end.
    ///
    /// # Errors
    ///
    /// [`AccountError::WeakPassword`], [`AccountError::NoSuchUser`], [`AccountError::Hashing`]
    /// or [`AccountError::Store`].
    pub async fn reset_password(
        &self,
        by: &Actor,
        name: &str,
        password: &str,
    ) -> Result<(), AccountError> {
        if let Some(problem) = credentials::password_problem(password) {
            return Err(AccountError::WeakPassword(problem));
        }
        if self.accounts.user(name).await?.is_none() {
            return Err(AccountError::NoSuchUser(name.to_owned()));
        }
        let hash = hash(password).await?;
        if !self.accounts.set_password_hash(name, &hash, by).await? {
            return Err(AccountError::NoSuchUser(name.to_owned()));
        }
        Ok(())
    }

    /// Issues an API token for `user`, audited as done `by`; returns it with its secret
    /// (`stdy_` and 64 hex digits), which is shown once and never stored.
    ///
    /// # Errors
    ///
    /// [`AccountError::NoSuchUser`], or [`AccountError::Store`].
    pub async fn issue_token(
        &self,
        by: &Actor,
        user: &str,
        label: &str,
    ) -> Result<(ApiToken, String), AccountError> {
        if self.accounts.user(user).await?.is_none() {
            return Err(AccountError::NoSuchUser(user.to_owned()));
        }
        let secret = format!("stdy_{}", credentials::new_secret());
        let token = ApiToken {
            id: uuid::Uuid::now_v7(),
            label: label.to_owned(),
            user: user.to_owned(),
            hash: credentials::secret_hash(&secret),
            created_at: self.clock.now(),
            revoked_at: None,
        };
        self.accounts.create_token(&token, by).await?;
        Ok((token, secret))
    }
}

/// Global roles by name; the first unknown one is the error.
fn parse_roles(roles: &[String]) -> Result<Vec<GlobalRole>, AccountError> {
    let roles = roles
        .iter()
        .map(|role| role.parse::<GlobalRole>().map_err(|_| AccountError::UnknownRole(role.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    // A role given twice counts once, in the order first given.
    let mut unique: Vec<GlobalRole> = Vec::with_capacity(roles.len());
    for role in roles {
        if !unique.contains(&role) {
            unique.push(role);
        }
    }
    let roles = unique;
    match crate::accounts::roles_refused(&roles) {
        Some(why) => Err(AccountError::RolesRefused(why)),
        None => Ok(roles),
    }
}

/// Hashes a password on the blocking pool: argon2 takes long enough to stall other requests
/// on an async worker.
async fn hash(password: &str) -> Result<String, AccountError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || credentials::hash_password(&password))
        .await
        .map_err(|error| AccountError::Hashing(error.to_string()))?
}
