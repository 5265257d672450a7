//! Answers that follow a JSON Schema from a model too small to be trusted
//! to write one: keel writes the JSON's structure itself (braces, keys,
//! commas, quotes) and lets the model choose only where the schema leaves a
//! choice: which `enum` value, the characters of a string or a number,
//! `true` or `false`, whether an array goes on. The answer is valid JSON of
//! the schema's shape by construction; keywords this walker does not steer
//! by (`pattern`, `minimum`, `format`, …) are still checked afterwards, as
//! for every provider.
//!
//! Covered: `type` object (every property, in the order the schema lists
//! them), array (`items`, `minItems`, `maxItems`; at least one item unless
//! `maxItems` is 0), string (`maxLength`), number, integer, boolean, null,
//! and `enum` / `const` of any values. Not covered, and refused so the tier
//! falls back to the next provider: `anyOf`, `oneOf`, `allOf`, `not`,
//! `$ref`, `if`, and a `type` that lists several types.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// How deep objects and arrays may nest.
const MAX_DEPTH: usize = 8;
/// Items an array gets at most when the schema sets no `maxItems`.
const DEFAULT_MAX_ITEMS: u64 = 8;
/// Characters a string gets at most when the schema sets no `maxLength`.
const DEFAULT_MAX_CHARS: usize = 400;

/// What the model is asked to do at each choice; the model's side of the
/// walk.
pub trait Steer {
    /// Feeds `text` as if the model had written it.
    fn force(&mut self, text: &str) -> Result<(), String>;
    /// Lets the model write one of `options` and feeds it; its index.
    fn choose(&mut self, options: &[String]) -> Result<usize, String>;
    /// Lets the model write a string's characters (no quote, backslash or
    /// control character) until it closes the string or reaches
    /// `max_chars`; the closing quote is left to the caller.
    fn text(&mut self, max_chars: usize) -> Result<String, String>;
    /// Lets the model write a JSON number (no fraction when `integer`).
    fn number(&mut self, integer: bool) -> Result<String, String>;
}

/// A JSON value that keeps its objects' keys in the order written (the
/// schema's property order is the order the answer is written in).
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    /// Parses JSON text, keeping key order.
    pub fn parse(text: &str) -> Result<Node, String> {
        serde_json::from_str(text).map_err(|e| format!("the schema is not JSON: {e}"))
    }

    fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_u64(&self) -> Option<u64> {
        match self {
            Node::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// The value as compact JSON text.
    pub fn to_json(&self) -> String {
        match self {
            Node::Null => "null".into(),
            Node::Bool(b) => b.to_string(),
            Node::Number(n) => n.to_string(),
            Node::String(s) => serde_json::Value::String(s.clone()).to_string(),
            Node::Array(items) => {
                let parts: Vec<String> = items.iter().map(Node::to_json).collect();
                format!("[{}]", parts.join(", "))
            }
            Node::Object(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}: {}", Node::String(k.clone()).to_json(), v.to_json()))
                    .collect();
                format!("{{{}}}", parts.join(", "))
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
                Ok(Node::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
                Ok(Node::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
                Ok(Node::Number(n.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Node, E> {
                serde_json::Number::from_f64(n)
                    .map(Node::Number)
                    .ok_or_else(|| E::custom("a number JSON cannot hold"))
            }
            fn visit_str<E>(self, s: &str) -> Result<Node, E> {
                Ok(Node::String(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut fields: Vec<(String, Node)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Node>()? {
                    match fields.iter_mut().find(|(key, _)| *key == k) {
                        Some(slot) => slot.1 = v,
                        None => fields.push((k, v)),
                    }
                }
                Ok(Node::Object(fields))
            }
        }
        d.deserialize_any(NodeVisitor)
    }
}

/// Why this walker cannot follow `schema`, if it cannot.
pub fn unsupported(schema: &Node) -> Option<String> {
    check(schema, 0).err()
}

fn check(schema: &Node, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("it nests deeper than {MAX_DEPTH} levels"));
    }
    let Node::Object(_) = schema else {
        return Err("a part of it is not a schema object".into());
    };
    for key in ["anyOf", "oneOf", "allOf", "not", "$ref", "if"] {
        if schema.get(key).is_some() {
            return Err(format!("it uses `{key}`"));
        }
    }
    if schema.get("const").is_some() {
        return Ok(());
    }
    if let Some(options) = schema.get("enum") {
        return match options {
            Node::Array(o) if !o.is_empty() => Ok(()),
            _ => Err("its `enum` is not a list of values".into()),
        };
    }
    match kind(schema)? {
        "object" => {
            if let Some(Node::Object(props)) = schema.get("properties") {
                for (_, sub) in props {
                    check(sub, depth + 1)?;
                }
            }
            Ok(())
        }
        "array" => match schema.get("items") {
            Some(items) => check(items, depth + 1),
            None => Err("an array has no `items` schema".into()),
        },
        _ => Ok(()),
    }
}

/// The schema's one type.
fn kind(schema: &Node) -> Result<&str, String> {
    match schema.get("type") {
        Some(Node::String(t)) => match t.as_str() {
            "object" | "array" | "string" | "number" | "integer" | "boolean" | "null" => {
                Ok(t.as_str())
            }
            other => Err(format!("it names the unknown type `{other}`")),
        },
        Some(Node::Array(_)) => Err("a `type` lists several types".into()),
        Some(_) => Err("a `type` is not a string".into()),
        None if schema.get("properties").is_some() => Ok("object"),
        None if schema.get("items").is_some() => Ok("array"),
        None => Err("a part of it has no `type`".into()),
    }
}

/// Writes a JSON value that follows `schema` through `steer`; its text.
pub fn follow(schema: &Node, steer: &mut dyn Steer) -> Result<String, String> {
    check(schema, 0)?;
    let mut out = String::new();
    value(schema, steer, &mut out)?;
    Ok(out)
}

fn emit(steer: &mut dyn Steer, out: &mut String, text: &str) -> Result<(), String> {
    steer.force(text)?;
    out.push_str(text);
    Ok(())
}

fn value(schema: &Node, steer: &mut dyn Steer, out: &mut String) -> Result<(), String> {
    if let Some(c) = schema.get("const") {
        return emit(steer, out, &c.to_json());
    }
    if let Some(Node::Array(options)) = schema.get("enum") {
        let texts: Vec<String> = options.iter().map(Node::to_json).collect();
        let i = steer.choose(&texts)?;
        out.push_str(&texts[i]);
        return Ok(());
    }
    match kind(schema)? {
        "object" => object(schema, steer, out),
        "array" => array(schema, steer, out),
        "string" => {
            let max = schema
                .get("maxLength")
                .and_then(Node::as_u64)
                .map_or(DEFAULT_MAX_CHARS, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                });
            emit(steer, out, "\"")?;
            let text = steer.text(max)?;
            // The model cannot write a quote, backslash or control
            // character; a character cut in half is dropped.
            out.push_str(&text);
            emit(steer, out, "\"")
        }
        "number" | "integer" => {
            let n = steer.number(kind(schema)? == "integer")?;
            out.push_str(&n);
            Ok(())
        }
        "boolean" => {
            let options = ["true".to_string(), "false".to_string()];
            let i = steer.choose(&options)?;
            out.push_str(&options[i]);
            Ok(())
        }
        _ => emit(steer, out, "null"),
    }
}

/// An object: its properties in the schema's order.
fn object(schema: &Node, steer: &mut dyn Steer, out: &mut String) -> Result<(), String> {
    emit(steer, out, "{")?;
    if let Some(Node::Object(props)) = schema.get("properties") {
        for (i, (key, sub)) in props.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let key = Node::String(key.clone()).to_json();
            emit(steer, out, &format!("{sep}{key}: "))?;
            value(sub, steer, out)?;
        }
    }
    emit(steer, out, "}")
}

/// An array of `items`, between `minItems` and `maxItems` long; past the
/// minimum the model chooses when it ends.
fn array(schema: &Node, steer: &mut dyn Steer, out: &mut String) -> Result<(), String> {
    let items = schema
        .get("items")
        .ok_or("an array has no `items` schema")?;
    let min = schema.get("minItems").and_then(Node::as_u64).unwrap_or(0);
    let max = schema
        .get("maxItems")
        .and_then(Node::as_u64)
        .unwrap_or(DEFAULT_MAX_ITEMS.max(min));
    if min > max {
        return Err("its minItems is above its maxItems".into());
    }
    if max == 0 {
        return emit(steer, out, "[]");
    }
    emit(steer, out, "[")?;
    let mut count = 0;
    loop {
        value(items, steer, out)?;
        count += 1;
        if count == max {
            break;
        }
        if count < min {
            emit(steer, out, ", ")?;
            continue;
        }
        let options = [", ".to_string(), "]".to_string()];
        if steer.choose(&options)? == 1 {
            out.push(']');
            return Ok(());
        }
        out.push_str(", ");
    }
    emit(steer, out, "]")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model that always picks the same option, writes fixed strings and
    /// numbers, and records what it was fed.
    struct Scripted {
        fed: String,
        pick: usize,
        words: Vec<&'static str>,
    }

    impl Steer for Scripted {
        fn force(&mut self, text: &str) -> Result<(), String> {
            self.fed.push_str(text);
            Ok(())
        }
        fn choose(&mut self, options: &[String]) -> Result<usize, String> {
            let i = self.pick.min(options.len() - 1);
            self.fed.push_str(&options[i]);
            Ok(i)
        }
        fn text(&mut self, max_chars: usize) -> Result<String, String> {
            let w: String = self.words.remove(0).chars().take(max_chars).collect();
            self.fed.push_str(&w);
            Ok(w)
        }
        fn number(&mut self, integer: bool) -> Result<String, String> {
            let n = if integer { "42" } else { "0.5" };
            self.fed.push_str(n);
            Ok(n.into())
        }
    }

    #[test]
    fn the_answer_has_the_schema_shape_and_its_property_order() {
        let schema = Node::parse(
            r#"{"type":"object","properties":{
                "reason":{"type":"string","maxLength":5},
                "category":{"enum":["reply","fyi","spam"]},
                "score":{"type":"number"},
                "count":{"type":"integer"},
                "urgent":{"type":"boolean"},
                "tags":{"type":"array","items":{"type":"string"},"minItems":2,"maxItems":3},
                "kind":{"const":"triage"},
                "nothing":{"type":"null"}}}"#,
        )
        .unwrap();
        let mut steer = Scripted {
            fed: String::new(),
            pick: 1,
            words: vec!["because", "a", "b", "c"],
        };
        let text = follow(&schema, &mut steer).unwrap();
        assert_eq!(
            text,
            r#"{"reason": "becau", "category": "fyi", "score": 0.5, "count": 42, "urgent": false, "tags": ["a", "b"], "kind": "triage", "nothing": null}"#
        );
        // What the model was fed is what the answer says.
        assert_eq!(steer.fed, text);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let raw: serde_json::Value = serde_json::from_str(&schema.to_json()).unwrap();
        assert!(jsonschema::validator_for(&raw).unwrap().is_valid(&value));
    }

    #[test]
    fn arrays_stop_at_max_items_and_go_on_to_min_items() {
        let schema =
            Node::parse(r#"{"type":"array","items":{"type":"integer"},"maxItems":3}"#).unwrap();
        let mut keep_going = Scripted {
            fed: String::new(),
            pick: 0,
            words: vec![],
        };
        assert_eq!(follow(&schema, &mut keep_going).unwrap(), "[42, 42, 42]");
        let none =
            Node::parse(r#"{"type":"array","items":{"type":"integer"},"maxItems":0}"#).unwrap();
        assert_eq!(follow(&none, &mut keep_going).unwrap(), "[]");
    }

    #[test]
    fn schemas_beyond_the_subset_are_refused_with_the_reason() {
        for (schema, why) in [
            (r#"{"anyOf":[{"type":"string"}]}"#, "it uses `anyOf`"),
            (
                r#"{"type":["string","null"]}"#,
                "a `type` lists several types",
            ),
            (r#"{"type":"array"}"#, "an array has no `items` schema"),
            (
                r##"{"type":"object","properties":{"a":{"$ref":"#/x"}}}"##,
                "it uses `$ref`",
            ),
            (r#"{"description":"x"}"#, "a part of it has no `type`"),
            (
                r#"{"type":"array","items":{"type":"string"},"minItems":3,"maxItems":1}"#,
                "minItems is above",
            ),
        ] {
            let node = Node::parse(schema).unwrap();
            let mut steer = Scripted {
                fed: String::new(),
                pick: 0,
                words: vec!["x"; 4],
            };
            let e = follow(&node, &mut steer).unwrap_err();
            assert!(e.contains(why), "{schema}: {e}");
        }
        assert!(unsupported(&Node::parse(r#"{"enum":[1,"a",null]}"#).unwrap()).is_none());
    }
}
