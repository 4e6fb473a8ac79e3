//! Understanding one client message: the statement text parsed into actions, the
//! session's decision on them, the event that records both, and what the client
//! direction does next (a [`Step`]). Allowed statements' session effects (SQL-level
//! prepared statements) are applied here, so later messages are decided against them.
//!
//! Anything that cannot be parsed or decided is refused (fail closed).

use airlock_approvals::StatementDigest;
use airlock_engine::effects::{changes_nothing, undone_unless_committed};
use airlock_engine::masking::redact::may_appear_in_mask;
use airlock_engine::masking::rules::Apply;
use airlock_engine::sql::{ParseOptions, ResultShape, SqlError, StatementEffect};
use airlock_model::{Action, Decision, EventKind, Verdict};
use airlock_session::{EventDraft, HoldTicket};
use bytes::BytesMut;
use serde_json::json;

use super::client::ClientSide;
use super::refusal::{denial_reply, refusal, refused_verdict};
use super::state::ResultFacts;
use crate::codec::{CodecError, frontend};
use crate::reply::{self, Reply};
use crate::syntax::{self, SyntaxAnswer};
use crate::translate::{self, Prepared};

/// A statement string as the relay understands it.
#[derive(Default)]
struct Understood {
    /// The actions of all its statements (and of prepared statements it executes).
    actions: Vec<Action>,
    /// Session effects to apply if it is allowed.
    effects: Vec<StatementEffect>,
    /// It may be sent before its record is durable (see `ClientSide::understand`).
    deferrable: bool,
    /// Running it may change how later text parses (see `changes_parsing`).
    changes_parsing: bool,
    /// What its results are made of (and those of prepared statements it executes).
    shapes: Vec<ResultShape>,
    /// What the statements it prepares (SQL `PREPARE`) return, by name.
    prepared_shapes: Vec<(String, ResultShape)>,
    /// The texts of statements prepared earlier that it executes (`EXECUTE name`): an
    /// approval is bound to them too.
    executes: Vec<String>,
}

/// Why a statement string could not be decided: the reason recorded, and for text the
/// grammar rejects, how the client is answered.
struct Unparsed {
    reason: String,
    syntax: Option<Box<SyntaxAnswer>>,
}

impl From<String> for Unparsed {
    fn from(reason: String) -> Self {
        Unparsed {
            reason,
            syntax: None,
        }
    }
}

/// What the client direction does with an inspected message.
pub(super) enum Step {
    Forward {
        sync: bool,
    },
    Terminate,
    /// Answer the client ourselves (and with ReadyForQuery if `true`), drop the frame.
    Refuse(Reply, bool),
    /// Send the server `replacement` instead of the frame: a statement that fails at
    /// once, whose error the server→client side swaps for Airlock's refusal. The server
    /// then itself skips to the next Sync and reports the right transaction state, so
    /// client and server agree on it in every protocol path. `sync` when the replacement
    /// is a Query (answered with ReadyForQuery).
    Substitute {
        replacement: BytesMut,
        sync: bool,
    },
    /// Policy holds the statement for approval (`as_query`: a simple Query, else an
    /// Execute). Nothing of it is forwarded until it is decided.
    Hold {
        ticket: HoldTicket,
        as_query: bool,
    },
    /// The session's credential expired or was revoked: close the session with this.
    Close(String),
}

/// An approval claimed for the statement at the front of the buffer: when it is
/// inspected again and policy still holds exactly it, it runs.
pub(super) struct Grant {
    pub(super) approval_id: String,
    pub(super) digest: String,
    pub(super) policy_version: String,
}

impl ClientSide<'_> {
    /// Inspects one complete message from the client: decides and records what it
    /// runs (`drafts`), and says what to do with it.
    pub(super) fn inspect(
        &mut self,
        tag: u8,
        body: &[u8],
        drafts: &mut Vec<EventDraft>,
    ) -> Result<Step, CodecError> {
        // Expiry and revocation take effect at the next statement that runs something.
        if matches!(tag, b'Q' | b'E' | b'F')
            && let Some(problem) = self.session.credential_problem()
        {
            return Ok(Step::Close(problem));
        }
        Ok(match tag {
            b'Q' => self.inspect_query(body, drafts)?,
            b'P' => self.inspect_parse(body, drafts)?,
            b'B' => self.inspect_bind(body, drafts)?,
            b'E' => self.inspect_execute(body, drafts)?,
            b'C' => {
                let (kind, name) = frontend::close(body)?;
                self.statements.closed(kind, name);
                Step::Forward { sync: false }
            }
            b'S' => {
                // The server runs what came before at this Sync (or earlier): anything
                // pipelined after it waits if a setting that changes parsing was executed.
                self.barrier = std::mem::take(&mut self.barrier_at_sync);
                Step::Forward { sync: true }
            }
            b'D' | b'H' | b'c' | b'f' => Step::Forward { sync: false },
            b'X' => Step::Terminate,
            b'F' => {
                drafts.push(EventDraft::new(
                    EventKind::Refused,
                    json!({ "message": "FunctionCall", "reason": "fast-path function calls bypass SQL inspection" }),
                ));
                Step::Refuse(reply::function_call_refused(), true)
            }
            other => return Err(CodecError::UnexpectedTag { tag: other }),
        })
    }

    /// A simple Query: every statement in it decided together.
    fn inspect_query(
        &mut self,
        body: &[u8],
        drafts: &mut Vec<EventDraft>,
    ) -> Result<Step, CodecError> {
        let text = frontend::query(body)?;
        let mut syntax = None;
        let (mut verdict, u) = match self.understand(text) {
            Ok(u) => (self.verdict_for(&u.actions), u),
            Err(e) => {
                syntax = e.syntax;
                (refused_verdict(e.reason), Understood::default())
            }
        };
        let Understood {
            actions,
            effects,
            deferrable,
            changes_parsing: parsing,
            shapes,
            prepared_shapes,
            executes,
        } = u;
        let mut digest = String::new();
        let mut extra = Vec::new();
        if matches!(verdict.decision, Decision::Hold { .. }) {
            digest = executes
                .iter()
                .fold(StatementDigest::new(text), |d, t| d.executes(t))
                .finish();
            if let Some(id) = self.granted(&verdict, &digest) {
                verdict.decision = Decision::Allow;
                extra.push(("approval_id", json!(id)));
            }
        }
        drafts.push(translate::statement_draft(
            EventKind::Query,
            Some(text),
            Some(&verdict.decision),
            translate::verdict_detail(&verdict, &actions, &extra),
        ));
        Ok(match verdict.decision {
            Decision::Allow => {
                self.barrier = parsing;
                self.may_change |= !deferrable;
                self.facts = self.facts_of(&shapes);
                self.apply(text, effects, prepared_shapes);
                Step::Forward { sync: true }
            }
            Decision::Hold { .. } => Step::Hold {
                ticket: HoldTicket {
                    statement: shown_to_approver(text, &executes),
                    params: json!([]),
                    digest,
                    verdict,
                },
                as_query: true,
            },
            Decision::Deny { .. } => match syntax {
                Some(answer) => self.refuse_unparsed(text, *answer, true),
                None => self.refuse_in_order(refusal(&verdict), true),
            },
        })
    }

    /// A Parse: decided now (and remembered with its statement), run at its Execute.
    fn inspect_parse(
        &mut self,
        body: &[u8],
        drafts: &mut Vec<EventDraft>,
    ) -> Result<Step, CodecError> {
        let p = frontend::parse(body)?;
        let mut syntax = None;
        let (verdict, actions, shapes) = match self.understand(p.text) {
            Ok(u) => (self.verdict_for(&u.actions), u.actions, u.shapes),
            Err(e) => {
                syntax = e.syntax;
                (refused_verdict(e.reason), Vec::new(), Vec::new())
            }
        };
        let detail = translate::verdict_detail(
            &verdict,
            &actions,
            &[
                ("name", json!(p.name)),
                ("param_types", json!(p.param_types)),
            ],
        );
        drafts.push(translate::statement_draft(
            EventKind::Parse,
            Some(p.text),
            Some(&verdict.decision),
            detail,
        ));
        let held = matches!(verdict.decision, Decision::Hold { .. });
        let refused =
            matches!(verdict.decision, Decision::Deny { .. }).then(|| refusal(&verdict).message);
        self.statements.prepared(
            p.name,
            Prepared {
                text: p.text.to_owned(),
                actions,
                refused,
                shapes: shapes.into(),
                held,
                param_types: p.param_types.clone(),
            },
        );
        Ok(match verdict.decision {
            // A Parse runs nothing: a setting changes at Execute (see there), and
            // a held statement waits for approval at its Execute, where its
            // parameters are known.
            Decision::Allow | Decision::Hold { .. } => Step::Forward { sync: false },
            Decision::Deny { .. } => match syntax {
                Some(answer) => self.refuse_unparsed(p.text, *answer, false),
                None => self.refuse_in_order(refusal(&verdict), false),
            },
        })
    }

    /// A Bind: recorded with its parameters; refused if its statement was.
    fn inspect_bind(
        &mut self,
        body: &[u8],
        drafts: &mut Vec<EventDraft>,
    ) -> Result<Step, CodecError> {
        let b = frontend::bind(body)?;
        let prepared = self.statements.bound(&b);
        drafts.push(translate::statement_draft(
            EventKind::Bind,
            prepared.as_ref().map(|p| p.text.as_str()),
            None,
            json!({ "portal": b.portal, "statement_name": b.statement, "params": translate::recorded_params(&b, prepared.as_ref().map(|p| p.param_types.as_slice()).unwrap_or(&[])) }),
        ));
        Ok(match prepared {
            Some(p) => match &p.refused {
                None => Step::Forward { sync: false },
                Some(message) => self.refuse_in_order(denial_reply(message.clone(), None), false),
            },
            None => self.refuse_in_order(
                denial_reply(format!("airlock: prepared statement \"{}\" is unknown to Airlock, so it cannot be decided", b.statement), None),
                false,
            ),
        })
    }

    /// An Execute: its portal's statement decided again, and held here if policy
    /// holds it (its parameters are known by now).
    fn inspect_execute(
        &mut self,
        body: &[u8],
        drafts: &mut Vec<EventDraft>,
    ) -> Result<Step, CodecError> {
        let (portal, max_rows) = frontend::execute(body)?;
        let bound = self.statements.portal(portal).cloned();
        let prepared = bound.as_ref().map(|b| b.prepared.clone());
        // Decided again at every execution: a policy reload applies at once.
        let mut verdict = match &prepared {
            Some(p) if p.refused.is_none() => self.verdict_for(&p.actions),
            Some(p) => refused_verdict(p.refused.clone().unwrap_or_default()),
            None => refused_verdict(format!(
                "portal \"{portal}\" is unknown to Airlock, so what it runs cannot be decided"
            )),
        };
        let held = bound.and_then(|b| b.held);
        let mut extra = vec![("portal", json!(portal)), ("max_rows", json!(max_rows))];
        if matches!(verdict.decision, Decision::Hold { .. }) {
            match &held {
                Some(h) => {
                    if let Some(id) = self.granted(&verdict, &h.digest) {
                        verdict.decision = Decision::Allow;
                        extra.push(("approval_id", json!(id)));
                    }
                }
                // Policy changed between Parse and Execute: the Bind kept nothing
                // an approval could be bound to.
                None => {
                    verdict = refused_verdict(
                        "policy now holds this statement for approval, but it was prepared before that; prepare it again (Parse, Bind, Execute) to ask for approval".into(),
                    )
                }
            }
        }
        let actions = prepared
            .as_ref()
            .map(|p| p.actions.clone())
            .unwrap_or_default();
        let detail = translate::verdict_detail(&verdict, &actions, &extra);
        drafts.push(translate::statement_draft(
            EventKind::Execute,
            prepared.as_ref().map(|p| p.text.as_str()),
            Some(&verdict.decision),
            detail,
        ));
        Ok(match verdict.decision {
            Decision::Allow => {
                if actions.iter().any(changes_parsing) {
                    self.barrier_at_sync = true;
                }
                if let Some(p) = &prepared {
                    self.facts = self.facts_of(&p.shapes);
                }
                self.may_change |= !self.may_defer(&actions);
                Step::Forward { sync: false }
            }
            Decision::Hold { .. } => match (prepared, held) {
                (Some(p), Some(h)) => Step::Hold {
                    ticket: HoldTicket {
                        statement: p.text.clone(),
                        params: h.params,
                        digest: h.digest,
                        verdict,
                    },
                    as_query: false,
                },
                _ => self.refuse_in_order(refusal(&verdict), false),
            },
            Decision::Deny { .. } => self.refuse_in_order(refusal(&verdict), false),
        })
    }

    /// Classifies `text` into the actions of all its statements; an EXECUTE adds the
    /// prepared statement's actions. Returns the effects to apply if it is allowed, and
    /// whether every statement may be sent before its record is durable (`may_defer`,
    /// or transaction control that leaves nothing behind if the session dies).
    fn understand(&self, text: &str) -> Result<Understood, Unparsed> {
        let statements = self
            .classifier
            .classify(text, self.parse_options())
            .map_err(|e| Unparsed {
                syntax: syntax::answer(text, &e).map(Box::new),
                reason: match e {
                    SqlError::Syntax(m) => {
                        format!("the statement could not be parsed, so it was not run: {m}")
                    }
                    SqlError::DoBody(m) => format!(
                        "the statement could not be parsed, so it was not run: in the DO block: {m}"
                    ),
                    other => {
                        format!("the statement could not be inspected, so it was not run: {other}")
                    }
                },
            })?;
        let mut actions = Vec::new();
        let mut effects = Vec::new();
        let mut deferrable = true;
        let mut parsing = false;
        // PREPARE earlier in the same string counts for an EXECUTE later in it.
        let mut prepared_here: Vec<(String, Vec<Action>, ResultShape)> = Vec::new();
        let mut shapes = Vec::new();
        let mut executes = Vec::new();
        for st in statements {
            let own: Vec<Action> = st.actions.into_iter().map(Action::Sql).collect();
            // Transaction control is judged by what it is: BEGIN or a savepoint cannot
            // change settings and leaves nothing behind if the session dies.
            match &st.effect {
                StatementEffect::Transaction(control) => {
                    deferrable &= !control.lasting();
                    parsing |= control.may_change_settings();
                }
                _ => {
                    deferrable &= self.may_defer(&own);
                    parsing |= own.iter().any(changes_parsing);
                }
            }
            actions.extend(own);
            if let StatementEffect::Prepare {
                name,
                actions: inner,
            } = &st.effect
            {
                prepared_here.push((
                    name.clone(),
                    inner.iter().cloned().map(Action::Sql).collect(),
                    st.result.clone(),
                ));
            }
            if let StatementEffect::Execute { name } = &st.effect {
                if let Some((_, inner, shape)) =
                    prepared_here.iter().rev().find(|(n, _, _)| n == name)
                {
                    parsing |= inner.iter().any(changes_parsing);
                    actions.extend(inner.iter().cloned());
                    shapes.push(shape.clone());
                    effects.push(st.effect);
                    continue;
                }
                match self.statements.get(name) {
                    Some(p) if p.refused.is_none() => {
                        parsing |= p.actions.iter().any(changes_parsing);
                        actions.extend(p.actions.iter().cloned());
                        shapes.extend(p.shapes.iter().cloned());
                        executes.push(p.text.clone());
                    }
                    Some(_) => {
                        return Err(Unparsed::from(format!(
                            "prepared statement \"{name}\" was refused when it was prepared"
                        )));
                    }
                    None => {
                        return Err(Unparsed::from(format!(
                            "prepared statement \"{name}\" is unknown to Airlock, so it cannot be decided"
                        )));
                    }
                }
            }
            if !matches!(st.effect, StatementEffect::Prepare { .. }) {
                shapes.push(st.result);
            }
            effects.push(st.effect);
        }
        if self.masking
            && let Some(reason) = shapes.iter().find_map(unmaskable_copy)
        {
            return Err(reason.into());
        }
        Ok(Understood {
            actions,
            effects,
            deferrable,
            changes_parsing: parsing,
            shapes,
            prepared_shapes: prepared_here
                .into_iter()
                .map(|(name, _, shape)| (name, shape))
                .collect(),
            executes,
        })
    }

    /// Whether an allowed statement may be sent before its record is durable (its
    /// answer then waits at the gate): a plain read, or inside a transaction block a
    /// data change that the server rolls back if Airlock dies before the record is.
    fn may_defer(&self, actions: &[Action]) -> bool {
        if self.in_block {
            undone_unless_committed(actions, self.catalog)
        } else {
            changes_nothing(actions, self.catalog)
        }
    }

    /// The approval claimed for exactly this held statement (same digest, same policy
    /// version), if any: it then runs. A claimed approval that does not match is
    /// dropped (it was used up when claimed).
    fn granted(&mut self, verdict: &Verdict, digest: &str) -> Option<String> {
        let grant = self.grant.take()?;
        (grant.digest == digest && grant.policy_version == verdict.policy_version)
            .then_some(grant.approval_id)
    }

    fn verdict_for(&self, actions: &[Action]) -> Verdict {
        self.session.decide(actions, self.catalog)
    }

    /// What the masking side must know of results made as `shapes` say: the rule for
    /// computed columns (made from a column a rule names, or from a whole row) and the
    /// COPYs.
    fn facts_of(&self, shapes: &[ResultShape]) -> ResultFacts {
        let mut facts = ResultFacts::default();
        let Some(masker) = self.session.masker() else {
            return facts;
        };
        for shape in shapes {
            let mut rules: Vec<Apply> = shape
                .computed_from
                .iter()
                .filter_map(|name| masker.name_is_masked(name))
                .collect();
            if shape.whole_row {
                rules.extend(masker.strictest_column_rule());
            }
            let own = rules.into_iter().reduce(Apply::stricter);
            if let Some(rule) = &own {
                facts.computed = Some(match facts.computed.take() {
                    Some(c) => c.stricter(rule.clone()),
                    None => rule.clone(),
                });
            }
            if let Some(copy) = &shape.copy_out {
                facts.copies.push_back((copy.clone(), own));
            }
        }
        facts
    }

    fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            standard_conforming_strings: self.shared.with(|s| s.standard_conforming_strings),
        }
    }

    /// Session effects of an allowed simple Query: SQL-level prepared statements.
    fn apply(
        &mut self,
        text: &str,
        effects: Vec<StatementEffect>,
        prepared_shapes: Vec<(String, ResultShape)>,
    ) {
        for effect in effects {
            match effect {
                StatementEffect::Prepare { name, actions } => {
                    let shapes = prepared_shapes
                        .iter()
                        .rev()
                        .find(|(n, _)| *n == name)
                        .map(|(_, s)| vec![s.clone()])
                        .unwrap_or_default()
                        .into();
                    self.statements.prepared(
                        &name,
                        Prepared {
                            text: text.to_owned(),
                            actions: actions.into_iter().map(Action::Sql).collect(),
                            refused: None,
                            shapes,
                            held: false,
                            param_types: Vec::new(),
                        },
                    )
                }
                StatementEffect::Deallocate { name } => self.statements.deallocate(name.as_deref()),
                StatementEffect::Execute { .. }
                | StatementEffect::Transaction(_)
                | StatementEffect::None => {}
            }
        }
    }
}

/// Why a `COPY ... TO` could not be masked, if it could not: binary rows carry typed
/// lengths a mask cannot be put into, and a delimiter that a mask may contain would
/// shift the columns.
fn unmaskable_copy(shape: &ResultShape) -> Option<String> {
    let copy = shape.copy_out.as_ref()?;
    if copy.binary {
        return Some(
            "COPY TO in binary format cannot be masked, so it was not run; use FORMAT text or csv"
                .into(),
        );
    }
    match copy.delimiter {
        Some(d) if may_appear_in_mask(d) => Some(format!(
            "COPY TO with the delimiter '{}' cannot be masked (masks may contain it), so it was not run; use tab, comma or '|'",
            char::from(d)
        )),
        _ => None,
    }
}

/// Whether running the action can change how the server parses later text
/// (`standard_conforming_strings`), so that nothing after it may be classified first.
fn changes_parsing(action: &Action) -> bool {
    let Action::Sql(sql) = action else {
        return false;
    };
    match sql.kind.as_str() {
        "set" => matches!(
            sql.flags.variable.as_str(),
            "standard_conforming_strings" | "all" | ""
        ),
        // RESET ALL / DISCARD ALL, and ROLLBACK undoing a SET inside the transaction.
        "discard" | "transaction" => true,
        "call" => {
            matches!(&sql.object, airlock_model::SqlObject::Function { name, .. } if name == "set_config")
        }
        _ => false,
    }
}

/// The statement as an approver reads it: the text, then the prepared statements it
/// executes.
fn shown_to_approver(text: &str, executes: &[String]) -> String {
    let mut shown = text.to_owned();
    for e in executes {
        shown.push_str("\n-- which executes the prepared statement: ");
        shown.push_str(e);
    }
    shown
}
