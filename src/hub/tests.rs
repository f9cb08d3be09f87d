//! The hub's seams, in memory: externally sequenced publishes and interest events.

use super::*;
use crate::outbox::Outbox;
use crate::protocol::format::Format;
use parking_lot::Mutex;
use std::collections::VecDeque;

fn hub() -> Hub {
    Hub::new(4, 100, Arc::default())
}

fn sub(conn: u64, format: Format) -> Subscriber {
    Subscriber {
        conn,
        outbox: Arc::new(Outbox::new(1 << 20)),
        format,
        deflate: Default::default(),
    }
}

fn drain(s: &Subscriber) -> Vec<bytes::Bytes> {
    let mut batch = VecDeque::new();
    let t = s.outbox.take(&mut batch);
    s.outbox.release(t.bytes);
    batch.into_iter().collect()
}

fn at(epoch: &str, offset: u64) -> Sequenced {
    Sequenced {
        epoch: Epoch::parse(epoch).unwrap(),
        offset,
        ts: 7,
    }
}

#[test]
fn epochs_parse_only_in_their_own_alphabet() {
    let e = Epoch::from_bits(12345);
    assert_eq!(Epoch::parse(e.as_str()), Some(e));
    for bad in ["", "abc", "ABCDEFGH", "abcdefg!", "abcdefghi"] {
        assert_eq!(Epoch::parse(bad), None, "{bad}");
    }
}

#[test]
fn publish_at_takes_offsets_as_given_and_drops_duplicates() {
    let h = hub();
    let s = sub(1, Format::ENVELOPE);
    h.subscribe("ticker:X", &s, None).unwrap();
    let p = h.publish_at("ticker:X", at("aaaaaaaa", 41), b"1").unwrap();
    let p = p.expect("a new offset is published");
    assert_eq!(
        (p.position.epoch.as_str(), p.position.offset),
        ("aaaaaaaa", 41)
    );
    assert_eq!(p.delivered, 1);
    assert!(h
        .publish_at("ticker:X", at("aaaaaaaa", 41), b"1")
        .unwrap()
        .is_none());
    assert!(h
        .publish_at("ticker:X", at("aaaaaaaa", 3), b"1")
        .unwrap()
        .is_none());
    assert!(h
        .publish_at("ticker:X", at("aaaaaaaa", 0), b"1")
        .unwrap()
        .is_none());
    assert!(h
        .publish_at("ticker:X", at("aaaaaaaa", 42), b"2")
        .unwrap()
        .is_some());
    let frames = drain(&s);
    assert_eq!(frames.len(), 2, "duplicates were not delivered");
    let text = String::from_utf8_lossy(&frames[1][2..]).to_string();
    assert!(text.contains(r#""offset":42,"ts":7,"data":2"#), "{text}");
    // A local publish continues the sequence.
    assert_eq!(h.publish("ticker:X", b"3").unwrap().position.offset, 43);
}

#[test]
fn a_gap_or_a_new_epoch_forgets_history_so_it_stays_contiguous() {
    let h = hub();
    for o in 1..=3 {
        h.publish_at("signals:Y", at("aaaaaaaa", o), b"0").unwrap();
    }
    assert_eq!(
        h.history("signals:Y", Some(0), 10).unwrap().messages.len(),
        3
    );
    h.publish_at("signals:Y", at("aaaaaaaa", 10), b"0").unwrap();
    let page = h.history("signals:Y", Some(0), 10).unwrap();
    assert_eq!(
        page.messages.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [10]
    );
    assert!(!page.complete, "4..9 are missing");
    h.publish_at("signals:Y", at("bbbbbbbb", 1), b"0").unwrap();
    let page = h.history("signals:Y", None, 10).unwrap();
    assert_eq!(page.position.epoch.as_str(), "bbbbbbbb");
    assert_eq!(
        page.messages.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [1]
    );
    // A recovering subscriber of the old epoch is told it has a gap.
    let s = sub(2, Format::RAW);
    let r = h
        .subscribe(
            "signals:Y",
            &s,
            Some(Recover {
                epoch: "aaaaaaaa",
                offset: 10,
            }),
        )
        .unwrap();
    assert_eq!(r.recovered, Some(false));
}

#[derive(Debug, Default)]
struct Log(Mutex<Vec<(String, InterestEvent)>>);

impl Interest for Log {
    fn changed(&self, channel: &str, event: InterestEvent) {
        self.0.lock().push((channel.to_owned(), event));
    }
}

#[test]
fn interest_is_reported_on_first_subscriber_last_gone_and_reclaim() {
    let h = hub();
    let log = Arc::new(Log::default());
    h.watch(log.clone());
    let (a, b) = (sub(1, Format::ENVELOPE), sub(2, Format::MSGPACK));
    h.subscribe("ticker:Z", &a, None).unwrap();
    h.subscribe("ticker:Z", &b, None).unwrap();
    h.subscribe("ticker:Z", &a, None).unwrap(); // again: nothing new
    h.publish("ticker:Z", b"1").unwrap(); // publishes are no interest change
    assert!(h.unsubscribe("ticker:Z", 1));
    assert!(!h.unsubscribe("ticker:Z", 1));
    assert!(h.unsubscribe("ticker:Z", 2));
    assert_eq!(h.sweep(Duration::ZERO), 1);
    let events = log.0.lock().clone();
    let z = |e| ("ticker:Z".to_owned(), e);
    assert_eq!(
        events,
        vec![
            z(InterestEvent::First),
            z(InterestEvent::LastGone),
            z(InterestEvent::Reclaimed)
        ]
    );
}

#[test]
fn a_join_hands_a_recovery_back_and_refuses_a_gap_only_when_asked() {
    let h = hub();
    for i in 1..=4 {
        h.publish("signals:J", format!("{i}").as_bytes()).unwrap();
    }
    let epoch = h.position("signals:J").unwrap().epoch;
    let from = |offset| {
        Some(Recover {
            epoch: epoch.as_str(),
            offset,
        })
    };
    let s = sub(1, Format::CENTRIFUGE);
    let back = Replay::HandBack { refuse_gap: true };
    let Joined::In { sub: j, replay } = h.join("signals:J", &s, from(2), back).unwrap() else {
        panic!("recoverable")
    };
    assert_eq!((j.recovered, j.position.offset), (Some(true), 4));
    let offsets: Vec<_> = replay
        .iter()
        .map(|f| String::from_utf8_lossy(&f[2..]).contains("\"offset\":3"))
        .collect();
    assert_eq!(offsets, [true, false], "offsets 3 and 4, oldest first");
    assert!(drain(&s).is_empty(), "handed back, not pushed");
    // Another epoch: refused with refuse_gap (nothing subscribed), else the newest pushed.
    let t = sub(2, Format::CENTRIFUGE);
    let gone = Some(Recover {
        epoch: "zzzzzzzz",
        offset: 4,
    });
    assert_eq!(
        h.join("signals:J", &t, gone, back).unwrap(),
        Joined::Unrecoverable
    );
    h.publish("signals:J", b"5").unwrap();
    assert!(drain(&t).is_empty(), "a refused join subscribes nothing");
    let lenient = Replay::HandBack { refuse_gap: false };
    let Joined::In { sub: j, replay } = h.join("signals:J", &t, gone, lenient).unwrap() else {
        panic!("lenient")
    };
    assert_eq!((j.recovered, replay.len()), (Some(false), 0));
    assert_eq!(drain(&t).len(), 1, "the newest message, pushed");
}

#[test]
fn a_lost_position_gets_reliable_subscribers_a_reset_before_the_message() {
    let h = hub();
    let s = sub(1, Format::ENVELOPE);
    h.subscribe("feed:1", &s, None).unwrap();
    h.publish_at("feed:1", at("aaaaaaaa", 1), b"1").unwrap();
    // A new epoch (the source lost the channel): reset, then the message.
    h.publish_at("feed:1", at("bbbbbbbb", 1), b"2").unwrap();
    // A gap the source could not fill: reset to the position before the message.
    h.publish_at("feed:1", at("bbbbbbbb", 5), b"3").unwrap();
    // align without a message: a new epoch at head 0.
    assert!(h
        .align("feed:1", Epoch::parse("cccccccc").unwrap(), 0)
        .unwrap());
    let texts: Vec<String> = drain(&s)
        .iter()
        .map(|f| String::from_utf8_lossy(&f[2..]).to_string())
        .collect();
    assert_eq!(texts.len(), 6, "{texts:?}");
    assert!(texts[0].contains(r#""offset":1,"#));
    assert_eq!(
        texts[1],
        r#"{"type":"reset","channel":"feed:1","epoch":"bbbbbbbb","offset":0}"#
    );
    assert!(texts[2].contains(r#""offset":1,"ts":7,"data":2"#));
    assert_eq!(
        texts[3],
        r#"{"type":"reset","channel":"feed:1","epoch":"bbbbbbbb","offset":4}"#
    );
    assert!(texts[4].contains(r#""offset":5,"ts":7,"data":3"#));
    assert_eq!(
        texts[5],
        r#"{"type":"reset","channel":"feed:1","epoch":"cccccccc","offset":0}"#
    );
    // Every reset counts, the ones sent with a message as well as align's.
    let resets = || h.metrics.resets.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(resets(), 3);
    // Conflate channels just go on.
    let t = sub(2, Format::ENVELOPE);
    h.subscribe("ticker:Y", &t, None).unwrap();
    h.publish_at("ticker:Y", at("aaaaaaaa", 1), b"1").unwrap();
    h.publish_at("ticker:Y", at("bbbbbbbb", 1), b"1").unwrap();
    assert_eq!(drain(&t).len(), 2);
    assert_eq!(resets(), 3, "no reset on a conflate channel");
}
