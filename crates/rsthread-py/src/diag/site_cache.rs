//! The per-thread site cache (pure Rust, no Python): what lets an acquire
//! with diagnostics on find its site with a few loads and no lock. Each
//! thread's is kept in its core diagnostics record
//! (`rsthread_core::diag::cell::ThreadDiag::ext`), which an acquire visits
//! anyway: one thread-local access for both.

use rsthread_core::diag::SiteId;

/// The calling thread's cache of acquire sites, read without locking: two
/// 2-way set-associative tables keyed by non-zero numbers (code object
/// addresses that `site.rs` keeps valid, and hashes of the walked frames).
#[derive(Debug)]
pub(crate) struct ThreadSites {
    /// code object address -> whether its frames are skipped.
    skip: Box<[(u64, bool)]>,
    /// hash of the walked frames -> site.
    sites: Box<[(u64, SiteId)]>,
}

/// log2 of the table sizes.
const SKIP_BITS: u32 = 10;
const SITE_BITS: u32 = 11;

/// The first slot of `key`'s pair of slots in a table of 2^`bits`.
#[inline]
fn set_of(key: u64, bits: u32) -> usize {
    ((key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize) & !1
}

#[inline]
fn lookup<V: Copy>(t: &[(u64, V)], key: u64, bits: u32) -> Option<V> {
    let i = set_of(key, bits);
    [t[i], t[i + 1]]
        .into_iter()
        .find(|e| e.0 == key && key != 0)
        .map(|e| e.1)
}

/// Insert: the newest entry of a pair is first, so a new key pushes the
/// first one to second place and evicts the older one.
#[inline]
fn insert<V: Copy>(t: &mut [(u64, V)], key: u64, v: V, bits: u32) {
    let i = set_of(key, bits);
    if t[i].0 == key || (t[i].0 == 0 && t[i + 1].0 != key) {
        t[i] = (key, v);
    } else {
        t[i + 1] = t[i];
        t[i] = (key, v);
    }
}

impl ThreadSites {
    /// Whether frames of the code object at `code` are skipped, if known.
    #[inline]
    pub(crate) fn skip_of(&self, code: u64) -> Option<bool> {
        lookup(&self.skip, code, SKIP_BITS)
    }
    /// Remember whether `code`'s frames are skipped.
    pub(crate) fn set_skip(&mut self, code: u64, skip: bool) {
        insert(&mut self.skip, code, skip, SKIP_BITS)
    }
    /// The site for frame hash `h`, if known.
    #[inline]
    pub(crate) fn site_of(&self, h: u64) -> Option<SiteId> {
        lookup(&self.sites, h, SITE_BITS)
    }
    /// Remember the site for frame hash `h`.
    pub(crate) fn set_site(&mut self, h: u64, site: SiteId) {
        insert(&mut self.sites, h, site, SITE_BITS)
    }
}

impl Default for ThreadSites {
    /// Empty tables, on the heap (32 KiB).
    #[cold]
    #[inline(never)]
    fn default() -> ThreadSites {
        ThreadSites {
            skip: vec![(0, false); 1 << SKIP_BITS].into_boxed_slice(),
            sites: vec![(0, 0); 1 << SITE_BITS].into_boxed_slice(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_cache_keeps_two_colliding_keys() {
        let mut c = ThreadSites::default();
        // Three code addresses that fall in one pair of slots.
        let set = set_of(0x1000, SKIP_BITS);
        let keys: Vec<u64> = (1..)
            .map(|i| 0x1000 + 16 * i)
            .filter(|&k| set_of(k, SKIP_BITS) == set)
            .take(3)
            .collect();
        c.set_skip(0x1000, true);
        c.set_skip(keys[0], false);
        assert_eq!(
            (c.skip_of(0x1000), c.skip_of(keys[0])),
            (Some(true), Some(false)),
            "both of a colliding pair stay"
        );
        c.set_skip(keys[1], true);
        assert_eq!(c.skip_of(0x1000), None, "the older one goes");
        assert_eq!(
            (c.skip_of(keys[0]), c.skip_of(keys[1])),
            (Some(false), Some(true))
        );
        assert_eq!(c.skip_of(keys[2]), None);
        assert_eq!(c.skip_of(0), None, "0 is never a key");
        c.set_site(42, 7);
        assert_eq!(c.site_of(42), Some(7));
        c.set_site(42, 8);
        assert_eq!(c.site_of(42), Some(8), "an update replaces");
    }
}
