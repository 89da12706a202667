//! fibra's per-process mailbox: a lock-free multi-producer, single-consumer queue with an
//! atomic message count.
//!
//! Every fibra process owns one [`Mailbox`]. Any thread may push a message into it; only
//! the thread currently running the process takes messages out. A runtime may hold a
//! million idle processes, so an empty mailbox has to cost next to nothing: it is three
//! words (24 bytes) and keeps no allocation, and each queued message costs one heap node.
//! A `crossbeam_queue::SegQueue` is the usual off-the-shelf answer, but it is 256 bytes
//! with 128-byte alignment and keeps a 752-byte block after its first message: 712 bytes
//! per idle process before anything is sent.
//!
//! # How it works
//!
//! * **Producers** push onto a shared stack (a Treiber stack): a new node points at the
//!   current top and one compare-and-swap makes it the new top. The stack is newest first.
//! * **The consumer** keeps a private list, oldest first, that nobody else touches. When
//!   the list runs dry it takes the whole shared stack with one atomic swap and reverses
//!   it onto the private list. Producers and the consumer therefore meet on one word, and
//!   the consumer pays one atomic operation per batch, not per message.
//! * **Order**: messages from one producer come out in the order that producer pushed
//!   them. Messages from different producers interleave in the order their pushes landed.
//! * **Count**: an atomic counter tracks how many messages are queued, so "how many
//!   messages?" is one load.
//! * **Closing**: the consumer can close the mailbox. Every queued message is dropped, and
//!   any later push fails and hands the message back to the sender.
//!
//! The consumer side is `unsafe`: the caller promises that only one thread at a time
//! acts as the consumer. In fibra that is whichever worker is running the process.
//!
//! # Example
//!
//! ```
//! use fibra_mailbox::Mailbox;
//! use std::sync::Arc;
//! use std::thread;
//!
//! let mailbox = Arc::new(Mailbox::new());
//!
//! // Two producers, each sending three messages tagged with its id.
//! let producers: Vec<_> = (0..2)
//!     .map(|id| {
//!         let mailbox = Arc::clone(&mailbox);
//!         thread::spawn(move || {
//!             for seq in 0..3 {
//!                 mailbox.push((id, seq)).expect("the mailbox is open");
//!             }
//!         })
//!     })
//!     .collect();
//! for producer in producers {
//!     producer.join().expect("producer finished");
//! }
//! assert_eq!(mailbox.len(), 6);
//!
//! // Safety: this thread is the mailbox's only consumer.
//! let first_from_1 = unsafe { mailbox.pop_matching(|&(id, _)| id == 1) };
//! assert_eq!(first_from_1, Some((1, 0)));
//!
//! // Closing drops the five messages still queued and turns later sends away.
//! // Safety: as above.
//! assert_eq!(unsafe { mailbox.close() }, 5);
//! assert_eq!(mailbox.push((0, 99)), Err((0, 99)));
//! ```

#![warn(missing_docs, unsafe_op_in_unsafe_fn)]
#![doc(test(attr(deny(warnings))))]

mod mailbox;
mod sync;

pub use mailbox::Mailbox;
