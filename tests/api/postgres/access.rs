//! Who may read and write, on PostgreSQL: the same tests as SQLite's
//! (`tests/api/access.rs`, `tests/api/token_expiry.rs`), each over a database of its own.

use super::*;
use crate::{access, token_expiry};
use factlog_testkit::pg;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn public_topics_are_read_by_anyone_and_private_ones_by_their_grants() {
    let Some(db) = pg::database("public_topics_are_read_by_anyone_and_private_ones") else {
        return;
    };
    access::public_topics_are_read_by_anyone_and_private_ones_by_their_grants_on(
        instance_with(&db, access::secured).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn appends_need_the_header_and_a_publish_grant_and_refusals_write_nothing() {
    let Some(db) = pg::database("appends_need_the_header_and_a_publish_grant") else {
        return;
    };
    access::appends_need_the_header_and_a_publish_grant_and_refusals_write_nothing_on(
        instance_with(&db, access::secured).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn a_stream_says_token_expired_with_its_last_id_and_a_new_token_resumes_exactly() {
    let Some(db) = pg::database("a_stream_says_token_expired_with_its_last_id") else {
        return;
    };
    token_expiry::a_stream_says_token_expired_with_its_last_id_and_a_new_token_resumes_exactly_on(
        instance_with(&db, token_expiry::strict).await,
    )
    .await;
}
