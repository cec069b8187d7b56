package facts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// certDER returns a self-signed certificate with the given CN.
func certDER(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"acme"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fixedHost() ([]netInterface, error) {
	mac, _ := net.ParseMAC("52:54:00:AB:CD:EF")
	return []netInterface{
		{Name: "lo", Loopback: true, Addrs: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}},
		{Name: "eth1", HWAddr: mac, Addrs: []net.IP{net.ParseIP("192.0.2.7"), net.ParseIP("2001:db8::7")}},
		{Name: "eth0", HWAddr: mac, Addrs: []net.IP{net.ParseIP("198.51.100.1")}},
		{Name: "tun0"},
	}, nil
}

func TestCollect(t *testing.T) {
	const uuid = "0e5a1c2f-7a4b-4b8e-9d3c-2f1e0a9b8c7d"
	der := certDER(t, uuid)
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pemWithKeyFirst := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}), pemCert...)

	full := map[string][]byte{
		InsightsIDFile:   []byte(" 4ba0b5fc-26c6-4e3c-9f36-1b1ccb5f0a8a\n"),
		MachineIDFile:    []byte("0123456789ABCDEF0123456789abcdef\n"),
		BIOSUUIDFile:     []byte("EC2A1B3C-0000-1111-2222-333344445555\n"),
		ConsumerCertFile: pemCert,
	}
	want := yggdrasil.CanonicalFacts{
		InsightsID:            "4ba0b5fc-26c6-4e3c-9f36-1b1ccb5f0a8a",
		MachineID:             "01234567-89ab-cdef-0123-456789abcdef",
		BIOSUUID:              "EC2A1B3C-0000-1111-2222-333344445555",
		SubscriptionManagerID: uuid,
		IPAddresses:           []string{"192.0.2.7", "2001:db8::7", "198.51.100.1"},
		MACAddresses:          []string{"52:54:00:ab:cd:ef", "52:54:00:ab:cd:ef", "00:00:00:00:00:00", "00:00:00:00:00:00"},
		FQDN:                  "host.example.com",
	}
	with := func(edit func(*yggdrasil.CanonicalFacts)) yggdrasil.CanonicalFacts {
		f := want
		edit(&f)
		return f
	}
	files := func(edit map[string][]byte) map[string][]byte {
		m := map[string][]byte{}
		for k, v := range full {
			m[k] = v
		}
		for k, v := range edit {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}

	tests := []struct {
		name     string
		files    map[string][]byte
		certFile string // Sources.ConsumerCert relative to the root, if set
		want     yggdrasil.CanonicalFacts
		wantErrs []string // substrings, one per error
	}{
		{name: "all_present", files: full, want: want},
		{name: "optional_files_absent", files: files(map[string][]byte{InsightsIDFile: nil, BIOSUUIDFile: nil}),
			want: with(func(f *yggdrasil.CanonicalFacts) { f.InsightsID, f.BIOSUUID = "", "" })},
		{name: "machine_id_dashed", files: files(map[string][]byte{MachineIDFile: []byte("01234567-89AB-CDEF-0123-456789ABCDEF")}), want: want},
		{name: "machine_id_garbage", files: files(map[string][]byte{MachineIDFile: []byte("not-an-id")}),
			want:     with(func(f *yggdrasil.CanonicalFacts) { f.MachineID = "" }),
			wantErrs: []string{`machine_id: parse "not-an-id": not a UUID`}},
		{name: "machine_id_missing", files: files(map[string][]byte{MachineIDFile: nil}),
			want:     with(func(f *yggdrasil.CanonicalFacts) { f.MachineID = "" }),
			wantErrs: []string{"machine_id: open "}},
		{name: "not_registered", files: files(map[string][]byte{ConsumerCertFile: nil}),
			want:     with(func(f *yggdrasil.CanonicalFacts) { f.SubscriptionManagerID = "" }),
			wantErrs: []string{"subscription_manager_id: open "}},
		{name: "der_named_pem", files: files(map[string][]byte{ConsumerCertFile: der}), want: want},
		{name: "pem_named_crt", files: files(map[string][]byte{"cert/consumer.crt": pemCert}), certFile: "cert/consumer.crt", want: want},
		{name: "pem_key_block_first", files: files(map[string][]byte{ConsumerCertFile: pemWithKeyFirst}), want: want},
		{name: "cert_garbage_and_machine_id_bad", files: files(map[string][]byte{ConsumerCertFile: []byte("junk"), MachineIDFile: []byte("x")}),
			want:     with(func(f *yggdrasil.CanonicalFacts) { f.SubscriptionManagerID, f.MachineID = "", "" }),
			wantErrs: []string{"machine_id:", "subscription_manager_id: parse "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for name, data := range tt.files {
				writeFile(t, filepath.Join(root, name), data)
			}
			s := Sources{Root: root, interfaces: fixedHost, hostname: func() (string, error) { return "host.example.com", nil }}
			if tt.certFile != "" {
				s.ConsumerCert = filepath.Join(root, tt.certFile)
			}
			got, errs := Collect(s)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("facts (-want +got):\n%s", diff)
			}
			if len(errs) != len(tt.wantErrs) {
				t.Fatalf("errors: got %q, want %d matching %q", errs, len(tt.wantErrs), tt.wantErrs)
			}
			for i, err := range errs {
				if !strings.Contains(err.Error(), tt.wantErrs[i]) {
					t.Errorf("error %d: got %q, want it to contain %q", i, err, tt.wantErrs[i])
				}
			}
		})
	}
}

func TestCollectMissingCertIsNotExist(t *testing.T) {
	_, errs := Collect(Sources{Root: t.TempDir(), interfaces: fixedHost})
	found := false
	for _, err := range errs {
		if strings.HasPrefix(err.Error(), "subscription_manager_id") {
			found = errors.Is(err, fs.ErrNotExist)
		}
	}
	if !found {
		t.Errorf("errors %q: want a subscription_manager_id error wrapping fs.ErrNotExist", errs)
	}
}

// TestCollectHost runs against the real host: whatever fails, the lists are
// never nil (they marshal as [], not null) and the host name is filled in.
func TestCollectHost(t *testing.T) {
	f, _ := Collect(Sources{Root: t.TempDir()})
	if f.IPAddresses == nil || f.MACAddresses == nil {
		t.Errorf("lists: got ip %v mac %v, want non-nil", f.IPAddresses, f.MACAddresses)
	}
	if len(f.MACAddresses) == 0 {
		t.Errorf("mac_addresses empty: want at least the loopback interface's")
	}
	for _, ip := range f.IPAddresses {
		if net.ParseIP(ip).IsLoopback() {
			t.Errorf("ip_addresses has loopback %s", ip)
		}
	}
	if h, _ := os.Hostname(); f.FQDN != h {
		t.Errorf("fqdn: got %q, want %q", f.FQDN, h)
	}
}

func TestParseUUID(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"0123456789abcdef0123456789abcdef", "01234567-89ab-cdef-0123-456789abcdef"},
		{"{01234567-89AB-CDEF-0123-456789ABCDEF}", "01234567-89ab-cdef-0123-456789abcdef"},
		{"0123456789abcdef", ""},
		{"01234567-89ab-cdef-0123-456789abcdeg", ""},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUUID(tt.in)
			if (err != nil) != (tt.want == "") || got != tt.want {
				t.Errorf("ParseUUID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}
