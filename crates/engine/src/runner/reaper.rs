//! Finding and killing everything a step started, including processes that left its group.
//!
//! A step's process runs in its own process group, and killing the group ends most of what it
//! started. A daemon leaves the group (`setsid`), and when its parent exits it is reparented:
//! to init normally, to Steady when Steady is a child subreaper ([`adopt_orphans`], which the
//! `steady` binary calls at start). When a step ends, its family is killed: its group, and
//! every orphan Steady adopted that no step still running can own (with its descendants) — an
//! orphan is spared only while some running step started before it.
//! Adopted orphans that exit are reaped here; Steady's own children belong to tokio and are
//! never touched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Whether this process adopts its steps' orphans (set once by [`adopt_orphans`]).
static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// The step processes this process spawned: tokio owns and reaps them.
static SPAWNED: Mutex<Vec<Spawned>> = Mutex::new(Vec::new());

/// Sessions of orphans already killed: a daemon that keeps forking anew stays in its session,
/// so each new process of it is doomed too, however young.
static DOOMED_SESSIONS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

#[derive(Debug, Clone, Copy)]
struct Spawned {
    pid: i32,
    /// Start time in clock ticks since boot, as `/proc` gives it; 0 until an orphan must be
    /// judged against it (and then, if it cannot be read, "before everything": safe).
    started: u64,
    /// Whether its step is still running.
    running: bool,
}

fn spawned() -> MutexGuard<'static, Vec<Spawned>> {
    SPAWNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes this process the child subreaper of everything its steps start (`PR_SET_CHILD_SUBREAPER`),
/// so that a step's daemons are reparented here rather than to init and can be found and killed
/// when the step ends. For the process that drives runs: the `steady` binary.
///
/// Errors: the system refuses the request (not Linux, or a sandbox forbids it).
pub fn adopt_orphans() -> Result<(), nix::Error> {
    nix::sys::prctl::set_child_subreaper(true)?;
    SUBREAPER.store(true, Ordering::SeqCst);
    Ok(())
}

/// The processes one step started: its child (the leader of its own group) and, through
/// `/proc`, whatever descends from it or was orphaned by it.
#[derive(Debug)]
pub(super) struct Family {
    child: Pid,
}

/// Spawns a step's process and registers it as a running step's child.
pub(super) fn spawn(command: &mut Command) -> std::io::Result<(Child, Family)> {
    // Spawning and registering under one lock, so that a sweep never sees the child
    // unregistered and takes it for an orphan.
    let mut spawned = spawned();
    let child = command.spawn()?;
    let pid = child.id().and_then(|id| i32::try_from(id).ok()).unwrap_or(0);
    // Its start time is read only when an orphan has to be judged against it.
    spawned.push(Spawned { pid, started: 0, running: true });
    Ok((child, Family { child: Pid::from_raw(pid) }))
}

impl Family {
    /// The step's process group (its child leads it).
    pub(super) fn group(&self) -> Pid {
        self.child
    }

    /// Kills the whole family with SIGKILL: the group and, when this process adopts orphans,
    /// every orphan no running step can own, with its descendants.
    pub(super) fn kill(self) {
        let child = self.child.as_raw();
        let _ = killpg(self.child, Signal::SIGKILL);
        {
            let mut spawned = spawned();
            if let Some(entry) = spawned.iter_mut().find(|entry| entry.pid == child) {
                entry.running = false;
            }
        }
        if !SUBREAPER.load(Ordering::SeqCst) {
            return;
        }
        // A process may fork again just before it dies, and its child then escapes this round:
        // go on until a look finds nothing left, for at most a few seconds.
        let mut killed = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let (doomed, settled) = sweep();
            if doomed.is_empty() && settled {
                break;
            }
            killed = true;
            for doomed in &doomed {
                kill_with_group(*doomed);
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if killed && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // The orphans just killed become zombies of this process: reap them once dead, and
            // kill what a still-running step could have owned once no such step is left.
            runtime.spawn(async {
                for _ in 0..5 {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    for pid in sweep().0 {
                        kill_with_group(pid);
                    }
                }
            });
        }
    }
}

/// Kills an orphan and, when it leads a process group of its own (a daemon that called
/// `setsid`), that whole group at once: a daemon forking anew in a loop keeps its group, and
/// killing the group leaves it no window to fork away in.
fn kill_with_group((pid, group): (i32, i32)) {
    if group > 1 && group != nix::unistd::getpgrp().as_raw() {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Looks at this process's adopted orphans: reaps those that exited, and returns those (with
/// their descendants) that no running step can own. Forgets spawned children that are gone.
/// Costs one read of this process's child list when there is nothing to do, which is the rule.
/// Also says whether the look was settled: an orphan that vanished between reading the child
/// list and the process table was likely forking on, so the caller looks again.
fn sweep() -> (Vec<(i32, i32)>, bool) {
    let children = children_of_self();
    let mut spawned = spawned();
    spawned.retain(|entry| entry.running || children.contains(&entry.pid));
    let strangers: Vec<i32> = children
        .iter()
        .copied()
        .filter(|pid| !spawned.iter().any(|entry| entry.pid == *pid))
        .collect();
    if strangers.is_empty() {
        return (Vec::new(), true);
    }
    let table = ProcessTable::read();
    for entry in spawned.iter_mut().filter(|entry| entry.running && entry.started == 0) {
        entry.started = table.get(entry.pid).map_or(0, |stat| stat.started);
    }
    // An orphan started before every running step cannot be theirs.
    let oldest_running = spawned.iter().filter(|entry| entry.running).map(|e| e.started).min();
    let own_session = table.get(std::process::id() as i32).map(|stat| stat.session);
    let mut sessions = DOOMED_SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    let mut doomed = Vec::new();
    let settled = strangers.iter().all(|pid| table.get(*pid).is_some());
    for stat in strangers.iter().filter_map(|pid| table.get(*pid)) {
        if stat.state == 'Z' {
            let _ = waitpid(Pid::from_raw(stat.pid), Some(WaitPidFlag::WNOHANG));
        } else if oldest_running.is_none_or(|oldest| stat.started < oldest)
            || sessions.contains(&stat.session)
        {
            doomed.push((stat.pid, stat.group));
            doomed.extend(
                table
                    .descendants(stat.pid)
                    .into_iter()
                    .filter_map(|pid| table.get(pid))
                    .map(|s| (s.pid, s.group)),
            );
            if Some(stat.session) != own_session && !sessions.contains(&stat.session) {
                // Bounded: session ids are reused, and old ones matter no more.
                if sessions.len() >= 1024 {
                    sessions.remove(0);
                }
                sessions.push(stat.session);
            }
        }
    }
    (doomed, settled)
}

/// The pids of this process's children that can be orphans, zombies included. The kernel gives
/// adopted orphans to the main thread, so its `children` list is enough (children that other
/// threads spawned are steps, which are known anyway); where the kernel keeps no such list, the
/// whole process table is read.
fn children_of_self() -> Vec<i32> {
    let me = std::process::id();
    match std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")) {
        Ok(list) => list.split_whitespace().filter_map(|pid| pid.parse().ok()).collect(),
        Err(_) => {
            let me = std::process::id() as i32;
            ProcessTable::read()
                .processes
                .iter()
                .filter(|stat| stat.ppid == me)
                .map(|stat| stat.pid)
                .collect()
        }
    }
}

/// One line of `/proc/<pid>/stat`, the fields used here.
#[derive(Debug, Clone, Copy)]
struct Stat {
    pid: i32,
    state: char,
    ppid: i32,
    group: i32,
    session: i32,
    started: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        group: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
}

/// Every process visible in `/proc` at one moment.
#[derive(Debug, Default)]
struct ProcessTable {
    processes: Vec<Stat>,
}

impl ProcessTable {
    fn read() -> ProcessTable {
        let Ok(entries) = std::fs::read_dir("/proc") else { return ProcessTable::default() };
        let processes = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(read_stat)
            .collect();
        ProcessTable { processes }
    }

    fn get(&self, pid: i32) -> Option<&Stat> {
        self.processes.iter().find(|stat| stat.pid == pid)
    }

    /// Every process below `pid` in the parent tree, not `pid` itself.
    fn descendants(&self, pid: i32) -> Vec<i32> {
        let mut found = vec![pid];
        let mut at = 0;
        while at < found.len() {
            let parent = found[at];
            found.extend(
                self.processes.iter().filter(|stat| stat.ppid == parent).map(|stat| stat.pid),
            );
            at += 1;
        }
        found.remove(0);
        found
    }
}
