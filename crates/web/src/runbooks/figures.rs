//! Rehearsal figures as people read them: what a runbook's succeeded drills and live runs
//! measured (`GET /api/v1/runbooks/{name}/figures`, the runbook page's table, the catalogue's
//! p90 against `rto`), and the words the run page and the postmortem use for them. The
//! arithmetic is the engine's (`steady_engine::rehearsal`).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use steady_engine::rehearsal::{Figures, REHEARSALS_KEPT, RehearsalQuery, Spread};
use steady_engine::runbook::Runbook;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::Caller;
use crate::error::AppError;

/// What the rehearsals `query` selects measured.
pub(crate) async fn figures(state: &AppState, query: &RehearsalQuery) -> Result<Figures, AppError> {
    Ok(Figures::new(&state.store.rehearsals(query).await?))
}

/// A duration as figures show it, to the second: `12ms`, `2.4s`, `42s`, `2m 10s`, `15m`,
/// `1h 05m`.
pub(crate) fn figure(duration: Duration) -> String {
    let millis = duration.as_millis();
    let seconds = duration.as_secs();
    match seconds {
        _ if millis < 1000 => format!("{millis}ms"),
        0..10 => format!("{:.1}s", duration.as_secs_f64()),
        10..60 => format!("{seconds}s"),
        60..3600 if seconds.is_multiple_of(60) => format!("{}m", seconds / 60),
        60..3600 => format!("{}m {:02}s", seconds / 60, seconds % 60),
        _ if seconds % 3600 / 60 == 0 => format!("{}h", seconds / 3600),
        _ => format!("{}h {:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

/// A duration as an estimate: `~40s`, `~7m`, `~1h 05m`; rounded to the minute from one.
pub(crate) fn about(duration: Duration) -> String {
    let seconds = duration.as_secs_f64().round() as u64;
    match seconds {
        0 => "~1s".to_owned(),
        1..60 => format!("~{seconds}s"),
        _ => {
            let minutes = (seconds + 30) / 60;
            match minutes {
                0..60 => format!("~{minutes}m"),
                _ if minutes.is_multiple_of(60) => format!("~{}h", minutes / 60),
                _ => format!("~{}h {:02}m", minutes / 60, minutes % 60),
            }
        }
    }
}

/// "rehearsed p90 12m of rto 15m", and whether the p90 is over the objective; without an
/// `rto`, just the p90; without rehearsals, what is missing.
pub(crate) fn against_rto(figures: &Figures, runbook: &Runbook) -> Option<(String, bool)> {
    match (&figures.whole, runbook.rto) {
        (Some(whole), Some(rto)) => Some((
            format!("rehearsed p90 {} of rto {}", figure(whole.p90), figure(rto.as_std())),
            whole.p90 > rto.as_std(),
        )),
        (Some(whole), None) => Some((format!("rehearsed p90 {}", figure(whole.p90)), false)),
        (None, Some(rto)) => {
            Some((format!("rto {}, never rehearsed", figure(rto.as_std())), false))
        }
        (None, None) => None,
    }
}

/// How long something took in rehearsals: the median, the 90th percentile and the longest,
/// in milliseconds, and how many measurements they come from.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpreadView {
    pub samples: usize,
    pub median_ms: u64,
    pub p90_ms: u64,
    pub max_ms: u64,
}

impl SpreadView {
    fn new(spread: &Spread) -> SpreadView {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        SpreadView {
            samples: spread.samples,
            median_ms: ms(spread.median),
            p90_ms: ms(spread.p90),
            max_ms: ms(spread.max),
        }
    }
}

/// One step (or branch of a group) of the current version, as rehearsals measured it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepFiguresView {
    pub id: String,
    /// For a branch of a `parallel` group: the group's id.
    pub parent: Option<String>,
    /// How long it took when it ran; `null` when no rehearsal ran it.
    pub took: Option<SpreadView>,
    /// How many rehearsals skipped it.
    pub skipped: usize,
}

/// What the latest succeeded drills and live runs of a runbook (every version, at most 200)
/// measured: the whole procedure, from a run's start to its end, and each step of the
/// current version, from its first attempt (or from when it began to wait for people) to its
/// end. Percentiles are nearest-rank.
#[derive(Debug, Serialize, ToSchema)]
pub struct FiguresView {
    pub runbook: String,
    /// The recovery time objective the current version declares, in milliseconds.
    pub rto_ms: Option<u64>,
    /// How many rehearsals the figures come from, and how many of them were drills.
    pub rehearsals: usize,
    pub drills: usize,
    /// The whole procedure; `null` when it was never rehearsed.
    pub whole: Option<SpreadView>,
    /// Whether the whole procedure's p90 is over `rto`.
    pub over_rto: bool,
    /// The current version's steps and branches, in the order written.
    pub steps: Vec<StepFiguresView>,
}

impl FiguresView {
    pub(crate) fn new(figures: &Figures, runbook: &Runbook) -> FiguresView {
        let rto = runbook.rto.map(|rto| rto.as_std());
        FiguresView {
            runbook: runbook.name.clone(),
            rto_ms: rto.map(|rto| u64::try_from(rto.as_millis()).unwrap_or(u64::MAX)),
            rehearsals: figures.rehearsals,
            drills: figures.drills,
            whole: figures.whole.as_ref().map(SpreadView::new),
            over_rto: matches!((&figures.whole, rto), (Some(whole), Some(rto)) if whole.p90 > rto),
            steps: main_steps(runbook)
                .map(|(id, parent)| {
                    let step = figures.steps.get(id);
                    StepFiguresView {
                        id: id.to_owned(),
                        parent: parent.map(str::to_owned),
                        took: step.and_then(|s| s.ran.as_ref()).map(SpreadView::new),
                        skipped: step.map_or(0, |s| s.skipped),
                    }
                })
                .collect(),
        }
    }
}

/// The main steps of a runbook and their branches, in the order written, each with its
/// group's id when it is a branch.
pub(crate) fn main_steps(runbook: &Runbook) -> impl Iterator<Item = (&str, Option<&str>)> {
    runbook.steps.iter().flat_map(|step| {
        std::iter::once((step.id.as_str(), None))
            .chain(step.branches().iter().map(|b| (b.id.as_str(), Some(step.id.as_str()))))
    })
}

/// One row of the runbook page's rehearsal figures: a step, or a branch of a group.
pub(crate) struct FigureRow {
    pub(crate) id: String,
    pub(crate) branch: bool,
    /// Median, p90 and longest, or dashes when no rehearsal ran the step.
    pub(crate) median: String,
    pub(crate) p90: String,
    pub(crate) max: String,
    pub(crate) samples: usize,
    /// "skipped in 2", "never rehearsed".
    pub(crate) note: Option<String>,
}

/// The runbook page's rehearsal figures.
pub(crate) struct FiguresSection {
    pub(crate) rehearsals: usize,
    /// "5 succeeded runs of any version (3 drills, 2 live runs)".
    pub(crate) from: String,
    /// The whole procedure: "median 11m, p90 13m, longest 14m 02s".
    pub(crate) whole: Option<String>,
    pub(crate) against_rto: Option<(String, bool)>,
    pub(crate) rows: Vec<FigureRow>,
}

impl FiguresSection {
    pub(crate) fn new(figures: &Figures, runbook: &Runbook) -> FiguresSection {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let live = figures.rehearsals - figures.drills;
        let rows = main_steps(runbook)
            .map(|(id, parent)| {
                let step = figures.steps.get(id);
                let ran = step.and_then(|s| s.ran.as_ref());
                let dash = || "—".to_owned();
                let skipped = step.map_or(0, |s| s.skipped);
                FigureRow {
                    id: id.to_owned(),
                    branch: parent.is_some(),
                    median: ran.map(|r| figure(r.median)).unwrap_or_else(dash),
                    p90: ran.map(|r| figure(r.p90)).unwrap_or_else(dash),
                    max: ran.map(|r| figure(r.max)).unwrap_or_else(dash),
                    samples: ran.map_or(0, |r| r.samples),
                    note: match (step, skipped) {
                        (None, _) => Some("never rehearsed".to_owned()),
                        (Some(_), 0) => None,
                        (Some(_), n) => {
                            Some(format!("skipped in {}", plural(n, "rehearsal", "rehearsals")))
                        }
                    },
                }
            })
            .collect();
        FiguresSection {
            rehearsals: figures.rehearsals,
            from: {
                let kinds: Vec<String> = [
                    (figures.drills, plural(figures.drills, "drill", "drills")),
                    (live, plural(live, "live run", "live runs")),
                ]
                .into_iter()
                .filter(|(n, _)| *n > 0)
                .map(|(_, words)| words)
                .collect();
                let latest =
                    if figures.rehearsals == REHEARSALS_KEPT as usize { "the latest " } else { "" };
                format!(
                    "{latest}{} of any version ({})",
                    plural(figures.rehearsals, "succeeded run", "succeeded runs"),
                    kinds.join(", ")
                )
            },
            whole: figures.whole.as_ref().map(|whole| {
                format!(
                    "median {}, p90 {}, longest {}",
                    figure(whole.median),
                    figure(whole.p90),
                    figure(whole.max)
                )
            }),
            against_rto: against_rto(figures, runbook),
            rows,
        }
    }
}

#[utoipa::path(get, tag = "runbooks", path = "/api/v1/runbooks/{name}/figures", params(("name" = String, Path, description = "Runbook name")), responses((status = 200, description = "What the runbook's succeeded drills and live runs measured", body = FiguresView), (status = 401, description = "Not signed in"), (status = 404, description = "No such runbook")))]
pub(crate) async fn runbook_figures(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _caller: Caller,
) -> Result<Json<FiguresView>, AppError> {
    let (_, runbook) = super::latest(&state, &name).await?;
    let figures = figures(&state, &RehearsalQuery::of(&name)).await?;
    Ok(Json(FiguresView::new(&figures, &runbook)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_to_the_second_and_estimates_to_the_minute() {
        let s = Duration::from_secs;
        let shown: Vec<String> = [
            Duration::from_millis(12),
            Duration::from_millis(2400),
            s(42),
            s(130),
            s(900),
            s(3900),
        ]
        .into_iter()
        .map(figure)
        .collect();
        assert_eq!(shown, ["12ms", "2.4s", "42s", "2m 10s", "15m", "1h 05m"]);
        assert_eq!(figure(s(842)), "14m 02s");
        assert_eq!(figure(s(7200)), "2h");
        let estimated: Vec<String> =
            [Duration::ZERO, s(40), s(89), s(90), s(420), s(3900), s(7200)]
                .into_iter()
                .map(about)
                .collect();
        assert_eq!(estimated, ["~1s", "~40s", "~1m", "~2m", "~7m", "~1h 05m", "~2h"]);
    }
}
