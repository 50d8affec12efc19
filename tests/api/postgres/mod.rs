//! factlog on PostgreSQL: one log shared by several instances and by programs that
//! publish through SQL. Each test gets its own database (see `factlog_testkit::pg`).

mod access;
mod contract;
mod faults;
mod instances;
mod retention;
mod topics;

use std::time::{Duration, Instant};

use factlog_testkit::pg::PgDatabase;
use factlog_testkit::*;

/// A server in this process over the test's database.
pub async fn instance(db: &PgDatabase) -> TestApp {
    instance_with(db, |_| {}).await
}

/// A server in this process over the test's database, configured by `adjust`.
pub async fn instance_with(db: &PgDatabase, adjust: impl FnOnce(&mut factlog::Config)) -> TestApp {
    let url = db.url.clone();
    spawn_with(move |c| {
        c.database_url = url;
        adjust(c);
    })
    .await
}

/// Every id in the table, in order.
pub async fn table_ids(conn: &mut sqlx::PgConnection) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM facts ORDER BY id")
        .fetch_all(conn)
        .await
        .expect("the table is read")
}

/// Publishes through SQL as a worker would; returns the id.
pub async fn publish_sql(
    conn: &mut sqlx::PgConnection,
    fact: &str,
    event: Option<&str>,
    key: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT factlog_publish($1::json, $2, $3)")
        .bind(fact)
        .bind(event)
        .bind(key)
        .fetch_one(conn)
        .await
}

/// Polls `query` (one integer) until it returns `want`.
pub async fn until_count(conn: &mut sqlx::PgConnection, query: &str, want: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got: i64 = sqlx::query_scalar(query)
            .fetch_one(&mut *conn)
            .await
            .expect("the query runs");
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{query}: {got}, never {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
