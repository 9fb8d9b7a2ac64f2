//! What Steady's test suites share: a throw-away PostgreSQL server of their own.
//!
//! [`postgres_database`] hands each test a fresh, empty database. The server is the system's
//! PostgreSQL (`initdb`, `pg_ctl`; `scripts/test.sh` installs them with apt when missing),
//! initialised into a temporary folder and listening on a free port of 127.0.0.1, started once
//! per test process. PostgreSQL refuses to run as root, so as root it runs as the `postgres`
//! user. A watchdog stops it and removes its folder when the test process exits, however it
//! exits. Set `STEADY_TEST_POSTGRES=postgres://user@host:port` to use a server of your own.

pub mod campaign;
pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running server: where to reach it as its superuser.
#[derive(Debug)]
struct Server {
    /// `postgres://steady@127.0.0.1:PORT`, without a database.
    url: String,
    bin: PathBuf,
    /// How to run its client tools against it.
    host: String,
    port: u16,
    user: String,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// A new, empty database on the test server, as a `postgres://` URL. Panics with the reason
/// when no server can be had: a test that needs PostgreSQL must not pass without one.
pub fn postgres_database() -> String {
    let server = match SERVER.get_or_init(server) {
        Ok(server) => server,
        Err(reason) => panic!("no PostgreSQL server for the tests: {reason}"),
    };
    let name =
        format!("steady_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
    let created = Command::new(server.bin.join("createdb"))
        .args(["-h", &server.host, "-p", &server.port.to_string(), "-U", &server.user, &name])
        .output()
        .unwrap_or_else(|error| panic!("createdb: {error}"));
    assert!(
        created.status.success(),
        "createdb {name}: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    format!("{}/{name}", server.url)
}

fn server() -> Result<Server, String> {
    if let Ok(url) = std::env::var("STEADY_TEST_POSTGRES") {
        return given_server(url.trim_end_matches('/'));
    }
    start_server()
}

/// A server someone else runs, named by `postgres://user@host:port`.
fn given_server(url: &str) -> Result<Server, String> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or_else(|| format!("STEADY_TEST_POSTGRES `{url}` is not a postgres:// URL"))?;
    let (user, address) = rest.split_once('@').unwrap_or(("postgres", rest));
    let (host, port) = address.split_once(':').unwrap_or((address, "5432"));
    Ok(Server {
        url: url.to_owned(),
        bin: bin_dir()?,
        host: host.to_owned(),
        port: port.parse().map_err(|_| format!("bad port in `{url}`"))?,
        user: user.to_owned(),
    })
}

/// Where the server's programs are: on `PATH`, or Debian's `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> Result<PathBuf, String> {
    // A `pg_ctl` on PATH may be a link to the folder that has all the others (`createdb`).
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|path| {
        std::env::split_paths(&path)
            .filter_map(|dir| Some(dir.join("pg_ctl").canonicalize().ok()?.parent()?.to_owned()))
            .collect::<Vec<_>>()
    });
    let debian =
        std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten().filter_map(
            |entry| {
                let version: u32 = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("pg_ctl").is_file().then_some((version, bin))
            },
        );
    let newest_debian = debian.max_by_key(|(version, _)| *version).map(|(_, bin)| bin);
    on_path
        .chain(newest_debian)
        .find(|dir| ["initdb", "createdb"].iter().all(|program| dir.join(program).is_file()))
        .ok_or_else(|| {
            "initdb and pg_ctl not found: install PostgreSQL (`apt-get install postgresql`, which \
         scripts/test.sh does)"
                .to_owned()
        })
}

fn start_server() -> Result<Server, String> {
    let bin = bin_dir()?;
    let root = std::env::temp_dir().join(format!("steady-postgres-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).map_err(|error| format!("{}: {error}", root.display()))?;
    let as_root = nix::unistd::geteuid().is_root();
    if as_root {
        let postgres = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or("running as root, and there is no `postgres` user to run PostgreSQL as")?;
        std::os::unix::fs::chown(&root, Some(postgres.uid.as_raw()), Some(postgres.gid.as_raw()))
            .map_err(|error| format!("chown {}: {error}", root.display()))?;
    }
    let data = root.join("data");
    let port = free_port()?;
    let user = "steady";
    run(
        as_root,
        Command::new(bin.join("initdb"))
            .args(["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C", "-U", user, "-D"])
            .arg(&data),
    )?;
    // Several test binaries each start one: keep it small, and let enough clients in for
    // every store's pool.
    let options = format!(
        "-p {port} -k {socket} -c listen_addresses=127.0.0.1 -c max_connections=400 \
         -c shared_buffers=32MB",
        socket = root.display()
    );
    run(
        as_root,
        Command::new(bin.join("pg_ctl"))
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-l"])
            .arg(root.join("server.log"))
            .args(["-o", &options, "start"]),
    )?;
    watch_over(&bin, &root, &data, as_root)?;
    Ok(Server {
        url: format!("postgres://{user}@127.0.0.1:{port}"),
        bin,
        host: "127.0.0.1".to_owned(),
        port,
        user: user.to_owned(),
    })
}

/// Runs a server program, as the `postgres` user when we are root.
fn run(as_root: bool, command: &mut Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut command = if as_root {
        let mut runuser = Command::new("runuser");
        runuser.args(["-u", "postgres", "--"]).arg(command.get_program()).args(command.get_args());
        runuser
    } else {
        std::mem::replace(command, Command::new(&program))
    };
    let output = command
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Stops the server and removes its folder once this process is gone, however it ends.
fn watch_over(bin: &Path, root: &Path, data: &Path, as_root: bool) -> Result<(), String> {
    let stop = format!(
        "{run_as}'{pg_ctl}' -D '{data}' -m immediate stop",
        run_as = if as_root { "runuser -u postgres -- " } else { "" },
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{root}'",
        pid = std::process::id(),
        root = root.display(),
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|error| format!("starting the watchdog: {error}"))
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("finding a free port: {error}"))
}
