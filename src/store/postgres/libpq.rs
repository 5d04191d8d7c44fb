//! The PostgreSQL client library (libpq), loaded with dlopen the first time
//! a database store is used, so logins on a host with the file store never
//! map it. Every `unsafe` line of the database store is here: the symbol
//! table, a connection that is only ever driven without blocking (every
//! wait is a poll(2) bounded by the caller's deadline), and the reading of
//! results into owned Rust values.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::OnceLock;
use std::time::Instant;

/// The file name of the library (Debian package libpq5).
const LIBRARY: &CStr = c"libpq.so.5";

const CONNECTION_BAD: c_int = 1;
const POLLING_FAILED: c_int = 0;
const POLLING_READING: c_int = 1;
const POLLING_WRITING: c_int = 2;
const POLLING_OK: c_int = 3;
const PGRES_COMMAND_OK: c_int = 1;
const PGRES_TUPLES_OK: c_int = 2;
const PG_DIAG_SQLSTATE: c_int = b'C' as c_int;

type Conn = c_void;
type PgResult = c_void;

/// The functions we use, resolved once.
struct Api {
    connect_start_params: ConnectStartParams,
    connect_poll: ConnFn,
    status: ConstConnFn,
    socket: ConstConnFn,
    error_message: ConnText,
    set_nonblocking: ConnIntFn,
    send_query_params: SendQueryParams,
    send_query: SendQuery,
    flush: ConnFn,
    consume_input: ConnFn,
    is_busy: ConnFn,
    get_result: GetResult,
    result_status: ResultFn,
    result_error_message: ResultText,
    result_error_field: ResultField,
    ntuples: ResultFn,
    nfields: ResultFn,
    get_value: GetValue,
    get_length: CellFn,
    get_is_null: CellFn,
    clear: ClearFn,
    finish: FinishFn,
}

type ConnectStartParams =
    unsafe extern "C" fn(*const *const c_char, *const *const c_char, c_int) -> *mut Conn;
type ConnFn = unsafe extern "C" fn(*mut Conn) -> c_int;
type ConstConnFn = unsafe extern "C" fn(*const Conn) -> c_int;
type ConnText = unsafe extern "C" fn(*const Conn) -> *const c_char;
type ConnIntFn = unsafe extern "C" fn(*mut Conn, c_int) -> c_int;
type SendQueryParams = unsafe extern "C" fn(
    *mut Conn,
    *const c_char,
    c_int,
    *const c_uint,
    *const *const c_char,
    *const c_int,
    *const c_int,
    c_int,
) -> c_int;
type SendQuery = unsafe extern "C" fn(*mut Conn, *const c_char) -> c_int;
type GetResult = unsafe extern "C" fn(*mut Conn) -> *mut PgResult;
type ResultFn = unsafe extern "C" fn(*const PgResult) -> c_int;
type ResultText = unsafe extern "C" fn(*const PgResult) -> *const c_char;
type ResultField = unsafe extern "C" fn(*const PgResult, c_int) -> *const c_char;
type GetValue = unsafe extern "C" fn(*const PgResult, c_int, c_int) -> *const c_char;
type CellFn = unsafe extern "C" fn(*const PgResult, c_int, c_int) -> c_int;
type ClearFn = unsafe extern "C" fn(*mut PgResult);
type FinishFn = unsafe extern "C" fn(*mut Conn);

/// Why a database call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbError {
    /// The library is missing, the connection failed or broke, or the
    /// deadline passed: whether a sent statement committed is unknown.
    Unavailable(String),
    /// The server answered with an error (the statement did not commit).
    Refused { sqlstate: String, message: String },
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Unavailable(why) => f.write_str(why),
            DbError::Refused { sqlstate, message } => write!(f, "{message} (SQLSTATE {sqlstate})"),
        }
    }
}

/// One value of a result row: `None` is SQL NULL. Text format.
pub type Value = Option<String>;

/// The rows a statement returned (none for a command).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub rows: Vec<Vec<Value>>,
}

/// Rows may hold a secret (the administrator's `load`): wiped on drop.
impl Drop for Rows {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for value in self.rows.iter_mut().flatten().flatten() {
            value.zeroize();
        }
    }
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

fn api() -> Result<&'static Api, DbError> {
    API.get_or_init(load)
        .as_ref()
        .map_err(|why| DbError::Unavailable(why.clone()))
}

/// Loads libpq for good: it is never unloaded, so nothing of it can run
/// after an unload.
fn load() -> Result<Api, String> {
    // SAFETY: LIBRARY is a NUL-terminated name; dlopen has no other
    // precondition.
    let handle = unsafe { libc::dlopen(LIBRARY.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!(
            "{} cannot be loaded: install the libpq5 package",
            LIBRARY.to_string_lossy()
        ));
    }
    let find = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: `handle` is a live handle from dlopen and `name` is
        // NUL-terminated.
        let symbol = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if symbol.is_null() {
            return Err(format!("libpq lacks {}", name.to_string_lossy()));
        }
        Ok(symbol)
    };
    macro_rules! function {
        ($name:literal, $type:ty) => {
            // SAFETY: the symbol is the libpq function of this name, whose C
            // signature (libpq-fe.h, stable since PostgreSQL 10) is the
            // field's type.
            unsafe { std::mem::transmute::<*mut c_void, $type>(find($name)?) }
        };
    }
    Ok(Api {
        connect_start_params: function!(c"PQconnectStartParams", ConnectStartParams),
        connect_poll: function!(c"PQconnectPoll", ConnFn),
        status: function!(c"PQstatus", ConstConnFn),
        socket: function!(c"PQsocket", ConstConnFn),
        error_message: function!(c"PQerrorMessage", ConnText),
        set_nonblocking: function!(c"PQsetnonblocking", ConnIntFn),
        send_query_params: function!(c"PQsendQueryParams", SendQueryParams),
        send_query: function!(c"PQsendQuery", SendQuery),
        flush: function!(c"PQflush", ConnFn),
        consume_input: function!(c"PQconsumeInput", ConnFn),
        is_busy: function!(c"PQisBusy", ConnFn),
        get_result: function!(c"PQgetResult", GetResult),
        result_status: function!(c"PQresultStatus", ResultFn),
        result_error_message: function!(c"PQresultErrorMessage", ResultText),
        result_error_field: function!(c"PQresultErrorField", ResultField),
        ntuples: function!(c"PQntuples", ResultFn),
        nfields: function!(c"PQnfields", ResultFn),
        get_value: function!(c"PQgetvalue", GetValue),
        get_length: function!(c"PQgetlength", CellFn),
        get_is_null: function!(c"PQgetisnull", CellFn),
        clear: function!(c"PQclear", ClearFn),
        finish: function!(c"PQfinish", FinishFn),
    })
}

/// An open connection, closed on drop.
pub struct Connection {
    api: &'static Api,
    conn: *mut Conn,
}

/// What to wait for on the socket.
#[derive(Clone, Copy)]
enum Wait {
    Read,
    Write,
}

impl Connection {
    /// Connects with the given keyword/value pairs, waiting at most until
    /// `deadline`. Keywords not given are not looked up anywhere else only
    /// if the caller gives every one that matters (see `postgres::params`).
    pub fn open(params: &[(&str, String)], deadline: Instant) -> Result<Connection, DbError> {
        let api = api()?;
        let owned: Vec<(CString, CString)> = params
            .iter()
            .map(|(k, v)| Ok((c_text(k)?, c_text(v)?)))
            .collect::<Result<_, DbError>>()?;
        let mut keys: Vec<*const c_char> = owned.iter().map(|(k, _)| k.as_ptr()).collect();
        let mut values: Vec<*const c_char> = owned.iter().map(|(_, v)| v.as_ptr()).collect();
        keys.push(std::ptr::null());
        values.push(std::ptr::null());

        // SAFETY: both arrays are NULL-terminated and their strings outlive
        // the call; libpq copies what it keeps.
        let conn = unsafe { (api.connect_start_params)(keys.as_ptr(), values.as_ptr(), 0) };
        if conn.is_null() {
            return Err(DbError::Unavailable("libpq is out of memory".to_string()));
        }
        let connection = Connection { api, conn };
        connection.finish_connecting(deadline)?;
        Ok(connection)
    }

    /// Drives PQconnectPoll until it succeeds, fails or time runs out.
    fn finish_connecting(&self, deadline: Instant) -> Result<(), DbError> {
        // SAFETY: `self.conn` is a live connection for as long as `self`.
        if unsafe { (self.api.status)(self.conn) } == CONNECTION_BAD {
            return Err(self.failure("cannot connect"));
        }
        let mut wait = Wait::Write;
        loop {
            self.wait(wait, deadline, "connecting")?;
            // SAFETY: as above.
            match unsafe { (self.api.connect_poll)(self.conn) } {
                POLLING_OK => break,
                POLLING_READING => wait = Wait::Read,
                POLLING_WRITING => wait = Wait::Write,
                POLLING_FAILED => return Err(self.failure("cannot connect")),
                _ => wait = Wait::Write,
            }
        }
        // SAFETY: as above.
        if unsafe { (self.api.set_nonblocking)(self.conn, 1) } != 0 {
            return Err(self.failure("cannot switch to non-blocking mode"));
        }
        Ok(())
    }

    /// Runs one statement with text parameters (`None` is NULL) and returns
    /// its rows, waiting at most until `deadline`.
    pub fn query(
        &self,
        sql: &str,
        params: &[Option<&str>],
        deadline: Instant,
    ) -> Result<Rows, DbError> {
        self.send(sql, params, deadline)?;
        self.receive(deadline)
    }

    /// Runs a script of statements without parameters (the simple query
    /// protocol), waiting at most until `deadline`.
    pub fn script(&self, sql: &str, deadline: Instant) -> Result<(), DbError> {
        let sql = c_text(sql)?;
        // SAFETY: the connection is live and `sql` NUL-terminated; libpq
        // copies it before returning.
        if unsafe { (self.api.send_query)(self.conn, sql.as_ptr()) } != 1 {
            return Err(self.failure("cannot send the script"));
        }
        self.flush(deadline)?;
        self.receive(deadline).map(|_| ())
    }

    fn send(&self, sql: &str, params: &[Option<&str>], deadline: Instant) -> Result<(), DbError> {
        let sql = c_text(sql)?;
        // Values may hold a secret: kept in buffers wiped on drop.
        let owned: Vec<Option<zeroize::Zeroizing<Vec<u8>>>> = params
            .iter()
            .map(|p| p.map(wiped_c_text).transpose())
            .collect::<Result<_, _>>()?;
        let values: Vec<*const c_char> = owned
            .iter()
            .map(|p| p.as_ref().map_or(std::ptr::null(), |c| c.as_ptr().cast()))
            .collect();
        let count = c_int::try_from(values.len())
            .map_err(|_| DbError::Unavailable("too many parameters".to_string()))?;

        // SAFETY: the connection is live; `sql` and every value are
        // NUL-terminated and outlive the call (libpq copies them into its
        // output buffer); NULL types, lengths and formats mean "text".
        let sent = unsafe {
            (self.api.send_query_params)(
                self.conn,
                sql.as_ptr(),
                count,
                std::ptr::null(),
                values.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                0,
            )
        };
        if sent != 1 {
            return Err(self.failure("cannot send the statement"));
        }
        self.flush(deadline)
    }

    /// Waits until libpq's output buffer is on its way.
    fn flush(&self, deadline: Instant) -> Result<(), DbError> {
        loop {
            // SAFETY: the connection is live.
            match unsafe { (self.api.flush)(self.conn) } {
                0 => return Ok(()),
                1 => {
                    self.wait(Wait::Write, deadline, "sending")?;
                    self.consume()?;
                }
                _ => return Err(self.failure("cannot send the statement")),
            }
        }
    }

    fn consume(&self) -> Result<(), DbError> {
        // SAFETY: the connection is live.
        if unsafe { (self.api.consume_input)(self.conn) } == 1 {
            Ok(())
        } else {
            Err(self.failure("the connection broke"))
        }
    }

    /// Collects every result of the statement; the first error wins.
    fn receive(&self, deadline: Instant) -> Result<Rows, DbError> {
        let mut outcome: Option<Result<Rows, DbError>> = None;
        loop {
            // SAFETY: the connection is live.
            while unsafe { (self.api.is_busy)(self.conn) } == 1 {
                self.wait(Wait::Read, deadline, "waiting for the answer")?;
                self.consume()?;
            }
            // SAFETY: not busy, so PQgetResult returns without blocking.
            let result = unsafe { (self.api.get_result)(self.conn) };
            if result.is_null() {
                break;
            }
            let this = self.read_result(result);
            // SAFETY: `result` came from PQgetResult and is cleared once.
            unsafe { (self.api.clear)(result) };
            match (&outcome, this) {
                (None, this) | (Some(Ok(_)), this @ Err(_)) => outcome = Some(this),
                _ => {}
            }
        }
        outcome.unwrap_or_else(|| Err(self.failure("no answer")))
    }

    fn read_result(&self, result: *mut PgResult) -> Result<Rows, DbError> {
        // SAFETY: `result` is a live result.
        let status = unsafe { (self.api.result_status)(result) };
        match status {
            PGRES_TUPLES_OK => Ok(self.read_rows(result)),
            PGRES_COMMAND_OK => Ok(Rows::default()),
            _ => Err(self.refusal(result)),
        }
    }

    fn read_rows(&self, result: *mut PgResult) -> Rows {
        // SAFETY: `result` is a live result for the whole function.
        let (rows, fields) = unsafe { ((self.api.ntuples)(result), (self.api.nfields)(result)) };
        let cell = |row: c_int, field: c_int| -> Value {
            // SAFETY: row and field are within the counts just read.
            if unsafe { (self.api.get_is_null)(result, row, field) } == 1 {
                return None;
            }
            // SAFETY: as above; a text value is NUL-terminated and
            // PQgetlength gives its length.
            let text = unsafe {
                let pointer = (self.api.get_value)(result, row, field).cast::<u8>();
                let length = (self.api.get_length)(result, row, field).max(0) as usize;
                std::slice::from_raw_parts(pointer, length)
            };
            Some(String::from_utf8_lossy(text).into_owned())
        };
        Rows {
            rows: (0..rows)
                .map(|r| (0..fields).map(|f| cell(r, f)).collect())
                .collect(),
        }
    }

    fn refusal(&self, result: *mut PgResult) -> DbError {
        // SAFETY: `result` is live; both getters return NULL or a string
        // owned by the result, copied at once.
        let (state, message) = unsafe {
            (
                copy((self.api.result_error_field)(result, PG_DIAG_SQLSTATE)),
                copy((self.api.result_error_message)(result)),
            )
        };
        if state.is_empty() {
            return DbError::Unavailable(one_line(&message));
        }
        DbError::Refused {
            sqlstate: state,
            message: one_line(&message),
        }
    }

    /// Waits until the socket is ready or the deadline passes.
    fn wait(&self, wait: Wait, deadline: Instant, doing: &str) -> Result<(), DbError> {
        // SAFETY: the connection is live.
        let fd = unsafe { (self.api.socket)(self.conn) };
        if fd < 0 {
            return Err(self.failure("no socket"));
        }
        let events = match wait {
            Wait::Read => libc::POLLIN,
            Wait::Write => libc::POLLOUT,
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DbError::Unavailable(format!(
                    "the deadline passed while {doing}"
                )));
            }
            let mut poll = libc::pollfd {
                fd,
                events,
                revents: 0,
            };
            let millis = c_int::try_from(left.as_millis().max(1)).unwrap_or(c_int::MAX);
            // SAFETY: `poll` is one valid pollfd.
            let ready = unsafe { libc::poll(&mut poll, 1, millis) };
            if ready > 0 {
                return Ok(());
            }
            let interrupted = std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
            if ready < 0 && !interrupted {
                return Err(DbError::Unavailable("poll failed".to_string()));
            }
        }
    }

    fn failure(&self, what: &str) -> DbError {
        // SAFETY: the connection is live; the message is owned by it and
        // copied at once.
        let message = unsafe { copy((self.api.error_message)(self.conn)) };
        if message.trim().is_empty() {
            return DbError::Unavailable(what.to_string());
        }
        DbError::Unavailable(format!("{what}: {}", one_line(&message)))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: `self.conn` came from PQconnectStartParams and is
        // finished exactly once, here.
        unsafe { (self.api.finish)(self.conn) };
    }
}

/// Copies a C string that may be NULL.
///
/// # Safety
/// `text` is NULL or a live NUL-terminated string.
unsafe fn copy(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: the caller promises a live NUL-terminated string.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

fn c_text(text: &str) -> Result<CString, DbError> {
    CString::new(text).map_err(|_| DbError::Unavailable("a value holds a NUL byte".to_string()))
}

/// `text` with a terminating NUL, in a buffer wiped on drop.
fn wiped_c_text(text: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, DbError> {
    if text.as_bytes().contains(&0) {
        return Err(DbError::Unavailable("a value holds a NUL byte".to_string()));
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(text.len() + 1));
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    Ok(bytes)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Keeps the object that holds this code (pam_otpgate.so) loaded until the
/// process ends, so a helper thread left running past a deadline never
/// returns into unmapped code after the application's pam_end unloads the
/// module.
pub fn pin_this_module() {
    static PINNED: OnceLock<()> = OnceLock::new();
    PINNED.get_or_init(|| {
        // SAFETY: an all-zero Dl_info is a valid value of this C struct.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        let here = pin_this_module as *const c_void;
        // SAFETY: `here` is an address inside this object; `info` is
        // writable.
        if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
            return;
        }
        let flags = libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE;
        // SAFETY: dli_fname is the NUL-terminated path of a loaded object;
        // RTLD_NOLOAD only takes another reference to it, which is kept.
        let _ = unsafe { libc::dlopen(info.dli_fname, flags) };
    });
}
