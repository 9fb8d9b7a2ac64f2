//! `steady user add|list|disable` and `steady token create|revoke`: accounts from the terminal,
//! as the local operator.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use steady_engine::accounts::{AccountService, GlobalRole, new_secret};
use steady_engine::run::Actor;

use crate::app::{DbArgs, os_user};

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user with global roles.
    Add {
        name: String,
        /// admin, author, responder or auditor (repeat for several), or trigger alone: an alerting
        /// system's account that only delivers alerts.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<GlobalRole>,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List users.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Disable a user (their sessions end at once), or enable them again.
    Disable {
        name: String,
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user; the token is shown once.
    Create {
        user: String,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        label: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a token by its id.
    Revoke {
        id: uuid::Uuid,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn parse_role(text: &str) -> Result<GlobalRole, String> {
    text.parse().map_err(|_| "use admin, author, responder, auditor or trigger".to_owned())
}

fn local() -> Actor {
    Actor::local(&os_user())
}

pub async fn user(command: UserCommand) -> anyhow::Result<ExitCode> {
    match command {
        UserCommand::Add { name, roles, password_stdin, db } => {
            let database =
                steady_storage::open_database(&db.db).await.context("cannot open the database")?;
            let (password, generated) = if password_stdin {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                (text.trim_end_matches(['\n', '\r']).to_owned(), false)
            } else {
                (new_secret()[..24].to_owned(), true)
            };
            let roles: Vec<String> = roles.iter().map(|role| role.as_str().to_owned()).collect();
            AccountService::new(database.accounts)
                .create_account(&local(), &name, &roles, Some(&password))
                .await?;
            if generated {
                println!("created user `{name}` with password {password}  (shown once)");
            } else {
                println!("created user `{name}`");
            }
        }
        UserCommand::List { db } => {
            let database =
                steady_storage::open_database(&db.db).await.context("cannot open the database")?;
            for user in database.accounts.users().await? {
                let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
                let state = if user.disabled { "  (disabled)" } else { "" };
                crate::terminal::out(&format!("{:<24} {}{state}\n", user.name, roles.join(", ")));
            }
        }
        UserCommand::Disable { name, enable, db } => {
            let database =
                steady_storage::open_database(&db.db).await.context("cannot open the database")?;
            if !database.accounts.set_disabled(&name, !enable, &local()).await? {
                bail!("no user `{name}`");
            }
            println!("user `{name}` is {}", if enable { "enabled" } else { "disabled" });
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create { user, label, db } => {
            let database =
                steady_storage::open_database(&db.db).await.context("cannot open the database")?;
            let (token, secret) =
                AccountService::new(database.accounts).issue_token(&local(), &user, &label).await?;
            println!("token {} for `{user}`: {secret}  (shown once)", token.id);
        }
        TokenCommand::Revoke { id, db } => {
            let database =
                steady_storage::open_database(&db.db).await.context("cannot open the database")?;
            if !database.accounts.revoke_token(id, &local()).await? {
                bail!("no live token {id}");
            }
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
