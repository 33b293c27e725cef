//! TLS for the gateway: rustls (with ring) answering ALPN `h2` and `http/1.1`, from a
//! certificate chain and key in PEM, and the development certificate authority behind
//! `--tls-dev`.

use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A listener's TLS: a certificate chain and its key, ready to accept connections.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    /// The SHA-256 of the leaf certificate, for logs.
    fingerprint: String,
}

/// What `--tls-dev` makes: a certificate authority for clients to trust, and a server
/// certificate it signed.
pub struct DevCertificate {
    /// The authority's certificate, for clients (`curl --cacert`, Node's `ca`,
    /// `NODE_EXTRA_CA_CERTS`, boto3's `verify`).
    pub ca_pem: String,
    /// The authority's private key, kept to sign a new server certificate when the names
    /// change, so clients keep trusting the same authority.
    pub ca_key_pem: String,
    /// The server certificate followed by the authority's.
    pub cert_pem: String,
    /// The server certificate's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tls(SHA-256 {})", self.fingerprint)
    }
}

impl Tls {
    /// TLS from a certificate chain (the server's certificate first) and its private key
    /// (PKCS#8, PKCS#1 or SEC1), both PEM.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Tls> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("reading the certificates: {e}"))?;
        let Some(leaf) = chain.first() else {
            anyhow::bail!("no certificate in it (expected a -----BEGIN CERTIFICATE----- block)");
        };
        let fingerprint = fingerprint(leaf);
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
            anyhow::anyhow!("reading the private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}")
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the private key does not fit the certificate")?;
        // Clients that speak HTTP/2 get it; hyper tells the two apart by the preface.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            fingerprint,
        })
    }

    /// The SHA-256 of the server's certificate, as `AB:CD:..`.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The SHA-256 of the first certificate in `pem`, as `AB:CD:..` (what browsers and
/// `openssl x509 -fingerprint -sha256` show); `None` if it holds none.
pub fn pem_fingerprint(pem: &[u8]) -> Option<String> {
    let cert = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    Some(fingerprint(&cert))
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(cert.as_ref());
    let hex: Vec<String> = digest.iter().map(|byte| format!("{byte:02X}")).collect();
    hex.join(":")
}

/// A server certificate for `names` (DNS names or IP addresses) signed by the authority
/// in `ca` (its certificate and key, PEM), or by a new authority when `ca` is `None`.
pub fn dev_certificate(
    names: &[String],
    ca: Option<(&str, &str)>,
) -> anyhow::Result<DevCertificate> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let (ca_pem, ca_key) = match ca {
        Some((ca_pem, ca_key_pem)) => {
            let key = KeyPair::from_pem(ca_key_pem).context("reading the authority's key")?;
            (ca_pem.to_owned(), key)
        }
        None => {
            let key = KeyPair::generate().context("making the authority's key")?;
            let params = ca_params();
            let cert = params.self_signed(&key).context("signing the authority")?;
            (cert.pem(), key)
        }
    };
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut params = CertificateParams::new(names.to_vec())
        .context("the certificate's names (DNS names or IP addresses)")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "nimbus development server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().context("making the server's key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the server's certificate")?;
    return Ok(DevCertificate {
        cert_pem: format!("{}{ca_pem}", cert.pem()),
        ca_pem,
        ca_key_pem,
        key_pem: key.serialize_pem(),
    });

    /// The authority's certificate: only its name and key identifier matter to the
    /// server certificates it signs, so the same parameters serve for signing later.
    fn ca_params() -> CertificateParams {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, "nimbus development CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "nimbus --tls-dev");
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dev_certificate_loads_and_a_new_one_keeps_its_authority() {
        let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let first = dev_certificate(&names, None).expect("a certificate");
        let tls =
            Tls::from_pem(first.cert_pem.as_bytes(), first.key_pem.as_bytes()).expect("loads");
        assert_eq!(tls.fingerprint().len(), 32 * 3 - 1);
        let second = dev_certificate(
            &["localhost".to_owned()],
            Some((&first.ca_pem, &first.ca_key_pem)),
        )
        .expect("a second certificate");
        assert_eq!(second.ca_pem, first.ca_pem);
        assert!(second.cert_pem.ends_with(&first.ca_pem));
        assert_ne!(second.key_pem, first.key_pem);
    }

    #[test]
    fn bad_pem_is_refused_with_what_is_wrong() {
        let dev = dev_certificate(&["localhost".to_owned()], None).expect("a certificate");
        let other = dev_certificate(&["localhost".to_owned()], None).expect("a certificate");
        let err = |cert: &str, key: &str| {
            format!(
                "{:#}",
                Tls::from_pem(cert.as_bytes(), key.as_bytes()).expect_err("refused")
            )
        };
        assert!(err("", &dev.key_pem).contains("no certificate"));
        assert!(err(&dev.cert_pem, "").contains("reading the private key"));
        assert!(err(&dev.cert_pem, &dev.cert_pem).contains("reading the private key"));
        assert!(
            err(&dev.cert_pem, &other.key_pem).contains("does not fit"),
            "{}",
            err(&dev.cert_pem, &other.key_pem)
        );
    }
}
