//! [`string_enums`]: the schemars transform that writes string enums as `enum`, for the JSON
//! Schemas in `docs/schemas/` and the OpenAPI document alike.
//!
//! schemars writes a unit enum whose variants have doc comments as a `oneOf` of `const`s, so
//! that each value keeps its description; client generators (openapi-python-client,
//! openapi-typescript) want `"enum": [...]`. The transform writes the `enum` and keeps the
//! descriptions as a list in the schema's own. An open set (known values and any other string,
//! like [`crate::TimelineEvent`]) becomes a string whose `examples` are the known values.

use schemars::Schema;
use schemars::transform::transform_subschemas;
use serde_json::{Map, Value};

/// Rewrites every `oneOf`/`anyOf` of string `const`s in `schema` (and its subschemas) as an
/// `enum`, as the module says; other schemas are left as they are.
pub fn string_enums(schema: &mut Schema) {
    transform_subschemas(&mut string_enums, schema);
    let Some(object) = schema.as_object_mut() else { return };
    for key in ["oneOf", "anyOf"] {
        let Some(Value::Array(alternatives)) = object.get(key) else { continue };
        let Some(Enum { known, other }) = split(alternatives) else { continue };
        let list: Vec<String> = known
            .iter()
            .map(|(value, description)| match description {
                Some(d) => format!("- `{value}`: {}", d.replace('\n', " ")),
                None => format!("- `{value}`"),
            })
            .collect();
        let mut description = object.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
        if !description.is_empty() {
            description.push_str("\n\n");
        }
        description.push_str(&list.join("\n"));
        let values: Vec<Value> = known.iter().map(|(value, _)| Value::String((*value).to_owned())).collect();
        let other = other.map(|o| o.get("description").and_then(Value::as_str).unwrap_or_default().to_owned());
        object.remove(key);
        object.insert("type".into(), "string".into());
        match other {
            None => {
                object.insert("enum".into(), values.into());
            }
            Some(other) => {
                description.push_str(&format!("\n- any other: {}", other.replace('\n', " ")));
                object.insert("examples".into(), values.into());
            }
        }
        object.insert("description".into(), description.into());
        return;
    }
}

/// The alternatives of a string enum.
struct Enum<'a> {
    /// The `const`s, with their descriptions.
    known: Vec<(&'a str, Option<&'a str>)>,
    /// The one plain string alternative beside them, if the set is open.
    other: Option<&'a Map<String, Value>>,
}

/// The string enum `alternatives` are, if that is all they are.
fn split(alternatives: &[Value]) -> Option<Enum<'_>> {
    let mut known = Vec::new();
    let mut other = None;
    for alternative in alternatives {
        let alternative = alternative.as_object()?;
        let is_string = alternative.get("type").is_some_and(|t| t == "string");
        let only = |allowed: &[&str]| alternative.keys().all(|k| allowed.contains(&k.as_str()));
        match alternative.get("const") {
            Some(Value::String(value)) if only(&["const", "type", "description"]) => {
                known.push((value.as_str(), alternative.get("description").and_then(Value::as_str)));
            }
            None if is_string && other.is_none() && only(&["type", "description"]) => other = Some(alternative),
            _ => return None,
        }
    }
    (!known.is_empty()).then_some(Enum { known, other })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn transformed(value: Value) -> Value {
        let mut schema = Schema::try_from(value).expect("a schema");
        string_enums(&mut schema);
        schema.to_value()
    }

    #[test]
    fn a_one_of_of_consts_becomes_an_enum_with_its_descriptions() {
        let schema = json!({ "description": "Which.", "oneOf": [
            { "const": "a", "type": "string", "description": "The first\nline." },
            { "const": "b", "type": "string" }
        ]});
        assert_eq!(
            transformed(schema),
            json!({ "type": "string", "enum": ["a", "b"], "description": "Which.\n\n- `a`: The first line.\n- `b`" })
        );
    }

    #[test]
    fn an_open_set_becomes_a_string_with_examples() {
        let schema = json!({ "anyOf": [
            { "const": "a", "type": "string", "description": "A." },
            { "type": "string", "description": "Any other." }
        ]});
        assert_eq!(
            transformed(schema),
            json!({ "type": "string", "examples": ["a"], "description": "- `a`: A.\n- any other: Any other." })
        );
    }

    #[test]
    fn anything_more_than_an_enum_is_left_alone() {
        let a = json!({ "const": "a", "type": "string" });
        for alternatives in [
            json!([{ "const": "a", "type": "string", "deprecated": true }]),
            json!([a, { "type": "string", "pattern": "^x" }]),
            json!([a, { "type": "string" }, { "type": "string" }]),
            json!([a, { "type": "integer" }]),
            json!([{ "type": "string" }]),
        ] {
            let schema = json!({ "anyOf": alternatives });
            assert_eq!(transformed(schema.clone()), schema);
        }
    }

    #[test]
    fn nested_enums_are_rewritten_and_tagged_unions_are_not() {
        let tagged = json!({ "oneOf": [
            { "type": "object", "properties": { "kind": { "const": "x", "type": "string" } } },
            { "const": "y", "type": "string" }
        ]});
        assert_eq!(transformed(tagged.clone()), tagged);
        let nested = json!({ "properties": { "p": { "oneOf": [ { "const": "a", "type": "string" } ] } } });
        assert_eq!(
            transformed(nested),
            json!({ "properties": { "p": { "type": "string", "enum": ["a"], "description": "- `a`" } } })
        );
        let numbers = json!({ "oneOf": [ { "const": 1 } ] });
        assert_eq!(transformed(numbers.clone()), numbers);
    }
}
