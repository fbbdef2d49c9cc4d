//! Figure 3: full mutual-TLS 1.3 handshakes, in memory.
//!
//! A [`TlsPair`] holds a client and a server config; [`TlsPair::handshake`]
//! makes a fresh `ClientConnection` and `ServerConnection` and moves TLS
//! records between them through a buffer until neither is handshaking. No
//! sockets, no threads, no clock other than the one rustls reads for
//! certificate validity.
//!
//! Two pairs, built alike so only the configs differ:
//! - *ours*: `appnet_identity::tls::{server_config, client_config}`, each
//!   side allowing exactly the other's SPIFFE ID;
//! - *plain*: rustls' own WebPKI verifiers (`WebPkiClientVerifier` on the
//!   server, `with_root_certificates` on the client), `with_single_cert` and
//!   `with_client_auth_cert`, the server certificate carrying the DNS name
//!   [`SERVER_NAME`].
//!
//! Both: TLS 1.3 only, ring provider, ALPN `h2`, no resumption (no session
//! cache, no tickets, client resumption disabled), ECDSA P-256 keys, and
//! each side presents a 3-certificate chain (leaf, intermediate, root)
//! issued by the same intermediate under the same root.

use std::ops::DerefMut;
use std::sync::Arc;
use std::time::SystemTime;

use appnet_identity::tls::{self, AllowedPeers, Credentials};
use appnet_identity::{CertificateDer, PrivateKeyDer, SpiffeId};
use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, RootCertStore, ServerConfig, ServerConnection,
};

use crate::BenchError;
use crate::pki::{LEAF_TTL, Pki};

/// The name the client dials, and the DNS SAN of the plain server's
/// certificate (the appnet configs ignore it).
pub const SERVER_NAME: &str = "server.test";

/// The ALPN protocol both pairs offer.
const ALPN: &[u8] = b"h2";

/// A full TLS 1.3 handshake with client auth takes 3 flights; anything far
/// past that is a bug, not a slow peer.
const MAX_FLIGHTS: usize = 16;

/// A client config and a server config meant for each other.
#[derive(Debug, Clone)]
pub struct TlsPair {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    server_name: ServerName<'static>,
}

/// Both ends of a completed handshake.
#[derive(Debug)]
pub struct Established {
    /// The client end.
    pub client: ClientConnection,
    /// The server end.
    pub server: ServerConnection,
    /// Flights of records exchanged (one direction each).
    pub flights: usize,
}

impl Established {
    /// The SPIFFE ID in the server's certificate, as the client saw it.
    pub fn client_saw(&self) -> Option<SpiffeId> {
        tls::peer_identity(&self.client)
    }

    /// The SPIFFE ID in the client's certificate, as the server saw it.
    pub fn server_saw(&self) -> Option<SpiffeId> {
        tls::peer_identity(&self.server)
    }

    /// The leaf certificate the server presented.
    pub fn server_leaf(&self) -> Option<&CertificateDer<'static>> {
        self.client.peer_certificates()?.first()
    }
}

impl TlsPair {
    /// The client config.
    pub fn client(&self) -> &Arc<ClientConfig> {
        &self.client
    }

    /// The server config.
    pub fn server(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    /// Runs one handshake to completion in memory. `scratch` carries the
    /// records; pass the same buffer every time to spare an allocation.
    ///
    /// # Errors
    /// [`BenchError::Tls`] if either end fails the handshake,
    /// [`BenchError::HandshakeStalled`] if it stops making progress.
    pub fn handshake(&self, scratch: &mut Vec<u8>) -> Result<Established, BenchError> {
        let mut client = ClientConnection::new(Arc::clone(&self.client), self.server_name.clone())?;
        let mut server = ServerConnection::new(Arc::clone(&self.server))?;
        let mut flights = 0;
        while client.is_handshaking() || server.is_handshaking() {
            if flights >= MAX_FLIGHTS {
                return Err(BenchError::HandshakeStalled { flights });
            }
            let to_server = flight(&mut client, &mut server, scratch)?;
            let to_client = flight(&mut server, &mut client, scratch)?;
            if to_server == 0 && to_client == 0 {
                return Err(BenchError::HandshakeStalled { flights });
            }
            flights += usize::from(to_server > 0) + usize::from(to_client > 0);
        }
        Ok(Established {
            client,
            server,
            flights,
        })
    }
}

/// Moves everything `from` wants to send into `to`, processing it as it
/// lands. Returns the bytes moved.
fn flight<A, B, DA, DB>(from: &mut A, to: &mut B, buf: &mut Vec<u8>) -> Result<usize, BenchError>
where
    A: DerefMut<Target = ConnectionCommon<DA>>,
    B: DerefMut<Target = ConnectionCommon<DB>>,
{
    buf.clear();
    while from.wants_write() {
        from.write_tls(buf)?;
    }
    let mut rest = buf.as_slice();
    while !rest.is_empty() {
        if to.read_tls(&mut rest)? == 0 {
            return Err(BenchError::HandshakeStalled { flights: 0 });
        }
        to.process_new_packets()?;
    }
    Ok(buf.len())
}

/// The two config pairs of figure 3 and who should see whom.
#[derive(Debug)]
pub struct HandshakeBench {
    ours: TlsPair,
    plain: TlsPair,
    client_id: SpiffeId,
    server_id: SpiffeId,
    plain_server_leaf: CertificateDer<'static>,
}

impl HandshakeBench {
    /// Issues the certificates, builds both pairs, and runs one handshake
    /// on each to check it authenticates the expected peers.
    ///
    /// # Errors
    /// A [`BenchError`] if any certificate or config cannot be made, or the
    /// check handshakes fail or see the wrong peer.
    pub fn new(now: SystemTime) -> Result<Self, BenchError> {
        let pki = Pki::generate(now)?;
        let client_id = pki.id("client")?;
        let server_id = pki.id("server")?;
        let client_svid = pki
            .intermediate
            .issue_svid(&client_id, pki.issued_at, LEAF_TTL)?;
        let server_svid = pki
            .intermediate
            .issue_svid(&server_id, pki.issued_at, LEAF_TTL)?;
        let server_name = ServerName::try_from(SERVER_NAME)
            .map_err(|e| BenchError::Tls(rustls::Error::General(e.to_string())))?;
        let alpn = vec![ALPN.to_vec()];

        let ours = TlsPair {
            client: Arc::new(tls::client_config(
                tls::fixed(Credentials::new(client_svid.clone(), pki.bundle.clone())?),
                AllowedPeers::Exactly(server_id.clone()),
                alpn.clone(),
            )?),
            server: Arc::new(tls::server_config(
                tls::fixed(Credentials::new(server_svid, pki.bundle.clone())?),
                AllowedPeers::Exactly(client_id.clone()),
                alpn.clone(),
            )?),
            server_name: server_name.clone(),
        };

        let (plain_server_chain, plain_server_key) = plain_server_certificate(&pki)?;
        let plain_server_leaf = plain_server_chain[0].clone();
        let mut roots = RootCertStore::empty();
        roots.add(pki.root.root().clone())?;
        let roots = Arc::new(roots);
        let provider = tls::provider();

        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()?;
        let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(plain_server_chain, plain_server_key)?;
        server.alpn_protocols = alpn.clone();
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;

        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(client_svid.chain().to_vec(), client_svid.key().clone_key())?;
        client.alpn_protocols = alpn;
        client.resumption = Resumption::disabled();

        let plain = TlsPair {
            client: Arc::new(client),
            server: Arc::new(server),
            server_name,
        };

        let bench = Self {
            ours,
            plain,
            client_id,
            server_id,
            plain_server_leaf,
        };
        bench.check()?;
        Ok(bench)
    }

    /// The appnet configs.
    pub fn ours(&self) -> &TlsPair {
        &self.ours
    }

    /// The plain rustls configs.
    pub fn plain(&self) -> &TlsPair {
        &self.plain
    }

    /// The client's SPIFFE ID (both pairs present the same client SVID).
    pub fn client_id(&self) -> &SpiffeId {
        &self.client_id
    }

    /// The appnet server's SPIFFE ID.
    pub fn server_id(&self) -> &SpiffeId {
        &self.server_id
    }

    /// The leaf the plain server presents (DNS SAN [`SERVER_NAME`]).
    pub fn plain_server_leaf(&self) -> &CertificateDer<'static> {
        &self.plain_server_leaf
    }

    /// Runs one handshake on each pair and checks who saw whom: with our
    /// configs each side sees the other's SPIFFE ID; with the plain ones the
    /// server sees the client's SPIFFE ID and the client the `server.test`
    /// leaf.
    ///
    /// # Errors
    /// A [`BenchError`] if a handshake fails or a peer is not the expected
    /// one.
    pub fn check(&self) -> Result<(), BenchError> {
        let mut scratch = Vec::new();
        let ours = self.ours.handshake(&mut scratch)?;
        expect_peer("client", &self.server_id, ours.client_saw())?;
        expect_peer("server", &self.client_id, ours.server_saw())?;
        let plain = self.plain.handshake(&mut scratch)?;
        expect_peer("server", &self.client_id, plain.server_saw())?;
        if plain.server_leaf() != Some(&self.plain_server_leaf) {
            return Err(BenchError::WrongServerCertificate);
        }
        Ok(())
    }
}

fn expect_peer(
    side: &'static str,
    expected: &SpiffeId,
    seen: Option<SpiffeId>,
) -> Result<(), BenchError> {
    if seen.as_ref() == Some(expected) {
        Ok(())
    } else {
        Err(BenchError::WrongPeer {
            side,
            expected: expected.clone(),
            seen,
        })
    }
}

/// A server leaf for [`SERVER_NAME`] signed by the appnet intermediate's
/// key (loaded back through rcgen), shaped like an SVID but with a DNS SAN,
/// with its chain up to the root and its key.
fn plain_server_certificate(
    pki: &Pki,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), BenchError> {
    let issuer = Issuer::from_ca_cert_der(
        pki.intermediate.certificate(),
        KeyPair::from_pem(&pki.intermediate.key_pem())?,
    )?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::DnsName(SERVER_NAME.try_into()?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = pki.issued_at.into();
    params.not_after = (pki.issued_at + LEAF_TTL).into();
    params.use_authority_key_identifier_extension = true;
    let leaf = params.signed_by(&key, &issuer)?.der().clone();
    let mut chain = vec![leaf];
    chain.extend(pki.intermediate.chain().iter().cloned());
    let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Ok((chain, key))
}
