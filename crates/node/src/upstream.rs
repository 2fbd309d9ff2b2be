//! Adapts holdfast-origin's client to the frontend's `Upstream` trait.

use holdfast_frontend::upstream::{BoxError, FetchFuture};
use holdfast_frontend::{Fetch, Fetched, Upstream, UpstreamError};
use holdfast_origin::{Client, ErrorChain, OriginRequest, PassBody};
use http_body_util::BodyExt;

/// The origin client as the request handler sees it.
pub struct OriginUpstream {
    client: Client,
}

impl OriginUpstream {
    pub fn new(client: Client) -> OriginUpstream {
        OriginUpstream { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl Upstream for OriginUpstream {
    fn fetch(&self, request: Fetch) -> FetchFuture<'_> {
        let request = OriginRequest {
            method: request.method,
            path_and_query: request.path_and_query,
            host: request.host,
            accept_encoding: request.accept_encoding,
            if_none_match: request.if_none_match,
            if_modified_since: request.if_modified_since,
            body: request.body.map(|pass| PassBody {
                body: pass.body,
                content_type: pass.content_type,
                content_length: pass.content_length,
            }),
            hold: request.hold,
            affinity: Some(request.affinity),
            via: request.via,
            headers: request.headers,
        };
        Box::pin(async move {
            match self.client.send(request).await {
                // The frontend logs and answers with these reasons: each
                // one says the whole chain, origin and cause included.
                Ok((origin, response)) => Ok(Fetched {
                    origin,
                    response: response.map(|body| body.map_err(|e| BoxError::from(ErrorChain(&e).to_string())).boxed()),
                }),
                Err(error) => {
                    Err(UpstreamError { reason: ErrorChain(&error).to_string(), status: error.kind().client_status() })
                }
            }
        })
    }
}
