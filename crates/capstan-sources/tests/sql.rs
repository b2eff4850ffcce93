//! The `postgres` and `mysql` sources against a real PostgreSQL and MariaDB
//! (capstan-testkit's `servers::postgres` and `servers::mariadb`): each test works in
//! its own database.

use std::time::Duration;

use capstan_sources::{
    ErrorClass, ReadError, SourceKind, SourceSpec, SqlEngine, SqlSpec, ValueKind, build, read_once,
};
use capstan_testkit::servers::{self, SilentServer, SqlServer};

const TIMEOUT: Duration = Duration::from_secs(5);

fn spec(engine: SqlEngine, url: &str, query: &str) -> SqlSpec {
    SqlSpec {
        engine,
        url: url.into(),
        password: None,
        password_file: None,
        query: query.into(),
    }
}

fn source(sql: SqlSpec, timeout: Duration) -> SourceSpec {
    SourceSpec {
        name: "backlog".into(),
        interval: Duration::from_secs(5),
        timeout,
        max_age: Duration::from_secs(15),
        retention: Duration::from_secs(900),
        value: ValueKind::Count,
        retries: 0,
        kind: SourceKind::Sql(sql),
    }
}

async fn read_with(sql: SqlSpec, timeout: Duration) -> Result<f64, ReadError> {
    let spec = source(sql, timeout);
    let built = build(&spec).expect("the source builds");
    read_once(built.as_ref(), &spec).await.map_err(|e| {
        // Every error names the source.
        assert!(e.to_string().starts_with("source \"backlog\": "), "{e}");
        e.error
    })
}

async fn read(engine: SqlEngine, db: &SqlServer, query: &str) -> Result<f64, ReadError> {
    read_with(spec(engine, &db.url(), query), TIMEOUT).await
}

fn exec(db: &SqlServer, sql: &str) {
    if let Err(e) = db.execute(sql) {
        panic!("the test's SQL failed: {sql}: {e}");
    }
}

/// Both servers, each with a fresh database.
fn both() -> [(SqlEngine, SqlServer); 2] {
    [
        (SqlEngine::Postgres, servers::postgres()),
        (SqlEngine::MySql, servers::mariadb()),
    ]
}

#[track_caller]
fn assert_class(read: Result<f64, ReadError>, class: ErrorClass, engine: SqlEngine) -> String {
    match read {
        Err(e) => {
            assert_eq!(e.class(), class, "{engine:?}: {e}");
            e.to_string()
        }
        Ok(v) => panic!("{engine:?}: expected a {class} error, read {v}"),
    }
}

#[tokio::test]
async fn inserted_rows_are_counted_exactly_and_the_pool_follows_them() {
    for (engine, db) in both() {
        exec(&db, "CREATE TABLE jobs (id INT, state VARCHAR(10))");
        let values: Vec<String> = (0..37).map(|i| format!("({i}, 'queued')")).collect();
        exec(
            &db,
            &format!("INSERT INTO jobs VALUES {}", values.join(", ")),
        );
        exec(&db, "INSERT INTO jobs VALUES (100, 'done'), (101, 'done')");
        let query = "SELECT count(*) FROM jobs WHERE state = 'queued'";
        assert_eq!(read(engine, &db, query).await, Ok(37.0), "{engine:?}");

        // One source reads again and again on its pooled connection.
        let spec = source(spec(engine, &db.url(), query), TIMEOUT);
        let built = build(&spec).unwrap();
        assert_eq!(read_once(built.as_ref(), &spec).await, Ok(37.0));
        exec(
            &db,
            "INSERT INTO jobs VALUES (37, 'queued'), (38, 'queued')",
        );
        assert_eq!(read_once(built.as_ref(), &spec).await, Ok(39.0));
        exec(&db, "DELETE FROM jobs WHERE id < 30");
        assert_eq!(read_once(built.as_ref(), &spec).await, Ok(9.0));
    }
}

#[tokio::test]
async fn integer_numeric_and_float_columns_are_read() {
    let pg = servers::postgres();
    exec(&pg, "CREATE TABLE t (n NUMERIC(12, 3))");
    exec(&pg, "INSERT INTO t VALUES (10.25), (2.25), (0.001)");
    for (query, want) in [
        ("SELECT sum(n) FROM t", 12.501),
        ("SELECT 7::int2", 7.0),
        ("SELECT 70000::int4", 70_000.0),
        ("SELECT 9000000000::int8", 9e9),
        ("SELECT 2.5::float4", 2.5),
        ("SELECT 0.125::float8", 0.125),
        ("SELECT 123456789.5::numeric", 123_456_789.5),
        ("SELECT 0::numeric", 0.0),
        ("SELECT 3, 'second column ignored'", 3.0),
    ] {
        let got = read(SqlEngine::Postgres, &pg, query).await;
        let got = got.unwrap_or_else(|e| panic!("{query}: {e}"));
        assert!((got - want).abs() < 1e-9, "{query}: {got}");
    }
    let my = servers::mariadb();
    exec(
        &my,
        "CREATE TABLE t (n DECIMAL(12, 3), u INT UNSIGNED, f FLOAT, b BIGINT UNSIGNED)",
    );
    exec(
        &my,
        "INSERT INTO t VALUES (10.25, 4, 0.5, 1), (2.25, 5, 0.25, 2), (0.001, 6, 0, 9000000000)",
    );
    for (query, want) in [
        ("SELECT sum(n) FROM t", 12.501),
        ("SELECT sum(u) FROM t", 15.0),
        ("SELECT max(u) FROM t", 6.0),
        ("SELECT sum(f) FROM t", 0.75),
        ("SELECT max(f) FROM t", 0.5),
        ("SELECT 7", 7.0),
        ("SELECT max(b) FROM t", 9e9),
        ("SELECT 0.125e0", 0.125),
        ("SELECT 3, 'second column ignored'", 3.0),
    ] {
        let got = read(SqlEngine::MySql, &my, query).await;
        let got = got.unwrap_or_else(|e| panic!("{query}: {e}"));
        assert!((got - want).abs() < 1e-9, "{query}: {got}");
    }
}

#[tokio::test]
async fn text_several_rows_no_row_and_null_are_malformed() {
    for (engine, db) in both() {
        exec(&db, "CREATE TABLE jobs (id INT)");
        exec(&db, "INSERT INTO jobs VALUES (1), (2)");
        for (query, says) in [
            ("SELECT 'lots'", "not a number"),
            ("SELECT '42'", "not a number"),
            ("SELECT id FROM jobs", "several rows"),
            ("SELECT id FROM jobs WHERE id > 5", "no row"),
            ("SELECT NULL", "NULL"),
            ("SELECT max(id) FROM jobs WHERE id > 5", "NULL"),
        ] {
            let e = assert_class(
                read(engine, &db, query).await,
                ErrorClass::Malformed,
                engine,
            );
            assert!(e.contains(says), "{engine:?} {query}: {e}");
        }
    }
}

#[tokio::test]
async fn nan_and_negative_counts_are_rejected() {
    let pg = servers::postgres();
    for query in [
        "SELECT 'NaN'::float8",
        "SELECT 'NaN'::numeric",
        "SELECT -3",
        "SELECT -0.5::numeric",
    ] {
        let e = read(SqlEngine::Postgres, &pg, query).await;
        assert_class(e, ErrorClass::Rejected, SqlEngine::Postgres);
    }
    let my = servers::mariadb();
    for query in [
        "SELECT -3",
        "SELECT CAST(-0.5 AS DECIMAL(4, 2))",
        "SELECT -1e0",
    ] {
        let e = read(SqlEngine::MySql, &my, query).await;
        assert_class(e, ErrorClass::Rejected, SqlEngine::MySql);
    }
}

#[tokio::test]
async fn a_missing_table_is_not_found() {
    for (engine, db) in both() {
        let e = read(engine, &db, "SELECT count(*) FROM no_such_table").await;
        let e = assert_class(e, ErrorClass::NotFound, engine);
        assert!(e.contains("no_such_table"), "{e}");
    }
}

#[tokio::test]
async fn a_missing_database_is_not_found() {
    for (engine, db) in both() {
        let url = db.url().replace(db.database(), "capstan_no_such_db");
        let e = read_with(spec(engine, &url, "SELECT 1"), TIMEOUT).await;
        let e = assert_class(e, ErrorClass::NotFound, engine);
        assert!(e.contains("capstan_no_such_db"), "{e}");
    }
}

#[tokio::test]
async fn a_query_that_writes_is_refused_by_the_read_only_transaction() {
    for (engine, db) in both() {
        exec(&db, "CREATE TABLE jobs (id INT)");
        let query = "INSERT INTO jobs VALUES (1)";
        let e = assert_class(read(engine, &db, query).await, ErrorClass::Server, engine);
        assert!(e.to_lowercase().contains("read"), "{engine:?}: {e}");
        assert_eq!(db.execute("SELECT count(*) FROM jobs").unwrap(), "0");
    }
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_and_never_shown() {
    // MariaDB checks passwords; the PostgreSQL of the tests trusts loopback, so it is
    // checked with a role that does not exist, which it refuses the same way.
    let my = servers::mariadb();
    let user = my.database().to_owned();
    for host in ["localhost", "127.0.0.1"] {
        exec(
            &my,
            &format!("CREATE USER '{user}'@'{host}' IDENTIFIED BY 'right-pw'"),
        );
        exec(
            &my,
            &format!("GRANT SELECT ON {user}.* TO '{user}'@'{host}'"),
        );
    }
    let ok = read_with(
        spec(
            SqlEngine::MySql,
            &my.url_as(&user, Some("right-pw")),
            "SELECT 5",
        ),
        TIMEOUT,
    )
    .await;
    let wrong = read_with(
        spec(
            SqlEngine::MySql,
            &my.url_as(&user, Some("hunter2")),
            "SELECT 5",
        ),
        TIMEOUT,
    )
    .await;
    for host in ["localhost", "127.0.0.1"] {
        let _ = my.execute(&format!("DROP USER '{user}'@'{host}'"));
    }
    assert_eq!(ok, Ok(5.0));
    let e = assert_class(wrong, ErrorClass::Auth, SqlEngine::MySql);
    assert!(!e.contains("hunter2"), "{e}");

    let pg = servers::postgres();
    let url = pg.url_as("capstan_no_such_role", Some("hunter2"));
    let e = read_with(spec(SqlEngine::Postgres, &url, "SELECT 5"), TIMEOUT).await;
    let e = assert_class(e, ErrorClass::Auth, SqlEngine::Postgres);
    assert!(!e.contains("hunter2"), "{e}");
}

#[tokio::test]
async fn a_password_file_is_used() {
    let my = servers::mariadb();
    let user = my.database().to_owned();
    for host in ["localhost", "127.0.0.1"] {
        exec(
            &my,
            &format!("CREATE USER '{user}'@'{host}' IDENTIFIED BY 'from-a-file'"),
        );
        exec(
            &my,
            &format!("GRANT SELECT ON {user}.* TO '{user}'@'{host}'"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let mut s = spec(SqlEngine::MySql, &my.url_as(&user, None), "SELECT 8");
    s.password_file = Some(file);
    let read = read_with(s, TIMEOUT).await;
    for host in ["localhost", "127.0.0.1"] {
        let _ = my.execute(&format!("DROP USER '{user}'@'{host}'"));
    }
    assert_eq!(read, Ok(8.0));
}

#[tokio::test]
async fn a_server_that_is_down_is_a_connect_error() {
    for engine in [SqlEngine::Postgres, SqlEngine::MySql] {
        let port = servers::closed_port();
        let url = match engine {
            SqlEngine::Postgres => format!("postgres://postgres:hunter2@127.0.0.1:{port}/test"),
            SqlEngine::MySql => format!("mysql://root:hunter2@127.0.0.1:{port}/test"),
        };
        let e = read_with(spec(engine, &url, "SELECT 1"), Duration::from_secs(2)).await;
        let e = assert_class(e, ErrorClass::Connect, engine);
        assert!(e.contains(&format!("127.0.0.1:{port}/test")), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[tokio::test]
async fn a_query_beyond_the_timeout_is_cut_and_the_source_recovers() {
    let t = Duration::from_millis(1500);
    for (engine, db) in both() {
        exec(&db, "CREATE TABLE slow (id INT)");
        exec(&db, "INSERT INTO slow VALUES (1)");
        // Sleeps 10 s while `slow` has a row.
        let query = match engine {
            SqlEngine::Postgres => {
                "SELECT count(*) FROM pg_sleep((SELECT count(*) FROM slow) * 10)"
            }
            SqlEngine::MySql => {
                "SELECT count(*) FROM (SELECT SLEEP((SELECT count(*) FROM slow) * 10)) AS s"
            }
        };
        let spec = source(spec(engine, &db.url(), query), t);
        let built = build(&spec).unwrap();
        let e = read_once(built.as_ref(), &spec).await.map_err(|e| e.error);
        assert_eq!(e, Err(ReadError::Timeout(t)), "{engine:?}");
        // The same source (and pool) reads again once the query is fast.
        exec(&db, "DELETE FROM slow");
        assert_eq!(
            read_once(built.as_ref(), &spec).await,
            Ok(1.0),
            "{engine:?}"
        );
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_cut_at_the_timeout() {
    let silent = SilentServer::start();
    let t = Duration::from_millis(500);
    for (engine, scheme) in [
        (SqlEngine::Postgres, "postgres"),
        (SqlEngine::MySql, "mysql"),
    ] {
        let url = format!("{scheme}://u@127.0.0.1:{}/db", silent.port());
        let e = read_with(spec(engine, &url, "SELECT 1"), t).await;
        assert_eq!(e, Err(ReadError::Timeout(t)), "{engine:?}");
    }
}
