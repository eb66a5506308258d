//! ioc-milter: a milter for Postfix and Sendmail that checks every message
//! against an in-memory index of threat indicators fetched from TAXII, STIX
//! and list feeds.
//!
//! The flow is one way: `feeds` fetch and parse indicators, `index` builds an
//! immutable snapshot that is swapped in atomically, `milter` receives a
//! message, `extract` turns it into observables, the snapshot is looked up,
//! `policy` decides the verdict, and `matchlog` records it. Only `app` wires
//! sockets, HTTP clients and timers together.

pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod extract;
pub mod feeds;
pub mod host_port;
pub mod index;
pub mod matchlog;
pub mod metrics;
pub mod milter;
pub mod policy;
pub mod store;
pub mod web;
