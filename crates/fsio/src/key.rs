//! Content keys: a value's canonical JSON (object keys sorted at every level, no whitespace) and
//! the first 16 hex digits of its SHA-256. A job's id is the key of its stored description, so
//! equal descriptions share one raw record whoever planned them, on whatever machine.
use serde_json::Value;
use sha2::{Digest, Sha256};

/// JSON with object keys sorted at every level and no whitespace: one text per value.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(map) => canonical_object(map, None),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// The canonical JSON of `v` with its top-level key `skip` left out (a record without its own
/// checksum), written without copying `v`.
pub fn canonical_json_without(v: &Value, skip: &str) -> String {
    match v {
        Value::Object(map) => canonical_object(map, Some(skip)),
        other => canonical_json(other),
    }
}

fn canonical_object(map: &serde_json::Map<String, Value>, skip: Option<&str>) -> String {
    let mut keys: Vec<&String> = map.keys().filter(|k| Some(k.as_str()) != skip).collect();
    keys.sort();
    let fields: Vec<String> = keys
        .into_iter()
        .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// Whether a value equals its type's default: the `skip_serializing_if` of every field added to
/// a job key after its first version, so that jobs which keep the old behaviour keep their ids:
/// `#[serde(default, skip_serializing_if = "fsio::key::is_default")]`.
pub fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Lower-case hexadecimal of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of bytes, in hexadecimal.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The key of a value: the first 16 hex digits of the SHA-256 of its canonical JSON.
pub fn content_id(v: &Value) -> String {
    sha256_hex(canonical_json(v).as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,{"d":2,"c":3}],"x":0.1}}"#).unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":0.1,"y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }

    #[test]
    fn the_key_ignores_key_order_and_sees_every_value() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"a":2,"b":1.5}"#).unwrap();
        assert_eq!(content_id(&a), content_id(&b));
        assert_ne!(content_id(&a), content_id(&c));
        // SHA-256("{}") is a published constant.
        assert_eq!(content_id(&serde_json::json!({})), "44136fa355b3678a");
    }
}
