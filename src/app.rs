//! Wiring: pollers, the shared index, the milter server, signals.
