//! `steady plan RUNBOOK [-p KEY=VALUE]... [--json]`: the procedure rendered offline.

use std::process::ExitCode;

use anyhow::Context as _;
use steady_engine::plan::Plan;

use crate::report;
use crate::runbooks;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A runbook file, or the name of a runbook in the runbooks folder.
    runbook: String,
    /// A parameter value; repeat for each parameter.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runbooks: crate::RunbooksDir,
}

pub(crate) fn parse_param(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    Ok((key.trim().to_owned(), value.to_owned()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = runbooks::find(&args.runbook, &args.runbooks.path)?;
    let display = file.display_path();
    let errors = file.parsed.diagnostics.iter().filter(|d| d.is_error());
    report::diagnostics(&display, &file.source, errors);
    let Some(runbook) = &file.parsed.runbook else {
        return Ok(ExitCode::from(1));
    };
    let params = match steady_engine::params::resolve(runbook, &args.params) {
        Ok(params) => params,
        Err(errors) => {
            for error in errors {
                report::error(&error.to_string());
            }
            return Ok(ExitCode::from(2));
        }
    };
    let plan = Plan::new(runbook, &params);
    if args.json {
        let json = serde_json::to_string_pretty(&plan).context("cannot write the plan as JSON")?;
        crate::terminal::out(&format!("{json}\n"));
    } else {
        crate::terminal::out(&crate::terminal::printable(&plan.to_string()));
    }
    Ok(ExitCode::SUCCESS)
}
