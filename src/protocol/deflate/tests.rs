use super::*;
use crate::protocol::encode;

fn agreed(offers: &[&str]) -> Option<(Deflate, String)> {
    negotiate(offers.iter().copied()).map(|a| (a.deflate, a.response))
}

#[test]
fn offers_are_accepted_declined_or_skipped() {
    let full = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    let (d, r) = agreed(&["permessage-deflate"]).unwrap();
    assert_eq!((d, r.as_str()), (Deflate::with_window(15), full));
    // What browsers and Python's websockets send.
    let (d, r) = agreed(&["permessage-deflate; client_max_window_bits"]).unwrap();
    assert_eq!((d, r.as_str()), (Deflate::with_window(15), full));
    let (d, r) =
        agreed(&["permessage-deflate; server_max_window_bits=9; client_max_window_bits=10"])
            .unwrap();
    assert_eq!(d, Deflate::with_window(9));
    assert_eq!(r, format!("{full}; server_max_window_bits=9"));
    assert_eq!(
        agreed(&["permessage-deflate; server_max_window_bits=\"12\""])
            .unwrap()
            .0,
        Deflate::with_window(12)
    );
    for bad in [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=x",
        "permessage-deflate; client_no_context_takeover=1",
        "permessage-deflate; unknown",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "x-webkit-deflate-frame",
        "",
    ] {
        assert_eq!(agreed(&[bad]), None, "{bad:?}");
    }
    // The first acceptable of several offers, over one header or many.
    let (d, _) = agreed(&[
        "foo, permessage-deflate; bogus",
        "permessage-deflate; server_max_window_bits=10, permessage-deflate",
    ])
    .unwrap();
    assert_eq!(d, Deflate::with_window(10));
}

#[test]
fn a_window_fits_payloads_no_longer_than_itself() {
    assert!(Deflate::with_window(15).fits(10 << 20));
    assert!(Deflate::with_window(8).fits(256));
    assert!(!Deflate::with_window(8).fits(257));
    assert!(!Deflate::OFF.fits(1));
    assert!(!Deflate::OFF.on());
}

#[test]
fn settings_parse_and_print() {
    assert_eq!("off".parse(), Ok(Setting::OFF));
    assert_eq!("on".parse(), Ok(Setting::default()));
    assert_eq!("512".parse(), Ok(Setting::from_bytes(512)));
    assert!("sometimes".parse::<Setting>().is_err());
    for s in [Setting::OFF, Setting::from_bytes(0), Setting::default()] {
        assert_eq!(s.to_string().parse(), Ok(s));
    }
}

fn inflate_whole(payload: &[u8], max: usize) -> Result<Vec<u8>, Fail> {
    let mut out = Vec::new();
    Inflater::default().inflate(payload, true, &mut out, max)?;
    Ok(out)
}

#[test]
fn a_compressed_frame_inflates_to_the_plain_payload() {
    let json = br#"{"type":"message","channel":"ticker:BTC-USD","offset":1,"ts":1,"data":{"price":43250.5,"bid":43250.0,"ask":43251.0,"volume":1234.5}}"#;
    let plain = encode::frame(encode::OP_TEXT, json);
    let z = compress_frame(&plain).expect("JSON compresses");
    let h = encode::decode_head(&z).unwrap();
    assert_eq!(z[0], 0x80 | RSV1 | encode::OP_TEXT, "FIN, RSV1, text");
    assert_eq!(h.head_len + h.len as usize, z.len());
    assert!(z.len() < plain.len());
    assert_eq!(inflate_whole(&z[h.head_len..], 1 << 20).unwrap(), json);
    // Each message on its own (no context takeover): the same bytes every time.
    assert_eq!(compress_frame(&plain).unwrap(), z);
    // Nothing to gain: left plain.
    assert_eq!(compress_frame(&encode::frame(encode::OP_TEXT, b"{}")), None);
}

#[test]
fn a_message_split_over_frames_inflates_across_them() {
    let text = "abc".repeat(5000);
    let z = compress_frame(&encode::frame(encode::OP_TEXT, text.as_bytes())).unwrap();
    let h = encode::decode_head(&z).unwrap();
    let body = &z[h.head_len..];
    let mut inf = Inflater::default();
    let mut out = Vec::new();
    for (i, piece) in body.chunks(7).enumerate() {
        let last = (i + 1) * 7 >= body.len();
        inf.inflate(piece, last, &mut out, text.len()).unwrap();
    }
    assert_eq!(out, text.as_bytes());
}

#[test]
fn a_zip_bomb_stops_at_the_limit_without_growing_past_it() {
    // 16 MiB of zeros in a few KiB.
    let zeros = vec![0u8; 16 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let mut bomb = Vec::with_capacity(64 << 10);
    deflate_into(&mut c, &zeros, &mut bomb).unwrap();
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    let max = 64 << 10;
    let mut out = Vec::new();
    let e = Inflater::default()
        .inflate(&bomb, true, &mut out, max)
        .unwrap_err();
    assert_eq!(e.0, CloseCode::TOO_BIG);
    assert!(out.capacity() <= max + 1, "capacity {}", out.capacity());
    // Exactly at the limit is fine.
    let mut c = Compress::new(Compression::best(), false);
    let mut exact = Vec::new();
    deflate_into(&mut c, &zeros[..max], &mut exact).unwrap();
    exact.truncate(exact.len() - 4);
    assert_eq!(inflate_whole(&exact, max).unwrap().len(), max);
}

#[test]
fn corrupt_data_is_invalid_payload() {
    assert_eq!(
        inflate_whole(&[0xff, 0xff, 0xff, 0xff], 1000)
            .unwrap_err()
            .0,
        CloseCode::INVALID_DATA
    );
}
