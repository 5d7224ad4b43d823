//! Per-version switches for the binding: `Py_3_12`, `Py_3_13`, ... (and
//! `Py_GIL_DISABLED`) for the interpreter this extension is built against,
//! as PyO3 itself sees it. The version families that need different code
//! (thread states, error display, `_thread`'s surface) branch on them; the
//! running interpreter is checked against the same version at import.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
