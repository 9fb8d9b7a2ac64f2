//! Accounts on either database: users, sessions, tokens and the sign-in throttle.

use async_trait::async_trait;
use steady_engine::accounts::{
    Accounts, ApiToken, GlobalRole, Session, User, disabling_locks_out, role_change_locks_out,
};
use steady_engine::audit::{
    AuditData, Login, NewEvent, PasswordReset, TokenCreated, TokenRevoked, UserChanged,
    UserCreated, UserRolesChanged, format_timestamp,
};
use steady_engine::run::{Actor, Timestamp};
use steady_engine::store::StoreError;
use uuid::Uuid;

use super::audit::append_events;
use super::{Backend, Conn, SqlStore};
use crate::codec::{Columns, now};
use crate::rows::{session, token, user};
use crate::sql::{database, sql};

#[async_trait]
impl<B: Backend> Accounts for SqlStore<B> {
    async fn create_user(&self, user: &User, by: &Actor) -> Result<(), StoreError> {
        let mut tx = self.backend.begin().await?;
        let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
        let inserted = sql(
            "INSERT INTO users (name, roles, password_hash, disabled, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.name)
        .bind(roles.join(","))
        .bind(&user.password_hash)
        .bind(user.disabled)
        .bind(format_timestamp(user.created_at))
        .insert_unique(&mut *tx)
        .await?;
        if !inserted {
            return Err(StoreError::Exists(user.name.clone()));
        }
        let created = UserCreated { user: user.name.clone(), roles: user.roles.clone() };
        let event = NewEvent::typed(by, None, AuditData::UserCreated(created));
        append_events::<B>(&mut tx, &[event]).await?;
        tx.commit().await.map_err(database)
    }

    async fn user(&self, name: &str) -> Result<Option<User>, StoreError> {
        let row = sql("SELECT * FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *self.backend.conn().await?)
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        sql("SELECT * FROM users ORDER BY name")
            .fetch_all(&mut *self.backend.conn().await?)
            .await?
            .iter()
            .map(user)
            .collect()
    }

    async fn set_disabled(
        &self,
        name: &str,
        disabled: bool,
        by: &Actor,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin().await?;
        let Some(users) = target_and_enabled::<B>(&mut tx, name).await? else { return Ok(false) };
        if disabled {
            let enabled: Vec<User> = users.into_iter().filter(|user| !user.disabled).collect();
            if let Some(reason) = disabling_locks_out(name, by, &enabled) {
                return Err(StoreError::LockOut(reason));
            }
        }
        sql("UPDATE users SET disabled = $1 WHERE name = $2")
            .bind(disabled)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let user = name.to_owned();
        let change = if disabled {
            let sessions = sql("DELETE FROM sessions WHERE user_name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            let tokens = sql(
                "UPDATE api_tokens SET revoked_at = $1 WHERE user_name = $2 AND revoked_at IS NULL",
            )
            .bind(format_timestamp(now()))
            .bind(name)
            .execute(&mut *tx)
            .await?;
            UserChanged::Disabled { user, sessions_ended: sessions, tokens_revoked: tokens }
        } else {
            UserChanged::Enabled { user }
        };
        let event = NewEvent::typed(by, None, AuditData::UserChanged(change));
        append_events::<B>(&mut tx, &[event]).await?;
        tx.commit().await.map_err(database)?;
        Ok(true)
    }

    async fn set_roles(
        &self,
        name: &str,
        roles: &[GlobalRole],
        by: &Actor,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin().await?;
        let Some(users) = target_and_enabled::<B>(&mut tx, name).await? else { return Ok(false) };
        let enabled: Vec<User> = users.into_iter().filter(|user| !user.disabled).collect();
        if let Some(reason) = role_change_locks_out(name, roles, by, &enabled) {
            return Err(StoreError::LockOut(reason));
        }
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        sql("UPDATE users SET roles = $1 WHERE name = $2")
            .bind(names.join(","))
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let change = UserRolesChanged { user: name.to_owned(), roles: roles.to_vec() };
        let event = NewEvent::typed(by, None, AuditData::UserRolesChanged(change));
        append_events::<B>(&mut tx, &[event]).await?;
        tx.commit().await.map_err(database)?;
        Ok(true)
    }

    async fn set_password_hash(
        &self,
        name: &str,
        hash: &str,
        by: &Actor,
    ) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin().await?;
        let changed = sql("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(hash)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if changed == 0 {
            return Ok(false);
        }
        // Whoever held the old password may be signed in with it: those sessions end.
        let sessions_ended =
            sql("DELETE FROM sessions WHERE user_name = $1").bind(name).execute(&mut *tx).await?;
        let reset = PasswordReset { user: name.to_owned(), sessions_ended };
        let event = NewEvent::typed(by, None, AuditData::PasswordReset(reset));
        append_events::<B>(&mut tx, &[event]).await?;
        tx.commit().await.map_err(database)?;
        Ok(true)
    }

    async fn count_users(&self) -> Result<u64, StoreError> {
        let count = sql("SELECT count(*) AS users FROM users")
            .fetch_one(&mut *self.backend.conn().await?)
            .await?
            .integer("users")?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn create_session(&self, session: &Session, address: &str) -> Result<(), StoreError> {
        let mut tx = self.backend.begin().await?;
        sql(
            "INSERT INTO sessions (id_hash, user_name, csrf_token, created_at, last_seen) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.id_hash)
        .bind(&session.user)
        .bind(&session.csrf_hash)
        .bind(format_timestamp(session.created_at))
        .bind(format_timestamp(session.last_seen))
        .execute(&mut *tx)
        .await?;
        let login = Login { user: session.user.clone(), address: address.to_owned() };
        let event =
            NewEvent::typed(&Actor::user(&session.user), None, AuditData::LoginSucceeded(login));
        append_events::<B>(&mut tx, &[event]).await?;
        tx.commit().await.map_err(database)
    }

    async fn session(&self, id_hash: &str) -> Result<Option<Session>, StoreError> {
        let row = sql("SELECT * FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .fetch_optional(&mut *self.backend.conn().await?)
            .await?;
        row.as_ref().map(session).transpose()
    }

    async fn touch_session(&self, id_hash: &str, at: Timestamp) -> Result<(), StoreError> {
        sql("UPDATE sessions SET last_seen = $1 WHERE id_hash = $2")
            .bind(format_timestamp(at))
            .bind(id_hash)
            .execute(&mut *self.backend.conn().await?)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sql("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut *self.backend.conn().await?)
            .await?;
        Ok(())
    }

    async fn delete_sessions_of(&self, user: &str) -> Result<(), StoreError> {
        sql("DELETE FROM sessions WHERE user_name = $1")
            .bind(user)
            .execute(&mut *self.backend.conn().await?)
            .await?;
        Ok(())
    }

    async fn create_token(&self, token: &ApiToken, by: &Actor) -> Result<(), StoreError> {
        let mut tx = self.backend.begin().await?;
        sql(
            "INSERT INTO api_tokens (id, label, user_name, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(token.id.to_string())
        .bind(&token.label)
        .bind(&token.user)
        .bind(&token.hash)
        .bind(format_timestamp(token.created_at))
        .execute(&mut *tx)
        .await?;
        let created =
            TokenCreated { token: token.id, label: token.label.clone(), user: token.user.clone() };
        let event = NewEvent::typed(by, None, AuditData::TokenCreated(created));
        append_events::<B>(&mut tx, &[event]).await?;
        tx.commit().await.map_err(database)
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sql("SELECT * FROM api_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&mut *self.backend.conn().await?)
            .await?;
        row.as_ref().map(token).transpose()
    }

    async fn tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, StoreError> {
        sql(
            "SELECT * FROM api_tokens WHERE (CAST($1 AS TEXT) IS NULL OR user_name = $1) ORDER BY created_at",
        )
        .bind(user)
        .fetch_all(&mut *self.backend.conn().await?)
        .await?
        .iter()
        .map(token)
        .collect()
    }

    async fn revoke_token(&self, id: Uuid, by: &Actor) -> Result<bool, StoreError> {
        let mut tx = self.backend.begin().await?;
        let updated =
            sql("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(format_timestamp(now()))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        if updated == 0 {
            return Ok(false);
        }
        let event = NewEvent::typed(by, None, AuditData::TokenRevoked(TokenRevoked { token: id }));
        append_events::<B>(&mut tx, &[event]).await?;
        tx.commit().await.map_err(database)?;
        Ok(true)
    }

    async fn record_login_failure(
        &self,
        name: &str,
        address: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.backend.begin().await?;
        sql("INSERT INTO login_failures (user_name, address, at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(address)
            .bind(format_timestamp(at))
            .execute(&mut *tx)
            .await?;
        // The throttle looks back minutes; the audit log keeps every failure for good.
        sql("DELETE FROM login_failures WHERE at < $1")
            .bind(format_timestamp(at - chrono::Duration::days(1)))
            .execute(&mut *tx)
            .await?;
        let login = Login { user: name.to_owned(), address: address.to_owned() };
        let event = NewEvent::typed(&Actor::user(name), None, AuditData::LoginFailed(login));
        append_events::<B>(&mut tx, &[event]).await?;
        tx.commit().await.map_err(database)
    }

    async fn login_failures(
        &self,
        name: &str,
        address: &str,
        since: Timestamp,
    ) -> Result<(u32, u32), StoreError> {
        let row = sql(
            "SELECT (SELECT count(*) FROM login_failures WHERE user_name = $1 AND address = $2 AND at >= $3) AS by_user,
                    (SELECT count(*) FROM login_failures WHERE address = $2 AND at >= $3) AS by_address",
        )
        .bind(name)
        .bind(address)
        .bind(format_timestamp(since))
        .fetch_one(&mut *self.backend.conn().await?)
        .await?;
        let count =
            |column: &str| row.integer(column).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        Ok((count("by_user")?, count("by_address")?))
    }
}

/// The user `name` and every enabled user, locked until commit where the database can: what
/// a change that could lock everyone out (disabling, taking roles away) decides on. `None`
/// when there is no user `name`.
async fn target_and_enabled<B: Backend>(
    conn: &mut Conn<B>,
    name: &str,
) -> Result<Option<Vec<User>>, StoreError> {
    let users: Vec<User> =
        sql(format!("SELECT * FROM users WHERE name = $1 OR NOT disabled{}", B::FOR_UPDATE))
            .bind(name)
            .fetch_all(conn)
            .await?
            .iter()
            .map(user)
            .collect::<Result<_, _>>()?;
    Ok(users.iter().any(|user| user.name == name).then_some(users))
}
