// Package sim is the simulated cloud side of yggdrasil: an embedded MQTT
// broker (mochi) with the per-host topic ACL a real deployment enforces, a
// certificate authority for client and server certificates, a registry of
// hosts fed by the traffic they publish, fault injection (broker stop and
// restart with or without sessions, a TCP proxy that cuts, black-holes or
// delays traffic), and an HTTP API that emulates cloud-connector's REST
// interface next to a few extras for tests (wait for an answer, ping and
// wait for the pong, stream all traffic).
//
// The zero Server is ready to Start: it listens on loopback ports chosen by
// the kernel and reports them through BrokerURL, TLSBrokerURL and APIURL.
// The e2e suite (package testscript) and the yggsim command both use it, so
// that scripts and people exercise one implementation.
package sim
