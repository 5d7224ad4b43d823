//! Concurrency diagnostics (see submodules).
