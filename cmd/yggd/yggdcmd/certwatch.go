package yggdcmd

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/ygglab/yggdrasil/yggdrasil/config"
)

// Watching the identity files. serve polls the status of cert-file,
// key-file and ca-root every certPollInterval rather than asking inotify:
// a renewal may write a file in place, rename a new one over it, or swap a
// symbolic link (a directory of links, as mounted secrets are), possibly
// replacing the directory itself, on a file system inotify may not cover
// (NFS). os.Stat follows the path as it is now, so the device, inode, size
// and times of the file it leads to see every one of these, for three
// system calls every few seconds and no watches to set up again. The price
// is a delay of at most certPollInterval before a renewed pair is used,
// nothing next to a certificate's lifetime.

// certPollInterval is how often the identity files are looked at.
const certPollInterval = 2 * time.Second

// fileStamp is what stat says of a file: any write, rename over, or link
// swap changes it.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // nanoseconds
	missing      bool  // the path is set but stat fails
}

// fileStamps are the stamps of the identity files (zero for those not
// configured).
type fileStamps struct{ cert, key, ca fileStamp }

// stampFiles stats the identity files cfg names.
func stampFiles(cfg Config) fileStamps {
	return fileStamps{cert: stamp(cfg.CertFile), key: stamp(cfg.KeyFile), ca: stamp(cfg.CARoot)}
}

func stamp(path string) fileStamp {
	if path == "" {
		return fileStamp{}
	}
	info, err := os.Stat(path)
	if err != nil {
		return fileStamp{missing: true}
	}
	s := fileStamp{size: info.Size(), mtime: info.ModTime().UnixNano()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
		s.ctime = st.Ctim.Nano()
	}
	return s
}

// poll checks the certificate's dates when a day has passed since the last
// check, and loads the identity again when its files changed. Files that
// do not load (a renewal half written: a new certificate beside the old
// key) are logged and tried again once they change again; the identity in
// force stays.
func (r *reloader) poll(now time.Time) plan {
	if !now.Before(r.nextValidity) {
		r.checkValidity(now)
	}
	st := stampFiles(r.cfg)
	if st == r.id.files || st == r.refused {
		return plan{}
	}
	id, err := loadIdentity(r.cfg, r.log)
	if err != nil {
		r.refused = st
		r.log.Warn("the certificate files changed but do not load: yggd keeps its current identity and tries again when they change", "error", err)
		return plan{}
	}
	return r.apply(r.cfg, id)
}

// logCertificate logs the certificate in force, if any.
func (r *reloader) logCertificate(msg string) {
	if c := r.id.leaf; c != nil {
		r.log.Info(msg, "cert_file", r.cfg.CertFile, "serial", c.SerialNumber.Text(16),
			"not_before", formatDate(c.NotBefore), "not_after", formatDate(c.NotAfter))
	}
}

// checkValidity logs a certificate that is not valid now, or that expires
// soon, and schedules the next check a day later.
func (r *reloader) checkValidity(now time.Time) {
	r.nextValidity = now.Add(24 * time.Hour)
	if c := r.id.leaf; c != nil {
		if err := checkDates(c, now); err != nil {
			level := slog.LevelError
			if errors.Is(err, errExpiresSoon) {
				level = slog.LevelWarn
			}
			r.log.Log(context.Background(), level, err.Error(), "cert_file", r.cfg.CertFile,
				"not_before", formatDate(c.NotBefore), "not_after", formatDate(c.NotAfter))
		}
	}
}

// errExpiresSoon marks a certificate that is valid for less than
// config.CertWarnBefore.
var errExpiresSoon = errors.New("the certificate expires within 30 days: renew it (run 'ygg register' again)")

// checkDates says what is wrong with c's validity period at now: nil, or
// an error whose text tells the admin what to do.
func checkDates(c *x509.Certificate, now time.Time) error {
	const keep = "; yggd keeps running and connects once the file is renewed"
	switch config.CheckDates(c, now) {
	case config.NotYetValid:
		return errors.New("the certificate is not valid yet: check the system clock, or run 'ygg register' again" + keep)
	case config.Expired:
		return errors.New("the certificate has expired: run 'ygg register' again" + keep)
	case config.ExpiresSoon:
		return errExpiresSoon
	}
	return nil
}

func formatDate(t time.Time) string { return t.UTC().Format(time.RFC3339) }
