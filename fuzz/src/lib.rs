//! Fuzz targets of ioc-milter; see `fuzz/README.md`.

pub mod harness;
