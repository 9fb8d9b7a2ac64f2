//! `steady backup`: a consistent copy of the database, taken while Steady runs, and checked.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::app::DbArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to write: it must not exist yet.
    #[arg(value_name = "FILE")]
    to: PathBuf,
    #[command(flatten)]
    db: DbArgs,
}

/// Copies the database, then verifies the copy's audit chain: a backup nobody has read is a
/// hope, not a backup.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    steady_storage::backup(&args.db.db, &args.to)
        .await
        .with_context(|| format!("cannot back up {}", args.db.db))?;
    let copy = format!("sqlite://{}", args.to.display());
    let verification = steady_storage::open(&copy)
        .await
        .with_context(|| format!("cannot open the backup {}", args.to.display()))?
        .verify_audit()
        .await?;
    match verification.first_broken {
        None => {
            println!(
                "backed up {} to {}: audit chain verified, {} events",
                args.db.db,
                args.to.display(),
                verification.events
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(seq) => {
            println!(
                "backed up {} to {}, but its audit chain is BROKEN at seq {seq}: \
                 run `steady audit verify` on the database",
                args.db.db,
                args.to.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}
