//! Seeded workload generators for snapbench.
//!
//! * [`ds`] — the dedicated-game-server (DS) snapshot model of docs/workload.md: matches start,
//!   send snapshots at their record rate (optionally batched), and end; each worker gets the
//!   open-loop schedule of the matches it owns.
//! * [`reads`] — the read side of the DS model: replay downloads, seeks and live tails as an
//!   open-loop stream per worker, live viewers, and the prefill of finished matches.
//! * [`micro`] — fio-style micro patterns (`read`, `write`, `randread`, `randwrite`) for
//!   calibrating engines against fio.
//! * [`seed`] — the seeding helpers both use, so that one seed always gives one schedule.
//!
//! Every generator is deterministic in its seed and does not allocate per event.

#![warn(missing_docs)]

pub mod ds;
pub mod micro;
pub mod reads;
pub mod seed;
