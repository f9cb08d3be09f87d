use super::*;
use crate::protocol::format::Message;

fn payload(f: &Bytes) -> String {
    let mut out = Vec::new();
    payloads_of(f, &mut out);
    out.iter()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .collect::<Vec<_>>()
        .join("\u{1e}")
}

#[test]
fn engine_packets() {
    assert_eq!(parse_eio(&mut b"3".to_vec()), Ok(Eio::Pong));
    assert_eq!(
        parse_eio(&mut b"2probe".to_vec()),
        Ok(Eio::Ping(&b"probe"[..]))
    );
    assert_eq!(parse_eio(&mut b"5".to_vec()), Ok(Eio::Upgrade));
    assert!(parse_eio(&mut b"".to_vec()).is_err());
    assert!(parse_eio(&mut b"0{}".to_vec()).is_err());
    assert!(parse_eio(&mut b"bAAA".to_vec()).is_err());
    let mut m = b"42[\"x\"]".to_vec();
    assert_eq!(
        parse_eio(&mut m),
        Ok(Eio::Message(&mut b"2[\"x\"]".to_vec()[..]))
    );
}

#[test]
fn socketio_packets_as_the_reference_parser_reads_them() {
    let mut b = b"0".to_vec();
    let p = parse_packet(&mut b).unwrap();
    assert_eq!(
        (p.kind, p.nsp, p.ack, &p.data[..]),
        (Kind::Connect, "/", None, &b""[..])
    );
    let mut b = br#"0{"token":"abc"}"#.to_vec();
    let p = parse_packet(&mut b).unwrap();
    assert_eq!(&p.data[..], br#"{"token":"abc"}"#);
    let mut b = br#"0/admin,{"token":"t"}"#.to_vec();
    let p = parse_packet(&mut b).unwrap();
    assert_eq!((p.nsp, &p.data[..]), ("/admin", &br#"{"token":"t"}"#[..]));
    let mut b = b"0/admin".to_vec();
    assert_eq!(parse_packet(&mut b).unwrap().nsp, "/admin");
    let mut b = br#"212["subscribe",["ADA"]]"#.to_vec();
    let p = parse_packet(&mut b).unwrap();
    assert_eq!((p.kind, p.ack), (Kind::Event, Some(12)));
    assert_eq!(&p.data[..], br#"["subscribe",["ADA"]]"#);
    let mut b = br#"51-["x",{"_placeholder":true,"num":0}]"#.to_vec();
    assert_eq!(parse_packet(&mut b).unwrap().kind, Kind::BinaryEvent);
    assert!(parse_packet(&mut b"5[]".to_vec()).is_err());
    assert!(parse_packet(&mut b"9".to_vec()).is_err());
    assert!(parse_packet(&mut b"299999999999999999[]".to_vec()).is_err());
}

#[test]
fn frames_and_polling_payloads() {
    let open = open_frame("abc", true, 25000, 37500, 65536);
    assert_eq!(
        payload(&open),
        r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":37500,"maxPayload":65536}"#
    );
    let two = [
        connect_frame("s1"),
        ack_frame(3, 0, |p| p.extend_from_slice(b"{}")),
    ]
    .concat();
    assert_eq!(
        payload(&Bytes::from(two)),
        "40{\"sid\":\"s1\"}\u{1e}433[{}]"
    );
    assert_eq!(
        payload(&connect_error_frame("/x", "no")),
        r#"44/x,{"message":"no"}"#
    );
    assert_eq!(payload(&encode::close_frame(1000, "")), "1");
    assert_eq!(payload(&Bytes::from_static(&PING_FRAME)), "2");
}

#[test]
fn crs_message_frames() {
    let m = |channel: &'static str| Message {
        channel,
        epoch: "e",
        offset: 1,
        ts: 0,
        data: br#"{"price":1.5}"#,
    };
    assert_eq!(
        payload(&crs::message_frame(&m("ticker:BTC"))),
        r#"42["market_update",{"BTC":{"price":1.5}}]"#
    );
    assert_eq!(
        payload(&crs::message_frame(&m("sentiment"))),
        r#"42["sentiment_update",{"price":1.5}]"#
    );
    assert_eq!(
        payload(&crs::message_frame(&m("signals"))),
        r#"42["trading_signal",{"price":1.5}]"#
    );
    assert_eq!(
        payload(&crs::message_frame(&m("alerts"))),
        r#"42["message",{"channel":"alerts","data":{"price":1.5}}]"#
    );
}

#[test]
fn crs_events() {
    use crs::{parse_event, Event};
    let ev = |s: &str| parse_event(&mut s.as_bytes().to_vec(), 10);
    let sub = |v: &[&str]| {
        Ok(Event::Subscribe(
            v.iter().map(|s| format!("ticker:{s}")).collect(),
        ))
    };
    assert_eq!(
        ev(r#"["subscribe",{"symbols":["BTC","ETH","BTC"]}]"#),
        sub(&["BTC", "ETH"])
    );
    assert_eq!(ev(r#"["subscribe",["ADA"]]"#), sub(&["ADA"]));
    assert_eq!(ev(r#"["subscribe","DOT"]"#), sub(&["DOT"]));
    assert_eq!(ev(r#"["subscribe",{}]"#), sub(&["BTC", "ETH"]));
    assert_eq!(ev(r#"["subscribe"]"#), sub(&["BTC", "ETH"]));
    assert_eq!(
        ev(r#"["unsubscribe",["ADA"]]"#),
        Ok(Event::Unsubscribe(vec!["ticker:ADA".into()]))
    );
    assert_eq!(ev(r#"["ping"]"#), Ok(Event::Ping));
    assert!(ev(r#"["unsubscribe",{}]"#).is_err());
    assert!(ev(r#"["subscribe",[1]]"#).is_err());
    // Found by the socketio fuzz target: "" made the channel `ticker:`.
    assert!(ev(r#"["subscribe",[""]]"#).is_err());
    assert!(ev(r#"["subscribe",["a b"]]"#).is_err());
    assert!(ev(r#"["hello"]"#).unwrap_err().starts_with("unknown event"));
    assert!(ev(r#"{}"#).is_err());
    assert!(parse_event(&mut br#"["subscribe",["A","B","C"]]"#.to_vec(), 2).is_err());
}

#[test]
fn iso_timestamps() {
    let iso = |ms| {
        let mut p = Vec::new();
        push_iso(&mut p, ms);
        String::from_utf8(p).unwrap()
    };
    assert_eq!(iso(0), "\"1970-01-01T00:00:00.000Z\"");
    assert_eq!(iso(1_704_110_400_123), "\"2024-01-01T12:00:00.123Z\"");
    assert_eq!(iso(1_709_208_000_000), "\"2024-02-29T12:00:00.000Z\"");
}
