//! JWT claims (JSON) as `google.protobuf.Struct`, the form `ValidateJWTSVID` returns them in:
//! every JSON type maps to its protobuf counterpart (numbers become doubles, as the well-known
//! type defines them).

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::Map;

/// `claims` as a protobuf `Struct`.
pub(crate) fn to_struct(claims: &Map<String, serde_json::Value>) -> Struct {
    Struct {
        fields: claims
            .iter()
            .map(|(k, v)| (k.clone(), to_value(v)))
            .collect(),
    }
}

fn to_value(v: &serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_every_json_type_faithfully() {
        let claims = json!({
            "sub": "spiffe://example.org/w",
            "aud": ["a", "b"],
            "exp": 1_700_000_000,
            "ratio": 0.5,
            "admin": true,
            "nothing": null,
            "nested": {"k": [1, {"x": "y"}]},
        });
        let s = to_struct(claims.as_object().unwrap());
        let kind = |k: &str| s.fields[k].kind.clone().unwrap();
        assert_eq!(
            kind("sub"),
            Kind::StringValue("spiffe://example.org/w".into())
        );
        assert_eq!(kind("exp"), Kind::NumberValue(1_700_000_000.0));
        assert_eq!(kind("ratio"), Kind::NumberValue(0.5));
        assert_eq!(kind("admin"), Kind::BoolValue(true));
        assert_eq!(kind("nothing"), Kind::NullValue(0));
        let Kind::ListValue(aud) = kind("aud") else {
            panic!("aud is not a list")
        };
        assert_eq!(aud.values.len(), 2);
        let Kind::StructValue(nested) = kind("nested") else {
            panic!("nested is not a struct")
        };
        let Some(Kind::ListValue(k)) = nested.fields["k"].kind.clone() else {
            panic!()
        };
        assert_eq!(k.values[0].kind, Some(Kind::NumberValue(1.0)));
        assert!(matches!(k.values[1].kind, Some(Kind::StructValue(_))));
    }
}
