//! Progress of a run in the terminal: on a TTY a step list redrawn in place as steps change;
//! otherwise (pipes, logs, CI) one plain line per event.

mod board;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use steady_engine::engine::{Observer, Progress};
use steady_engine::run::{Phase, RunRecord, RunStatus, StepState, StepStatus};
use steady_engine::runbook::{Runbook, Step};

use board::{Board, Entry};

/// Text from a run (step output, parameters, notes, names) as it may be shown to a person at
/// a terminal: control characters other than newline and tab are written as escapes such as
/// `\x1b`, so that stored text cannot clear the screen, set the window title or colour what
/// follows. The stored bytes stay as they were; `--json` output is escaped by JSON itself.
pub fn printable(text: &str) -> Cow<'_, str> {
    let escaped = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !escaped(c) => out.push(c),
            c if u32::from(c) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// `println!` for text that holds anything from a run: see [`printable`]. Written by [`out`],
/// so that a reader who stopped reading ends the command quietly.
macro_rules! say {
    () => { $crate::terminal::out("\n") };
    ($($arg:tt)*) => {
        $crate::terminal::out(&format!("{}\n", $crate::terminal::printable(&format!($($arg)*))))
    };
}
pub(crate) use say;

/// Writes `text` to stdout, as `print!` does, except when the reader has gone away
/// (`steady show RUN | head -3`): `print!` panics with "failed printing to stdout: Broken
/// pipe", while this ends the process quietly and successfully, as `cat` ends — nobody reads
/// what would follow. What may run long (`steady show`, `runs`, `plan`, `user list`, and all
/// that [`say!`] prints) goes through here; a command that writes through a `Write` of its own
/// (`audit export`) returns the error instead, and `main` ends it just as quietly
/// ([`broken_pipe`]).
pub fn out(text: &str) {
    let written = std::io::stdout().lock().write_all(text.as_bytes());
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        // As `print!` does: output that cannot be written is not silently lost.
        Err(error) => panic!("failed printing to stdout: {error}"),
    }
}

/// Whether a command failed only because whoever read its output stopped reading: not a
/// problem worth a word (see [`out`]).
pub fn broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The symbol and word for a status: never colour alone.
pub fn badge(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Pending => "·  pending",
        StepStatus::Running => "▶  running",
        StepStatus::Waiting => "⏸  waiting",
        StepStatus::Succeeded => "✓  succeeded",
        StepStatus::Failed => "✗  failed",
        StepStatus::Skipped => "↷  skipped",
        StepStatus::Approved => "✓  approved",
        StepStatus::Rejected => "✗  rejected",
        StepStatus::TimedOut => "⌛ timed out",
        StepStatus::Interrupted => "⚡ interrupted",
        StepStatus::WouldRun => "○  would run",
        StepStatus::Cancelled => "■  cancelled",
    }
}

pub fn run_badge(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "▶ running",
        RunStatus::Waiting => "⏸ waiting",
        RunStatus::NeedsAttention => "⚠ needs attention",
        RunStatus::Succeeded => "✓ succeeded",
        RunStatus::Failed => "✗ failed",
        RunStatus::RolledBack => "↺ rolled back",
        RunStatus::Cancelled => "■ cancelled",
        RunStatus::Proposed => "◆ proposed",
        RunStatus::Dismissed => "⊘ dismissed",
    }
}

#[derive(Debug)]
pub struct TerminalObserver {
    live: bool,
    state: Mutex<Board>,
}

impl TerminalObserver {
    /// Lists the runbook's steps up front on a TTY; plain mode prints as things happen.
    pub fn new(runbook: &Runbook) -> TerminalObserver {
        let live = std::io::stdout().is_terminal();
        let mut board = Board::default();
        for step in runbook.steps.iter() {
            board.set(Entry::new(StepStatus::Pending, step, None));
        }
        TerminalObserver { live, state: Mutex::new(board) }
    }

    /// Shows each step of a run taken over part way (`steady resume`) as the run's rows have
    /// it, not as pending: drawn with the next change.
    pub fn seed(&self, runbook: &Runbook, states: &[StepState]) {
        let mut states: Vec<&StepState> =
            states.iter().filter(|state| state.status != StepStatus::Pending).collect();
        states.sort_by_key(|state| (state.phase == Phase::Rollback, state.position));
        let mut board = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for state in states {
            if let Some(step) = runbook.find_step(&state.step_id) {
                board.set(Entry::new(state.status, step, None));
            }
        }
    }

    fn update(&self, entry: Entry, event_line: String) {
        let event_line = printable(&event_line);
        let mut board = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !self.live {
            println!("{} {event_line}", chrono::Utc::now().format("%H:%M:%S"));
            return;
        }
        board.set(entry);
        if !board.asking {
            redraw(&mut board);
        }
    }

    /// Whether progress is drawn in place (stdout is a TTY) rather than printed line by line.
    pub fn live(&self) -> bool {
        self.live
    }

    /// Leaves the step list where it is, for a question asked under it: until the answer
    /// ([`TerminalObserver::answered`]) or the end of the returned guard, whichever comes
    /// first, nothing redraws over the question, and a notice meanwhile is printed after it
    /// instead. Hold the guard for as long as the question is open.
    pub fn asking(&self) -> Question<'_> {
        let mut board = self.state.lock().unwrap_or_else(|e| e.into_inner());
        board.asking = true;
        board.drawn = 0;
        Question(self)
    }

    /// Shows a step just answered, at this terminal or elsewhere while its question was open,
    /// with `detail` saying which: the list is drawn anew under the question.
    pub fn answered(&self, step: &Step, status: StepStatus, detail: &str) {
        {
            let mut board = self.state.lock().unwrap_or_else(|e| e.into_inner());
            board.asking = false;
            board.drawn = 0;
        }
        let entry = Entry::new(status, step, Some(detail));
        self.update(entry, format!("step {}: {status}, {detail}", step.id));
    }

    /// Tells the person at the terminal something about the run as a whole (that it stops
    /// after this step): under the step list on a TTY, where a redraw cannot wipe it out;
    /// on standard error otherwise.
    pub fn notice(&self, text: &str) {
        let asking = self.state.lock().unwrap_or_else(|e| e.into_inner()).asking;
        if self.live && !asking {
            self.footer(text.to_owned());
        } else {
            eprintln!("\n{text}");
        }
    }

    fn footer(&self, text: String) {
        let text = printable(&text).into_owned();
        let mut board = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !self.live {
            println!("{} {text}", chrono::Utc::now().format("%H:%M:%S"));
            return;
        }
        board.footer = text;
        if !board.asking {
            redraw(&mut board);
        }
    }
}

/// A question open under the step list ([`TerminalObserver::asking`]). However the question
/// ends — answered, left waiting, refused, or the run ended meanwhile — the list is drawn
/// again after it, anew, below the question.
#[must_use = "the question closes when this guard goes"]
pub struct Question<'a>(&'a TerminalObserver);

impl Drop for Question<'_> {
    fn drop(&mut self) {
        let mut board = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        if board.asking {
            board.asking = false;
            board.drawn = 0;
        }
    }
}

/// Draws the board over what it drew last time. The cursor can only go back up over rows
/// still on the screen, and a line wider than the terminal takes more than one row; so the
/// board is fitted to the screen first ([`board::frame`]), or each redraw would leave stale
/// rows behind and copy the list into the scrollback again.
fn redraw(board: &mut Board) {
    let (cols, rows) = terminal_size::terminal_size_of(std::io::stdout())
        .map_or((80, 24), |(width, height)| (usize::from(width.0), usize::from(height.0)));
    let lines = board::frame(board, cols, rows);
    let mut out = std::io::stdout().lock();
    // Back to the board's first row (a terminal made shorter since stops the cursor at its
    // top), then each row erased as it is written, and what is left below cleared last: a
    // clear from the top left corner is what tmux copies into its history.
    if board.drawn > 0 {
        let _ = write!(out, "\x1b[{}F", board.drawn);
    }
    for text in &lines {
        let _ = writeln!(out, "\x1b[2K{text}");
    }
    let _ = write!(out, "\x1b[J");
    let _ = out.flush();
    board.drawn = lines.len();
}

impl Observer for TerminalObserver {
    fn progress(&self, _run: &RunRecord, event: Progress<'_>) {
        match event {
            Progress::StepStarted { step, attempt, .. } => {
                let detail = (attempt > 1).then(|| format!("attempt {attempt}"));
                self.update(
                    Entry::new(StepStatus::Running, step, detail.as_deref()),
                    format!("step {}: running (attempt {attempt})", step.id),
                );
            }
            Progress::StepEnded { step, status, attempt, detail, .. } => {
                let entry = Entry::new(status, step, detail.as_deref());
                let suffix = detail.map(|d| format!(": {d}")).unwrap_or_default();
                self.update(
                    entry,
                    format!("step {}: {status} (attempt {attempt}){suffix}", step.id),
                );
            }
            Progress::RetryIn { step, delay } => {
                let delay_text = format!("in {}", steady_engine::Duration::from_std(delay));
                // Between attempts the step is still the one being worked on.
                let entry = Entry::new(StepStatus::Running, step, Some(&delay_text))
                    .with_badge("↻  retrying");
                self.update(
                    entry,
                    format!(
                        "step {}: retrying in {}",
                        step.id,
                        steady_engine::Duration::from_std(delay)
                    ),
                );
            }
            Progress::Waiting { step, what } => {
                self.update(
                    Entry::new(StepStatus::Waiting, step, Some(&what)),
                    format!("step {}: waiting for {what}", step.id),
                );
            }
            Progress::ApprovalVoided { gate } => {
                self.footer(format!("approval of `{}` is void: the guarded step renders differently from what was approved", gate.id));
            }
            Progress::NeedsAttention { step } => {
                self.footer(format!(
                    "step {} needs a decision: retry, skip, rollback or abort",
                    step.id
                ));
            }
            Progress::RolledBack => self.footer("rolling back".to_owned()),
            Progress::Finished { status } => self.footer(format!("run {}", run_badge(status))),
        }
    }
}

#[cfg(test)]
mod tests {
    use steady_engine::run::{Phase, StepState, StepStatus};

    use super::*;

    #[test]
    fn a_run_resumed_part_way_shows_what_already_ran() {
        let yaml = "name: x\ndescription: x\nsteps:\n  - id: drain\n    run: [\"true\"]\n  - id: promote\n    run: [\"true\"]\n  - id: verify\n    run: [\"true\"]\n";
        let runbook = steady_engine::runbook::parse(yaml).runbook.expect("a valid runbook");
        let observer = TerminalObserver::new(&runbook);
        let mut drained = StepState::pending("drain", Phase::Main, 0);
        drained.status = StepStatus::Succeeded;
        let mut promoted = StepState::pending("promote", Phase::Main, 1);
        promoted.status = StepStatus::Interrupted;
        let states = [promoted, StepState::pending("verify", Phase::Main, 2), drained];
        observer.seed(&runbook, &states);
        let board = observer.state.lock().unwrap();
        assert_eq!(
            board::frame(&board, 80, 24),
            [
                "  ✓  succeeded     drain",
                "  ⚡ interrupted    promote",
                "  ·  pending       verify"
            ]
        );
    }
}
