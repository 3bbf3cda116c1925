//! The case a rule looks at: the evidence, the facts derived from it once, and helpers that
//! every rule shares (IAM evaluation, verdict policy, the target's names for fix commands).

use ipd_model::facts::{Caller, Facts, Gate};
use ipd_model::iam::Level;
use ipd_model::principal::Coverage;
use ipd_model::roles::{FUNCTIONS_INVOKER, Grants, grants_invoke};
use ipd_model::service::Service;
use ipd_model::token::{Token, TokenKind};
use ipd_model::{Evidence, Principal};

use crate::fix::Arg;
use crate::rule::{Outcome, RuleMeta, Verdict};

/// One binding that matters for the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRef {
    pub level: Level,
    pub role: String,
    pub member: String,
    pub condition: Option<String>,
    /// Why it only might apply (group membership, unknown custom role).
    pub why_maybe: Option<String>,
}

impl GrantRef {
    pub fn describe(&self) -> String {
        let mut s = format!("`{}` → `{}` on {}", self.role, self.member, self.level);
        if let Some(c) = &self.condition {
            s.push_str(&format!(" (condition `{c}`)"));
        }
        s
    }
}

/// How the IAM policies treat the caller.
#[derive(Debug, Clone, Default)]
pub struct IamView {
    /// Unconditional bindings with an invoke role whose member covers the caller.
    pub definite: Vec<GrantRef>,
    /// Conditional bindings that would grant if their condition holds.
    pub conditional: Vec<GrantRef>,
    /// Bindings that may grant (group membership, unknown custom role, `_withcond_`).
    pub maybe: Vec<GrantRef>,
    /// `deleted:` members with the caller's email on an invoke role.
    pub deleted: Vec<GrantRef>,
    /// `roles/cloudfunctions.invoker` bindings that cover the caller.
    pub functions_invoker: Vec<GrantRef>,
    /// Levels whose policy was read.
    pub read: Vec<Level>,
    /// Levels whose policy is absent, with why.
    pub unread: Vec<(Level, String)>,
}

pub struct Cx<'a> {
    pub ev: &'a Evidence,
    pub facts: Facts,
    /// IAM evaluated for the caller (empty when the caller is unknown).
    pub iam: IamView,
}

impl<'a> Cx<'a> {
    pub fn new(ev: &'a Evidence) -> Cx<'a> {
        let facts = Facts::derive(ev);
        let iam = match &facts.caller {
            Some(c) => evaluate_iam(ev, &c.principal),
            None => levels_only(ev),
        };
        Cx { ev, facts, iam }
    }

    pub fn service(&self) -> Option<&Service> {
        self.ev.service.present()
    }

    pub fn caller(&self) -> Option<&Caller> {
        self.facts.caller.as_ref()
    }

    pub fn token(&self) -> Option<&Token> {
        self.ev
            .token
            .as_ref()
            .filter(|t| t.kind != TokenKind::Empty)
    }

    pub fn status(&self) -> Option<i64> {
        self.facts.status()
    }

    pub fn gate(&self) -> Gate {
        self.facts.gate
    }

    /// The engine's denial policy, applied to every rule by `diagnose`: with no denial in the
    /// evidence, a rule whose cause presupposes a refusal is `not applicable` (it is not run),
    /// and any other finding is capped at `possible`.
    pub fn denial_policy(&self, meta: &RuleMeta, run: impl FnOnce() -> Outcome) -> Outcome {
        let d = &self.facts.denial;
        if !d.none_in_evidence() {
            return run();
        }
        if meta.needs_refusal {
            return Outcome::NotApplicable(
                "no denial in the evidence (see `denial`): this cause only explains a refused request".into(),
            );
        }
        match run() {
            Outcome::Fired(mut body, fixes) => {
                if body.verdict > Verdict::Possible {
                    body.verdict = Verdict::Possible;
                    body.explanation.push_str(&format!(
                        " No request was refused in the evidence ({}), so this stays possible until a refused request is shown.",
                        d.detail
                    ));
                }
                Outcome::Fired(body, fixes)
            }
            other => other,
        }
    }

    pub fn invoker_check_disabled(&self) -> bool {
        self.service().is_some_and(|s| s.invoker_iam_disabled)
    }

    /// Verdict for a token problem: bad tokens give 401. A 403, or a request that passed the
    /// gate, says the token looked at may not be the one that was sent.
    /// Why the token rules do not apply: with the invoker check off, Cloud Run checks no token.
    pub fn tokens_not_checked(&self) -> Option<String> {
        self.invoker_check_disabled()
            .then(|| "the invoker check is disabled; tokens are not checked".to_string())
    }

    pub fn token_verdict(&self) -> Verdict {
        if self.gate() == Gate::PassedGate {
            return Verdict::Possible;
        }
        match self.status() {
            None | Some(401) => Verdict::Confirmed,
            _ => Verdict::Possible,
        }
    }

    /// Verdict cap for an IAM problem: a missing permission gives 403. A 401 means the token
    /// was rejected before IAM was consulted.
    pub fn iam_verdict_cap(&self) -> Verdict {
        if self.gate() == Gate::PassedGate {
            return Verdict::Possible;
        }
        match self.status() {
            None | Some(403) => Verdict::Confirmed,
            _ => Verdict::Possible,
        }
    }

    /// A sentence about the status when it caps an IAM or token verdict, for explanations.
    pub fn status_caveat(&self, token_problem: bool) -> Option<String> {
        if self.gate() == Gate::PassedGate {
            return Some("the request log shows the request passed Cloud Run's gate (the container answered), so this cannot be what refused that request".into());
        }
        match (self.status(), token_problem) {
            (Some(403), true) => Some("the client saw 403, but a rejected token gives 401: the token examined may not be the one that was sent".into()),
            (Some(401), false) => Some("the client saw 401, which means the token was rejected before IAM was consulted: fix the token first, then this will matter".into()),
            (Some(404), _) => Some("the client saw 404, which the invoker check never returns".into()),
            _ => None,
        }
    }

    // Names for fix commands: real values where the evidence has them, placeholders otherwise.

    pub fn service_arg(&self) -> Arg {
        self.ev
            .service_name()
            .map(Arg::Lit)
            .unwrap_or(Arg::Placeholder("SERVICE"))
    }

    pub fn region_flag(&self) -> Arg {
        match self.ev.region() {
            Some(r) => Arg::Lit(format!("--region={r}")),
            None => Arg::FlagPlaceholder("--region", "REGION"),
        }
    }

    pub fn project_flag(&self) -> Arg {
        match self.ev.project() {
            Some(p) => Arg::Lit(format!("--project={p}")),
            None => Arg::FlagPlaceholder("--project", "PROJECT_ID"),
        }
    }

    pub fn service_name_or(&self, fallback: &str) -> String {
        self.ev
            .service_name()
            .unwrap_or_else(|| fallback.to_string())
    }

    pub fn project_or(&self, fallback: &str) -> String {
        self.ev.project().unwrap_or_else(|| fallback.to_string())
    }

    pub fn region_or(&self, fallback: &str) -> String {
        self.ev.region().unwrap_or_else(|| fallback.to_string())
    }

    /// The service's main URL, if known.
    pub fn main_url(&self) -> Option<String> {
        self.service().and_then(|s| s.all_urls().next().cloned())
    }

    /// The service account that should mint the caller's ID token, when the evidence names
    /// one: the caller (`--caller`, the token, `context.json`) when it is a service account,
    /// else the service account a caller configuration mints for.
    pub fn invoker_sa(&self) -> Option<String> {
        match self.caller().map(|c| &c.principal) {
            Some(Principal::ServiceAccount(e)) => Some(e.clone()),
            _ => self
                .ev
                .caller_configs
                .iter()
                .find_map(|c| c.service_account().map(str::to_string)),
        }
    }

    /// `FLAG=INVOKER_SA` with the service account the evidence names, else a placeholder.
    pub fn invoker_sa_flag(&self, flag: &'static str) -> Arg {
        match self.invoker_sa() {
            Some(e) => Arg::lit(format!("{flag}={e}")),
            None => Arg::FlagPlaceholder(flag, "INVOKER_SA_EMAIL"),
        }
    }

    /// `gcloud auth print-identity-token` for the caller and `audience`: impersonating the
    /// caller's service account (`--audiences`, `--include-email`); for a user, that user's
    /// own token (gcloud refuses `--audiences` for user accounts, and Cloud Run accepts the
    /// user token's gcloud client-ID audience); placeholders only where the evidence names
    /// neither.
    pub fn mint_token_argv(&self, audience: Option<&str>) -> Vec<Arg> {
        let mut v: Vec<Arg> = vec![
            "gcloud".into(),
            "auth".into(),
            "print-identity-token".into(),
        ];
        if let Some(Principal::User(e)) = self.caller().filter(|c| !c.public).map(|c| &c.principal)
        {
            v.push(Arg::lit(e.clone()));
            return v;
        }
        v.push(self.invoker_sa_flag("--impersonate-service-account"));
        v.push(match audience {
            Some(u) => Arg::lit(format!("--audiences={u}")),
            None => Arg::FlagPlaceholder("--audiences", "SERVICE_URL"),
        });
        if self.invoker_sa().is_some() {
            v.push("--include-email".into());
        }
        v
    }

    /// `gcloud run services add-iam-policy-binding SERVICE --member=M --role=R`.
    pub fn grant_argv(&self, member: &str, role: &str) -> Vec<Arg> {
        vec![
            "gcloud".into(),
            "run".into(),
            "services".into(),
            "add-iam-policy-binding".into(),
            self.service_arg(),
            self.region_flag(),
            self.project_flag(),
            Arg::lit(format!("--member={member}")),
            Arg::lit(format!("--role={role}")),
        ]
    }

    /// `gcloud run services update SERVICE FLAGS...`.
    pub fn update_argv(&self, flags: &[&str]) -> Vec<Arg> {
        let mut v: Vec<Arg> = vec![
            "gcloud".into(),
            "run".into(),
            "services".into(),
            "update".into(),
            self.service_arg(),
        ];
        v.push(self.region_flag());
        v.push(self.project_flag());
        v.extend(flags.iter().map(|f| Arg::lit(*f)));
        v
    }

    /// The Terraform resource granting `role` to `member` on the service.
    pub fn grant_terraform(&self, member: &str, role: &str) -> String {
        format!(
            "resource \"google_cloud_run_v2_service_iam_member\" \"invoker\" {{\n  project  = \"{}\"\n  location = \"{}\"\n  name     = \"{}\"\n  role     = \"{}\"\n  member   = \"{}\"\n}}",
            self.project_or("<PROJECT_ID>"),
            self.region_or("<REGION>"),
            self.service_name_or("<SERVICE>"),
            role,
            member
        )
    }

    /// A Terraform `google_cloud_run_v2_service` fragment setting `attrs` (already HCL).
    pub fn service_terraform(&self, attrs: &str) -> String {
        format!(
            "resource \"google_cloud_run_v2_service\" \"{}\" {{\n  name     = \"{}\"\n  location = \"{}\"\n  project  = \"{}\"\n  # ... the rest of the service as it is ...\n{}\n}}",
            self.service_name_or("service").replace('-', "_"),
            self.service_name_or("<SERVICE>"),
            self.region_or("<REGION>"),
            self.project_or("<PROJECT_ID>"),
            attrs
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// The v1 service YAML (`gcloud run services replace`) annotation lines to set.
    pub fn service_yaml(&self, annotations: &[(&str, &str)]) -> String {
        let mut s = format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {}\n  annotations:\n",
            self.service_name_or("<SERVICE>")
        );
        for (k, v) in annotations {
            s.push_str(&format!("    {k}: '{v}'\n"));
        }
        s.trim_end().to_string()
    }

    /// An evidence line naming the caller and where its identity came from.
    pub fn caller_line(&self) -> Option<String> {
        use ipd_model::facts::CallerSource;
        let c = self.caller()?;
        if c.public {
            return Some(format!(
                "caller: anyone (`{}`), because the owner wants the service public ({})",
                c.principal,
                self.intent_origin()
                    .unwrap_or_else(|| "--expect-public".into())
            ));
        }
        let from = match c.source {
            CallerSource::Token => "the token's `email` claim",
            CallerSource::Flag => "--caller",
            CallerSource::Bundle => "context.json",
            CallerSource::Adc => "the credentials in use",
            CallerSource::CallerConfig => "the caller configuration",
            CallerSource::AuditLog => "the audit log",
        };
        let mut line = format!("caller `{}` (from {from})", c.principal);
        if let Some(tp) = &self.facts.token_principal
            && tp != &c.principal
        {
            line.push_str(&format!("; the token speaks for `{tp}`"));
        }
        Some(line)
    }

    /// Where the owner's wish for a public service comes from, for evidence lines.
    pub fn intent_origin(&self) -> Option<String> {
        use ipd_model::facts::CallerSource;
        let i = self.facts.intent.as_ref()?;
        Some(match (i.source, &i.attempt) {
            (CallerSource::Flag, _) => "--expect-public".into(),
            (CallerSource::Bundle, _) => "`expect_public` in context.json".into(),
            (_, Some(a)) => format!(
                "audit entry `{}`: `{}` tried to {}",
                a.insert_id.as_deref().unwrap_or("?"),
                a.principal.as_deref().unwrap_or("?"),
                a.what()
            ),
            (_, None) => "the audit log".into(),
        })
    }

    /// Is the service public on purpose: an unconditional `allUsers` invoke binding, or the
    /// invoker check disabled?
    pub fn public_on_purpose(&self) -> bool {
        self.invoker_check_disabled() || public_binding(self.ev).is_some()
    }

    /// Evidence lines naming which policies were read and which were not.
    pub fn iam_coverage_lines(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !self.iam.read.is_empty() {
            v.push(format!(
                "IAM policies read: {}",
                self.iam
                    .read
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (l, why) in &self.iam.unread {
            v.push(format!("IAM policy of {l} not available: {why}"));
        }
        v
    }
}

fn levels_only(ev: &Evidence) -> IamView {
    let mut view = IamView::default();
    for (level, g) in ev.policies() {
        match g.absence() {
            None => view.read.push(level),
            Some(why) => view.unread.push((level, why)),
        }
    }
    view
}

/// Evaluates every allow policy for `caller`.
pub fn evaluate_iam(ev: &Evidence, caller: &Principal) -> IamView {
    let mut view = levels_only(ev);
    let hierarchy = ev.hierarchy();
    for (level, g) in ev.policies() {
        let Some(policy) = g.present() else { continue };
        for b in &policy.bindings {
            let grants = grants_invoke(&b.role, &ev.custom_roles);
            let condition = b.condition.as_ref().map(|c| c.expression.clone());
            for m in &b.members {
                let p = Principal::parse(m);
                let gref = |why: Option<String>| GrantRef {
                    level: level.clone(),
                    role: b.role.clone(),
                    member: m.clone(),
                    condition: condition.clone(),
                    why_maybe: why,
                };
                if let Principal::Deleted { inner, .. } = &p {
                    let same = match (inner.as_ref(), caller) {
                        // `deleted:principal://…/workforcePools/POOL/subject/S`.
                        (Principal::Uri(a), Principal::Uri(b)) => a == b,
                        _ => inner.email().is_some() && inner.email() == caller.email(),
                    };
                    if same && grants == Grants::Yes {
                        view.deleted.push(gref(None));
                    }
                    continue;
                }
                let matched = p.covers_in(caller, &hierarchy);
                let cov = matched.coverage;
                if cov == Coverage::No {
                    continue;
                }
                if b.role == FUNCTIONS_INVOKER && cov == Coverage::Yes {
                    view.functions_invoker.push(gref(None));
                }
                match (grants, cov) {
                    (Grants::Yes, Coverage::Yes) if condition.is_some() => view.conditional.push(gref(None)),
                    (Grants::Yes, Coverage::Yes) => view.definite.push(gref(None)),
                    (Grants::Yes, Coverage::Maybe) => view.maybe.push(gref(Some(
                        matched.why.clone().unwrap_or_else(|| format!(
                            "the caller may be a member of `{m}`; membership is not in the evidence"
                        )),
                    ))),
                    (Grants::Unknown, _) if b.is_withcond() => view.maybe.push(gref(Some(
                        "the policy was read at version 1, which hides conditional bindings (`_withcond_` role): re-read it with `--format=json` at policy version 3".into(),
                    ))),
                    (Grants::Unknown, _) => view.maybe.push(gref(Some(format!(
                        "`{}` is a custom role whose definition is not in the evidence (add `role-*.json` from `gcloud iam roles describe`)",
                        b.role
                    )))),
                    _ => {}
                }
            }
        }
    }
    view
}

/// Does a present service policy bind `allUsers` to an invoke role?
pub fn public_binding(ev: &Evidence) -> Option<String> {
    let policy = ev.service_policy.present()?;
    policy.bindings.iter().find_map(|b| {
        (b.condition.is_none()
            && grants_invoke(&b.role, &ev.custom_roles) == Grants::Yes
            && b.members.iter().any(|m| m == "allUsers"))
        .then(|| b.role.clone())
    })
}
