//! Event patterns, the filter syntax Lambda event source mappings
//! (`FilterCriteria`) and EventBridge rules share: a JSON object whose
//! leaves are lists of rules, a field matching when any of its rules does.
//! The local stream feeder filters records with it as Lambda does.
//!
//! Supported: literal values (strings, numbers compared as numbers,
//! booleans, null), `prefix`, `suffix`, `equals-ignore-case`,
//! `anything-but` (a value, a list, or a `prefix`), `numeric` and `exists`.
//! Anything else (`wildcard`, `cidr`, `$or`) is refused when the pattern is
//! checked, not silently taken as a match.

use anyhow::{anyhow, bail, Result};
use serde_json::{Map, Value};

/// Whether `event` matches `pattern`.
pub fn matches(pattern: &Value, event: &Value) -> Result<bool> {
    let pattern = pattern.as_object().ok_or_else(|| anyhow!("a pattern is a JSON object, not {pattern}"))?;
    object_matches(pattern, event.as_object())
}

/// Whether `event` matches any of `patterns`; with none, every event does.
pub fn matches_any(patterns: &[Value], event: &Value) -> Result<bool> {
    if patterns.is_empty() {
        return Ok(true);
    }
    for p in patterns {
        if matches(p, event)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Refuses what [`matches()`] cannot evaluate, by evaluating it once against
/// an empty event.
pub fn check(pattern: &Value) -> Result<()> {
    matches(pattern, &Value::Object(Map::new())).map(|_| ())
}

fn object_matches(pattern: &Map<String, Value>, event: Option<&Map<String, Value>>) -> Result<bool> {
    let mut all = true;
    for (key, rule) in pattern {
        let field = event.and_then(|e| e.get(key));
        let ok = match rule {
            Value::Object(inner) => object_matches(inner, field.and_then(Value::as_object))?,
            Value::Array(rules) => field_matches(rules, field)?,
            other => bail!("the pattern's {key} is {other}: a field takes a list of rules or an object"),
        };
        // Every rule is evaluated, so an unsupported one is refused
        // whatever the event.
        all &= ok;
    }
    Ok(all)
}

fn field_matches(rules: &[Value], field: Option<&Value>) -> Result<bool> {
    let values: Vec<&Value> = match field {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
    };
    let mut any = false;
    for rule in rules {
        let ok = match rule {
            Value::Object(op) if op.len() == 1 && op.contains_key("exists") => match &op["exists"] {
                Value::Bool(wanted) => field.is_some() == *wanted,
                other => bail!("exists takes true or false, not {other}"),
            },
            rule => {
                let mut hit = false;
                for v in &values {
                    hit |= rule_matches(rule, v)?;
                }
                // Evaluated against nothing, to refuse unsupported rules.
                if values.is_empty() {
                    rule_matches(rule, &Value::Null)?;
                }
                hit
            }
        };
        any |= ok;
    }
    Ok(any)
}

fn rule_matches(rule: &Value, v: &Value) -> Result<bool> {
    let Value::Object(op) = rule else { return Ok(literal_eq(rule, v)) };
    let (name, arg) = match op.iter().next() {
        Some((name, arg)) if op.len() == 1 => (name.as_str(), arg),
        _ => bail!("a rule object has one operator, not {rule}"),
    };
    let text = v.as_str();
    Ok(match name {
        "prefix" => {
            let p = arg.as_str().ok_or_else(|| anyhow!("prefix takes a string, not {arg}"))?;
            text.is_some_and(|t| t.starts_with(p))
        }
        "suffix" => {
            let p = arg.as_str().ok_or_else(|| anyhow!("suffix takes a string, not {arg}"))?;
            text.is_some_and(|t| t.ends_with(p))
        }
        "equals-ignore-case" => {
            let p = arg.as_str().ok_or_else(|| anyhow!("equals-ignore-case takes a string, not {arg}"))?;
            text.is_some_and(|t| t.to_lowercase() == p.to_lowercase())
        }
        "anything-but" => match arg {
            Value::Array(values) => !values.iter().any(|x| literal_eq(x, v)) && !v.is_null(),
            Value::Object(_) => !v.is_null() && !rule_matches(arg, v)?,
            scalar => !literal_eq(scalar, v) && !v.is_null(),
        },
        "numeric" => {
            let terms = arg.as_array().ok_or_else(|| anyhow!("numeric takes a list, not {arg}"))?;
            if terms.is_empty() || terms.len() % 2 != 0 {
                bail!("numeric takes operator and number pairs, not {arg}");
            }
            let mut ok = v.as_f64().is_some();
            for pair in terms.chunks(2) {
                let bound =
                    pair[1].as_f64().ok_or_else(|| anyhow!("numeric compares with numbers, not {}", pair[1]))?;
                let x = v.as_f64().unwrap_or(f64::NAN);
                ok &= match pair[0].as_str() {
                    Some("=") => x == bound,
                    Some("<") => x < bound,
                    Some("<=") => x <= bound,
                    Some(">") => x > bound,
                    Some(">=") => x >= bound,
                    _ => bail!("numeric operator {} is not one of = < <= > >=", pair[0]),
                };
            }
            ok
        }
        other => bail!("the filter operator {other} is not supported locally"),
    })
}

/// Equality as patterns see it: numbers by value (`1` matches `1.0`).
fn literal_eq(rule: &Value, v: &Value) -> bool {
    match (rule, v) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(event_name: &str, kind: &str) -> Value {
        json!({
            "eventName": event_name,
            "dynamodb": {"Keys": {"pk": {"S": "EVENT#evt_1"}}, "NewImage": {"type": {"S": kind}, "n": {"N": "5"}}}
        })
    }

    #[test]
    fn the_publishers_filter_takes_inserted_events_only() {
        let p = json!({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"type": {"S": ["event"]}}}});
        check(&p).unwrap();
        assert!(matches(&p, &record("INSERT", "event")).unwrap());
        assert!(!matches(&p, &record("MODIFY", "event")).unwrap());
        assert!(!matches(&p, &record("INSERT", "session")).unwrap());
        // A REMOVE of a NEW_IMAGE stream has no new image at all.
        assert!(!matches(&p, &json!({"eventName": "REMOVE", "dynamodb": {"Keys": {}}})).unwrap());
    }

    #[test]
    fn operators() {
        let r = record("INSERT", "event");
        let yes = |p: Value| assert!(matches(&p, &r).unwrap(), "{p}");
        let no = |p: Value| assert!(!matches(&p, &r).unwrap(), "{p}");
        yes(json!({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "EVENT#"}]}}}}));
        no(json!({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "SESSION#"}]}}}}));
        yes(json!({"dynamodb": {"Keys": {"pk": {"S": [{"suffix": "_1"}]}}}}));
        yes(json!({"eventName": [{"equals-ignore-case": "insert"}]}));
        yes(json!({"eventName": [{"anything-but": ["MODIFY", "REMOVE"]}]}));
        no(json!({"eventName": [{"anything-but": "INSERT"}]}));
        yes(json!({"dynamodb": {"NewImage": {"gone": [{"exists": false}]}}}));
        no(json!({"dynamodb": {"NewImage": {"type": [{"exists": false}]}}}));
        yes(json!({"dynamodb": {"NewImage": {"type": [{"exists": true}]}}}));
        yes(json!({"eventName": ["MODIFY", "INSERT"]}));
        // Numbers compare as numbers, strings as strings: N is a string.
        no(json!({"dynamodb": {"NewImage": {"n": {"N": [{"numeric": [">", 1]}]}}}}));
        assert!(matches(&json!({"n": [{"numeric": [">", 1, "<=", 5]}]}), &json!({"n": 5})).unwrap());
        assert!(matches(&json!({"n": [5]}), &json!({"n": 5.0})).unwrap());
        assert!(!matches(&json!({"n": [{"numeric": [">", 5]}]}), &json!({"n": 5})).unwrap());
        // Any element of an array field.
        assert!(matches(&json!({"tags": ["b"]}), &json!({"tags": ["a", "b"]})).unwrap());
    }

    #[test]
    fn unsupported_rules_are_refused_whatever_the_event() {
        for p in [
            json!({"x": [{"wildcard": "a*"}]}),
            json!({"x": [{"cidr": "10.0.0.0/8"}]}),
            json!({"x": "INSERT"}),
            json!({"x": [{"numeric": [">"]}]}),
        ] {
            assert!(check(&p).is_err(), "{p}");
            assert!(matches(&p, &json!({"x": "a"})).is_err(), "{p}");
        }
        assert!(matches_any(&[], &json!({})).unwrap(), "no filter passes everything");
    }
}
