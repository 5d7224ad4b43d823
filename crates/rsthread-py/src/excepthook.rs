//! `_thread._excepthook` and `_thread._ExceptHookArgs` (what
//! `threading.excepthook` and `threading.ExceptHookArgs` are).

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static HOOK_ARGS_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The `_ExceptHookArgs` struct-sequence type (created once).
pub fn hook_args_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    HOOK_ARGS_TYPE
        .get_or_try_init(py, || {
            let field = |name: &'static std::ffi::CStr, doc: &'static std::ffi::CStr| {
                ffi::PyStructSequence_Field {
                    name: name.as_ptr(),
                    doc: doc.as_ptr(),
                }
            };
            // Leaked on purpose: CPython keeps pointers to the descriptors for
            // the life of the type, which lives as long as the process.
            let fields: &'static mut [ffi::PyStructSequence_Field] = Box::leak(Box::new([
                field(c"exc_type", c"Exception type"),
                field(c"exc_value", c"Exception value"),
                field(c"exc_traceback", c"Exception traceback"),
                field(c"thread", c"Thread"),
                ffi::PyStructSequence_Field {
                    name: std::ptr::null(),
                    doc: std::ptr::null(),
                },
            ]));
            let desc = Box::leak(Box::new(ffi::PyStructSequence_Desc {
                name: c"_thread._ExceptHookArgs".as_ptr(),
                doc: c"ExceptHookArgs\n\nType used to pass arguments to threading.excepthook."
                    .as_ptr(),
                fields: fields.as_mut_ptr(),
                n_in_sequence: 4,
            }));
            // SAFETY: `desc` and its strings are 'static; attached; returns a
            // new type reference or NULL with an exception set.
            let tp = unsafe { ffi::PyStructSequence_NewType(desc) };
            if tp.is_null() {
                return Err(PyErr::fetch(py));
            }
            // SAFETY: a new, non-NULL reference to a type object.
            let tp = unsafe { Bound::from_owned_ptr(py, tp.cast::<ffi::PyObject>()) };
            Ok(tp.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

fn check(py: Python<'_>, r: std::os::raw::c_int) -> PyResult<()> {
    if r < 0 {
        Err(PyErr::fetch(py))
    } else {
        Ok(())
    }
}

/// excepthook(exc_type, exc_value, exc_traceback, thread)
///
/// Handle uncaught Thread.run() exception.
#[pyfunction]
#[pyo3(name = "_excepthook", signature = (*argv, **kwargs), text_signature = None)]
pub fn excepthook(
    py: Python<'_>,
    argv: &Bound<'_, pyo3::types::PyTuple>,
    kwargs: Option<&Bound<'_, pyo3::types::PyDict>>,
) -> PyResult<()> {
    // Stock is METH_O: exactly one positional argument.
    crate::args::no_keywords("_thread._excepthook", kwargs)?;
    if argv.len() != 1 {
        return Err(PyTypeError::new_err(format!(
            "_thread._excepthook() takes exactly one argument ({} given)",
            argv.len()
        )));
    }
    let args = &argv.get_item(0)?;
    if !args.get_type().is(hook_args_type(py)?) {
        return Err(PyTypeError::new_err(
            "_thread.excepthook argument type must be ExceptHookArgs",
        ));
    }
    let exc_type = args.get_item(0)?;
    if exc_type.is(py.get_type::<pyo3::exceptions::PySystemExit>()) {
        return Ok(());
    }
    let exc_value = args.get_item(1)?;
    let exc_tb = args.get_item(2)?;
    let thread = args.get_item(3)?;
    let sys = py.import("sys")?;
    let mut file = sys.getattr("stderr").ok();
    if file.as_ref().is_none_or(|f| f.is_none()) {
        if thread.is_none() {
            return Ok(());
        }
        let f = thread.getattr("_stderr")?;
        if f.is_none() {
            return Ok(());
        }
        file = Some(f);
    }
    let file = file.expect("set above");
    // SAFETY (all calls below): attached, live objects, C strings NUL-terminated.
    check(py, unsafe {
        ffi::PyFile_WriteString(c"Exception in thread ".as_ptr(), file.as_ptr())
    })?;
    let name = if thread.is_none() {
        None
    } else {
        thread.getattr_opt("name")?
    };
    match name {
        Some(n) => check(py, unsafe {
            ffi::PyFile_WriteObject(n.as_ptr(), file.as_ptr(), ffi::Py_PRINT_RAW)
        })?,
        None => {
            let s = pyo3::types::PyString::new(py, &rsthread_core::ident::current().to_string());
            check(py, unsafe {
                ffi::PyFile_WriteObject(s.as_ptr(), file.as_ptr(), ffi::Py_PRINT_RAW)
            })?;
        }
    }
    check(py, unsafe {
        ffi::PyFile_WriteString(c":\n".as_ptr(), file.as_ptr())
    })?;
    crate::cpython::display_exception(py, &file, &exc_type, &exc_value, &exc_tb)?;
    file.call_method0("flush")?;
    Ok(())
}
