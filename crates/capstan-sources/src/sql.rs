//! The `postgres` and `mysql` sources: one SQL query returning one number, the first
//! column of the first row (KEDA's `postgresql` and `mysql` scalers).
//!
//! - The query runs in a read-only transaction (`BEGIN READ ONLY` on PostgreSQL, `START
//!   TRANSACTION READ ONLY` on MySQL/MariaDB), rolled back afterwards, under a statement
//!   timeout equal to the source's `timeout` (PostgreSQL `SET LOCAL statement_timeout`;
//!   MariaDB's `max_statement_time`, or MySQL's `max_execution_time`, for the session).
//!   The whole read (connect, query) is also cut at the timeout.
//! - Exactly one row with one number is expected. Integer, floating-point and
//!   `numeric`/`decimal` columns are read (PostgreSQL `numeric` from its binary form,
//!   `decimal` from its text: no decimal crate); no row, several rows, NULL and a
//!   column of another type (text, date, ...) are malformed errors naming what was
//!   found. NaN and negative numbers are passed on, and rejected by the poller's
//!   boundary check.
//! - A small pool (at most two connections) per source, created on the first read and
//!   kept across polls; connections are opened when needed and checked before reuse.
//! - The password from the URL, `password_file` (read when the source is built) or
//!   `password` (the last wins). Errors and `Debug` show the URL without credentials.
//!   Statements are not logged by the client.
//! - Errors are classed: a refused password or permission → auth; a missing table,
//!   schema or database → not_found; a server that cannot be reached → connect; a
//!   statement cancelled by its timeout → timeout; other server errors (a query that
//!   writes, a syntax error) → server.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{
    AssertSqlSafe, Column, ConnectOptions, Connection, MySqlPool, PgPool, Row, TypeInfo, ValueRef,
};

use tokio::sync::OnceCell;

use crate::error::{ReadError, redact_url_str};
use crate::spec::{SqlEngine, SqlSpec};
use crate::{BoxFuture, Source};

/// Connections a source's pool holds at most.
const MAX_CONNECTIONS: u32 = 2;
/// An unused connection is closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// A `postgres` or `mysql` source, ready to read.
pub struct SqlSource {
    /// The connection settings (password included: never shown).
    options: Options,
    /// The pool, created on the first read.
    pool: OnceCell<Pool>,
    /// The server as shown in errors: the URL without credentials or parameters.
    shown: String,
    /// The query, as configured.
    query: Arc<str>,
    /// The whole read is cut at this, and the statement too.
    timeout: Duration,
}

/// Connection settings by engine.
#[derive(Clone)]
enum Options {
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
}

/// A pool by engine.
enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
}

impl fmt::Debug for SqlSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the options hold the password.
        f.debug_struct("SqlSource")
            .field("server", &self.shown)
            .field("query", &self.query)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SqlSource {
    /// Checks `spec` (a URL of the engine's scheme, a query) and prepares the settings.
    /// Does not connect.
    pub fn new(spec: &SqlSpec, timeout: Duration) -> Result<Self, String> {
        let scheme = spec.url.split_once("://").map(|(s, _)| s);
        let (schemes, example) = match spec.engine {
            SqlEngine::Postgres => (&["postgres", "postgresql"][..], "postgres://"),
            SqlEngine::MySql => (&["mysql", "mariadb"][..], "mysql://"),
        };
        if !scheme.is_some_and(|s| schemes.contains(&s)) {
            return Err(format!(
                "url must start with {example}, got {}",
                redact_url_str(&spec.url)
            ));
        }
        if spec.query.trim().is_empty() {
            return Err("query must not be empty".into());
        }
        let mut password = None;
        if let Some(path) = &spec.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
            password = Some(text.trim_end_matches(['\r', '\n']).to_owned());
        }
        if let Some(p) = &spec.password {
            password = Some(p.clone());
        }
        // The parse error is not shown: it may quote the URL, password included.
        let invalid = |_| format!("url is not a valid {} URL", spec.engine.label());
        let options = match spec.engine {
            SqlEngine::Postgres => {
                let mut o = PgConnectOptions::from_str(&spec.url)
                    .map_err(invalid)?
                    .application_name("capstan")
                    .disable_statement_logging();
                if let Some(p) = &password {
                    o = o.password(p);
                }
                Options::Postgres(o)
            }
            SqlEngine::MySql => {
                // MySqlConnectOptions only knows mysql://.
                let url = match spec.url.strip_prefix("mariadb://") {
                    Some(rest) => format!("mysql://{rest}"),
                    None => spec.url.clone(),
                };
                let mut o = MySqlConnectOptions::from_str(&url)
                    .map_err(invalid)?
                    .disable_statement_logging();
                if let Some(p) = &password {
                    o = o.password(p);
                }
                Options::MySql(o)
            }
        };
        Ok(Self {
            options,
            pool: OnceCell::new(),
            shown: shown_server(&spec.url),
            query: Arc::from(spec.query.as_str()),
            timeout,
        })
    }

    /// Runs the query once, within the timeout.
    pub async fn fetch(&self) -> Result<f64, ReadError> {
        match tokio::time::timeout(self.timeout, self.read_value()).await {
            Ok(read) => read,
            Err(_) => Err(ReadError::Timeout(self.timeout)),
        }
    }

    /// The pool, created on first use (inside the runtime: the pool spawns its reaper).
    async fn pool(&self) -> &Pool {
        self.pool
            .get_or_init(|| async {
                // Half the timeout for a connection, so that a server that refuses can
                // still be asked why within the rest (see `acquire_failed`).
                let acquire = self.timeout / 2;
                match &self.options {
                    Options::Postgres(o) => Pool::Postgres(
                        PgPoolOptions::new()
                            .max_connections(MAX_CONNECTIONS)
                            .min_connections(0)
                            .acquire_timeout(acquire)
                            .idle_timeout(IDLE_TIMEOUT)
                            .connect_lazy_with(o.clone()),
                    ),
                    Options::MySql(o) => Pool::MySql(
                        MySqlPoolOptions::new()
                            .max_connections(MAX_CONNECTIONS)
                            .min_connections(0)
                            .acquire_timeout(acquire)
                            .idle_timeout(IDLE_TIMEOUT)
                            .connect_lazy_with(o.clone()),
                    ),
                }
            })
            .await
    }

    async fn read_value(&self) -> Result<f64, ReadError> {
        match self.pool().await {
            Pool::Postgres(pool) => self.read_postgres(pool).await,
            Pool::MySql(pool) => self.read_mysql(pool).await,
        }
    }

    async fn read_postgres(&self, pool: &PgPool) -> Result<f64, ReadError> {
        let mut tx = match pool.begin_with("BEGIN READ ONLY").await {
            Ok(tx) => tx,
            Err(e) => return Err(self.acquire_failed(e).await),
        };
        let ms = self.timeout.as_millis().max(1);
        sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL statement_timeout = {ms}")))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.error(&e))?;
        let (first, more) = {
            let mut rows = sqlx::query(AssertSqlSafe(Arc::clone(&self.query))).fetch(&mut *tx);
            let first = next(&mut rows).await.map_err(|e| self.error(&e))?;
            let more = match first {
                Some(_) => next(&mut rows).await.map_err(|e| self.error(&e))?.is_some(),
                None => false,
            };
            (first, more)
        };
        let value = self
            .one_row(first, more)
            .and_then(|row| self.pg_number(&row));
        tx.rollback().await.map_err(|e| self.error(&e))?;
        value
    }

    async fn read_mysql(&self, pool: &MySqlPool) -> Result<f64, ReadError> {
        let mut conn = match pool.acquire().await {
            Ok(c) => c,
            Err(e) => return Err(self.acquire_failed(e).await),
        };
        // MariaDB: seconds; MySQL (which has no max_statement_time): milliseconds.
        let secs = self.timeout.as_secs_f64().max(0.001);
        let mariadb = sqlx::raw_sql(AssertSqlSafe(format!(
            "SET SESSION max_statement_time = {secs}"
        )))
        .execute(&mut *conn)
        .await;
        if let Err(e) = mariadb {
            if mysql_number(&e) != Some(1193) {
                return Err(self.error(&e));
            }
            let ms = self.timeout.as_millis().max(1);
            sqlx::raw_sql(AssertSqlSafe(format!(
                "SET SESSION max_execution_time = {ms}"
            )))
            .execute(&mut *conn)
            .await
            .map_err(|e| self.error(&e))?;
        }
        let mut tx = conn
            .begin_with("START TRANSACTION READ ONLY")
            .await
            .map_err(|e| self.error(&e))?;
        let (first, more) = {
            let mut rows = sqlx::query(AssertSqlSafe(Arc::clone(&self.query))).fetch(&mut *tx);
            let first = next(&mut rows).await.map_err(|e| self.error(&e))?;
            let more = match first {
                Some(_) => next(&mut rows).await.map_err(|e| self.error(&e))?.is_some(),
                None => false,
            };
            (first, more)
        };
        let value = self
            .one_row(first, more)
            .and_then(|row| self.mysql_number(&row));
        tx.rollback().await.map_err(|e| self.error(&e))?;
        value
    }

    /// The only row, or a malformed error for none or several.
    fn one_row<R>(&self, first: Option<R>, more: bool) -> Result<R, ReadError> {
        match (first, more) {
            (Some(row), false) => Ok(row),
            (None, _) => Err(self.malformed("the query returned no row; expected one".into())),
            (Some(_), true) => Err(self.malformed(
                "the query returned several rows; expected one (aggregate with count(*), \
                 sum(...), or add LIMIT 1)"
                    .into(),
            )),
        }
    }

    /// The first column of a PostgreSQL row as a number.
    fn pg_number(&self, row: &PgRow) -> Result<f64, ReadError> {
        let column = self.first_column(row)?;
        let raw = row.try_get_raw(0).map_err(|e| self.error(&e))?;
        if raw.is_null() {
            return Err(self.malformed(format!("column {column:?} is NULL, not a number")));
        }
        let ty = raw.type_info().name().to_owned();
        let decode = |e: sqlx::Error| self.error(&e);
        #[allow(clippy::cast_precision_loss)] // counts beyond 2^53 are beyond caring
        let n = match ty.as_str() {
            "INT2" => f64::from(row.try_get::<i16, _>(0).map_err(decode)?),
            "INT4" => f64::from(row.try_get::<i32, _>(0).map_err(decode)?),
            "INT8" => row.try_get::<i64, _>(0).map_err(decode)? as f64,
            "FLOAT4" => f64::from(row.try_get::<f32, _>(0).map_err(decode)?),
            "FLOAT8" => row.try_get::<f64, _>(0).map_err(decode)?,
            "NUMERIC" => {
                let bytes = raw
                    .as_bytes()
                    .map_err(|e| self.malformed(format!("column {column:?}: {e}")))?;
                pg_numeric(bytes).map_err(|e| {
                    self.malformed(format!("column {column:?} is not a readable numeric: {e}"))
                })?
            }
            other => {
                return Err(self.malformed(format!(
                    "column {column:?} is {other}, not a number (an integer, numeric or \
                     floating-point column)"
                )));
            }
        };
        Ok(n)
    }

    /// The first column of a MySQL/MariaDB row as a number.
    fn mysql_number(&self, row: &MySqlRow) -> Result<f64, ReadError> {
        let column = self.first_column(row)?;
        let raw = row.try_get_raw(0).map_err(|e| self.error(&e))?;
        if raw.is_null() {
            return Err(self.malformed(format!("column {column:?} is NULL, not a number")));
        }
        let ty = raw.type_info().name().to_owned();
        let decode = |e: sqlx::Error| self.error(&e);
        #[allow(clippy::cast_precision_loss)] // counts beyond 2^53 are beyond caring
        let n = match ty.as_str() {
            "BOOLEAN" | "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
                row.try_get_unchecked::<i64, _>(0).map_err(decode)? as f64
            }
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
            | "BIGINT UNSIGNED" => row.try_get_unchecked::<u64, _>(0).map_err(decode)? as f64,
            "FLOAT" => f64::from(row.try_get_unchecked::<f32, _>(0).map_err(decode)?),
            "DOUBLE" => row.try_get_unchecked::<f64, _>(0).map_err(decode)?,
            "DECIMAL" => {
                let text = row.try_get_unchecked::<String, _>(0).map_err(decode)?;
                text.trim().parse::<f64>().map_err(|_| {
                    self.malformed(format!("column {column:?} is a decimal {text:?}"))
                })?
            }
            other => {
                return Err(self.malformed(format!(
                    "column {column:?} is {other}, not a number (an integer, decimal or \
                     floating-point column)"
                )));
            }
        };
        Ok(n)
    }

    /// The name of a row's first column, or a malformed error if it has none.
    fn first_column<R: Row>(&self, row: &R) -> Result<String, ReadError> {
        row.columns()
            .first()
            .map(|c| c.name().to_owned())
            .ok_or_else(|| self.malformed("the query returned no column; expected one".into()))
    }

    /// A connection could not be had. The pool retries a refused connection until its
    /// acquire timeout and then only says "timed out": connect once more, directly and
    /// within the rest of the timeout, to tell a server that is down or refuses the
    /// credentials from one that does not answer.
    async fn acquire_failed(&self, e: sqlx::Error) -> ReadError {
        if !matches!(e, sqlx::Error::PoolTimedOut) {
            return self.error(&e);
        }
        let probe = async {
            match &self.options {
                Options::Postgres(o) => o.connect().await.map(drop),
                Options::MySql(o) => o.connect().await.map(drop),
            }
        };
        match tokio::time::timeout(self.timeout / 2, probe).await {
            Ok(Err(e)) => self.error(&e),
            Ok(Ok(())) => ReadError::Connect {
                target: self.shown.clone(),
                reason: "no connection became available in time".into(),
            },
            Err(_) => ReadError::Timeout(self.timeout),
        }
    }

    /// Classifies a client error.
    fn error(&self, e: &sqlx::Error) -> ReadError {
        let target = self.shown.clone();
        match e {
            sqlx::Error::Database(db) => {
                let message = db.message().to_owned();
                let sqlstate = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let number = db
                    .try_downcast_ref::<MySqlDatabaseError>()
                    .map(|m| m.number());
                let class = classify(&sqlstate, number);
                let reason = if sqlstate.is_empty() {
                    message.clone()
                } else {
                    format!("{message} (SQLSTATE {sqlstate})")
                };
                match class {
                    DbClass::Auth => ReadError::Auth { target, reason },
                    DbClass::NotFound(what) => ReadError::NotFound {
                        target,
                        what: match quoted(&message) {
                            Some(name) => format!("{what} {name:?}"),
                            None => format!("the {what} ({message})"),
                        },
                    },
                    DbClass::Timeout => ReadError::Timeout(self.timeout),
                    DbClass::Connect => ReadError::Connect { target, reason },
                    DbClass::Server => ReadError::Server { target, reason },
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => ReadError::Connect {
                target,
                reason: e.to_string(),
            },
            sqlx::Error::PoolTimedOut => ReadError::Timeout(self.timeout),
            sqlx::Error::Configuration(_) => ReadError::Config(e.to_string()),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => ReadError::Malformed {
                target,
                reason: e.to_string(),
            },
            _ => ReadError::Server {
                target,
                reason: e.to_string(),
            },
        }
    }

    fn malformed(&self, reason: String) -> ReadError {
        ReadError::Malformed {
            target: self.shown.clone(),
            reason,
        }
    }
}

impl Source for SqlSource {
    fn read(&self) -> BoxFuture<'_, Result<f64, ReadError>> {
        Box::pin(self.fetch())
    }
}

/// The next row of a result stream.
async fn next<R>(
    rows: &mut futures_core::stream::BoxStream<'_, Result<R, sqlx::Error>>,
) -> Result<Option<R>, sqlx::Error> {
    std::future::poll_fn(|cx| rows.as_mut().poll_next(cx))
        .await
        .transpose()
}

/// The class of a server's error.
#[derive(Debug, PartialEq)]
enum DbClass {
    Auth,
    /// What is missing: "table", "database", "schema".
    NotFound(&'static str),
    Timeout,
    Connect,
    Server,
}

/// Classifies a server error by its SQLSTATE (PostgreSQL) and, for MySQL/MariaDB, its
/// error number.
fn classify(sqlstate: &str, mysql: Option<u16>) -> DbClass {
    if let Some(n) = mysql {
        return match n {
            // access denied (user/password, database, table, column, command)
            1044 | 1045 | 1142 | 1143 | 1227 | 1698 => DbClass::Auth,
            1146 => DbClass::NotFound("table"),
            1049 => DbClass::NotFound("database"),
            // MariaDB max_statement_time, MySQL max_execution_time, query interrupted
            1969 | 3024 | 1317 => DbClass::Timeout,
            1040 | 1053 | 1129 | 1130 => DbClass::Connect,
            _ => DbClass::Server,
        };
    }
    match sqlstate {
        "28P01" | "28000" | "42501" => DbClass::Auth,
        "42P01" => DbClass::NotFound("table"),
        "3D000" => DbClass::NotFound("database"),
        "3F000" => DbClass::NotFound("schema"),
        "57014" => DbClass::Timeout,
        s if s.starts_with("08") || s == "57P01" || s == "57P03" || s == "53300" => {
            DbClass::Connect
        }
        _ => DbClass::Server,
    }
}

/// The first name quoted in a server message (`relation "jobs" does not exist`,
/// `Table 'db.jobs' doesn't exist`).
fn quoted(message: &str) -> Option<&str> {
    let start = message.find(['"', '\''])?;
    let quote = message[start..].chars().next()?;
    let rest = &message[start + 1..];
    rest.find(quote).map(|end| &rest[..end])
}

/// The error number of a MySQL/MariaDB server error.
fn mysql_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// PostgreSQL's binary `numeric`: digit count, weight, sign, display scale (16 bits
/// each), then the base-10000 digits, the first weighing 10000^weight.
fn pg_numeric(bytes: &[u8]) -> Result<f64, String> {
    let word = |i: usize| {
        bytes
            .get(2 * i..2 * i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("{} bytes are too few", bytes.len()))
    };
    let ndigits = usize::from(word(0)?);
    let weight = word(1)?.cast_signed();
    let sign = word(2)?;
    let mut value = 0.0_f64;
    for i in 0..ndigits {
        let digit = f64::from(word(4 + i)?);
        let power = i32::from(weight) - i32::try_from(i).map_err(|e| e.to_string())?;
        value += digit * 10_000_f64.powi(power);
    }
    match sign {
        0x0000 => Ok(value),
        0x4000 => Ok(-value),
        0xC000 => Ok(f64::NAN),
        0xD000 => Ok(f64::INFINITY),
        0xF000 => Ok(f64::NEG_INFINITY),
        other => Err(format!("unknown sign {other:#06x}")),
    }
}

/// The server as shown in messages: `scheme://host:port/database`, without credentials
/// or parameters.
fn shown_server(url: &str) -> String {
    let bare = redact_url_str(url);
    let (scheme, rest) = bare.split_once("://").unwrap_or(("sql", bare.as_str()));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    format!("{scheme}://{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(engine: SqlEngine, url: &str) -> SqlSpec {
        SqlSpec {
            engine,
            url: url.into(),
            password: None,
            password_file: None,
            query: "SELECT count(*) FROM jobs".into(),
        }
    }

    #[test]
    fn settings_are_checked_without_echoing_secrets() {
        let t = Duration::from_secs(1);
        let err =
            SqlSource::new(&spec(SqlEngine::Postgres, "mysql://u:hunter2@h/db"), t).unwrap_err();
        assert!(err.contains("postgres://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err =
            SqlSource::new(&spec(SqlEngine::MySql, "mysql://u:hunter2@h:port/db"), t).unwrap_err();
        assert!(err.starts_with("url is not a valid MySQL URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let mut s = spec(SqlEngine::Postgres, "postgres://h/db");
        s.query = " ".into();
        assert!(SqlSource::new(&s, t).unwrap_err().contains("query"));
    }

    #[test]
    fn the_server_is_shown_without_credentials() {
        let t = Duration::from_secs(1);
        let mut s = spec(
            SqlEngine::Postgres,
            "postgres://app:hunter2@db.internal:5433/jobs?sslmode=require",
        );
        s.password = Some("other-secret".into());
        let ok = SqlSource::new(&s, t).unwrap();
        assert_eq!(ok.shown, "postgres://db.internal:5433/jobs");
        let debug = format!("{ok:?}");
        assert!(
            !debug.contains("secret") && !debug.contains("hunter2"),
            "{debug}"
        );
        let ok =
            SqlSource::new(&spec(SqlEngine::MySql, "mariadb://root@127.0.0.1/test"), t).unwrap();
        assert_eq!(ok.shown, "mariadb://127.0.0.1/test");
    }

    #[test]
    fn binary_numerics_are_decoded() {
        // 12345.678: weight 1, digits 1 2345 6780, dscale 3
        let n = [3u16, 1, 0, 3, 1, 2345, 6780]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<u8>>();
        assert!((pg_numeric(&n).unwrap() - 12345.678).abs() < 1e-9);
        let neg = [1u16, 0, 0x4000, 0, 37]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<u8>>();
        assert_eq!(pg_numeric(&neg).unwrap(), -37.0);
        let nan = [0u16, 0, 0xC000, 0]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<u8>>();
        assert!(pg_numeric(&nan).unwrap().is_nan());
        // 0.05: weight -1, digit 500
        let small = [1u16, 0xFFFF, 0, 2, 500]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect::<Vec<u8>>();
        assert!((pg_numeric(&small).unwrap() - 0.05).abs() < 1e-12);
        assert!(pg_numeric(&[0, 1]).is_err());
    }

    #[test]
    fn server_errors_are_classed() {
        assert_eq!(classify("28P01", None), DbClass::Auth);
        assert_eq!(classify("42P01", None), DbClass::NotFound("table"));
        assert_eq!(classify("57014", None), DbClass::Timeout);
        assert_eq!(classify("25006", None), DbClass::Server);
        assert_eq!(classify("28000", Some(1045)), DbClass::Auth);
        assert_eq!(classify("42S02", Some(1146)), DbClass::NotFound("table"));
        assert_eq!(classify("70100", Some(1969)), DbClass::Timeout);
        assert_eq!(quoted("relation \"jobs\" does not exist"), Some("jobs"));
        assert_eq!(quoted("Table 'test.jobs' doesn't exist"), Some("test.jobs"));
        assert_eq!(quoted("no quotes"), None);
    }
}
