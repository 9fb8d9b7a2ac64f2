//! `steady audit verify` and `steady audit export`: the tamper-evident log, for auditors.

use std::io::Write;
use std::process::ExitCode;

use steady_engine::store::AuditFilter;

use steady_web::dto;

use crate::app::{App, DbArgs, person};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain and report the first broken event.
    Verify {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write events to stdout as JSON Lines or CSV.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Only events of this run.
    #[arg(long)]
    run: Option<String>,
    /// Only events by this actor (`alice`, `user:alice`, `local:root`, `steady`).
    #[arg(long)]
    actor: Option<String>,
    /// Only events at or after this time (RFC 3339, or a date such as 2026-11-26).
    #[arg(long, value_parser = parse_time)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Jsonl,
    Csv,
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
        .ok_or_else(|| {
            format!("`{text}` is not a time: use RFC 3339 (2026-11-26T10:00:00Z) or a date")
        })
}

pub async fn run(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { db } => {
            let app = App::open(&db).await?;
            let verification = app.store.verify_audit().await?;
            match verification.first_broken {
                None => {
                    println!("audit chain verified: {} events", verification.events);
                    Ok(ExitCode::SUCCESS)
                }
                Some(seq) => {
                    println!(
                        "audit chain BROKEN at seq {seq} ({} events checked)",
                        verification.events
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCommand::Export(args) => export(args).await,
    }
}

async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(&args.db).await?;
    let run_id = match &args.run {
        Some(run) => Some(app.resolve_run(run).await?),
        None => None,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let csv = matches!(args.format, Format::Csv);
    if csv {
        write!(out, "{}", dto::audit_csv_header())?;
    }
    let mut after = 0;
    loop {
        let filter = AuditFilter {
            run_id,
            actor: args.actor.as_deref().map(person),
            since: args.since,
            after_seq: Some(after),
            limit: Some(10_000),
            ..AuditFilter::default()
        };
        let events = app.store.audit_events(&filter).await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        write!(out, "{}", dto::audit_export(&events, csv))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
