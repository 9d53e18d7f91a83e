//! A serde deserializer over the job file's spanned TOML tree (`toml::de::DeTable`).
//!
//! It does what `toml`'s own deserializer does, plus three things the loader needs:
//!
//! - every error carries the exact field path (`operators[1].trees`) and byte span of the
//!   node it arose at, set by the innermost node it passed through;
//! - tagged tables ([`TAGGED`], see `crate::core::config::tagged!`) are handed over as enums,
//!   so the variant's struct is deserialized from the table itself, never from a buffer;
//! - the fixes of earlier rounds (`round::Fixes`) apply: an unknown key is skipped, a bad value reads as a
//!   placeholder (`poison`), a missing field reads as a placeholder. That lets
//!   `collect` find the next error with a new round instead of stopping at the first.
//!
//! Leaves (strings, numbers, booleans, datetimes) are delegated to `toml`'s deserializer, so
//! their conversions and messages are exactly `toml`'s.

use std::ops::Range;

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::deprecated;
use super::poison::Poison;
use super::round::{Cx, DeError, Deprecated, Path, Seg, child};
use crate::core::config::TAGGED;

/// A node of the tree at a path.
pub(super) struct NodeDe<'a, 'i> {
    value: &'a Spanned<DeValue<'i>>,
    path: Path,
    cx: &'a Cx,
    /// A tagged table's tag key, which the variant's struct does not see.
    skip: Option<&'static str>,
}

impl<'a, 'i> NodeDe<'a, 'i> {
    /// The whole document.
    pub(super) fn root(value: &'a Spanned<DeValue<'i>>, cx: &'a Cx) -> Self {
        NodeDe {
            value,
            path: Vec::new(),
            cx,
            skip: None,
        }
    }

    fn span(&self) -> Option<Range<usize>> {
        Some(self.value.span())
    }

    /// Hands a leaf to `toml`'s deserializer.
    fn leaf<T>(
        self,
        f: impl FnOnce(ValueDeserializer<'i>) -> Result<T, toml::de::Error>,
    ) -> Result<T, DeError> {
        let span = self.span();
        f(ValueDeserializer::from(self.value.clone()))
            .map_err(|e| DeError::from_toml(e).at(&self.path, span))
    }

    fn is_container(&self) -> bool {
        matches!(self.value.get_ref(), DeValue::Table(_) | DeValue::Array(_))
    }

    fn visit_table<V: Visitor<'i>>(
        self,
        within: Option<&'static str>,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let span = self.span();
        let DeValue::Table(table) = self.value.get_ref() else {
            return self.deserialize_any_inner(visitor);
        };
        let added: Vec<String> = self
            .cx
            .fixes
            .added
            .iter()
            .filter_map(|p| match p.split_last() {
                Some((Seg::Key(k), parent)) if parent == self.path.as_slice() => Some(k.clone()),
                _ => None,
            })
            .collect();
        let access = TableAccess {
            entries: table.iter(),
            added: added.into_iter(),
            pending: None,
            path: &self.path,
            cx: self.cx,
            skip: self.skip,
            within,
        };
        visitor
            .visit_map(access)
            .map_err(|e| e.at(&self.path, span))
    }

    fn deserialize_any_inner<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value.get_ref() {
            DeValue::Table(_) => self.visit_table(None, visitor),
            DeValue::Array(items) => {
                let span = self.span();
                let access = ArrayAccess {
                    items: items.iter().enumerate(),
                    path: &self.path,
                    cx: self.cx,
                };
                visitor
                    .visit_seq(access)
                    .map_err(|e| e.at(&self.path, span))
            }
            _ => self.leaf(|d| de::Deserializer::deserialize_any(d, visitor)),
        }
    }
}

/// Leaves go to `toml`; tables and arrays are visited as maps and sequences.
macro_rules! forward_leaf {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
            if self.is_container() {
                self.deserialize_any_inner(visitor)
            } else {
                self.leaf(|d| de::Deserializer::$method(d, visitor))
            }
        }
    )*};
}

impl<'a, 'i> de::Deserializer<'i> for NodeDe<'a, 'i> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any_inner(visitor)
    }

    forward_leaf! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier deserialize_seq deserialize_map
    }

    // A present value is `Some`: absence is the only `None`.
    fn deserialize_option<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (path, span) = (self.path.clone(), self.span());
        visitor.visit_some(self).map_err(|e| e.at(&path, span))
    }

    fn deserialize_newtype_struct<V: Visitor<'i>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let (path, span) = (self.path.clone(), self.span());
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.at(&path, span))
    }

    fn deserialize_unit_struct<V: Visitor<'i>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_tuple<V: Visitor<'i>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'i>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'i>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let is_table = matches!(self.value.get_ref(), DeValue::Table(_));
        if name.starts_with("$__") {
            // `toml::Spanned` and datetimes: `toml`'s private protocols.
            return self.leaf(|d| de::Deserializer::deserialize_struct(d, name, fields, visitor));
        }
        if !is_table {
            return if self.is_container() {
                self.deserialize_any_inner(visitor)
            } else {
                self.leaf(|d| de::Deserializer::deserialize_struct(d, name, fields, visitor))
            };
        }
        if name == TAGGED {
            let (path, span) = (self.path.clone(), self.span());
            let tag = fields.first().copied().unwrap_or("type");
            let access = TaggedAccess { node: self, tag };
            return visitor.visit_enum(access).map_err(|e| e.at(&path, span));
        }
        self.visit_table(Some(name), visitor)
    }

    fn deserialize_enum<V: Visitor<'i>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Unit variants from strings (`mode = "damp"`), and externally tagged tables.
        self.leaf(|d| de::Deserializer::deserialize_enum(d, name, variants, visitor))
    }

    fn deserialize_ignored_any<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

enum Pending<'a, 'i> {
    Node(&'a Spanned<DeValue<'i>>, Path),
    Poison(Path),
}

/// A table's entries, less the fixed-away keys, plus the placeholders of missing fields.
struct TableAccess<'a, 'i, I> {
    entries: I,
    added: std::vec::IntoIter<String>,
    pending: Option<Pending<'a, 'i>>,
    path: &'a [Seg],
    cx: &'a Cx,
    skip: Option<&'static str>,
    /// The struct being read (its serde name), for deprecated keys.
    within: Option<&'static str>,
}

impl<'a, 'i, I> MapAccess<'i> for TableAccess<'a, 'i, I>
where
    I: Iterator<
        Item = (
            &'a Spanned<toml::de::DeString<'i>>,
            &'a Spanned<DeValue<'i>>,
        ),
    >,
    'i: 'a,
{
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'i>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        for (key, value) in self.entries.by_ref() {
            let name: &str = key.get_ref();
            if self.skip == Some(name) {
                continue;
            }
            let path = child(self.path, Seg::Key(name.to_string()));
            if self.cx.fixes.removed.contains(&path) {
                continue;
            }
            if let Some(renamed) = self.within.and_then(|w| deprecated::find(w, name)) {
                self.cx.deprecated.borrow_mut().push(Deprecated {
                    path: path.clone(),
                    span: key.span(),
                    renamed,
                });
            }
            let k = seed
                .deserialize(de::value::StrDeserializer::<DeError>::new(name))
                .map_err(|e| e.at(&path, Some(key.span())))?;
            self.pending = Some(Pending::Node(value, path));
            return Ok(Some(k));
        }
        if let Some(name) = self.added.next() {
            let path = child(self.path, Seg::Key(name.clone()));
            let k = seed
                .deserialize(de::value::StringDeserializer::<DeError>::new(name))
                .map_err(|e| e.at(&path, None))?;
            self.pending = Some(Pending::Poison(path));
            return Ok(Some(k));
        }
        Ok(None)
    }

    fn next_value_seed<S: DeserializeSeed<'i>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        match self.pending.take() {
            Some(Pending::Node(value, path)) => node_value(seed, value, path, self.cx),
            Some(Pending::Poison(path)) => seed
                .deserialize(Poison(&path))
                .map_err(|e| e.at(&path, None)),
            None => Err(de::Error::custom("value requested before its key")),
        }
    }
}

/// Deserializes a child node, or its placeholder when an earlier round found it bad.
fn node_value<'i, S: DeserializeSeed<'i>>(
    seed: S,
    value: &Spanned<DeValue<'i>>,
    path: Path,
    cx: &Cx,
) -> Result<S::Value, DeError> {
    let span = Some(value.span());
    if cx.fixes.is_poisoned(&path) {
        return seed
            .deserialize(Poison(&path))
            .map_err(|e| e.at(&path, span));
    }
    let node = NodeDe {
        value,
        path: path.clone(),
        cx,
        skip: None,
    };
    // A custom `Deserialize` (a duration, say) reports its own errors without a position.
    seed.deserialize(node).map_err(|e| e.at(&path, span))
}

struct ArrayAccess<'a, I> {
    items: I,
    path: &'a [Seg],
    cx: &'a Cx,
}

impl<'a, 'i, I> SeqAccess<'i> for ArrayAccess<'a, I>
where
    I: Iterator<Item = (usize, &'a Spanned<DeValue<'i>>)>,
    'i: 'a,
{
    type Error = DeError;

    fn next_element_seed<S: DeserializeSeed<'i>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        match self.items.next() {
            Some((i, value)) => {
                node_value(seed, value, child(self.path, Seg::Index(i)), self.cx).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// A tagged table as an enum: the variant from the tag, the content from the other keys.
struct TaggedAccess<'a, 'i> {
    node: NodeDe<'a, 'i>,
    tag: &'static str,
}

enum TaggedVariant<'a, 'i> {
    Table(NodeDe<'a, 'i>),
    /// The tag was bad: the whole section reads as a placeholder, since which fields it may
    /// have depends on the tag.
    Poison(Path),
}

impl<'a, 'i> EnumAccess<'i> for TaggedAccess<'a, 'i> {
    type Error = DeError;
    type Variant = TaggedVariant<'a, 'i>;

    fn variant_seed<S: DeserializeSeed<'i>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), DeError> {
        let NodeDe {
            value, path, cx, ..
        } = self.node;
        let tag_path = child(&path, Seg::Key(self.tag.to_string()));
        let DeValue::Table(table) = value.get_ref() else {
            return Err(de::Error::custom("a tagged section must be a table"));
        };
        if cx.fixes.covers(&tag_path) {
            let v = seed
                .deserialize(Poison(&tag_path))
                .map_err(|e| e.at(&tag_path, None))?;
            return Ok((v, TaggedVariant::Poison(path)));
        }
        let Some((_, tag_value)) = table.iter().find(|(k, _)| k.get_ref() == self.tag) else {
            return Err(
                <DeError as de::Error>::missing_field(self.tag).at(&path, Some(value.span()))
            );
        };
        let tag = self.tag;
        let v = node_value(seed, tag_value, tag_path, cx).map_err(|mut e| {
            // "unknown variant `x`" is serde's wording; a user wrote a `type`.
            if let Some(rest) = e.message.strip_prefix("unknown variant ") {
                e.message = format!("unknown {tag} {rest}");
            }
            e
        })?;
        let node = NodeDe {
            value,
            path,
            cx,
            skip: Some(tag),
        };
        Ok((v, TaggedVariant::Table(node)))
    }
}

impl<'a, 'i> VariantAccess<'i> for TaggedVariant<'a, 'i> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        let TaggedVariant::Table(node) = self else {
            return Ok(());
        };
        // `type = "none"` takes no other field: any key is unknown.
        let DeValue::Table(table) = node.value.get_ref() else {
            return Ok(());
        };
        for (key, _) in table {
            let name: &str = key.get_ref();
            let path = child(&node.path, Seg::Key(name.to_string()));
            if node.skip != Some(name) && !node.cx.fixes.removed.contains(&path) {
                return Err(
                    <DeError as de::Error>::unknown_field(name, &[]).at(&path, Some(key.span()))
                );
            }
        }
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'i>>(self, seed: S) -> Result<S::Value, DeError> {
        match self {
            TaggedVariant::Table(node) => seed.deserialize(node),
            TaggedVariant::Poison(path) => seed
                .deserialize(Poison(&path))
                .map_err(|e| e.at(&path, None)),
        }
    }

    fn tuple_variant<V: Visitor<'i>>(self, _len: usize, _visitor: V) -> Result<V::Value, DeError> {
        Err(de::Error::custom(
            "a tagged table cannot hold a tuple variant",
        ))
    }

    fn struct_variant<V: Visitor<'i>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self {
            TaggedVariant::Table(node) => node.visit_table(None, visitor),
            TaggedVariant::Poison(path) => {
                de::Deserializer::deserialize_struct(Poison(&path), "", fields, visitor)
                    .map_err(|e| e.at(&path, None))
            }
        }
    }
}
