//! The pieces a policy keeps ready: the Cedar names it uses, the entity of every tool, prompt
//! and resource, and the policy set split by action and target.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Entity, EntityId, EntityTypeName, EntityUid, Policy as CedarPolicy, PolicySet,
    RestrictedExpression,
};

use super::catalog::Catalog;
use super::error::{Origin, PolicyError};

/// Which actions and targets a policy can be about (`None`: any).
#[derive(Debug, Clone)]
pub(super) struct Scope {
    pub(super) actions: Option<Vec<String>>,
    pub(super) targets: Option<Vec<String>>,
}

impl Scope {
    pub(super) fn covers(&self, action: &str, target: Option<&str>) -> bool {
        let action_ok = self
            .actions
            .as_ref()
            .is_none_or(|a| a.iter().any(|x| x == action));
        let target_ok = match (&self.targets, target) {
            (Some(names), Some(t)) => names.iter().any(|n| n == t),
            _ => true,
        };
        action_ok && target_ok
    }
}

/// The policy set split by action and target, so that a decision evaluates only the
/// policies that can be about it (the others would evaluate to false anyway).
#[derive(Debug, Default)]
pub(super) struct Sets {
    pub(super) by_target: HashMap<&'static str, HashMap<String, PolicySet>>,
    pub(super) by_action: HashMap<&'static str, PolicySet>,
}

impl Sets {
    pub(super) fn new(scopes: &[(CedarPolicy, Scope)], catalog: &Catalog) -> Result<Self, String> {
        let subset = |action: &str, target: Option<&str>| -> Result<PolicySet, String> {
            PolicySet::from_policies(
                scopes
                    .iter()
                    .filter(|(_, scope)| scope.covers(action, target))
                    .map(|(p, _)| p.clone()),
            )
            .map_err(|e| e.to_string())
        };
        let mut sets = Self::default();
        for action in [
            "call_tool",
            "get_prompt",
            "read_resource",
            "sign_in",
            "grant_scope",
        ] {
            sets.by_action.insert(action, subset(action, None)?);
        }
        let mut add = |action: &'static str, name: &str| -> Result<(), String> {
            let set = subset(action, Some(name))?;
            sets.by_target
                .entry(action)
                .or_default()
                .insert(name.to_owned(), set);
            Ok(())
        };
        for tool in catalog.tools() {
            add("call_tool", tool.name())?;
        }
        for name in catalog.prompts() {
            add("get_prompt", name)?;
        }
        for uri in catalog.resources() {
            add("read_resource", uri)?;
        }
        Ok(sets)
    }
}

/// The Cedar entity of every tool, prompt and resource, built once.
#[derive(Debug, Default)]
pub(super) struct Targets {
    pub(super) tools: HashMap<String, Entity>,
    pub(super) prompts: HashMap<String, Entity>,
    pub(super) resources: HashMap<String, Entity>,
}

impl Targets {
    pub(super) fn new(names: &Names, server: &str, catalog: &Catalog) -> Result<Self, String> {
        let server: HashSet<EntityUid> = [uid(&names.server, server)].into();
        let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
        let mut targets = Self::default();
        for tool in catalog.tools() {
            let mut attrs = HashMap::from([("name".to_owned(), s(tool.name()))]);
            for (hint, value) in tool.annotations() {
                attrs.insert(hint.to_owned(), RestrictedExpression::new_bool(value));
            }
            let entity = Entity::new(uid(&names.tool, tool.name()), attrs, server.clone())
                .map_err(|e| format!("tool `{}` cannot be described to Cedar: {e}", tool.name()))?;
            targets.tools.insert(tool.name().to_owned(), entity);
        }
        for name in catalog.prompts() {
            let attrs = HashMap::from([("name".to_owned(), s(name))]);
            let entity = Entity::new(uid(&names.prompt, name), attrs, server.clone())
                .map_err(|e| format!("prompt `{name}` cannot be described to Cedar: {e}"))?;
            targets.prompts.insert(name.to_owned(), entity);
        }
        for uri in catalog.resources() {
            let attrs = HashMap::from([("uri".to_owned(), s(uri))]);
            let entity = Entity::new(uid(&names.resource, uri), attrs, server.clone())
                .map_err(|e| format!("resource `{uri}` cannot be described to Cedar: {e}"))?;
            targets.resources.insert(uri.to_owned(), entity);
        }
        Ok(targets)
    }
}

#[derive(Debug)]
pub(super) struct Names {
    pub(super) user: EntityTypeName,
    pub(super) group: EntityTypeName,
    pub(super) server: EntityTypeName,
    pub(super) tool: EntityTypeName,
    pub(super) prompt: EntityTypeName,
    pub(super) resource: EntityTypeName,
    pub(super) scope: EntityTypeName,
    pub(super) call_tool: EntityUid,
    pub(super) get_prompt: EntityUid,
    pub(super) read_resource: EntityUid,
    pub(super) sign_in: EntityUid,
    pub(super) grant_scope: EntityUid,
}

impl Names {
    pub(super) fn new() -> Result<Self, PolicyError> {
        let ty = |name: &str| {
            EntityTypeName::from_str(name).map_err(|e| {
                PolicyError::one(
                    None,
                    Origin::default(),
                    format!("entity type `{name}`: {e}"),
                )
            })
        };
        let action = |id: &str| -> Result<EntityUid, PolicyError> {
            Ok(EntityUid::from_type_name_and_id(
                ty("Action")?,
                EntityId::new(id),
            ))
        };
        Ok(Self {
            user: ty("User")?,
            group: ty("Group")?,
            server: ty("Server")?,
            tool: ty("Tool")?,
            prompt: ty("Prompt")?,
            resource: ty("Resource")?,
            scope: ty("Scope")?,
            call_tool: action("call_tool")?,
            get_prompt: action("get_prompt")?,
            read_resource: action("read_resource")?,
            sign_in: action("sign_in")?,
            grant_scope: action("grant_scope")?,
        })
    }
}

/// A policy id as written (its `Display` escapes quotes).
pub(super) fn id_str(id: &cedar_policy::PolicyId) -> String {
    AsRef::<str>::as_ref(id).to_owned()
}

pub(super) fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}
