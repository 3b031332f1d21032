//! snapbench: the harness library (CLI, suites, driver, log writer, measurement, results).
pub mod driver;
pub mod error;
pub mod machine;
pub mod measure;
pub mod micro;
pub mod noise;
pub mod plan;
pub mod report;
pub mod results;
pub mod run;
pub mod search;
pub mod snaplog;
pub mod units;
pub mod writer;
