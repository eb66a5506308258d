//! The state directory: each source's last good indicator set and poll
//! cursor, so a restart matches at once and delta polls continue.
