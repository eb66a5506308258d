// TEMPORARY STUB
use super::Judge;
use crate::config::{Config, ListenAddr};
use std::sync::Arc;
pub struct Listener;
impl Listener {
    pub async fn bind(_a: &ListenAddr, _m: u32) -> std::io::Result<Listener> {
        Ok(Listener)
    }
}
pub struct ServerConfig;
impl ServerConfig {
    pub fn from_config(_c: &Config) -> ServerConfig {
        ServerConfig
    }
}
pub async fn serve(
    _l: Listener,
    _j: Arc<dyn Judge>,
    _c: ServerConfig,
    _s: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    Ok(())
}
