//! The per-type discovery services (CDS, EDS, LDS, RDS) over the same
//! stream driver as ADS: each stream carries one type.

use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_server as cds;
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server as eds;
use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_server as lds;
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server as rds;
use tokio_stream::StreamExt;

use super::server::{BoxStream, XdsServer};
use crate::protocol::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Request,
    StreamKind, Variant, type_url,
};

macro_rules! per_type {
    (
        $module:ident, $service:ident, $server:ident, $type_url:expr,
        $stream_ty:ident, $stream_fn:ident, $delta_ty:ident, $delta_fn:ident, $fetch_fn:ident,
        $method:ident, $doc:literal
    ) => {
        #[tonic::async_trait]
        impl $module::$service for XdsServer {
            type $stream_ty = BoxStream<DiscoveryResponse>;
            type $delta_ty = BoxStream<DeltaDiscoveryResponse>;

            async fn $stream_fn(
                &self,
                request: tonic::Request<tonic::Streaming<DiscoveryRequest>>,
            ) -> Result<tonic::Response<Self::$stream_ty>, tonic::Status> {
                let inbound = request.into_inner().map(|r| r.map(Request::Sotw));
                let kind = StreamKind::Single($type_url.to_owned());
                let responses = self.open_stream(Variant::Sotw, kind, inbound);
                let out = responses.filter_map(|r| r.into_sotw().map(Ok));
                Ok(tonic::Response::new(Box::pin(out)))
            }

            async fn $delta_fn(
                &self,
                request: tonic::Request<tonic::Streaming<DeltaDiscoveryRequest>>,
            ) -> Result<tonic::Response<Self::$delta_ty>, tonic::Status> {
                let inbound = request.into_inner().map(|r| r.map(Request::Delta));
                let kind = StreamKind::Single($type_url.to_owned());
                let responses = self.open_stream(Variant::Delta, kind, inbound);
                let out = responses.filter_map(|r| r.into_delta().map(Ok));
                Ok(tonic::Response::new(Box::pin(out)))
            }

            async fn $fetch_fn(
                &self,
                request: tonic::Request<DiscoveryRequest>,
            ) -> Result<tonic::Response<DiscoveryResponse>, tonic::Status> {
                self.fetch($type_url, request.into_inner())
                    .map(tonic::Response::new)
            }
        }

        impl XdsServer {
            #[doc = $doc]
            pub fn $method(&self) -> $module::$server<XdsServer> {
                let limit = self.max_message_size();
                $module::$server::new(self.clone())
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit)
            }
        }
    };
}

per_type!(
    cds,
    ClusterDiscoveryService,
    ClusterDiscoveryServiceServer,
    type_url::CLUSTER,
    StreamClustersStream,
    stream_clusters,
    DeltaClustersStream,
    delta_clusters,
    fetch_clusters,
    cds_service,
    "The CDS service (state of the world, delta and fetch) over the same store."
);
per_type!(
    eds,
    EndpointDiscoveryService,
    EndpointDiscoveryServiceServer,
    type_url::ENDPOINT,
    StreamEndpointsStream,
    stream_endpoints,
    DeltaEndpointsStream,
    delta_endpoints,
    fetch_endpoints,
    eds_service,
    "The EDS service (state of the world, delta and fetch) over the same store."
);
per_type!(
    lds,
    ListenerDiscoveryService,
    ListenerDiscoveryServiceServer,
    type_url::LISTENER,
    StreamListenersStream,
    stream_listeners,
    DeltaListenersStream,
    delta_listeners,
    fetch_listeners,
    lds_service,
    "The LDS service (state of the world, delta and fetch) over the same store."
);
per_type!(
    rds,
    RouteDiscoveryService,
    RouteDiscoveryServiceServer,
    type_url::ROUTE,
    StreamRoutesStream,
    stream_routes,
    DeltaRoutesStream,
    delta_routes,
    fetch_routes,
    rds_service,
    "The RDS service (state of the world, delta and fetch) over the same store."
);
