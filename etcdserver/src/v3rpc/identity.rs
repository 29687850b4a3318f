//! Who a request is from (etcd's `AuthInfoFromCtx`): the user of the auth token in its
//! metadata, checked against the member's auth store, and how that identity travels in a
//! proposal's header so that the permission checks at apply see it.

use std::future::Future;

use api::etcdserverpb::{InternalRaftRequest, RequestHeader};
use auth::{AuthError, AuthInfo, AuthStore};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Request, Status};

use crate::core::ServerCore;
use crate::error::ServerError;

/// The metadata keys a client sends its token under: clientv3's, then the gateway's.
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

/// The auth token of a request, if it carries one: a handle on the metadata's bytes (shared,
/// not copied: this runs for every request while auth is on).
pub(crate) fn request_token(metadata: &MetadataMap) -> Option<AsciiMetadataValue> {
    TOKEN_KEYS
        .iter()
        .find_map(|key| metadata.get(*key).cloned())
}

/// The identity of `request`: the user its token stands for; without a token, the CN of its
/// client certificate on a `--client-cert-auth` listener; else `AuthInfo::default()` (no user).
/// A simple token is looked up once this member has applied the entry that assigned it
/// (waiting at most the request timeout); unknown, expired or forged tokens fail with
/// `etcdserver: invalid auth token`.
///
/// The token is read before the returned future starts, so it does not borrow `request`
/// (a streaming request is not `Sync`).
pub(crate) fn auth_info<'a, C: ServerCore, T>(
    core: &'a C,
    request: &Request<T>,
) -> impl Future<Output = Result<AuthInfo, Status>> + Send + 'a {
    let token = request_token(request.metadata());
    let cert_user = match token {
        Some(_) => None,
        None => client_cert_user(request),
    };
    async move {
        match (token, cert_user) {
            (Some(token), _) => {
                // Metadata that is not visible ASCII cannot name a token we issued.
                let token = token
                    .to_str()
                    .map_err(|_| ServerError::Auth(AuthError::InvalidAuthToken))?;
                token_auth_info(core, token).await.map_err(Status::from)
            }
            // etcd's AuthInfoFromTLS: the certificate's CN at the current auth revision, the
            // user's existence left to the permission check.
            (None, Some(username)) => Ok(AuthInfo {
                username,
                revision: core.auth_store().revision(),
            }),
            (None, None) => Ok(AuthInfo::default()),
        }
    }
}

/// Without a token, on a `--client-cert-auth` listener: the verified client certificate's CN
/// (empty if it has none). Requests relayed by the JSON gateway (`grpcgateway-accept`
/// metadata) carry no certificate identity, as in etcd.
fn client_cert_user<T>(request: &Request<T>) -> Option<String> {
    if request.metadata().contains_key(GATEWAY_ACCEPT) {
        return None;
    }
    crate::transport::client_cert_common_name(request)
}

/// The metadata key etcd's gateway adds to the requests it relays.
const GATEWAY_ACCEPT: &str = "grpcgateway-accept";

/// The identity a token stands for, as [`auth_info`] finds it.
pub(crate) async fn token_auth_info<C: ServerCore>(
    core: &C,
    token: &str,
) -> Result<AuthInfo, ServerError> {
    if let Some(index) = AuthStore::simple_token_index(token) {
        // As etcd: a token whose entry is not applied in time is as unknown as a forged one.
        if core.wait_applied(index).await.is_err() {
            return Err(AuthError::InvalidAuthToken.into());
        }
    }
    Ok(core.auth_store().auth_info_from_token(token)?)
}

/// The header of a proposal made on behalf of `info` (its id is set by the proposer).
pub(crate) fn request_header(info: AuthInfo) -> RequestHeader {
    RequestHeader {
        id: 0,
        username: info.username,
        auth_revision: info.revision,
    }
}

/// `req` proposed on behalf of `info`: the checks at apply see this identity.
pub(crate) fn on_behalf_of(info: AuthInfo, mut req: InternalRaftRequest) -> InternalRaftRequest {
    req.header = Some(request_header(info));
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_token_then_authorization() {
        let mut md = MetadataMap::new();
        let token = |md: &MetadataMap| request_token(md).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(token(&md), None);
        md.insert("authorization", "b.2".parse().unwrap());
        assert_eq!(token(&md).as_deref(), Some("b.2"));
        md.insert("token", "a.1".parse().unwrap());
        assert_eq!(token(&md).as_deref(), Some("a.1"));
    }

    #[test]
    fn the_identity_travels_in_the_header() {
        let info = AuthInfo {
            username: "alice".into(),
            revision: 7,
        };
        let req = on_behalf_of(info, InternalRaftRequest::default());
        let header = req.header.unwrap();
        assert_eq!(
            (header.username.as_str(), header.auth_revision),
            ("alice", 7)
        );
    }
}
