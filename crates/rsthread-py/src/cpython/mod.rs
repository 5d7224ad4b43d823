//! Everything that depends on a CPython internal: a private symbol or a
//! struct layout that the public (or `PyUnstable_*`) C API does not give.
//!
//! Nothing outside this folder names a `_Py*` symbol or reads an
//! interpreter struct by offset. Each internal is used only after a check
//! against the running interpreter (its version, then a probe of the layout
//! through the public API) that runs before any pointer is followed; when a
//! check fails the feature that needs it degrades (for example, acquire
//! sites come from frame objects instead of the interpreter frames).

pub(crate) mod frames;
