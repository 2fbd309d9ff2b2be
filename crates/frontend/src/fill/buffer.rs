//! A fill's body buffer: how far it may run ahead of its readers within
//! the fill budget, what it gives back as they read, and the hand-over of
//! its chunks to the stored copy.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::{Fill, State};
use crate::budget::FillBudget;

/// How far a fill that does not store its body may run ahead of its
/// slowest reader, in bytes (it always may hold one chunk).
const MAX_BYTES_AHEAD: u64 = 512 * 1024;

/// Once the body is stored, the chunks readers still have to read become
/// slices of the stored copy: the origin's read buffers are freed, and the
/// bytes leave the fill budget (the memory tier accounts for them).
pub(super) fn hand_over_to_store(state: &mut State, body: &Bytes, budget: &FillBudget) {
    // A stored body was retained whole, so no chunk was dropped (base 0).
    let mut offset = 0;
    for chunk in state.chunks.iter_mut() {
        let end = (offset + chunk.len()).min(body.len());
        *chunk = body.slice(offset..end);
        offset = end;
    }
    budget.release(state.counted);
    state.counted = 0;
}

/// What a fill that stores nothing does next.
pub(super) enum Room {
    /// Read the next chunk.
    Go,
    /// Nobody reads any more: stop fetching.
    NoReader,
    /// The budget is full and this fill's readers stopped reading: let go
    /// of it, so fills whose clients read can go on.
    Shed,
}

/// How long a fill's readers may make no progress while the fill budget
/// is full before the fill is shed.
const STALL_WHILE_FULL: Duration = Duration::from_secs(1);

/// Waits until the slowest reader is close enough to the newest chunk and
/// the fill budget has room. While the budget is full, a fill whose
/// readers read nothing for [`STALL_WHILE_FULL`] is shed: the clients that
/// stopped reading lose their response, not the ones that read.
pub(super) async fn wait_for_room(fill: &Fill) -> Room {
    let mut stalled_since = tokio::time::Instant::now();
    loop {
        let progress = fill.progress.notified();
        let released = fill.budget.released();
        {
            let mut state = fill.lock();
            if state.readers.is_empty() {
                return Room::NoReader;
            }
            if drop_consumed_chunks(&mut state, &fill.budget) {
                stalled_since = tokio::time::Instant::now();
            }
            let room = fill.budget.has_room();
            if room && (state.chunks.is_empty() || state.counted < MAX_BYTES_AHEAD) {
                return Room::Go;
            }
            if !room && !state.chunks.is_empty() && stalled_since.elapsed() >= STALL_WHILE_FULL {
                return Room::Shed;
            }
        }
        tokio::select! {
            () = progress => {}
            () = released => {}
            () = tokio::time::sleep_until(stalled_since + STALL_WHILE_FULL) => {}
        }
    }
}

/// Drops the chunks every reader has read (only once nothing is stored),
/// and gives their bytes back to the budget. Returns whether any went.
pub(super) fn drop_consumed_chunks(state: &mut State, budget: &FillBudget) -> bool {
    let consumed = state.slowest().saturating_sub(state.base).min(state.chunks.len());
    if consumed > 0 {
        let bytes: u64 = state.chunks.drain(..consumed).map(|c| c.len() as u64).sum();
        state.base += consumed;
        let bytes = bytes.min(state.counted);
        state.counted -= bytes;
        budget.release(bytes);
        return true;
    }
    false
}

/// Copies the chunks into one exact-size buffer. Even a single chunk is
/// copied: it may be a slice of a larger read buffer that storing it would
/// keep alive.
pub(super) fn concat(chunks: &[Bytes], len: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
    for chunk in chunks {
        out.extend_from_slice(chunk);
    }
    out.freeze()
}
