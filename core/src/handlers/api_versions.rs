//! ApiVersions (key 18): which APIs and versions the gateway serves.

use crate::client_info::ClientInfo;
use crate::protocol::api::SUPPORTED_APIS;
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::api_versions_request::ApiVersionsRequest;
use crate::protocol::generated::api_versions_response::{ApiVersion, ApiVersionsResponse};
use crate::protocol::{ApiKey, VersionRange};

/// Answers an ApiVersions request of a served `version`.
pub(crate) fn handle(
    req: &ApiVersionsRequest,
    version: i16,
    client: &mut ClientInfo,
    sasl_listener: bool,
) -> ApiVersionsResponse {
    if version >= 3 {
        // Kafka validates the KIP-511 fields and answers INVALID_REQUEST, with no API list.
        if !valid_software_field(&req.client_software_name)
            || !valid_software_field(&req.client_software_version)
        {
            tracing::warn!(name = %req.client_software_name, version = %req.client_software_version, "invalid client software name or version");
            return ApiVersionsResponse {
                error_code: ErrorCode::INVALID_REQUEST.into(),
                ..ApiVersionsResponse::default()
            };
        }
        client.software_name = Some(req.client_software_name.to_string());
        client.software_version = Some(req.client_software_version.to_string());
        tracing::debug!(name = %req.client_software_name, version = %req.client_software_version, "client software");
    }
    ApiVersionsResponse {
        error_code: ErrorCode::NONE.into(),
        api_keys: SUPPORTED_APIS
            .iter()
            // The SASL requests only where they can be used, so that a client does not try
            // them on a listener without SASL.
            .filter(|a| {
                sasl_listener || !matches!(a.key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
            })
            .map(|a| ApiVersion {
                api_key: a.key as i16,
                min_version: a.versions.min,
                max_version: a.versions.max,
                ..ApiVersion::default()
            })
            .collect(),
        ..ApiVersionsResponse::default()
    }
}

/// The answer to an ApiVersions version above ours (to be encoded as v0): UNSUPPORTED_VERSION
/// with the versions of ApiVersions that we do serve, so that the client retries with one.
pub(crate) fn unsupported_version(served: VersionRange) -> ApiVersionsResponse {
    ApiVersionsResponse {
        error_code: ErrorCode::UNSUPPORTED_VERSION.into(),
        api_keys: vec![ApiVersion {
            api_key: ApiKey::ApiVersions as i16,
            min_version: served.min,
            max_version: served.max,
            ..ApiVersion::default()
        }],
        ..ApiVersionsResponse::default()
    }
}

/// Kafka's rule for the software name and version: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
}

#[cfg(test)]
mod tests {
    use super::valid_software_field;

    #[test]
    fn software_fields_follow_kafkas_pattern() {
        for ok in [
            "librdkafka",
            "2.3.0",
            "a",
            "apache-kafka-java",
            "kafka-python.2",
        ] {
            assert!(valid_software_field(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", ".", "a b", "ünï", "a_b"] {
            assert!(!valid_software_field(bad), "{bad}");
        }
    }
}
