//! What a client says about itself.

/// What the client told us about itself (KIP-511 and the request header's client id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The `client.id` of the latest request.
    pub client_id: Option<String>,
    /// Client software name from ApiVersions v3+.
    pub software_name: Option<String>,
    /// Client software version from ApiVersions v3+.
    pub software_version: Option<String>,
}
