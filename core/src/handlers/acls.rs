//! DescribeAcls (key 29), CreateAcls (key 30) and DeleteAcls (key 31). Without an
//! authorizer they are answered as a Kafka broker without one answers them,
//! SECURITY_DISABLED for the request or for each creation and deletion filter, so that admin
//! tools say at once that ACLs are not enabled rather than that the broker is too old. With
//! one, permissions are Iggy's: INVALID_REQUEST, with a message saying where they are.

use super::task::{kstr, Ctx, Step, Task};
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::create_acls_request::CreateAclsRequest;
use crate::protocol::generated::create_acls_response::{AclCreationResult, CreateAclsResponse};
use crate::protocol::generated::delete_acls_request::DeleteAclsRequest;
use crate::protocol::generated::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsResponse,
};
use crate::protocol::generated::describe_acls_response::DescribeAclsResponse;
use crate::protocol::Response;
use crate::work::Outcome;

/// Kafka's words for it.
const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

/// An ACL request, answered without the backend.
#[derive(Debug)]
pub(crate) enum AclsTask {
    /// Whatever the filter: no ACL is kept.
    Describe,
    Create(CreateAclsRequest),
    Delete(DeleteAclsRequest),
}

/// With an authorizer, permissions are Iggy's: Kafka's ACLs are neither kept nor changed.
const IGGY_PERMISSIONS: &str = "Permissions are Iggy's, not ACLs: read and change them with \
     Iggy's CLI or SDK (the user's global, stream and topic permissions), or in the gateway's \
     users file when --authorization is users-file";

impl Task for AclsTask {
    fn step(&mut self, ctx: &Ctx<'_>, _results: Vec<Outcome>) -> Step {
        let (code, message) = if ctx.config.authorizer.is_some() {
            (ErrorCode::INVALID_REQUEST.into(), IGGY_PERMISSIONS)
        } else {
            (ErrorCode::SECURITY_DISABLED.into(), NO_AUTHORIZER)
        };
        Step::Respond(match self {
            Self::Describe => Response::DescribeAcls(DescribeAclsResponse {
                error_code: code,
                error_message: Some(kstr(message)),
                ..DescribeAclsResponse::default()
            }),
            Self::Create(r) => Response::CreateAcls(CreateAclsResponse {
                results: r
                    .creations
                    .iter()
                    .map(|_| AclCreationResult {
                        error_code: code,
                        error_message: Some(kstr(message)),
                        ..AclCreationResult::default()
                    })
                    .collect(),
                ..CreateAclsResponse::default()
            }),
            Self::Delete(r) => Response::DeleteAcls(DeleteAclsResponse {
                filter_results: r
                    .filters
                    .iter()
                    .map(|_| DeleteAclsFilterResult {
                        error_code: code,
                        error_message: Some(kstr(message)),
                        ..DeleteAclsFilterResult::default()
                    })
                    .collect(),
                ..DeleteAclsResponse::default()
            }),
        })
    }
}
