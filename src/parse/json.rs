//! JSON objects: a visitor that decodes only the configured key, value and time fields and
//! skips everything else without allocating.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::{Found, ParseError, Parser, ParserConfig};
use crate::core::Record;
use crate::core::time::{self, TimeError};

impl Parser {
    pub(super) fn parse_json(
        &mut self,
        text: &str,
        default_key: &str,
    ) -> Result<Record, ParseError> {
        let mut found = Found::new(self.cfg.values.len());
        let seed = ObjectSeed {
            cfg: &self.cfg,
            found: &mut found,
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let res = seed.deserialize(&mut de).and_then(|()| de.end());
        if let Err(e) = res {
            if let Some(err) = found.error.take() {
                return Err(err);
            }
            if found.not_object {
                return Err(ParseError::NotAnObject);
            }
            // Python's json.dumps writes NaN and Infinity as bare tokens, which are not JSON.
            if text.contains("NaN") || text.contains("Infinity") {
                let field = found.last_key.as_deref().unwrap_or("(unnamed)");
                return Err(ParseError::NonFinite(field.into()));
            }
            return Err(ParseError::MalformedJson(e.to_string()));
        }
        self.finish(found, default_key)
    }
}

struct ObjectSeed<'a, 'de> {
    cfg: &'a ParserConfig,
    found: &'a mut Found<'de>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn fail<E: serde::de::Error>(found: &mut Found<'_>, err: ParseError) -> E {
    let msg = err.to_string();
    found.error = Some(err);
    E::custom(msg)
}

impl<'de> Visitor<'de> for ObjectSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            // Kept for the error message when a value is a bare `NaN` token, which fails
            // inside the JSON reader before any visitor sees it. Borrowed: no allocation.
            self.found.last_key = Some(key.clone());
            let name = key.as_ref();
            if self.cfg.key.as_deref() == Some(name) {
                match map.next_value::<KeyScalar<'de>>()? {
                    KeyScalar::Str(s) => self.found.key = Some(s),
                    KeyScalar::Int(i) => self.found.key = Some(i.to_string().into()),
                    KeyScalar::UInt(i) => self.found.key = Some(i.to_string().into()),
                    KeyScalar::Null => {}
                    _ => {
                        return Err(fail(
                            self.found,
                            ParseError::WrongType(name.into(), "a string or an integer"),
                        ));
                    }
                }
            } else if let Some(i) = self.cfg.values.iter().position(|v| v == name) {
                let v = match map.next_value::<Scalar>()? {
                    Scalar::Float(v) => Some(v),
                    Scalar::Int(v) => Some(v as f64),
                    Scalar::UInt(v) => Some(v as f64),
                    Scalar::Null => None,
                    Scalar::Str(s) => match s.trim().parse::<f64>() {
                        Ok(v) => Some(v),
                        Err(_) => {
                            return Err(fail(
                                self.found,
                                ParseError::WrongType(name.into(), "a number"),
                            ));
                        }
                    },
                    Scalar::Other => {
                        return Err(fail(
                            self.found,
                            ParseError::WrongType(name.into(), "a number"),
                        ));
                    }
                };
                self.found.values[i] = v;
            } else if self.cfg.time.as_deref() == Some(name) {
                let unit = self.cfg.time_unit;
                let out_of_range = TimeError::NumberOutOfRange(unit.as_str());
                let t = match map.next_value::<Scalar>()? {
                    Scalar::Str(s) => time::parse_time(&s, unit),
                    Scalar::Int(v) => unit.millis_from_int(v).ok_or(out_of_range),
                    Scalar::UInt(v) => i64::try_from(v)
                        .ok()
                        .and_then(|v| unit.millis_from_int(v))
                        .ok_or(out_of_range),
                    Scalar::Float(v) => unit.millis_from_float(v).ok_or(out_of_range),
                    Scalar::Null | Scalar::Other => Err(TimeError::NotTextOrNumber),
                };
                match t {
                    Ok(t) => self.found.time = Some(t),
                    Err(e) => return Err(fail(self.found, ParseError::BadTime(name.into(), e))),
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.found.not_object = true;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Err(serde::de::Error::custom("not an object"))
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.found.not_object = true;
        Err(E::custom("not an object"))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.visit_str("")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_str("")
    }
}

/// A key value: a string borrowed from the input when possible, or an integer.
enum KeyScalar<'de> {
    Str(Cow<'de, str>),
    Int(i64),
    UInt(u64),
    Null,
    Other,
}

impl<'de> Deserialize<'de> for KeyScalar<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyScalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::UInt(v))
            }
            fn visit_unit<E>(self) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Null)
            }
            fn visit_f64<E>(self, _: f64) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<KeyScalar<'de>, E> {
                Ok(KeyScalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<KeyScalar<'de>, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KeyScalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<KeyScalar<'de>, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KeyScalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON scalar, or a marker for anything else.
enum Scalar {
    Str(String),
    Int(i64),
    UInt(u64),
    Float(f64),
    Null,
    Other,
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}
