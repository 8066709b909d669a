//! Kafka's JSON message definitions, parsed into what the generator needs.

use std::fmt;
use std::path::Path;

use serde_json::Value;

/// A version range; `max` is `i16::MAX` for an open range ("3+").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vr {
    pub min: i16,
    pub max: i16,
}

impl Vr {
    pub fn contains(self, v: i16) -> bool {
        v >= self.min && v <= self.max
    }

    /// `"none"` is `None`; otherwise "3+", "3-5" or "7".
    fn parse(s: &str) -> Result<Option<Self>, String> {
        let s = s.trim();
        if s == "none" {
            return Ok(None);
        }
        let num = |x: &str| {
            x.trim()
                .parse::<i16>()
                .map_err(|e| format!("bad version {s:?}: {e}"))
        };
        Ok(Some(if let Some(min) = s.strip_suffix('+') {
            Self {
                min: num(min)?,
                max: i16::MAX,
            }
        } else if let Some((a, b)) = s.split_once('-') {
            Self {
                min: num(a)?,
                max: num(b)?,
            }
        } else {
            let v = num(s)?;
            Self { min: v, max: v }
        }))
    }
}

impl fmt::Display for Vr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (a, i16::MAX) => write!(f, "{a}+"),
            (a, b) if a == b => write!(f, "{a}"),
            (a, b) => write!(f, "{a}-{b}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Int64,
    Float64,
    Uuid,
    String,
    Bytes,
    Records,
    Struct(String),
    Array(Box<Ty>),
}

impl Ty {
    fn parse(s: &str) -> Self {
        if let Some(elem) = s.strip_prefix("[]") {
            return Ty::Array(Box::new(Ty::parse(elem)));
        }
        match s {
            "bool" => Ty::Bool,
            "int8" => Ty::Int8,
            "int16" => Ty::Int16,
            "uint16" => Ty::Uint16,
            "int32" => Ty::Int32,
            "int64" => Ty::Int64,
            "float64" => Ty::Float64,
            "uuid" => Ty::Uuid,
            "string" => Ty::String,
            "bytes" => Ty::Bytes,
            "records" => Ty::Records,
            other => Ty::Struct(other.to_string()),
        }
    }

    /// The struct this type is or holds, if any.
    pub fn struct_name(&self) -> Option<&str> {
        match self {
            Ty::Struct(s) => Some(s),
            Ty::Array(e) => e.struct_name(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub versions: Option<Vr>,
    pub nullable: Option<Vr>,
    pub tagged: Option<Vr>,
    pub tag: Option<u32>,
    pub default: Option<String>,
    pub ignorable: bool,
    /// The field's own `flexibleVersions`, overriding the message's (`Some(None)` is "none").
    pub flexible_override: Option<Option<Vr>>,
    pub about: String,
    pub fields: Vec<Field>,
}

impl Field {
    /// Where the field is written in the body rather than in the tagged section.
    pub fn regular_range(&self) -> Option<Vr> {
        if self.tag.is_some() {
            None
        } else {
            self.versions
        }
    }

    pub fn regular_in(&self, v: i16) -> bool {
        self.regular_range().is_some_and(|r| r.contains(v))
    }
}

#[derive(Debug, Clone)]
pub struct StructSpec {
    pub name: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub struct Schema {
    pub name: String,
    pub kind: String,
    pub api_key: Option<i16>,
    pub valid: Vr,
    pub flexible: Option<Vr>,
    pub listeners: Vec<String>,
    /// The highest version is still being designed and may change incompatibly.
    pub latest_unstable: bool,
    pub fields: Vec<Field>,
    pub common_structs: Vec<StructSpec>,
}

/// Removes `//` comments that are not inside strings.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_str = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_str {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_str = false,
                _ => {}
            }
        } else if c == '/' && chars.peek() == Some(&'/') {
            for n in chars.by_ref() {
                if n == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            if c == '"' {
                in_str = true;
            }
            out.push(c);
        }
    }
    out
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    match v.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn range_of(v: &Value, key: &str, ctx: &str) -> Result<Option<Vr>, String> {
    match str_of(v, key) {
        None => Ok(None),
        Some(s) => Vr::parse(&s).map_err(|e| format!("{ctx}.{key}: {e}")),
    }
}

fn parse_fields(v: Option<&Value>, ctx: &str) -> Result<Vec<Field>, String> {
    let Some(Value::Array(items)) = v else {
        return Ok(Vec::new());
    };
    items.iter().map(|f| parse_field(f, ctx)).collect()
}

fn parse_field(f: &Value, ctx: &str) -> Result<Field, String> {
    let name = str_of(f, "name").ok_or_else(|| format!("{ctx}: field without name"))?;
    let ctx = format!("{ctx}.{name}");
    let ty = Ty::parse(&str_of(f, "type").ok_or_else(|| format!("{ctx}: no type"))?);
    let versions = range_of(f, "versions", &ctx)?;
    let tagged = range_of(f, "taggedVersions", &ctx)?;
    // Some schemas write the tag as a string ("0").
    let tag = str_of(f, "tag")
        .map(|t| {
            t.parse::<u32>()
                .map_err(|e| format!("{ctx}: bad tag {t:?}: {e}"))
        })
        .transpose()?;
    if tag.is_some() && tagged != versions {
        return Err(format!(
            "{ctx}: a field tagged in only some of its versions is not supported"
        ));
    }
    let flexible_override = match str_of(f, "flexibleVersions") {
        None => None,
        Some(s) => Some(Vr::parse(&s)?),
    };
    Ok(Field {
        ty,
        versions,
        nullable: range_of(f, "nullableVersions", &ctx)?,
        tagged,
        tag,
        default: str_of(f, "default"),
        ignorable: f.get("ignorable").and_then(Value::as_bool).unwrap_or(false),
        flexible_override,
        about: str_of(f, "about").unwrap_or_default(),
        fields: parse_fields(f.get("fields"), &ctx)?,
        name,
    })
}

fn parse_schema(text: &str, file: &str) -> Result<Schema, String> {
    let v: Value =
        serde_json::from_str(&strip_comments(text)).map_err(|e| format!("{file}: {e}"))?;
    let name = str_of(&v, "name").ok_or_else(|| format!("{file}: no name"))?;
    let valid =
        range_of(&v, "validVersions", &name)?.ok_or_else(|| format!("{file}: no validVersions"))?;
    let common_structs = match v.get("commonStructs") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|c| {
                let cname = str_of(c, "name")
                    .ok_or_else(|| format!("{file}: common struct without name"))?;
                Ok(StructSpec {
                    fields: parse_fields(c.get("fields"), &cname)?,
                    name: cname,
                })
            })
            .collect::<Result<_, String>>()?,
        _ => Vec::new(),
    };
    Ok(Schema {
        kind: str_of(&v, "type").unwrap_or_default(),
        api_key: str_of(&v, "apiKey")
            .map(|k| k.parse().map_err(|e| format!("{file}: apiKey: {e}")))
            .transpose()?,
        flexible: range_of(&v, "flexibleVersions", &name)?,
        listeners: match v.get("listeners") {
            Some(Value::Array(l)) => l
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        },
        latest_unstable: v
            .get("latestVersionUnstable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        fields: parse_fields(v.get("fields"), &name)?,
        common_structs,
        valid,
        name,
    })
}

/// Loads every `*.json` schema in `dir`, sorted by file name for a stable output.
pub fn load_dir(dir: &Path) -> Result<Vec<Schema>, String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            parse_schema(&text, &p.display().to_string())
        })
        .collect()
}
