// Package facts collects the canonical facts that identify a host to the
// cloud (insights_id, machine_id, bios_uuid, subscription_manager_id,
// ip_addresses, mac_addresses, fqdn), from the same sources as yggdrasil
// 0.1.x. yggd publishes them in every online connection-status and
// "ygg canonical-facts" prints them; both call Collect.
//
// Unlike 0.1.x, a fact that cannot be read never costs the others: it is
// left empty and its error is returned next to the facts. The consumer
// certificate is decoded as PEM or DER by looking at its content, and IPv6
// addresses are reported as well as IPv4 ones.
package facts

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ygglab/yggdrasil/yggdrasil"
)

// The files read, relative to Sources.Root.
const (
	InsightsIDFile   = "etc/insights-client/machine-id"
	MachineIDFile    = "etc/machine-id"
	BIOSUUIDFile     = "sys/devices/virtual/dmi/id/product_uuid"
	ConsumerCertFile = "etc/pki/consumer/cert.pem"
)

// Sources says where the facts are read from.
type Sources struct {
	// Root is the directory the fact files are read under; "" means "/".
	// Tests and containers point it elsewhere.
	Root string
	// ConsumerCert is the RHSM consumer certificate, PEM or DER, whose
	// subject CN is the subscription_manager_id; "" means
	// <Root>/etc/pki/consumer/cert.pem.
	ConsumerCert string

	// interfaces and hostname replace the host's for tests (nil = the host's).
	interfaces func() ([]netInterface, error)
	hostname   func() (string, error)
}

// netInterface is what Collect needs of a network interface.
type netInterface struct {
	Name     string
	Loopback bool
	HWAddr   net.HardwareAddr
	Addrs    []net.IP
}

func (s Sources) path(rel string) string {
	root := s.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, rel)
}

func (s Sources) certPath() string {
	if s.ConsumerCert != "" {
		return s.ConsumerCert
	}
	return s.path(ConsumerCertFile)
}

// Collect reads the canonical facts. A fact that cannot be read is left empty
// (the lists empty, never nil) and the reason is in errs, one error per fact,
// each naming the fact; the other facts are still collected.
//
// insights_id and bios_uuid are "" without error when their file does not
// exist (no insights-client, no DMI). A missing consumer certificate is an
// error wrapping fs.ErrNotExist: the host is not registered.
func Collect(s Sources) (yggdrasil.CanonicalFacts, []error) {
	var errs []error
	fail := func(fact string, err error) {
		errs = append(errs, fmt.Errorf("%s: %w", fact, err))
	}
	f := yggdrasil.CanonicalFacts{IPAddresses: []string{}, MACAddresses: []string{}}

	var err error
	if f.InsightsID, err = readTrimmed(s.path(InsightsIDFile), true); err != nil {
		fail("insights_id", err)
	}
	if f.MachineID, err = machineID(s.path(MachineIDFile)); err != nil {
		fail("machine_id", err)
	}
	if f.BIOSUUID, err = readTrimmed(s.path(BIOSUUIDFile), true); err != nil {
		fail("bios_uuid", err)
	}
	if f.SubscriptionManagerID, err = CertCN(s.certPath()); err != nil {
		fail("subscription_manager_id", err)
	}

	ifaces := s.interfaces
	if ifaces == nil {
		ifaces = hostInterfaces
	}
	if list, err := ifaces(); err != nil {
		fail("ip_addresses", err)
		fail("mac_addresses", err)
	} else {
		f.IPAddresses, f.MACAddresses = addresses(list)
	}

	hostname := s.hostname
	if hostname == nil {
		hostname = os.Hostname
	}
	if f.FQDN, err = hostname(); err != nil {
		fail("fqdn", fmt.Errorf("read host name: %w", err))
	}
	return f, errs
}

// readTrimmed reads a one-line file. With optional, a missing file is "".
func readTrimmed(path string, optional bool) (string, error) {
	b, err := os.ReadFile(path)
	if optional && errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err // *PathError names the file and the operation
	}
	return strings.TrimSpace(string(b)), nil
}

// machineID reads /etc/machine-id (32 hex digits) and prints it as a
// lower-case UUID with dashes.
func machineID(path string) (string, error) {
	s, err := readTrimmed(path, false)
	if err != nil {
		return "", err
	}
	return ParseUUID(s)
}

// ParseUUID accepts a UUID as 32 hex digits, with or without the four dashes
// and braces, in any case, and returns its canonical lower-case dashed form.
func ParseUUID(s string) (string, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	if len(h) == 36 && h[8] == '-' && h[13] == '-' && h[18] == '-' && h[23] == '-' {
		h = h[:8] + h[9:13] + h[14:18] + h[19:23] + h[24:]
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 16 {
		return "", fmt.Errorf("parse %q: not a UUID", s)
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// CertCN returns the subject common name of the X.509 certificate in file,
// which may be PEM (the first CERTIFICATE block) or DER, whatever its name.
func CertCN(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	cert, err := ParseCert(b)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", file, err)
	}
	if cert.Subject.CommonName == "" {
		return "", fmt.Errorf("parse %s: certificate subject has no CN", file)
	}
	return cert.Subject.CommonName, nil
}

// ParseCert decodes a certificate in PEM or DER form, told apart by content.
func ParseCert(b []byte) (*x509.Certificate, error) {
	if bytes.Contains(b, []byte("-----BEGIN")) {
		rest := b
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				return nil, errors.New("no CERTIFICATE block in PEM data")
			}
			if block.Type == "CERTIFICATE" {
				return x509.ParseCertificate(block.Bytes)
			}
		}
	}
	return x509.ParseCertificate(b)
}

// hostInterfaces lists the host's interfaces in kernel order.
func hostInterfaces() ([]netInterface, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	out := make([]netInterface, 0, len(ifaces))
	for _, ifc := range ifaces {
		ni := netInterface{Name: ifc.Name, Loopback: ifc.Flags&net.FlagLoopback != 0, HWAddr: ifc.HardwareAddr}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ni.Addrs = append(ni.Addrs, ipn.IP)
			}
		}
		out = append(out, ni)
	}
	return out, nil
}

// addresses returns the IPv4 and IPv6 addresses of the non-loopback
// interfaces in interface order, and the hardware address of every interface
// (loopback included, all zero when it has none) sorted by interface name.
func addresses(ifaces []netInterface) (ips, macs []string) {
	ips, macs = []string{}, []string{}
	for _, ifc := range ifaces {
		if ifc.Loopback {
			continue
		}
		for _, ip := range ifc.Addrs {
			if ip.IsLoopback() {
				continue
			}
			ips = append(ips, ip.String())
		}
	}
	sorted := append([]netInterface(nil), ifaces...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, ifc := range sorted {
		mac := "00:00:00:00:00:00"
		if len(ifc.HWAddr) > 0 {
			mac = strings.ToLower(ifc.HWAddr.String())
		}
		macs = append(macs, mac)
	}
	return ips, macs
}
