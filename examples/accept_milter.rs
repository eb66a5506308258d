//! The protocol floor: milters that accept every message without looking
//! at it.
//!
//! ```text
//! cargo run --release --example accept_milter -- [--minimal] [LISTEN] [MAX_SECONDS]
//! ```
//! LISTEN is `inet:127.0.0.1:PORT` (loopback only) or `unix:/path`;
//! default `inet:127.0.0.1:8995`. The milter stops by itself after
//! MAX_SECONDS (default 900), on SIGINT (Ctrl-C) and, with `--minimal`, on
//! SIGTERM.
//!
//! Without `--minimal`, ioc-milter's own server and session run with a
//! judge that accepts everything. The MTA then sends every event ioc-milter
//! needs, and the milter replies at MAIL FROM and at end of message.
//!
//! With `--minimal`, a connection loop built on the frame codec alone runs
//! instead. It requests that the MTA skip every step protocol 6 lets it
//! skip (connect, HELO, MAIL, RCPT, DATA, headers, end of headers, body and
//! unknown commands), and it requests no actions. The milter replies
//! ACCEPT at end of message and CONTINUE to any skippable step the MTA
//! sends anyway. At exit it prints to stderr how many frames of each
//! command it received, in total and per message, and its own CPU time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ioc_milter::config::ListenAddr;
use ioc_milter::extract::{ConnectionFacts, Envelope};
use ioc_milter::milter::protocol::{
    command, Actions, Command, Decoded, FrameDecoder, OptNeg, ProtocolFlags, Reply,
    PROTOCOL_VERSION,
};
use ioc_milter::milter::server::QuickAck;
use ioc_milter::milter::{serve, Judge, Listener, ServerConfig, Verdict};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;

const USAGE: &str = "usage: accept_milter [--minimal] [LISTEN] [MAX_SECONDS]";

struct AcceptAll;

impl Judge for AcceptAll {
    fn judge_envelope(&self, _conn: &ConnectionFacts, _envelope: &Envelope) -> Option<Verdict> {
        None
    }

    fn judge_message(
        &self,
        _conn: &ConnectionFacts,
        _envelope: &Envelope,
        _message: &[u8],
        _truncated: bool,
    ) -> Verdict {
        Verdict::accept()
    }

    fn fallback(&self, _conn: &ConnectionFacts, _envelope: &Envelope, _reason: &str) -> Verdict {
        Verdict::accept()
    }
}

/// Parses `inet:IP:PORT` (loopback only) or `unix:PATH`.
pub fn loopback_listen(text: &str) -> Result<ListenAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        return Ok(ListenAddr::Unix(path.into()));
    }
    let rest = text.strip_prefix("inet:").unwrap_or(text);
    let addr: std::net::SocketAddr = rest
        .parse()
        .map_err(|e| format!("listen address {text:?} is not inet:IP:PORT or unix:PATH: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "listen address {text:?} is not on loopback; use 127.0.0.1 or ::1"
        ));
    }
    Ok(ListenAddr::Inet(addr))
}

/// Server settings for benchmarks: generous timeouts, many connections.
pub fn bench_server_config() -> ServerConfig {
    ServerConfig {
        read_timeout: Duration::from_secs(60),
        judge_timeout: Duration::from_secs(10),
        max_frame_bytes: 1024 * 1024,
        max_connections: 1024,
        max_message_bytes: 10 * 1024 * 1024,
        socket_mode: 0o666,
    }
}

/// Command-line arguments.
struct Arguments {
    minimal: bool,
    listen: ListenAddr,
    max_seconds: u64,
}

fn parse_arguments(args: impl Iterator<Item = String>) -> Result<Arguments, String> {
    let mut minimal = false;
    let mut positional = Vec::new();
    for arg in args {
        if arg == "--minimal" {
            minimal = true;
        } else if arg.starts_with("--") {
            return Err(format!("unknown option {arg:?}; {USAGE}"));
        } else {
            positional.push(arg);
        }
    }
    if positional.len() > 2 {
        return Err(format!(
            "{} positional arguments given, at most 2 expected; {USAGE}",
            positional.len()
        ));
    }

    let mut positional = positional.into_iter();
    let listen = loopback_listen(&positional.next().unwrap_or("inet:127.0.0.1:8995".into()))?;
    let max_seconds = match positional.next() {
        Some(text) => text
            .parse()
            .map_err(|e| format!("MAX_SECONDS {text:?} is not a whole number: {e}"))?,
        None => 900,
    };
    Ok(Arguments {
        minimal,
        listen,
        max_seconds,
    })
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let arguments = parse_arguments(std::env::args().skip(1))?;
    let listen = arguments.listen;
    let max_secs = arguments.max_seconds;
    let listener = Listener::bind(&listen, 0o666)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;

    if arguments.minimal {
        // Only this mode handles SIGTERM, so that a benchmark script's
        // `kill PID` still prints the frame counts. The default mode keeps
        // the default action and ends at once.
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| format!("cannot install the SIGTERM handler: {e}"))?;
        eprintln!("accept_milter --minimal listening on {listen} for at most {max_secs} s");
        let shutdown = async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(max_secs)) => {}
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        };
        return minimal::serve(listener, shutdown).await;
    }

    eprintln!("accept_milter listening on {listen} for at most {max_secs} s");
    let shutdown = async move {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(max_secs)) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    serve(
        listener,
        Arc::new(AcceptAll),
        bench_server_config(),
        shutdown,
    )
    .await
    .map_err(|e| format!("the accept-all milter failed: {e}"))
}

/// The `--minimal` milter: no session, no judge, only the frame codec.
mod minimal {
    use super::*;

    /// Every step that protocol 6 lets a milter ask the MTA to skip.
    const SKIP_EVERY_STEP: ProtocolFlags = ProtocolFlags(
        ProtocolFlags::NOCONNECT.0
            | ProtocolFlags::NOHELO.0
            | ProtocolFlags::NOMAIL.0
            | ProtocolFlags::NORCPT.0
            | ProtocolFlags::NOBODY.0
            | ProtocolFlags::NOHDRS.0
            | ProtocolFlags::NOEOH.0
            | ProtocolFlags::NOUNKNOWN.0
            | ProtocolFlags::NODATA.0,
    );

    /// Largest frame read (command code and data). libmilter's `mfdef.h`
    /// limits body chunks to 65,535 bytes, and with NOBODY none are sent.
    const MAX_FRAME_BYTES: usize = 1024 * 1024;
    const READ_TIMEOUT: Duration = Duration::from_secs(60);
    const MAX_CONNECTIONS: usize = 1024;
    const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
    /// Connection errors printed one by one. Later ones are only counted.
    const ERRORS_PRINTED: u64 = 10;

    /// Frames received, by command code, over all connections.
    struct FrameCounts {
        connections: AtomicU64,
        errors: AtomicU64,
        commands: [AtomicU64; 256],
        /// MACRO frames by the command code they precede.
        macro_stages: [AtomicU64; 256],
    }

    impl FrameCounts {
        fn new() -> FrameCounts {
            FrameCounts {
                connections: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                commands: [const { AtomicU64::new(0) }; 256],
                macro_stages: [const { AtomicU64::new(0) }; 256],
            }
        }

        fn count(&self, code: u8) -> u64 {
            self.commands[usize::from(code)].load(Ordering::Relaxed)
        }

        fn macro_count(&self, stage: u8) -> u64 {
            self.macro_stages[usize::from(stage)].load(Ordering::Relaxed)
        }

        fn record(&self, command: &Command) {
            self.commands[usize::from(command.code())].fetch_add(1, Ordering::Relaxed);
            if let Command::Macro { stage, .. } = command {
                self.macro_stages[usize::from(*stage)].fetch_add(1, Ordering::Relaxed);
            }
        }

        fn record_error(&self, connection: u64, error: &str) {
            let errors = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
            if errors <= ERRORS_PRINTED {
                eprintln!("minimal milter connection {connection} failed: {error}");
            }
        }

        /// Prints one line per command code seen, with the count per
        /// message (one message is one end-of-message frame).
        fn print(&self) {
            let messages = self.count(command::BODYEOB);
            eprintln!(
                "frames received: {} connections, {messages} messages (end-of-message frames), {} connection errors",
                self.connections.load(Ordering::Relaxed),
                self.errors.load(Ordering::Relaxed),
            );
            match process_cpu_seconds() {
                Ok((user, system)) => eprintln!(
                    "milter CPU time: {user:.3} s user, {system:.3} s system, {} ms per message",
                    per_message_ms(user + system, messages)
                ),
                Err(error) => eprintln!("reading the milter CPU time failed: {error}"),
            }
            let per_message = |total: u64| {
                if messages == 0 {
                    "n/a".to_string()
                } else {
                    format!("{:.3}", total as f64 / messages as f64)
                }
            };
            for code in 0..=u8::MAX {
                let total = self.count(code);
                if total == 0 {
                    continue;
                }
                eprintln!(
                    "  '{}' {:<10} {total:>8} total, {} per message",
                    char::from(code),
                    command_name(code),
                    per_message(total)
                );
                if code != command::MACRO {
                    continue;
                }
                for stage in 0..=u8::MAX {
                    let total = self.macro_count(stage);
                    if total > 0 {
                        eprintln!(
                            "      before '{}' {:<10} {total:>8} total, {} per message",
                            char::from(stage),
                            command_name(stage),
                            per_message(total)
                        );
                    }
                }
            }
        }
    }

    fn per_message_ms(seconds: f64, messages: u64) -> String {
        if messages == 0 {
            "n/a".to_string()
        } else {
            format!("{:.4}", seconds * 1000.0 / messages as f64)
        }
    }

    /// Returns the user and system CPU time of the whole process (every
    /// thread), in seconds.
    fn process_cpu_seconds() -> Result<(f64, f64), std::io::Error> {
        // SAFETY: getrusage only writes into the zeroed struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let result = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
        Ok((seconds(usage.ru_utime), seconds(usage.ru_stime)))
    }

    fn command_name(code: u8) -> &'static str {
        match code {
            command::ABORT => "ABORT",
            command::BODY => "BODY",
            command::CONNECT => "CONNECT",
            command::MACRO => "MACRO",
            command::BODYEOB => "BODYEOB",
            command::HELO => "HELO",
            command::QUIT_NC => "QUIT_NC",
            command::HEADER => "HEADER",
            command::MAIL => "MAIL",
            command::EOH => "EOH",
            command::OPTNEG => "OPTNEG",
            command::QUIT => "QUIT",
            command::RCPT => "RCPT",
            command::DATA => "DATA",
            command::UNKNOWN => "UNKNOWN",
            _ => "other",
        }
    }

    /// Serves connections until `shutdown` completes, then prints the frame
    /// counts. Connections still open at that point are dropped.
    pub async fn serve(
        listener: Listener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), String> {
        let counts = Arc::new(FrameCounts::new());
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::pin!(shutdown);

        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = permits.clone().acquire_owned() => permit,
            };
            let permit = permit.map_err(|e| format!("connection limit semaphore closed: {e}"))?;
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = accept(&listener) => accepted,
            };
            match accepted {
                Ok(connection) => {
                    let number = counts.connections.fetch_add(1, Ordering::Relaxed) + 1;
                    let counts = counts.clone();
                    tokio::spawn(async move {
                        let result = match connection {
                            Connection::Tcp(stream) => {
                                serve_connection(QuickAck::new(stream), &counts).await
                            }
                            Connection::Unix(stream) => serve_connection(stream, &counts).await,
                        };
                        if let Err(error) = result {
                            counts.record_error(number, &error);
                        }
                        drop(permit);
                    });
                }
                Err(error) => {
                    eprintln!(
                        "accepting a connection failed: {error}; retrying in {ACCEPT_BACKOFF:?}"
                    );
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }

        counts.print();
        if let Listener::Unix { path, .. } = &listener {
            if let Err(error) = std::fs::remove_file(path) {
                eprintln!("removing socket {} failed: {error}", path.display());
            }
        }
        Ok(())
    }

    enum Connection {
        Tcp(TcpStream),
        Unix(UnixStream),
    }

    /// Accepts one connection. A TCP connection gets TCP_NODELAY here and,
    /// through [`QuickAck`], TCP_QUICKACK after every read, as ioc-milter's
    /// server does. Without them Postfix 3.7 waits about 40 ms per message
    /// for delayed ACKs.
    async fn accept(listener: &Listener) -> std::io::Result<Connection> {
        match listener {
            Listener::Tcp(listener) => {
                let (stream, _peer) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Ok(Connection::Tcp(stream))
            }
            Listener::Unix { listener, .. } => {
                let (stream, _peer) = listener.accept().await?;
                Ok(Connection::Unix(stream))
            }
        }
    }

    /// The action after one command.
    enum Step {
        Reply(Reply),
        Nothing,
        Close,
    }

    fn step_for(command: &Command) -> Result<Step, String> {
        let step = match command {
            Command::OptNeg(offer) => Step::Reply(Reply::OptNeg(negotiate(offer)?)),
            Command::Macro { .. } | Command::Abort | Command::QuitNewConnection => Step::Nothing,
            Command::Quit => Step::Close,
            Command::EndOfBody(_) => Step::Reply(Reply::Accept),
            // No no-reply flag is negotiated, so a step that the MTA sends
            // although it was asked to skip it still needs a reply.
            Command::Connect(_)
            | Command::Helo(_)
            | Command::Mail(_)
            | Command::Rcpt(_)
            | Command::Data
            | Command::Header { .. }
            | Command::EndOfHeaders
            | Command::Body(_)
            | Command::Unknown(_) => Step::Reply(Reply::Continue),
        };
        Ok(step)
    }

    /// Builds the OPTNEG reply, which requests every skip flag the MTA
    /// offers and no actions.
    fn negotiate(offer: &OptNeg) -> Result<OptNeg, String> {
        if offer.version < 2 {
            return Err(format!(
                "the MTA offers milter protocol version {}; this milter needs version 2 or later",
                offer.version
            ));
        }
        Ok(OptNeg {
            version: offer.version.min(PROTOCOL_VERSION),
            actions: Actions::NONE,
            protocol: SKIP_EVERY_STEP & offer.protocol,
        })
    }

    /// Reads commands until QUIT or until the MTA closes the connection,
    /// and writes the replies of each read in one write.
    async fn serve_connection<S>(mut stream: S, counts: &FrameCounts) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut decoder = FrameDecoder::new(MAX_FRAME_BYTES);
        let mut input = vec![0u8; 64 * 1024];
        let mut output = BytesMut::new();

        loop {
            let mut close = false;
            while !close {
                let command = match decoder.decode() {
                    Ok(Decoded::Frame(command)) => command,
                    Ok(Decoded::NeedMore) => break,
                    Ok(Decoded::TooLarge { declared, code, .. }) => {
                        return Err(format!(
                            "the MTA sent a '{}' frame of {declared} bytes, more than the {MAX_FRAME_BYTES} this milter reads; check that the MTA accepted the NOBODY flag",
                            char::from(code)
                        ));
                    }
                    Err(error) => return Err(format!("invalid frame from the MTA: {error}")),
                };
                counts.record(&command);
                match step_for(&command)? {
                    Step::Reply(reply) => reply.encode(&mut output),
                    Step::Nothing => {}
                    Step::Close => close = true,
                }
            }

            if !output.is_empty() {
                tokio::time::timeout(READ_TIMEOUT, stream.write_all(&output))
                    .await
                    .map_err(|_| format!("writing a reply timed out after {READ_TIMEOUT:?}"))?
                    .map_err(|e| format!("writing a reply failed: {e}"))?;
                output.clear();
            }
            if close {
                return Ok(());
            }

            let read = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut input))
                .await
                .map_err(|_| format!("reading from the MTA timed out after {READ_TIMEOUT:?}"))?
                .map_err(|e| format!("reading from the MTA failed: {e}"))?;
            if read == 0 {
                return Ok(());
            }
            decoder.feed(input.get(..read).unwrap_or_default());
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn frame(command: &Command) -> BytesMut {
            let mut out = BytesMut::new();
            command.encode(&mut out);
            out
        }

        fn postfix_offer() -> OptNeg {
            OptNeg {
                version: 6,
                actions: Actions::ALL,
                protocol: ProtocolFlags::ALL,
            }
        }

        #[test]
        fn negotiate_requests_every_skip() {
            let reply = negotiate(&postfix_offer()).unwrap();
            assert_eq!(reply.version, 6);
            assert_eq!(reply.actions, Actions::NONE);
            assert_eq!(reply.protocol, ProtocolFlags(0x37F));
        }

        #[test]
        fn negotiate_keeps_only_offered_flags() {
            let offer = OptNeg {
                version: 2,
                actions: Actions::ALL,
                protocol: ProtocolFlags::NOCONNECT | ProtocolFlags::NR_HDR,
            };
            let reply = negotiate(&offer).unwrap();
            assert_eq!(reply.version, 2);
            assert_eq!(reply.protocol, ProtocolFlags::NOCONNECT);
        }

        #[test]
        fn negotiate_rejects_version_one() {
            let offer = OptNeg {
                version: 1,
                ..postfix_offer()
            };
            let error = negotiate(&offer).unwrap_err();
            assert!(error.contains("version 1"), "{error}");
        }

        #[tokio::test]
        async fn connection_replies_and_counts() {
            let commands = [
                Command::OptNeg(postfix_offer()),
                Command::Macro {
                    stage: command::CONNECT,
                    macros: vec![("j".into(), "bench.test.example".into())],
                },
                Command::Macro {
                    stage: command::MAIL,
                    macros: vec![],
                },
                Command::Mail(vec!["<sender@src.example>".into()]),
                Command::EndOfBody(bytes::Bytes::new()),
                Command::Abort,
                Command::Quit,
            ];
            let mut input = BytesMut::new();
            for command in &commands {
                input.extend_from_slice(&frame(command));
            }
            let (mut mta, milter) = tokio::io::duplex(4096);
            let counts = FrameCounts::new();
            mta.write_all(&input).await.unwrap();

            serve_connection(milter, &counts).await.unwrap();

            let mut replies = Vec::new();
            mta.read_to_end(&mut replies).await.unwrap();
            let mut expected = BytesMut::new();
            Reply::OptNeg(negotiate(&postfix_offer()).unwrap()).encode(&mut expected);
            Reply::Continue.encode(&mut expected);
            Reply::Accept.encode(&mut expected);
            assert_eq!(replies, expected.to_vec());
            assert_eq!(counts.count(command::OPTNEG), 1);
            assert_eq!(counts.count(command::MACRO), 2);
            assert_eq!(counts.macro_count(command::CONNECT), 1);
            assert_eq!(counts.macro_count(command::MAIL), 1);
            assert_eq!(counts.count(command::MAIL), 1);
            assert_eq!(counts.count(command::BODYEOB), 1);
            assert_eq!(counts.count(command::ABORT), 1);
            assert_eq!(counts.count(command::QUIT), 1);
        }

        #[tokio::test]
        async fn connection_rejects_large_frame() {
            let (mut mta, milter) = tokio::io::duplex(4096);
            let counts = FrameCounts::new();
            let declared = u32::try_from(MAX_FRAME_BYTES + 1).unwrap();
            mta.write_all(&declared.to_be_bytes()).await.unwrap();
            mta.write_all(b"B").await.unwrap();

            let error = serve_connection(milter, &counts).await.unwrap_err();

            assert!(error.contains("'B' frame of 1048577 bytes"), "{error}");
        }
    }
}
