package yggdrasil

// Topic directions and kinds: every host has four topics,
// <prefix>/<client id>/{control,data}/{in,out}.
const (
	KindControl = "control"
	KindData    = "data"
	DirIn       = "in"
	DirOut      = "out"
)

// DefaultTopicPrefix is the topic prefix of the plain (not rhc) build.
const DefaultTopicPrefix = "yggdrasil"

// Topic returns <prefix>/<clientID>/<kind>/<dir>.
func Topic(prefix, clientID, kind, dir string) string {
	return prefix + "/" + clientID + "/" + kind + "/" + dir
}
