//! The plugin manifest, `weir-plugin.toml`, and its copy embedded in the component.
//!
//! ```toml
//! name = "orders-transform"
//! version = "0.1.0"
//! world = "transformer"            # or "validator"
//! description = "Cleans orders"
//! capabilities = []                # "clock", "random": what the plugin asks the host for
//! limits = { memory_mib = 256, timeout_ms = 10000 }   # defaults a step may override
//! ```
//!
//! `host plugin build` embeds the manifest in the component as a top-level custom section
//! named [`SECTION`], so that a bare or downloaded `.wasm` still says what it is and what it
//! asks for; the runtime reads it back at load. A section is the natural place: the
//! component model ignores custom sections, and the manifest is covered by the component's
//! sha256 and its signature.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::PluginKind;
use super::limits::Limits;

/// The manifest's file name, in the plugin crate's directory.
pub const FILE_NAME: &str = "weir-plugin.toml";
/// The custom section holding the manifest (as TOML) in a component.
pub const SECTION: &str = "weir-plugin";

/// What a plugin may ask the host for, beyond computing over its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// The real wall and monotonic clocks (`wasi:clocks`).
    Clock,
    /// Real random numbers (`wasi:random/random`, `wasi:random/insecure`).
    Random,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Clock => "clock",
            Capability::Random => "random",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub world: World,
    #[serde(default)]
    pub description: String,
    /// None by default: a plugin that asks for nothing is deterministic.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Defaults for the steps that run the plugin; a step's own `limits` win.
    #[serde(default)]
    pub limits: Limits,
}

/// The manifest's spelling of [`PluginKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum World {
    Transformer,
    Validator,
}

impl World {
    pub fn kind(self) -> PluginKind {
        match self {
            World::Transformer => PluginKind::Transformer,
            World::Validator => PluginKind::Validator,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(&'static str),
}

impl Manifest {
    /// The `weir-plugin.toml` in a plugin crate's directory, if it has one.
    pub fn in_dir(dir: &Path) -> Result<Option<Manifest>, ManifestError> {
        let path = dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Manifest::parse(&text, &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ManifestError::Read { path, source }),
        }
    }

    /// Parse and check a manifest; `origin` names where it came from, for errors.
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let manifest: Manifest = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if !is_plugin_name(&manifest.name) {
            return Err(invalid(format!(
                "name `{}`: use lowercase letters, digits, `-` and `_`, starting with a letter or digit",
                manifest.name
            )));
        }
        let version = &manifest.version;
        if version.is_empty() || version.contains(|c: char| c.is_whitespace() || c == '@') {
            return Err(invalid(format!(
                "version `{version}`: expected e.g. \"0.1.0\" (no spaces or `@`)"
            )));
        }
        Ok(manifest)
    }

    /// The manifest embedded in a component, if any.
    pub fn embedded(wasm: &[u8]) -> Result<Option<Manifest>, ManifestError> {
        let mut found = None;
        for section in sections(wasm)? {
            if let Some(data) = section.custom(SECTION) {
                let text = std::str::from_utf8(data)
                    .map_err(|_| ManifestError::NotAComponent("its manifest is not UTF-8"))?;
                found = Some(Manifest::parse(text, "the embedded manifest")?);
            }
        }
        Ok(found)
    }

    /// `wasm` with this manifest embedded (replacing any manifest it already holds).
    pub fn embed(&self, wasm: &[u8]) -> Result<Vec<u8>, ManifestError> {
        let mut out = wasm[..PREAMBLE].to_vec();
        for section in sections(wasm)? {
            if section.custom(SECTION).is_none() {
                out.extend_from_slice(section.bytes);
            }
        }
        let text = toml::to_string(self).expect("a manifest serializes");
        let mut payload = Vec::new();
        leb128(&mut payload, SECTION.len());
        payload.extend_from_slice(SECTION.as_bytes());
        payload.extend_from_slice(text.as_bytes());
        out.push(0); // custom section
        leb128(&mut out, payload.len());
        out.extend_from_slice(&payload);
        Ok(out)
    }
}

/// A name a plugin can be installed and referred to by.
pub fn is_plugin_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `\0asm`, then the component-model version and layer.
const PREAMBLE: usize = 8;
const MAGIC: &[u8] = b"\0asm";
const COMPONENT_LAYER: [u8; 2] = [1, 0];

/// One top-level section: its whole encoding, and its id and contents.
struct Section<'a> {
    bytes: &'a [u8],
    id: u8,
    contents: &'a [u8],
}

impl<'a> Section<'a> {
    /// The data of a custom section called `name`.
    fn custom(&self, name: &str) -> Option<&'a [u8]> {
        if self.id != 0 {
            return None;
        }
        let (len, rest) = read_leb128(self.contents)?;
        (rest.get(..len)? == name.as_bytes()).then(|| &rest[len..])
    }
}

/// The top-level sections of a component (nested modules and components are inside them).
fn sections(wasm: &[u8]) -> Result<Vec<Section<'_>>, ManifestError> {
    if wasm.len() < PREAMBLE || &wasm[..4] != MAGIC {
        return Err(ManifestError::NotAComponent("no `\\0asm` header"));
    }
    if wasm[6..8] != COMPONENT_LAYER {
        return Err(ManifestError::NotAComponent(
            "it is a core module (build it for wasm32-wasip2)",
        ));
    }
    let mut rest = &wasm[PREAMBLE..];
    let mut sections = Vec::new();
    let truncated = || ManifestError::NotAComponent("a section runs past the end of the file");
    while let Some((&id, after_id)) = rest.split_first() {
        let (len, contents) = read_leb128(after_id).ok_or_else(truncated)?;
        let header = 1 + after_id.len() - contents.len();
        let contents = contents.get(..len).ok_or_else(truncated)?;
        sections.push(Section {
            bytes: &rest[..header + len],
            id,
            contents,
        });
        rest = &rest[header + len..];
    }
    Ok(sections)
}

fn read_leb128(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value = 0usize;
    for (i, &byte) in bytes.iter().enumerate().take(5) {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

fn leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn manifest(name: &str) -> Manifest {
        Manifest::parse(
            &format!("name = \"{name}\"\nversion = \"1.0.0\"\nworld = \"validator\"\ncapabilities = [\"clock\"]\n"),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn an_embedded_manifest_reads_back_and_is_replaced_not_duplicated() {
        assert_eq!(Manifest::embedded(EMPTY_COMPONENT).unwrap(), None);
        let once = manifest("a").embed(EMPTY_COMPONENT).unwrap();
        assert_eq!(Manifest::embedded(&once).unwrap(), Some(manifest("a")));
        let twice = manifest("b").embed(&once).unwrap();
        assert_eq!(Manifest::embedded(&twice).unwrap(), Some(manifest("b")));
        assert_eq!(twice.len(), once.len());
    }

    #[test]
    fn bad_manifests_say_what_to_change() {
        let error = Manifest::parse(
            "name = \"A b\"\nversion = \"1\"\nworld = \"transformer\"",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("name `A b`: use lowercase"), "{error}");
        let error = Manifest::parse(
            "name = \"a\"\nversion = \"1\"\nworld = \"transformer\"\ncapabilities = [\"net\"]",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown variant `net`"), "{error}");
        assert!(matches!(
            Manifest::embedded(b"\0asm\x01\x00\x00\x00"),
            Err(ManifestError::NotAComponent(_))
        ));
    }
}
