//! A PostgreSQL database for one test, or for the load generator's `instances` scenario.
//!
//! With `FACTLOG_TEST_POSTGRES_URL` set, each test gets a new database on that server
//! (dropped afterwards). Otherwise each test starts a throwaway cluster with Debian's
//! `initdb` and `pg_ctl` in a temporary directory, listening on a socket there only.
//! Without either, [`database`] says why and returns `None` (the load generator then leaves
//! out what needs it). Tests do not get that far on such a machine: the build script
//! (`build.rs`) marks them ignored, with the reason. Under `FACTLOG_REQUIRE_POSTGRES=1` (as
//! in `.ci/run`) they run, and an absence is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::Connection as _;
use tempfile::TempDir;

/// A database for one test; dropped (or its cluster stopped) with this value.
pub struct PgDatabase {
    /// The URL to give factlog.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    /// A database on the server of `FACTLOG_TEST_POSTGRES_URL`: drop it.
    Drop { admin_url: String, name: String },
    /// Our own cluster: stop it; the directory goes with the `TempDir`.
    Cluster {
        bin: PathBuf,
        dir: TempDir,
        as_postgres: bool,
        options: ClusterOptions,
    },
}

/// How a throwaway cluster runs.
#[derive(Clone, Copy)]
struct ClusterOptions {
    /// Sync commits to disk.
    fsync: bool,
    /// Listen on this TCP port of 127.0.0.1 with TLS (a certificate from a CA of its own),
    /// rather than on a socket in its directory only.
    tls_port: Option<u16>,
}

/// A new, empty database, or `None` (after saying so) when no PostgreSQL can be had. A
/// throwaway cluster runs without fsync: its data is thrown away, and what the tests
/// check does not depend on it.
pub fn database(test: &str) -> Option<PgDatabase> {
    database_with(test, false)
}

/// Like [`database`], but a throwaway cluster syncs its commits to disk as PostgreSQL does
/// by default: for measurements.
pub fn durable_database(test: &str) -> Option<PgDatabase> {
    database_with(test, true)
}

/// A database on a throwaway cluster that speaks only TLS, over TCP, with a certificate
/// signed by a CA of its own; its URL asks for `sslmode=verify-full` with that CA. `None`
/// (after saying so) when no cluster of our own can be had: a server of
/// `FACTLOG_TEST_POSTGRES_URL` is not ours to configure.
pub fn tls_database(test: &str) -> Option<PgDatabase> {
    if std::env::var_os("FACTLOG_TEST_POSTGRES_URL").is_some() {
        eprintln!("SKIPPED {test}: needs a throwaway cluster, not FACTLOG_TEST_POSTGRES_URL");
        return None;
    }
    let Some(bin) = server_programs() else {
        return unavailable(test);
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    Some(throwaway_cluster(
        bin,
        ClusterOptions {
            fsync: false,
            tls_port: Some(port),
        },
    ))
}

fn database_with(test: &str, fsync: bool) -> Option<PgDatabase> {
    if let Ok(admin_url) = std::env::var("FACTLOG_TEST_POSTGRES_URL") {
        return Some(on_server(admin_url));
    }
    match server_programs() {
        Some(bin) => Some(throwaway_cluster(
            bin,
            ClusterOptions {
                fsync,
                tls_port: None,
            },
        )),
        None => unavailable(test),
    }
}

/// Says that `test` cannot run; a failure under `FACTLOG_REQUIRE_POSTGRES=1`.
fn unavailable(test: &str) -> Option<PgDatabase> {
    let why = "no PostgreSQL: set FACTLOG_TEST_POSTGRES_URL, or install Debian's postgresql \
               for a throwaway cluster";
    if std::env::var_os("FACTLOG_REQUIRE_POSTGRES").is_some_and(|v| v == "1") {
        panic!("{test}: {why} (FACTLOG_REQUIRE_POSTGRES=1 makes this a failure)");
    }
    eprintln!("SKIPPED {test}: {why}");
    None
}

impl PgDatabase {
    /// The URL of another database on the same server; factlog creates it on start.
    pub fn url_of(&self, database: &str) -> String {
        let mut url = url::Url::parse(&self.url).expect("a URL");
        url.set_path(database);
        url.to_string()
    }

    /// Drops the database `name` (one [`Self::url_of`] named) if it can, so that a server
    /// of `FACTLOG_TEST_POSTGRES_URL` is not left with it; a throwaway cluster goes whole.
    pub fn drop_database(&self, name: &str) {
        let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
        // A throwaway cluster's own database may not exist: nothing to drop there.
        if let Err(err) = admin(&self.url, &drop) {
            if matches!(self.cleanup, Cleanup::Drop { .. }) {
                eprintln!("could not drop the database {name}: {err}");
            }
        }
    }

    /// The process id of the throwaway cluster's server, for its CPU time; `None` for a
    /// server of `FACTLOG_TEST_POSTGRES_URL`.
    pub fn server_pid(&self) -> Option<u32> {
        let Cleanup::Cluster { dir, .. } = &self.cleanup else {
            return None;
        };
        let pid_file = std::fs::read_to_string(dir.path().join("data/postmaster.pid")).ok()?;
        pid_file.lines().next()?.trim().parse().ok()
    }

    /// Stops the database server (a fast shutdown: connections are ended) until
    /// [`Self::start_server`]; false, doing nothing, for a server of
    /// `FACTLOG_TEST_POSTGRES_URL`, which is not ours to stop.
    pub fn stop_server(&self) -> bool {
        let Cleanup::Cluster {
            bin,
            dir,
            as_postgres,
            ..
        } = &self.cleanup
        else {
            return false;
        };
        run(
            bin,
            *as_postgres,
            "pg_ctl",
            &[
                "-D".as_ref(),
                dir.path().join("data").as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        true
    }

    /// Starts the server [`Self::stop_server`] stopped.
    pub fn start_server(&self) {
        if let Cleanup::Cluster {
            bin,
            dir,
            as_postgres,
            options,
        } = &self.cleanup
        {
            start_cluster(bin, *as_postgres, dir.path(), *options);
        }
    }

    /// Creates the database if it does not exist yet (factlog creates it on start; a test
    /// that restores a dump first needs it before).
    pub async fn create(&self) {
        let name = url::Url::parse(&self.url)
            .expect("a URL")
            .path()
            .trim_start_matches('/')
            .to_owned();
        let mut maintenance = sqlx::PgConnection::connect(&self.url_of("postgres"))
            .await
            .expect("the test connects to PostgreSQL");
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut maintenance)
                .await
                .expect("the catalog is read");
        if !exists {
            sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut maintenance)
                .await
                .expect("the database is created");
        }
    }

    /// A connection of the test's own, for what a worker or an operator would do.
    pub async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("the test connects to PostgreSQL")
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn server_programs() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn on_server(admin_url: String) -> PgDatabase {
    let name = format!("factlog_test_{}", uuid::Uuid::new_v4().simple());
    let create = format!("CREATE DATABASE {name}");
    admin(&admin_url, &create).expect("the role of FACTLOG_TEST_POSTGRES_URL creates databases");
    let mut url = url::Url::parse(&admin_url).expect("FACTLOG_TEST_POSTGRES_URL is a URL");
    url.set_path(&name);
    PgDatabase {
        url: url.to_string(),
        cleanup: Cleanup::Drop { admin_url, name },
    }
}

/// Runs one statement on the server of `admin_url`, from a thread and a runtime of its
/// own: callers may be inside a test's runtime, where blocking on another is refused.
fn admin(admin_url: &str, statement: &str) -> Result<(), String> {
    let (admin_url, statement) = (admin_url.to_owned(), statement.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&admin_url)
                .await
                .map_err(|e| format!("cannot connect to {admin_url}: {e}"))?;
            sqlx::raw_sql(&statement)
                .execute(&mut conn)
                .await
                .map_err(|e| format!("{statement}: {e}"))?;
            Ok(())
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the admin thread panicked".into()))
}

fn throwaway_cluster(bin: PathBuf, options: ClusterOptions) -> PgDatabase {
    let dir = TempDir::new().expect("a temporary directory");
    // initdb and the server refuse to run as root; Debian's package made `postgres`.
    let as_postgres = is_root();
    if as_postgres {
        let status = Command::new("chown")
            .arg("postgres")
            .arg(dir.path())
            .status()
            .expect("chown runs");
        assert!(status.success(), "chown to postgres");
    }
    let data = dir.path().join("data");
    run(
        &bin,
        as_postgres,
        "initdb",
        &[
            "-D".as_ref(),
            data.as_os_str(),
            "-A".as_ref(),
            "trust".as_ref(),
            "-U".as_ref(),
            "postgres".as_ref(),
            "--no-sync".as_ref(),
        ],
    );
    let url = match options.tls_port {
        Some(port) => {
            make_certificates(dir.path(), &data, as_postgres);
            format!(
                "postgres://postgres@localhost:{port}/factlog?sslmode=verify-full&sslrootcert={}",
                dir.path().join("ca.crt").display()
            )
        }
        None => format!(
            "postgres://postgres@localhost/factlog?host={}",
            dir.path().display()
        ),
    };
    start_cluster(&bin, as_postgres, dir.path(), options);
    PgDatabase {
        url,
        cleanup: Cleanup::Cluster {
            bin,
            dir,
            as_postgres,
            options,
        },
    }
}

/// A CA in `dir` and a certificate it signs for localhost, installed as the server's in
/// `data`.
fn make_certificates(dir: &Path, data: &Path, as_postgres: bool) {
    // Arguments split at spaces: none of them holds one.
    let openssl = |args: &str| {
        let output = Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl runs (apt-get install openssl)");
        assert!(
            output.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("written");
    let (key, crt) = (data.join("server.key"), data.join("server.crt"));
    let (key, crt) = (key.to_str().expect("UTF-8"), crt.to_str().expect("UTF-8"));
    openssl(
        "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=factlog-test-CA -keyout ca.key -out ca.crt",
    );
    openssl(&format!(
        "req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout {key} -out server.csr"
    ));
    openssl(&format!(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.cnf -out {crt}"
    ));
    // The server wants its key private to it.
    for path in [key, crt] {
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres", path])
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown to postgres");
        }
    }
    let status = Command::new("chmod")
        .args(["600", key])
        .status()
        .expect("chmod runs");
    assert!(status.success(), "chmod 600");
}

/// Starts the cluster in `dir`, and waits until it accepts connections.
fn start_cluster(bin: &Path, as_postgres: bool, dir: &Path, options: ClusterOptions) {
    // Without TLS no TCP: a socket in the directory only, so tests never fight over a
    // port.
    let listen = match options.tls_port {
        Some(port) => format!("-c listen_addresses=127.0.0.1 -p {port} -c ssl=on"),
        None => "-c listen_addresses=''".to_owned(),
    };
    let options = format!(
        "-k {} {listen} -c fsync={} -c max_connections=200",
        dir.display(),
        if options.fsync { "on" } else { "off" }
    );
    run(
        bin,
        as_postgres,
        "pg_ctl",
        &[
            "-D".as_ref(),
            dir.join("data").as_os_str(),
            "-l".as_ref(),
            dir.join("log").as_os_str(),
            "-o".as_ref(),
            options.as_ref(),
            "-w".as_ref(),
            "start".as_ref(),
        ],
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// Runs one of PostgreSQL's programs; panics with its error output when it fails.
fn run(bin: &Path, as_postgres: bool, program: &str, args: &[&std::ffi::OsStr]) {
    if let Err(err) = try_run(bin, as_postgres, program, args) {
        panic!("{err}");
    }
}

fn try_run(
    bin: &Path,
    as_postgres: bool,
    program: &str,
    args: &[&std::ffi::OsStr],
) -> Result<(), String> {
    let program = bin.join(program);
    let mut command = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    let output = command
        .args(args)
        .output()
        .map_err(|e| format!("{} does not run: {e}", program.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Drop { admin_url, name } => {
                let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                if let Err(err) = admin(admin_url, &drop) {
                    eprintln!("could not drop the test database {name}: {err}");
                }
            }
            Cleanup::Cluster {
                bin,
                dir,
                as_postgres,
                ..
            } => {
                let data = dir.path().join("data");
                // Not a panic: this may run while a failed test unwinds.
                let stopped = try_run(
                    bin,
                    *as_postgres,
                    "pg_ctl",
                    &[
                        "-D".as_ref(),
                        data.as_os_str(),
                        "-m".as_ref(),
                        "immediate".as_ref(),
                        "stop".as_ref(),
                    ],
                );
                if let Err(err) = stopped {
                    eprintln!("could not stop the test cluster: {err}");
                }
            }
        }
    }
}
