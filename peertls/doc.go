// Package peertls secures the connections between embedkv nodes with
// mutual TLS, built from PEM files that are re-read when they change.
//
// Every embedkv process is a node that both accepts connections from its
// peers and dials them, over the node's single TCP port. With peertls,
// both ends of every connection present a certificate signed by a CA the
// other trusts, and each learns the other's node ID from that certificate:
// the ID a peer announces in its transport preamble is only a claim, the
// one in its certificate is proven.
//
// # Use
//
//	l, err := peertls.New(peertls.Files{
//		CertFile: "/etc/embedkv/node.crt",
//		KeyFile:  "/etc/embedkv/node.key",
//		CAFile:   "/etc/embedkv/ca.crt",
//	}, peertls.Options{Logger: logger})
//	if err != nil {
//		return err // names the bad file and why: unreadable, mismatched, untrusted, expired
//	}
//	serverTLS := l.ServerConfig()           // for the listener
//	clientTLS := l.ClientConfig("node-2")   // for dialling node-2
//
// After a handshake, PeerIdentity gives the node ID of the other end.
// ServerConfig accepts any node whose certificate chains to the CA
// bundle; the caller decides whether that node may join (for example by
// comparing PeerIdentity with the node ID announced in the preamble, or
// with the cluster membership). ClientConfig pins the identity of the
// node being dialled, or accepts any node of the CA when given "".
//
// # Identity
//
// A node's ID is carried in its certificate, as a URI subject alternative
// name
//
//	embedkv://node/<id>
//
// where <id> is the node ID, path-escaped (NodeURI builds it, Identity
// reads it). The first URI SAN with scheme "embedkv" and host "node"
// decides: if it is malformed (an empty ID, a further slash, a port, a
// query or a fragment) the certificate has no identity, rather than
// silently falling back to something else. URI SANs with other schemes or
// hosts are ignored, so the certificate may carry SPIFFE IDs and the like.
//
// The embedkv://node URI SAN is also what marks a certificate as an
// embedkv node certificate, and it is the only source of the ID: the
// subject common name is never used. A certificate without that URI,
// such as a client or server certificate the same CA issued for another
// purpose, has no identity whatever its common name, and New refuses it
// as the node's own certificate, as handshakes refuse it from a peer (at
// both ends: the refusing side aborts the handshake). Otherwise any
// certificate from the CA, for a name that happens to equal a node ID,
// could pass for that node.
//
// # With package transport
//
// Set transport.Config.ServerTLS to ServerConfig() (it already demands and
// verifies client certificates, although its ClientAuth reads
// RequireAnyClientCert), and make Config.ClientTLS and ClientConfig.TLS
// return ClientConfig(id) with the ID of the node at the address being
// dialled, or ClientConfig("") when it is not known. In Config.Admit,
// compare PeerIdentity(*info.TLS) with info.Hello.NodeID, so that a node
// cannot announce another node's ID, and check that the ID belongs to the
// cluster. Note that the transport limits node IDs to 255 bytes in its
// preamble, while certificates have no such limit.
//
// Host names and IP addresses in certificates are not checked: nodes are
// addressed by ID, and the ID is what is verified. An address may change
// hands; a node ID signed by the cluster CA does not.
//
// # Making certificates
//
// Use a CA dedicated to the cluster (or to a set of clusters that may talk
// to each other): any certificate it signs with an embedkv://node URI SAN
// and the usages below is a valid member, so it must not be a public or
// company-wide CA, nor one that lets its requesters choose URI SANs.
// Certificates it signs without that URI are not nodes. Give each node a
// certificate with
//
//   - the URI SAN embedkv://node/<id>, which is required, for example
//     with the OpenSSL extension "subjectAltName = URI:embedkv://node/node-1"
//     (escape characters outside letters, digits and -._~ in the ID as
//     NodeURI does); the common name may be anything;
//   - the extended key usages serverAuth and clientAuth, both, because
//     every node both accepts and dials (New checks that the certificate
//     verifies for each);
//   - key usage digitalSignature (and keyEncipherment for RSA keys);
//   - optionally host names and IP addresses, for other TLS clients.
//
// The certificate file may hold intermediate CA certificates after the
// node's, which are then sent to peers. The CA file may hold several CA
// certificates, which is how a CA is rotated (below). Keys may be ECDSA,
// Ed25519 or RSA, in PKCS #1, PKCS #8 or SEC 1 PEM, as crypto/tls reads
// them.
//
// # Verification
//
// Chains are verified by VerifyConnection callbacks rather than by
// crypto/tls itself, so that the CA bundle in use can change without
// handing out new tls.Config values: the server config uses
// tls.RequireAnyClientCert and the client config InsecureSkipVerify, and
// both verify the peer's chain with crypto/x509 against the current CA
// bundle, at Options.Now, for clientAuth and serverAuth usage
// respectively, then require a node identity. A consequence is that
// tls.ConnectionState.VerifiedChains is empty: use PeerCertificates, as
// PeerIdentity does. Both configs require TLS 1.2 or later.
//
// # Reload
//
// The files are re-read while the process runs, so that certificates can
// be renewed without a restart. There is no goroutine: during handshakes,
// at most once per Options.ReloadInterval, one handshake stats the three
// files and, if a size or modification time differs from when the current
// material was loaded, reads and checks them all again, exactly as New
// does. If they pass, the new certificate, key and CA bundle replace the
// old ones at once, for every handshake that starts afterwards, through
// the tls.Config values already handed out. Established connections are
// not affected: TLS does not re-authenticate them.
//
// If the new files fail a check, the material in use is kept, the failure
// is logged at Warn level (once per distinct failure) and returned by
// LastReloadError, and the files are tried again at every later check
// until they pass; a certificate that is not yet valid is thus picked up
// when it becomes valid. A replacement certificate naming another node is
// a failure (ErrIdentity): a process does not change identity. Reload
// forces a reload at once, whether or not the files changed, and returns
// its error.
//
// Because the three files are read one after the other, a rotation that
// rewrites them separately may be seen half done; the check then fails
// (the key does not match the certificate, say), the old material stays,
// and the next check after the last write succeeds. Write each file
// atomically (to a temporary file, then rename), as Kubernetes does for
// mounted secrets.
//
// To rotate the CA without refusing anyone, first add the new CA
// certificate to every node's CA file next to the old one, then give each
// node a certificate from the new CA, then remove the old CA certificate.
//
// # Caveats
//
//   - Changes are noticed by size and modification time: a rewrite that
//     keeps both (such as cp -p of a same-sized file) is not seen until
//     Reload is called.
//   - The material in use is not re-checked as time passes: if the
//     certificate expires and is not renewed, the node keeps presenting
//     it and peers refuse it. Renew well before NotAfter.
//   - There is no revocation checking (CRL, OCSP). Remove a compromised
//     node by rotating the CA, or refuse its ID when admitting it.
//   - Options.Now only sets the time certificates are verified at; the
//     reload interval is measured on the real clock.
//   - Errors name files and certificate subjects, never key material, but
//     they do quote the node IDs involved.
package peertls
