//! snapbench: the harness library (CLI, suites, driver, log writer, measurement, results).
pub mod machine;
pub mod snaplog;
