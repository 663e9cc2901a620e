//! Reading and writing DynamoDB attribute maps.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::Error;

pub type Item = HashMap<String, AttributeValue>;
/// The primary key attributes of an item.
pub type Key = HashMap<String, AttributeValue>;

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Typed reads from an item; a missing or mistyped attribute is a store
/// invariant broken, reported as an internal error naming the attribute.
pub struct Reader<'a> {
    item: &'a Item,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(item: &'a Item, what: &'static str) -> Self {
        Self { item, what }
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<&'a str>, Error> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(_) => Err(self.broken(name, "is not a string")),
        }
    }

    pub fn str(&self, name: &str) -> Result<&'a str, Error> {
        self.opt_str(name)?.ok_or_else(|| self.broken(name, "is missing"))
    }

    pub fn opt_num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Error> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| self.broken(name, "is out of range")),
            Some(_) => Err(self.broken(name, "is not a number")),
        }
    }

    pub fn num<T: std::str::FromStr>(&self, name: &str) -> Result<T, Error> {
        self.opt_num(name)?.ok_or_else(|| self.broken(name, "is missing"))
    }

    pub fn blob(&self, name: &str) -> Result<&'a [u8], Error> {
        match self.item.get(name) {
            Some(AttributeValue::B(v)) => Ok(v.as_ref()),
            None | Some(AttributeValue::Null(_)) => Err(self.broken(name, "is missing")),
            Some(_) => Err(self.broken(name, "is not binary")),
        }
    }

    /// Parses a string attribute with a domain parser.
    pub fn parsed<T>(&self, name: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, Error> {
        parse(self.str(name)?).ok_or_else(|| self.broken(name, "is malformed"))
    }

    pub fn opt_parsed<T>(&self, name: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, Error> {
        match self.opt_str(name)? {
            None => Ok(None),
            Some(v) => parse(v).map(Some).ok_or_else(|| self.broken(name, "is malformed")),
        }
    }

    pub fn broken(&self, name: &str, why: &str) -> Error {
        Error::invariant(self.what, format!("stored attribute {name} {why}"))
    }
}
