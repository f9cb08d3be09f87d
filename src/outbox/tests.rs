//! The outbox's queue, limit, reserved places and pongs.
use super::*;
use crate::protocol::encode;

/// A conflate lane for channel `key`.
pub(super) fn lane(key: u64, name: &Arc<str>) -> Lane<'_> {
    Lane {
        key,
        name,
        conflate: true,
        ts: 1,
    }
}

pub(super) fn f(n: usize) -> Bytes {
    Bytes::from(vec![b'x'; n])
}

/// What `n` frames of `len` bytes count as against the limit.
pub(super) fn c(n: usize, len: usize) -> usize {
    n * (len + FRAME_COST)
}

pub(super) fn take_all(o: &Outbox) -> Vec<Bytes> {
    let mut batch = VecDeque::new();
    let t = o.take(&mut batch);
    o.release(t.bytes);
    batch.into_iter().collect()
}

#[test]
fn frames_come_out_in_order_and_bytes_are_released_after_writing() {
    let o = Outbox::new(1000);
    assert_eq!(o.push(&f(10)), Push::Queued);
    assert_eq!(o.push(&f(20)), Push::Queued);
    let mut batch = VecDeque::new();
    let t = o.take(&mut batch);
    let both = c(1, 10) + c(1, 20);
    assert_eq!((t.bytes, t.last, batch.len()), (both, false, 2));
    assert_eq!(batch[0].len(), 10);
    assert_eq!(o.queued_bytes(), both, "taken bytes count until written");
    o.release(both);
    assert_eq!(o.queued_bytes(), 0);
}

#[test]
fn the_limit_is_exact_and_overflow_closes_with_1008_once() {
    let o = Outbox::new(c(1, 60) + c(1, 40));
    assert_eq!(o.push(&f(60)), Push::Queued);
    assert_eq!(o.push(&f(40)), Push::Queued, "exactly at the limit is fine");
    assert_eq!(o.push(&f(1)), Push::Overflow);
    assert_eq!(o.push(&f(1)), Push::Closed, "overflow is reported once");
    let mut batch = VecDeque::new();
    let t = o.take(&mut batch);
    assert!(t.last);
    assert_eq!(batch.len(), 1);
    let h = encode::decode_head(&batch[0]).unwrap();
    assert_eq!(h.opcode, encode::OP_CLOSE);
    assert_eq!(&batch[0][2..4], &1008u16.to_be_bytes());
}

#[test]
fn a_reserved_slot_holds_back_what_was_queued_behind_it() {
    let o = Outbox::new(1000);
    o.push(&f(1));
    let slot = o.reserve().unwrap();
    o.push(&f(3));
    let mut batch = VecDeque::new();
    o.take(&mut batch);
    assert_eq!(batch.iter().map(Bytes::len).collect::<Vec<_>>(), vec![1]);
    batch.clear();
    assert_eq!(o.fill(slot, f(2)), Push::Queued);
    o.take(&mut batch);
    assert_eq!(batch.iter().map(Bytes::len).collect::<Vec<_>>(), vec![2, 3]);
}

#[test]
fn close_goes_after_queued_frames_and_drops_an_unfilled_slot() {
    let o = Outbox::new(1000);
    o.push(&f(1));
    let slot = o.reserve().unwrap();
    assert!(o.close_with(encode::close_frame(1001, "bye")));
    assert!(!o.close_with(encode::close_frame(1000, "")));
    assert_eq!(o.push(&f(1)), Push::Closed);
    assert_eq!(o.fill(slot, f(2)), Push::Closed);
    let mut batch = VecDeque::new();
    let t = o.take(&mut batch);
    assert!(t.last);
    assert_eq!(batch.len(), 2);
    assert_eq!(
        encode::decode_head(&batch[1]).unwrap().opcode,
        encode::OP_CLOSE
    );
}

#[test]
fn a_ping_flood_holds_one_pong_sent_ahead_of_the_queue() {
    let o = Outbox::new(c(1, 10) + c(1, 6));
    o.push(&f(10));
    for i in 0..10_000u32 {
        let p = Bytes::from(vec![0x8a, 4, 0, 0, (i >> 8) as u8, i as u8]);
        assert_eq!(o.pong(p), Push::Queued);
    }
    assert_eq!(o.queued_bytes(), c(1, 10) + c(1, 6), "one pong, not 10,000");
    let out = take_all(&o);
    assert_eq!(out.len(), 2);
    assert_eq!(
        &out[0][4..],
        &[0x27, 0x0f],
        "the pong of the latest ping, first"
    );
    assert_eq!(out[1], f(10));
    assert_eq!(o.queued_bytes(), 0);
}

#[test]
fn tiny_frames_count_their_real_cost_so_a_flood_of_them_is_bounded() {
    // 1 MiB of limit: ~16,000 empty frames, not a million, and each counts the same.
    let o = Outbox::new(1 << 20);
    let mut queued = 0;
    while o.push(&Bytes::new()) == Push::Queued {
        queued += 1;
    }
    assert_eq!(queued, (1 << 20) / FRAME_COST);
    assert!(o.is_closing(), "the next one closed it as a slow consumer");
}

#[test]
fn a_reserved_place_counts_until_filled_or_dropped() {
    let o = Outbox::new(1000);
    let slot = o.reserve().unwrap();
    assert_eq!(o.queued_bytes(), FRAME_COST);
    assert_eq!(o.fill(slot, f(10)), Push::Queued);
    assert_eq!(o.queued_bytes(), c(1, 10), "the place and its frame, once");
    let _slot = o.reserve().unwrap();
    assert!(o.close_with(f(2)));
    assert_eq!(
        o.queued_bytes(),
        c(1, 10) + c(1, 2),
        "the unfilled place is gone"
    );
    let mut batch = VecDeque::new();
    let t = o.take(&mut batch);
    assert_eq!(
        t.bytes,
        o.queued_bytes(),
        "everything taken is what was counted"
    );
    o.release(t.bytes);
    assert_eq!(o.queued_bytes(), 0);
}

#[test]
fn lag_is_the_age_of_the_oldest_unsent_channel_message() {
    let o = Outbox::new(1 << 20);
    let a: Arc<str> = "ticker:A".into();
    let at = |ts| Lane {
        key: 1,
        name: &a,
        conflate: false,
        ts,
    };
    assert_eq!(o.lag_ms(5_000), 0, "nothing queued: caught up");
    o.push(&f(10));
    assert_eq!(o.lag_ms(5_000), 0, "a reply is not a channel message");
    o.push_lane(&f(10), &at(1_000));
    o.push_lane(&f(10), &at(1_500));
    assert_eq!(o.lag_ms(5_000), 4_000, "from the oldest one unsent");
    let mut batch = VecDeque::new();
    let t = o.take(&mut batch);
    assert_eq!(o.lag_ms(5_000), 4_000, "taken is not yet written");
    o.release(t.bytes);
    assert_eq!(o.lag_ms(5_000), 0, "written: caught up");
    o.push_lane(&f(10), &at(4_900));
    assert_eq!(o.lag_ms(5_000), 100);
}

/// Whether `fut` is ready on its first poll (a no-op waker: nothing is woken).
fn ready_now<F: std::future::Future>(fut: F) -> bool {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    fut.as_mut().poll(&mut cx).is_ready()
}

/// A push while the connection's own reader runs (`quiet`) wakes nobody, and the
/// writer's next `ready` sees it; without `quiet`, `ready` is the `Notify` it was.
#[test]
fn a_push_from_the_connections_own_reader_is_seen_without_a_wake() {
    let o = Outbox::new(1000);
    assert!(!ready_now(o.ready()), "nothing pushed: the writer waits");
    o.quiet(true);
    assert_eq!(o.push(&f(10)), Push::Queued);
    o.quiet(false);
    assert!(
        ready_now(o.ready()),
        "the held-back wake is taken by the next poll"
    );
    assert!(!ready_now(o.ready()), "and taken once");
    // A wake held back while the writer was not waiting is kept for its next wait.
    o.quiet(true);
    o.abort();
    o.quiet(false);
    assert!(ready_now(o.ready()));
    // Out of `quiet`, a push notifies as before: a permit for the next wait.
    let o = Outbox::new(1000);
    assert_eq!(o.push(&f(10)), Push::Queued);
    assert!(ready_now(o.ready()));
}

/// A writer already waiting in `ready` when its reader queues something (quiet) is
/// polled again by the task in the same turn and must see it then.
#[test]
fn a_waiting_writer_polled_after_its_reader_sees_what_it_queued() {
    use std::future::Future;
    let o = Outbox::new(1000);
    let mut wait = std::pin::pin!(o.ready());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(wait.as_mut().poll(&mut cx).is_pending());
    o.quiet(true);
    assert_eq!(o.push(&f(10)), Push::Queued);
    o.quiet(false);
    assert!(wait.as_mut().poll(&mut cx).is_ready());
}

/// A quiet connection holds no queue buffer: `trim` frees an empty queue's capacity and
/// leaves a queue with frames in it alone.
#[test]
fn trim_frees_an_empty_queue_and_keeps_a_full_one() {
    let o = Outbox::new(10_000);
    for _ in 0..8 {
        assert_eq!(o.push(&f(10)), Push::Queued);
    }
    o.trim();
    assert!(o.state.lock().queue.capacity() >= 8, "frames queued: kept");
    let mut batch = VecDeque::with_capacity(16);
    let t = o.take(&mut batch);
    o.release(t.bytes);
    // The swap left the queue with the batch's empty buffer of 16.
    assert!(o.state.lock().queue.capacity() >= 16);
    o.trim();
    assert_eq!(o.state.lock().queue.capacity(), 0, "empty: freed");
}
