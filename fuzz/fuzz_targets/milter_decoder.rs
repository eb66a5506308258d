//! Splits arbitrary bytes into milter frames and parses each one as an MTA
//! command and as a milter reply. The first byte picks the size of the
//! chunks fed to the decoder, so frames split across reads are covered too.

#![no_main]

use ioc_milter::milter::protocol::{Command, Decoded, FrameDecoder};
use libfuzzer_sys::fuzz_target;

/// Small enough that the fuzzer reaches the too-large path often.
const MAX_FRAME_BYTES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk_byte, stream)) = data.split_first() else {
        return;
    };
    let chunk_size = usize::from(chunk_byte % 64) + 1;

    let mut commands = FrameDecoder::new(MAX_FRAME_BYTES);
    let mut replies = FrameDecoder::new(MAX_FRAME_BYTES);
    for chunk in stream.chunks(chunk_size) {
        commands.feed(chunk);
        replies.feed(chunk);
        drain_commands(&mut commands);
        drain_replies(&mut replies);
    }

    // Every frame body is also parsed directly, whatever the length prefix.
    if let Some((&code, body)) = stream.split_first() {
        let _ = Command::parse(code, body);
    }
});

/// Decodes commands until the decoder needs more bytes or fails. Each
/// decoded command must encode again without a panic.
fn drain_commands(decoder: &mut FrameDecoder) {
    // Each round consumes at least one frame header or stops, so the bound
    // is never reached on real input; it only keeps a bug from hanging.
    for _ in 0..100_000 {
        match decoder.decode() {
            Ok(Decoded::Frame(command)) => {
                let mut out = bytes::BytesMut::new();
                command.encode(&mut out);
            }
            Ok(Decoded::TooLarge { .. }) => decoder.skip_frame(),
            Ok(Decoded::NeedMore) | Err(_) => return,
        }
    }
}

fn drain_replies(decoder: &mut FrameDecoder) {
    for _ in 0..100_000 {
        match decoder.decode_reply() {
            Ok(Decoded::Frame(reply)) => {
                let mut out = bytes::BytesMut::new();
                reply.encode(&mut out);
            }
            Ok(Decoded::TooLarge { .. }) => decoder.skip_frame(),
            Ok(Decoded::NeedMore) | Err(_) => return,
        }
    }
}
