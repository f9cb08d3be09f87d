//! Legend AI's `POST /api/ws/broadcast/{price,pattern,alert,market_status}` bodies: the
//! fields come as query parameters (what the platform's FastAPI signature reads) or as a
//! JSON object (what its documentation's curl sends); with both, the body's fields win.
//! Each endpoint builds the data it publishes once, at ingest; numbers from the body are
//! copied verbatim.

use simd_json::prelude::*;

use super::upper;
use crate::protocol::json;

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Float,
    Int,
    OptStr,
}

/// (name in the request, name in the published data, type).
type Field = (&'static str, &'static str, Kind);

const PRICE: &[Field] = &[
    ("price", "price", Kind::Float),
    ("change", "change", Kind::Float),
    ("change_percent", "change_percent", Kind::Float),
    ("volume", "volume", Kind::Int),
    ("high", "high", Kind::Float),
    ("low", "low", Kind::Float),
    ("open_price", "open", Kind::Float),
];
const PATTERN: &[Field] = &[
    ("ticker", "ticker", Kind::Str),
    ("pattern_type", "pattern_type", Kind::Str),
    ("score", "score", Kind::Float),
    ("entry_price", "entry_price", Kind::Float),
    ("stop_price", "stop_price", Kind::Float),
    ("target_price", "target_price", Kind::Float),
    ("risk_reward_ratio", "risk_reward_ratio", Kind::Float),
    ("message", "message", Kind::Str),
];
const ALERT: &[Field] = &[
    ("ticker", "ticker", Kind::Str),
    ("alert_type", "alert_type", Kind::Str),
    ("trigger_price", "trigger_price", Kind::Float),
    ("current_price", "current_price", Kind::Float),
    ("message", "message", Kind::Str),
];
const MARKET_STATUS: &[Field] = &[
    ("status", "status", Kind::Str),
    ("next_open", "next_open", Kind::OptStr),
    ("next_close", "next_close", Kind::OptStr),
];

/// One broadcast to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The channel (`ticker:<TICKER>`, `patterns`, `alerts`, `market_status`).
    pub channel: String,
    /// The data, built once.
    pub data: Vec<u8>,
    /// The answer's second field: (`ticker` | `pattern_type` | `alert_type` |
    /// `market_status`, its value).
    pub echo: (&'static str, String),
}

/// Builds the broadcast of endpoint `kind` from `query` pairs (decoded) and a JSON
/// `body` (empty: none). `Err(None)`: no such endpoint; `Err(Some(detail))`: a 422.
pub fn build(
    kind: &str,
    query: &[(String, String)],
    body: &mut [u8],
) -> Result<Broadcast, Option<String>> {
    let (fields, echo_key): (&[Field], &'static str) = match kind {
        "price" => (PRICE, "ticker"),
        "pattern" => (PATTERN, "pattern_type"),
        "alert" => (ALERT, "alert_type"),
        "market_status" => (MARKET_STATUS, "market_status"),
        _ => return Err(None),
    };
    // Verbatim spans of the body's members, read before simd-json rewrites it.
    let raw: Vec<Option<Vec<u8>>> = if body.iter().all(u8::is_ascii_whitespace) {
        vec![None; fields.len() + 1]
    } else {
        let mut names: Vec<&str> = fields.iter().map(|f| f.0).collect();
        names.push("ticker");
        let spans = names
            .iter()
            .map(|n| match json::top_level_span(body, n.as_bytes()) {
                Ok(s) => Ok(s.map(|r| body[r].to_vec())),
                Err(_) => Err(Some("body: a JSON object with each field once".to_string())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if super::tape(body).is_none() {
            return Err(Some("body: invalid JSON".into()));
        }
        spans
    };
    let from_query = |name: &str| query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v);
    let mut data = b"{".to_vec();
    let mut first = true;
    let text_of = |name: &str, i: usize, kind: Kind| -> Result<Option<Vec<u8>>, String> {
        if let Some(raw) = &raw[i] {
            let ok = match kind {
                Kind::Str => raw.first() == Some(&b'"'),
                Kind::OptStr => raw.first() == Some(&b'"') || raw.as_slice() == b"null",
                Kind::Float => is_number(raw, false),
                Kind::Int => is_number(raw, true),
            };
            if !ok {
                return Err(format!("{name}: not a valid {}", kind_name(kind)));
            }
            return Ok(Some(raw.clone()));
        }
        match from_query(name) {
            Some(v) => match kind {
                Kind::Str | Kind::OptStr => {
                    let mut s = Vec::new();
                    json::push_str(&mut s, v);
                    Ok(Some(s))
                }
                _ if is_number(v.as_bytes(), kind == Kind::Int) => Ok(Some(v.as_bytes().to_vec())),
                _ => Err(format!("{name}: not a valid {}", kind_name(kind))),
            },
            None if kind == Kind::OptStr => Ok(None),
            None => Err(format!("{name}: field required")),
        }
    };
    let ticker = match kind {
        "price" => {
            let t = text_of("ticker", fields.len(), Kind::Str)?.unwrap_or_default();
            Some(string_value(&t))
        }
        _ => None,
    };
    let mut echo = String::new();
    for (i, (name, out, k)) in fields.iter().enumerate() {
        let Some(v) = text_of(name, i, *k)? else {
            continue;
        };
        if *name == echo_key || (echo_key == "market_status" && *name == "status") {
            echo = string_value(&v);
        }
        if !first {
            data.push(b',');
        }
        first = false;
        json::push_str(&mut data, out);
        data.push(b':');
        data.extend_from_slice(&v);
    }
    data.push(b'}');
    let channel = match (kind, ticker) {
        ("price", Some(t)) => {
            echo = upper(&t);
            format!("ticker:{echo}")
        }
        ("pattern", _) => "patterns".into(),
        ("alert", _) => "alerts".into(),
        _ => "market_status".into(),
    };
    if crate::protocol::channel::validate(channel.as_bytes()).is_err() {
        return Err(Some("ticker: not a valid symbol".into()));
    }
    Ok(Broadcast {
        channel,
        data,
        echo: (echo_key, echo),
    })
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Str | Kind::OptStr => "string",
        Kind::Float => "number",
        Kind::Int => "integer",
    }
}

/// Whether `s` is a JSON number (an integer with `int`).
fn is_number(s: &[u8], int: bool) -> bool {
    let mut buf = s.to_vec();
    let Some(tape) = super::tape(&mut buf) else {
        return false;
    };
    let v = tape.as_value();
    match int {
        true => v.is_i64() || v.is_u64(),
        false => v.is_number(),
    }
}

/// The text of a JSON string literal (`"AAPL"` → `AAPL`); other JSON as it is.
fn string_value(lit: &[u8]) -> String {
    let mut buf = lit.to_vec();
    match super::tape(&mut buf) {
        Some(t) => match t.as_value().as_str() {
            Some(s) => s.to_owned(),
            None => String::from_utf8_lossy(lit).into_owned(),
        },
        None => String::from_utf8_lossy(lit).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_body_build_the_same_data_and_the_body_wins() {
        let q: Vec<(String, String)> =
            [("ticker", "aapl"), ("price", "150.25"), ("change", "2.50")]
                .iter()
                .chain(&[
                    ("change_percent", "1.69"),
                    ("volume", "75000000"),
                    ("high", "151.00"),
                ])
                .chain(&[("low", "148.50"), ("open_price", "149.00")])
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        let b = build("price", &q, &mut []).unwrap();
        assert_eq!(b.channel, "ticker:AAPL");
        assert_eq!(b.echo, ("ticker", "AAPL".to_string()));
        let want = r#"{"price":150.25,"change":2.50,"change_percent":1.69,"volume":75000000,"high":151.00,"low":148.50,"open":149.00}"#;
        assert_eq!(String::from_utf8(b.data).unwrap(), want);
        let mut body = br#"{"ticker":"TSLA","price":1.50e2}"#.to_vec();
        let b = build("price", &q, &mut body).unwrap();
        assert_eq!(b.channel, "ticker:TSLA");
        assert!(String::from_utf8(b.data)
            .unwrap()
            .starts_with(r#"{"price":1.50e2,"#));
    }

    #[test]
    fn missing_and_ill_typed_fields_are_422() {
        let e = build("alert", &[], &mut br#"{"ticker":"A"}"#.to_vec()).unwrap_err();
        assert_eq!(e.as_deref(), Some("alert_type: field required"));
        let mut body = br#"{"status":"open","next_open":7}"#.to_vec();
        let e = build("market_status", &[], &mut body).unwrap_err();
        assert_eq!(e.as_deref(), Some("next_open: not a valid string"));
        let q = vec![("volume".to_string(), "1.5".to_string())];
        assert!(build("price", &q, &mut []).is_err());
        assert_eq!(build("nope", &[], &mut []), Err(None));
        let b = build(
            "market_status",
            &[("status".into(), "open".into())],
            &mut [],
        )
        .unwrap();
        assert_eq!(b.data, br#"{"status":"open"}"#);
        assert_eq!(b.echo.1, "open");
    }
}
