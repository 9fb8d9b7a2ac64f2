//! The step list of `steady run` on a TTY, fitted to the screen: one row a step, and a list
//! taller than the screen shown around the step being worked on. The terminal redraws it in
//! place by moving the cursor back up over the rows it drew, which works only while every
//! row drawn is still on the screen and took exactly one row.

use std::collections::BTreeMap;

use steady_engine::run::StepStatus;
use steady_engine::runbook::Step;
use unicode_width::UnicodeWidthChar as _;

use super::{badge, printable};

/// The step list as drawn, and how many rows of the screen it took last time.
#[derive(Debug, Default)]
pub(super) struct Board {
    /// Step ids in the order shown: the runbook's steps, then any that appear later
    /// (rollback steps, fan-out items, branches).
    order: Vec<String>,
    steps: BTreeMap<String, Entry>,
    /// The step whose row changed last.
    last: Option<String>,
    /// Lines about the run as a whole, under the steps.
    pub(super) footer: String,
    /// Rows drawn last time, which the next redraw goes back up over.
    pub(super) drawn: usize,
    /// A question is open under the board: nothing redraws over it.
    pub(super) asking: bool,
}

/// One step's row: what it shows, and the status it counts as.
#[derive(Debug)]
pub(super) struct Entry {
    status: StepStatus,
    badge: &'static str,
    id: String,
    /// The step's name, where it has one other than its id.
    name: Option<String>,
    detail: Option<String>,
}

impl Entry {
    /// `step` in `status`, with `detail` (an exit code, what it waits for) after its name.
    pub(super) fn new(status: StepStatus, step: &Step, detail: Option<&str>) -> Entry {
        let name = (step.title() != step.id).then(|| one_row(step.title()));
        Entry {
            status,
            badge: badge(status),
            id: one_row(&step.id),
            name,
            detail: detail.map(one_row),
        }
    }

    /// The same row under another badge (`↻  retrying` between attempts).
    pub(super) fn with_badge(self, badge: &'static str) -> Entry {
        Entry { badge, ..self }
    }

    /// The row in at most `width` columns: `  ✗  failed        Promote the standby (promote) —
    /// exit code 1`. The name gives way first, then an id of over 24 columns, then the end of
    /// the detail: the id is what a person types to act on the step, and the detail says why
    /// it is where it is. Under 48 columns the badge loses its padding.
    fn row(&self, width: usize) -> String {
        const LONG_ID: usize = 24;
        let head =
            if width >= 48 { format!("  {:<16} ", self.badge) } else { format!("{} ", self.badge) };
        let tail = self.detail.as_ref().map(|detail| format!(" — {detail}")).unwrap_or_default();
        let bare = format!("{head}{}{tail}", self.id);
        if let Some(name) = &self.name {
            let whole = format!("{head}{name} ({}){tail}", self.id);
            if columns(&whole) <= width {
                return whole;
            }
            // What the name may have: the row without it, less the space and brackets it brings.
            let room = width.saturating_sub(columns(&bare) + 3);
            if room >= 8 {
                return format!("{head}{} ({}){tail}", fit(name, room), self.id);
            }
        }
        if columns(&bare) <= width {
            return bare;
        }
        // An id too long for the row loses its middle, where ids that share a prefix and a
        // number at the end do not differ; beside a detail, down to 24 columns.
        let room = width.saturating_sub(columns(&head) + columns(&tail));
        let id_room = if tail.is_empty() { room } else { room.max(LONG_ID.min(columns(&self.id))) };
        fit(&format!("{head}{}{tail}", fit_middle(&self.id, id_room)), width)
    }
}

/// Text made to take one row: line breaks and tabs become spaces, and control characters
/// escapes ([`printable`]).
fn one_row(text: &str) -> String {
    printable(text).replace(['\n', '\t'], " ")
}

impl Board {
    /// Sets a step's row, adding the step at the end of the list when it is new.
    pub(super) fn set(&mut self, entry: Entry) {
        let id = entry.id.clone();
        if self.steps.insert(id.clone(), entry).is_none() {
            self.order.push(id.clone());
        }
        self.last = Some(id);
    }
}

/// The rows to show of `board` on a terminal `cols` wide and `rows` high, at most
/// `rows - 2`: a board that starts on the top row is wiped by a clear from the top of the
/// screen, which some terminals (tmux) copy into the scrollback each time. The footer comes
/// first; when the steps do not all fit above it, the window around the step being worked on,
/// with one row counting the steps above it and one those below, by status, naming the
/// failed ones.
pub(super) fn frame(board: &Board, cols: usize, rows: usize) -> Vec<String> {
    const PINNED: usize = 2;
    let width = cols.saturating_sub(1);
    let budget = rows.saturating_sub(2);
    let footer: Vec<String> =
        board.footer.lines().flat_map(|line| wrap(line, width)).take(budget).collect();
    let room = budget - footer.len();
    let entries: Vec<&Entry> = board.order.iter().filter_map(|id| board.steps.get(id)).collect();
    let focus = focus(board);
    // Steps that ended badly keep a row of their own, with their reason, out of the window.
    let outside = |(start, end): (usize, usize)| -> Vec<usize> {
        (0..entries.len())
            .filter(|n| !(start..end).contains(n) && named(entries[*n].status))
            .collect()
    };
    let mut shown = window(entries.len(), focus, room);
    let mut pinned = Vec::new();
    let wanted = outside(shown).len().min(PINNED);
    if wanted > 0 && room >= 3 + wanted {
        shown = window(entries.len(), focus, room - wanted);
        let left = outside(shown);
        pinned = left[left.len().saturating_sub(wanted)..].to_vec();
    }
    let (start, end) = shown;
    let counted = room >= 3;
    let row = |n: &usize| entries[*n].row(width);
    let mut lines = Vec::with_capacity(budget);
    if counted && start > 0 {
        lines.push(fit(&tally(&entries[..start], "above"), width));
    }
    lines.extend(pinned.iter().filter(|n| **n < start).map(row));
    lines.extend((start..end).map(|n| row(&n)));
    lines.extend(pinned.iter().filter(|n| **n >= end).map(row));
    if counted && end < entries.len() {
        lines.push(fit(&tally(&entries[end..], "below"), width));
    }
    lines.extend(footer);
    lines
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

/// The steps `start..end` of `len` to show in `room` rows, keeping `focus` a third of the way
/// down. With 3 rows or more, the rows that count the steps above and below come out of
/// `room`; with fewer there are no counts, and only the focus is shown.
fn window(len: usize, focus: usize, room: usize) -> (usize, usize) {
    if len <= room {
        return (0, len);
    }
    let focus = focus.min(len - 1);
    if room < 3 {
        return (focus, focus + room.min(1));
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

/// The statuses whose steps a count names: a person looks for these.
fn named(status: StepStatus) -> bool {
    status.is_failure() || status == StepStatus::Interrupted
}

/// One row counting `entries` by status, naming the steps that ended badly:
/// `  ⋮  109 steps above: 107 succeeded, 1 failed (promote), 1 skipped`.
fn tally(entries: &[&Entry], place: &str) -> String {
    const NAMED: usize = 3;
    let mut counts: Vec<(StepStatus, Vec<&str>)> = Vec::new();
    for entry in entries {
        match counts.iter_mut().find(|(status, _)| *status == entry.status) {
            Some((_, ids)) => ids.push(&entry.id),
            None => counts.push((entry.status, vec![&entry.id])),
        }
    }
    // What ended badly first, where a narrow row is not cut.
    counts.sort_by_key(|(status, _)| !named(*status));
    let counts: Vec<String> = counts
        .iter()
        .map(|(status, ids)| {
            let word = badge(*status).split_once(' ').map_or("", |(_, word)| word.trim_start());
            if !named(*status) {
                return format!("{} {word}", ids.len());
            }
            let more = if ids.len() > NAMED { ", …" } else { "" };
            let names = ids.iter().take(NAMED).copied().collect::<Vec<_>>().join(", ");
            format!("{} {word} ({names}{more})", ids.len())
        })
        .collect();
    let noun = if entries.len() == 1 { "step" } else { "steps" };
    format!("  ⋮  {} {noun} {place}: {}", entries.len(), counts.join(", "))
}

/// The columns `text` takes, counted the way a terminal that draws each character on its own
/// counts them: wide characters two, a character made an emoji by U+FE0F two. Joined emoji
/// count as their parts, more than a terminal that joins them draws, so a row is never wider.
fn columns(text: &str) -> usize {
    text.chars().map(char_columns).sum()
}

fn char_columns(c: char) -> usize {
    if c == '\u{FE0F}' { 1 } else { c.width().unwrap_or(0) }
}

/// `text` in rows of at most `width` columns ([`columns`]), broken at spaces where it can be.
fn wrap(text: &str, width: usize) -> Vec<String> {
    if width == 0 {
        return Vec::new();
    }
    let mut rows: Vec<String> = Vec::new();
    let mut row = String::new();
    for word in text.split(' ') {
        let gap = usize::from(!row.is_empty());
        if columns(&row) + gap + columns(word) <= width {
            if gap == 1 {
                row.push(' ');
            }
            row.push_str(word);
            continue;
        }
        if !row.is_empty() {
            rows.push(std::mem::take(&mut row));
        }
        for c in word.chars() {
            if columns(&row) + char_columns(c) > width {
                rows.push(std::mem::take(&mut row));
            }
            row.push(c);
        }
    }
    rows.push(row);
    rows
}

/// `text` in `width` columns ([`columns`]), its middle replaced by `…` when it is longer.
fn fit_middle(text: &str, width: usize) -> String {
    if columns(text) <= width || width < 3 {
        return fit(text, width);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut end = chars.len();
    let mut used = 0;
    // The end gets half the room (less the `…`), the start the rest.
    while end > 0 && used + char_columns(chars[end - 1]) <= (width - 1) / 2 {
        end -= 1;
        used += char_columns(chars[end]);
    }
    let head = fit(&chars[..end].iter().collect::<String>(), width - used);
    let head = head.strip_suffix('…').unwrap_or(&head).to_owned();
    format!("{head}…{}", chars[end..].iter().collect::<String>())
}

/// `text` cut to `width` columns ([`columns`]), ending in `…` where it was cut.
fn fit(text: &str, width: usize) -> String {
    if columns(text) <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_columns(c);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    if width > 0 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use steady_engine::runbook::Runbook;

    use super::*;

    /// The steps of a runbook (ids `s0`… unless `names` gives them names) in the statuses
    /// given, as the observer would have set them.
    fn runbook(len: usize, named: bool) -> Runbook {
        let mut yaml = String::from("name: board\ndescription: the board's steps\nsteps:\n");
        for n in 0..len {
            yaml += &format!("  - id: s{n}\n    run: [\"true\"]\n");
            if named {
                yaml += &format!("    name: Drain the connection pool of db-{n} in eu-west-1\n");
            }
        }
        steady_engine::runbook::parse(&yaml).runbook.expect("a valid runbook")
    }

    /// A run of `len` steps, the first `done` succeeded, the next running, the rest pending.
    fn long_run(done: usize, len: usize) -> (Runbook, Board) {
        let book = runbook(len, false);
        let mut board = Board::default();
        for (n, step) in book.steps.iter().enumerate() {
            let status = match n.cmp(&done) {
                std::cmp::Ordering::Less => StepStatus::Succeeded,
                std::cmp::Ordering::Equal => StepStatus::Running,
                std::cmp::Ordering::Greater => StepStatus::Pending,
            };
            board.set(Entry::new(status, step, None));
        }
        // The running step changed last, as it would have.
        if let Some(step) = book.steps.get(done) {
            board.set(Entry::new(StepStatus::Running, step, None));
        }
        (book, board)
    }

    fn assert_fits(lines: &[String], cols: usize, rows: usize) {
        assert!(
            lines.len() <= rows.saturating_sub(2),
            "{} rows on a {rows}-row screen",
            lines.len()
        );
        for line in lines {
            assert!(
                columns(line) < cols.max(1),
                "{cols} columns: {line:?} takes {}",
                columns(line)
            );
        }
    }

    #[test]
    fn a_short_run_is_drawn_whole() {
        let (_, mut board) = long_run(1, 3);
        board.footer = "run ▶ running".to_owned();
        let lines = frame(&board, 80, 24);
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1], "  ▶  running       s1");
        assert_eq!(lines[3], "run ▶ running");
    }

    #[test]
    fn a_commander_at_a_small_terminal_sees_the_running_step_of_a_long_run_and_a_count_of_the_rest()
    {
        let (_, mut board) = long_run(120, 200);
        board.footer = "run ▶ running".to_owned();
        let lines = frame(&board, 80, 24);
        assert_fits(&lines, 80, 24);
        assert_eq!(lines.len(), 22, "the screen but its top and bottom rows: {lines:#?}");
        assert_eq!(lines[0], "  ⋮  114 steps above: 114 succeeded");
        let running =
            lines.iter().position(|l| l.ends_with(" s120")).expect("the running step is shown");
        assert!(lines[running].contains("▶  running"));
        assert_eq!(running, 7, "after the steps that just ran");
        assert_eq!(lines[20], "  ⋮  67 steps below: 67 pending");
        assert_eq!(lines[21], "run ▶ running");
    }

    #[test]
    fn the_first_and_last_steps_of_a_long_run_need_only_one_count() {
        let (_, board) = long_run(0, 200);
        let start = frame(&board, 80, 24);
        assert_eq!(start[0], "  ▶  running       s0");
        assert_eq!(start.last().unwrap(), "  ⋮  179 steps below: 179 pending");
        assert_eq!(start.len(), 22);

        let (_, board) = long_run(199, 200);
        let end = frame(&board, 80, 24);
        assert_eq!(end[0], "  ⋮  179 steps above: 179 succeeded");
        assert_eq!(end.last().unwrap(), "  ▶  running       s199");
        assert_eq!(end.len(), 22);
    }

    #[test]
    fn a_failed_step_scrolled_out_of_view_by_a_rollback_is_still_named() {
        let (book, mut board) = long_run(60, 100);
        board.set(Entry::new(StepStatus::Failed, &book.steps[60], Some("exit code 1, expected 0")));
        let undo = runbook(1, false);
        let mut undo_step = undo.steps[0].clone();
        undo_step.id = "undo_drain".to_owned();
        board.set(Entry::new(StepStatus::Running, &undo_step, None));
        let lines = frame(&board, 80, 24);
        assert_eq!(lines[0], "  ⋮  81 steps above: 1 failed (s60), 60 succeeded, 20 pending");
        assert_eq!(
            lines[1], "  ✗  failed        s60 — exit code 1, expected 0",
            "kept in view with its reason"
        );
        assert_eq!(lines.len(), 22);
        assert_eq!(lines.last().unwrap(), "  ▶  running       undo_drain");
    }

    #[test]
    fn a_long_name_gives_way_to_the_id_and_the_reason() {
        let book = runbook(1, true);
        let entry = Entry::new(StepStatus::Failed, &book.steps[0], Some("exit code 1, expected 0"));
        assert_eq!(
            entry.row(200),
            "  ✗  failed        Drain the connection pool of db-0 in eu-west-1 (s0) — exit code 1, expected 0"
        );
        assert_eq!(
            entry.row(79),
            "  ✗  failed        Drain the connection pool of… (s0) — exit code 1, expected 0"
        );
        assert_eq!(entry.row(50), "  ✗  failed        s0 — exit code 1, expected 0");
        assert_eq!(entry.row(30), "✗  failed s0 — exit code 1, e…", "no padding when narrow");
    }

    #[test]
    fn wide_characters_line_breaks_and_emoji_never_make_a_row_wrap() {
        let mut yaml = String::from("name: wide\ndescription: x\nsteps:\n");
        yaml += "  - id: promote\n    name: 主节点复制延迟过高 👨‍👩‍👧‍👦 ❤️❤️❤️❤️❤️❤️❤️❤️ promote the standby\n    run: [\"true\"]\n";
        let book = steady_engine::runbook::parse(&yaml).runbook.expect("a valid runbook");
        let mut board = Board::default();
        board.set(Entry::new(StepStatus::Failed, &book.steps[0], Some("exit 1:\nlag\t4.2 s")));
        board.footer = "step promote needs a decision: retry, skip, rollback or abort".to_owned();
        for cols in [1, 2, 12, 20, 40, 61, 80] {
            let lines = frame(&board, cols, 24);
            assert_fits(&lines, cols, 24);
            assert!(lines.iter().all(|l| !l.contains(['\n', '\t'])), "{lines:#?}");
        }
        for text in ["主节点复制延迟过高 👨‍👩‍👧‍👦 ❤️❤️❤️ promote_the_standby_now", "s1", ""]
        {
            for width in 0..50 {
                let cut = fit_middle(text, width);
                assert!(columns(&cut) <= width, "{width}: {cut:?}");
            }
        }
        assert_eq!(frame(&board, 40, 24)[0], "✗  failed promote — exit 1: lag 4.2 s");
        let row = &frame(&board, 80, 24)[0];
        assert!(row.ends_with("… (promote) — exit 1: lag 4.2 s"), "{row}");
    }

    #[test]
    fn a_long_id_and_a_long_footer_still_say_what_failed_and_what_to_do() {
        let id = "verify_replication_lag_on_every_replica_of_the_primary_cluster_eu_west_1";
        let yaml = format!(
            "name: x\ndescription: x\nsteps:\n  - id: {id}\n    name: Promote the standby\n    run: [\"true\"]\n"
        );
        let book = steady_engine::runbook::parse(&yaml).runbook.expect("a valid runbook");
        let mut board = Board::default();
        board.set(Entry::new(StepStatus::Failed, &book.steps[0], Some("exit code 3, expected 0")));
        board.footer = format!("step {id} needs a decision: retry, skip, rollback or abort");
        let lines = frame(&board, 80, 24);
        assert_fits(&lines, 80, 24);
        assert_eq!(
            lines[0],
            "  ✗  failed        verify_replicatio…luster_eu_west_1 — exit code 3, expected 0"
        );
        assert_eq!(
            lines[1..],
            [
                "step verify_replication_lag_on_every_replica_of_the_primary_cluster_eu_west_1",
                "needs a decision: retry, skip, rollback or abort"
            ],
            "the footer wraps instead of losing its end"
        );
    }

    #[test]
    fn steps_whose_ids_share_a_long_prefix_stay_apart() {
        let prefix = "verify_replication_lag_on_every_replica_of_the_primary_cluster_eu_west_1";
        let mut yaml = String::from("name: x\ndescription: x\nsteps:\n");
        for n in [7, 17] {
            yaml += &format!("  - id: {prefix}_{n}\n    run: [\"true\"]\n");
        }
        let book = steady_engine::runbook::parse(&yaml).runbook.expect("a valid runbook");
        let rows: Vec<String> = book
            .steps
            .iter()
            .map(|step| Entry::new(StepStatus::Succeeded, step, None).row(60))
            .collect();
        assert_eq!(rows[0], "  ✓  succeeded     verify_replication_l…_cluster_eu_west_1_7");
        assert_eq!(rows[1], "  ✓  succeeded     verify_replication_l…cluster_eu_west_1_17");
    }

    #[test]
    fn escapes_in_a_name_or_in_a_command_s_output_are_shown_not_obeyed() {
        let yaml = "name: x\ndescription: x\nsteps:\n  - id: wipe\n    name: \"\\e[2J\\e]0;pwned\\a\"\n    run: [\"true\"]\n";
        let book = steady_engine::runbook::parse(yaml).runbook.expect("a valid runbook");
        let entry =
            Entry::new(StepStatus::Failed, &book.steps[0], Some("exit 1: \u{1b}[31mred\r\u{1b}[K"));
        let row = entry.row(200);
        assert!(!row.contains(['\u{1b}', '\u{7}', '\r']), "{row:?}");
        assert_eq!(
            row,
            "  ✗  failed        \\x1b[2J\\x1b]0;pwned\\x07 (wipe) — exit 1: \\x1b[31mred\\x0d\\x1b[K"
        );
    }

    #[test]
    fn a_tiny_terminal_gets_what_fits_and_never_more() {
        let (_, mut board) = long_run(50, 100);
        for (cols, rows) in [(20, 3), (15, 6), (10, 2), (0, 0), (80, 4)] {
            assert_fits(&frame(&board, cols, rows), cols, rows);
        }
        assert_eq!(frame(&board, 40, 3), vec!["▶  running s50"]);
        board.footer = "rolling back".to_owned();
        assert_eq!(frame(&board, 40, 3), vec!["rolling back"], "the footer first");
        assert_eq!(frame(&board, 40, 4), vec!["▶  running s50", "rolling back"]);
    }

    #[test]
    fn the_window_never_leaves_the_list_and_shows_or_counts_every_step() {
        for len in 0..40 {
            for room in 0..12 {
                for focus in 0..len.max(1) {
                    let (start, end) = window(len, focus, room);
                    assert!(start <= end && end <= len, "{len} {room} {focus}");
                    if room >= 3 {
                        let counts = usize::from(start > 0) + usize::from(end < len);
                        assert_eq!(end - start + counts, len.min(room), "{len} {room} {focus}");
                    } else {
                        assert!(end - start <= room, "{len} {room} {focus}");
                    }
                    if len > 0 && room > 0 {
                        assert!((start..end).contains(&focus), "{len} {room} {focus}");
                    }
                }
            }
        }
    }
}
