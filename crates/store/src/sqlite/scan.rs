//! A whole-log read straight from SQLite's C API, on a connection locked out of sqlx's worker.
//! Why: through sqlx every row's text is duplicated into a value, sent across a channel and
//! copied again into a `String`, which costs more than SQLite's own read; here each column is
//! copied once, from SQLite's page straight into the `String` that goes on.

use std::ffi::CStr;
use std::ptr::{NonNull, null_mut};

use libsqlite3_sys as ffi;
use tokio::sync::mpsc;

use crate::{RawEvent, StoreError};

const DECISION_EVENTS: &CStr = c"SELECT seq, order_id, kind, data FROM events WHERE seq > ?1 \
    AND kind IN ('order.received', 'order.updated', 'order.evaluated') ORDER BY seq";

/// Finalizes the statement however the scan ends.
struct Statement(*mut ffi::sqlite3_stmt);

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: the statement was prepared on a handle that outlives this guard (the caller
        // holds the connection's lock for the whole scan) and is finalized exactly once.
        unsafe {
            ffi::sqlite3_finalize(self.0);
        }
    }
}

/// Sends the decision events after `after_seq` to `sink`, `page` at a time, in recording
/// order. Blocking: run it off the async workers, holding the connection's lock.
pub(super) fn decision_events(
    db: NonNull<ffi::sqlite3>,
    after_seq: i64,
    page: usize,
    sink: &mpsc::Sender<Vec<RawEvent>>,
) -> Result<(), StoreError> {
    let db = db.as_ptr();
    let page = page.max(1);
    let mut raw = null_mut();
    // SAFETY: `db` is an open connection locked for this thread; the SQL is a valid C string.
    let rc = unsafe { ffi::sqlite3_prepare_v2(db, DECISION_EVENTS.as_ptr(), -1, &mut raw, null_mut()) };
    if rc != ffi::SQLITE_OK || raw.is_null() {
        return Err(error(db, rc));
    }
    let stmt = Statement(raw);
    // SAFETY: a prepared statement with one parameter.
    let rc = unsafe { ffi::sqlite3_bind_int64(stmt.0, 1, after_seq) };
    if rc != ffi::SQLITE_OK {
        return Err(error(db, rc));
    }
    let mut events = Vec::with_capacity(page);
    loop {
        // SAFETY: stepping a prepared statement of this connection.
        match unsafe { ffi::sqlite3_step(stmt.0) } {
            ffi::SQLITE_ROW => {
                // SAFETY: a row is current; columns 0..4 exist.
                let seq = unsafe { ffi::sqlite3_column_int64(stmt.0, 0) };
                let event = RawEvent {
                    seq,
                    order_id: text(stmt.0, 1, seq)?,
                    kind: text(stmt.0, 2, seq)?,
                    data: text(stmt.0, 3, seq)?,
                };
                events.push(event);
                if events.len() == page {
                    let full = std::mem::replace(&mut events, Vec::with_capacity(page));
                    if sink.blocking_send(full).is_err() {
                        return Ok(());
                    }
                }
            }
            ffi::SQLITE_DONE => break,
            rc => return Err(error(db, rc)),
        }
    }
    if !events.is_empty() {
        let _ = sink.blocking_send(events);
    }
    Ok(())
}

/// Column `i` of the current row as an owned string.
fn text(stmt: *mut ffi::sqlite3_stmt, i: i32, seq: i64) -> Result<String, StoreError> {
    // SAFETY: a row is current. `sqlite3_column_text` first, then `sqlite3_column_bytes`, as
    // SQLite documents; the pointer stays valid until the next step, and is copied before that.
    let bytes = unsafe {
        let p = ffi::sqlite3_column_text(stmt, i);
        let n = ffi::sqlite3_column_bytes(stmt, i);
        if p.is_null() || n <= 0 { &[][..] } else { std::slice::from_raw_parts(p, n as usize) }
    };
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(StoreError::Corrupt(format!("event {seq}: column {i} is not UTF-8"))),
    }
}

fn error(db: *mut ffi::sqlite3, rc: i32) -> StoreError {
    // SAFETY: `db` is an open connection; the message is copied before any other call.
    let msg = unsafe {
        let m = ffi::sqlite3_errmsg(db);
        if m.is_null() { String::new() } else { CStr::from_ptr(m).to_string_lossy().into_owned() }
    };
    StoreError::Unavailable(format!("reading the event log (SQLite code {rc}): {msg}"))
}
