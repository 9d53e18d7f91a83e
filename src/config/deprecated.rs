//! Old spellings of renamed fields. Each old name stays a `#[serde(alias)]` of its field (or,
//! for `stats.field`, a field of its own), so old jobs keep loading; the loader finds them
//! here by the struct they are read into and warns with the field, its position and the new
//! name.

/// One renamed field.
#[derive(Debug)]
pub(super) struct Renamed {
    /// The struct's serde name (its Rust name).
    pub within: &'static str,
    /// The old key.
    pub old: &'static str,
    /// The key to write instead.
    pub new: &'static str,
    /// What else changed, if anything.
    pub note: &'static str,
}

/// Every renamed field (issue 13: one vocabulary for what operators read and write).
pub(super) const RENAMED: &[Renamed] = &[
    Renamed {
        within: "DiscordConfig",
        old: "value",
        new: "input",
        note: "",
    },
    Renamed {
        within: "RcfConfig",
        old: "fields",
        new: "inputs",
        note: "",
    },
    Renamed {
        within: "StatsConfig",
        old: "field",
        new: "input",
        note: " (`field` is an index into record.values, `input` the value's name)",
    },
    Renamed {
        within: "EnrichConfig",
        old: "field",
        new: "output",
        note: "",
    },
    Renamed {
        within: "EnrichConfig",
        old: "error_field",
        new: "error_output",
        note: "",
    },
];

/// The rename of key `old` in struct `within`, if it is an old spelling.
pub(super) fn find(within: &str, old: &str) -> Option<&'static Renamed> {
    RENAMED.iter().find(|r| r.within == within && r.old == old)
}

impl Renamed {
    /// The warning's text.
    pub(super) fn message(&self) -> String {
        format!(
            "`{}` is deprecated: use `{}`{}",
            self.old, self.new, self.note
        )
    }
}
