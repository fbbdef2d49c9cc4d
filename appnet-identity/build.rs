//! Generates the Istio CSR API bindings when feature `istio-ca` is on.
//!
//! The `.proto` is compiled in-process with protox, so no `protoc` binary is
//! needed; tonic-prost-build then writes the prost messages and the tonic
//! client and server to `OUT_DIR`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "istio-ca")]
    istio_ca()?;
    Ok(())
}

#[cfg(feature = "istio-ca")]
fn istio_ca() -> Result<(), Box<dyn std::error::Error>> {
    // Cargo sets this for build scripts of packages built with the feature;
    // the `cfg` above is the same fact seen by the compiler.
    if std::env::var_os("CARGO_FEATURE_ISTIO_CA").is_none() {
        return Ok(());
    }
    const PROTO: &str = "proto/istio/v1/auth/ca.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    let fds = protox::compile([PROTO], ["proto"])?;
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The crate builds its own mTLS channels; no `connect(String)` helper.
        .build_transport(false)
        .emit_rerun_if_changed(false)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
