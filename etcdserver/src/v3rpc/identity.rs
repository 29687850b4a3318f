//! Who a request is from (etcd's `AuthInfoFromCtx`): the user of the auth token in its
//! metadata, checked against the member's auth store, and how that identity travels in a
//! proposal's header so that the permission checks at apply see it.

use std::future::Future;

use api::etcdserverpb::{InternalRaftRequest, RequestHeader};
use auth::{AuthError, AuthInfo, AuthStore};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::core::ServerCore;
use crate::error::ServerError;

/// The metadata keys a client sends its token under: clientv3's, then the gateway's.
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

/// The auth token of a request, if it carries one.
pub(crate) fn request_token(metadata: &MetadataMap) -> Option<String> {
    TOKEN_KEYS.iter().find_map(|key| {
        let value = metadata.get(*key)?;
        Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
    })
}

/// The identity of `request`: `AuthInfo::default()` (no user) without a token, else the user
/// its token stands for. A simple token is looked up once this member has applied the entry
/// that assigned it (waiting at most the request timeout); unknown, expired or forged tokens
/// fail with `etcdserver: invalid auth token`.
///
/// The token is read before the returned future starts, so it does not borrow `request`
/// (a streaming request is not `Sync`).
pub(crate) fn auth_info<'a, C: ServerCore, T>(
    core: &'a C,
    request: &Request<T>,
) -> impl Future<Output = Result<AuthInfo, Status>> + Send + 'a {
    let token = request_token(request.metadata());
    async move {
        match token {
            None => Ok(AuthInfo::default()),
            Some(token) => token_auth_info(core, &token).await.map_err(Status::from),
        }
    }
}

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

/// The identity a committed request was proposed on behalf of.
pub(crate) fn proposer_of(req: &InternalRaftRequest) -> AuthInfo {
    match &req.header {
        Some(h) => AuthInfo {
            username: h.username.clone(),
            revision: h.auth_revision,
        },
        None => AuthInfo::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_token_then_authorization() {
        let mut md = MetadataMap::new();
        assert_eq!(request_token(&md), None);
        md.insert("authorization", "b.2".parse().unwrap());
        assert_eq!(request_token(&md).as_deref(), Some("b.2"));
        md.insert("token", "a.1".parse().unwrap());
        assert_eq!(request_token(&md).as_deref(), Some("a.1"));
    }

    #[test]
    fn the_identity_travels_in_the_header() {
        let info = AuthInfo {
            username: "alice".into(),
            revision: 7,
        };
        let req = on_behalf_of(info.clone(), InternalRaftRequest::default());
        assert_eq!(proposer_of(&req), info);
        assert_eq!(
            proposer_of(&InternalRaftRequest::default()),
            AuthInfo::default()
        );
    }
}
