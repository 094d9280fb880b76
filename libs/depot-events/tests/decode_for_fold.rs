//! `Envelope::decode_for_fold` agrees with `Envelope::decode` on any bytes: the same envelope
//! (the publish metadata of uploads left out), or the same error. Neither panics.

use depot_events::{DecodeError, Envelope, Event};
use proptest::prelude::*;

/// The two decodings of `bytes` agree.
fn agree(bytes: &[u8]) {
    let full = Envelope::decode(bytes);
    let fold = Envelope::decode_for_fold(bytes);
    match (full, fold) {
        (Ok(mut full), Ok(fold)) => {
            if let Event::VersionUploaded(upload) = &mut full.event {
                upload.metadata = serde_json::Value::Null;
            }
            assert_eq!(full, fold, "{}", String::from_utf8_lossy(bytes));
        }
        (Err(full), Err(fold)) => {
            let same = matches!(
                (&full, &fold),
                (DecodeError::Envelope(_), DecodeError::Envelope(_))
                    | (DecodeError::Data { .. }, DecodeError::Data { .. })
            );
            assert!(same, "{full} / {fold}: {}", String::from_utf8_lossy(bytes));
            assert_eq!(full.to_string(), fold.to_string());
        }
        (full, fold) => panic!(
            "decode: {full:?}\ndecode_for_fold: {fold:?}\nbytes: {}",
            String::from_utf8_lossy(bytes)
        ),
    }
}

/// Envelopes of every kind, as Depot writes them.
fn samples() -> Vec<String> {
    let head = r#""id":"0190a6f2-7c3e-7d41-9a51-5b7f2d7e9a10","schema":1,"at":"2026-11-24T10:00:00.123Z","actor":"alice""#;
    let entry = r#"{"name":"Foo","vers":"1.0.0","deps":[{"name":"bar","req":"^1","features":[],"optional":false,"default_features":true,"target":null,"kind":"normal"}],"cksum":"ab","features":{"std":[]},"yanked":false,"rust_version":"1.70"}"#;
    let data = [
        (
            "version_uploaded",
            r#"{"name":"Foo","vers":"1.0.0","cksum":"ab","size":12,"blob":"sha256/ab","metadata":{"name":"Foo","vers":"1.0.0","deps":[],"readme":"Foo\n\nA crate.","badges":{},"links":null},"uploader":"alice"}"#.to_owned(),
        ),
        (
            "version_uploaded",
            r#"{"name":"Foo","vers":"1.0.0+b","cksum":"ab","size":12,"blob":"sha256/ab","metadata_blob":"sha256/cd","uploader":"alice","token_id":"0190a6f2-7c3e-7d41-9a51-5b7f2d7e9a11"}"#.to_owned(),
        ),
        (
            "version_accepted",
            format!(
                r#"{{"vers":"1.0.0","cksum":"ab","entry":{entry},"metadata":{{"description":"d","keywords":["a","b"],"readme":"text"}}}}"#
            ),
        ),
        (
            "version_rejected",
            r#"{"vers":"1.0.0","cksum":"ab","reasons":[{"code":"invalid_path","detail":"x"}]}"#.to_owned(),
        ),
        ("version_yanked", r#"{"vers":"1.0.0","message":"oops"}"#.to_owned()),
        ("version_unyanked", r#"{"vers":"1.0.0"}"#.to_owned()),
        ("owners_added", r#"{"owners":["bob"]}"#.to_owned()),
        (
            "token_issued",
            r#"{"token_id":"0190a6f2-7c3e-7d41-9a51-5b7f2d7e9a12","user":"alice","secret_sha256":"ff","kind":"personal","scopes":["read","publish-update"],"crates":["foo*"],"expires_at":"2027-01-01T00:00:00.000Z"}"#.to_owned(),
        ),
        (
            "trust_added",
            r#"{"trust_id":"0190a6f2-7c3e-7d41-9a51-5b7f2d7e9a13","issuer":"https://ci","audience":"depot","claims":{"sub":"repo:*"}}"#.to_owned(),
        ),
        ("user_created", r#"{"login":"Carol","admin":true}"#.to_owned()),
        ("something_new", r#"{"x":[1,2,{"y":null}],"z":"w"}"#.to_owned()),
    ];
    data.iter()
        .map(|(kind, data)| format!(r#"{{{head},"type":"{kind}","data":{data}}}"#))
        .collect()
}

#[test]
fn samples_agree_and_skip_only_the_upload_metadata() {
    for sample in samples() {
        agree(sample.as_bytes());
        let fold = Envelope::decode_for_fold(sample.as_bytes()).unwrap();
        let full = Envelope::decode(sample.as_bytes()).unwrap();
        if !matches!(full.event, Event::VersionUploaded(_)) {
            assert_eq!(full, fold);
        }
    }
}

#[test]
fn hostile_values_agree() {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let values = [
        "1e400".to_owned(),
        "-0".to_owned(),
        "123456789012345678901234567890".to_owned(),
        "0.5".to_owned(),
        r#""\ud800""#.to_owned(),
        r#""\u0041\n""#.to_owned(),
        "\"\u{1}\"".to_owned(),
        deep(60),
        deep(127),
        deep(128),
        deep(10_000),
        r#"{"a":1,"a":2}"#.to_owned(),
    ];
    for sample in samples() {
        for value in &values {
            // The value as the upload's metadata, as an unknown field of the payload, and as
            // a known field of the wrong type.
            for (from, to) in [
                (r#""metadata":{"#, format!(r#""metadata":{value},"x":{{"#)),
                (r#""vers":"#, format!(r#""unknown":{value},"vers":"#)),
                (r#""vers":"1.0.0""#, format!(r#""vers":{value}"#)),
                (r#""cksum":"ab""#, r#""cksum":"ab","cksum":"ab""#.to_owned()),
                (r#""data":"#, format!(r#""extra":{value},"data":"#)),
                (r#""data":{"#, format!(r#""data":{value},"y":{{"#)),
            ] {
                agree(sample.replacen(from, &to, 1).as_bytes());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_bytes_agree(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        agree(&bytes);
    }

    #[test]
    fn mutated_events_agree(
        pick in 0_usize..64,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0_u8..4, any::<u8>()), 1..6),
    ) {
        let samples = samples();
        let mut bytes = samples[pick % samples.len()].clone().into_bytes();
        for (at, op, byte) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                2 => bytes.insert(i, byte),
                // Characters that change the JSON's shape.
                _ => {
                    let shapes = b"{}[]\",:\\u0e-";
                    bytes.insert(i, shapes[usize::from(byte) % shapes.len()]);
                }
            }
        }
        agree(&bytes);
    }

    #[test]
    fn arbitrary_json_in_data_agrees(pick in 0_usize..64, value in arb_json()) {
        let samples = samples();
        let sample = &samples[pick % samples.len()];
        let text = value.to_string();
        agree(sample.replacen(r#""data":{"#, &format!(r#""data":{{"junk":{text},"#), 1).as_bytes());
        agree(sample.replacen(r#""vers":"#, &format!(r#""vers":{text},"v2":"#), 1).as_bytes());
        agree(sample.replacen(r#""metadata":{"#, &format!(r#""metadata":{text},"m":{{"#), 1).as_bytes());
    }
}

/// Arbitrary JSON values: odd numbers, escapes, nesting.
fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".*".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            proptest::collection::vec(("[a-z]{0,3}", inner), 0..8)
                .prop_map(|entries| { serde_json::Value::Object(entries.into_iter().collect()) }),
        ]
    })
}
