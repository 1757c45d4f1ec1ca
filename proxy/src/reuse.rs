//! Memory a request needs only while it is served, lent per thread.
//!
//! An idle keep-alive connection should cost little more than its socket: nginx
//! frees a connection's buffers while it waits for the next request, and HAProxy
//! holds none either. The fast path ([`crate::http1`]) does the same without an
//! allocation per request: its read and head buffers are taken from this thread's
//! spares when a request begins to arrive and given back when the connection has
//! nothing left to read (its one timer stays with the connection). Only
//! connections busy at the same moment hold any; a burst leaves at most [`SPARE`]
//! of each kind behind per thread.
//!
//! The full path's typed heads are lent the same way: the header maps of a
//! request and of its answer are taken here as each head is typed and given back
//! once it is written out, so a request a rule could touch allocates no map.
//!
//! Per thread, not shared: each worker is a single-thread runtime, so a connection
//! gives back on the thread it took from, with no lock and a warm cache.

use std::cell::RefCell;

use bytes::BytesMut;
use http::HeaderMap;

/// Spares kept per thread, of each kind.
pub const SPARE: usize = 64;
/// A buffer grown past this (a large upload or head) is freed instead of kept.
pub const KEEP_UP_TO: usize = 16 * 1024;
/// A header map with room for more fields than this is freed instead of kept.
pub const KEEP_FIELDS_UP_TO: usize = 64;

thread_local! {
    static READ_BUFS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static HEAD_BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static HEADER_MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// Keep `item` among this thread's spares, unless there are enough already.
fn keep<T>(pool: &'static std::thread::LocalKey<RefCell<Vec<T>>>, item: T) {
    // At thread exit the spares are gone already: the item is simply dropped.
    let _ = pool.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < SPARE {
            p.push(item);
        }
    });
}

fn take<T>(pool: &'static std::thread::LocalKey<RefCell<Vec<T>>>) -> Option<T> {
    pool.try_with(|p| p.borrow_mut().pop()).ok().flatten()
}

/// An empty read buffer with room for `room` bytes at least.
pub fn read_buf(room: usize) -> BytesMut {
    let mut b = take(&READ_BUFS).unwrap_or_default();
    b.reserve(room);
    b
}

/// Give a read buffer back (its bytes are dropped). One that holds no memory, or
/// too much, is not kept.
pub fn give_read_buf(mut b: BytesMut) {
    b.clear();
    let cap = b.capacity();
    if cap > 0 && cap <= KEEP_UP_TO {
        keep(&READ_BUFS, b);
    }
}

/// An empty buffer for writing heads.
pub fn head_buf() -> Vec<u8> {
    take(&HEAD_BUFS).unwrap_or_default()
}

/// Give a head buffer back; as [`give_read_buf`].
pub fn give_head_buf(mut b: Vec<u8>) {
    b.clear();
    let cap = b.capacity();
    if cap > 0 && cap <= KEEP_UP_TO {
        keep(&HEAD_BUFS, b);
    }
}

/// An empty header map with room for `fields` fields.
pub fn header_map(fields: usize) -> HeaderMap {
    match take(&HEADER_MAPS) {
        Some(mut m) => {
            // Only past `http`'s own limit (32768 fields) could this fail, and
            // then the map grows as fields come, as any map does.
            let _ = m.try_reserve(fields);
            m
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// Give a header map back once its head is written (its values are dropped); as
/// [`give_read_buf`], one with no room or too much is not kept.
pub fn give_header_map(mut m: HeaderMap) {
    m.clear();
    let cap = m.capacity();
    if cap > 0 && cap <= KEEP_FIELDS_UP_TO {
        keep(&HEADER_MAPS, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_big_ones_are_freed() {
        let mut b = read_buf(4096);
        b.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        give_read_buf(b);
        let b = read_buf(4096);
        assert!(b.is_empty() && b.capacity() >= 4096);
        give_read_buf(b);
        let before = READ_BUFS.with(|p| p.borrow().len());
        give_read_buf(BytesMut::with_capacity(KEEP_UP_TO * 2));
        give_read_buf(BytesMut::new());
        assert_eq!(READ_BUFS.with(|p| p.borrow().len()), before);
        let mut h = head_buf();
        h.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        give_head_buf(h);
        let h = head_buf();
        assert!(h.is_empty() && h.capacity() > 0, "the same buffer, emptied");
    }

    #[test]
    fn header_maps_come_back_empty_with_their_room() {
        let mut m = header_map(4);
        m.insert(http::header::HOST, http::HeaderValue::from_static("a"));
        let room = m.capacity();
        give_header_map(m);
        let m = header_map(2);
        assert!(
            m.is_empty(),
            "a lent map holds none of its last head's fields"
        );
        assert!(m.capacity() >= room.min(2));
        give_header_map(m);
        let before = HEADER_MAPS.with(|p| p.borrow().len());
        give_header_map(HeaderMap::with_capacity(KEEP_FIELDS_UP_TO * 4));
        give_header_map(HeaderMap::new());
        assert_eq!(HEADER_MAPS.with(|p| p.borrow().len()), before);
    }

    #[test]
    fn spares_are_bounded() {
        for _ in 0..SPARE * 2 {
            give_head_buf(Vec::with_capacity(64));
        }
        assert_eq!(HEAD_BUFS.with(|p| p.borrow().len()), SPARE);
    }
}
