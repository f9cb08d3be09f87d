use super::command::parse_line;
use super::*;
use crate::protocol::command::Command;

fn payload(f: &Bytes) -> &[u8] {
    let h = encode::decode_head(f).unwrap();
    &f[h.head_len..]
}

fn p(s: &str) -> Result<Option<crate::protocol::command::Request<'static>>, u32> {
    let buf: &'static mut [u8] = Box::leak(s.as_bytes().to_vec().into_boxed_slice());
    parse_line(buf).map_err(|e| error_code(e.code, e.message).0)
}

#[test]
fn the_push_embeds_data_verbatim_with_line_feeds_as_spaces() {
    let m = Message {
        channel: "ticker:A",
        epoch: "abcd1234",
        offset: 7,
        ts: 1,
        data: b"{\"a\":\n[1,\n2]}",
    };
    let f = push_frame(&m);
    assert_eq!(
        payload(&f),
        br#"{"push":{"channel":"ticker:A","pub":{"data":{"a": [1, 2]},"offset":7}}}"#
    );
    assert_eq!(
        &publication_in(&f).unwrap()[..],
        br#"{"data":{"a": [1, 2]},"offset":7}"#
    );
    assert!(publication_in(&encode::frame(OP_TEXT, b"{}")).is_none());
}

#[test]
fn replies_have_the_protocols_shape() {
    let id = Id::from_u64(4);
    let pushed = push_frame(&Message {
        channel: "c",
        epoch: "abcd1234",
        offset: 3,
        ts: 1,
        data: b"1",
    });
    let cases: Vec<(Bytes, &[u8])> = vec![
        (
            subscribe_reply(
                Some(&id),
                &SubscribeResult {
                    recoverable: true,
                    epoch: "e",
                    offset: 3,
                    was_recovering: true,
                    recovered: true,
                    publications: std::slice::from_ref(&pushed),
                },
            ),
            br#"{"id":4,"subscribe":{"recoverable":true,"epoch":"e","offset":3,"was_recovering":true,"recovered":true,"publications":[{"data":1,"offset":3}]}}"#,
        ),
        (empty_reply(Some(&id), "publish"), br#"{"id":4,"publish":{}}"#),
        (
            error_reply(Some(&id), ErrorCode::Forbidden, "no"),
            br#"{"id":4,"error":{"code":103,"message":"forbidden: no"}}"#,
        ),
        (
            error_reply(None, ErrorCode::RateLimited, "slow"),
            br#"{"error":{"code":111,"message":"rate_limited: slow","temporary":true}}"#,
        ),
        (
            unsubscribe_pushes(&["a", "b"], "r"),
            b"{\"push\":{\"channel\":\"a\",\"unsubscribe\":{\"code\":2000,\"reason\":\"r\"}}}\n{\"push\":{\"channel\":\"b\",\"unsubscribe\":{\"code\":2000,\"reason\":\"r\"}}}",
        ),
    ];
    for (f, want) in cases {
        assert_eq!(
            payload(&f),
            want,
            "{}",
            String::from_utf8_lossy(payload(&f))
        );
    }
    let c = connect_reply(Some(&id), 0xab, 25, None);
    assert_eq!(
        payload(&c),
        format!(
            r#"{{"id":4,"connect":{{"client":"ab","version":"{VERSION}","ping":25,"pong":true}}}}"#
        )
        .as_bytes()
    );
}

#[test]
fn every_method_parses_and_the_rest_is_refused_with_its_code() {
    let r =
        p(r#"{"id":2,"subscribe":{"channel":"s","recover":true,"epoch":"e","offset":9,"flag":3}}"#)
            .unwrap()
            .unwrap();
    assert_eq!(r.id, Some(Id::from_u64(2)));
    match r.command {
        Command::Join {
            channel,
            recover: Some(from),
            strict: true,
        } => assert_eq!((channel, from.epoch, from.offset), ("s", "e", 9)),
        other => panic!("{other:?}"),
    }
    match p(r#"{"id":3,"publish":{"channel":"s","data": {"x" : 1 }}}"#)
        .unwrap()
        .unwrap()
        .command
    {
        Command::Publish { data, .. } => assert_eq!(&data[..], br#"{"x" : 1 }"#),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        p(r#"{"id":1,"connect":{"token":"","name":"js"}}"#)
            .unwrap()
            .unwrap()
            .command,
        Command::Connect { token: None }
    ));
    assert!(matches!(
        p(r#"{"id":5,"history":{"channel":"s","limit":-1,"reverse":true}}"#)
            .unwrap()
            .unwrap()
            .command,
        Command::History {
            limit: None,
            reverse: true,
            ..
        }
    ));
    assert!(p("{}").unwrap().is_none(), "a pong");
    assert!(p(r#"{"send":{"data":1}}"#).unwrap().is_none());
    assert_eq!(p(r#"{"id":1,"rpc":{"method":"m"}}"#).unwrap_err(), 108);
    assert_eq!(
        p(r#"{"id":1,"presence":{"channel":"s"}}"#).unwrap_err(),
        108
    );
    assert_eq!(p(r#"{"id":1,"fly":{}}"#).unwrap_err(), 104);
    assert_eq!(
        p(r#"{"id":1,"subscribe":{"channel":"bad name"}}"#).unwrap_err(),
        107
    );
    assert_eq!(p(r#"{"id":1,"publish":{"channel":"s"}}"#).unwrap_err(), 107);
    assert_eq!(p(r#"{"id":-1,"ping":{}}"#).unwrap_err(), 107);
    assert_eq!(p(r#"{"id":1,"ping":{},"rpc":{}}"#).unwrap_err(), 107);
    assert_eq!(p("not json").unwrap_err(), 107);
}

#[test]
fn close_codes_map_to_the_protocols() {
    use crate::protocol::close;
    for (code, reason, want) in [
        (CloseCode::GOING_AWAY, "server shutting down", 3001),
        (CloseCode::GOING_AWAY, close::HEARTBEAT_TIMEOUT, 3012),
        (CloseCode::POLICY, close::SLOW_CONSUMER, 3008),
        (
            CloseCode::POLICY,
            "command rate limit exceeded repeatedly",
            3013,
        ),
        (CloseCode::AUTH, close::AUTH_TIMEOUT, 3502),
        (CloseCode::AUTH, "token expired: refresh", 3005),
        (CloseCode::TOO_BIG, "message too big", 1009),
        (close_codes::BAD_REQUEST, "connect first", 3501),
    ] {
        assert_eq!(close_code(code, reason).0, want, "{reason}");
    }
}
