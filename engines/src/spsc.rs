//! A bounded single-producer single-consumer ring: the message queue between two `poll`
//! reactors (what `spdk_thread_send_msg` enqueues into).
//!
//! Lamport's ring with cached indices: the producer owns `tail`, the consumer owns `head`; each
//! publishes its index with a release store and reads the other's with an acquire load only when
//! its cached copy says the ring is full (producer) or empty (consumer). No lock, no CAS, no
//! allocation after [`channel`] built the slots. Single producer and single consumer are enforced
//! by ownership: [`Producer`] and [`Consumer`] are neither `Clone` nor `Sync`, and `push` / `pop`
//! take `&mut self`.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Keeps the producer's and the consumer's index on cache lines of their own (no false sharing
/// between the two threads).
#[repr(align(64))]
struct CacheLine(AtomicUsize);

struct Ring<T> {
    /// Next slot the consumer reads (written only by the consumer).
    head: CacheLine,
    /// Next slot the producer writes (written only by the producer).
    tail: CacheLine,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
}

// SAFETY: a slot is accessed by one side at a time: the producer writes slot `i` only while
// `tail - head < capacity` says the consumer is done with it (head was published with Release
// after the read, observed with Acquire), and the consumer reads slot `i` only after the producer
// published `tail > i` (Release after the write, observed with Acquire). Values of `T` move from
// the producer's thread to the consumer's, hence `T: Send`.
unsafe impl<T: Send> Sync for Ring<T> {}
// SAFETY: as above; the ring owns values of `T`, which may be dropped on either thread.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // Both ends are gone (this is the last Arc): drop the values still queued.
        let head = *self.head.0.get_mut();
        let tail = *self.tail.0.get_mut();
        let mut i = head;
        while i != tail {
            let slot = self.slots[i & self.mask].get_mut();
            // SAFETY: slots in head..tail were written by the producer and never read.
            unsafe { slot.assume_init_drop() };
            i = i.wrapping_add(1);
        }
    }
}

/// The sending end of a ring.
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    /// Our copy of `tail` (only we write it).
    tail: usize,
    /// The consumer's `head` as last seen; refreshed only when the ring looks full.
    head_seen: usize,
}

/// The receiving end of a ring.
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
    /// Our copy of `head` (only we write it).
    head: usize,
    /// The producer's `tail` as last seen; refreshed only when the ring looks empty.
    tail_seen: usize,
}

/// A ring of `capacity` slots (a power of two, at least 1): its two ends.
///
/// # Panics
/// When `capacity` is 0 or not a power of two.
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(
        capacity.is_power_of_two(),
        "SPSC ring capacity must be a power of two, got {capacity}"
    );
    let slots: Box<[UnsafeCell<MaybeUninit<T>>]> = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let ring = Arc::new(Ring {
        head: CacheLine(AtomicUsize::new(0)),
        tail: CacheLine(AtomicUsize::new(0)),
        slots,
        mask: capacity - 1,
    });
    (
        Producer {
            ring: Arc::clone(&ring),
            tail: 0,
            head_seen: 0,
        },
        Consumer {
            ring,
            head: 0,
            tail_seen: 0,
        },
    )
}

impl<T> Producer<T> {
    /// Enqueue `value`; a full ring hands it back (back-pressure: the consumer has not caught
    /// up yet).
    pub fn push(&mut self, value: T) -> Result<(), T> {
        let cap = self.ring.mask + 1;
        if self.tail.wrapping_sub(self.head_seen) == cap {
            self.head_seen = self.ring.head.0.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_seen) == cap {
                return Err(value);
            }
        }
        let slot = &self.ring.slots[self.tail & self.ring.mask];
        // SAFETY: `tail - head < capacity`, so this slot is free: the consumer finished reading it
        // before publishing a head past it (Acquire above pairs with its Release), and it will not
        // touch it until we publish a tail past it below. We are the only producer (`&mut self`).
        unsafe { (*slot.get()).write(value) };
        self.tail = self.tail.wrapping_add(1);
        self.ring.tail.0.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.ring.mask + 1
    }

    /// Whether the consumer end has been dropped (nothing will ever drain the ring again).
    pub fn is_disconnected(&self) -> bool {
        Arc::strong_count(&self.ring) == 1
    }
}

impl<T> Consumer<T> {
    /// Dequeue the oldest value, if any.
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.tail_seen {
            self.tail_seen = self.ring.tail.0.load(Ordering::Acquire);
            if self.head == self.tail_seen {
                return None;
            }
        }
        let slot = &self.ring.slots[self.head & self.ring.mask];
        // SAFETY: `head < tail` as published by the producer with Release after writing this slot
        // (our Acquire load pairs with it), so the slot holds an initialised value that the
        // producer will not overwrite until we publish a head past it below. We are the only
        // consumer (`&mut self`), and we read each value exactly once.
        let value = unsafe { (*slot.get()).assume_init_read() };
        self.head = self.head.wrapping_add(1);
        self.ring.head.0.store(self.head, Ordering::Release);
        Some(value)
    }

    /// Whether the ring looks empty (it may fill at any moment).
    pub fn is_empty(&mut self) -> bool {
        if self.head != self.tail_seen {
            return false;
        }
        self.tail_seen = self.ring.tail.0.load(Ordering::Acquire);
        self.head == self.tail_seen
    }
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("tail", &self.tail)
            .finish()
    }
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &(self.ring.mask + 1))
            .field("head", &self.head)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_bounded_and_wraps() {
        let (mut p, mut c) = channel::<u32>(4);
        assert!(c.is_empty());
        for round in 0..10u32 {
            for i in 0..4 {
                p.push(round * 4 + i).unwrap();
            }
            assert_eq!(p.push(99), Err(99), "a full ring hands the value back");
            assert!(!c.is_empty());
            for i in 0..4 {
                assert_eq!(c.pop(), Some(round * 4 + i));
            }
            assert_eq!(c.pop(), None);
        }
    }

    #[test]
    fn queued_values_are_dropped_with_the_ring() {
        let v = Arc::new(());
        let (mut p, c) = channel::<Arc<()>>(8);
        for _ in 0..5 {
            p.push(Arc::clone(&v)).unwrap();
        }
        assert!(!p.is_disconnected());
        drop(c);
        assert!(p.is_disconnected());
        drop(p);
        assert_eq!(Arc::strong_count(&v), 1, "queued values leaked");
    }

    #[test]
    #[should_panic(expected = "power of two")]
    fn capacity_must_be_a_power_of_two() {
        let _ = channel::<u8>(6);
    }

    #[test]
    fn across_threads_in_order() {
        const N: u64 = 200_000;
        let (mut p, mut c) = channel::<(u64, [u64; 3])>(64);
        let t = std::thread::spawn(move || {
            let mut full = 0u64;
            for i in 0..N {
                let mut v = (i, [i, !i, i ^ 0x5555]);
                loop {
                    match p.push(v) {
                        Ok(()) => break,
                        Err(back) => {
                            v = back;
                            full += 1;
                            std::hint::spin_loop();
                        }
                    }
                }
            }
            full
        });
        let mut next = 0;
        while next < N {
            match c.pop() {
                Some((i, w)) => {
                    assert_eq!(i, next, "out of order");
                    assert_eq!(w, [i, !i, i ^ 0x5555], "torn value");
                    next += 1;
                }
                None => std::hint::spin_loop(),
            }
        }
        t.join().unwrap();
        assert_eq!(c.pop(), None);
    }
}
