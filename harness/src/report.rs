//! From numbers to a decision: the plots, `report.md`/`report.html`, `compare` and `recommend`,
//! all drawn from a results folder as it lies on disk ([`load::Folder`]).
pub mod compare;
pub mod load;
pub mod page;
pub mod plots;
pub mod recommend;
