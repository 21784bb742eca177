//! A fixed-capacity table of names (tools, policy rules) that get a label of their own:
//! filled without a lock, read without a lock or an allocation.

use std::sync::OnceLock;

/// Up to `N` names, each set once; a name's number is its slot.
pub(super) struct NameTable<const N: usize> {
    slots: [OnceLock<Box<str>>; N],
}

impl<const N: usize> Default for NameTable<N> {
    fn default() -> Self {
        Self {
            slots: std::array::from_fn(|_| OnceLock::new()),
        }
    }
}

impl<const N: usize> NameTable<N> {
    /// The slot holding `name`, if any. Slots fill in order, so the search stops at the first
    /// empty one.
    pub(super) fn find(&self, name: &str) -> Option<usize> {
        for (i, slot) in self.slots.iter().enumerate() {
            match slot.get() {
                Some(held) if **held == *name => return Some(i),
                Some(_) => {}
                None => return None,
            }
        }
        None
    }

    /// The slot holding `name`, taking the first empty one when it is new; `None` when the
    /// table is full.
    pub(super) fn find_or_insert(&self, name: &str) -> Option<usize> {
        for (i, slot) in self.slots.iter().enumerate() {
            // Another thread may fill this slot between the look and the set: the set then
            // fails, and the slot is compared again.
            let held = match slot.get() {
                Some(held) => held,
                None => {
                    let _ = slot.set(name.into());
                    slot.get()?
                }
            };
            if **held == *name {
                return Some(i);
            }
        }
        None
    }

    /// Adds `name` unless it is there or the table is full.
    pub(super) fn insert(&self, name: &str) {
        let _ = self.find_or_insert(name);
    }

    /// The name in slot `i`.
    pub(super) fn get(&self, i: usize) -> Option<&str> {
        self.slots.get(i).and_then(OnceLock::get).map(|s| &**s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_slot_and_the_table_stays_bounded() {
        let table = NameTable::<2>::default();
        assert_eq!(table.find("a"), None);
        assert_eq!(table.find_or_insert("a"), Some(0));
        assert_eq!(table.find_or_insert("b"), Some(1));
        assert_eq!(table.find_or_insert("a"), Some(0));
        assert_eq!(table.find_or_insert("c"), None);
        assert_eq!(table.find("b"), Some(1));
        assert_eq!(table.get(1), Some("b"));
        assert_eq!(table.get(2), None);
    }
}
