// Package build holds the values fixed when the programs are built: the
// version, the branding names and the installation directories. The Makefile
// sets them with the linker:
//
//	go build -ldflags "-X github.com/ygglab/yggdrasil/yggdrasil/build.SysconfDir=/etc ..."
//
// A value left empty at link time gets a run-time default derived from
// PrefixDir (itself /usr/local by default), following the GNU directory
// conventions, so a plain "go build" or "go test" gives a coherent layout.
// The variables are set once, before main runs, and must not be changed.
package build

import "path/filepath"

// Set with -ldflags -X. Keep them plain string variables: the linker can only
// set those.
var (
	// Version is the release, e.g. "0.2.0"; "devel" when not set.
	Version string

	// ShortName names the binaries (<ShortName> and <ShortName>d) and the
	// systemd unit (<ShortName>d.service).
	ShortName string
	// LongName names the directories (<SysconfDir>/<LongName>,
	// <LibexecDir>/<LongName>) and the pkg-config module.
	LongName string
	// BrandName is the human-readable product name used in messages.
	BrandName string
	// Provider is who the host connects to, used in messages ("the cloud"
	// when not set).
	Provider string
	// TopicPrefix is the first MQTT topic segment.
	TopicPrefix string
	// DataHost, when set, replaces the host of every content URL.
	DataHost string

	// Installation directories (GNU names).
	PrefixDir     string
	BinDir        string
	SbinDir       string
	LibexecDir    string
	SysconfDir    string
	DataDir       string
	DatarootDir   string
	ManDir        string
	DocDir        string
	LocalstateDir string
)

func init() {
	def := func(v *string, value string) {
		if *v == "" {
			*v = value
		}
	}
	def(&Version, "devel")
	def(&ShortName, "ygg")
	def(&LongName, "yggdrasil")
	def(&BrandName, "yggdrasil")
	def(&Provider, "the cloud")
	def(&TopicPrefix, "yggdrasil")
	def(&PrefixDir, "/usr/local")
	def(&BinDir, filepath.Join(PrefixDir, "bin"))
	def(&SbinDir, filepath.Join(PrefixDir, "sbin"))
	def(&LibexecDir, filepath.Join(PrefixDir, "libexec"))
	def(&SysconfDir, filepath.Join(PrefixDir, "etc"))
	def(&DatarootDir, filepath.Join(PrefixDir, "share"))
	def(&DataDir, DatarootDir)
	def(&ManDir, filepath.Join(DatarootDir, "man"))
	def(&DocDir, filepath.Join(DatarootDir, "doc", LongName))
	def(&LocalstateDir, filepath.Join(PrefixDir, "var"))
}

// WorkerDir is where yggd looks for workers: <LibexecDir>/<LongName>.
func WorkerDir() string { return filepath.Join(LibexecDir, LongName) }

// ConfigDir is yggdrasil's configuration directory: <SysconfDir>/<LongName>.
func ConfigDir() string { return filepath.Join(SysconfDir, LongName) }

// UnitName is the systemd unit of the daemon: <ShortName>d.service.
func UnitName() string { return ShortName + "d.service" }
