//! The PostgreSQL the store tests run against: `DATABASE_URL` (`.ci/postgres.sh start DIR`
//! makes one), and a schema of its own per test so tests run in parallel and again.

/// The database URL, or `None` when the tests are to be skipped (they say so). With
/// `REQUIRE_POSTGRES_TESTS=1`, a missing URL fails the test instead.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("REQUIRE_POSTGRES_TESTS").as_deref() != Ok("1"),
                "REQUIRE_POSTGRES_TESTS=1 but DATABASE_URL is not set"
            );
            eprintln!("skipped: DATABASE_URL is not set (PostgreSQL tests)");
            None
        }
    }
}

/// A fresh schema of its own for one test, and the URL that uses it.
pub async fn fresh_schema(url: &str) -> String {
    let schema = format!("t_{:016x}", rand::random::<u64>());
    let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}
