//! `context.json`: facts a ticket gives that no API records.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Context {
    pub caller: Option<String>,
    pub expect_public: Option<bool>,
    pub request: Option<RequestContext>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RequestContext {
    pub url: Option<String>,
    pub method: Option<String>,
    pub status: Option<i64>,
    pub time: Option<String>,
}
