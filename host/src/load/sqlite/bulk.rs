//! A batch's rows into the load's open transaction, straight through SQLite's C API.
//!
//! sqlx sends every statement, with its values copied into owned arguments, to the
//! connection's worker thread; per row that cost more than SQLite's own insert (the sink
//! was the pipeline's floor at ~0.9 M rows/s). Here the connection is locked out of its
//! worker and a prepared INSERT of many rows ([`ROWS_PER_STATEMENT`]) is bound straight from
//! the Arrow buffers (text without a copy), stepped and reset. Values are still only ever bound.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::ffi::{CStr, CString, c_int};
use std::fmt;
use std::ptr::{self, NonNull};

use arrow::array::Array;
use libsqlite3_sys as ffi;
use sqlx::error::{DatabaseError, ErrorKind};

use super::types::Column;

/// An SQLite error read off the connection after a failed call (code and message, as
/// sqlx reports them, so the sink's retry and hint logic treat both paths alike).
#[derive(Debug)]
pub(super) struct RawError {
    code: c_int,
    message: String,
}

impl RawError {
    /// The connection's last error.
    ///
    /// # Safety
    /// `db` is an open connection this thread has to itself.
    unsafe fn last(db: *mut ffi::sqlite3) -> RawError {
        // SAFETY: per the function's contract; errmsg is never null on an open handle.
        let (code, message) = unsafe {
            let message = CStr::from_ptr(ffi::sqlite3_errmsg(db));
            (ffi::sqlite3_extended_errcode(db), message)
        };
        RawError {
            code,
            message: message.to_string_lossy().into_owned(),
        }
    }
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for RawError {}

impl DatabaseError for RawError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            _ => ErrorKind::Other,
        }
    }
}

/// A failed insert: the row of the batch it stopped at, and SQLite's error.
#[derive(Debug)]
pub(super) struct Failed {
    pub row: usize,
    pub error: RawError,
}

/// Rows per statement: SQLite starts, steps and resets a statement once per statement, not
/// once per row (single-row statements made the load ~1.5× slower than 64 rows). Against 64,
/// 256 took the 10 M-row bench pipeline ~1–2% less wall time (9 of 10 alternating runs);
/// 1024 took more than 256.
const ROWS_PER_STATEMENT: usize = 256;

/// The sink's INSERT in parts: `head`, then one `(?, …)` group of `columns` parameters per
/// row, then `tail` (the merge's `ON CONFLICT` clause).
pub(super) struct InsertSql {
    pub head: String,
    pub columns: usize,
    pub tail: String,
}

impl InsertSql {
    fn for_rows(&self, rows: usize) -> CString {
        let group = format!("({})", vec!["?"; self.columns].join(", "));
        c_sql(&format!(
            "{}{}{}",
            self.head,
            vec![group; rows].join(", "),
            self.tail
        ))
    }
}

/// Insert every row of `columns` with `sql`, whose parameters are the columns in order.
///
/// # Safety
/// `db` is an open connection, locked away from every other user for the whole call.
pub(super) unsafe fn insert(
    db: NonNull<ffi::sqlite3>,
    sql: &InsertSql,
    columns: &[Column],
    rows: usize,
) -> Result<(), Failed> {
    let db = db.as_ptr();
    // SAFETY (every call below): `db` is ours for the call, and the statements are
    // prepared on it and finalized when dropped.
    let prepare = |sql: &CStr| unsafe { Statement::prepare(db, sql) };
    let one = prepare(&sql.for_rows(1)).map_err(|error| Failed { row: 0, error })?;
    // As many rows per statement as SQLite's limit on parameters allows.
    let limit = unsafe { ffi::sqlite3_limit(db, ffi::SQLITE_LIMIT_VARIABLE_NUMBER, -1) };
    let per = ROWS_PER_STATEMENT.min(limit.max(0) as usize / sql.columns.max(1));
    let mut row = 0;
    if per > 1 && rows >= per {
        let many = prepare(&sql.for_rows(per)).map_err(|error| Failed { row: 0, error })?;
        while rows - row >= per {
            if let Err(error) = unsafe { run(db, &many, columns, row, per) } {
                // The failed statement was undone. If the transaction is still open (a
                // constraint failure), the rows go again one by one to name the one that
                // fails; otherwise SQLite ended the transaction, and the load stops here.
                if unsafe { ffi::sqlite3_get_autocommit(db) } != 0 {
                    return Err(Failed { row, error });
                }
                unsafe { one_by_one(db, &one, columns, row..row + per) }?;
            }
            row += per;
        }
    }
    unsafe { one_by_one(db, &one, columns, row..rows) }
}

/// Insert `rows` with the single-row statement `one`, naming the row that fails.
///
/// # Safety
/// As [`insert`]; `one` is prepared on `db`.
unsafe fn one_by_one(
    db: *mut ffi::sqlite3,
    one: &Statement,
    columns: &[Column],
    rows: std::ops::Range<usize>,
) -> Result<(), Failed> {
    for row in rows {
        // SAFETY: per the function's contract.
        unsafe { run(db, one, columns, row, 1) }.map_err(|error| Failed { row, error })?;
    }
    Ok(())
}

/// Bind `count` rows from `first` to `stmt` (row after row, the columns in order) and step it.
///
/// # Safety
/// As [`insert`]; `stmt` is prepared on `db` with `count × columns` parameters.
unsafe fn run(
    db: *mut ffi::sqlite3,
    stmt: &Statement,
    columns: &[Column],
    first: usize,
    count: usize,
) -> Result<(), RawError> {
    let mut at: c_int = 1;
    for row in first..first + count {
        for column in columns {
            // SAFETY: the statement is live; text borrowed from the arrays (SQLITE_STATIC)
            // outlives the step that reads it.
            if unsafe { bind(stmt.0, at, column, row) } != ffi::SQLITE_OK {
                // SAFETY: `db` is ours; resetting clears the statement for its next use.
                let error = unsafe { RawError::last(db) };
                unsafe { ffi::sqlite3_reset(stmt.0) };
                return Err(error);
            }
            at += 1;
        }
    }
    // SAFETY: the statement is live and fully bound; resetting also clears a step's error.
    let stepped = unsafe { ffi::sqlite3_step(stmt.0) };
    let outcome = match stepped {
        ffi::SQLITE_DONE => Ok(()),
        _ => Err(unsafe { RawError::last(db) }),
    };
    unsafe { ffi::sqlite3_reset(stmt.0) };
    outcome
}

/// A prepared statement, finalized when dropped.
struct Statement(*mut ffi::sqlite3_stmt);

impl Statement {
    /// # Safety
    /// `db` is an open connection this thread has to itself.
    unsafe fn prepare(db: *mut ffi::sqlite3, sql: &CStr) -> Result<Statement, RawError> {
        let mut stmt = ptr::null_mut();
        // SAFETY: `sql` is NUL-terminated; `stmt` receives the statement or stays null.
        match unsafe { ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, ptr::null_mut()) } {
            ffi::SQLITE_OK => Ok(Statement(stmt)),
            // SAFETY: per the function's contract.
            _ => Err(unsafe { RawError::last(db) }),
        }
    }
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: prepared by `prepare`, finalized once.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

/// Bind `column`'s value at `row` to parameter `at` (1-based).
///
/// # Safety
/// `stmt` is live and text columns outlive its next step.
unsafe fn bind(stmt: *mut ffi::sqlite3_stmt, at: c_int, column: &Column, row: usize) -> c_int {
    let null = match column {
        Column::Int(a) => a.is_null(row),
        Column::Real(a) => a.is_null(row),
        Column::Text(a) => a.is_null(row),
    };
    // SAFETY: per the function's contract.
    unsafe {
        if null {
            return ffi::sqlite3_bind_null(stmt, at);
        }
        match column {
            Column::Int(a) => ffi::sqlite3_bind_int64(stmt, at, a.value(row)),
            Column::Real(a) => ffi::sqlite3_bind_double(stmt, at, a.value(row)),
            Column::Text(a) => {
                let value = a.value(row);
                let len = value.len() as ffi::sqlite3_uint64;
                let ptr = value.as_ptr().cast();
                ffi::sqlite3_bind_text64(
                    stmt,
                    at,
                    ptr,
                    len,
                    ffi::SQLITE_STATIC(),
                    ffi::SQLITE_UTF8 as u8,
                )
            }
        }
    }
}

/// `sql` as C text (identifiers were checked for NULs when the load began).
pub(super) fn c_sql(sql: &str) -> CString {
    CString::new(sql).expect("identifiers hold no NUL (check_identifier)")
}
