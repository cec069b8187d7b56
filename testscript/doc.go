// Package testscript is the script environment of the e2e suite: one Setup
// that composes with go-internal's testscript.Params, and the custom commands
// that start the simulated cloud and the fakes in-process, drive faults, and
// wait for what the real programs do. The servers themselves live in sim/ and
// fakes/; this package only adapts them to script commands, so yggsim and the
// scenarios share one implementation.
//
// # Environment
//
// Setup exports, for every script:
//
//	YGG_SOCKET_DIR  a short directory outside $WORK for UNIX sockets
//	RUNTIME_DIRECTORY  the same directory: yggd's default runtime-dir, as
//	                systemd sets it (worker sockets in its "workers" dir)
//	YGG_WORKER_DIR  $WORK/workers, the worker directory for yggd
//	YGG_STATE_DIR   $WORK/state
//	STATE_DIRECTORY the same directory: yggd's default state-dir (its
//	                journal), as systemd sets it
//	YGG_CONFIG_DIR  $WORK/etc
//
// The commands that start servers export their addresses:
//
//	YGG_BROKER      broker: the MQTT URL yggd should use (tcp://, or ssl:// with -tls)
//	YGG_BROKER_TLS  broker: the TLS listener's URL
//	YGG_API         broker: the sim's HTTP API
//	YGG_CA          broker: the sim CA's certificate ($WORK/sim-ca.pem)
//	CONTENT_URL     content: the content server
//	DBUS_SYSTEM_BUS_ADDRESS, RHSM_CONSUMER_DIR, RHSM_CONSUMER_ID, YGG_HOSTNAME
//	                rhsm: the private bus and where the consumer certificate goes
//	NOTIFY_SOCKET   notify-socket: systemd's notify socket, for sd_notify
//
// Every server is closed by a Defer; cleanups tolerate either order.
//
// # Conditions
//
// Besides go-internal's own ([exec:prog], [short], [linux], …) and any
// that Params.Condition already answers (conds.go), each computed once:
//
//	[python-grpc]
//		/usr/bin/python3 can import grpc (Debian: python3-grpcio), for the
//		Python workers of the interop scripts; guard with
//		[!python-grpc] skip 'needs /usr/bin/python3 with grpcio (apt install python3-grpcio)'.
//
// # Commands
//
// Each command returns an error; "!" is allowed where noted. A usage mistake
// is fatal, negated or not. A negated wait asserts absence for its timeout
// (2 s unless -timeout says otherwise).
//
// The simulated cloud (broker.go):
//
//	broker [-tls] [-mosquitto] [-open]
//		Start the sim (embedded broker behind a fault proxy, API) in-process,
//		or a real mosquitto with -mosquitto; -open turns the ACL off. Logs go
//		to $WORK/sim.log.
//	cert host-id dir
//		Write dir/cert.pem, key.pem and ca.pem, signed by the sim's CA.
//	mqtt-pub [-retain] [-qos n] topic file      (!: the publish is refused)
//		Publish an archive file, $VARS expanded, as the cloud.
//	mqtt-wait [-timeout d] [-count n] topic [regexp]      (!)
//		Wait for n messages on topic (+ and # allowed) matching regexp,
//		published after the mark; print the last payload.
//	mqtt-count [-timeout d] topic n      (!)
//		Wait for exactly n messages on topic after the mark.
//	mqtt-mark
//		Later waits look only at messages published after this point.
//	mqtt-flood [-qos n] [-content json] host n [directive]
//		Publish n data messages to host and remember their ids.
//	mqtt-answers [-timeout d] [-settle d] [-order file] n      (!)
//		Wait until every flooded id is answered on data/out; print
//		"sent= answered= duplicated= missing=" and fail on any loss or
//		duplicate; with -order, also fail unless the answers reached the
//		cloud in the order file lists (one id a line).
//	broker-stop [-lose-sessions]
//	broker-start
//		Stop the broker (keeping its sessions unless told) and start it again
//		on the same ports.
//	net-cut
//	net-blackhole
//	net-delay duration
//	net-heal
//		Faults of the proxy in front of the broker.
//	acl-deny host-id
//	acl-allow host-id
//		Make the broker's ACL refuse every topic to host-id, its own
//		included (a refused SUBSCRIBE gets SUBACK 0x80, a refused QoS 1
//		PUBLISH ends the connection), or lift that.
//
// Detached content (content.go):
//
//	content [mode] [dir]
//		Start the content server serving an archive directory; modes are ok,
//		404, 500, slow, trickle, redirect-loop and large.
//	content-mode mode
//		Switch the mode.
//	content-posts [-timeout d] n      (!)
//		Wait for n POSTs and print each: request line, sorted headers, body.
//
// RHSM and systemd on a private D-Bus (dbus.go); scripts guard with
// [!exec:dbus-daemon] skip:
//
//	rhsm [ok|reject|registered|slow|job-fail|unit-fail]...
//		Start a dbus-daemon with the fake RHSM and systemd services.
//		job-fail: start jobs fail; unit-fail: they end "done" while the
//		unit is activating, and it fails half a second later.
//	rhsm-consumer      (!: not registered)
//		Succeed when registered with a certificate whose CN is the consumer id.
//	rhsm-calls
//	systemd-calls
//		Print the calls the fakes received, one a line.
//
// systemd's notify socket (notify.go):
//
//	notify-socket
//		Listen on a datagram socket in $YGG_SOCKET_DIR, as systemd's notify
//		socket, record what it receives, and export NOTIFY_SOCKET. Set
//		WATCHDOG_USEC (env) for watchdog pings; leave WATCHDOG_PID unset, as
//		the test cannot know the pid of the program it starts.
//	notify-wait [-timeout d] regexp      (!)
//		Wait for a datagram received after the mark that matches regexp
//		(READY=1, STATUS=…, WATCHDOG=1); print it.
//	notify-mark
//		Later notify-waits look only at datagrams received from now on.
//
// yggd's control socket (control.go):
//
//	control-wait [-timeout d] regexp      (!)
//		Poll GET /v1/status on $RUNTIME_DIRECTORY/control.sock until the
//		status document (indented JSON, as ygg status prints it under
//		"yggd") matches regexp; print it.
//
// Certificates that must fail (tls.go):
//
//	cert-expired host-id dir
//	cert-other-ca host-id dir
//
// Reading a certificate (certinfo.go):
//
//	cert-serial VAR file
//		Set VAR to the serial number of the PEM certificate in file, in
//		lower-case hex as yggd logs it.
//
// Processes, files and logs (core.go, proc.go, gen.go):
//
//	install-worker [-delay d] program [name]
//		Put a program of the test binary into $YGG_WORKER_DIR (under another
//		name, or starting late, through a small bash wrapper).
//	signal SIG program
//		Send a signal by name to a background program (kill knows only INT
//		and KILL).
//	signal-worker SIG name
//		Send a signal to the worker processes started from
//		$YGG_WORKER_DIR/name.
//	workers-running [-timeout d] n
//		Wait until exactly n processes run from $YGG_WORKER_DIR.
//	proc-cpu [-max percent] program      (!)
//		Print the CPU a background program used; fail above -max.
//	proc-mem [-max MiB] program      (!)
//		Print a background program's resident memory, now and at its
//		peak; fail when the peak is above -max.
//	waitfile [-timeout d] path      (!)
//	waitsock [-timeout d] path      (!)
//	waitlog [-timeout d] [-count n] file regexp      (!)
//		Wait for a file, a listening UNIX socket (@name: abstract), or a log
//		line (the nth matching line with -count; it prints that line). A
//		daemon logs to a file when started as
//		exec bash -c 'exec yggd ... 2>yggd.log' &yggd&.
//	gen-data [-size n] [-metadata-keys n] id directive file
//		Write a data message too large to keep in an archive.
//	cpenv src dst
//		Copy an archive file with its $VARS expanded.
//	env-json file key=VAR...
//		Set variables from a JSON object's string fields (yggsim's addresses).
//	soak [-duration d] [-rate n] [-restart-every d] [-outage d] [-drain d] host program
//		The soak's steady load with broker restarts (make soak).
//	kill-rounds [-rounds n] [-rate n] [-drain d] host directive
//		A steady load, from the first yggd's connection on, while yggd is
//		started and killed (SIGKILL) at random moments, rounds times, then
//		started once more: fail unless every
//		message is answered once and the worker (which appends each id it
//		runs to $YGG_WORKER_DIR/received) ran none twice.
package testscript
