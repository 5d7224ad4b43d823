//! Acquire and creation sites: `"file:line in func"` of the first Python
//! frame outside `threading.py`, `queue.py` and `concurrent/` (a few levels
//! up at most).
//!
//! The common case costs a few loads: the frames are read from CPython's
//! interpreter frames (no frame objects are created) and the site is cached
//! per thread ([`super::site_cache`], kept in the thread's core diagnostics
//! record) by the instruction pointers of the frames walked. A miss walks frame objects (exact, slower) and fills the
//! process-wide table of code objects seen ([`SITE_CACHE`]), which keeps
//! them alive so that the addresses the per-thread caches key on are never
//! reused.

use std::collections::HashMap;
use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;
use rsthread_core::diag::cell::{self, ThreadDiag};
use rsthread_core::diag::{intern_site, SiteId, UNKNOWN_SITE};

use super::site_cache::ThreadSites;
use crate::cpython::frames;

/// How many frames we look at to leave threading/queue/concurrent.futures.
const MAX_FRAMES: usize = 8;

struct CodeInfo {
    /// Keeps the code object alive, so its address (and that of its
    /// bytecode, which the per-thread cache keys on) is never reused.
    _code: Py<PyAny>,
    skip: bool,
    file: String,
    func: String,
}

#[derive(Default)]
struct SiteCache {
    codes: HashMap<usize, CodeInfo>,
    /// (code, line, innermost skipped code or 0, its line) -> site.
    sites: HashMap<(usize, i32, usize, i32), SiteId>,
}

static SITE_CACHE: Mutex<Option<SiteCache>> = Mutex::new(None);

fn cache() -> std::sync::MutexGuard<'static, Option<SiteCache>> {
    SITE_CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Frames that are not a useful site: the synchronization libraries (except
/// their module-level code, which creates their global locks) and the import
/// machinery.
fn skipped_code(file: &str, func: &str) -> bool {
    if file.starts_with("<frozen importlib") {
        return true;
    }
    func != "<module>"
        && (file.ends_with("/threading.py")
            || file.ends_with("/queue.py")
            || file.contains("/concurrent/"))
}

/// Whether the code object is skipped, computing its info on first sight.
fn code_skip(code: &Bound<'_, PyAny>) -> bool {
    let key = code.as_ptr() as usize;
    if let Some(i) = cache().get_or_insert_with(Default::default).codes.get(&key) {
        return i.skip;
    }
    let file = code
        .getattr("co_filename")
        .and_then(|v| v.extract::<String>())
        .unwrap_or_else(|_| "?".into());
    let func = code
        .getattr("co_name")
        .and_then(|v| v.extract::<String>())
        .unwrap_or_else(|_| "?".into());
    let skip = skipped_code(&file, &func);
    let info = CodeInfo {
        _code: code.clone().unbind(),
        skip,
        file,
        func,
    };
    cache()
        .get_or_insert_with(Default::default)
        .codes
        .insert(key, info);
    skip
}

fn site_name_of(c: &SiteCache, code: usize, line: i32) -> Option<String> {
    c.codes
        .get(&code)
        .map(|i| format!("{}:{} in {}", i.file, line, i.func))
}

fn basename(f: &str) -> &str {
    f.rsplit('/').next().unwrap_or(f)
}

/// The site of frame (`code`, `line`), reached from the innermost frame
/// (`inner`) when that one was skipped: `"file:line in func (via
/// threading.py:236 in __init__)"`, so that locks created (or acquired) at
/// different places inside a library called from one line stay distinct.
fn site_of(code: &Bound<'_, PyAny>, line: i32, inner: Option<(&Bound<'_, PyAny>, i32)>) -> SiteId {
    let ck = code.as_ptr() as usize;
    let ik = inner.map_or((0, 0), |(c, l)| (c.as_ptr() as usize, l));
    let key = (ck, line, ik.0, ik.1);
    let mut g = cache();
    let c = g.get_or_insert_with(Default::default);
    if let Some(&s) = c.sites.get(&key) {
        return s;
    }
    let Some(mut name) = site_name_of(c, ck, line) else {
        return UNKNOWN_SITE;
    };
    if let Some(i) = c.codes.get(&ik.0) {
        name = format!("{name} (via {}:{} in {})", basename(&i.file), ik.1, i.func);
    }
    let s = intern_site(&name);
    c.sites.insert(key, s);
    s
}

/// [`caller_site`] through frame objects (the public API): exact, but it
/// materializes a frame object per Python frame walked and decodes line
/// tables. Used on a per-thread cache miss.
fn caller_site_slow(py: Python<'_>) -> SiteId {
    // SAFETY: attached; PyEval_GetFrame returns a borrowed frame or NULL.
    let Some(mut frame) =
        (unsafe { Bound::from_borrowed_ptr_or_opt(py, ffi::PyEval_GetFrame().cast()) })
    else {
        return UNKNOWN_SITE;
    };
    let mut first: Option<(Bound<'_, PyAny>, i32)> = None;
    for _ in 0..MAX_FRAMES {
        let f = frame.as_ptr().cast::<ffi::PyFrameObject>();
        // SAFETY: `f` is a live frame; returns a new reference.
        let code = unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyFrame_GetCode(f).cast()) };
        // SAFETY: as above.
        let line = unsafe { ffi::PyFrame_GetLineNumber(f) };
        let Some(code) = code else { break };
        if !code_skip(&code) {
            return site_of(&code, line, first.as_ref().map(|(c, l)| (c, *l)));
        }
        if first.is_none() {
            first = Some((code, line));
        }
        // SAFETY: `f` is live; returns a new reference or NULL.
        match unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyFrame_GetBack(f).cast()) } {
            Some(b) => frame = b,
            None => break,
        }
    }
    match first {
        Some((code, line)) => site_of(&code, line, None),
        None => UNKNOWN_SITE,
    }
}

/// The site in the per-thread cache, from the interpreter frames; `None`
/// on a miss (then [`site_in`] computes and caches it).
#[inline]
fn cached_site(c: &ThreadSites) -> Option<SiteId> {
    if !frames::fast_enabled() {
        return None;
    }
    // SAFETY: attached (callers hold the GIL); fast frames enabled; the skip
    // table only holds code objects kept by SITE_CACHE (see fill_site_cache).
    let h = unsafe { frames::walk(MAX_FRAMES, |code| c.skip_of(code as u64)) }?;
    c.site_of(h)
}

/// After a slow lookup: remember the walked code objects and the site.
fn fill_site_cache(c: &mut ThreadSites, site: SiteId) {
    if !frames::fast_enabled() {
        return;
    }
    let g = cache();
    let Some(sc) = g.as_ref() else { return };
    // SAFETY: attached; fast frames enabled; every code object entered in
    // the skip table comes from SITE_CACHE, which keeps it alive.
    let h = unsafe {
        frames::walk(MAX_FRAMES, |code| {
            let info = sc.codes.get(&code)?;
            c.set_skip(code as u64, info.skip);
            Some(info.skip)
        })
    };
    if let Some(h) = h.filter(|&h| h != 0) {
        c.set_site(h, site);
    }
}

/// The site of the calling Python code, through the thread's cache.
fn site_in(py: Python<'_>, c: &mut ThreadSites) -> SiteId {
    if let Some(s) = cached_site(c) {
        return s;
    }
    let s = caller_site_slow(py);
    fill_site_cache(c, s);
    s
}

/// [`caller_site`] given the calling thread's diagnostics record (`None`
/// while the thread is torn down), which keeps the thread's cache.
#[inline]
pub(crate) fn caller_site_in(py: Python<'_>, t: Option<&mut ThreadDiag>) -> SiteId {
    match t {
        Some(t) => site_in(py, t.ext::<ThreadSites>()),
        None => caller_site_slow(py),
    }
}

/// The calling Python code's site: the first frame outside threading.py,
/// queue.py and concurrent/ (their module-level code excepted) and the import
/// machinery, within a few levels, plus the innermost frame when it was
/// skipped; else the innermost frame. Through the thread's cache.
pub(crate) fn caller_site(py: Python<'_>) -> SiteId {
    cell::with_thread(|t| caller_site_in(py, Some(t))).unwrap_or_else(|| caller_site_slow(py))
}
