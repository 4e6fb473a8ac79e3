//! Cedar policy: (principal, target, action) → allow, deny or hold.
//!
//! Default deny: an action is allowed only when a `permit` applies and no `forbid` does.
//! A permit annotated `@hold("group")` turns an allow into a hold for that group's
//! approval. A policy annotated `@enforce("false")` is observe-only: it is evaluated and
//! its effect recorded, but the enforced decision is made without it.
//!
//! The entity and action names are Airlock's interface (see `SCHEMA` and
//! `docs/policy.md`): `Agent` in `Group`s; `Target`; `Schema` in `Target`; `Table` in
//! `Schema`; `Function` in `Target`; `Action::"connect"`; `Sql::Action::"<kind>"`;
//! `Http::Path` in its prefixes and `Target`; `Http::Action::"<method>"`;
//! `K8s::Resource` in its `K8s::Namespace` and `Target`; `K8s::Action::"<verb>"`.

mod schema;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use airlock_model::{
    Action, Decision, HttpAction, K8sAction, Principal, SqlAction, SqlObject, TargetRef, Verdict,
};
use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};

pub use schema::{
    ACTION_GROUPS, HARMLESS_SETTINGS, HARMLESS_VOLATILE_FUNCTIONS, HTTP_METHOD_GROUPS,
    HTTP_METHODS, K8S_VERB_GROUPS, K8S_VERBS, SESSION_KINDS, schema_text,
};

use crate::sql::SQL_KINDS;

/// Why policies could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy file or folder could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The path.
        path: String,
        /// Why (not a `source`, so that the chain does not print it twice).
        error: std::io::Error,
    },
    /// A file is not valid Cedar.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// Policies do not validate against Airlock's schema.
    #[error("policies do not validate against the Airlock schema:\n{0}")]
    Invalid(String),
    /// Two policies share an id.
    #[error("policy id `{0}` is used twice")]
    DuplicateId(String),
    /// An annotation has a value Airlock does not understand.
    #[error("policy `{id}`: {message}")]
    Annotation {
        /// Policy id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// Internal: the built-in schema does not parse (a bug).
    #[error("the built-in Cedar schema is invalid: {0}")]
    Schema(String),
}

/// What Airlock knows about a function, from the target's catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Volatility {
    /// Same result for the same arguments, no side effects.
    Immutable,
    /// No side effects; result stable within a statement.
    Stable,
    /// May have side effects (`nextval`, `pg_terminate_backend`, `lo_import`, most
    /// user-defined functions).
    Volatile,
    /// Not in the target's catalog (treat as volatile).
    Unknown,
}

impl Volatility {
    /// The name exposed to policy as `resource.volatility`.
    pub fn as_str(self) -> &'static str {
        match self {
            Volatility::Immutable => "immutable",
            Volatility::Stable => "stable",
            Volatility::Volatile => "volatile",
            Volatility::Unknown => "unknown",
        }
    }
}

/// Looks up functions' volatility for a target.
pub trait FunctionCatalog: Send + Sync {
    /// The volatility of `schema.name` (or of `name` in any schema when unqualified,
    /// taking the most volatile overload).
    fn volatility(&self, schema: Option<&str>, name: &str) -> Volatility;
}

/// A catalog that knows nothing: every function is `unknown`.
pub struct NoCatalog;

impl FunctionCatalog for NoCatalog {
    fn volatility(&self, _: Option<&str>, _: &str) -> Volatility {
        Volatility::Unknown
    }
}

/// A loaded, validated policy set.
pub struct PolicyEngine {
    /// Every policy, observe-only ones included.
    all: PolicySet,
    /// The policies whose decisions are enforced.
    enforced: PolicySet,
    has_observe_only: bool,
    schema: Schema,
    /// The action hierarchy (groups): each request carries its action's entity and
    /// the groups above it, not the whole hierarchy (the closure is rebuilt per request).
    action_entities: HashMap<EntityUid, (Entity, Vec<EntityUid>)>,
    version: String,
    authorizer: Authorizer,
    cache: Mutex<hashbrown::HashMap<CacheKey, Verdict>>,
}

/// What a cached verdict depends on. Looked up through [`CacheKeyRef`], which borrows
/// the same fields, so that a hit (nearly every statement) copies nothing.
#[derive(PartialEq, Eq)]
struct CacheKey {
    principal: String,
    groups: Vec<String>,
    target: String,
    action: Action,
    volatility: Option<Volatility>,
}

/// A [`CacheKey`] borrowed from the request; hashes exactly as the key it stands for.
#[derive(Hash)]
struct CacheKeyRef<'a> {
    principal: &'a str,
    groups: &'a [String],
    target: &'a str,
    action: &'a Action,
    volatility: Option<Volatility>,
}

impl CacheKey {
    fn borrowed(&self) -> CacheKeyRef<'_> {
        CacheKeyRef {
            principal: &self.principal,
            groups: &self.groups,
            target: &self.target,
            action: &self.action,
            volatility: self.volatility,
        }
    }
}

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.borrowed().hash(state);
    }
}

impl hashbrown::Equivalent<CacheKey> for CacheKeyRef<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        self.principal == key.principal
            && self.groups == key.groups.as_slice()
            && self.target == key.target
            && self.action == &key.action
            && self.volatility == key.volatility
    }
}

impl CacheKeyRef<'_> {
    fn to_owned(&self) -> CacheKey {
        CacheKey {
            principal: self.principal.to_owned(),
            groups: self.groups.to_vec(),
            target: self.target.to_owned(),
            action: self.action.clone(),
            volatility: self.volatility,
        }
    }
}

const CACHE_CAPACITY: usize = 16_384;

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policies", &self.len())
            .field("version", &self.version)
            .finish()
    }
}

impl PolicyEngine {
    /// Loads every `*.cedar` file at `path` (a file, or a folder read in name order).
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| PolicyError::Read {
                path: p.display().to_string(),
                error: source,
            })
        };
        let mut sources = Vec::new();
        if path.is_dir() {
            let mut files: Vec<_> = std::fs::read_dir(path)
                .map_err(|source| PolicyError::Read {
                    path: path.display().to_string(),
                    error: source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
                .collect();
            files.sort();
            for f in files {
                sources.push((f.display().to_string(), read(&f)?));
            }
        } else {
            sources.push((path.display().to_string(), read(path)?));
        }
        Self::from_sources(&sources)
    }

    /// Builds an engine from (name, text) sources.
    pub fn from_sources(sources: &[(String, String)]) -> Result<Self, PolicyError> {
        let schema = schema::schema()?;
        let mut all = PolicySet::new();
        let mut enforced = PolicySet::new();
        let mut has_observe_only = false;
        let mut ids = HashSet::new();
        let mut digest_input = String::new();
        for (name, text) in sources {
            // The file's name, not its path: replicas that load the same policies
            // from different folders agree on the version (an approval granted
            // through one is valid on the others).
            let file_name = Path::new(name)
                .file_name()
                .map_or(name.as_str(), |n| n.to_str().unwrap_or(name));
            digest_input.push_str(file_name);
            digest_input.push('\n');
            digest_input.push_str(text);
            let parsed = PolicySet::from_str(text).map_err(|e| PolicyError::Parse {
                path: name.clone(),
                message: render(&e),
            })?;
            for (n, policy) in parsed.policies().enumerate() {
                let id = policy
                    .annotation("id")
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("{name}#{n}"));
                if !ids.insert(id.clone()) {
                    return Err(PolicyError::DuplicateId(id));
                }
                let enforce = match policy.annotation("enforce") {
                    None | Some("true") => true,
                    Some("false") => false,
                    Some(other) => {
                        return Err(PolicyError::Annotation {
                            id,
                            message: format!(
                                "@enforce must be \"true\" or \"false\", not \"{other}\""
                            ),
                        });
                    }
                };
                if let Some(group) = policy.annotation("hold") {
                    if group.is_empty() {
                        return Err(PolicyError::Annotation {
                            id,
                            message: "@hold needs the approving group".into(),
                        });
                    }
                    if policy.effect() == cedar_policy::Effect::Forbid {
                        return Err(PolicyError::Annotation {
                            id,
                            message: "@hold applies to permit policies only".into(),
                        });
                    }
                }
                let policy = policy.new_id(PolicyId::new(&id));
                all.add(policy.clone()).map_err(|e| PolicyError::Parse {
                    path: name.clone(),
                    message: e.to_string(),
                })?;
                if enforce {
                    enforced.add(policy).map_err(|e| PolicyError::Parse {
                        path: name.clone(),
                        message: e.to_string(),
                    })?;
                } else {
                    has_observe_only = true;
                }
            }
        }
        let validation = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
        if !validation.validation_passed() {
            let errors: Vec<String> = validation
                .validation_errors()
                .map(|e| format!("- {}", render(e)))
                .collect();
            return Err(PolicyError::Invalid(errors.join("\n")));
        }
        let action_entities = schema
            .action_entities()
            .map_err(|e| PolicyError::Schema(e.to_string()))?
            .iter()
            .map(|e| {
                let parents = e.clone().into_inner().2.into_iter().collect();
                (e.uid(), (e.clone(), parents))
            })
            .collect();
        Ok(PolicyEngine {
            all,
            enforced,
            has_observe_only,
            schema,
            action_entities,
            version: short_digest(&digest_input),
            authorizer: Authorizer::new(),
            cache: Mutex::new(hashbrown::HashMap::new()),
        })
    }

    /// A digest of the policy texts: which policy set made a decision.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The groups named by enforced `@hold` annotations: whoever may approve a
    /// statement. Sorted, without repeats.
    pub fn approver_groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self
            .enforced
            .policies()
            .filter_map(|p| p.annotation("hold"))
            .map(str::to_owned)
            .collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// Number of policies loaded.
    pub fn len(&self) -> usize {
        self.all.policies().count()
    }

    /// True when no policy is loaded (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides every action of a statement: the strictest outcome wins (any deny denies,
    /// else any hold holds), and the verdict names the policies behind it.
    pub fn decide_all(
        &self,
        principal: &Principal,
        target: &TargetRef,
        actions: &[Action],
        catalog: &dyn FunctionCatalog,
    ) -> Verdict {
        let mut worst = Verdict {
            decision: Decision::Allow,
            policies: Vec::new(),
            policy_version: self.version.clone(),
            observed: None,
        };
        if actions.is_empty() {
            return worst;
        }
        let mut observed: Option<Decision> = None;
        for action in actions {
            let v = self.decide(principal, target, action, catalog);
            if let Some(o) = &v.observed
                && observed
                    .as_ref()
                    .is_none_or(|cur| o.severity() > cur.severity())
            {
                observed = Some(o.clone());
            }
            if v.decision.severity() > worst.decision.severity() {
                worst = v;
            } else if v.decision.severity() == worst.decision.severity() {
                for p in v.policies {
                    if !worst.policies.contains(&p) {
                        worst.policies.push(p);
                    }
                }
            }
        }
        worst.observed = observed.filter(|o| o.severity() != worst.decision.severity());
        worst
    }

    /// Decides one action.
    pub fn decide(
        &self,
        principal: &Principal,
        target: &TargetRef,
        action: &Action,
        catalog: &dyn FunctionCatalog,
    ) -> Verdict {
        let volatility = match action {
            Action::Sql(SqlAction {
                object: SqlObject::Function { schema, name },
                ..
            }) => Some(catalog.volatility(schema.as_deref(), name)),
            _ => None,
        };
        let key = CacheKeyRef {
            principal: &principal.name,
            groups: &principal.groups,
            target: &target.name,
            action,
            volatility,
        };
        if let Some(v) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return v;
        }
        let mut verdict = self.evaluate(principal, target, action, volatility);
        // Calling an immutable or stable function cannot change anything: it is part of
        // the statement that calls it, permitted unless a forbid names it. Volatile and
        // unknown functions need a permit of their own.
        // Likewise session bookkeeping (BEGIN, PREPARE, EXECUTE...): what it runs is
        // decided as its own actions.
        let harmless = matches!(volatility, Some(Volatility::Immutable | Volatility::Stable))
            || matches!(action, Action::Sql(sql) if SESSION_KINDS.contains(&sql.kind.as_str()))
            || matches!(action, Action::Sql(sql) if matches!(sql.kind.as_str(), "set" | "show") && HARMLESS_SETTINGS.contains(&sql.flags.variable.as_str()))
            || matches!(action, Action::Sql(SqlAction { kind, object: SqlObject::Function { schema, name }, .. })
                if kind == "call"
                    && matches!(schema.as_deref(), None | Some("pg_catalog"))
                    && HARMLESS_VOLATILE_FUNCTIONS.contains(&name.as_str()));
        if harmless
            && matches!(verdict.decision, Decision::Deny { .. })
            && verdict.policies.is_empty()
        {
            verdict.decision = Decision::Allow;
        }
        if let Decision::Deny { reason } = &mut verdict.decision
            && verdict.policies.is_empty()
            && reason.ends_with('"')
        {
            // Tell the agent what it may do instead (evaluated only for default denials),
            // in the words of the policy that permits it when it has a @reason.
            let (allowed, permitting) =
                self.allowed_kinds(&self.enforced, principal, target, action);
            let explained = permitting.iter().find_map(|id| {
                self.enforced
                    .annotation(&PolicyId::new(id), "reason")
                    .map(|r| (id.clone(), r.to_owned()))
            });
            let what = describe(action, target);
            match (explained, allowed.is_empty()) {
                (Some((id, why)), _) => {
                    *reason = format!(
                        "{what} denied by policy \"{id}\": {why} (permitted there: {})",
                        allowed.join(", ")
                    );
                }
                (None, true) => reason.push_str("; nothing is permitted there for this agent"),
                (None, false) => {
                    reason.push_str(&format!("; permitted there: {}", allowed.join(", ")))
                }
            }
        }
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE_CAPACITY {
                c.clear();
            }
            c.insert(key.to_owned(), verdict.clone());
        }
        verdict
    }

    fn evaluate(
        &self,
        principal: &Principal,
        target: &TargetRef,
        action: &Action,
        volatility: Option<Volatility>,
    ) -> Verdict {
        let request = match self.request(principal, target, action, volatility) {
            Ok(r) => r,
            Err(e) => {
                return Verdict {
                    decision: Decision::Deny {
                        reason: format!("the action could not be evaluated ({e})"),
                    },
                    policies: Vec::new(),
                    policy_version: self.version.clone(),
                    observed: None,
                };
            }
        };
        let (decision, policies) =
            self.outcome(&self.enforced, &request, principal, target, action);
        let observed = if self.has_observe_only {
            let (all_decision, _) = self.outcome(&self.all, &request, principal, target, action);
            (all_decision != decision).then_some(all_decision)
        } else {
            None
        };
        Verdict {
            decision,
            policies,
            policy_version: self.version.clone(),
            observed,
        }
    }

    fn outcome(
        &self,
        set: &PolicySet,
        request: &(Request, Entities),
        principal: &Principal,
        target: &TargetRef,
        action: &Action,
    ) -> (Decision, Vec<String>) {
        let response = self.authorizer.is_authorized(&request.0, set, &request.1);
        let policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        let what = describe(action, target);
        if response.diagnostics().errors().next().is_some()
            && response.decision() == cedar_policy::Decision::Deny
            && policies.is_empty()
        {
            return (
                Decision::Deny {
                    reason: format!("{what} denied: a policy could not be evaluated for it"),
                },
                policies,
            );
        }
        match response.decision() {
            cedar_policy::Decision::Allow => {
                let hold = policies.iter().find_map(|id| {
                    set.annotation(&PolicyId::new(id), "hold")
                        .map(|g| (id.clone(), g.to_owned()))
                });
                match hold {
                    Some((id, group)) => {
                        let why = set
                            .annotation(&PolicyId::new(&id), "reason")
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default();
                        (
                            Decision::Hold {
                                group: group.clone(),
                                reason: format!(
                                    "{what} needs approval by group \"{group}\" (policy \"{id}\"){why}"
                                ),
                            },
                            policies,
                        )
                    }
                    None => (Decision::Allow, policies),
                }
            }
            cedar_policy::Decision::Deny => {
                let reason = match policies.first() {
                    Some(id) => {
                        let why = set
                            .annotation(&PolicyId::new(id), "reason")
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default();
                        format!("{what} denied by policy \"{id}\"{why}")
                    }
                    // Default deny: `decide` adds what is permitted instead, once it
                    // knows the denial stands.
                    None => format!(
                        "{what} is not permitted: no policy allows it for agent \"{}\"",
                        principal.name
                    ),
                };
                (Decision::Deny { reason }, policies)
            }
        }
    }

    /// Which SQL kinds would be allowed on the same object: what the agent can do instead.
    /// Which SQL kinds would be allowed on the same object, and by which policies: what
    /// the agent can do instead.
    fn allowed_kinds(
        &self,
        set: &PolicySet,
        principal: &Principal,
        target: &TargetRef,
        action: &Action,
    ) -> (Vec<String>, Vec<String>) {
        let sql = match action {
            Action::Sql(sql) => sql,
            Action::Http(http) => return self.allowed_methods(set, principal, target, http),
            Action::K8s(k) => return self.allowed_verbs(set, principal, target, k),
            Action::Mcp(_) => return (Vec::new(), Vec::new()),
            Action::Connect => return (Vec::new(), Vec::new()),
        };
        let volatility =
            matches!(sql.object, SqlObject::Function { .. }).then_some(Volatility::Unknown);
        // Session bookkeeping is always permitted; listing it would only add noise.
        let probes = SQL_KINDS
            .iter()
            .filter(|k| **k != sql.kind && !SESSION_KINDS.contains(k))
            .map(|k| {
                (
                    k.to_uppercase(),
                    Action::Sql(SqlAction {
                        kind: (*k).to_string(),
                        object: sql.object.clone(),
                        flags: sql.flags.clone(),
                    }),
                )
            });
        self.allowed_among(set, principal, target, volatility, probes)
    }

    /// Which methods would be allowed on the same path (same query, type and fields),
    /// and by which policies.
    fn allowed_methods(
        &self,
        set: &PolicySet,
        principal: &Principal,
        target: &TargetRef,
        http: &HttpAction,
    ) -> (Vec<String>, Vec<String>) {
        let probes = HTTP_METHODS.iter().filter(|m| **m != http.method).map(|m| {
            (
                m.to_uppercase(),
                Action::Http(HttpAction {
                    method: (*m).to_owned(),
                    ..http.clone()
                }),
            )
        });
        self.allowed_among(set, principal, target, None, probes)
    }

    /// Which verbs would be allowed on the same resource, and by which policies.
    fn allowed_verbs(
        &self,
        set: &PolicySet,
        principal: &Principal,
        target: &TargetRef,
        k: &K8sAction,
    ) -> (Vec<String>, Vec<String>) {
        let probes = K8S_VERBS
            .iter()
            .filter(|v| **v != k.verb && **v != "discover")
            .map(|v| {
                (
                    (*v).to_owned(),
                    Action::K8s(K8sAction {
                        verb: (*v).to_owned(),
                        ..k.clone()
                    }),
                )
            });
        self.allowed_among(set, principal, target, None, probes)
    }

    /// The labels of the `probes` that `set` allows, and the policies that allow them.
    fn allowed_among(
        &self,
        set: &PolicySet,
        principal: &Principal,
        target: &TargetRef,
        volatility: Option<Volatility>,
        probes: impl Iterator<Item = (String, Action)>,
    ) -> (Vec<String>, Vec<String>) {
        let mut allowed = Vec::new();
        let mut policies: Vec<String> = Vec::new();
        for (label, probe) in probes {
            let Ok(r) = self.request(principal, target, &probe, volatility) else {
                continue;
            };
            let response = self.authorizer.is_authorized(&r.0, set, &r.1);
            if response.decision() == cedar_policy::Decision::Allow {
                allowed.push(label);
                for id in response.diagnostics().reason() {
                    let id = id.to_string();
                    if !policies.contains(&id) {
                        policies.push(id);
                    }
                }
            }
        }
        (allowed, policies)
    }

    fn request(
        &self,
        principal: &Principal,
        target: &TargetRef,
        action: &Action,
        volatility: Option<Volatility>,
    ) -> Result<(Request, Entities), String> {
        let uid = |ty: &str, id: &str| -> Result<EntityUid, String> {
            Ok(EntityUid::from_type_name_and_id(
                EntityTypeName::from_str(ty).map_err(|e| e.to_string())?,
                EntityId::new(id),
            ))
        };
        let err = |e: &dyn std::fmt::Display| e.to_string();
        let target_uid = uid("Target", &target.name)?;
        let mut entities = vec![Entity::new_no_attrs(target_uid.clone(), HashSet::new())];
        let mut groups = HashSet::new();
        for g in &principal.groups {
            let g = uid("Group", g)?;
            entities.push(Entity::new_no_attrs(g.clone(), HashSet::new()));
            groups.insert(g);
        }
        let agent = uid("Agent", &principal.name)?;
        entities.push(Entity::new_no_attrs(agent.clone(), groups));

        let (action_uid, resource, context) = match action {
            Action::Connect => (
                uid("Action", "connect")?,
                target_uid.clone(),
                Context::empty(),
            ),
            Action::Sql(sql) => {
                let resource = match &sql.object {
                    SqlObject::Target => target_uid.clone(),
                    SqlObject::Table { schema, name } => {
                        let schema_uid = uid("Schema", schema)?;
                        entities.push(Entity::new_no_attrs(
                            schema_uid.clone(),
                            HashSet::from([target_uid.clone()]),
                        ));
                        let table = uid("Table", &format!("{schema}.{name}"))?;
                        let attrs = HashMap::from([
                            (
                                "schema".to_owned(),
                                RestrictedExpression::new_string(schema.clone()),
                            ),
                            (
                                "name".to_owned(),
                                RestrictedExpression::new_string(name.clone()),
                            ),
                        ]);
                        entities.push(
                            Entity::new(
                                table.clone(),
                                attrs,
                                HashSet::from([schema_uid, target_uid.clone()]),
                            )
                            .map_err(|e| err(&e))?,
                        );
                        table
                    }
                    SqlObject::Function { schema, name } => {
                        let id = match schema {
                            Some(s) => format!("{s}.{name}"),
                            None => name.clone(),
                        };
                        let f = uid("Function", &id)?;
                        let attrs = HashMap::from([
                            (
                                "name".to_owned(),
                                RestrictedExpression::new_string(name.clone()),
                            ),
                            (
                                "schema".to_owned(),
                                RestrictedExpression::new_string(
                                    schema.clone().unwrap_or_default(),
                                ),
                            ),
                            (
                                "volatility".to_owned(),
                                RestrictedExpression::new_string(
                                    volatility
                                        .unwrap_or(Volatility::Unknown)
                                        .as_str()
                                        .to_owned(),
                                ),
                            ),
                        ]);
                        entities.push(
                            Entity::new(f.clone(), attrs, HashSet::from([target_uid.clone()]))
                                .map_err(|e| err(&e))?,
                        );
                        f
                    }
                };
                let f = &sql.flags;
                let context = Context::from_pairs([
                    (
                        "statement".to_owned(),
                        RestrictedExpression::new_string(f.statement.clone()),
                    ),
                    (
                        "has_where".to_owned(),
                        RestrictedExpression::new_bool(f.has_where),
                    ),
                    ("into".to_owned(), RestrictedExpression::new_bool(f.into)),
                    (
                        "analyze".to_owned(),
                        RestrictedExpression::new_bool(f.analyze),
                    ),
                    (
                        "program".to_owned(),
                        RestrictedExpression::new_bool(f.program),
                    ),
                    (
                        "copy_from".to_owned(),
                        RestrictedExpression::new_bool(f.copy_from),
                    ),
                    (
                        "variable".to_owned(),
                        RestrictedExpression::new_string(f.variable.clone()),
                    ),
                    (
                        "system".to_owned(),
                        RestrictedExpression::new_bool(f.system),
                    ),
                    (
                        "nested".to_owned(),
                        RestrictedExpression::new_bool(f.nested),
                    ),
                ])
                .map_err(|e| err(&e))?;
                let action_uid = EntityUid::from_type_name_and_id(
                    EntityTypeName::from_str("Sql::Action").map_err(|e| e.to_string())?,
                    EntityId::new(&sql.kind),
                );
                (action_uid, resource, context)
            }
            Action::Mcp(m) => {
                let (ty, attribute) = match m.kind.as_str() {
                    "call" => ("Mcp::Tool", "name"),
                    "read" => ("Mcp::Resource", "uri"),
                    "prompt" => ("Mcp::Prompt", "name"),
                    other => return Err(format!("unknown MCP request kind `{other}`")),
                };
                let uid = EntityUid::from_type_name_and_id(
                    EntityTypeName::from_str(ty).map_err(|e| e.to_string())?,
                    EntityId::new(format!("{}/{}", target.name, m.name)),
                );
                let attrs = HashMap::from([(
                    attribute.to_owned(),
                    RestrictedExpression::new_string(m.name.clone()),
                )]);
                entities.push(
                    Entity::new(uid.clone(), attrs, HashSet::from([target_uid.clone()]))
                        .map_err(|e| err(&e))?,
                );
                let strings = |v: &[String]| {
                    RestrictedExpression::new_set(
                        v.iter()
                            .map(|s| RestrictedExpression::new_string(s.clone())),
                    )
                };
                let context = Context::from_pairs([
                    ("arguments".to_owned(), strings(&m.arguments)),
                    ("argument_names".to_owned(), strings(&m.argument_names)),
                    (
                        "arguments_json".to_owned(),
                        RestrictedExpression::new_string(m.arguments_json.clone()),
                    ),
                ])
                .map_err(|e| err(&e))?;
                let action_uid = EntityUid::from_type_name_and_id(
                    EntityTypeName::from_str("Mcp::Action").map_err(|e| e.to_string())?,
                    EntityId::new(&m.kind),
                );
                (action_uid, uid, context)
            }
            Action::K8s(k) => {
                let resource = if k.verb == "discover" {
                    target_uid.clone()
                } else {
                    k8s_entities(&target.name, k, &target_uid, &mut entities)?
                };
                let context = Context::from_pairs([
                    (
                        "verb".to_owned(),
                        RestrictedExpression::new_string(k.verb.clone()),
                    ),
                    (
                        "path".to_owned(),
                        RestrictedExpression::new_string(k.path.clone()),
                    ),
                    (
                        "kind".to_owned(),
                        RestrictedExpression::new_string(k.kind.clone()),
                    ),
                    (
                        "labels".to_owned(),
                        RestrictedExpression::new_set(
                            k.labels
                                .iter()
                                .map(|l| RestrictedExpression::new_string(l.clone())),
                        ),
                    ),
                    (
                        "command".to_owned(),
                        RestrictedExpression::new_string(k.command.clone()),
                    ),
                ])
                .map_err(|e| err(&e))?;
                let action_uid = EntityUid::from_type_name_and_id(
                    EntityTypeName::from_str("K8s::Action").map_err(|e| e.to_string())?,
                    EntityId::new(&k.verb),
                );
                (action_uid, resource, context)
            }
            Action::Http(http) => {
                let resource =
                    http_path_entities(&target.name, &http.path, &target_uid, &mut entities)?;
                let context = Context::from_pairs([
                    (
                        "method".to_owned(),
                        RestrictedExpression::new_string(http.method.clone()),
                    ),
                    (
                        "path".to_owned(),
                        RestrictedExpression::new_string(format!("/{}", http.path)),
                    ),
                    (
                        "query".to_owned(),
                        RestrictedExpression::new_string(http.query.clone()),
                    ),
                    (
                        "content_type".to_owned(),
                        RestrictedExpression::new_string(http.content_type.clone()),
                    ),
                    (
                        "body_fields".to_owned(),
                        RestrictedExpression::new_set(
                            http.body_fields
                                .iter()
                                .map(|f| RestrictedExpression::new_string(f.clone())),
                        ),
                    ),
                ])
                .map_err(|e| err(&e))?;
                let action_uid = EntityUid::from_type_name_and_id(
                    EntityTypeName::from_str("Http::Action").map_err(|e| e.to_string())?,
                    EntityId::new(&http.method),
                );
                (action_uid, resource, context)
            }
        };
        let action_uid_for_entities = action_uid.clone();
        let request = Request::new(agent, action_uid, resource, context, Some(&self.schema))
            .map_err(|e| err(&e))?;
        // The action's place in the hierarchy (groups such as "session"), from the schema.
        let mut pending = vec![action_uid_for_entities];
        while let Some(uid) = pending.pop() {
            if let Some((e, parents)) = self.action_entities.get(&uid)
                && !entities.iter().any(|x| x.uid() == uid)
            {
                pending.extend(parents.iter().cloned());
                entities.push(e.clone());
            }
        }
        let entities = Entities::from_entities(entities, None).map_err(|e| err(&e))?;
        Ok((request, entities))
    }
}

/// The resource of an HTTP request, `Http::Path::"<target>/<path>"`, and every shorter
/// prefix as its ancestors, ending at `Http::Path::"<target>"` whose parent is the
/// target: so `resource in Http::Path::"billing/v1"` covers everything below it.
fn http_path_entities(
    target: &str,
    path: &str,
    target_uid: &EntityUid,
    entities: &mut Vec<Entity>,
) -> Result<EntityUid, String> {
    let type_name = EntityTypeName::from_str("Http::Path").map_err(|e| e.to_string())?;
    let path_uid =
        |id: &str| EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id));
    let mut id = target.to_owned();
    let mut uids = vec![path_uid(&id)];
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        id.push('/');
        id.push_str(segment);
        uids.push(path_uid(&id));
    }
    // Each entity's parents are all its ancestors (Cedar wants the transitive closure
    // unless it computes it; giving it keeps the request self-contained).
    for (i, uid) in uids.iter().enumerate() {
        let mut parents: HashSet<EntityUid> = uids.iter().take(i).cloned().collect();
        parents.insert(target_uid.clone());
        entities.push(Entity::new_no_attrs(uid.clone(), parents));
    }
    uids.pop().ok_or_else(|| "empty HTTP path".to_owned())
}

/// The resource of a Kubernetes request: a `K8s::Resource` with its attributes, in
/// `K8s::Namespace::"<target>/<namespace>"` when namespaced, and in the target.
fn k8s_entities(
    target: &str,
    k: &K8sAction,
    target_uid: &EntityUid,
    entities: &mut Vec<Entity>,
) -> Result<EntityUid, String> {
    let ty = |name: &str| EntityTypeName::from_str(name).map_err(|e| e.to_string());
    let mut parents = HashSet::from([target_uid.clone()]);
    if !k.namespace.is_empty() {
        let ns = EntityUid::from_type_name_and_id(
            ty("K8s::Namespace")?,
            EntityId::new(format!("{target}/{}", k.namespace)),
        );
        entities.push(Entity::new_no_attrs(
            ns.clone(),
            HashSet::from([target_uid.clone()]),
        ));
        parents.insert(ns);
    }
    // The id names the request's object in full, so that two requests share an
    // entity only when they are about the same thing.
    let id = format!(
        "{target}/{}/{}/{}/{}/{}",
        k.namespace, k.group, k.resource, k.subresource, k.name
    );
    let uid = EntityUid::from_type_name_and_id(ty("K8s::Resource")?, EntityId::new(id));
    let attrs = HashMap::from(
        [
            ("group", &k.group),
            ("resource", &k.resource),
            ("subresource", &k.subresource),
            ("namespace", &k.namespace),
            ("name", &k.name),
        ]
        .map(|(key, value)| {
            (
                key.to_owned(),
                RestrictedExpression::new_string(value.clone()),
            )
        }),
    );
    entities.push(Entity::new(uid.clone(), attrs, parents).map_err(|e| e.to_string())?);
    Ok(uid)
}

/// `DELETE on public.orders`, `CALL of pg_terminate_backend`, `connecting to shop`,
/// `POST /billing/v1/refunds`.
pub fn describe(action: &Action, target: &TargetRef) -> String {
    match action {
        Action::Connect => format!("connecting to target \"{}\"", target.name),
        Action::Mcp(m) => match m.kind.as_str() {
            "call" => format!("calling tool \"{}\" of \"{}\"", m.name, target.name),
            "read" => format!("reading resource \"{}\" of \"{}\"", m.name, target.name),
            _ => format!("getting prompt \"{}\" of \"{}\"", m.name, target.name),
        },
        Action::K8s(k) if k.verb == "discover" => {
            format!("discovery ({}) on cluster \"{}\"", k.path, target.name)
        }
        Action::K8s(k) => {
            let mut what = match (k.group.as_str(), k.subresource.as_str()) {
                ("", "") => k.resource.clone(),
                ("", sub) => format!("{}/{sub}", k.resource),
                (g, "") => format!("{}.{g}", k.resource),
                (g, sub) => format!("{}.{g}/{sub}", k.resource),
            };
            if !k.name.is_empty() {
                what.push_str(&format!(" \"{}\"", k.name));
            }
            // A namespace's own request names it already.
            let is_the_namespace = k.resource == "namespaces" && k.subresource.is_empty();
            if !k.namespace.is_empty() && !is_the_namespace {
                what.push_str(&format!(" in namespace \"{}\"", k.namespace));
            }
            format!("{} {what} on cluster \"{}\"", k.verb, target.name)
        }
        Action::Http(http) => format!(
            "{} /{}{}{}",
            http.method.to_uppercase(),
            target.name,
            if http.path.is_empty() { "" } else { "/" },
            http.path
        ),
        Action::Sql(sql) => {
            let kind = sql.kind.to_uppercase();
            match &sql.object {
                SqlObject::Target => format!("{kind} on target \"{}\"", target.name),
                SqlObject::Table { schema, name } => format!("{kind} on {schema}.{name}"),
                SqlObject::Function {
                    schema: Some(s),
                    name,
                } => format!("{kind} of function {s}.{name}"),
                SqlObject::Function { schema: None, name } => format!("{kind} of function {name}"),
            }
        }
    }
}

fn render(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn short_digest(text: &str) -> String {
    // FNV-1a: a stable, dependency-free fingerprint; not a security boundary (the
    // policies themselves are in the operator's hands).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests;
