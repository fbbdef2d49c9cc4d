//! Generates the Istio workload API (`istio.workload`) and authorization
//! (`istio.security`) messages from `proto/`.
//!
//! The `.proto` files are compiled in-process with protox, so no `protoc`
//! binary is needed; tonic-prost-build writes the prost messages to
//! `OUT_DIR`. Type names are enabled so each message implements
//! `prost::Name` and reports its `type.googleapis.com/...` URL. Maps are
//! `BTreeMap`s so that encoding is deterministic.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const PROTOS: [&str; 2] = [
        "proto/istio/workload/workloadapi.proto",
        "proto/istio/security/authorization.proto",
    ];
    println!("cargo:rerun-if-changed=build.rs");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");
    config.btree_map(["."]);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
