//! End-to-end tests: the real `keel` binary, real plugins built for
//! `wasm32-wasip2` by `tests/artifacts`, a real SQLite file per test.

mod commands;
mod crash;
mod delivery;
mod grants;
mod harness;
mod hostile;
mod install;
mod invoke;
mod languages;
mod loops;
mod memory;
mod models;
mod network;
mod orchestration;
mod packages;
mod registry;
mod scaffold;
mod slice;
mod sync;
mod tamper;
mod up;
mod webhooks;
