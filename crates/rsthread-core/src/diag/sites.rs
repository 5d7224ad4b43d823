//! Interned sites: `"file:line in func"` strings as small integers.
//!
//! Process-wide (shared by every [`Diagnostics`](super::Diagnostics)
//! instance): interning is idempotent, so sharing is harmless and lets a site
//! id mean the same thing everywhere. Id 0 is [`UNKNOWN_SITE`].

use super::{SiteId, UNKNOWN_SITE};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// The two directions of the table.
pub(crate) struct Interner {
    ids: HashMap<Box<str>, SiteId>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn new() -> Interner {
        let mut i = Interner {
            ids: HashMap::new(),
            names: Vec::new(),
        };
        i.names.push("<unknown>".into());
        debug_assert_eq!(UNKNOWN_SITE, 0);
        i
    }
}

/// The table; created on first use. Lock order: a `Diagnostics` state mutex
/// may be held while taking this one, never the other way round.
static SITES: Mutex<Option<Interner>> = Mutex::new(None);

/// Lock the table, ignoring poison (the table is always consistent: every
/// mutation is a push followed by an insert of the same id).
pub(crate) fn lock_sites() -> MutexGuard<'static, Option<Interner>> {
    SITES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The id of `name`, interning it on first sight. Equal strings get equal ids.
/// Returns [`UNKNOWN_SITE`] if the table is full (2^32 sites).
pub fn intern_site(name: &str) -> SiteId {
    let mut g = lock_sites();
    let i = g.get_or_insert_with(Interner::new);
    if let Some(&id) = i.ids.get(name) {
        return id;
    }
    let Ok(id) = SiteId::try_from(i.names.len()) else {
        return UNKNOWN_SITE;
    };
    i.names.push(name.into());
    i.ids.insert(name.into(), id);
    id
}

/// The string interned as `id` (`"<unknown>"` for [`UNKNOWN_SITE`],
/// `"<site N>"` for an id never handed out).
pub fn site_name(id: SiteId) -> String {
    let mut g = lock_sites();
    let i = g.get_or_insert_with(Interner::new);
    name_in(i, id)
}

/// Several names under one lock.
pub(crate) fn site_names(ids: impl IntoIterator<Item = SiteId>) -> HashMap<SiteId, String> {
    let mut g = lock_sites();
    let i = g.get_or_insert_with(Interner::new);
    ids.into_iter().map(|id| (id, name_in(i, id))).collect()
}

fn name_in(i: &Interner, id: SiteId) -> String {
    match i.names.get(id as usize) {
        Some(s) => s.to_string(),
        None => format!("<site {id}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_roundtrip() {
        let a = intern_site("sites-test.py:1 in f");
        let b = intern_site("sites-test.py:2 in g");
        assert_ne!(a, b);
        assert_ne!(a, UNKNOWN_SITE);
        assert_eq!(intern_site("sites-test.py:1 in f"), a);
        assert_eq!(site_name(a), "sites-test.py:1 in f");
        assert_eq!(site_name(UNKNOWN_SITE), "<unknown>");
        assert_eq!(site_name(u32::MAX), format!("<site {}>", u32::MAX));
        let m = site_names([a, b]);
        assert_eq!(m[&b], "sites-test.py:2 in g");
    }
}
