package testscript

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	goscript "github.com/rogpeppe/go-internal/testscript"
)

// certInfoCommands returns the commands that read a certificate, so that a
// script can tell which one yggd says it loaded.
func certInfoCommands() map[string]command {
	return map[string]command{
		"cert-serial": {
			usage: "cert-serial VAR file",
			run:   cmdCertSerial,
		},
	}
}

// cmdCertSerial sets VAR to the serial number of the PEM certificate in
// file, in lower-case hexadecimal: the form yggd logs.
func cmdCertSerial(ts *goscript.TestScript, args []string) error {
	if len(args) != 2 {
		return ErrUsage
	}
	data, err := os.ReadFile(ts.MkAbs(args[1]))
	if err != nil {
		return err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return fmt.Errorf("%s: no PEM block", args[1])
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", args[1], err)
	}
	ts.Setenv(args[0], cert.SerialNumber.Text(16))
	return nil
}
