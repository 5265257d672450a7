//! Paths of the test plugins, built once per test run by this crate's build
//! script (see `tests/README.md`).

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
