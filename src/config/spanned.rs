//! A serde deserializer over the job file's spanned TOML tree (`toml::de::DeTable`).
//!
//! It does what `toml`'s own deserializer does, plus three things the loader needs:
//!
//! - every error carries the exact field path (`operators[1].trees`) and byte span of the
//!   node it arose at, set by the innermost node it passed through;
//! - tagged tables ([`TAGGED`], see `crate::core::config::tagged!`) are handed over as enums,
//!   so the variant's struct is deserialized from the table itself, never from a buffer;
//! - [`Fixes`] from earlier rounds apply: an unknown key is skipped, a bad value reads as a
//!   placeholder (see [`Poison`]), a missing field reads as a placeholder. That lets
//!   `collect` find the next error with a new round instead of stopping at the first.
//!
//! Leaves (strings, numbers, booleans, datetimes) are delegated to `toml`'s deserializer, so
//! their conversions and messages are exactly `toml`'s.

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::deprecated::{self, Renamed};
use crate::core::config::TAGGED;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A field path from the root of the job file.
pub(super) type Path = Vec<Seg>;

/// `operators[1].trees`.
pub(super) fn join(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The inverse of [`join`] for the paths components report (`redis.url`, `operators[0].m`).
pub(super) fn split(path: &str) -> Path {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(n) = rest[1..end].parse() {
                out.push(Seg::Index(n));
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

fn child(path: &[Seg], seg: Seg) -> Path {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

/// What kind of problem an error is, which decides how the next round gets past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// A wrong type or value: read the node as a placeholder next time.
    Invalid,
    /// A key the struct does not have (the path ends with it): skip it next time.
    UnknownField,
    /// A required field is absent from the table at the path: supply a placeholder.
    MissingField(String),
}

/// A deserialization error with its position.
#[derive(Debug)]
pub(super) struct DeError {
    /// What is wrong (serde's or toml's wording).
    pub message: String,
    /// How to get past it.
    pub kind: Kind,
    /// The node it arose at; `None` until it leaves the innermost node.
    pub path: Option<Path>,
    /// Byte span of that node (a key's, for an unknown field).
    pub span: Option<Range<usize>>,
}

impl DeError {
    fn new(message: String, kind: Kind) -> Self {
        DeError {
            message,
            kind,
            path: None,
            span: None,
        }
    }

    fn from_toml(e: toml::de::Error) -> Self {
        DeError {
            span: e.span(),
            ..DeError::new(e.message().to_string(), Kind::Invalid)
        }
    }

    /// Places an error that has no position yet at `path` (the innermost node wins).
    fn at(mut self, path: &[Seg], span: Option<Range<usize>>) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_vec());
            if self.span.is_none() {
                self.span = span;
            }
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new(msg.to_string(), Kind::Invalid)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        // serde's own wording, from its default implementation.
        let message = <de::value::Error as de::Error>::unknown_field(field, expected);
        DeError::new(message.to_string(), Kind::UnknownField)
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(
            format!("missing field `{field}`"),
            Kind::MissingField(field.to_string()),
        )
    }
}

/// How earlier rounds got past the errors they found.
#[derive(Debug, Default)]
pub(super) struct Fixes {
    /// Unknown keys, skipped.
    removed: Vec<Path>,
    /// Bad values, read as placeholders.
    poisoned: Vec<Path>,
    /// Missing required fields, supplied as placeholders.
    added: Vec<Path>,
}

impl Fixes {
    /// Records a fix for an error of `kind` at `path`; false when it was already applied (the
    /// error came back, so another round would not get further).
    pub(super) fn apply(&mut self, kind: &Kind, path: &[Seg]) -> bool {
        let (list, path) = match kind {
            Kind::UnknownField => (&mut self.removed, path.to_vec()),
            Kind::Invalid => (&mut self.poisoned, path.to_vec()),
            Kind::MissingField(f) => (&mut self.added, child(path, Seg::Key(f.clone()))),
        };
        if list.contains(&path) {
            return false;
        }
        list.push(path);
        true
    }

    /// Whether `path` lies inside a placeholder: an error there is an artefact of the
    /// placeholder, not a problem of the job file.
    pub(super) fn covers(&self, path: &[Seg]) -> bool {
        self.poisoned
            .iter()
            .chain(&self.added)
            .any(|p| path.starts_with(p))
    }

    fn poisoned(&self, path: &[Seg]) -> bool {
        self.poisoned.iter().any(|p| p == path)
    }
}

/// A deprecated key found while deserializing.
#[derive(Debug, Clone)]
pub(super) struct Deprecated {
    /// Path of the key as written.
    pub path: Path,
    /// Span of the key.
    pub span: Range<usize>,
    /// The rename.
    pub renamed: &'static Renamed,
}

/// State shared by the nodes of one round.
#[derive(Debug, Default)]
pub(super) struct Cx {
    /// Fixes of the earlier rounds.
    pub fixes: Fixes,
    /// Deprecated keys seen in this round.
    pub deprecated: RefCell<Vec<Deprecated>>,
}

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
    if cx.fixes.poisoned(&path) {
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

/// The placeholder for a value an earlier round found bad or missing: whatever the type asks
/// for, the plainest value of it (0, "", false, none, empty, the first variant, a struct of
/// placeholders). Only ever read while looking for further errors: a job with errors is never
/// built, and an error inside a placeholder ends the search (`Fixes::covers`).
struct Poison<'p>(&'p [Seg]);

impl<'p, 'i> de::Deserializer<'i> for Poison<'p> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_u64(0)
    }
    fn deserialize_bool<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_bool(false)
    }
    fn deserialize_i64<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_i64(0)
    }
    fn deserialize_f64<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_f64(0.0)
    }
    fn deserialize_char<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_char('_')
    }
    fn deserialize_str<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str("")
    }
    fn deserialize_bytes<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_bytes(&[])
    }
    fn deserialize_option<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_none()
    }
    fn deserialize_unit<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'i>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }
    fn deserialize_string<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str("")
    }
    fn deserialize_byte_buf<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_bytes(&[])
    }
    fn deserialize_unit_struct<V: Visitor<'i>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
    fn deserialize_seq<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(PoisonSeq {
            path: self.0,
            left: 0,
        })
    }
    fn deserialize_tuple<V: Visitor<'i>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.0;
        visitor.visit_seq(PoisonSeq { path, left: len })
    }
    fn deserialize_tuple_struct<V: Visitor<'i>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_tuple(len, visitor)
    }
    fn deserialize_map<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(PoisonFields {
            path: self.0,
            fields: NO_FIELDS.iter(),
        })
    }
    fn deserialize_struct<V: Visitor<'i>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == TAGGED {
            return visitor.visit_enum(self);
        }
        visitor.visit_map(PoisonFields {
            path: self.0,
            fields: fields.iter(),
        })
    }
    fn deserialize_enum<V: Visitor<'i>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_enum(self)
    }
    // Variant identifiers accept an index: the first variant.
    fn deserialize_identifier<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_u64(0)
    }
    fn deserialize_ignored_any<V: Visitor<'i>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'i>>
        i8 i16 i32 i128 u8 u16 u32 u64 u128 f32
    }
}

impl<'p, 'i> EnumAccess<'i> for Poison<'p> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'i>>(self, seed: S) -> Result<(S::Value, Self), DeError> {
        Ok((seed.deserialize(Poison(self.0))?, self))
    }
}

impl<'p, 'i> VariantAccess<'i> for Poison<'p> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }
    fn newtype_variant_seed<S: DeserializeSeed<'i>>(self, seed: S) -> Result<S::Value, DeError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'i>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }
    fn struct_variant<V: Visitor<'i>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

struct PoisonSeq<'p> {
    path: &'p [Seg],
    left: usize,
}

impl<'p, 'i> SeqAccess<'i> for PoisonSeq<'p> {
    type Error = DeError;

    fn next_element_seed<S: DeserializeSeed<'i>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(Poison(self.path)).map(Some)
    }
}

const NO_FIELDS: &[&str] = &[];

/// Every declared field of a struct, each a placeholder.
struct PoisonFields<'p> {
    path: &'p [Seg],
    fields: std::slice::Iter<'static, &'static str>,
}

impl<'p, 'i> MapAccess<'i> for PoisonFields<'p> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'i>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.fields.next() {
            Some(f) => seed
                .deserialize(de::value::StrDeserializer::<DeError>::new(f))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'i>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        seed.deserialize(Poison(self.path))
    }
}
