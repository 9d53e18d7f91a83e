//! Placeholders for the values an earlier round found bad or missing.

use serde::de::{self, DeserializeSeed, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

use super::round::{DeError, Seg};
use crate::core::config::TAGGED;

/// The placeholder for a value an earlier round found bad or missing: whatever the type asks
/// for, the plainest value of it (0, "", false, none, empty, the first variant, a struct of
/// placeholders). Only ever read while looking for further errors: a job with errors is never
/// built, and an error inside a placeholder ends the search (`Fixes::covers`).
pub(super) struct Poison<'p>(pub(super) &'p [Seg]);

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
