//! Canonical JSON as Matrix defines it for hashing and signing: object keys sorted
//! lexicographically, no insignificant whitespace, UTF-8 unescaped.
//!
//! `serde_json::Value` keeps objects in a `BTreeMap` (the `preserve_order` feature is off), so
//! its compact printer already sorts keys. Our own events carry only strings, integers,
//! booleans, arrays and objects. Federation will verify remote events with ruma's canonical
//! JSON, which also rejects floats and out-of-range integers.

use serde_json::Value;

/// Serializes `v` in canonical form.
pub fn to_string(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_answer_from_the_matrix_appendix() {
        let v = json!({"one": 1, "two": "Two"});
        assert_eq!(to_string(&v), r#"{"one":1,"two":"Two"}"#);
        let v = json!({"b": "2", "a": "1"});
        assert_eq!(to_string(&v), r#"{"a":"1","b":"2"}"#);
        let v = json!({"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {
            "display_name": "John Doe", "three_pids": [
                {"medium": "email", "address": "john.doe@example.org"},
                {"medium": "msisdn", "address": "123456789"}]}}});
        assert_eq!(
            to_string(&v),
            r#"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#
        );
        let v = json!({"a": "日本語"});
        assert_eq!(to_string(&v), r#"{"a":"日本語"}"#);
    }
}
