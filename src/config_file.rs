//! The configuration file: TOML, every command-line option under its long name
//! (`iggy-connections = 8`). Precedence is command line, then environment, then the file,
//! then the built-in default: the file fills in only what neither of the first two set.
//!
//! It works on clap's own parse, so a value from the file is checked exactly as the same
//! value on the command line would be, and an error names the key.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// The option that names the file; it cannot appear in the file.
pub(crate) const CONFIG: &str = "config";

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    /// It could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not TOML.
    #[error("the configuration file {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A key names no option, or its value has the wrong shape.
    #[error("the configuration file {path}: key `{key}`: {reason}")]
    Key {
        /// The file.
        path: String,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// The command line to parse: `args` with, in front, `--key value` for each key of the
/// file at `path` whose option neither the command line nor the environment set (as
/// `first` parsed them). Unknown keys, `config` itself, and tables or arrays are refused.
///
/// # Errors
/// When the file cannot be read, is not TOML, or has a key that is not an option.
pub(crate) fn merge(
    command: &Command,
    first: &ArgMatches,
    path: &Path,
    args: Vec<OsString>,
) -> Result<Vec<OsString>, FileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: shown.clone(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| FileError::Syntax {
            path: shown.clone(),
            message: e.message().to_owned(),
        })?;
    let key_error = |key: &str, reason: String| FileError::Key {
        path: shown.clone(),
        key: key.to_owned(),
        reason,
    };
    let mut from_file = Vec::new();
    for (key, value) in &table {
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
        else {
            return Err(key_error(key, "no such option (see --help)".into()));
        };
        let id = arg.get_id().as_str();
        if id == CONFIG {
            return Err(key_error(
                key,
                "a configuration file cannot name another".into(),
            ));
        }
        if !arg.get_action().takes_values() {
            return Err(key_error(
                key,
                "not a setting: give it on the command line".into(),
            ));
        }
        let value = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            other => {
                return Err(key_error(
                    key,
                    format!(
                        "expected a string, a number or a boolean, found {}",
                        other.type_str()
                    ),
                ))
            }
        };
        if matches!(
            first.value_source(id),
            Some(ValueSource::DefaultValue) | None
        ) {
            from_file.push(OsString::from(format!("--{key}")));
            from_file.push(OsString::from(value));
        }
    }
    let mut merged = Vec::with_capacity(args.len() + from_file.len());
    let mut args = args.into_iter();
    merged.extend(args.next());
    merged.extend(from_file);
    merged.extend(args);
    Ok(merged)
}

/// The effective configuration as a TOML file: every option under its long name (the
/// configuration file's own name excepted), secrets redacted.
#[must_use]
pub(crate) fn print(command: &Command, matches: &ArgMatches) -> String {
    let mut out = String::from("# The effective configuration (--print-config).\n");
    for arg in command.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if id == CONFIG || !arg.get_action().takes_values() {
            continue;
        }
        let Some(value) = matches.get_raw(id).and_then(|mut v| v.next()) else {
            out.push_str(&format!("# {long} is not set\n"));
            continue;
        };
        let value = value.to_string_lossy();
        let value = if arg.is_hide_env_values_set() {
            redact(&value)
        } else {
            value.into_owned()
        };
        let rendered = match value.as_str() {
            "true" | "false" => value,
            v if v.parse::<i64>().is_ok() => value,
            _ => toml::Value::String(value).to_string(),
        };
        out.push_str(&format!("{long} = {rendered}\n"));
    }
    out
}

/// A URL with its credentials hidden.
fn redact(value: &str) -> String {
    match value.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => value.to_owned(),
        },
        None => "***".to_owned(),
    }
}
