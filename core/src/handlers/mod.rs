//! One module per API: each turns an already-decoded request into a response.

pub(crate) mod api_versions;
