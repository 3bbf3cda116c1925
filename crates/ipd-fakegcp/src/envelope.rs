//! Google's JSON error envelope (api-shapes §0.1) and the answers built from it.

use serde_json::{Value, json};

/// One HTTP answer: status, JSON body, extra headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn ok(body: Value) -> Reply {
        Reply {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// The `google.rpc.Code` name Google's HTTP mapping gives a status.
pub fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        405 => "FAILED_PRECONDITION",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// The HTTP status for a `google.rpc.Code` name (for bundle envelopes without `code`).
pub fn code_for_status(status: &str) -> u16 {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ABORTED" | "ALREADY_EXISTS" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

/// An error answer without `details`.
pub fn error(code: u16, message: impl Into<String>) -> Reply {
    Reply {
        status: code,
        body: json!({"error": {"code": code, "message": message.into(), "status": status_name(code)}}),
        headers: Vec::new(),
    }
}

/// An error answer with one `google.rpc.ErrorInfo` detail.
pub fn error_with_info(
    code: u16,
    message: impl Into<String>,
    reason: &str,
    domain: &str,
    metadata: Value,
) -> Reply {
    Reply {
        status: code,
        body: json!({"error": {
            "code": code,
            "message": message.into(),
            "status": status_name(code),
            "details": [{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": domain,
                "metadata": metadata,
            }],
        }}),
        headers: Vec::new(),
    }
}

/// 403 `PERMISSION_DENIED` / `IAM_PERMISSION_DENIED` for `permission` on `resource`.
pub fn permission_denied(permission: &str, resource: &str) -> Reply {
    error_with_info(
        403,
        format!("Permission '{permission}' denied on resource '{resource}' (or it may not exist)."),
        "IAM_PERMISSION_DENIED",
        "iam.googleapis.com",
        json!({"permission": permission}),
    )
}

/// 403 as Resource Manager **v1** answers it (`projects.getAncestry` on a project the caller
/// cannot read, or that does not exist): the legacy envelope with `errors`, no `ErrorInfo`
/// and no permission named.
pub fn permission_denied_v1() -> Reply {
    let m = "The caller does not have permission";
    Reply {
        status: 403,
        body: json!({"error": {
            "code": 403,
            "message": m,
            "errors": [{"message": m, "domain": "global", "reason": "forbidden"}],
            "status": "PERMISSION_DENIED",
        }}),
        headers: Vec::new(),
    }
}

pub fn not_found(message: impl Into<String>) -> Reply {
    error(404, message)
}

pub fn invalid_argument(message: impl Into<String>) -> Reply {
    error(400, message)
}

/// 401 as Google answers a request without (or with a wrong) access token.
pub fn unauthenticated(missing: bool) -> Reply {
    let see = "Expected OAuth 2 access token, login cookie or other valid authentication credential. \
               See https://developers.google.com/identity/sign-in/web/devconsole-project.";
    let r = if missing {
        error_with_info(
            401,
            format!("Request is missing required authentication credential. {see}"),
            "CREDENTIALS_MISSING",
            "googleapis.com",
            json!({}),
        )
    } else {
        error(
            401,
            format!("Request had invalid authentication credentials. {see}"),
        )
    };
    r.with_header(
        "www-authenticate",
        "Bearer realm=\"https://accounts.google.com/\"".to_string(),
    )
}

/// 429 `RESOURCE_EXHAUSTED` for a read quota of `service`.
pub fn resource_exhausted(service: &str, consumer: &str) -> Reply {
    error_with_info(
        429,
        format!(
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service '{service}' for consumer '{consumer}'."
        ),
        "RATE_LIMIT_EXCEEDED",
        "googleapis.com",
        json!({"service": service, "consumer": consumer, "quota_metric": format!("{service}/read_requests")}),
    )
}

/// 403 `PERMISSION_DENIED` / `SERVICE_DISABLED`: the API `service` (titled `title`) is not
/// enabled in the project numbered `project_number` (the consumer of the credentials).
pub fn service_disabled(title: &str, service: &str, project_number: &str) -> Reply {
    error_with_info(
        403,
        format!(
            "{title} has not been used in project {project_number} before or it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/{service}/overview?project={project_number} then retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems and retry."
        ),
        "SERVICE_DISABLED",
        "googleapis.com",
        json!({"consumer": format!("projects/{project_number}"), "service": service}),
    )
}

pub fn unavailable() -> Reply {
    error(503, "The service is currently unavailable.")
}

/// An OAuth 2.0 error answer (RFC 6749 §5.2 shape, not Google's API envelope), as
/// `www.googleapis.com/oauth2/*/tokeninfo` gives it.
pub fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    Reply {
        status,
        body: json!({"error": error, "error_description": description}),
        headers: Vec::new(),
    }
}

/// tokeninfo's answer for a token it does not know (or an expired one).
pub fn invalid_token() -> Reply {
    oauth_error(400, "invalid_token", "Invalid Value")
}

/// The answer for a status chosen by fault injection.
pub fn injected(
    status: u16,
    permission: &str,
    resource: &str,
    service: &str,
    consumer: &str,
) -> Reply {
    match status {
        403 => permission_denied(permission, resource),
        429 => resource_exhausted(service, consumer),
        503 => unavailable(),
        401 => unauthenticated(false),
        404 => not_found(format!("Resource '{resource}' was not found")),
        400 => invalid_argument("Request contains an invalid argument."),
        _ => error(status, "Internal error encountered."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_is_the_documented_shape() {
        let r = permission_denied("run.services.get", "projects/p/locations/l/services/s");
        assert_eq!(r.status, 403);
        let e = &r.body["error"];
        assert_eq!(e["code"], 403);
        assert_eq!(e["status"], "PERMISSION_DENIED");
        assert_eq!(
            e["message"],
            "Permission 'run.services.get' denied on resource 'projects/p/locations/l/services/s' (or it may not exist)."
        );
        assert_eq!(
            e["details"][0]["@type"],
            "type.googleapis.com/google.rpc.ErrorInfo"
        );
        assert_eq!(e["details"][0]["reason"], "IAM_PERMISSION_DENIED");
        assert_eq!(
            e["details"][0]["metadata"]["permission"],
            "run.services.get"
        );
        let parsed = ipd_model::doc::ApiError::from_envelope(&r.body);
        assert!(parsed.is_some_and(
            |a| a.is_permission_denied() && a.permission.as_deref() == Some("run.services.get")
        ));
    }

    #[test]
    fn status_names_round_trip() {
        for c in [400, 401, 403, 404, 429, 503, 500] {
            assert_eq!(code_for_status(status_name(c)), c);
        }
    }
}
