//! Step runners: the effects. A `run` step is a process in its own process group, killed as a
//! group on timeout or interruption; an `http` step is one request; a `sleep` step waits.
//! Each returns what happened; deciding what that means for the run is the executor's job.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::watch;

use crate::run::MAX_OUTPUT;

/// Why a running step must stop early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stop {
    #[default]
    No,
    /// Finish the step that is running, then stop driving (a first Ctrl-C).
    AfterStep,
    /// The run was cancelled.
    Cancel,
    /// The driver is going away (a second Ctrl-C, a lost lease): the step is interrupted.
    Interrupt,
}

/// A step's rendered effect, with real secret values: never stored or shown.
#[derive(Debug, Clone)]
pub enum Effect {
    Argv(Vec<String>),
    Shell(String),
    Http { method: String, url: String, headers: Vec<(String, String)>, body: Option<HttpBody> },
    Sleep(Duration),
}

#[derive(Debug, Clone)]
pub enum HttpBody {
    Json(serde_json::Value),
    Text(String),
}

/// How an effect ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It ran to its end; whether that is success is for `expect` to say.
    Completed,
    TimedOut,
    Stopped(Stop),
    /// It could not be started or the request could not be made.
    Error,
}

/// What an effect produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub ending: Ending,
    pub exit_code: Option<i32>,
    pub http_status: Option<u16>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub error: Option<String>,
}

impl Output {
    fn ended(ending: Ending) -> Output {
        Output {
            ending,
            exit_code: None,
            http_status: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            error: None,
        }
    }

    fn error(message: String) -> Output {
        Output { error: Some(message), ..Output::ended(Ending::Error) }
    }
}

/// Carries out an effect within `timeout`, stopping early when `stop` says so.
pub async fn execute(
    effect: &Effect,
    env: &[(String, String)],
    timeout: Duration,
    http: &reqwest::Client,
    stop: &mut watch::Receiver<Stop>,
) -> Output {
    match effect {
        Effect::Argv(argv) => {
            let Some((program, args)) = argv.split_first() else {
                return Output::error("empty command".to_owned());
            };
            let mut command = Command::new(program);
            command.args(args);
            run_process(command, env, timeout, stop).await
        }
        Effect::Shell(line) => {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(line);
            run_process(command, env, timeout, stop).await
        }
        Effect::Http { method, url, headers, body } => {
            request(http, method, url, headers, body.as_ref(), timeout, stop).await
        }
        Effect::Sleep(duration) => tokio::select! {
            () = tokio::time::sleep(*duration) => Output::ended(Ending::Completed),
            stopped = stopped(stop) => Output::ended(Ending::Stopped(stopped)),
        },
    }
}

/// Resolves when `stop` asks a step to stop, with the reason.
async fn stopped(stop: &mut watch::Receiver<Stop>) -> Stop {
    loop {
        let current = *stop.borrow_and_update();
        if matches!(current, Stop::Cancel | Stop::Interrupt) {
            return current;
        }
        if stop.changed().await.is_err() {
            // Nobody can ask any more: never stop.
            std::future::pending::<()>().await;
        }
    }
}

async fn run_process(
    mut command: Command,
    env: &[(String, String)],
    timeout: Duration,
    stop: &mut watch::Receiver<Stop>,
) -> Output {
    command
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => return Output::error(format!("cannot start the command: {error}")),
    };
    let group = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    // Whatever happens to this future (its driver stopping, the process dying), nothing the
    // step started outlives it: the group is killed when the guard goes.
    let _group_guard = GroupGuard(group);
    let stdout = Captured::default();
    let stderr = Captured::default();
    let readers = [
        tokio::spawn(read_bounded(child.stdout.take(), stdout.clone())),
        tokio::spawn(read_bounded(child.stderr.take(), stderr.clone())),
    ];

    let ending = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ok(status),
            Err(error) => Err(Output::error(format!("cannot wait for the command: {error}"))),
        },
        () = tokio::time::sleep(timeout) => Err(Output::ended(Ending::TimedOut)),
        stopped = stopped(stop) => Err(Output::ended(Ending::Stopped(stopped))),
    };
    let mut output = match ending {
        Ok(status) => {
            let mut output = Output::ended(Ending::Completed);
            output.exit_code = status.code().or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                status.signal().map(|signal| 128 + signal)
            });
            output
        }
        Err(output) => {
            if let Some(group) = group {
                terminate_group(group, &mut child).await;
            }
            output
        }
    };
    // Whatever the command left running in its group goes too, so that no stray process
    // keeps the pipes open (or keeps changing things) after the step has ended.
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    // A process that left the group can still hold a pipe open: keep what was read by then.
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), reader).await.is_err() {
            abort.abort();
        }
    }
    (output.stdout, output.stdout_truncated) = stdout.take();
    (output.stderr, output.stderr_truncated) = stderr.take();
    output
}

/// Kills a process group when dropped.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = killpg(group, Signal::SIGKILL);
        }
    }
}

/// What a reader captured of one stream so far, readable even if the reader never finishes.
#[derive(Debug, Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<(Vec<u8>, bool)>>);

impl Captured {
    fn take(&self) -> (Vec<u8>, bool) {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// SIGTERM to the whole group, then SIGKILL if it has not gone within a grace period.
async fn terminate_group(group: Pid, child: &mut tokio::process::Child) {
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(Duration::from_secs(3), child.wait()).await.is_err() {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

/// Reads a stream to its end into `captured`, keeping at most `MAX_OUTPUT` bytes.
async fn read_bounded(stream: Option<impl AsyncRead + Unpin>, captured: Captured) {
    let Some(mut stream) = stream else { return };
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let mut kept = captured.0.lock().unwrap_or_else(|e| e.into_inner());
                let room = MAX_OUTPUT.saturating_sub(kept.0.len());
                kept.0.extend_from_slice(&buffer[..read.min(room)]);
                kept.1 |= read > room;
            }
        }
    }
}

async fn request(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&HttpBody>,
    timeout: Duration,
    stop: &mut watch::Receiver<Stop>,
) -> Output {
    let method = match reqwest::Method::from_bytes(method.as_bytes()) {
        Ok(method) => method,
        Err(_) => return Output::error(format!("invalid HTTP method `{method}`")),
    };
    let mut builder = http.request(method, url).timeout(timeout);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder = match body {
        Some(HttpBody::Json(json)) => builder.json(json),
        Some(HttpBody::Text(text)) => builder.body(text.clone()),
        None => builder,
    };
    let exchange = async {
        let mut response = builder.send().await?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await? {
            let room = MAX_OUTPUT.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            truncated |= chunk.len() > room;
        }
        Ok::<_, reqwest::Error>((status, body, truncated))
    };
    tokio::select! {
        result = exchange => match result {
            Ok((status, body, truncated)) => Output {
                http_status: Some(status),
                stdout: body,
                stdout_truncated: truncated,
                ..Output::ended(Ending::Completed)
            },
            Err(error) if error.is_timeout() => Output::ended(Ending::TimedOut),
            Err(error) => Output::error(format!("request failed: {}", describe_http_error(&error))),
        },
        stopped = stopped(stop) => Output::ended(Ending::Stopped(stopped)),
    }
}

/// reqwest's message with its causes, which say what actually went wrong (refused, DNS, TLS).
fn describe_http_error(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
