//! Step runners: the effects. A `run` step is a process in its own process group with a clean
//! environment; when the step ends (or times out, or is cancelled) everything it started is
//! killed, including descendants that left its group (`reaper`). An `http` step is one request
//! that follows no redirect across origins and sends no `Referer`; a `sleep` step waits.
//! Each returns what happened; deciding what that means for the run is the executor's job.
//!
//! Effects carry real secret values. Nothing here stores or shows anything: error texts never
//! include the request's URL (the client's rendering of it can hold a secret in forms masking
//! would have to guess), and the executor masks every byte before it is stored.

mod reaper;

pub use reaper::adopt_orphans;

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use reqwest::redirect;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::watch;

/// The variables of Steady's own environment a step's process inherits; everything else it
/// gets comes from the step's `env`. Steady's configuration (`STEADY_DB`,
/// `STEADY_ADMIN_PASSWORD`, `STEADY_SECRET_*`) never reaches a step.
pub const INHERITED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "TZ", "USER"];

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

/// What an effect produced. Carries real values: the executor masks it before keeping any.
#[derive(Debug, Clone)]
pub struct Output {
    pub ending: Ending,
    /// The process's exit code; `None` when a signal ended it (see `signal`).
    pub exit_code: Option<i32>,
    /// The signal that ended the process, such as `SIGTERM`.
    pub signal: Option<&'static str>,
    pub http_status: Option<u16>,
    /// The URL that answered an `http` step, after the redirects it was allowed to follow.
    pub final_url: Option<String>,
    /// Where a redirect that was not followed pointed (`Location`).
    pub location: Option<String>,
    /// Captured output, at most the capture limit given to [`execute`].
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Whether the stream went on past the capture limit.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub error: Option<String>,
}

impl Output {
    /// An effect that ended so, with nothing captured.
    pub fn ended(ending: Ending) -> Output {
        Output {
            ending,
            exit_code: None,
            signal: None,
            http_status: None,
            final_url: None,
            location: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            stdout_truncated: false,
            stderr_truncated: false,
            error: None,
        }
    }

    /// An effect that could not be started or made, for this reason.
    pub fn error(message: String) -> Output {
        Output { error: Some(message), ..Output::ended(Ending::Error) }
    }
}

/// The HTTP clients of `http` steps: one that follows no redirect, for methods with a body,
/// and one that follows redirects within the same origin, for GET and HEAD. Neither sends a
/// `Referer`, so a URL with a secret in its query string never travels to another server.
#[derive(Debug, Clone)]
pub struct HttpClients {
    direct: reqwest::Client,
    same_origin: reqwest::Client,
}

impl HttpClients {
    pub fn new() -> HttpClients {
        let same_origin = redirect::Policy::custom(|attempt| {
            let same = attempt
                .previous()
                .last()
                .is_some_and(|from| from.origin() == attempt.url().origin());
            if same && attempt.previous().len() < 10 { attempt.follow() } else { attempt.stop() }
        });
        let build = |policy| {
            reqwest::Client::builder()
                .redirect(policy)
                .referer(false)
                .build()
                .unwrap_or_else(|_| reqwest::Client::new())
        };
        HttpClients { direct: build(redirect::Policy::none()), same_origin: build(same_origin) }
    }
}

impl Default for HttpClients {
    fn default() -> Self {
        HttpClients::new()
    }
}

/// One attempt's effect, as a driver hands it to [`Effects`].
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The step's id: a branch's own, or an item's (`restart[3]`).
    pub step_id: &'a str,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// What to do, with real secret values.
    pub effect: &'a Effect,
    /// The step's own environment, added to [`INHERITED_ENV`].
    pub env: &'a [(String, String)],
    /// How long the effect may take before it is stopped as timed out.
    pub timeout: Duration,
    /// Output beyond this many bytes per stream is dropped (and reported as truncated).
    pub capture: usize,
}

/// Where effects happen: the [`World`] a server or a terminal run acts on, or the stubs of a
/// runbook test (`testing`), which answer what the test file says instead.
#[async_trait::async_trait]
pub trait Effects: Send + Sync + std::fmt::Debug {
    /// Carries out `call`, stopping early when `stop` says so.
    async fn execute(&self, call: Call<'_>, stop: &mut watch::Receiver<Stop>) -> Output;
}

/// The real world: processes, HTTP requests and sleeps.
#[derive(Debug, Default)]
pub struct World {
    http: HttpClients,
}

#[async_trait::async_trait]
impl Effects for World {
    async fn execute(&self, call: Call<'_>, stop: &mut watch::Receiver<Stop>) -> Output {
        execute(call.effect, call.env, call.timeout, &self.http, call.capture, stop).await
    }
}

/// Carries out an effect within `timeout`, stopping early when `stop` says so. `env` is the
/// step's own environment, added to [`INHERITED_ENV`]; output beyond `capture` bytes per stream
/// is dropped (and reported as truncated).
pub async fn execute(
    effect: &Effect,
    env: &[(String, String)],
    timeout: Duration,
    http: &HttpClients,
    capture: usize,
    stop: &mut watch::Receiver<Stop>,
) -> Output {
    match effect {
        Effect::Argv(argv) => {
            let Some((program, args)) = argv.split_first() else {
                return Output::error("empty command".to_owned());
            };
            let mut command = Command::new(locate(program, env));
            // The program sees the name the runbook gave it, not the path it was found at.
            command.arg0(program).args(args);
            run_process(command, env, timeout, capture, stop).await
        }
        Effect::Shell(line) => {
            let mut command = Command::new("/bin/sh");
            command.arg("-c").arg(line);
            run_process(command, env, timeout, capture, stop).await
        }
        Effect::Http { method, url, headers, body } => {
            request(http, method, url, headers, body.as_ref(), timeout, capture, stop).await
        }
        Effect::Sleep(duration) => tokio::select! {
            () = tokio::time::sleep(*duration) => Output::ended(Ending::Completed),
            stopped = stopped(stop) => Output::ended(Ending::Stopped(stopped)),
        },
    }
}

/// The file `program` names, found the way `execvp` would find it: through the `PATH` the
/// step's process gets (its own `env`, else Steady's). A name that is not found, or that holds
/// a `/`, comes back as it is, so that starting it fails (or succeeds) exactly as before.
///
/// Why: with an absolute path the standard library starts the process with `posix_spawn`
/// (`vfork`), which does not copy Steady's page tables; a bare name under a changed `PATH`
/// makes it `fork` and try `execve` on every `PATH` entry, the largest share of a no-op step's
/// cost.
fn locate(program: &str, env: &[(String, String)]) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = env
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| std::ffi::OsString::from(value))
        .or_else(|| std::env::var_os("PATH"));
    if program.is_empty() || program.contains('/') {
        return program.into();
    }
    let Some(path) = path else { return program.into() };
    std::env::split_paths(&path)
        // `execvp` reads an empty entry as the working directory; so does `split_paths`' "".
        .map(|dir| if dir.as_os_str().is_empty() { ".".into() } else { dir })
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| program.into())
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
    capture: usize,
    stop: &mut watch::Receiver<Stop>,
) -> Output {
    command.env_clear();
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let (mut child, family) = match reaper::spawn(&mut command) {
        Ok(spawned) => spawned,
        Err(error) => return Output::error(format!("cannot start the command: {error}")),
    };
    let group = family.group();
    // Whatever happens to this future (its driver stopping, the process dying), nothing the
    // step started outlives it: its whole family is killed when the guard goes.
    let family_guard = FamilyGuard(Some(family));
    let stdout = Captured::default();
    let stderr = Captured::default();
    let readers = [
        tokio::spawn(read_bounded(child.stdout.take(), stdout.clone(), capture)),
        tokio::spawn(read_bounded(child.stderr.take(), stderr.clone(), capture)),
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
            use std::os::unix::process::ExitStatusExt;
            let mut output = Output::ended(Ending::Completed);
            output.exit_code = status.code();
            output.signal = status
                .signal()
                .map(|number| Signal::try_from(number).map_or("an unknown signal", Signal::as_str));
            output
        }
        Err(output) => {
            terminate_group(group, &mut child).await;
            output
        }
    };
    // Whatever the command left running goes too — in its group or escaped from it — so that
    // no stray process keeps the pipes open (or keeps changing things) after the step ended.
    drop(family_guard);
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

/// Kills a step's whole family when dropped.
struct FamilyGuard(Option<reaper::Family>);

impl Drop for FamilyGuard {
    fn drop(&mut self) {
        if let Some(family) = self.0.take() {
            family.kill();
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

/// Reads a stream to its end into `captured`, keeping at most `capture` bytes.
async fn read_bounded(stream: Option<impl AsyncRead + Unpin>, captured: Captured, capture: usize) {
    let Some(mut stream) = stream else { return };
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let mut kept = captured.0.lock().unwrap_or_else(|e| e.into_inner());
                let room = capture.saturating_sub(kept.0.len());
                kept.0.extend_from_slice(&buffer[..read.min(room)]);
                kept.1 |= read > room;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn request(
    http: &HttpClients,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&HttpBody>,
    timeout: Duration,
    capture: usize,
    stop: &mut watch::Receiver<Stop>,
) -> Output {
    let method = match reqwest::Method::from_bytes(method.as_bytes()) {
        Ok(method) => method,
        Err(_) => return Output::error(format!("invalid HTTP method `{method}`")),
    };
    // Only a request without a body may be redirected, and only within its origin: a POST is
    // never re-sent as a GET, nor a header (or a body) to a server the author did not name.
    let client = if matches!(method, reqwest::Method::GET | reqwest::Method::HEAD) {
        &http.same_origin
    } else {
        &http.direct
    };
    let mut builder = client.request(method, url).timeout(timeout);
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
        let final_url = response.url().to_string();
        let location = response
            .status()
            .is_redirection()
            .then(|| response.headers().get(reqwest::header::LOCATION))
            .flatten()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let mut body = Vec::new();
        let mut truncated = false;
        while let Some(chunk) = response.chunk().await? {
            let room = capture.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            truncated |= chunk.len() > room;
        }
        Ok::<_, reqwest::Error>((status, final_url, location, body, truncated))
    };
    tokio::select! {
        result = exchange => match result {
            Ok((status, final_url, location, body, truncated)) => Output {
                http_status: Some(status),
                final_url: Some(final_url),
                location,
                stdout: body,
                stdout_truncated: truncated,
                ..Output::ended(Ending::Completed)
            },
            Err(error) if error.is_timeout() => Output::ended(Ending::TimedOut),
            Err(error) => Output::error(format!("request failed: {}", describe_http_error(error))),
        },
        stopped = stopped(stop) => Output::ended(Ending::Stopped(stopped)),
    }
}

/// What went wrong (refused, DNS, TLS), from reqwest's message and its causes — without the
/// URL, which the client prints in its own normalised, percent-encoded form.
fn describe_http_error(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::locate;

    /// A fresh, empty folder of this test's own.
    fn folder(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("steady-locate-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn path(dirs: &str) -> Vec<(String, String)> {
        vec![("PATH".to_owned(), dirs.to_owned())]
    }

    #[test]
    fn a_bare_name_is_found_on_the_steps_own_path_as_execvp_would() {
        let empty = folder("empty");
        let dirs = format!("{}:/usr/bin:/bin", empty.display());
        let found = locate("true", &path(&dirs));
        assert!(found.is_absolute() && found.ends_with("true"), "{found:?}");
    }

    #[test]
    fn a_file_that_is_not_executable_is_passed_over() {
        use std::os::unix::fs::PermissionsExt;
        let first = folder("first");
        let second = folder("second");
        for (dir, mode) in [(&first, 0o644), (&second, 0o755)] {
            let file = dir.join("tool");
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let dirs = format!("{}:{}", first.display(), second.display());
        assert_eq!(locate("tool", &path(&dirs)), second.join("tool"));
    }

    #[test]
    fn names_not_found_and_paths_come_back_as_they_are() {
        assert_eq!(
            locate("no-such-tool-anywhere", &path("/usr/bin")).to_str(),
            Some("no-such-tool-anywhere")
        );
        assert_eq!(locate("./script", &path("/usr/bin")).to_str(), Some("./script"));
        assert_eq!(locate("", &path("/usr/bin")).to_str(), Some(""));
    }
}
