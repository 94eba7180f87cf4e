//! A worker's client records by slab slot, in pages of 64 slots allocated as clients
//! arrive and freed when their last client goes: no allocation per client and no map
//! entry (an idle client's memory is the goal this serves). A server that dials nothing
//! holds an empty vector; one that dials a few clients among many accepted connections
//! pays a page per 64 slots that hold one.

use super::record::Client;

const PAGE: usize = 64;

struct Page {
    slots: [Option<Client>; PAGE],
    used: u32,
}

/// Client records by slab slot.
#[derive(Default)]
pub(crate) struct ClientTable {
    pages: Vec<Option<Box<Page>>>,
    len: usize,
}

fn split(slot: u32) -> (usize, usize) {
    (slot as usize / PAGE, slot as usize % PAGE)
}

impl ClientTable {
    /// The record in `slot`, if it holds a client.
    #[inline]
    pub(crate) fn get(&self, slot: &u32) -> Option<&Client> {
        let (p, i) = split(*slot);
        self.pages.get(p)?.as_ref()?.slots[i].as_ref()
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, slot: &u32) -> Option<&mut Client> {
        let (p, i) = split(*slot);
        self.pages.get_mut(p)?.as_mut()?.slots[i].as_mut()
    }

    #[inline]
    pub(crate) fn contains_key(&self, slot: &u32) -> bool {
        self.get(slot).is_some()
    }

    /// Puts `c` in `slot` (a slot of the worker's slab: it holds no client).
    pub(crate) fn insert(&mut self, slot: u32, c: Client) {
        let (p, i) = split(slot);
        if self.pages.len() <= p {
            self.pages.resize_with(p + 1, || None);
        }
        let page = self.pages[p].get_or_insert_with(|| {
            Box::new(Page { slots: std::array::from_fn(|_| None), used: 0 })
        });
        if page.slots[i].replace(c).is_none() {
            page.used += 1;
            self.len += 1;
        }
    }

    /// Takes the record out of `slot`; a page left empty is freed.
    pub(crate) fn remove(&mut self, slot: &u32) -> Option<Client> {
        let (p, i) = split(*slot);
        let page = self.pages.get_mut(p)?.as_mut()?;
        let c = page.slots[i].take()?;
        page.used -= 1;
        self.len -= 1;
        if page.used == 0 {
            self.pages[p] = None;
            while self.pages.last().is_some_and(Option::is_none) {
                self.pages.pop();
            }
        }
        Some(c)
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Index<&u32> for ClientTable {
    type Output = Client;
    fn index(&self, slot: &u32) -> &Client {
        self.get(slot).expect("no client in this slot")
    }
}
