//! The socket loop: accepts MTA connections on TCP or a unix socket and runs
//! one [`serve_connection`] task per connection.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use super::session::serve_connection;
use super::Judge;
use crate::config::{Config, ListenAddr};

/// Pause after a failed `accept` (for example, out of file descriptors)
/// before the next try.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One log line per this many consecutive failed `accept` calls.
const ACCEPT_FAILURES_PER_LOG: u64 = 100;

/// Settings of the milter server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Time allowed for one read from the MTA (and one write to it).
    pub read_timeout: Duration,
    /// Time allowed for the judge on one message.
    ///
    /// NOTE: no PROGRESS reply is sent while the judge runs, so this must
    /// stay below the MTA's own wait (Postfix: `milter_content_timeout`).
    pub judge_timeout: Duration,
    /// Largest frame accepted (command code and data); a larger one is
    /// skipped and the message gets the fallback verdict.
    pub max_frame_bytes: usize,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Header section and body bytes kept for the judge; the rest of a
    /// larger message is read and dropped.
    pub max_message_bytes: usize,
    /// File mode of a unix socket.
    pub socket_mode: u32,
}

impl ServerConfig {
    pub fn from_config(config: &Config) -> ServerConfig {
        ServerConfig {
            read_timeout: config.milter.read_timeout,
            judge_timeout: config.milter.judge_timeout,
            max_frame_bytes: config.milter.max_frame_bytes,
            max_connections: config.milter.max_connections,
            max_message_bytes: config.limits.max_message_bytes,
            socket_mode: config.milter.socket_mode,
        }
    }
}

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

/// An accepted connection.
enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Binds `addr`. For a unix socket, a stale socket file at the path is
    /// removed first (any other kind of file, or a socket still in use, is
    /// an error), and the new socket gets `socket_mode`.
    ///
    /// A failed bind call returns the system's error unchanged, without the
    /// address, so that the caller can name the address as its user wrote
    /// it. The other errors name the path.
    pub async fn bind(addr: &ListenAddr, socket_mode: u32) -> io::Result<Listener> {
        match addr {
            ListenAddr::Inet(socket_addr) => {
                Ok(Listener::Tcp(TcpListener::bind(socket_addr).await?))
            }
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(socket_mode))
                    .map_err(|error| {
                        io::Error::new(
                            error.kind(),
                            format!(
                                "cannot set mode {socket_mode:o} on socket {}: {error}",
                                path.display()
                            ),
                        )
                    })?;
                Ok(Listener::Unix {
                    listener,
                    path: path.clone(),
                })
            }
        }
    }

    /// Returns the bound address. For TCP with port 0 it carries the port
    /// the system chose.
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map(ListenAddr::Inet),
            Listener::Unix { path, .. } => Ok(ListenAddr::Unix(path.clone())),
        }
    }

    async fn accept(&self) -> io::Result<(Accepted, String)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::warn!(%peer, %error, "setting TCP_NODELAY on a milter connection failed");
                }
                Ok((Accepted::Tcp(stream), peer.to_string()))
            }
            Listener::Unix { listener, path } => {
                let (stream, _peer) = listener.accept().await?;
                Ok((Accepted::Unix(stream), format!("unix:{}", path.display())))
            }
        }
    }

    /// Removes the socket file of a unix listener.
    fn remove_socket_file(&self) {
        if let Listener::Unix { path, .. } = self {
            if let Err(error) = std::fs::remove_file(path) {
                if error.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), %error, "removing the milter socket file failed");
                }
            }
        }
    }
}

/// A TCP stream that acknowledges every read at once.
///
/// Postfix does not set TCP_NODELAY on milter sockets, so it holds a small
/// write until its previous one is acknowledged. The milter answers no
/// macros and (with the no-reply flags) few commands, so Linux delays the
/// ACK by up to 40 ms, and every message waits that long. TCP_QUICKACK is
/// not sticky (the kernel turns it off again), so it is set after each read.
/// Public so that benchmark milters with their own connection loop get the
/// same socket behaviour.
pub struct QuickAck(TcpStream);

impl QuickAck {
    /// Wraps an accepted milter connection.
    pub fn new(stream: TcpStream) -> QuickAck {
        QuickAck(stream)
    }

    fn quick_ack(&self) {
        let on: libc::c_int = 1;
        // SAFETY: the fd is owned by the live stream; the option value is a
        // c_int of the given size.
        let result = unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                std::ptr::addr_of!(on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if result != 0 {
            tracing::trace!(error = %io::Error::last_os_error(), "setting TCP_QUICKACK failed");
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.0).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.quick_ack();
        }
        poll
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Removes `path` when it is a socket left by an earlier run. Fails when it
/// is any other kind of file, or a socket that a running process still
/// accepts connections on.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; remove it or set another milter.listen path",
                path.display()
            ),
        ));
    }
    // A socket that accepts a connection belongs to a live process, such as
    // a second instance started with the same configuration.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "unix:{} is in use: another process accepts connections on it; stop that process or set another milter.listen path",
                path.display()
            ),
        ));
    }
    tracing::info!(path = %path.display(), "removing a stale milter socket");
    std::fs::remove_file(path)
}

/// Serves milter connections on `listener` until `shutdown` completes; then
/// each connection finishes its current command, and the unix socket file
/// is removed.
pub async fn serve(
    listener: Listener,
    judge: Arc<dyn Judge>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let (stop_sender, stop_receiver) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut accept_failures: u64 = 0;
    let address = listener
        .local_addr()
        .map(|addr| addr.to_string())
        .unwrap_or_else(|_| "unknown address".to_string());
    tracing::info!(
        address,
        max_connections = config.max_connections,
        "milter server started"
    );
    tokio::pin!(shutdown);

    loop {
        while let Some(finished) = connections.try_join_next() {
            log_task_end(finished);
        }

        // The permit is taken before accept, so at most max_connections
        // connections are open and further MTAs wait in the listen backlog.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else {
            // The semaphore is never closed; stop rather than spin.
            tracing::error!("connection limit semaphore closed; stopping the milter server");
            break;
        };

        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if accept_failures > 0 {
                    tracing::info!(
                        address,
                        failures = accept_failures,
                        "accepting milter connections works again"
                    );
                    accept_failures = 0;
                }
                let judge = judge.clone();
                let config = config.clone();
                let stop = stop_receiver.clone();
                connections.spawn(async move {
                    crate::metrics::metrics().connection_opened();
                    let result = match stream {
                        Accepted::Tcp(stream) => {
                            let stream = QuickAck(stream);
                            serve_connection(stream, judge, &config, stop, &peer).await
                        }
                        Accepted::Unix(stream) => {
                            serve_connection(stream, judge, &config, stop, &peer).await
                        }
                    };
                    crate::metrics::metrics().connection_closed();
                    if let Err(error) = result {
                        crate::metrics::metrics().milter_error();
                        tracing::warn!(peer, %error, "milter connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Err(error) => {
                drop(permit);
                accept_failures += 1;
                // A persistent failure (such as EMFILE) repeats ten times a
                // second, so only the first of each run of failures and
                // every hundredth after it are logged.
                if accept_failures % ACCEPT_FAILURES_PER_LOG == 1 {
                    tracing::warn!(address, %error, failures = accept_failures, "accepting a milter connection failed; retrying in {ACCEPT_BACKOFF:?}");
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }

    // Connections that ended since the last accept are still in the set.
    while let Some(finished) = connections.try_join_next() {
        log_task_end(finished);
    }
    tracing::info!(address, open = connections.len(), "milter server stopping");
    // Receivers ignore a closed channel, so the send result does not matter
    // when every connection has already ended.
    let _ = stop_sender.send(true);
    while let Some(finished) = connections.join_next().await {
        log_task_end(finished);
    }
    listener.remove_socket_file();
    tracing::info!(address, "milter server stopped");
    Ok(())
}

fn log_task_end(result: Result<(), tokio::task::JoinError>) {
    if let Err(error) = result {
        tracing::error!(%error, "a milter connection task failed");
    }
}
