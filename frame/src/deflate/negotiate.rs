//! RFC 7692 §5 and §7.1: the `permessage-deflate` offer, the answer, and the checks on
//! both. Pure string work; the codec is in `codec.rs`.

use super::{DeflateConfig, DeflateParams, NAME};

/// Why a server's `permessage-deflate` answer cannot be used (the client then fails the
/// connection: RFC 7692 §5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateError {
    /// An unknown parameter, one given twice, a value where none belongs, or a missing
    /// or out-of-range window size.
    #[error("malformed permessage-deflate parameters: {0}")]
    Malformed(&'static str),
    /// The server did not grant what the offer required (`server_no_context_takeover`),
    /// or sent `client_max_window_bits` that was not offered.
    #[error("permessage-deflate answer does not match the offer: {0}")]
    Mismatch(&'static str),
    /// More than one `permessage-deflate` in the answer.
    #[error("permessage-deflate accepted twice")]
    Twice,
}

/// One element's parameters, as written (absent, present without a value, or a value).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Element {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// Parses one extension element (`name; p1; p2=v`). `Ok(None)` when it is another
/// extension; `Err` when it is `permessage-deflate` with parameters RFC 7692 §7.1 does not
/// allow (unknown, repeated, a value where none belongs, a bad window size).
fn parse(element: &str) -> Result<Option<Element>, DeflateError> {
    let mut parts = element.split(';');
    let name = parts.next().unwrap_or("").trim();
    if !name.eq_ignore_ascii_case(NAME) {
        return Ok(None);
    }
    let mut e = Element::default();
    for p in parts {
        let (key, value) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (p.trim(), None),
        };
        let twice = DeflateError::Malformed("a parameter given twice");
        match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => {
                if value.is_some() {
                    return Err(DeflateError::Malformed("server_no_context_takeover has no value"));
                }
                if std::mem::replace(&mut e.server_no_context_takeover, true) {
                    return Err(twice);
                }
            }
            "client_no_context_takeover" => {
                if value.is_some() {
                    return Err(DeflateError::Malformed("client_no_context_takeover has no value"));
                }
                if std::mem::replace(&mut e.client_no_context_takeover, true) {
                    return Err(twice);
                }
            }
            "server_max_window_bits" => {
                let v =
                    value.ok_or(DeflateError::Malformed("server_max_window_bits needs a value"))?;
                if e.server_max_window_bits.replace(window_bits(v)?).is_some() {
                    return Err(twice);
                }
            }
            "client_max_window_bits" => {
                let v = value.map(window_bits).transpose()?;
                if e.client_max_window_bits.replace(v).is_some() {
                    return Err(twice);
                }
            }
            _ => return Err(DeflateError::Malformed("an unknown parameter")),
        }
    }
    Ok(Some(e))
}

/// A parameter value, unquoted (RFC 6455 §9.1 allows a quoted-string).
fn unquote(v: &str) -> Result<&str, DeflateError> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"').ok_or(DeflateError::Malformed("an unclosed quote")),
        None => Ok(v),
    }
}

/// RFC 7692 §7.1.2: a decimal integer from 8 to 15, without leading zeroes.
fn window_bits(v: &str) -> Result<u8, DeflateError> {
    let bad = DeflateError::Malformed("a window size is not 8..=15");
    if v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad);
    }
    match v.parse::<u8>() {
        Ok(n @ 8..=15) => Ok(n),
        _ => Err(bad),
    }
}

/// Server side: the first `permessage-deflate` offer among `offers` (the request's
/// extension elements, in order) that this configuration can accept, with the value to
/// answer in `Sec-WebSocket-Extensions`. Offers with malformed parameters are declined
/// (RFC 7692 §5: a server MUST decline an offer it cannot accept) and the next is tried;
/// `None` when none is left: the connection goes on uncompressed.
///
/// With [`DeflateConfig::context_takeover`] off (the default) the answer always carries
/// both `server_no_context_takeover` and `client_no_context_takeover` (a server may add
/// either, §7.1.1), so that every message is compressed and decompressed alone, with the
/// worker's shared codec, and an idle connection holds no compression state.
pub fn accept_offer(offers: &[&str], config: &DeflateConfig) -> Option<(DeflateParams, String)> {
    for offer in offers {
        let Ok(Some(o)) = parse(offer) else { continue };
        let shared = !config.context_takeover;
        let window = config.window_bits.clamp(9, 15);
        let params = DeflateParams {
            server_no_context_takeover: o.server_no_context_takeover || shared,
            client_no_context_takeover: o.client_no_context_takeover || shared,
            // §7.1.2.1: with the parameter offered, answer it with the same or a smaller
            // value; without it the answer must not have it (our compressor may still
            // use a smaller window than the client's 15: its inflater takes any).
            server_max_window_bits: o.server_max_window_bits.map_or(15, |n| {
                if shared {
                    n
                } else {
                    n.min(window)
                }
            }),
            // §7.1.2.2: only when offered; a dedicated inflater asks for its window.
            client_max_window_bits: match o.client_max_window_bits {
                Some(n) if !shared => n.unwrap_or(15).min(window),
                Some(Some(n)) => n,
                _ => 15,
            },
        };
        let mut answer = String::from(NAME);
        if params.server_no_context_takeover {
            answer.push_str("; server_no_context_takeover");
        }
        if params.client_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if o.server_max_window_bits.is_some() {
            answer.push_str(&format!("; server_max_window_bits={}", params.server_max_window_bits));
        }
        let limit_client = match o.client_max_window_bits {
            Some(Some(_)) => true,
            Some(None) => params.client_max_window_bits < 15,
            None => false,
        };
        if limit_client {
            answer.push_str(&format!("; client_max_window_bits={}", params.client_max_window_bits));
        }
        return Some((params, answer));
    }
    None
}

/// Client side: the `Sec-WebSocket-Extensions` offer for this configuration.
///
/// Shared (the default): asks for no context takeover both ways, so that the client's
/// connections share one codec per thread too; dedicated: offers
/// `client_max_window_bits` (the server may limit our compressor) and, with a window
/// below 15, asks the server to keep to it.
pub fn offer(config: &DeflateConfig) -> String {
    let mut s = String::from(NAME);
    if !config.context_takeover {
        s.push_str("; server_no_context_takeover; client_no_context_takeover");
    } else if config.window_bits < 15 {
        s.push_str(&format!("; server_max_window_bits={}", config.window_bits.clamp(9, 15)));
    }
    s.push_str("; client_max_window_bits");
    s
}

/// Client side: checks the server's answer (the elements of its
/// `Sec-WebSocket-Extensions` that name `permessage-deflate`; other extensions are the
/// handshake's business) against our [`offer`] for `config`. `Ok(None)`: the server
/// declined, the connection goes on uncompressed.
pub fn accept_answer(
    answers: &[&str],
    config: &DeflateConfig,
) -> Result<Option<DeflateParams>, DeflateError> {
    let mut found = None;
    for a in answers {
        let Some(e) = parse(a)? else { continue };
        if found.replace(e).is_some() {
            return Err(DeflateError::Twice);
        }
    }
    let Some(e) = found else { return Ok(None) };
    let Some(cmwb) = e.client_max_window_bits.map(|v| {
        v.ok_or(DeflateError::Malformed("client_max_window_bits needs a value in an answer"))
    }) else {
        return Ok(Some(params_of(&e, 15, config)?));
    };
    Ok(Some(params_of(&e, cmwb?, config)?))
}

fn params_of(e: &Element, cmwb: u8, config: &DeflateConfig) -> Result<DeflateParams, DeflateError> {
    if !config.context_takeover && !e.server_no_context_takeover {
        // §7.1.1.1: a server accepting an offer with the parameter answers with it.
        return Err(DeflateError::Mismatch("server_no_context_takeover was offered"));
    }
    if config.context_takeover && config.window_bits < 15 {
        // We asked the server to keep to our window: it must say it does (§7.1.2.1).
        match e.server_max_window_bits {
            Some(n) if n <= config.window_bits.clamp(9, 15) => {}
            _ => return Err(DeflateError::Mismatch("server_max_window_bits was offered")),
        }
    }
    Ok(DeflateParams {
        server_no_context_takeover: e.server_no_context_takeover,
        client_no_context_takeover: e.client_no_context_takeover || !config.context_takeover,
        server_max_window_bits: e.server_max_window_bits.unwrap_or(15),
        client_max_window_bits: cmwb,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> DeflateConfig {
        DeflateConfig::default()
    }

    fn dedicated(window: u8) -> DeflateConfig {
        DeflateConfig::default().context_takeover(true).window_bits(window)
    }

    #[test]
    fn parameters_parse_strictly() {
        let ok = [
            ("permessage-deflate", Element::default()),
            (
                "Permessage-Deflate ; client_max_window_bits ; server_max_window_bits=\"10\"",
                Element {
                    server_max_window_bits: Some(10),
                    client_max_window_bits: Some(None),
                    ..Element::default()
                },
            ),
            (
                "permessage-deflate;server_no_context_takeover;client_no_context_takeover;client_max_window_bits=8",
                Element {
                    server_no_context_takeover: true,
                    client_no_context_takeover: true,
                    client_max_window_bits: Some(Some(8)),
                    ..Element::default()
                },
            ),
        ];
        for (s, want) in ok {
            assert_eq!(parse(s), Ok(Some(want)), "{s}");
        }
        assert_eq!(parse("x-webkit-deflate-frame"), Ok(None));
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1a",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; client_max_window_bits=\"9",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
            "permessage-deflate; mystery",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_shared_server_answers_every_offer_without_takeover() {
        let cases = [
            ("permessage-deflate", "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            (
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ),
            (
                "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
            ),
        ];
        for (offer, answer) in cases {
            let (p, a) = accept_offer(&[offer], &shared()).unwrap();
            assert_eq!(a, answer, "{offer}");
            assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        }
    }

    #[test]
    fn a_malformed_offer_is_declined_and_the_next_taken() {
        let offers = [
            "permessage-deflate; bogus",
            "x-other",
            "permessage-deflate; server_max_window_bits=9",
        ];
        let (p, a) = accept_offer(&offers, &shared()).unwrap();
        assert_eq!(p.server_max_window_bits, 9);
        assert!(a.ends_with("server_max_window_bits=9"));
        assert_eq!(accept_offer(&["permessage-deflate; bogus"], &shared()), None);
        assert_eq!(accept_offer(&["x-other"], &shared()), None);
    }

    #[test]
    fn a_dedicated_server_keeps_context_and_bounds_windows() {
        let (p, a) =
            accept_offer(&["permessage-deflate; client_max_window_bits"], &dedicated(15)).unwrap();
        assert_eq!(a, "permessage-deflate");
        assert_eq!(p, DeflateParams::default());
        let (p, a) =
            accept_offer(&["permessage-deflate; client_max_window_bits"], &dedicated(11)).unwrap();
        assert_eq!(a, "permessage-deflate; client_max_window_bits=11");
        assert_eq!(p.client_max_window_bits, 11);
        let (p, a) = accept_offer(
            &["permessage-deflate; server_max_window_bits=13; client_no_context_takeover"],
            &dedicated(11),
        )
        .unwrap();
        assert_eq!(a, "permessage-deflate; client_no_context_takeover; server_max_window_bits=11");
        assert_eq!((p.server_max_window_bits, p.client_max_window_bits), (11, 15));
        assert!(p.client_no_context_takeover && !p.server_no_context_takeover);
    }

    #[test]
    fn client_offers_and_checks_answers() {
        assert_eq!(
            offer(&shared()),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits"
        );
        assert_eq!(offer(&dedicated(15)), "permessage-deflate; client_max_window_bits");
        assert_eq!(
            offer(&dedicated(10)),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits"
        );
        // Our own server's answer to our own offer.
        for cfg in [shared(), dedicated(15), dedicated(10)] {
            let o = offer(&cfg);
            let (server_side, answer) = accept_offer(&[&o], &cfg).unwrap();
            let client_side = accept_answer(&[&answer], &cfg).unwrap().unwrap();
            assert_eq!(server_side, client_side, "{o} -> {answer}");
        }
        assert_eq!(accept_answer(&[], &shared()), Ok(None), "declined");
        assert_eq!(accept_answer(&["x-other"], &shared()), Ok(None));
        let bad = [
            ("permessage-deflate; client_no_context_takeover", shared()),
            ("permessage-deflate; server_no_context_takeover; client_max_window_bits", shared()),
            ("permessage-deflate; server_no_context_takeover; bogus", shared()),
            ("permessage-deflate", dedicated(10)),
            ("permessage-deflate; server_max_window_bits=12", dedicated(10)),
        ];
        for (answer, cfg) in bad {
            assert!(accept_answer(&[answer], &cfg).is_err(), "{answer}");
        }
        assert_eq!(
            accept_answer(
                &["permessage-deflate; server_no_context_takeover", "permessage-deflate"],
                &shared()
            ),
            Err(DeflateError::Twice)
        );
        let p = accept_answer(&["permessage-deflate; client_max_window_bits=9"], &dedicated(15))
            .unwrap()
            .unwrap();
        assert_eq!((p.client_max_window_bits, p.server_max_window_bits), (9, 15));
    }
}
