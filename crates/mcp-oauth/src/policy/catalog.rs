//! What the server offers: its tools (with their input schemas and annotations), prompts and
//! resources. Rules are checked against it, and it decides the Cedar schema.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::{Origin, PolicyError, Problems};

/// One tool as `tools/list` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    name: String,
    input_schema: Value,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    open_world: bool,
}

impl ToolInfo {
    /// A tool with its `inputSchema` (a JSON Schema object) and the MCP default annotations
    /// (`readOnlyHint` false, `destructiveHint` true, `idempotentHint` false, `openWorldHint` true).
    pub fn new(name: impl Into<String>, input_schema: Value) -> Self {
        Self {
            name: name.into(),
            input_schema,
            read_only: false,
            destructive: true,
            idempotent: false,
            open_world: true,
        }
    }

    /// Sets `readOnlyHint`.
    #[must_use]
    pub fn read_only(mut self, value: bool) -> Self {
        self.read_only = value;
        self
    }

    /// Sets `destructiveHint` (seen as false when the tool is read-only).
    #[must_use]
    pub fn destructive(mut self, value: bool) -> Self {
        self.destructive = value;
        self
    }

    /// Sets `idempotentHint`.
    #[must_use]
    pub fn idempotent(mut self, value: bool) -> Self {
        self.idempotent = value;
        self
    }

    /// Sets `openWorldHint`.
    #[must_use]
    pub fn open_world(mut self, value: bool) -> Self {
        self.open_world = value;
        self
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tool's `inputSchema`.
    pub fn input_schema(&self) -> &Value {
        &self.input_schema
    }

    pub(crate) fn annotations(&self) -> [(&'static str, bool); 4] {
        [
            ("readOnlyHint", self.read_only),
            // A read-only tool destroys nothing (MCP: the hint only means something when
            // `readOnlyHint` is false).
            ("destructiveHint", self.destructive && !self.read_only),
            ("idempotentHint", self.idempotent),
            ("openWorldHint", self.open_world),
        ]
    }

    /// The tool's arguments as rules can see them, by name.
    pub(crate) fn arguments(&self) -> BTreeMap<String, ArgType> {
        let Some(properties) = self
            .input_schema
            .get("properties")
            .and_then(Value::as_object)
        else {
            return BTreeMap::new();
        };
        properties
            .iter()
            .map(|(name, schema)| (name.clone(), ArgType::of(schema)))
            .collect()
    }
}

/// A JSON value type a rule can constrain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Prim {
    String,
    Integer,
    Boolean,
}

impl Prim {
    fn of(schema: &Value) -> Option<Self> {
        let ty = match schema.get("type")? {
            Value::String(ty) => ty.as_str(),
            // `["string", "null"]`: the one type besides null.
            Value::Array(types) => {
                let mut non_null = types
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| *t != "null");
                let ty = non_null.next()?;
                if non_null.next().is_some() {
                    return None;
                }
                ty
            }
            _ => return None,
        };
        match ty {
            "string" => Some(Self::String),
            "integer" => Some(Self::Integer),
            "boolean" => Some(Self::Boolean),
            _ => None,
        }
    }
}

/// An argument's type: a scalar, an array of scalars (checked element by element), or
/// something rules cannot constrain (with the reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgType {
    Scalar(Prim),
    Array(Prim),
    Unsupported(&'static str),
}

impl ArgType {
    fn of(schema: &Value) -> Self {
        if let Some(prim) = Prim::of(schema) {
            return Self::Scalar(prim);
        }
        let is_array = match schema.get("type") {
            Some(Value::String(ty)) => ty == "array",
            Some(Value::Array(types)) => types.iter().any(|t| t == "array"),
            _ => false,
        };
        if is_array {
            return match schema.get("items").and_then(Prim::of) {
                Some(prim) => Self::Array(prim),
                None => {
                    Self::Unsupported("an array whose items are not strings, integers or booleans")
                }
            };
        }
        match schema.get("type").and_then(Value::as_str) {
            Some("number") => Self::Unsupported("a number (only integers can be constrained)"),
            Some("object") => Self::Unsupported("an object"),
            _ => Self::Unsupported("of no single JSON type"),
        }
    }
}

/// The tools, prompts and resources a server offers; policies are checked against it.
///
/// ```
/// use mcp_oauth::policy::Catalog;
///
/// let catalog = Catalog::from_json_str(r#"{"tools": [
///     {"name": "read_file", "inputSchema": {"type": "object",
///         "properties": {"path": {"type": "string"}}},
///      "annotations": {"readOnlyHint": true}}
/// ]}"#)?;
/// assert_eq!(catalog.tools().count(), 1);
/// # Ok::<(), mcp_oauth::policy::PolicyError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    tools: BTreeMap<String, ToolInfo>,
    prompts: BTreeMap<String, ()>,
    resources: BTreeMap<String, ()>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tool (replacing one of the same name).
    #[must_use]
    pub fn tool(mut self, tool: ToolInfo) -> Self {
        self.tools.insert(tool.name.clone(), tool);
        self
    }

    /// Adds a prompt by name.
    #[must_use]
    pub fn prompt(mut self, name: impl Into<String>) -> Self {
        self.prompts.insert(name.into(), ());
        self
    }

    /// Adds a resource by URI.
    #[must_use]
    pub fn resource(mut self, uri: impl Into<String>) -> Self {
        self.resources.insert(uri.into(), ());
        self
    }

    /// Reads the JSON a server answers `tools/list` with (`{"tools": [...]}`), or a bare array
    /// of tools. The same object may also hold `prompts` (as `prompts/list` answers, by `name`)
    /// and `resources` (as `resources/list` answers, by `uri`).
    ///
    /// # Errors
    ///
    /// The JSON is not such an object, or a tool has no `name`, or a name appears twice.
    pub fn from_json(value: &Value) -> Result<Self, PolicyError> {
        let origin = Origin::default();
        let mut problems = Problems::default();
        let mut catalog = Self::new();
        let (tools, prompts, resources) = match value {
            Value::Array(tools) => (Some(tools), None, None),
            Value::Object(map) => {
                let list = |key: &str| map.get(key).and_then(Value::as_array);
                (list("tools"), list("prompts"), list("resources"))
            }
            _ => {
                return Err(PolicyError::one(
                    None,
                    origin,
                    "the tool list must be a JSON object with a `tools` array (the result of tools/list) or an array of tools",
                ));
            }
        };
        if tools.is_none() && prompts.is_none() && resources.is_none() {
            problems.push(
                None,
                &origin,
                "the tool list has no `tools`, `prompts` or `resources` array",
            );
        }
        for (n, tool) in tools.into_iter().flatten().enumerate() {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                problems.push(
                    None,
                    &origin,
                    format!("tool #{} has no string `name`", n + 1),
                );
                continue;
            };
            if catalog.tools.contains_key(name) {
                problems.push(None, &origin, format!("tool `{name}` is listed twice"));
                continue;
            }
            let schema = tool.get("inputSchema").cloned().unwrap_or(Value::Null);
            let hint = |key: &str, default: bool| {
                tool.get("annotations")
                    .and_then(|a| a.get(key))
                    .and_then(Value::as_bool)
                    .unwrap_or(default)
            };
            catalog = catalog.tool(
                ToolInfo::new(name, schema)
                    .read_only(hint("readOnlyHint", false))
                    .destructive(hint("destructiveHint", true))
                    .idempotent(hint("idempotentHint", false))
                    .open_world(hint("openWorldHint", true)),
            );
        }
        for (n, prompt) in prompts.into_iter().flatten().enumerate() {
            match prompt.get("name").and_then(Value::as_str) {
                Some(name) => catalog = catalog.prompt(name),
                None => problems.push(
                    None,
                    &origin,
                    format!("prompt #{} has no string `name`", n + 1),
                ),
            }
        }
        for (n, resource) in resources.into_iter().flatten().enumerate() {
            match resource.get("uri").and_then(Value::as_str) {
                Some(uri) => catalog = catalog.resource(uri),
                None => problems.push(
                    None,
                    &origin,
                    format!("resource #{} has no string `uri`", n + 1),
                ),
            }
        }
        problems.into_result()?;
        Ok(catalog)
    }

    /// [`from_json`](Self::from_json) on a JSON text.
    ///
    /// # Errors
    ///
    /// The text is not JSON, or see [`from_json`](Self::from_json).
    pub fn from_json_str(text: &str) -> Result<Self, PolicyError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            PolicyError::one(
                None,
                Origin::default(),
                format!("the tool list is not JSON: {e}"),
            )
        })?;
        Self::from_json(&value)
    }

    /// The tools, by name.
    pub fn tools(&self) -> impl Iterator<Item = &ToolInfo> {
        self.tools.values()
    }

    /// The prompt names.
    pub fn prompts(&self) -> impl Iterator<Item = &str> {
        self.prompts.keys().map(String::as_str)
    }

    /// The resource URIs.
    pub fn resources(&self) -> impl Iterator<Item = &str> {
        self.resources.keys().map(String::as_str)
    }

    pub(crate) fn get_tool(&self, name: &str) -> Option<&ToolInfo> {
        self.tools.get(name)
    }

    pub(crate) fn has_prompt(&self, name: &str) -> bool {
        self.prompts.contains_key(name)
    }

    pub(crate) fn has_resource(&self, uri: &str) -> bool {
        self.resources.contains_key(uri)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn argument_types_come_from_the_input_schema() {
        let tool = ToolInfo::new(
            "t",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "paths": {"type": "array", "items": {"type": "string"}},
                "n": {"type": ["integer", "null"]},
                "x": {"type": "number"},
                "o": {"type": "object"},
            }}),
        );
        let args = tool.arguments();
        assert_eq!(args.get("path"), Some(&ArgType::Scalar(Prim::String)));
        assert_eq!(args.get("paths"), Some(&ArgType::Array(Prim::String)));
        assert_eq!(args.get("n"), Some(&ArgType::Scalar(Prim::Integer)));
        assert!(matches!(args.get("x"), Some(ArgType::Unsupported(_))));
        assert!(matches!(args.get("o"), Some(ArgType::Unsupported(_))));
    }

    #[test]
    fn a_tool_without_a_name_is_an_error() {
        let err = Catalog::from_json(&json!({"tools": [{"description": "x"}]})).unwrap_err();
        assert!(
            err.to_string().contains("tool #1 has no string `name`"),
            "{err}"
        );
    }

    #[test]
    fn annotations_default_as_mcp_says() {
        let catalog = Catalog::from_json(&json!([{"name": "t"}])).unwrap();
        let tool = catalog.get_tool("t").unwrap();
        assert_eq!(
            tool.annotations(),
            [
                ("readOnlyHint", false),
                ("destructiveHint", true),
                ("idempotentHint", false),
                ("openWorldHint", true)
            ]
        );
    }
}
