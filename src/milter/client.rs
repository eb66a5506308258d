//! An MTA-side milter client, for tests and load generation.
//!
//! It negotiates version 6 offering every action and protocol flag, and
//! sends macros like Postfix's (`j`, `{daemon_name}` and `{client_addr}` at
//! CONNECT, `i` at MAIL and end of message). It skips the events the milter
//! requested not to receive (but not their macros, as Postfix does) and
//! does not wait for replies the milter requested not to send.
//!
//! NOTE: Postfix sends the macros named in its `milter_*_macros` settings,
//! so a real Postfix may send more or fewer than this client.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::protocol::{
    command, Actions, Command, Connect, Decoded, Family, FrameDecoder, OptNeg, ProtocolError,
    ProtocolFlags, Reply, PROTOCOL_VERSION,
};
use super::session::expects_reply;
use crate::config::ListenAddr;

/// Largest body chunk sent in one BODY frame (libmilter's
/// `MILTER_CHUNK_SIZE`).
pub const BODY_CHUNK_BYTES: usize = 65_535;

/// Largest reply frame the client accepts.
const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Time the client waits for one reply unless [`MtaClient::set_timeout`]
/// changes it.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A byte stream to a milter.
pub trait MilterStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> MilterStream for T {}

/// Error of a client operation.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("milter connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid reply from the milter: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("no reply from the milter within {0:?}")]
    Timeout(Duration),
    #[error("the milter closed the connection")]
    Closed,
    #[error("reply frame of {declared} bytes is larger than the client's maximum of {max}")]
    TooLarge { declared: usize, max: usize },
    #[error("unexpected reply from the milter: {0:?}")]
    Unexpected(Reply),
}

/// One message as an MTA hands it to a milter.
#[derive(Debug, Clone, Default)]
pub struct MtaMessage {
    /// MAIL FROM address without angle brackets (empty for the null sender).
    pub sender: String,
    pub recipients: Vec<String>,
    /// Headers in order; values without the leading space, as Postfix sends
    /// them.
    pub headers: Vec<(String, String)>,
    /// Body with CRLF line ends.
    pub body: Vec<u8>,
    /// Queue id sent as macro `i` at MAIL and end of message.
    pub queue_id: Option<String>,
}

/// Replies of the milter that decided one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageReplies {
    /// Code of the command whose reply ended the message (`M` for an early
    /// verdict at MAIL FROM, `E` for end of message).
    pub stage: u8,
    /// Replies to that command, modifications (headers, quarantine) first
    /// and the final reply last.
    pub replies: Vec<Reply>,
}

impl MessageReplies {
    /// Returns the reply that decided the message.
    pub fn verdict(&self) -> Option<&Reply> {
        self.replies.last()
    }
}

/// A connection to a milter, from the MTA side.
pub struct MtaClient {
    stream: Box<dyn MilterStream>,
    decoder: FrameDecoder,
    negotiated: Option<OptNeg>,
    timeout: Duration,
    read_buffer: Vec<u8>,
}

impl MtaClient {
    /// Connects to a milter at `addr` (`inet:` or `unix:`).
    pub async fn connect(addr: &ListenAddr) -> std::io::Result<MtaClient> {
        match addr {
            ListenAddr::Inet(socket_addr) => MtaClient::connect_tcp(*socket_addr).await,
            ListenAddr::Unix(path) => MtaClient::connect_unix(path).await,
        }
    }

    pub async fn connect_tcp(addr: SocketAddr) -> std::io::Result<MtaClient> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(MtaClient::from_stream(stream))
    }

    pub async fn connect_unix(path: &Path) -> std::io::Result<MtaClient> {
        let stream = UnixStream::connect(path).await?;
        Ok(MtaClient::from_stream(stream))
    }

    /// Wraps an open stream, for example one end of `tokio::io::duplex`.
    pub fn from_stream<S: MilterStream + 'static>(stream: S) -> MtaClient {
        MtaClient {
            stream: Box::new(stream),
            decoder: FrameDecoder::new(MAX_REPLY_BYTES),
            negotiated: None,
            timeout: DEFAULT_TIMEOUT,
            read_buffer: vec![0; 16 * 1024],
        }
    }

    /// Sets the time to wait for one reply.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Returns the options the milter chose, after [`MtaClient::negotiate`].
    pub fn negotiated(&self) -> Option<OptNeg> {
        self.negotiated
    }

    /// Sends OPTNEG offering version 6, every action and every protocol
    /// flag, and returns the milter's choice.
    pub async fn negotiate(&mut self) -> Result<OptNeg, ClientError> {
        let offer = OptNeg {
            version: PROTOCOL_VERSION,
            actions: Actions::ALL,
            protocol: ProtocolFlags::ALL,
        };
        self.send(&Command::OptNeg(offer)).await?;
        match self.read_reply().await? {
            Reply::OptNeg(answer) => {
                self.negotiated = Some(answer);
                Ok(answer)
            }
            other => Err(ClientError::Unexpected(other)),
        }
    }

    /// Writes one command and does not wait.
    pub async fn send(&mut self, command: &Command) -> Result<(), ClientError> {
        let mut out = BytesMut::new();
        command.encode(&mut out);
        self.send_raw(&out).await
    }

    /// Writes raw bytes, for tests of malformed or partial frames.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads one reply.
    pub async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        loop {
            match self.decoder.decode_reply()? {
                Decoded::Frame(reply) => return Ok(reply),
                Decoded::TooLarge { declared, max, .. } => {
                    return Err(ClientError::TooLarge { declared, max })
                }
                Decoded::NeedMore => {}
            }
            let read =
                tokio::time::timeout(self.timeout, self.stream.read(&mut self.read_buffer)).await;
            let count = match read {
                Ok(result) => result?,
                Err(_elapsed) => return Err(ClientError::Timeout(self.timeout)),
            };
            if count == 0 {
                return Err(ClientError::Closed);
            }
            let bytes = self.read_buffer.get(..count).unwrap_or_default();
            self.decoder.feed(bytes);
        }
    }

    /// Sends a command and reads its replies: none when the milter requested
    /// no reply (or to skip the event, which is then not sent), else up to
    /// and including the first final reply.
    pub async fn command(&mut self, command: &Command) -> Result<Vec<Reply>, ClientError> {
        let code = command.code();
        if self.skips(code) {
            return Ok(Vec::new());
        }
        self.send(command).await?;
        if !expects_reply(self.protocol(), code) {
            return Ok(Vec::new());
        }
        let mut replies = Vec::new();
        loop {
            let reply = self.read_reply().await?;
            if reply == Reply::Progress {
                continue;
            }
            let done = reply.is_final();
            replies.push(reply);
            if done {
                return Ok(replies);
            }
        }
    }

    /// Sends macros for the command with code `stage`. Like Postfix's
    /// `milter8.c`, it sends them even when the milter skips that command.
    pub async fn macros(&mut self, stage: u8, macros: &[(&str, &str)]) -> Result<(), ClientError> {
        let macros = macros
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        self.send(&Command::Macro { stage, macros }).await
    }

    /// Sends the CONNECT event for an SMTP client with host name `hostname`
    /// at `client`. A `hostname` of `unknown` is sent as `[address]`, as
    /// Postfix's `milter8.c` does for a client without a verified name.
    pub async fn connect_event(
        &mut self,
        hostname: &str,
        client: SocketAddr,
    ) -> Result<Vec<Reply>, ClientError> {
        let client_addr = client.ip().to_string();
        self.macros(
            command::CONNECT,
            &[
                ("j", "mx.example.test"),
                ("{daemon_name}", "smtpd"),
                ("{client_addr}", &client_addr),
            ],
        )
        .await?;
        let family = match client.ip() {
            IpAddr::V4(_) => Family::Inet,
            IpAddr::V6(_) => Family::Inet6,
        };
        let hostname = if hostname == "unknown" {
            format!("[{client_addr}]")
        } else {
            hostname.to_string()
        };
        let connect = Connect {
            hostname,
            family,
            port: Some(client.port()),
            address: Some(client_addr),
        };
        self.command(&Command::Connect(connect)).await
    }

    pub async fn helo(&mut self, name: &str) -> Result<Vec<Reply>, ClientError> {
        self.command(&Command::Helo(name.to_string())).await
    }

    /// Sends one message from MAIL FROM to end of message and stops at the
    /// first final reply other than CONTINUE. After an early verdict it sends
    /// ABORT, as an MTA does when the SMTP transaction is reset.
    pub async fn send_message(
        &mut self,
        message: &MtaMessage,
    ) -> Result<MessageReplies, ClientError> {
        let queue_id = message.queue_id.clone().unwrap_or_default();
        let sender = format!("<{}>", message.sender);
        let mut mail_macros = vec![("{mail_addr}", message.sender.as_str())];
        if message.queue_id.is_some() {
            mail_macros.push(("i", queue_id.as_str()));
        }
        self.macros(command::MAIL, &mail_macros).await?;
        let replies = self.command(&Command::Mail(vec![sender])).await?;
        if let Some(ended) = self.ended_early(command::MAIL, replies).await? {
            return Ok(ended);
        }

        for recipient in &message.recipients {
            self.macros(command::RCPT, &[("{rcpt_addr}", recipient.as_str())])
                .await?;
            let replies = self
                .command(&Command::Rcpt(vec![format!("<{recipient}>")]))
                .await?;
            if let Some(ended) = self.ended_early(command::RCPT, replies).await? {
                return Ok(ended);
            }
        }

        let steps = std::iter::once(Command::Data)
            .chain(message.headers.iter().map(|(name, value)| Command::Header {
                name: name.as_bytes().to_vec(),
                value: value.as_bytes().to_vec(),
            }))
            .chain(std::iter::once(Command::EndOfHeaders))
            .chain(
                message
                    .body
                    .chunks(BODY_CHUNK_BYTES)
                    .map(|chunk| Command::Body(Bytes::copy_from_slice(chunk))),
            );
        for step in steps {
            let code = step.code();
            let replies = self.command(&step).await?;
            if let Some(ended) = self.ended_early(code, replies).await? {
                return Ok(ended);
            }
        }

        self.end_of_message(message.queue_id.as_deref()).await
    }

    /// Sends end of message (with macro `i` when `queue_id` is given) and
    /// returns the replies.
    pub async fn end_of_message(
        &mut self,
        queue_id: Option<&str>,
    ) -> Result<MessageReplies, ClientError> {
        if let Some(queue_id) = queue_id {
            self.macros(command::BODYEOB, &[("i", queue_id)]).await?;
        }
        let replies = self.command(&Command::EndOfBody(Bytes::new())).await?;
        Ok(MessageReplies {
            stage: command::BODYEOB,
            replies,
        })
    }

    /// Sends ABORT: the SMTP transaction was reset.
    pub async fn abort(&mut self) -> Result<(), ClientError> {
        self.send(&Command::Abort).await
    }

    /// Sends QUIT.
    pub async fn quit(&mut self) -> Result<(), ClientError> {
        self.send(&Command::Quit).await
    }

    /// Returns the outcome when `replies` end the message before end of
    /// message; sends ABORT then.
    async fn ended_early(
        &mut self,
        stage: u8,
        replies: Vec<Reply>,
    ) -> Result<Option<MessageReplies>, ClientError> {
        match replies.last() {
            None | Some(Reply::Continue) => Ok(None),
            Some(_) => {
                self.abort().await?;
                Ok(Some(MessageReplies { stage, replies }))
            }
        }
    }

    fn protocol(&self) -> ProtocolFlags {
        self.negotiated
            .map(|optneg| optneg.protocol)
            .unwrap_or(ProtocolFlags::NONE)
    }

    /// Returns whether the milter requested not to receive commands with
    /// `code`.
    fn skips(&self, code: u8) -> bool {
        let flag = match code {
            command::CONNECT => ProtocolFlags::NOCONNECT,
            command::HELO => ProtocolFlags::NOHELO,
            command::MAIL => ProtocolFlags::NOMAIL,
            command::RCPT => ProtocolFlags::NORCPT,
            command::DATA => ProtocolFlags::NODATA,
            command::HEADER => ProtocolFlags::NOHDRS,
            command::EOH => ProtocolFlags::NOEOH,
            command::BODY => ProtocolFlags::NOBODY,
            command::UNKNOWN => ProtocolFlags::NOUNKNOWN,
            _ => return false,
        };
        self.protocol().contains(flag)
    }
}
