//! A batch's rows into the load's open transaction, straight through SQLite's C API.
//!
//! sqlx sends every statement, with its values copied into owned arguments, to the
//! connection's worker thread; per row that cost more than SQLite's own insert (the sink
//! was the pipeline's floor at ~0.9 M rows/s). Here the connection is locked out of its
//! worker and one prepared single-row INSERT is bound straight from the Arrow buffers
//! (text without a copy), stepped and reset per row. Values are still only ever bound.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::ffi::{CStr, CString, c_int};
use std::fmt;
use std::ptr::{self, NonNull};

use arrow::array::Array;
use libsqlite3_sys as ffi;
use sqlx::error::{DatabaseError, ErrorKind};

use super::types::{Column, iso8601};

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

/// Insert every row of `columns` with `sql`, a single-row `INSERT … VALUES (?, …)` whose
/// parameters are the columns in order.
///
/// # Safety
/// `db` is an open connection, locked away from every other user for the whole call.
pub(super) unsafe fn insert(
    db: NonNull<ffi::sqlite3>,
    sql: &CStr,
    columns: &[Column],
    rows: usize,
) -> Result<(), Failed> {
    let db = db.as_ptr();
    let fail = |row| Failed {
        row,
        // SAFETY: `db` is ours for the call.
        error: unsafe { RawError::last(db) },
    };
    let mut stmt = ptr::null_mut();
    // SAFETY: `sql` is NUL-terminated; `stmt` receives the statement or stays null.
    if unsafe { ffi::sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, ptr::null_mut()) }
        != ffi::SQLITE_OK
    {
        return Err(fail(0));
    }
    let stmt = Statement(stmt);
    let mut text = String::with_capacity(32);
    for row in 0..rows {
        for (at, column) in columns.iter().enumerate() {
            // SAFETY: the statement is live; text borrowed from the arrays (SQLITE_STATIC)
            // outlives the step that reads it, and `text` is copied (SQLITE_TRANSIENT).
            let bound = unsafe { bind(stmt.0, at as c_int + 1, column, row, &mut text) };
            if bound != ffi::SQLITE_OK {
                return Err(fail(row));
            }
        }
        // SAFETY: the statement is live and fully bound.
        let stepped = unsafe { ffi::sqlite3_step(stmt.0) };
        // SAFETY: as above; resetting also clears the step's error state.
        if stepped != ffi::SQLITE_DONE {
            let failed = fail(row);
            unsafe { ffi::sqlite3_reset(stmt.0) };
            return Err(failed);
        }
        unsafe { ffi::sqlite3_reset(stmt.0) };
    }
    Ok(())
}

/// Finalized when dropped, on every path out of [`insert`].
struct Statement(*mut ffi::sqlite3_stmt);

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: prepared by `insert`, finalized once.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

/// Bind `column`'s value at `row` to parameter `at` (1-based).
///
/// # Safety
/// `stmt` is live and text columns outlive its next step.
unsafe fn bind(
    stmt: *mut ffi::sqlite3_stmt,
    at: c_int,
    column: &Column,
    row: usize,
    text: &mut String,
) -> c_int {
    let null = match column {
        Column::Int(a) => a.is_null(row),
        Column::Real(a) => a.is_null(row),
        Column::Text(a) => a.is_null(row),
        Column::Time { micros, .. } => micros.is_null(row),
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
            Column::Time { micros, time } => {
                text.clear();
                iso8601(micros.value(row), *time, text);
                let (ptr, len) = (text.as_ptr().cast(), text.len() as ffi::sqlite3_uint64);
                ffi::sqlite3_bind_text64(
                    stmt,
                    at,
                    ptr,
                    len,
                    ffi::SQLITE_TRANSIENT(),
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
