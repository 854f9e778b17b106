//! The fuzz targets' properties (`fuzz/`), run on stable inside the normal suite: each
//! check of `tests/checks` gets the committed seed corpus of its target, then a few
//! thousand inputs built by `arbitrary` from a fixed pseudo-random byte stream, so a
//! failure reproduces from its case number. `benches/fuzz.sh` runs the real fuzzers.

mod checks;

use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use checks::{ClientInput, HeadInput, KeyInput, ScopeInput, Spec};
use tower_api_key::key::{KeyFormat, Presented, TagKey};

/// xorshift64*: a fixed, dependency-free byte stream.
struct Bytes(u64);

impl Bytes {
    fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *byte = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }
}

/// Runs `check` on the seed corpus of `target`, then on `cases` generated inputs of up
/// to `max_len` bytes each.
fn run<T, F>(target: &str, cases: u64, max_len: usize, check: F)
where
    T: for<'a> Arbitrary<'a>,
    F: Fn(&T),
{
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds = 0;
    for entry in std::fs::read_dir(&corpus).expect("the seed corpus is committed") {
        let path = entry.expect("a corpus entry").path();
        let data = std::fs::read(&path).expect("a seed");
        if let Ok(input) = T::arbitrary_take_rest(Unstructured::new(&data)) {
            check(&input);
        }
        seeds += 1;
    }
    assert!(seeds > 0, "no seeds in {}", corpus.display());

    let mut stream = Bytes(0x9e37_79b9_7f4a_7c15 ^ target.len() as u64);
    let mut data = vec![0; max_len];
    for case in 0..cases {
        let len = (case as usize * 7919) % max_len + 1;
        stream.fill(&mut data[..len]);
        let Ok(input) = T::arbitrary_take_rest(Unstructured::new(&data[..len])) else {
            continue;
        };
        check(&input);
    }
}

#[test]
fn credentials_in_the_head() {
    run::<HeadInput, _>("credentials", 1500, 256, checks::check_head);
}

#[test]
fn json_body_scanner_agrees_with_serde_json() {
    run::<Vec<u8>, _>("json_body", 500, 256, |body| checks::check_json_body(body));
    // Random bytes are rarely JSON: documents built from JSON's own pieces are.
    let pieces: [&[u8]; 16] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\"api_key\"",
        b"\"x\"",
        b"\"$K\"",
        b"\"$I\"",
        b"1e400",
        b"null",
        b"\"\\u0061pi_key\"",
        b"\"\\ud800\"",
        b" ",
        b"-0.5",
    ];
    let mut stream = Bytes(7);
    let mut picks = [0_u8; 12];
    for _ in 0..3000 {
        stream.fill(&mut picks);
        let body: Vec<u8> = picks
            .iter()
            .flat_map(|&p| pieces[usize::from(p) % pieces.len()].iter().copied())
            .collect();
        checks::check_json_body(&body);
    }
}

#[test]
fn key_parsing_and_checksums() {
    run::<KeyInput, _>("key_parse", 3000, 160, checks::check_key);
}

#[test]
fn generated_keys_parse_back_and_every_typo_is_refused() {
    let format = KeyFormat::new("pb")
        .unwrap()
        .with_environments(["live", "test"])
        .unwrap();
    let tag_key = TagKey::new('q', &[5; 32]).unwrap();
    for round in 0..40 {
        let environment = if round % 2 == 0 { "live" } else { "test" };
        let minted = if round % 4 < 2 {
            format.generate(Some(environment)).unwrap()
        } else {
            format.generate_tagged(Some(environment), &tag_key).unwrap()
        };
        let key = minted.key.expose_secret();
        let Some(Presented::Native(parsed)) = format.parse(key) else {
            panic!("a minted key is refused: {}", minted.key);
        };
        assert_eq!(parsed.id(), &minted.id);
        assert_eq!(parsed.environment(), minted.environment);
        assert_eq!(parsed.digest(), minted.digest);
        assert_eq!(parsed.is_tagged(), round % 4 >= 2);
        assert_eq!(parsed.tag_verifies(&tag_key), round % 4 >= 2);
        // Every position, every other character of the key's alphabet.
        for at in 0..key.len() {
            for replacement in [b'0', b'9', b'A', b'Z', b'a', b'z', b'_'] {
                let mut typo = key.as_bytes().to_vec();
                if typo[at] == replacement {
                    continue;
                }
                typo[at] = replacement;
                let typo = String::from_utf8(typo).unwrap();
                assert_eq!(format.parse(&typo), None, "{at} -> {replacement}");
            }
        }
    }
}

#[test]
fn forwarding_headers_name_only_addresses_they_hold() {
    run::<ClientInput, _>("client_ip", 3000, 128, checks::check_client);
}

#[test]
fn scope_expressions_parse_back_from_their_display() {
    run::<ScopeInput, _>("scope_requirement", 3000, 96, checks::check_scope);
}

#[test]
fn rate_budget_quota_and_request_id_specifications() {
    run::<Vec<Spec>, _>("specs", 3000, 96, |specs| {
        specs.iter().for_each(checks::check_spec);
    });
}

// ---------------------------------------------------------------------------------------
// The same checks on inputs shaped like the real thing, which a plain byte stream
// rarely produces: keys, JSON documents, address lists, expressions, rate texts.
// ---------------------------------------------------------------------------------------

mod shaped {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::checks::{self, ClientInput, HeadHeader, HeadInput, KeyInput, ScopeInput};
    use super::checks::{ScopeToken, Spec};

    fn config(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn header() -> impl Strategy<Value = HeadHeader> {
        prop_oneof![
            Just(HeadHeader::Authorization),
            Just(HeadHeader::XApiKey),
            Just(HeadHeader::XRequestId),
            Just(HeadHeader::XForwardedFor),
            Just(HeadHeader::Other),
        ]
    }

    fn credential() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"Bearer $K".to_vec()),
            Just(b"$K".to_vec()),
            Just(b"$I".to_vec()),
            Just(b"bEaReR    $I".to_vec()),
            "(Bearer|Token|bearer)? ?[$KIpb_live0-9a-zA-Z \"-]{0,24}".prop_map(String::into_bytes),
            vec(any::<u8>(), 0..24),
        ]
    }

    fn query() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"api_key=$K".to_vec()),
            Just(b"x=1&api_key=$I".to_vec()),
            "[a-z_=&$KI%#?/ ]{0,24}".prop_map(String::into_bytes),
            vec(any::<u8>(), 0..16),
        ]
    }

    /// A JSON value, small and often nested.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            prop_oneof![Just("$K".to_owned()), Just("$I".to_owned()), ".{0,8}"]
                .prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Value::Array),
                vec(("(api_key|x|[a-z]{0,3})", inner), 0..4)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    /// A JSON document: an object written field by field (so a field may repeat, and a
    /// name may be escaped), or any value, or either cut short.
    fn document() -> impl Strategy<Value = Vec<u8>> {
        let name = prop_oneof![
            Just("\"api_key\"".to_owned()),
            Just("\"\\u0061pi_key\"".to_owned()),
            "(x|limit|api_keyx|API_KEY)".prop_map(|n| format!("\"{n}\"")),
        ];
        let object = vec((name, json()), 0..5).prop_map(|fields| {
            let fields: Vec<String> = fields
                .into_iter()
                .map(|(name, value)| format!("{name}: {value}"))
                .collect();
            format!("{{{}}}", fields.join(","))
        });
        let text = prop_oneof![4 => object, 1 => json().prop_map(|v| v.to_string())];
        (text, any::<u8>()).prop_map(|(text, cut)| {
            let bytes = text.into_bytes();
            if cut % 8 == 0 && !bytes.is_empty() {
                let keep = usize::from(cut) % bytes.len();
                bytes[..keep].to_vec()
            } else {
                bytes
            }
        })
    }

    fn raw_key() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "pb_(live|test|dev)_[A-Za-z0-9]{37,53}",
            "pbo_[A-Za-z0-9]{38,52}",
            "ext_[A-Za-z0-9_-]{0,40}",
            "[a-z_]{0,8}[ -~]{0,60}",
        ]
        .prop_map(String::into_bytes)
    }

    fn key_input() -> impl Strategy<Value = KeyInput> {
        (
            raw_key(),
            any::<bool>(),
            vec(any::<u8>(), 33),
            proptest::option::of((any::<u8>(), proptest::array::uniform11(any::<u8>()))),
            any::<u16>(),
            any::<u8>(),
        )
            .prop_map(|(raw, test_environment, body, tag, mutate_at, mutate_to)| {
                KeyInput {
                    raw,
                    test_environment,
                    body: body.try_into().expect("33 bytes"),
                    tag,
                    mutate_at,
                    mutate_to,
                }
            })
    }

    /// One entry of a forwarding list: an address as proxies write it, or junk.
    fn node() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
            (any::<Ipv4Addr>(), any::<u16>()).prop_map(|(ip, port)| format!("{ip}:{port}")),
            any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
            (any::<Ipv6Addr>(), any::<u16>()).prop_map(|(ip, port)| format!("[{ip}]:{port}")),
            Just("unknown".to_owned()),
            "[ -~]{0,12}",
        ]
    }

    fn forwarding_value(forwarded: bool) -> impl Strategy<Value = Vec<u8>> {
        vec(node(), 1..5).prop_map(move |nodes| {
            let nodes: Vec<String> = if forwarded {
                nodes
                    .into_iter()
                    .map(|n| format!("for=\"{n}\";proto=https"))
                    .collect()
            } else {
                nodes
            };
            nodes.join(", ").into_bytes()
        })
    }

    fn client_input() -> impl Strategy<Value = ClientInput> {
        (
            any::<bool>(),
            0..9_u8,
            any::<bool>(),
            vec(
                any::<bool>().prop_flat_map(|f| (Just(f), forwarding_value(f))),
                0..3,
            ),
        )
            .prop_map(|(forwarded, hops, with_peer, headers)| ClientInput {
                forwarded,
                hops,
                with_peer,
                headers,
            })
    }

    fn scope_input() -> impl Strategy<Value = ScopeInput> {
        let token = prop_oneof![
            6 => any::<u8>().prop_map(ScopeToken::Scope),
            3 => Just(ScopeToken::And),
            3 => Just(ScopeToken::Or),
            2 => Just(ScopeToken::Open),
            2 => Just(ScopeToken::Close),
            1 => Just(ScopeToken::Space),
            1 => "[a-z:()\\t ANDORé]{0,6}".prop_map(ScopeToken::Raw),
        ];
        (vec(token, 0..24), vec(any::<u8>(), 0..6))
            .prop_map(|(tokens, held)| ScopeInput { tokens, held })
    }

    fn spec() -> impl Strategy<Value = Spec> {
        let rate_text =
            " ?[+-]?[0-9]{0,11} ?/ ?(s|sec|second|min|minute|h|hr|hour|d|day|MIN|Hour|x)? ?";
        prop_oneof![
            rate_text.prop_map(Spec::Rate),
            rate_text.prop_map(Spec::Budget),
            prop_oneof![
                "[!-~]{0,130}".prop_map(String::into_bytes),
                vec(any::<u8>(), 0..140)
            ]
            .prop_map(Spec::RequestId),
            (
                "[A-Za-z0-9_.é -]{0,5}",
                prop_oneof![any::<u32>(), 0..100_u32],
                prop_oneof![any::<u64>(), 0..100_000_u64],
                prop_oneof![any::<u32>(), 0..100_u32],
            )
                .prop_map(|(name, quota, window_secs, burst)| Spec::RateNew {
                    name,
                    quota,
                    window_secs,
                    burst,
                }),
            (
                prop_oneof![Just(0_u64), any::<u64>()],
                any::<bool>(),
                // Anywhere, or within two days of either end of the calendar.
                prop_oneof![
                    any::<i64>(),
                    0..172_800_i64,
                    253_402_300_799 - 172_800..=253_402_300_799_i64
                ],
                any::<u32>(),
                any::<i32>()
            )
                .prop_map(|(limit, monthly, unix_seconds, nanos, offset_seconds)| {
                    Spec::Quota {
                        limit,
                        monthly,
                        unix_seconds,
                        nanos,
                        offset_seconds,
                    }
                }),
        ]
    }

    proptest! {
        #![proptest_config(config(400))]

        #[test]
        fn credentials_in_the_head(
            headers in vec((header(), credential()), 0..4),
            query in query(),
        ) {
            checks::check_head(&HeadInput { headers, query });
        }

        #[test]
        fn json_body_scanner_agrees_with_serde_json(body in document()) {
            checks::check_json_body(&body);
        }
    }

    proptest! {
        #![proptest_config(config(1000))]

        #[test]
        fn key_parsing_and_checksums(input in key_input()) {
            checks::check_key(&input);
        }

        #[test]
        fn forwarding_headers_name_only_addresses_they_hold(input in client_input()) {
            checks::check_client(&input);
        }

        #[test]
        fn scope_expressions_parse_back_from_their_display(input in scope_input()) {
            checks::check_scope(&input);
        }

        #[test]
        fn rate_budget_quota_and_request_id_specifications(specs in vec(spec(), 1..4)) {
            specs.iter().for_each(checks::check_spec);
        }
    }
}
