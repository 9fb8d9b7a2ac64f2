//! Progress of a run in the terminal: on a TTY a step list redrawn in place as steps change;
//! otherwise (pipes, logs, CI) one plain line per event.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use steady_engine::engine::{Observer, Progress};
use steady_engine::run::{RunRecord, RunStatus, StepStatus};
use steady_engine::runbook::{Runbook, Step};

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

/// The step list as drawn, and how many rows of the screen it took last time.
#[derive(Debug, Default)]
struct Board {
    /// Step ids in the order shown: the runbook's steps, then any that appear later
    /// (rollback steps, fan-out items, branches).
    order: Vec<String>,
    steps: BTreeMap<String, Entry>,
    /// The step whose line changed last.
    last: Option<String>,
    footer: String,
    drawn: usize,
}

/// One step's line and the status it shows.
#[derive(Debug)]
struct Entry {
    text: String,
    status: StepStatus,
}

impl TerminalObserver {
    /// Lists the runbook's steps up front on a TTY; plain mode prints as things happen.
    pub fn new(runbook: &Runbook) -> TerminalObserver {
        let live = std::io::stdout().is_terminal();
        let mut board = Board::default();
        for step in runbook.steps.iter() {
            board.add(
                &step.id,
                line(step.title(), &step.id, badge(StepStatus::Pending), None),
                StepStatus::Pending,
            );
        }
        TerminalObserver { live, state: Mutex::new(board) }
    }

    fn update(&self, step_id: &str, status: StepStatus, text: String, event_line: String) {
        let event_line = printable(&event_line);
        let mut board = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !self.live {
            println!("{} {event_line}", chrono::Utc::now().format("%H:%M:%S"));
            return;
        }
        board.add(step_id, text, status);
        board.last = Some(step_id.to_owned());
        redraw(&mut board);
    }

    /// Shows a step just answered, at this terminal or elsewhere while its question was open,
    /// with `detail` saying which: the list is drawn anew under the question.
    pub fn answered(&self, step: &Step, status: StepStatus, detail: &str) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).drawn = 0;
        let text = line(step.title(), &step.id, badge(status), Some(detail));
        self.update(&step.id, status, text, format!("step {}: {status}, {detail}", step.id));
    }

    fn footer(&self, text: String) {
        let text = printable(&text).into_owned();
        let mut board = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !self.live {
            println!("{} {text}", chrono::Utc::now().format("%H:%M:%S"));
            return;
        }
        board.footer = text;
        redraw(&mut board);
    }
}

impl Board {
    /// Sets a step's line, adding the step at the end of the list when it is new.
    fn add(&mut self, step_id: &str, text: String, status: StepStatus) {
        // One step, one row: a detail's line breaks and tabs would take rows and columns the
        // redraw does not count.
        let text = printable(&text).replace(['\n', '\t'], " ");
        if self.steps.insert(step_id.to_owned(), Entry { text, status }).is_none() {
            self.order.push(step_id.to_owned());
        }
    }
}

fn line(title: &str, id: &str, badge: &str, detail: Option<&str>) -> String {
    let name = if title == id { id.to_owned() } else { format!("{title} ({id})") };
    match detail {
        Some(detail) => format!("  {badge:<16} {name} — {detail}"),
        None => format!("  {badge:<16} {name}"),
    }
}

/// Draws the board over what it drew last time. The cursor can only go back up over rows
/// still on the screen, and a line wider than the terminal takes more than one row; so
/// every line is cut to one row and the board to the screen's height (see [`frame`]),
/// or each redraw would leave stale rows behind and flood the scrollback.
fn redraw(board: &mut Board) {
    let (cols, rows) = terminal_size::terminal_size_of(std::io::stdout())
        .map_or((80, 24), |(width, height)| (usize::from(width.0), usize::from(height.0)));
    let lines = frame(board, cols, rows);
    let mut out = std::io::stdout().lock();
    if board.drawn > 0 {
        let _ = write!(out, "\x1b[{}F\x1b[J", board.drawn);
    }
    for text in &lines {
        let _ = writeln!(out, "{text}");
    }
    let _ = out.flush();
    board.drawn = lines.len();
}

/// The rows to show of `board` on a terminal `cols` wide and `rows` high: each line cut to
/// fit one row (ending in `…`), and, when the steps do not all fit above the footer, the
/// window around the step being worked on with one row counting the steps above it and one
/// counting those below, by status.
fn frame(board: &Board, cols: usize, rows: usize) -> Vec<String> {
    let width = cols.saturating_sub(1).max(20);
    let footer: Vec<&str> = board.footer.lines().collect();
    let room = rows.saturating_sub(1 + footer.len()).max(3);
    let entries: Vec<&Entry> = board.order.iter().filter_map(|id| board.steps.get(id)).collect();
    let (start, end) = window(entries.len(), focus(board), room);
    let mut lines = Vec::with_capacity(room + footer.len());
    if start > 0 {
        lines.push(tally(&entries[..start], "above"));
    }
    lines.extend(entries[start..end].iter().map(|entry| entry.text.clone()));
    if end < entries.len() {
        lines.push(tally(&entries[end..], "below"));
    }
    lines.extend(footer.iter().map(|text| (*text).to_owned()));
    lines.iter().map(|text| fit(text, width)).collect()
}

/// Where the eye goes: the first step running or waiting, else the step that changed last.
fn focus(board: &Board) -> usize {
    let active = |id: &String| {
        board
            .steps
            .get(id)
            .is_some_and(|entry| matches!(entry.status, StepStatus::Running | StepStatus::Waiting))
    };
    board
        .order
        .iter()
        .position(active)
        .or_else(|| {
            board.last.as_ref().and_then(|last| board.order.iter().position(|id| id == last))
        })
        .unwrap_or(0)
}

/// The steps `start..end` to show of `len` in `room` rows (at least 3), keeping `focus` a
/// third of the way down; the rows for the counts above and below come out of `room`.
fn window(len: usize, focus: usize, room: usize) -> (usize, usize) {
    if len <= room {
        return (0, len);
    }
    let body = room - 2;
    let start = focus.saturating_sub(body / 3).min(len - body);
    if start == 0 {
        (0, room - 1)
    } else if start + body == len {
        (len - (room - 1), len)
    } else {
        (start, start + body)
    }
}

/// One row counting `entries` by status: `  ⋮  180 steps above: 178 succeeded, 2 skipped`.
fn tally(entries: &[&Entry], place: &str) -> String {
    let mut counts: Vec<(StepStatus, usize)> = Vec::new();
    for entry in entries {
        match counts.iter_mut().find(|(status, _)| *status == entry.status) {
            Some((_, count)) => *count += 1,
            None => counts.push((entry.status, 1)),
        }
    }
    let counts: Vec<String> = counts
        .iter()
        .map(|(status, count)| {
            let word = badge(*status).split_once(' ').map_or("", |(_, word)| word.trim_start());
            format!("{count} {word}")
        })
        .collect();
    let noun = if entries.len() == 1 { "step" } else { "steps" };
    format!("  ⋮  {} {noun} {place}: {}", entries.len(), counts.join(", "))
}

/// `text` cut to `width` columns of the terminal, wide characters counted twice, ending in
/// `…` where it was cut.
fn fit(text: &str, width: usize) -> String {
    use unicode_width::{UnicodeWidthChar as _, UnicodeWidthStr as _};
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::with_capacity(width + 3);
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > width - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

impl Observer for TerminalObserver {
    fn progress(&self, _run: &RunRecord, event: Progress<'_>) {
        match event {
            Progress::StepStarted { step, attempt, .. } => {
                let detail = (attempt > 1).then(|| format!("attempt {attempt}"));
                let text =
                    line(step.title(), &step.id, badge(StepStatus::Running), detail.as_deref());
                self.update(
                    &step.id,
                    StepStatus::Running,
                    text,
                    format!("step {}: running (attempt {attempt})", step.id),
                );
            }
            Progress::StepEnded { step, status, attempt, detail, .. } => {
                let text = line(step.title(), &step.id, badge(status), detail.as_deref());
                let suffix = detail.map(|d| format!(": {d}")).unwrap_or_default();
                self.update(
                    &step.id,
                    status,
                    text,
                    format!("step {}: {status} (attempt {attempt}){suffix}", step.id),
                );
            }
            Progress::RetryIn { step, delay } => {
                let text = line(
                    step.title(),
                    &step.id,
                    "↻  retrying",
                    Some(&format!("in {}", steady_engine::Duration::from_std(delay))),
                );
                // Between attempts the step is still the one being worked on.
                self.update(
                    &step.id,
                    StepStatus::Running,
                    text,
                    format!(
                        "step {}: retrying in {}",
                        step.id,
                        steady_engine::Duration::from_std(delay)
                    ),
                );
            }
            Progress::Waiting { step, what } => {
                let text = line(step.title(), &step.id, badge(StepStatus::Waiting), Some(&what));
                self.update(
                    &step.id,
                    StepStatus::Waiting,
                    text,
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
    use unicode_width::UnicodeWidthStr as _;

    use super::*;

    /// A board of `ids`, each with its status, as the observer would have drawn it.
    fn board(steps: &[(&str, StepStatus)]) -> Board {
        let mut board = Board::default();
        for (id, status) in steps {
            board.add(id, line(id, id, badge(*status), None), *status);
        }
        board
    }

    fn long_run(done: usize, total: usize) -> Board {
        let ids: Vec<String> = (0..total).map(|n| format!("s{n}")).collect();
        let steps: Vec<(&str, StepStatus)> = ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let status = match n.cmp(&done) {
                    std::cmp::Ordering::Less => StepStatus::Succeeded,
                    std::cmp::Ordering::Equal => StepStatus::Running,
                    std::cmp::Ordering::Greater => StepStatus::Pending,
                };
                (id.as_str(), status)
            })
            .collect();
        board(&steps)
    }

    #[test]
    fn a_short_run_is_drawn_whole() {
        let mut board = board(&[
            ("drain", StepStatus::Succeeded),
            ("promote", StepStatus::Running),
            ("verify", StepStatus::Pending),
        ]);
        board.footer = "run ▶ running".to_owned();
        let lines = frame(&board, 80, 24);
        assert_eq!(lines.len(), 4);
        assert!(lines[1].contains("running") && lines[1].contains("promote"), "{lines:#?}");
        assert_eq!(lines[3], "run ▶ running");
    }

    #[test]
    fn a_commander_at_a_small_terminal_sees_the_running_step_of_a_long_run_and_a_count_of_the_rest()
    {
        let mut board = long_run(120, 200);
        board.footer = "run ▶ running".to_owned();
        let lines = frame(&board, 80, 24);
        assert_eq!(
            lines.len(),
            23,
            "the board and its footer fill the screen but one row: {lines:#?}"
        );
        assert!(
            lines[0].starts_with("  ⋮  ") && lines[0].ends_with("steps above: 114 succeeded"),
            "{}",
            lines[0]
        );
        let running =
            lines.iter().position(|l| l.contains("s120")).expect("the running step is shown");
        assert!(lines[running].contains("▶  running"));
        assert!(
            (2..=8).contains(&running),
            "the running step sits near the top, after what just ran: row {running}"
        );
        assert_eq!(lines[21], "  ⋮  66 steps below: 66 pending");
        assert_eq!(lines[22], "run ▶ running");
        let shown = lines.iter().filter(|l| l.contains("  s")).count();
        assert_eq!(114 + shown + 66, 200, "every step is shown or counted once");
    }

    #[test]
    fn the_first_and_last_steps_of_a_long_run_need_only_one_count() {
        let start = frame(&long_run(0, 200), 80, 24);
        assert!(start[0].contains("s0") && start[0].contains("running"), "{start:#?}");
        assert_eq!(start.last().unwrap(), "  ⋮  178 steps below: 178 pending");
        assert_eq!(start.len(), 23);

        let end = frame(&long_run(199, 200), 80, 24);
        assert_eq!(end[0], "  ⋮  178 steps above: 178 succeeded");
        assert!(end.last().unwrap().contains("s199"), "{end:#?}");
        assert_eq!(end.len(), 23);
    }

    #[test]
    fn a_rollback_running_at_the_end_of_the_list_is_in_view() {
        let mut board = long_run(60, 100);
        board.add(
            "s60",
            line("s60", "s60", badge(StepStatus::Failed), Some("exit 1")),
            StepStatus::Failed,
        );
        board.add(
            "undo-drain",
            line("undo-drain", "undo-drain", badge(StepStatus::Running), None),
            StepStatus::Running,
        );
        board.last = Some("undo-drain".to_owned());
        let lines = frame(&board, 80, 24);
        assert!(
            lines.iter().any(|l| l.contains("undo-drain") && l.contains("running")),
            "{lines:#?}"
        );
        assert_eq!(lines[0], "  ⋮  79 steps above: 60 succeeded, 1 failed, 18 pending");
        assert!(lines.last().unwrap().contains("undo-drain"), "{lines:#?}");
    }

    #[test]
    fn a_line_wider_than_the_terminal_is_cut_to_one_row() {
        let mut board = board(&[]);
        let detail =
            "exit 1: 主节点复制延迟过高 — replication lag 4.2 s on db-primary-eu-west-1\tretry";
        board.add(
            "promote",
            line(
                "Promote the standby to primary",
                "promote",
                badge(StepStatus::Failed),
                Some(detail),
            ),
            StepStatus::Failed,
        );
        board.footer = "step promote needs a decision: retry, skip, rollback or abort".to_owned();
        for cols in [40, 61, 80] {
            let lines = frame(&board, cols, 24);
            assert_eq!(lines.len(), 2);
            for text in &lines {
                assert!(text.width() < cols, "{cols} columns: {text:?} is {} wide", text.width());
                assert!(!text.contains(['\n', '\t']));
            }
            assert!(lines[0].ends_with('…'), "{:?}", lines[0]);
        }
    }

    #[test]
    fn a_tiny_terminal_still_shows_the_running_step() {
        let lines = frame(&long_run(50, 100), 10, 2);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[1].contains('▶'), "{lines:#?}");
    }

    #[test]
    fn the_window_never_leaves_the_list() {
        for len in 0..40 {
            for room in 3..12 {
                for focus in 0..len.max(1) {
                    let (start, end) = window(len, focus, room);
                    assert!(start <= end && end <= len, "{len} {room} {focus}");
                    let counts = usize::from(start > 0) + usize::from(end < len);
                    assert_eq!(end - start + counts, len.min(room), "{len} {room} {focus}");
                    assert!(len == 0 || (start..end).contains(&focus), "{len} {room} {focus}");
                }
            }
        }
    }
}
