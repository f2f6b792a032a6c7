//! The C ABI: a thin layer with no logic of its own. Every function returns a
//! status code (a `cluster_status_t`, see [`Status`]), catches panics, checks its pointers, and
//! writes the detailed message into an optional `cluster_error_t`.

pub mod fault;
pub mod mock;
pub mod node;

use crate::error::{Error, Result, Status};
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Bytes of message an error can carry, including the terminating NUL.
pub const CLUSTER_ERROR_MESSAGE_LEN: usize = 256;

/// The detailed result of a call, written by every function that takes one.
/// May live in the caller's memory (stack, Go heap): the library keeps no
/// pointer to it after the call returns.
#[repr(C)]
pub struct ClusterError {
    /// The same status code the function returned.
    pub code: c_int,
    /// A NUL-terminated message naming the problem; empty on success.
    pub message: [c_char; CLUSTER_ERROR_MESSAGE_LEN],
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Writes `result` into `err` (if not NULL) and the thread's last error, and
/// returns its status code.
fn report(result: Result<()>, err: *mut ClusterError) -> c_int {
    let (code, msg) = match &result {
        Ok(()) => (Status::Ok as c_int, ""),
        Err(e) => (e.status as c_int, e.message.as_str()),
    };
    if !err.is_null() {
        // SAFETY: the caller passes NULL or a valid, writable cluster_error_t.
        let err = unsafe { &mut *err };
        err.code = code;
        let n = msg.len().min(CLUSTER_ERROR_MESSAGE_LEN - 1);
        for (dst, src) in err.message.iter_mut().zip(msg.as_bytes()[..n].iter()) {
            *dst = *src as c_char;
        }
        err.message[n] = 0;
    }
    if code != 0 {
        let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
        LAST_ERROR.with(|l| *l.borrow_mut() = c);
    }
    code
}

/// The panic boundary every exported function runs behind: `f`'s value,
/// or `on_panic(what)` if it panicked.
pub(crate) fn guard<R>(f: impl FnOnce() -> R, on_panic: impl FnOnce(String) -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        on_panic(what)
    })
}

/// Runs `f` behind the panic boundary and reports its result. The report
/// is made inside the boundary, so only a status code crosses it, not the
/// whole result (moving that value right after it was written stalled every
/// call measurably).
pub(crate) fn call(err: *mut ClusterError, f: impl FnOnce() -> Result<()>) -> c_int {
    guard(
        || report(f(), err),
        |what| {
            let e = Error::new(Status::Panic, format!("internal error: {what}"));
            report(Err(e), err)
        },
    )
}

/// Runs a function that reports no status (a free, a query) behind the
/// panic boundary; a panic gives `fallback`.
pub(crate) fn quiet<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    guard(f, |_| fallback)
}

/// Turns a pointer argument into a reference, or a NULL-argument error that
/// names it.
pub(crate) fn arg<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: the caller passes NULL or a pointer to a live T (the contract
    // written on every function).
    unsafe { p.as_ref() }.ok_or_else(|| Error::new(Status::NullArg, format!("{name} is NULL")))
}

/// Like [`arg`] for an out-parameter.
pub(crate) fn out<'a, T>(p: *mut T, name: &str) -> Result<&'a mut T> {
    // SAFETY: as for `arg`, and the memory is writable.
    unsafe { p.as_mut() }.ok_or_else(|| Error::new(Status::NullArg, format!("{name} is NULL")))
}

/// Reads a C string argument as UTF-8.
pub(crate) fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::new(Status::NullArg, format!("{name} is NULL")));
    }
    // SAFETY: non-NULL and, by contract, NUL-terminated.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::new(Status::InvalidArg, format!("{name} is not valid UTF-8")))
}

/// The stable name of a status code, e.g. `"CLUSTER_E_TIMEOUT"`, or
/// `"CLUSTER_E_UNKNOWN"` for a number that is not a status. The string is
/// static: never free it. Any thread; never blocks.
#[no_mangle]
pub extern "C" fn cluster_strerror(code: c_int) -> *const c_char {
    let unknown = c"CLUSTER_E_UNKNOWN".as_ptr();
    quiet(unknown, || match Status::from_code(code) {
        Some(s) => s.c_name().as_ptr(),
        None => unknown,
    })
}

/// The message of the last failed call on this OS thread. Valid until the
/// next failing call on the same thread; owned by the library, never free it.
/// A convenience for C: callers that may move between threads (Go) must use
/// the `cluster_error_t` out-parameter instead.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cluster_last_error() -> *const c_char {
    quiet(c"".as_ptr(), || LAST_ERROR.with(|l| l.borrow().as_ptr()))
}

/// The library's version, e.g. `"0.1.0"`. Static; never free it.
/// Any thread; never blocks.
#[no_mangle]
pub extern "C" fn cluster_version() -> *const c_char {
    let version = concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast();
    quiet(version, || version)
}

/// Turns a pointer and a count into a slice; NULL is an error unless `n` is 0.
pub(crate) fn slice_arg<'a, T>(p: *const T, n: usize, name: &str) -> Result<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    arg(p, name)?;
    // SAFETY: non-NULL and, by contract, pointing to `n` readable items.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// Like [`slice_arg`] for a writable buffer.
pub(crate) fn slice_out<'a, T>(p: *mut T, n: usize, name: &str) -> Result<&'a mut [T]> {
    if n == 0 {
        return Ok(&mut []);
    }
    out(p, name)?;
    // SAFETY: non-NULL and, by contract, pointing to `n` writable items.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, n) })
}

/// Writes `v` into an optional out-parameter.
pub(crate) fn set_opt<T>(p: *mut T, v: T) {
    if let Ok(slot) = out(p, "") {
        *slot = v;
    }
}

/// Takes back a handle made by `Box::into_raw`; `None` for NULL.
pub(crate) fn take_box<T>(p: *mut T) -> Option<Box<T>> {
    // SAFETY: by contract `p` is NULL or came from Box::into_raw, taken once.
    (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
}

#[cfg(test)]
mod tests {
    /// Every exported function runs behind [`super::call`] or
    /// [`super::quiet`], or is a one-line wrapper of one that does (another
    /// exported function, `apply` in fault.rs, or `send_one` in node.rs).
    #[test]
    fn every_exported_function_is_behind_the_panic_boundary() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/ffi");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            for f in text.split("pub extern \"C\" fn ").skip(1) {
                let name = &f[..f.find('(').unwrap()];
                let body = &f[f.find('{').unwrap()..f.find("\n}").unwrap()];
                let guarded = body.contains("call(err,")
                    || body.contains("quiet(")
                    || ["cluster_", "apply(", "send_one("]
                        .iter()
                        .any(|w| body.trim_start_matches('{').trim().starts_with(w));
                assert!(guarded, "{name} is not behind the panic boundary");
                seen += 1;
            }
        }
        assert!(seen > 30, "found {seen} exported functions");
    }
}
