//! Sans-IO codec for the Sendmail milter protocol, version 6.
//!
//! Every frame on the wire is a 4-byte big-endian length, a command byte and
//! `length - 1` bytes of data. The MTA sends commands (`SMFIC_*`) and the
//! milter sends replies (`SMFIR_*`). The command, reply, family and protocol
//! flag values are those of libmilter's `mfdef.h` (Sendmail 8.14), and the
//! action bits (`SMFIF_*`) those of libmilter's `mfapi.h`.
//!
//! [`FrameDecoder`] checks the declared length against a maximum before it
//! buffers anything, and can skip a frame that is too large so that the
//! stream stays in sync.

use std::fmt;
use std::ops::{BitAnd, BitOr};

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Protocol version this codec speaks.
pub const PROTOCOL_VERSION: u32 = 6;

/// Size of the length prefix of every frame.
const LENGTH_BYTES: usize = 4;

/// Command codes sent by the MTA (`SMFIC_*`).
pub mod command {
    pub const ABORT: u8 = b'A';
    pub const BODY: u8 = b'B';
    pub const CONNECT: u8 = b'C';
    pub const MACRO: u8 = b'D';
    pub const BODYEOB: u8 = b'E';
    pub const HELO: u8 = b'H';
    pub const QUIT_NC: u8 = b'K';
    pub const HEADER: u8 = b'L';
    pub const MAIL: u8 = b'M';
    pub const EOH: u8 = b'N';
    pub const OPTNEG: u8 = b'O';
    pub const QUIT: u8 = b'Q';
    pub const RCPT: u8 = b'R';
    pub const DATA: u8 = b'T';
    pub const UNKNOWN: u8 = b'U';
}

/// Reply codes sent by the milter (`SMFIR_*`).
pub mod reply {
    pub const ADDRCPT: u8 = b'+';
    pub const DELRCPT: u8 = b'-';
    pub const ACCEPT: u8 = b'a';
    pub const REPLBODY: u8 = b'b';
    pub const CONTINUE: u8 = b'c';
    pub const DISCARD: u8 = b'd';
    pub const CHGFROM: u8 = b'e';
    pub const ADDHEADER: u8 = b'h';
    pub const INSHEADER: u8 = b'i';
    pub const CHGHEADER: u8 = b'm';
    pub const PROGRESS: u8 = b'p';
    pub const QUARANTINE: u8 = b'q';
    pub const REJECT: u8 = b'r';
    pub const SKIP: u8 = b's';
    pub const TEMPFAIL: u8 = b't';
    pub const REPLYCODE: u8 = b'y';
    pub const OPTNEG: u8 = b'O';
}

/// Actions a milter may take at end of message (`SMFIF_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Actions(pub u32);

impl Actions {
    pub const NONE: Actions = Actions(0);
    pub const ADDHDRS: Actions = Actions(0x01);
    pub const CHGBODY: Actions = Actions(0x02);
    pub const ADDRCPT: Actions = Actions(0x04);
    pub const DELRCPT: Actions = Actions(0x08);
    pub const CHGHDRS: Actions = Actions(0x10);
    pub const QUARANTINE: Actions = Actions(0x20);
    pub const CHGFROM: Actions = Actions(0x40);
    pub const ADDRCPT_PAR: Actions = Actions(0x80);
    pub const SETSYMLIST: Actions = Actions(0x100);
    /// Every action defined by protocol version 6.
    pub const ALL: Actions = Actions(0x1FF);

    pub fn contains(self, other: Actions) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Actions {
    type Output = Actions;
    fn bitor(self, rhs: Actions) -> Actions {
        Actions(self.0 | rhs.0)
    }
}

impl BitAnd for Actions {
    type Output = Actions;
    fn bitand(self, rhs: Actions) -> Actions {
        Actions(self.0 & rhs.0)
    }
}

/// Protocol flags (`SMFIP_*`): steps the MTA skips (`NO*`) and steps the
/// milter sends no reply for (`NR_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ProtocolFlags(pub u32);

impl ProtocolFlags {
    pub const NONE: ProtocolFlags = ProtocolFlags(0);
    pub const NOCONNECT: ProtocolFlags = ProtocolFlags(0x01);
    pub const NOHELO: ProtocolFlags = ProtocolFlags(0x02);
    pub const NOMAIL: ProtocolFlags = ProtocolFlags(0x04);
    pub const NORCPT: ProtocolFlags = ProtocolFlags(0x08);
    pub const NOBODY: ProtocolFlags = ProtocolFlags(0x10);
    pub const NOHDRS: ProtocolFlags = ProtocolFlags(0x20);
    pub const NOEOH: ProtocolFlags = ProtocolFlags(0x40);
    pub const NR_HDR: ProtocolFlags = ProtocolFlags(0x80);
    pub const NOUNKNOWN: ProtocolFlags = ProtocolFlags(0x100);
    pub const NODATA: ProtocolFlags = ProtocolFlags(0x200);
    pub const SKIP: ProtocolFlags = ProtocolFlags(0x400);
    pub const RCPT_REJ: ProtocolFlags = ProtocolFlags(0x800);
    pub const NR_CONN: ProtocolFlags = ProtocolFlags(0x1000);
    pub const NR_HELO: ProtocolFlags = ProtocolFlags(0x2000);
    pub const NR_MAIL: ProtocolFlags = ProtocolFlags(0x4000);
    pub const NR_RCPT: ProtocolFlags = ProtocolFlags(0x8000);
    pub const NR_DATA: ProtocolFlags = ProtocolFlags(0x1_0000);
    pub const NR_UNKN: ProtocolFlags = ProtocolFlags(0x2_0000);
    pub const NR_EOH: ProtocolFlags = ProtocolFlags(0x4_0000);
    pub const NR_BODY: ProtocolFlags = ProtocolFlags(0x8_0000);
    pub const HDR_LEADSPC: ProtocolFlags = ProtocolFlags(0x10_0000);
    /// Every flag defined by protocol version 6.
    pub const ALL: ProtocolFlags = ProtocolFlags(0x1F_FFFF);
    /// Every no-reply flag.
    pub const ALL_NO_REPLY: ProtocolFlags = ProtocolFlags(0xF_F080);

    pub fn contains(self, other: ProtocolFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for ProtocolFlags {
    type Output = ProtocolFlags;
    fn bitor(self, rhs: ProtocolFlags) -> ProtocolFlags {
        ProtocolFlags(self.0 | rhs.0)
    }
}

impl BitAnd for ProtocolFlags {
    type Output = ProtocolFlags;
    fn bitand(self, rhs: ProtocolFlags) -> ProtocolFlags {
        ProtocolFlags(self.0 & rhs.0)
    }
}

/// The body of an OPTNEG command or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptNeg {
    pub version: u32,
    pub actions: Actions,
    pub protocol: ProtocolFlags,
}

/// Address family of the SMTP client in a CONNECT command (`SMFIA_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `U`: no address follows.
    Unknown,
    /// `L`: a unix socket path follows.
    Unix,
    /// `4`
    Inet,
    /// `6`
    Inet6,
}

impl Family {
    pub fn code(self) -> u8 {
        match self {
            Family::Unknown => b'U',
            Family::Unix => b'L',
            Family::Inet => b'4',
            Family::Inet6 => b'6',
        }
    }

    fn from_code(code: u8) -> Option<Family> {
        match code {
            b'U' => Some(Family::Unknown),
            b'L' => Some(Family::Unix),
            b'4' => Some(Family::Inet),
            b'6' => Some(Family::Inet6),
            _ => None,
        }
    }
}

/// The body of a CONNECT command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Client host name as the MTA resolved it (Postfix: `unknown`).
    pub hostname: String,
    pub family: Family,
    /// Client port; `None` for [`Family::Unknown`].
    pub port: Option<u16>,
    /// Client address as text (IPv4, IPv6 or a socket path); `None` for
    /// [`Family::Unknown`].
    pub address: Option<String>,
}

/// A command from the MTA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    OptNeg(OptNeg),
    /// Macro definitions for the command with code `stage`.
    Macro {
        stage: u8,
        macros: Vec<(String, String)>,
    },
    Connect(Connect),
    Helo(String),
    /// MAIL FROM: the address (with angle brackets) then ESMTP arguments.
    Mail(Vec<String>),
    /// RCPT TO: the address (with angle brackets) then ESMTP arguments.
    Rcpt(Vec<String>),
    Data,
    Header {
        name: Vec<u8>,
        value: Vec<u8>,
    },
    EndOfHeaders,
    Body(Bytes),
    /// End of message; the data, usually empty, is a last body chunk.
    EndOfBody(Bytes),
    Abort,
    Quit,
    /// Quit this SMTP connection; a new one follows on the same socket.
    QuitNewConnection,
    /// An SMTP command the MTA does not know, as the client sent it.
    Unknown(Vec<u8>),
}

impl Command {
    /// Returns the command code of this command.
    pub fn code(&self) -> u8 {
        match self {
            Command::OptNeg(_) => command::OPTNEG,
            Command::Macro { .. } => command::MACRO,
            Command::Connect(_) => command::CONNECT,
            Command::Helo(_) => command::HELO,
            Command::Mail(_) => command::MAIL,
            Command::Rcpt(_) => command::RCPT,
            Command::Data => command::DATA,
            Command::Header { .. } => command::HEADER,
            Command::EndOfHeaders => command::EOH,
            Command::Body(_) => command::BODY,
            Command::EndOfBody(_) => command::BODYEOB,
            Command::Abort => command::ABORT,
            Command::Quit => command::QUIT,
            Command::QuitNewConnection => command::QUIT_NC,
            Command::Unknown(_) => command::UNKNOWN,
        }
    }

    /// Parses the data of a frame with command code `code`.
    pub fn parse(code: u8, data: &[u8]) -> Result<Command, ProtocolError> {
        let malformed = |reason: &'static str| ProtocolError::Malformed {
            code: char::from(code),
            reason,
        };
        match code {
            command::OPTNEG => parse_optneg(data).map(Command::OptNeg).ok_or(malformed(
                "OPTNEG data is shorter than 12 bytes (version, actions, protocol)",
            )),
            command::MACRO => {
                let (&stage, rest) = data
                    .split_first()
                    .ok_or(malformed("macro command code is missing"))?;
                let fields =
                    split_nul_fields(rest).ok_or(malformed("macro data does not end with NUL"))?;
                if !fields.len().is_multiple_of(2) {
                    return Err(malformed("macro name has no value"));
                }
                let macros = fields
                    .chunks_exact(2)
                    .map(|pair| (lossy(pair[0]), lossy(pair[1])))
                    .collect();
                Ok(Command::Macro { stage, macros })
            }
            command::CONNECT => parse_connect(data).map(Command::Connect).map_err(malformed),
            command::HELO => {
                let fields =
                    split_nul_fields(data).ok_or(malformed("HELO name does not end with NUL"))?;
                match fields.as_slice() {
                    [name] => Ok(Command::Helo(lossy(name))),
                    _ => Err(malformed("HELO data is not one NUL-terminated name")),
                }
            }
            command::MAIL | command::RCPT => {
                let fields =
                    split_nul_fields(data).ok_or(malformed("arguments do not end with NUL"))?;
                if fields.is_empty() {
                    return Err(malformed("address is missing"));
                }
                let arguments = fields.iter().map(|field| lossy(field)).collect();
                if code == command::MAIL {
                    Ok(Command::Mail(arguments))
                } else {
                    Ok(Command::Rcpt(arguments))
                }
            }
            command::DATA => Ok(Command::Data),
            command::HEADER => {
                let fields =
                    split_nul_fields(data).ok_or(malformed("header does not end with NUL"))?;
                match fields.as_slice() {
                    [name, value] => Ok(Command::Header {
                        name: name.to_vec(),
                        value: value.to_vec(),
                    }),
                    _ => Err(malformed("header data is not name NUL value NUL")),
                }
            }
            command::EOH => Ok(Command::EndOfHeaders),
            command::BODY => Ok(Command::Body(Bytes::copy_from_slice(data))),
            command::BODYEOB => Ok(Command::EndOfBody(Bytes::copy_from_slice(data))),
            command::ABORT => Ok(Command::Abort),
            command::QUIT => Ok(Command::Quit),
            command::QUIT_NC => Ok(Command::QuitNewConnection),
            command::UNKNOWN => {
                let text = data.strip_suffix(b"\0").unwrap_or(data);
                Ok(Command::Unknown(text.to_vec()))
            }
            other => Err(ProtocolError::UnknownCode(other)),
        }
    }

    /// Appends this command as one frame.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut data = Vec::new();
        match self {
            Command::OptNeg(optneg) => put_optneg(&mut data, optneg),
            Command::Macro { stage, macros } => {
                data.push(*stage);
                for (name, value) in macros {
                    put_nul_terminated(&mut data, name.as_bytes());
                    put_nul_terminated(&mut data, value.as_bytes());
                }
            }
            Command::Connect(connect) => {
                put_nul_terminated(&mut data, connect.hostname.as_bytes());
                data.push(connect.family.code());
                if connect.family != Family::Unknown {
                    data.extend_from_slice(&connect.port.unwrap_or(0).to_be_bytes());
                    put_nul_terminated(
                        &mut data,
                        connect.address.as_deref().unwrap_or("").as_bytes(),
                    );
                }
            }
            Command::Helo(name) => put_nul_terminated(&mut data, name.as_bytes()),
            Command::Mail(arguments) | Command::Rcpt(arguments) => {
                for argument in arguments {
                    put_nul_terminated(&mut data, argument.as_bytes());
                }
            }
            Command::Header { name, value } => {
                put_nul_terminated(&mut data, name);
                put_nul_terminated(&mut data, value);
            }
            Command::Body(chunk) | Command::EndOfBody(chunk) => data.extend_from_slice(chunk),
            Command::Unknown(text) => put_nul_terminated(&mut data, text),
            Command::Data
            | Command::EndOfHeaders
            | Command::Abort
            | Command::Quit
            | Command::QuitNewConnection => {}
        }
        put_frame(out, self.code(), &data);
    }
}

/// A reply from the milter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    OptNeg(OptNeg),
    Continue,
    Accept,
    Reject,
    Tempfail,
    Discard,
    /// A full SMTP reply; `text` is the enhanced status code and text, with
    /// `%` not yet escaped.
    ReplyCode {
        code: u16,
        text: String,
    },
    AddHeader {
        name: String,
        value: String,
    },
    Quarantine(String),
    Progress,
    Skip,
    /// Any other reply (header changes, recipient changes, ...), undecoded.
    Other {
        code: u8,
        data: Vec<u8>,
    },
}

impl Reply {
    pub fn code(&self) -> u8 {
        match self {
            Reply::OptNeg(_) => reply::OPTNEG,
            Reply::Continue => reply::CONTINUE,
            Reply::Accept => reply::ACCEPT,
            Reply::Reject => reply::REJECT,
            Reply::Tempfail => reply::TEMPFAIL,
            Reply::Discard => reply::DISCARD,
            Reply::ReplyCode { .. } => reply::REPLYCODE,
            Reply::AddHeader { .. } => reply::ADDHEADER,
            Reply::Quarantine(_) => reply::QUARANTINE,
            Reply::Progress => reply::PROGRESS,
            Reply::Skip => reply::SKIP,
            Reply::Other { code, .. } => *code,
        }
    }

    /// Returns whether this reply ends the MTA's wait for the current
    /// command. Every reply does, except header changes, quarantine,
    /// progress and the other modification replies.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Reply::AddHeader { .. } | Reply::Quarantine(_) | Reply::Progress | Reply::Other { .. }
        )
    }

    /// Appends this reply as one frame.
    ///
    /// A REPLYCODE is sent as `"{code} {text}\0"` with every `%` doubled,
    /// the escaping libmilter applies to reply texts. CR, LF and NUL in any
    /// text become spaces, so the reply stays one line.
    ///
    /// Postfix's `milter8.c` turns `%%` back into `%`.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut data = Vec::new();
        match self {
            Reply::OptNeg(optneg) => put_optneg(&mut data, optneg),
            Reply::ReplyCode { code, text } => {
                let line = format!("{code} {}", text.replace('%', "%%"));
                put_nul_terminated(&mut data, one_line(&line).as_bytes());
            }
            Reply::AddHeader { name, value } => {
                put_nul_terminated(&mut data, one_line(name).as_bytes());
                put_nul_terminated(&mut data, one_line(value).as_bytes());
            }
            Reply::Quarantine(reason) => put_nul_terminated(&mut data, one_line(reason).as_bytes()),
            Reply::Other { data: raw, .. } => data.extend_from_slice(raw),
            Reply::Continue
            | Reply::Accept
            | Reply::Reject
            | Reply::Tempfail
            | Reply::Discard
            | Reply::Progress
            | Reply::Skip => {}
        }
        put_frame(out, self.code(), &data);
    }

    /// Parses the data of a reply frame with reply code `code`.
    pub fn parse(code: u8, data: &[u8]) -> Result<Reply, ProtocolError> {
        let malformed = |reason: &'static str| ProtocolError::Malformed {
            code: char::from(code),
            reason,
        };
        match code {
            reply::OPTNEG => parse_optneg(data).map(Reply::OptNeg).ok_or(malformed(
                "OPTNEG data is shorter than 12 bytes (version, actions, protocol)",
            )),
            reply::CONTINUE => Ok(Reply::Continue),
            reply::ACCEPT => Ok(Reply::Accept),
            reply::REJECT => Ok(Reply::Reject),
            reply::TEMPFAIL => Ok(Reply::Tempfail),
            reply::DISCARD => Ok(Reply::Discard),
            reply::PROGRESS => Ok(Reply::Progress),
            reply::SKIP => Ok(Reply::Skip),
            reply::REPLYCODE => {
                let fields =
                    split_nul_fields(data).ok_or(malformed("reply text does not end with NUL"))?;
                let [line] = fields.as_slice() else {
                    return Err(malformed("reply data is not one NUL-terminated line"));
                };
                let line = lossy(line);
                let (code_text, text) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                let code = code_text
                    .parse::<u16>()
                    .ok()
                    .filter(|code| (400..600).contains(code))
                    .ok_or(malformed("reply does not start with a 4xx or 5xx code"))?;
                Ok(Reply::ReplyCode {
                    code,
                    text: text.replace("%%", "%"),
                })
            }
            reply::ADDHEADER => {
                let fields =
                    split_nul_fields(data).ok_or(malformed("header does not end with NUL"))?;
                match fields.as_slice() {
                    [name, value] => Ok(Reply::AddHeader {
                        name: lossy(name),
                        value: lossy(value),
                    }),
                    _ => Err(malformed("header data is not name NUL value NUL")),
                }
            }
            reply::QUARANTINE => {
                let fields =
                    split_nul_fields(data).ok_or(malformed("reason does not end with NUL"))?;
                match fields.as_slice() {
                    [reason] => Ok(Reply::Quarantine(lossy(reason))),
                    _ => Err(malformed(
                        "quarantine data is not one NUL-terminated reason",
                    )),
                }
            }
            other => Ok(Reply::Other {
                code: other,
                data: data.to_vec(),
            }),
        }
    }
}

/// Invalid data on the milter connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid frame: the declared length is 0, so the command code is missing")]
    EmptyFrame,
    #[error("unknown milter command code 0x{0:02x}; the MTA speaks a protocol this milter does not know")]
    UnknownCode(u8),
    #[error("malformed '{code}' frame: {reason}")]
    Malformed { code: char, reason: &'static str },
}

/// One result of [`FrameDecoder::decode`] or [`FrameDecoder::decode_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    Frame(T),
    /// The buffer does not yet hold a whole frame.
    NeedMore,
    /// The next frame declares `declared` bytes (command code and data),
    /// more than `max`. Call [`FrameDecoder::skip_frame`] to discard it.
    TooLarge {
        declared: usize,
        max: usize,
        code: u8,
    },
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: BytesMut,
    max_frame_bytes: usize,
    /// Bytes of a skipped frame still to be discarded as they arrive.
    skip_remaining: usize,
}

impl FrameDecoder {
    /// Creates a decoder that accepts frames of at most `max_frame_bytes`
    /// (command code and data, without the length prefix).
    pub fn new(max_frame_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            buffer: BytesMut::new(),
            max_frame_bytes,
            skip_remaining: 0,
        }
    }

    /// Adds bytes read from the connection. Bytes of a frame being skipped
    /// are dropped here and never buffered.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.skip_remaining > 0 {
            let dropped = self.skip_remaining.min(bytes.len());
            self.skip_remaining -= dropped;
            bytes = bytes.get(dropped..).unwrap_or_default();
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Returns whether the decoder is inside a frame, because part of a
    /// frame is buffered or a skipped frame has bytes still to come.
    pub fn in_frame(&self) -> bool {
        !self.buffer.is_empty() || self.skip_remaining > 0
    }

    /// Decodes the next command from the MTA.
    pub fn decode(&mut self) -> Result<Decoded<Command>, ProtocolError> {
        match self.next_frame()? {
            Decoded::Frame((code, data)) => Command::parse(code, &data).map(Decoded::Frame),
            Decoded::NeedMore => Ok(Decoded::NeedMore),
            Decoded::TooLarge {
                declared,
                max,
                code,
            } => Ok(Decoded::TooLarge {
                declared,
                max,
                code,
            }),
        }
    }

    /// Decodes the next reply from the milter.
    pub fn decode_reply(&mut self) -> Result<Decoded<Reply>, ProtocolError> {
        match self.next_frame()? {
            Decoded::Frame((code, data)) => Reply::parse(code, &data).map(Decoded::Frame),
            Decoded::NeedMore => Ok(Decoded::NeedMore),
            Decoded::TooLarge {
                declared,
                max,
                code,
            } => Ok(Decoded::TooLarge {
                declared,
                max,
                code,
            }),
        }
    }

    /// Discards the frame that [`Decoded::TooLarge`] reported: the buffered
    /// part now, the rest as [`FrameDecoder::feed`] receives it. Does
    /// nothing when the next frame is not too large.
    pub fn skip_frame(&mut self) {
        let Some(declared) = self.declared_length() else {
            return;
        };
        if declared <= self.max_frame_bytes {
            return;
        }
        self.buffer.advance(LENGTH_BYTES);
        let buffered = declared.min(self.buffer.len());
        self.buffer.advance(buffered);
        self.skip_remaining = declared - buffered;
    }

    fn declared_length(&self) -> Option<usize> {
        let prefix: [u8; LENGTH_BYTES] = self.buffer.get(..LENGTH_BYTES)?.try_into().ok()?;
        usize::try_from(u32::from_be_bytes(prefix)).ok()
    }

    fn next_frame(&mut self) -> Result<Decoded<(u8, Bytes)>, ProtocolError> {
        if self.skip_remaining > 0 {
            return Ok(Decoded::NeedMore);
        }
        let Some(declared) = self.declared_length() else {
            return Ok(Decoded::NeedMore);
        };
        if declared == 0 {
            return Err(ProtocolError::EmptyFrame);
        }
        let Some(&code) = self.buffer.get(LENGTH_BYTES) else {
            return Ok(Decoded::NeedMore);
        };
        if declared > self.max_frame_bytes {
            return Ok(Decoded::TooLarge {
                declared,
                max: self.max_frame_bytes,
                code,
            });
        }
        if self.buffer.len() < LENGTH_BYTES + declared {
            self.buffer
                .reserve(LENGTH_BYTES + declared - self.buffer.len());
            return Ok(Decoded::NeedMore);
        }
        self.buffer.advance(LENGTH_BYTES + 1);
        let data = self.buffer.split_to(declared - 1).freeze();
        Ok(Decoded::Frame((code, data)))
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Unknown => "unknown",
            Family::Unix => "unix",
            Family::Inet => "inet",
            Family::Inet6 => "inet6",
        })
    }
}

fn put_frame(out: &mut BytesMut, code: u8, data: &[u8]) {
    // A frame longer than u32::MAX cannot be sent; callers build frames from
    // bounded replies and body chunks, so saturating here only guards
    // against misuse.
    let length = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    out.reserve(LENGTH_BYTES + 1 + data.len());
    out.put_u32(length);
    out.put_u8(code);
    out.put_slice(data);
}

fn put_optneg(data: &mut Vec<u8>, optneg: &OptNeg) {
    data.extend_from_slice(&optneg.version.to_be_bytes());
    data.extend_from_slice(&optneg.actions.0.to_be_bytes());
    data.extend_from_slice(&optneg.protocol.0.to_be_bytes());
}

fn parse_optneg(data: &[u8]) -> Option<OptNeg> {
    let word = |index: usize| -> Option<u32> {
        let bytes: [u8; 4] = data.get(index * 4..index * 4 + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    };
    Some(OptNeg {
        version: word(0)?,
        actions: Actions(word(1)?),
        protocol: ProtocolFlags(word(2)?),
    })
}

fn parse_connect(data: &[u8]) -> Result<Connect, &'static str> {
    let end = data
        .iter()
        .position(|&byte| byte == 0)
        .ok_or("host name does not end with NUL")?;
    let hostname = lossy(data.get(..end).unwrap_or_default());
    let rest = data.get(end + 1..).unwrap_or_default();
    let (&family_code, rest) = rest.split_first().ok_or("address family is missing")?;
    let family = Family::from_code(family_code).ok_or("address family is not one of U, L, 4, 6")?;
    if family == Family::Unknown {
        return Ok(Connect {
            hostname,
            family,
            port: None,
            address: None,
        });
    }
    let port_bytes: [u8; 2] = rest
        .get(..2)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or("port is missing")?;
    let address = rest.get(2..).unwrap_or_default();
    let address = address
        .strip_suffix(b"\0")
        .ok_or("address does not end with NUL")?;
    if address.contains(&0) {
        return Err("address contains NUL");
    }
    Ok(Connect {
        hostname,
        family,
        port: Some(u16::from_be_bytes(port_bytes)),
        address: Some(lossy(address)),
    })
}

/// Splits NUL-terminated fields; `None` when the data does not end with NUL.
/// Empty data has no fields.
fn split_nul_fields(data: &[u8]) -> Option<Vec<&[u8]>> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    let body = data.strip_suffix(b"\0")?;
    Some(body.split(|&byte| byte == 0).collect())
}

fn put_nul_terminated(data: &mut Vec<u8>, field: &[u8]) {
    data.extend(
        field
            .iter()
            .map(|&byte| if byte == 0 { b' ' } else { byte }),
    );
    data.push(0);
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if matches!(c, '\r' | '\n' | '\0') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(code: u8, data: &[u8]) -> Vec<u8> {
        let mut bytes = ((data.len() + 1) as u32).to_be_bytes().to_vec();
        bytes.push(code);
        bytes.extend_from_slice(data);
        bytes
    }

    fn decode_one(bytes: &[u8]) -> Result<Decoded<Command>, ProtocolError> {
        let mut decoder = FrameDecoder::new(1024);
        decoder.feed(bytes);
        decoder.decode()
    }

    fn encoded_reply(reply: &Reply) -> Vec<u8> {
        let mut out = BytesMut::new();
        reply.encode(&mut out);
        out.to_vec()
    }

    #[test]
    fn optneg_decodes() {
        let bytes = frame(b'O', &[0, 0, 0, 6, 0, 0, 1, 0xFF, 0, 0x1F, 0xFF, 0xFF]);
        let expected = Command::OptNeg(OptNeg {
            version: 6,
            actions: Actions::ALL,
            protocol: ProtocolFlags::ALL,
        });
        assert_eq!(decode_one(&bytes), Ok(Decoded::Frame(expected)));
    }

    #[test]
    fn optneg_short_errors() {
        let bytes = frame(b'O', &[0, 0, 0, 6, 0, 0]);
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::Malformed { code: 'O', .. })
        ));
    }

    #[test]
    fn macro_decodes() {
        let bytes = frame(b'D', b"Cj\0mx.example.org\0{daemon_name}\0smtpd\0");
        let expected = Command::Macro {
            stage: b'C',
            macros: vec![
                ("j".into(), "mx.example.org".into()),
                ("{daemon_name}".into(), "smtpd".into()),
            ],
        };
        assert_eq!(decode_one(&bytes), Ok(Decoded::Frame(expected)));
    }

    #[test]
    fn macro_without_stage_errors() {
        let bytes = frame(b'D', b"");
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::Malformed { code: 'D', .. })
        ));
    }

    #[test]
    fn macro_odd_fields_errors() {
        let bytes = frame(b'D', b"Mi\0");
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::Malformed { code: 'D', .. })
        ));
    }

    #[test]
    fn connect_inet_decodes() {
        let bytes = frame(b'C', b"client.example.net\x004\x30\x39192.0.2.7\0");
        let expected = Command::Connect(Connect {
            hostname: "client.example.net".into(),
            family: Family::Inet,
            port: Some(12345),
            address: Some("192.0.2.7".into()),
        });
        assert_eq!(decode_one(&bytes), Ok(Decoded::Frame(expected)));
    }

    #[test]
    fn connect_inet6_decodes() {
        let bytes = frame(b'C', b"unknown\x006\x00\x192001:db8::1\0");
        let expected = Command::Connect(Connect {
            hostname: "unknown".into(),
            family: Family::Inet6,
            port: Some(25),
            address: Some("2001:db8::1".into()),
        });
        assert_eq!(decode_one(&bytes), Ok(Decoded::Frame(expected)));
    }

    #[test]
    fn connect_unix_decodes() {
        let bytes = frame(b'C', b"localhost\0L\x00\x00/run/smtp.sock\0");
        let expected = Command::Connect(Connect {
            hostname: "localhost".into(),
            family: Family::Unix,
            port: Some(0),
            address: Some("/run/smtp.sock".into()),
        });
        assert_eq!(decode_one(&bytes), Ok(Decoded::Frame(expected)));
    }

    #[test]
    fn connect_unknown_family_decodes() {
        let bytes = frame(b'C', b"localhost\0U");
        let expected = Command::Connect(Connect {
            hostname: "localhost".into(),
            family: Family::Unknown,
            port: None,
            address: None,
        });
        assert_eq!(decode_one(&bytes), Ok(Decoded::Frame(expected)));
    }

    #[test]
    fn connect_bad_family_errors() {
        let bytes = frame(b'C', b"host\0X\x00\x19192.0.2.7\0");
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::Malformed { code: 'C', .. })
        ));
    }

    #[test]
    fn connect_missing_nul_errors() {
        let bytes = frame(b'C', b"host");
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::Malformed { code: 'C', .. })
        ));
    }

    #[test]
    fn connect_short_port_errors() {
        let bytes = frame(b'C', b"host\x004\x00");
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::Malformed { code: 'C', .. })
        ));
    }

    #[test]
    fn helo_decodes() {
        let bytes = frame(b'H', b"mail.example.net\0");
        assert_eq!(
            decode_one(&bytes),
            Ok(Decoded::Frame(Command::Helo("mail.example.net".into())))
        );
    }

    #[test]
    fn helo_without_nul_errors() {
        let bytes = frame(b'H', b"mail.example.net");
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::Malformed { code: 'H', .. })
        ));
    }

    #[test]
    fn mail_decodes() {
        let bytes = frame(b'M', b"<alice@example.net>\0SIZE=1024\0");
        let expected = Command::Mail(vec!["<alice@example.net>".into(), "SIZE=1024".into()]);
        assert_eq!(decode_one(&bytes), Ok(Decoded::Frame(expected)));
    }

    #[test]
    fn rcpt_decodes() {
        let bytes = frame(b'R', b"<bob@example.org>\0");
        let expected = Command::Rcpt(vec!["<bob@example.org>".into()]);
        assert_eq!(decode_one(&bytes), Ok(Decoded::Frame(expected)));
    }

    #[test]
    fn rcpt_empty_errors() {
        let bytes = frame(b'R', b"");
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::Malformed { code: 'R', .. })
        ));
    }

    #[test]
    fn header_decodes() {
        let bytes = frame(b'L', b"Subject\0Hello\0");
        let expected = Command::Header {
            name: b"Subject".to_vec(),
            value: b"Hello".to_vec(),
        };
        assert_eq!(decode_one(&bytes), Ok(Decoded::Frame(expected)));
    }

    #[test]
    fn header_one_field_errors() {
        let bytes = frame(b'L', b"Subject\0");
        assert!(matches!(
            decode_one(&bytes),
            Err(ProtocolError::Malformed { code: 'L', .. })
        ));
    }

    #[test]
    fn simple_commands_decode() {
        let cases = [
            (b'T', Command::Data),
            (b'N', Command::EndOfHeaders),
            (b'A', Command::Abort),
            (b'Q', Command::Quit),
            (b'K', Command::QuitNewConnection),
        ];
        for (code, expected) in cases {
            assert_eq!(decode_one(&frame(code, b"")), Ok(Decoded::Frame(expected)));
        }
    }

    #[test]
    fn body_decodes() {
        let bytes = frame(b'B', b"line one\r\nline two\r\n");
        let expected = Command::Body(Bytes::from_static(b"line one\r\nline two\r\n"));
        assert_eq!(decode_one(&bytes), Ok(Decoded::Frame(expected)));
    }

    #[test]
    fn end_of_body_decodes() {
        let bytes = frame(b'E', b"");
        assert_eq!(
            decode_one(&bytes),
            Ok(Decoded::Frame(Command::EndOfBody(Bytes::new())))
        );
    }

    #[test]
    fn unknown_decodes() {
        let bytes = frame(b'U', b"XFOO bar\0");
        assert_eq!(
            decode_one(&bytes),
            Ok(Decoded::Frame(Command::Unknown(b"XFOO bar".to_vec())))
        );
    }

    #[test]
    fn unknown_code_errors() {
        let bytes = frame(b'z', b"");
        assert_eq!(decode_one(&bytes), Err(ProtocolError::UnknownCode(b'z')));
    }

    #[test]
    fn zero_length_errors() {
        assert_eq!(decode_one(&[0, 0, 0, 0]), Err(ProtocolError::EmptyFrame));
    }

    #[test]
    fn truncated_frame_needs_more() {
        let bytes = frame(b'H', b"mail.example.net\0");
        let mut decoder = FrameDecoder::new(1024);
        for (index, byte) in bytes.iter().enumerate() {
            assert_eq!(
                decoder.decode(),
                Ok(Decoded::NeedMore),
                "before byte {index}"
            );
            decoder.feed(&[*byte]);
        }
        assert_eq!(
            decoder.decode(),
            Ok(Decoded::Frame(Command::Helo("mail.example.net".into())))
        );
        assert_eq!(decoder.decode(), Ok(Decoded::NeedMore));
        assert!(!decoder.in_frame());
    }

    #[test]
    fn two_frames_in_one_feed() {
        let mut bytes = frame(b'T', b"");
        bytes.extend(frame(b'N', b""));
        let mut decoder = FrameDecoder::new(1024);
        decoder.feed(&bytes);
        assert_eq!(decoder.decode(), Ok(Decoded::Frame(Command::Data)));
        assert_eq!(decoder.decode(), Ok(Decoded::Frame(Command::EndOfHeaders)));
        assert_eq!(decoder.decode(), Ok(Decoded::NeedMore));
    }

    #[test]
    fn oversized_frame_reported_before_data() {
        let mut decoder = FrameDecoder::new(16);
        decoder.feed(&[0, 0x10, 0, 0, b'B']);
        let expected = Decoded::TooLarge {
            declared: 0x10_0000,
            max: 16,
            code: b'B',
        };
        assert_eq!(decoder.decode(), Ok(expected));
        assert_eq!(decoder.buffered(), 5);
    }

    #[test]
    fn oversized_frame_skipped() {
        let big = vec![b'x'; 100];
        let mut bytes = frame(b'B', &big);
        bytes.extend(frame(b'T', b""));
        let mut decoder = FrameDecoder::new(16);
        decoder.feed(bytes.get(..20).unwrap_or_default());
        assert!(matches!(
            decoder.decode(),
            Ok(Decoded::TooLarge { declared: 101, .. })
        ));
        decoder.skip_frame();
        assert_eq!(decoder.buffered(), 0);
        assert_eq!(decoder.decode(), Ok(Decoded::NeedMore));
        decoder.feed(bytes.get(20..60).unwrap_or_default());
        assert_eq!(decoder.buffered(), 0);
        decoder.feed(bytes.get(60..).unwrap_or_default());
        assert_eq!(decoder.decode(), Ok(Decoded::Frame(Command::Data)));
    }

    #[test]
    fn frame_at_max_accepted() {
        let mut decoder = FrameDecoder::new(4);
        decoder.feed(&frame(b'B', b"abc"));
        assert_eq!(
            decoder.decode(),
            Ok(Decoded::Frame(Command::Body(Bytes::from_static(b"abc"))))
        );
    }

    #[test]
    fn commands_round_trip() {
        let commands = [
            Command::OptNeg(OptNeg {
                version: 6,
                actions: Actions::ADDHDRS | Actions::QUARANTINE,
                protocol: ProtocolFlags::NR_HDR,
            }),
            Command::Macro {
                stage: b'E',
                macros: vec![("i".into(), "4ABC123".into())],
            },
            Command::Connect(Connect {
                hostname: "h".into(),
                family: Family::Inet,
                port: Some(25),
                address: Some("192.0.2.1".into()),
            }),
            Command::Helo("h".into()),
            Command::Mail(vec!["<a@b>".into()]),
            Command::Rcpt(vec!["<c@d>".into()]),
            Command::Header {
                name: b"To".to_vec(),
                value: b"c@d".to_vec(),
            },
            Command::Body(Bytes::from_static(b"x\r\n")),
            Command::Unknown(b"XYZ".to_vec()),
        ];
        for command in commands {
            let mut out = BytesMut::new();
            command.encode(&mut out);
            assert_eq!(decode_one(&out), Ok(Decoded::Frame(command.clone())));
        }
    }

    #[test]
    fn optneg_reply_encodes() {
        let reply = Reply::OptNeg(OptNeg {
            version: 6,
            actions: Actions::ADDHDRS | Actions::QUARANTINE,
            protocol: ProtocolFlags::NR_HDR | ProtocolFlags::NR_CONN,
        });
        let expected = frame(b'O', &[0, 0, 0, 6, 0, 0, 0, 0x21, 0, 0, 0x10, 0x80]);
        assert_eq!(encoded_reply(&reply), expected);
    }

    #[test]
    fn simple_replies_encode() {
        let cases = [
            (Reply::Continue, b'c'),
            (Reply::Accept, b'a'),
            (Reply::Reject, b'r'),
            (Reply::Tempfail, b't'),
            (Reply::Discard, b'd'),
            (Reply::Progress, b'p'),
        ];
        for (reply, code) in cases {
            assert_eq!(encoded_reply(&reply), vec![0, 0, 0, 1, code]);
        }
    }

    #[test]
    fn replycode_encodes() {
        let reply = Reply::ReplyCode {
            code: 550,
            text: "5.7.1 Rejected".into(),
        };
        assert_eq!(encoded_reply(&reply), frame(b'y', b"550 5.7.1 Rejected\0"));
    }

    #[test]
    fn replycode_escapes_percent() {
        let reply = Reply::ReplyCode {
            code: 451,
            text: "4.7.1 100% sure".into(),
        };
        assert_eq!(
            encoded_reply(&reply),
            frame(b'y', b"451 4.7.1 100%% sure\0")
        );
    }

    #[test]
    fn replycode_removes_line_breaks() {
        let reply = Reply::ReplyCode {
            code: 550,
            text: "5.7.1 a\r\nb".into(),
        };
        assert_eq!(encoded_reply(&reply), frame(b'y', b"550 5.7.1 a  b\0"));
    }

    #[test]
    fn addheader_encodes() {
        let reply = Reply::AddHeader {
            name: "X-IOC-Match".into(),
            value: "source=demo".into(),
        };
        assert_eq!(
            encoded_reply(&reply),
            frame(b'h', b"X-IOC-Match\0source=demo\0")
        );
    }

    #[test]
    fn quarantine_encodes() {
        let reply = Reply::Quarantine("matched".into());
        assert_eq!(encoded_reply(&reply), frame(b'q', b"matched\0"));
    }

    #[test]
    fn replies_round_trip() {
        let replies = [
            Reply::Continue,
            Reply::ReplyCode {
                code: 550,
                text: "5.7.1 100% bad".into(),
            },
            Reply::AddHeader {
                name: "X-A".into(),
                value: "b".into(),
            },
            Reply::Quarantine("r".into()),
            Reply::Other {
                code: b'm',
                data: vec![0, 0, 0, 1, b'X', 0, b'y', 0],
            },
        ];
        for reply in replies {
            let mut decoder = FrameDecoder::new(1024);
            decoder.feed(&encoded_reply(&reply));
            assert_eq!(decoder.decode_reply(), Ok(Decoded::Frame(reply.clone())));
        }
    }

    #[test]
    fn replycode_without_code_errors() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.feed(&frame(b'y', b"hello\0"));
        assert!(matches!(
            decoder.decode_reply(),
            Err(ProtocolError::Malformed { code: 'y', .. })
        ));
    }

    #[test]
    fn garbage_never_panics() {
        // A fixed linear congruential generator keeps the input the same on
        // every run.
        let mut state: u32 = 0x1234_5678;
        let mut next_byte = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        };
        let codes = b"OCDHMRTLNBEAQKUyhqacrtdz";
        let mut frames = 0;
        for _ in 0..2_000 {
            let length = usize::from(next_byte() % 40);
            let code = codes[usize::from(next_byte()) % codes.len()];
            let mut data: Vec<u8> = (0..length).map(|_| next_byte()).collect();
            if next_byte() % 2 == 0 {
                data.push(0);
            }
            let bytes = frame(code, &data);
            let mut decoder = FrameDecoder::new(32);
            decoder.feed(&bytes);
            if let Ok(Decoded::Frame(_)) = decoder.decode() {
                frames += 1;
            }
            let mut reply_decoder = FrameDecoder::new(32);
            reply_decoder.feed(&bytes);
            let _ = reply_decoder.decode_reply();
        }
        assert!(frames > 0);
    }

    #[test]
    fn flag_values_match_libmilter() {
        assert_eq!(ProtocolFlags::NR_HDR.0, 0x80);
        assert_eq!(ProtocolFlags::NR_CONN.0, 0x1000);
        assert_eq!(ProtocolFlags::NR_BODY.0, 0x8_0000);
        assert_eq!(ProtocolFlags::HDR_LEADSPC.0, 0x10_0000);
        assert_eq!(Actions::QUARANTINE.0, 0x20);
        let no_reply = ProtocolFlags::NR_HDR
            | ProtocolFlags::NR_CONN
            | ProtocolFlags::NR_HELO
            | ProtocolFlags::NR_MAIL
            | ProtocolFlags::NR_RCPT
            | ProtocolFlags::NR_DATA
            | ProtocolFlags::NR_UNKN
            | ProtocolFlags::NR_EOH
            | ProtocolFlags::NR_BODY;
        assert_eq!(no_reply, ProtocolFlags::ALL_NO_REPLY);
    }
}
