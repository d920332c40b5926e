package raft

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// nodeCert issues node id's certificate: usable as server and client, for
// 127.0.0.1, naming the node by the PeerURI convention.
func (ca *testCA) nodeCert(t *testing.T, clusterID uint64, id NodeID) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	uri, err := url.Parse(PeerURI(clusterID, id))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(id) + 100), Subject: pkix.Name{CommonName: uri.String()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, URIs: []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// mtlsConfig is node id's mutual-TLS config under ca.
func (ca *testCA) mtlsConfig(t *testing.T, id NodeID) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{ca.nodeCert(t, 42, id)},
		RootCAs:      ca.pool, ClientCAs: ca.pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
	}
}

// tlsHandshakeAs connects to addr with cfg and, if TLS succeeds, says hello
// as h; it returns the first failure.
func tlsHandshakeAs(t *testing.T, addr string, cfg *tls.Config, h hello) error {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	t.Cleanup(func() { conn.Close() })
	return handshakeAs(t, conn, h)
}

func TestTCPMutualTLSClusterAgreesAndRefusesPeersWithoutValidCertificates(t *testing.T) {
	ca := newTestCA(t, "raft test CA")
	c := newTCPCluster(t, 3, func(cfg *TCPConfig) {
		cfg.TLS = ca.mtlsConfig(t, cfg.ID)
		cfg.VerifyPeerIdentity = true
	})
	c.waitLeader()
	c.propose("over-mtls", 3)
	addr := c.addrs[1]
	victim := c.trans[1]
	asNode2 := hello{clusterID: 42, from: 2, to: 1, lane: laneUrgent}

	t.Run("no client certificate", func(t *testing.T) {
		before := victim.Stats().HandshakesRejected
		cfg := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
		if err := tlsHandshakeAs(t, addr, cfg, asNode2); err == nil {
			t.Fatal("a client without a certificate completed the handshake")
		}
		counterRose(t, "refusal", before, func() uint64 { return victim.Stats().HandshakesRejected })
	})
	t.Run("certificate from another CA", func(t *testing.T) {
		before := victim.Stats().HandshakesRejected
		rogue := newTestCA(t, "rogue CA")
		cfg := &tls.Config{Certificates: []tls.Certificate{rogue.nodeCert(t, 42, 2)}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
		if err := tlsHandshakeAs(t, addr, cfg, asNode2); err == nil {
			t.Fatal("a client with a rogue certificate completed the handshake")
		}
		counterRose(t, "refusal", before, func() uint64 { return victim.Stats().HandshakesRejected })
	})
	t.Run("valid certificate of another node", func(t *testing.T) {
		before := victim.Stats().HandshakesRejected
		cfg := &tls.Config{Certificates: []tls.Certificate{ca.nodeCert(t, 42, 3)}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
		err := tlsHandshakeAs(t, addr, cfg, asNode2)
		wantRefusal(t, err, ackBadIdentity)
		counterRose(t, "refusal", before, func() uint64 { return victim.Stats().HandshakesRejected })
	})
	t.Run("certificate of another cluster", func(t *testing.T) {
		cfg := &tls.Config{Certificates: []tls.Certificate{ca.nodeCert(t, 7, 2)}, RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
		wantRefusal(t, tlsHandshakeAs(t, addr, cfg, asNode2), ackBadIdentity)
	})
	t.Run("plain TCP", func(t *testing.T) {
		before := victim.Stats().HandshakesRejected
		if err := handshakeAs(t, dialRaw(t, addr), asNode2); err == nil {
			t.Fatal("a plain TCP client completed the handshake")
		}
		counterRose(t, "refusal", before, func() uint64 { return victim.Stats().HandshakesRejected })
	})
	c.propose("after-attempts", 3)
}

func TestTCPDialerRefusesServerWhoseCertificateNamesAnotherNode(t *testing.T) {
	ca := newTestCA(t, "raft test CA")
	// Node 2 listens with node 3's certificate: node 1 must not talk to it.
	b, err := NewTCPTransport(TCPConfig{ID: 2, ClusterID: 42, ListenAddr: "127.0.0.1:0",
		Peers: map[NodeID]string{1: ""}, TLS: ca.mtlsConfig(t, 3), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := NewTCPTransport(TCPConfig{ID: 1, ClusterID: 42, ListenAddr: "127.0.0.1:0",
		Peers: map[NodeID]string{2: b.Addr().String()}, TLS: ca.mtlsConfig(t, 1),
		VerifyPeerIdentity: true, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Send(t.Context(), Message{Type: MsgHeartbeat, To: 2, Term: 1})
	eventually(t, 5*time.Second, "the dial to be refused", func() bool { return a.Stats().DialErrors > 0 })
	if s := a.Stats(); s.ConnsDialed != 0 || s.FramesOut != 0 {
		t.Fatalf("dialer talked to an impostor: %+v", s)
	}
}
