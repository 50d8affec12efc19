//! The schema as an operator handles it: `factlog migrate` as a role that may change it,
//! servers started with `--no-migrate` that never do, and a database from a newer release
//! refused in one line that names the release it needs; on both engines.

use std::process::{Command, Output, Stdio};

use serde_json::json;
use sqlx::Connection as _;

use factlog_testkit::pg;
use factlog_testkit::*;

/// Runs the binary with `args` (no `DATABASE_URL` from the environment) to its end.
fn factlog(args: &[&str]) -> Output {
    Command::new(factlog_binary())
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "factlog=info")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A server that must refuse to start: its exit status and the lines it logged.
fn refused_start(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["--listen", "127.0.0.1:0", "--database-url", url];
    args.extend_from_slice(extra);
    let output = factlog(&args);
    assert!(
        !output.status.success(),
        "the server started: {}",
        stderr(&output)
    );
    let log = stderr(&output);
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one line says why: {log}");
    errors[0].to_owned()
}

async fn posts_and_reads(base: &str) {
    let client = reqwest::Client::new();
    let posted = client
        .post(format!("{base}/facts"))
        .json(&json!({"n": 1}))
        .send()
        .await
        .expect("answered");
    assert_eq!(posted.status(), 201);
    let page: serde_json::Value = client
        .get(format!("{base}/facts"))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(page["facts"][0]["fact"], json!({"n": 1}));
}

#[tokio::test]
async fn migrate_then_serve_without_touching_the_schema_on_sqlite() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let url = format!("sqlite://{}", db.display());

    let missing = refused_start(&url, &["--no-migrate"]);
    assert!(missing.contains("factlog migrate"), "{missing}");
    assert!(!db.exists(), "--no-migrate created the file");

    let migrated = factlog(&["migrate", "--database-url", &url]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let said = String::from_utf8_lossy(&migrated.stdout);
    assert!(said.contains("at schema version 4"), "{said}");
    let again = factlog(&["migrate", "--database-url", &url]);
    assert!(again.status.success(), "{}", stderr(&again));

    let server = Process::start(&db, "127.0.0.1:0", &["--no-migrate"]);
    posts_and_reads(&server.base()).await;
    server.signal("TERM");
    assert!(server.wait(WAIT));

    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("opened");
    let (applied, recorded) = sqlite_versions(&mut conn).await;
    assert_eq!(applied, recorded, "every migration names its release");
}

async fn sqlite_versions(conn: &mut sqlx::SqliteConnection) -> (Vec<i64>, Vec<i64>) {
    let applied = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .expect("read");
    let recorded = sqlx::query_scalar("SELECT version FROM schema_versions ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .expect("read");
    (applied, recorded)
}

#[tokio::test]
async fn no_migrate_leaves_a_database_that_is_behind_as_it_was() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/factlog-0.1.sqlite"),
        &db,
    )
    .expect("the previous release's log is copied");
    let url = format!("sqlite://{}", db.display());
    let refused = refused_start(&url, &["--no-migrate"]);
    assert!(
        refused.contains("not applied: 2 topics") && refused.contains("factlog migrate"),
        "{refused}"
    );
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("opened");
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&mut conn)
        .await
        .expect("read");
    assert_eq!(applied, [1], "nothing was applied");
    conn.close().await.expect("closed");

    let migrated = factlog(&["migrate", "--database-url", &url]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let server = Process::start(&db, "127.0.0.1:0", &["--no-migrate"]);
    assert_eq!(
        all_ids(&reqwest::Client::new(), &server.base()).await,
        [1, 2, 3, 4]
    );
}

#[tokio::test]
async fn a_database_from_a_newer_release_is_refused_in_one_line() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let url = format!("sqlite://{}", db.display());
    assert!(
        factlog(&["migrate", "--database-url", &url])
            .status
            .success()
    );
    // What a newer release's migration leaves: its version applied, its release recorded.
    let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("opened");
    sqlx::raw_sql(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (41, 'from the future', TRUE, x'00', 1);
         INSERT INTO schema_versions (version, factlog_version) VALUES (41, '9.1.0');",
    )
    .execute(&mut conn)
    .await
    .expect("the newer schema is recorded");
    conn.close().await.expect("closed");

    for extra in [&[][..], &["--no-migrate"]] {
        let refused = refused_start(&url, extra);
        assert!(
            refused.contains("schema version 41, which needs factlog 9.1.0 or newer")
                && refused.contains(concat!("this is factlog ", env!("CARGO_PKG_VERSION"))),
            "{refused}"
        );
    }
    let migrate = factlog(&["migrate", "--database-url", &url]);
    assert!(!migrate.status.success());
    assert!(
        stderr(&migrate).contains("needs factlog 9.1.0 or newer"),
        "{}",
        stderr(&migrate)
    );
}

#[tokio::test]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn a_server_role_without_ddl_rights_serves_a_log_migrated_by_its_owner() {
    let Some(db) = pg::database("a_server_role_without_ddl_rights") else {
        return;
    };
    // An empty database: --no-migrate neither creates nor migrates it.
    db.create().await;
    let refused = refused_start(&db.url, &["--no-migrate"]);
    assert!(refused.contains("factlog migrate"), "{refused}");

    let migrated = factlog(&["migrate", "--database-url", &db.url]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let mut owner = db.connect().await;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY 1")
        .fetch_all(&mut owner)
        .await
        .expect("read");
    let recorded: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_versions ORDER BY 1")
        .fetch_all(&mut owner)
        .await
        .expect("read");
    assert_eq!(applied, recorded, "every migration names its release");

    // The README's grants for the servers' role, as pasted.
    let grants = include_str!("../../README.md")
        .split("<!-- server role grants -->")
        .nth(1)
        .and_then(|after| after.split("```sql").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("the README's server role block");
    sqlx::raw_sql(&grants.replace("'...'", "'server-secret'"))
        .execute(&mut owner)
        .await
        .expect("the README's grants run");
    owner.close().await.expect("closed");
    let mut as_server = url::Url::parse(&db.url).expect("a URL");
    as_server
        .set_username("factlog_server")
        .and_then(|()| as_server.set_password(Some("server-secret")))
        .expect("a user in the URL");
    let server = Process::spawn(factlog_command_url(
        as_server.as_str(),
        "127.0.0.1:0",
        &["--no-migrate", "--retain-facts", "1"],
    ));
    posts_and_reads(&server.base()).await;
    // Retention deletes with the same role: the second fact trims the first.
    let client = reqwest::Client::new();
    let second = client
        .post(format!("{}/facts", server.base()))
        .json(&json!({"n": 2}))
        .send()
        .await
        .expect("answered");
    assert_eq!(second.status(), 201);
    let deadline = std::time::Instant::now() + WAIT;
    while all_ids(&client, &server.base()).await != [2] {
        assert!(
            std::time::Instant::now() < deadline,
            "the first fact is never trimmed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.signal("TERM");
    let log = server.finish(WAIT);
    assert!(
        !log.iter()
            .any(|l| l.contains("ERROR") || l.contains("WARN")),
        "{log:#?}"
    );
}
