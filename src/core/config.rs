//! What every component's configuration shares: the error type that names a field, a line
//! and a column; how a record's key, values and time are found; and [`tagged!`], the
//! `Deserialize` of the `type`-tagged enums (sources, operators, sinks, enrich origins).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, VariantAccess, Visitor};

use super::time::TimeUnit;

/// One configuration problem, naming the field it concerns. Deprecation warnings of the job
/// loader have the same shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field (`source.path`, `operators[1].m`), empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// 1-based line in the job file, when known.
    pub line: Option<usize>,
    /// 1-based column (in characters) in the job file, when known.
    pub column: Option<usize>,
}

impl ConfigError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line}, column {column}: ")?,
            (Some(line), None) => write!(f, "line {line}: ")?,
            _ => {}
        }
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.field, self.message)
        }
    }
}

/// The struct name a tagged enum's `Deserialize` asks its deserializer for. The job loader's
/// deserializer (in `crate::config`), which tracks field paths and positions, answers it with
/// the table as an enum: the variant named by the tag field, the content the rest of the
/// table, so an error inside keeps its exact path and position. Any other deserializer
/// (`toml::from_str` in tests, say) takes it for a plain struct and hands over a map, which is
/// buffered: the value is the same, only positions are lost.
pub const TAGGED: &str = "$osprey::tagged";

/// An enum selected by a tag field inside its own table (`type = "file"`), each variant's
/// struct taking the rest of the table. Implement it with `crate::core::config::tagged!`.
pub trait Tagged: Sized {
    /// The tag field, as a one-element list (`&["type"]`).
    const TAG: &'static [&'static str];

    /// The enum's externally tagged `Deserialize`, derived with `#[serde(remote = "Self")]`.
    fn from_enum<'de, D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

/// `Deserialize` of a [`Tagged`] enum (see [`TAGGED`]).
pub fn deserialize_tagged<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: de::Deserializer<'de>,
    T: Tagged,
{
    d.deserialize_struct(TAGGED, T::TAG, TaggedVisitor(PhantomData))
}

/// Implements `Deserialize` for an enum tagged by a field inside its table, instead of serde's
/// `#[serde(tag = "…")]`: serde buffers such a table before choosing the variant, which loses
/// the field paths and positions of errors inside it (and, serde-rs/serde#2123, sometimes
/// `deny_unknown_fields`). The enum derives its externally tagged form, which this wraps:
///
/// ```ignore
/// #[derive(Debug, Clone, Deserialize)]
/// #[serde(remote = "Self", rename_all = "snake_case")]
/// pub enum SinkConfig { Stdout(StdoutSinkConfig), File(FileSinkConfig) }
/// crate::core::config::tagged!(SinkConfig, "type");
/// ```
///
/// Variants are newtypes of a struct with `#[serde(deny_unknown_fields)]`, units (`type =
/// "none"`: any other field is unknown) or struct variants (put `deny_unknown_fields` on the
/// enum then).
macro_rules! tagged {
    ($ty:ident, $tag:literal) => {
        impl $crate::core::config::Tagged for $ty {
            const TAG: &'static [&'static str] = &[$tag];

            fn from_enum<'de, D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // The inherent function `#[serde(remote = "Self")]` generates.
                $ty::deserialize(d)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::core::config::deserialize_tagged(d)
            }
        }
    };
}
pub(crate) use tagged;

struct TaggedVisitor<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a table with a `{}` field", T::TAG[0])
    }

    /// The job loader's path: the table arrives as an enum.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<T, A::Error> {
        T::from_enum(de::value::EnumAccessDeserializer::new(data))
    }

    /// Any other deserializer: buffer the table, then choose the variant.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let tag = T::TAG[0];
        let mut variant = None;
        let mut rest = toml::Table::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == tag {
                variant = Some(map.next_value::<String>()?);
            } else {
                let value = map.next_value::<toml::Value>()?;
                rest.insert(key, value);
            }
        }
        let variant = variant.ok_or_else(|| de::Error::missing_field(tag))?;
        T::from_enum(Buffered {
            variant,
            rest,
            error: PhantomData::<A::Error>,
        })
    }
}

/// A buffered tagged table, presented as an externally tagged enum.
struct Buffered<E> {
    variant: String,
    rest: toml::Table,
    error: PhantomData<E>,
}

impl<'de, E: de::Error> de::Deserializer<'de> for Buffered<E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de, E: de::Error> EnumAccess<'de> for Buffered<E> {
    type Error = E;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), E> {
        let name = de::value::StrDeserializer::<E>::new(&self.variant);
        let value = seed.deserialize(name)?;
        Ok((value, self))
    }
}

impl<'de, E: de::Error> VariantAccess<'de> for Buffered<E> {
    type Error = E;

    fn unit_variant(self) -> Result<(), E> {
        match self.rest.keys().next() {
            Some(key) => Err(E::unknown_field(key, &[])),
            None => Ok(()),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, E> {
        seed.deserialize(toml::Value::Table(self.rest))
            .map_err(|e| E::custom(e.message()))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, E> {
        Err(E::custom("a tagged table cannot hold a tuple variant"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        de::Deserializer::deserialize_struct(toml::Value::Table(self.rest), "", fields, visitor)
            .map_err(|e| E::custom(e.message()))
    }
}

/// How a record's key, values and event time are found.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Field holding the partitioning key (string or integer). Absent: every record of a
    /// source shares one key (the file's stem for files, `stdin`, or the generator's name).
    pub key: Option<String>,
    /// Numeric fields handed to operators, in this order.
    #[serde(default)]
    pub values: Vec<String>,
    /// Event-time field: RFC 3339 / ISO 8601 text (`2024-01-01T00:00:00Z`, an offset or none
    /// for UTC, a space instead of `T`, a date alone) or an epoch number in `time_unit`.
    /// Impossible dates (February 31) are dead-lettered as `bad_time`.
    pub time: Option<String>,
    /// Unit of a numeric `time` (a JSON number, or digits as text and in CSV): `ms` (default),
    /// `s`, `us` or `ns`. Needs `time`.
    pub time_unit: Option<TimeUnit>,
    /// A value field that is absent, null or not finite: `dead_letter` the record (default), or
    /// `pass` it on as NaN for the operators' own missing-value policy (`discord`'s
    /// `nan_policy`; `stats` and `rcf` dead-letter such records themselves).
    #[serde(default)]
    pub missing: MissingPolicy,
}

impl RecordConfig {
    /// The unit of numeric event times (default milliseconds).
    pub fn time_unit(&self) -> TimeUnit {
        self.time_unit.unwrap_or_default()
    }

    /// Checks what serde cannot: `time_unit` only means something with `time`.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.time_unit.is_some() && self.time.is_none() {
            errors.push(ConfigError::new(
                "record.time_unit",
                "is set but record.time names no event-time field",
            ));
        }
        errors
    }
}

/// See [`RecordConfig::missing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingPolicy {
    /// Dead-letter the record at the source.
    #[default]
    DeadLetter,
    /// Hand it on with the value as NaN.
    Pass,
}
