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

// CheckClientSuffix is appended to a host's client id by the test
// connection of ygg check, so that the check never takes over the session
// of yggd (or of any host): a client id is a topic level, which cannot
// hold '/', so no host's id ends in it. A broker lets such a connection use
// the host's topics when its ACL follows the certificate's CN rather than
// the client id (README: ygg check).
const CheckClientSuffix = "/check"
